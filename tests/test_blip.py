"""BLIP's maths on tiny random-init models saved and loaded back through the pretrained tier's own loaders: our
decoding loop against transformers' generate, cross-attention maps, the logit lens, VQA, matching, validation."""

import numpy as np
import pytest
import torch
from PIL import Image

from mmcore import blip as B
from mmcore import shapes

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def bundles(tiny_dirs):
    return {kind: loader(tiny_dirs[f"blip-{kind}"], CPU, torch.float32)
            for kind, loader in (("caption", B.load_caption), ("vqa", B.load_vqa), ("itm", B.load_itm))}


@pytest.fixture(scope="module")
def cap(bundles):
    return bundles["caption"]


def scene_image(seed: int) -> Image.Image:
    return Image.fromarray(shapes.render(shapes.sample_scene(seed, min_objects=2), 128))


IMAGES = [scene_image(s) for s in range(4)]


def hf_tokens(bundle, image, **kw) -> list[int]:
    out = bundle.model.generate(pixel_values=bundle.pixels(image), **kw)[0].tolist()
    out = out[1:]  # drop [DEC]
    sep = bundle.text_config.sep_token_id
    return out[:out.index(sep)] if sep in out else out


def test_loaders_give_each_class_its_processor_and_grid(bundles):
    assert type(bundles["caption"].model).__name__ == "BlipForConditionalGeneration"
    assert type(bundles["vqa"].model).__name__ == "BlipForQuestionAnswering"
    assert type(bundles["itm"].model).__name__ == "BlipForImageTextRetrieval"
    for b in bundles.values():
        assert b.grid == 4 and b.pixels(IMAGES[0]).shape == (1, 3, 32, 32)
        assert b.tokenizer.convert_tokens_to_ids("[DEC]") == b.text_config.bos_token_id


def test_tokenizer_has_one_id_per_token_and_spells_unknown_words(tmp_path):
    tok = B.build_tokenizer(tmp_path)
    vocab = tok.get_vocab()
    assert sorted(vocab.values()) == list(range(len(vocab))), "ids are 0..V-1 without gaps"
    ids = tok("a Red hexagons, zebra?").input_ids
    words = tok.convert_ids_to_tokens(ids)
    assert words[:4] == ["[CLS]", "a", "red", "hexagons"] and words[-1] == "[SEP]"
    assert "[UNK]" not in words and "##e" in words  # zebra is spelled with letters


@pytest.mark.parametrize("image", range(4))
def test_greedy_loop_equals_transformers_generate(cap, image):
    ours = B.caption(cap, IMAGES[image], B.Decoding(max_new_tokens=12))
    assert ours.ids == hf_tokens(cap, IMAGES[image], max_new_tokens=12, do_sample=False)


@pytest.mark.parametrize("image", range(4))
def test_beam_search_equals_transformers_and_one_beam_is_greedy(cap, image):
    img = IMAGES[image]
    greedy = B.caption(cap, img, B.Decoding(max_new_tokens=10))
    one = B.caption(cap, img, B.Decoding("beam search", num_beams=1, max_new_tokens=10))
    assert one.ids == greedy.ids
    for n, lp in ((3, 1.0), (4, 0.0)):
        ours = B.caption(cap, img, B.Decoding("beam search", num_beams=n, length_penalty=lp, max_new_tokens=10))
        assert ours.ids == hf_tokens(cap, img, num_beams=n, length_penalty=lp, max_new_tokens=10, do_sample=False)
        assert ours.beams and max(b.step for b in ours.beams) <= 10
        assert len({b.step for b in ours.beams}) >= 1


def test_stream_yields_exactly_the_tokens_of_the_caption(cap):
    dec = B.Decoding("sampling", temperature=1.5, max_new_tokens=15, seed=3)
    steps = list(B.stream_caption(cap, IMAGES[1], dec))
    final = B.caption(cap, IMAGES[1], dec)
    assert [s.token_id for s in steps if s.token_id != cap.text_config.sep_token_id] == final.ids
    assert final.text == cap.tokenizer.decode(final.ids, skip_special_tokens=True)
    assert all(0 < s.prob <= 1 and len(s.top) == B.TOP_K_SHOWN for s in steps)


