"""BLIP tab handlers, called as plain functions on the pretrained tier's tiny random-init stand-ins."""

import re

import gradio as gr
import numpy as np
import pytest

from demos import blip as tab
from demos import common
from mmcore import shapes

CONTROLS = dict(strategy="greedy", beams=3, length_penalty=1.0, temperature=1.0, top_k=0, top_p=1.0, max_tokens=8,
                seed=0, prompt="")


@pytest.fixture(autouse=True)
def every_token(monkeypatch):
    """Streams send every token on its own here (a tiny model is faster than the page's pace); paced streams have
    their own test."""
    monkeypatch.setattr(common, "STREAM_EVERY_S", 0.0)


@pytest.fixture
def scene(tiny_pretrained):
    image, truth, masks, questions, seed, captions = tab.new_scene(seed=7)
    return image, seed


def run_caption(image, tier="pretrained", **changes):
    c = {**CONTROLS, **changes}
    return list(tab.caption(image, c["strategy"], c["beams"], c["length_penalty"], c["temperature"], c["top_k"],
                            c["top_p"], c["max_tokens"], c["seed"], c["prompt"], tier))


def test_a_paced_stream_sends_its_first_token_then_the_whole_caption(scene, monkeypatch):
    """A model faster than the page's pace: the first token at once, then nothing until the finished caption,
    which is the very one an unpaced stream ends with."""
    image, _ = scene
    every = run_caption(image)
    monkeypatch.setattr(common, "STREAM_EVERY_S", 3600.0)
    paced = run_caption(image)
    run = lambda html: re.sub(r'data-run="\d+"', "", html)  # noqa: E731 -- each run has its own id
    assert len(every) >= 4 and len(paced) == 2
    assert run(paced[0][0]) == run(every[0][0]) and paced[0][0].count('class="blip-chip"') == 1
    assert run(paced[-1][0]) == run(every[-1][0]) and paced[-1][1] == every[-1][1] and paced[-1][4] == every[-1][4]


def test_new_scene_shows_its_ground_truth_masks_and_questions(tiny_pretrained):
    image, truth, masks, questions, seed, captions = tab.new_scene(seed=7)
    scene = shapes.sample_scene(seed, **tab.SCENE)
    assert captions.splitlines() == [shapes.caption(scene), shapes.swapped_caption(scene)]
    assert shapes.caption(scene) in truth and seed >= shapes.SPLITS["test"]
    assert isinstance(questions, gr.Dropdown)
    assert [q for q, _ in questions.choices] == [q for q, _ in shapes.questions(scene)]
    pixels = np.asarray(masks)
    assert (pixels == 255).all(-1).mean() > 0.3, "the background stays white"
    assert len(scene.objects) >= 2


def test_caption_streams_token_by_token_then_fills_the_tables(scene):
    image, _ = scene
    outs = run_caption(image)
    *stream, final = outs
    html, steps, beams, token, state, note = final
    n = len(state["ids"])
    assert len(stream) == len(steps) and len(steps) in (n, n + 1)  # n words, and [SEP] when it ended
    for i, partial in enumerate(stream):
        assert partial[0].count('class="blip-chip"') == i + 1 and "blip-cursor" in partial[0]
        assert all(p is not None for p in partial)
    assert "blip-cursor" not in html and beams == []
    assert [row[1] for row in steps[:n]] == tiny_pretrained_words(state["ids"])
    assert [c[1] for c in token.choices] == list(range(n))
    assert f"**{n} tokens**" in note


def tiny_pretrained_words(ids):
    from demos import common

    bundle, _ = common.load("blip-caption", "pretrained")
    return bundle.words(ids)


def test_beam_search_marks_its_winner(scene):
    image, _ = scene
    *_, final = run_caption(image, strategy="beam search", beams=3)
    html, steps, beams, token, state, note = final
    assert beams and {row[3] for row in beams} & {"live"}
    winners = [row for row in beams if "winner" in row[3]]
    if state["ids"] and steps[-1][1] == "[SEP]":
        assert len(winners) == 1 and winners[0][1] == " ".join(row[1] for row in steps)


