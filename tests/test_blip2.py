"""mmcore.blip2 on a tiny random-init Blip2ForConditionalGeneration saved and loaded back through the catalogue's
loader (the pretrained tier's code path)."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import TINY_QUERIES, FakeHub
from PIL import Image

from mmcore import blip2 as B2
from mmcore import models, settings, shapes


@pytest.fixture
def bundle(tiny_pretrained):
    return models.load("blip2", "pretrained")


def scene_image(seed: int = 3, side: int = 128) -> tuple[Image.Image, shapes.Scene]:
    scene = shapes.sample_scene(seed, min_objects=2)
    return Image.fromarray(shapes.render(scene, side)), scene


def test_the_three_stages_have_the_shapes_of_the_forward_pass(bundle):
    image, _ = scene_image()
    r = B2.read(bundle, image)
    cfg = bundle.model.config
    n = (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2
    assert bundle.k == TINY_QUERIES and n == 16
    assert r.image_tokens.shape == (1, n + 1, cfg.vision_config.hidden_size)
    assert r.queries.shape == (1, TINY_QUERIES, cfg.qformer_config.hidden_size)
    assert r.prompt.shape == (1, TINY_QUERIES, cfg.text_config.hidden_size)
    assert r.maps.shape == (cfg.qformer_config.num_hidden_layers, cfg.qformer_config.num_attention_heads,
                            TINY_QUERIES, n)
    rows = B2.shapes_of(r)
    assert "16 patches (+1 [CLS]) × 32" in rows[0][1] and rows[1][1] == "4 queries × 32"
    assert rows[2][1] == "4 prompt vectors × 32"


def test_the_prompt_is_the_projection_of_the_qformer_outputs(bundle):
    image, _ = scene_image()
    r = B2.read(bundle, image)
    out = bundle.model.get_image_features(pixel_values=bundle.pixels(image))
    torch.testing.assert_close(r.prompt, out.pooler_output)  # transformers' own stage 1-3
    torch.testing.assert_close(r.queries, out.qformer_outputs.last_hidden_state)


def test_query_maps_sum_to_one_over_the_patches_and_keep_the_cls_share_apart(bundle):
    image, _ = scene_image()
    r = B2.read(bundle, image)
    np.testing.assert_allclose(r.maps.sum(-1), 1.0, atol=1e-5)
    assert (r.maps >= 0).all() and ((r.cls_share > 0) & (r.cls_share < 1)).all()
    # the raw attention over [CLS] + patches, straight from the Q-Former
    z = bundle.model.vision_model(pixel_values=bundle.pixels(image)).last_hidden_state
    q = bundle.model.qformer(query_embeds=bundle.model.query_tokens, encoder_hidden_states=z,
                             output_attentions=True)
    raw = torch.stack(q.cross_attentions)[:, 0].detach().numpy()
    np.testing.assert_allclose(r.cls_share, raw[..., 0], atol=1e-6)
    np.testing.assert_allclose(r.maps * (1 - r.cls_share[..., None]), raw[..., 1:], atol=1e-6)
    for layer, head in ((None, None), (0, None), (1, 3)):
        assert r.of(2, layer, head).sum() == pytest.approx(1.0)
    np.testing.assert_allclose(r.of(1, 1, 3), r.maps[1, 3, 1], atol=1e-6)
    assert r.grid().shape == (TINY_QUERIES, 16)
    assert not np.allclose(r.grid()[0], r.grid()[1]), "distinct queries read distinct maps"


def test_streamed_greedy_caption_is_what_generate_writes(bundle):
    image, _ = scene_image()
    steps = list(B2.stream(bundle, B2.read(bundle, image), max_new_tokens=10))
    out = bundle.model.generate(pixel_values=bundle.pixels(image), max_new_tokens=10, do_sample=False)
    new = out[0, TINY_QUERIES + 1:].tolist()  # generate returns the k placeholders and </s> first
    assert [s.token_id for s in steps] == new[:len(steps)]
    for s in steps:
        assert s.prob == pytest.approx(s.top[0][1]) and s.token == s.top[0][0]  # greedy: the top candidate


def test_teacher_forcing_gives_the_probabilities_decoding_chose_with(bundle):
    image, _ = scene_image()
    r = B2.read(bundle, image)
    steps = list(B2.stream(bundle, r, max_new_tokens=6))
    np.testing.assert_allclose(B2.token_probs(bundle, r, [s.token_id for s in steps]), [s.prob for s in steps],
                               rtol=1e-4)


def test_switching_a_query_off_zeroes_its_output_and_nothing_else(bundle):
    image, _ = scene_image()
    full, cut = B2.read(bundle, image), B2.read(bundle, image, off=(1,))
    assert torch.all(cut.queries[0, 1] == 0)
    torch.testing.assert_close(cut.prompt[0, 1], bundle.model.language_projection.bias)
    keep = [0, 2, 3]
    torch.testing.assert_close(cut.prompt[0, keep], full.prompt[0, keep])
    np.testing.assert_allclose(cut.maps, full.maps)  # what each query read is unchanged; only its output is cut


def test_ablating_every_query_changes_the_output(bundle):
    image, _ = scene_image()
    full = B2.read(bundle, image)
    ids = [s.token_id for s in B2.stream(bundle, full, max_new_tokens=6)]
    cut = B2.read(bundle, image, off=range(TINY_QUERIES))
    bias = bundle.model.language_projection.bias
    torch.testing.assert_close(cut.prompt[0], bias.expand(TINY_QUERIES, -1))
    assert not np.allclose(B2.token_probs(bundle, full, ids), B2.token_probs(bundle, cut, ids), atol=1e-4)


@pytest.mark.parametrize("off, message", [((4,), "q0 to q3"), ((-1,), "q0 to q3"),
                                          ((True,), "q0 to q3"), ((1, 1), "once"), (("2",), "q0 to q3")])
def test_bad_ablations_say_what_is_allowed(off, message):
    with pytest.raises(ValueError, match=message):
        B2.check_ablation(off, 4)


def test_the_tokenizer_starts_with_opts_bos_and_places_k_image_tokens_first(bundle):
    tok = bundle.tokenizer
    ids = tok("A red circle, a blue star").input_ids
    assert ids[0] == bundle.model.config.text_config.bos_token_id == tok.convert_tokens_to_ids("</s>")
    assert tok.decode(ids, skip_special_tokens=True) == "a red circle, a blue star"
    assert tok.convert_tokens_to_ids(B2.IMAGE_TOKEN) == bundle.model.config.image_token_index
    assert "<unk>" not in tok.convert_ids_to_tokens(tok("zebra").input_ids), "any word tokenizes, letter by letter"
    image, _ = scene_image()
    enc = bundle.processor(images=image, text="a red", return_tensors="pt")
    assert enc.input_ids[0, :TINY_QUERIES].tolist() == [bundle.model.config.image_token_index] * TINY_QUERIES
    assert enc.pixel_values.shape == (1, 3, 32, 32)


def test_patch_objects_and_query_objects_follow_the_masks():
    _, scene = scene_image(seed=11)
    owner = B2.patch_objects(scene, 8)
    masks = shapes.render_masks(scene, 64)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        cy, cx = int(ys.mean()) // 8, int(xs.mean()) // 8  # the patch at the object's centre is the object's
        assert owner[cy * 8 + cx] == i
    assert owner[0] == -1 or not masks[:, :8, :8].any(), "a corner patch is background unless an object is there"
    maps = np.full((1, 1, 3, 64), 1e-3)
    target = [*[int(np.nonzero(owner == i)[0][0]) for i in range(len(masks))][:2], int(np.nonzero(owner < 0)[0][0])]
    for q, patch in enumerate(target):
        maps[0, 0, q, patch] = 1.0
    reading = B2.Reading(None, None, None, maps / maps.sum(-1, keepdims=True), np.zeros((1, 1, 3)))
    assert B2.query_objects(reading, scene) == [0, 1, -1]


def test_the_pretrained_blip2_is_offered_only_with_cuda(monkeypatch):
    cfg = dataclasses.replace(settings.get(), device="cpu", hub_offline=False)
    res = models.resolve_tier("blip2", "pretrained", hub=FakeHub(cached={"blip2"}), cfg=cfg)
    assert res.tier == "bundled" and "CUDA" in res.reason
    spec = models.get_spec("blip2", "pretrained")
    monkeypatch.setitem(models._CATALOGUE, ("blip2", "pretrained"), dataclasses.replace(spec, needs_cuda=False))
    assert models.resolve_tier("blip2", "pretrained", hub=FakeHub(cached={"blip2"}), cfg=cfg).tier == "pretrained"