def test_sampling_is_reproducible_with_a_seed_and_varies_without(cap):
    runs = {seed: B.caption(cap, IMAGES[2], B.Decoding("sampling", temperature=3.0, max_new_tokens=12,
                                                       seed=seed)).ids for seed in range(4)}
    again = B.caption(cap, IMAGES[2], B.Decoding("sampling", temperature=3.0, max_new_tokens=12, seed=0)).ids
    assert again == runs[0]
    assert len({tuple(v) for v in runs.values()}) > 1, "different seeds should sample different captions"


def test_top_k_one_sampling_is_greedy(cap):
    greedy = B.caption(cap, IMAGES[3], B.Decoding(max_new_tokens=10)).ids
    sampled = B.caption(cap, IMAGES[3], B.Decoding("sampling", top_k=1, max_new_tokens=10, seed=5)).ids
    assert sampled == greedy


@torch.inference_mode()
def test_step_probabilities_are_the_models_softmax(cap):
    cap_ = B.caption(cap, IMAGES[0], B.Decoding(max_new_tokens=6))
    memory = B.image_embeds(cap, IMAGES[0])
    ids = torch.tensor([[cap.text_config.bos_token_id]])
    for step in cap_.steps:
        p = B.next_logits(cap, memory, ids)[0].exp()
        assert step.prob == pytest.approx(float(p[step.token_id]), rel=1e-5)
        assert step.top[0][1] == pytest.approx(float(p.max()), rel=1e-5)
        ids = torch.cat([ids, torch.tensor([[step.token_id]])], 1)


@torch.inference_mode()
def test_cross_attention_maps_sum_to_one_and_belong_to_the_choosing_query(cap):
    img = IMAGES[1]
    ids = B.caption(cap, img, B.Decoding(max_new_tokens=8)).ids
    att = B.decoder_attention(cap, img, ids)
    L, H, Q, n = att.maps.shape
    assert (L, H, Q, n) == (2, 4, len(ids), 16)
    np.testing.assert_allclose(att.maps.sum(-1), 1.0, atol=1e-5)
    assert (att.maps >= 0).all() and att.maps.std() > 0
    # token i was chosen by the last position of the prefix [DEC] + ids[:i]: its cross-attention is the map
    memory = B.image_embeds(cap, img)
    for i in (0, len(ids) - 1):
        prefix = torch.tensor([[cap.text_config.bos_token_id, *ids[:i]]])
        out = cap.model.text_decoder(input_ids=prefix, encoder_hidden_states=memory, output_attentions=True)
        raw = out.cross_attentions[-1][0, :, -1].numpy()  # (heads, 1 + n)
        np.testing.assert_allclose(att.maps[-1, :, i], raw[:, 1:] / raw[:, 1:].sum(-1, keepdims=True), atol=1e-5)
        np.testing.assert_allclose(att.cls_share[-1, :, i], raw[:, 0], atol=1e-6)
    m = att.of(0, layer=None, head=None)
    assert m.shape == (16,) and m.sum() == pytest.approx(1.0)


@torch.inference_mode()
def test_logit_lens_last_layer_is_the_models_prediction(cap):
    img = IMAGES[2]
    ids = B.caption(cap, img, B.Decoding(max_new_tokens=6)).ids
    for step in (0, min(2, len(ids))):
        rows = B.logit_lens(cap, img, ids, step)
        assert len(rows) == 1 + 2  # embeddings + each layer
        prefix = torch.tensor([[cap.text_config.bos_token_id, *ids[:step]]])
        p = B.next_logits(cap, B.image_embeds(cap, img), prefix)[0].exp()
        top_p, top_i = p.topk(B.TOP_K_SHOWN)
        assert [t for t, _ in rows[-1]] == cap.words(top_i.tolist())
        np.testing.assert_allclose([q for _, q in rows[-1]], top_p.numpy(), rtol=1e-4)
    with pytest.raises(ValueError, match="step"):
        B.logit_lens(cap, img, ids, len(ids) + 1)