def test_token_attention_lens_and_pipeline(scene):
    image, _ = scene
    *_, final = run_caption(image)
    state = final[4]
    if not state["ids"]:
        pytest.skip("the random model ended at once")
    overlay, note = tab.token_attention(image, state, 0, "mean", "mean", "pretrained")
    assert overlay.size == (tab.OVERLAY_SIDE, tab.OVERLAY_SIDE) and "of the 4 × 4 grid" in note
    overlay2, _ = tab.token_attention(image, state, 0, "2", "1", "pretrained")
    assert np.abs(np.asarray(overlay, float) - np.asarray(overlay2, float)).mean() > 0.1
    with pytest.raises(ValueError, match="this decoder has 2"):
        tab.token_attention(image, state, 0, "3", "mean", "pretrained")
    rows = tab.lens(image, state, 1, "pretrained")
    assert [r[0] for r in rows] == ["embeddings", "layer 1", "layer 2"] and len(rows[0]) == 6
    md, att, bar = tab.pipeline(image, "a red", "pretrained")
    assert "17 × 32" in md and "3 × 32" in md
    assert np.asarray(att.data[0].z).shape == (3, 17)


def test_token_attention_before_a_caption_asks_for_one(scene):
    with pytest.raises(ValueError, match="Caption the image first"):
        tab.token_attention(scene[0], {}, 0, "mean", "mean", "pretrained")
    assert tab.lens(scene[0], {}, 1, "pretrained") == []  # the lens follows the caption on its own: no popup


def test_vqa_shows_the_true_answer_of_a_scene_question(scene):
    image, seed = scene
    question, answer = shapes.questions(shapes.sample_scene(seed, **tab.SCENE))[0]
    md, overlay = tab.ask(image, question, seed, "mean", "pretrained")
    assert f"True answer: **{answer}**" in md and overlay.size == (tab.OVERLAY_SIDE,) * 2
    md, _ = tab.ask(image, "is the sky blue?", seed, "mean", "pretrained")
    assert "True answer" not in md


def test_matching_and_the_swap_probe(scene):
    image, seed = scene
    fig, label = tab.matching(image, "a red circle\n\na blue star\na green square", "pretrained")
    assert [len(t.x) for t in fig.data] == [3, 3]
    assert all(0 <= p <= 1 for p in fig.data[0].x)
    s = shapes.sample_scene(seed, **tab.SCENE)
    md = tab.swap_probe(image, seed, "pretrained")
    if shapes.swapped_caption(s):
        assert shapes.caption(s) in md and shapes.swapped_caption(s) in md and md.count("| BLIP") == 2
        assert "CLIP cosine" in md


def test_swap_probe_needs_a_scene(scene):
    with pytest.raises(ValueError, match="Shapes scene first"):
        tab.swap_probe(scene[0], -1, "pretrained")


@pytest.mark.parametrize("changes, match", [
    ({"max_tokens": 0}, "maximum length"), ({"max_tokens": 10**6}, "maximum length"),
    ({"temperature": float("nan")}, "temperature"), ({"beams": 2.5}, "beams"), ({"prompt": "x" * 10_000}, "prompt")])
def test_bad_caption_settings_give_messages_and_the_next_request_works(scene, changes, match):
    with pytest.raises(ValueError, match=match):
        run_caption(scene[0], **changes)
    assert run_caption(scene[0])[-1][4]["ids"] is not None


def test_bad_inputs_give_messages(scene, tmp_path):
    with pytest.raises(ValueError, match="No image"):
        run_caption(None)
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"this is not a picture")
    with pytest.raises(ValueError, match="not an image"):
        run_caption(str(bad))
    with pytest.raises(ValueError, match="not an image"):
        tab.ask(str(bad), "what color is the circle?", -1, "mean", "pretrained")
    with pytest.raises(ValueError, match="type a question"):
        tab.ask(scene[0], "", -1, "mean", "pretrained")
    with pytest.raises(ValueError, match="characters"):
        tab.ask(scene[0], "why " * 2500, -1, "mean", "pretrained")
    with pytest.raises(ValueError):
        tab.matching(scene[0], "", "pretrained")


def test_the_ui_wrapper_keeps_a_streaming_handler_streaming(scene):
    import inspect

    from demos import common

    wrapped = common.show_errors(tab.caption)
    assert inspect.isgeneratorfunction(wrapped), "Gradio streams only generator functions"
    values = list(CONTROLS.values())
    outs = list(wrapped(scene[0], *values, "pretrained"))
    assert len(outs) >= 2 and outs[-1][4]["ids"] is not None
    with pytest.raises(gr.Error, match="No image"):
        list(wrapped(None, *values, "pretrained"))