@torch.inference_mode()
def test_vqa_loop_equals_transformers_generate(bundles):
    vqa = bundles["vqa"]
    for img in IMAGES[:2]:
        for q in ("what color is the circle?", "how many objects are there?"):
            ours = B.answer(vqa, img, q)
            ids, mask = vqa.encode_text(q)
            ref = vqa.model.generate(input_ids=ids, pixel_values=vqa.pixels(img), attention_mask=mask,
                                     max_new_tokens=6)[0].tolist()[1:]
            sep = vqa.text_config.sep_token_id
            ref = ref[:ref.index(sep)] if sep in ref else ref
            assert ours.text == vqa.tokenizer.decode(ref, skip_special_tokens=True)
            L, H, Lq, n = ours.attention.maps.shape
            assert Lq == ids.shape[1] and n == 16
            np.testing.assert_allclose(ours.attention.maps.sum(-1), 1.0, atol=1e-5)


@torch.inference_mode()
def test_matching_batches_as_it_scores_one_by_one(bundles):
    itm = bundles["itm"]
    texts = ["a red circle", "a blue star and a green square", "two shapes: a red circle and a blue star"]
    probs, cos = B.match(itm, IMAGES[0], texts)
    assert probs.shape == cos.shape == (3,)
    for j, t in enumerate(texts):
        p1, c1 = B.match(itm, IMAGES[0], [t])
        assert probs[j] == pytest.approx(p1[0], abs=1e-5) and cos[j] == pytest.approx(c1[0], abs=1e-5)
    ids, mask = itm.encode_text(texts[1])
    ref = torch.softmax(itm.model(input_ids=ids, pixel_values=itm.pixels(IMAGES[0]), attention_mask=mask).itm_score,
                        -1)[0, 1]
    assert probs[1] == pytest.approx(float(ref), abs=1e-5)
    assert (cos >= -1).all() and (cos <= 1).all()


def test_pipeline_records_the_lectures_shapes(cap):
    rec = B.record_pipeline(cap, IMAGES[0], "a red")
    assert rec["patches"] == 16 and rec["image_tokens"] == "17 × 32"
    assert rec["tokens"] == ["[DEC]", "a", "red"] and rec["text_tokens"] == "3 × 32"
    assert rec["q"] == "3 × 32" and rec["k"] == rec["v"] == "17 × 32"
    assert rec["attention"].shape == (3, 17)
    np.testing.assert_allclose(rec["attention"].sum(-1), 1.0, atol=1e-5)
    assert sum(p for _, p in rec["next"]) <= 1.0 + 1e-6


@pytest.mark.parametrize("kwargs, match", [
    ({"max_new_tokens": 0}, "maximum length"), ({"max_new_tokens": 10**6}, "maximum length"),
    ({"num_beams": 0}, "beams"), ({"temperature": 0.0}, "temperature"), ({"temperature": float("nan")}, "temper"),
    ({"top_p": 0.0}, "top-p"), ({"top_k": -1}, "top-k"), ({"strategy": "magic"}, "decoding"),
    ({"seed": -1}, "seed"), ({"length_penalty": float("inf")}, "length penalty")])
def test_bad_decoding_settings_say_what_is_wrong(kwargs, match):
    with pytest.raises(ValueError, match=match):
        B.Decoding(**kwargs)


def test_bad_questions_and_captions_say_what_is_wrong(bundles):
    with pytest.raises(ValueError, match="type a question"):
        B.answer(bundles["vqa"], IMAGES[0], "   ")
    with pytest.raises(ValueError, match="10,000 characters"):
        B.answer(bundles["vqa"], IMAGES[0], "x" * 10_000)
    assert B.answer(bundles["vqa"], IMAGES[0], "is there a red circle?").prob > 0  # the next request still works
    with pytest.raises(ValueError, match="at least one caption"):
        B.match(bundles["itm"], IMAGES[0], ["", "  "])


@pytest.mark.parametrize("text, ok", [
    ("a red circle and a blue star", True), ("a blue star and a red circle", True),
    ("a red circle", False), ("a red circle, a blue star and a green square", False),
    ("a red circle and a blue", False), ("a red circle and a blue star star", False),
    ("a blue circle and a red star", False), ("two shapes: a red circle and a blue star", True)])
def test_caption_correct_needs_every_object_and_nothing_else(text, ok):
    scene = shapes.Scene(objects=(shapes.Obj("circle", "red", "small", 0.3, 0.5),
                                  shapes.Obj("star", "blue", "small", 0.7, 0.5)), background=(255, 255, 255), seed=0)
    assert B.caption_correct(text, scene) is ok
