"""CLIP tab handlers, called as plain functions on a tiny model standing in for the pretrained tier, and how the tab
wires them (live controls, a tab that opens computed)."""

import math
import re
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from demos import clip as tab
from demos import common
from mmcore import clip as C
from mmcore import shapes

TIER = "pretrained"


@pytest.fixture
def batch(tiny_pretrained):
    """Four Shapes images (as PIL images) and their captions."""
    gallery, texts = tab.new_batch(4, seed=3)
    return [image for image, _ in gallery], texts


def test_new_batch_brings_true_captions_numbered_like_the_plots():
    gallery, texts = tab.new_batch(5, seed=0)
    assert [caption for _, caption in gallery] == ["I1", "I2", "I3", "I4", "I5"] and len(texts.splitlines()) == 5
    with pytest.raises(ValueError, match="batch size must be in"):
        tab.new_batch(17)
    photos, captions = tab.sample_photos()
    assert [c for _, c in photos] == [f"I{i + 1}" for i in range(len(photos))] == [f"I{i + 1}" for i in
                                                                                    range(len(captions.splitlines()))]
    uploaded = [("/tmp/a.png", None), ("/tmp/b.png", "old")]
    assert tab.number_gallery(uploaded) == [("/tmp/a.png", "I1"), ("/tmp/b.png", "I2")]


def _loss(md: str) -> float:
    return float(re.search(r"\\mathcal\{L\}_\{CLIP\} = .*? = ([0-9.]+)\$", md).group(1))


def test_matrix_and_temperature_without_reencoding(batch):
    images, texts = batch
    walk, s_fig, r_fig, c_fig, md, pca, S, lines = tab.matrix(images, texts, None, TIER)
    assert np.asarray(S).shape == (4, 4) and len(lines) == 4
    rows = np.asarray(r_fig.data[0].z)
    np.testing.assert_allclose(rows.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(c_fig.data[0].z).sum(0), 1.0, atol=1e-6)
    assert "mathcal{L}_{CLIP}" in md and "τ = 0.07" in md  # the model's own temperature by default
    misses = C._EMBEDDINGS.misses
    r_fig2, c_fig2, md2 = tab.temperature(S, lines, -1.0)  # S's own heatmap is left as it is
    assert "τ = 0.1" in md2 and C._EMBEDDINGS.misses == misses
    np.testing.assert_allclose(np.asarray(r_fig2.data[0].z), C.softmax_rows(S, 0.1).numpy(), atol=1e-9)
    np.testing.assert_allclose(np.asarray(c_fig2.data[0].z), C.softmax_cols(S, 0.1).numpy(), atol=1e-9)
    assert "image → text" in r_fig2.layout.title.text and "text → image" in c_fig2.layout.title.text
    expected = C.info_nce(np.asarray(S), 0.1).clip
    assert f"{expected:.4f}" in md2


def test_the_page_draws_s_and_the_loss_first_and_the_rest_from_what_they_kept(batch):
    """A new input costs the page two requests: S's heatmap and the loss (what a new input changes most), then the
    softmaxes, the PCA map and the walk-through from the S and the plane kept in the page, with no model call. Both
    together are what `matrix` (the whole, for tests and scripts) returns."""
    images, texts = batch
    walk, s_fig, r_fig, c_fig, md, pca, S, lines = tab.matrix(images, texts, -1.5, TIER)
    s_first, md_first, S_kept, lines_kept, plane, key = tab.similarity(images, texts, -1.5, TIER)
    assert s_first.to_json() == s_fig.to_json() and md_first == md and S_kept == S and lines_kept == lines
    misses = C._EMBEDDINGS.misses
    assert [f if isinstance(f, str) else f.to_json() for f in tab.views(S_kept, lines_kept, plane, -1.5, TIER)] == [
        walk, r_fig.to_json(), c_fig.to_json(), pca.to_json()]
    assert C._EMBEDDINGS.misses == misses, "the rest is drawn from what was kept, nothing encoded again"
    np.testing.assert_allclose(np.asarray(pca.data[-2].x), np.asarray(plane["images"])[:, 0])  # images' markers


def test_a_new_input_draws_s_and_the_loss_first_then_the_rest():
    """S and the loss come first; the softmaxes, the PCA map and the gap follow each new matrix (the digest it was
    computed from changes), not each event. A new batch's gallery and digest come a message after its matrix, so that
    their change events do not hold back S's paint, and the gallery's change then finds the matrix drawn."""
    with gr.Blocks() as demo:
        tab.build()
    fns = list(demo.fns.values())
    first = next(fn for fn in fns if fn.api_name == "clip_matrix")
    labels = lambda fn: {getattr(o, "label", None) or getattr(o, "elem_id", None) for o in fn.outputs}  # noqa: E731
    assert {"Cosine similarity S", "clip-loss"} <= labels(first)
    assert not {"Row softmax: image → text", "The shared space (PCA)"} & labels(first), "S first, alone"
    drawn = first.outputs[-1]
    assert isinstance(drawn, gr.State) and first.inputs[-1] is drawn
    then = [fn for fn in fns if (drawn._id, "change") in fn.targets]
    rest = next(fn for fn in then if "The shared space (PCA)" in labels(fn))
    assert {"Row softmax: image → text", "Column softmax: text → image", "The shared space (PCA)"} <= labels(rest)
    assert {"Images, texts and the gap between them"} <= set().union(*map(labels, then)), "the gap follows too"
    batch = next(fn for fn in fns if fn.api_name == "clip_batch")
    ids = lambda blocks: [b._id for b in blocks]  # noqa: E731
    assert ids(batch.outputs)[1:-1] == ids(first.outputs)[:-1], "a new batch brings its matrix"
    handed = batch.outputs[-1]
    assert isinstance(handed, gr.State) and handed is not drawn
    [second] = [fn for fn in fns if fn.trigger_after == batch._id and fn.trigger_only_on_success]
    gallery = second.outputs[0]
    assert second.fn is tab.hand_over and second.inputs == [handed] and ids(second.outputs) == ids([gallery, drawn,
                                                                                                     handed])
    assert isinstance(gallery, gr.Gallery) and gallery not in batch.outputs, "the gallery a message later"
    assert not any((o._id, "change") in fn.targets for fn in fns for o in batch.outputs), "nothing follows S at once"
    echo = [fn for fn in fns if (gallery._id, "change") in fn.targets and drawn in fn.inputs]
    assert len(echo) == 1 and ids(echo[0].outputs) == ids(first.outputs), \
        "a gallery changed in the page gets its matrix, unless it is drawn already"
    for fn in (batch, echo[0]):  # the progress shows on the gallery: nothing flickers over the plots meanwhile
        assert [block._id for block in fn.show_progress_on] == [gallery._id]


def test_a_new_batch_brings_its_matrix_and_the_gallery_echo_leaves_it(batch):
    texts, fig_s, md, S, lines, plane, handed = tab.batch_matrix(4, -1.5, TIER)
    gallery, key, emptied = tab.hand_over(handed)
    assert emptied is None, "the session keeps no copy once the page has it"
    assert len(gallery) == 4 and len(lines) == 4 and np.asarray(S).shape == (4, 4) and "τ" in md
    assert key == tab.common.digest(tab._images(gallery), lines, TIER)  # from the files the gallery sends
    assert all(isinstance(item, str) and Path(item).is_file() for item, _ in gallery)  # drawn ahead, PNGs already
    *_, S_alone, _ = tab.matrix(gallery, texts, -1.5, TIER)  # the same batch's matrix, computed on its own
    np.testing.assert_allclose(np.asarray(S), np.asarray(S_alone))
    np.testing.assert_allclose(np.asarray(fig_s.data[0].z), np.asarray(S_alone))
    skip = gr.skip()
    assert tab.similarity(gallery, texts, -1.5, TIER, key) == (skip,) * 6  # the same inputs: drawn already
    assert tab.similarity(gallery, texts, -1.5, "bundled", key)[-1] != key  # another tier is another matrix
    assert tab.similarity(gallery, texts.replace("\n", " \n"), -1.5, TIER, key) == (skip,) * 6  # spaces: the same
    edited = "a red star\n" + texts.split("\n", 1)[1]
    assert tab.similarity(gallery, edited, -1.5, TIER, key)[-1] == tab.common.digest(tab._images(gallery),
                                                                                    edited.split("\n"), TIER)


def test_unequal_counts_show_s_and_explain(batch):
    images, texts = batch
    *_, md, _, S, _ = tab.matrix(images, texts + "\na green star", -2, TIER)
    assert np.asarray(S).shape == (4, 5) and "needs **B matched pairs**" in md


@pytest.mark.parametrize("gallery, texts, log_tau, match", [
    ([], "a", -2, "No images yet"),
    ([Image.new("RGB", (32, 32))] * 17, "a", -2, "At most 16 images"),
    ([Image.new("RGB", (32, 32))], "\n \n", -2, "no text|No text|empty|at least one"),
    ([Image.new("RGB", (32, 32))], "x" * 10_000, -2, "300"),
    ([Image.new("RGB", (32, 32))], "a", float("nan"), "finite"),
    ([Image.new("RGB", (32, 32))], "a", float("inf"), "finite"),
    ([Image.new("RGB", (32, 32))], "a", 5.0, r"\[0.001, 100\]"),
])
def test_bad_inputs(tiny_pretrained, gallery, texts, log_tau, match):
    with pytest.raises(ValueError, match=match):
        tab.matrix(gallery, texts, log_tau, TIER)


def test_a_typed_or_keyboard_temperature_changes_the_loss(batch):
    """What an arrow key, PageUp or a typed value sends: a new log τ, and the loss shown follows it."""
    images, texts = batch
    *_, S, lines = tab.matrix(images, texts, -1.45, TIER)
    shown = {log_tau: tab.temperature(S, lines, log_tau)[2] for log_tau in (-1.45, -1.44, -1.0, 0.0)}
    losses = {log_tau: _loss(md) for log_tau, md in shown.items()}
    assert len(set(losses.values())) == 4, losses
    for log_tau, loss in losses.items():
        assert loss == pytest.approx(C.info_nce(np.asarray(S), 10**log_tau).clip, abs=1e-4)
        assert f"log₁₀ τ = {log_tau:.2f}" in shown[log_tau]


def test_the_temperature_slider_follows_every_way_of_moving_it():
    with gr.Blocks() as demo:
        tab.build()
    events = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    moved = events["clip_temperature"]
    slider = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "clip-log-tau")
    assert [(target, event) for target, event in moved.targets] == [(slider._id, "input")], "not .release: keys too"
    assert moved.trigger_mode == "always_last"
    assert [o.label for o in moved.outputs] == ["Row softmax: image → text", "Column softmax: text → image", None]
    assert slider.preprocess(None) is None, "/clip_matrix documents None as the model's τ"
    assert slider.preprocess(-1.5) == -1.5
    with pytest.raises(gr.Error, match="greater than maximum"):
        slider.preprocess(5.0)


def test_the_tab_opens_computed():
    """Every figure and every Markdown that a handler fills is filled on page load, with no button pressed."""
    with gr.Blocks() as demo:
        tab.build()
    filled = {id(block) for fn in demo.fns.values() for block in fn.outputs}
    on_load = {fn._id for fn in demo.fns.values() if any(event == "load" for _, event in fn.targets)}
    opened, growing = set(on_load), True
    while growing:  # follow the .then/.success chains that start on load, and the changes of the states they set
        states = {block._id for fn in demo.fns.values() if fn._id in opened for block in fn.outputs
                  if isinstance(block, gr.State)}
        chained = {fn._id for fn in demo.fns.values() if fn.trigger_after in opened
                   or any(event == "change" and block in states for block, event in fn.targets)} - opened
        growing, opened = bool(chained), opened | chained
    opened_outputs = {id(block) for fn in demo.fns.values() if fn._id in opened for block in fn.outputs}
    panels = [b for b in demo.blocks.values() if isinstance(b, (gr.Plot, gr.Markdown)) and id(b) in filled]
    empty = [b.label or b.elem_id or type(b).__name__ for b in panels if id(b) not in opened_outputs]
    assert len(panels) >= 14 and not empty, empty
    gallery = next(b for b in demo.blocks.values() if b.elem_id == "clip-gallery")
    assert len(gallery.value) == 8, "a Shapes batch is there on arrival"


def test_every_plot_is_named_and_no_button_is_a_step_behind():
    with gr.Blocks() as demo:
        tab.build()
    plots = [b for b in demo.blocks.values() if isinstance(b, gr.Plot)]
    assert len(plots) == 11 and all(p.label and p.label != "Plot" for p in plots), [p.label for p in plots]
    buttons = {b.value for b in demo.blocks.values() if isinstance(b, gr.Button)}
    assert {"🎲 Draw a random Shapes batch", "↔️ Measure the gap for the images and texts above",
            "🎯 Measure zero-shot accuracy"} <= buttons, "labels that the browser tests and benchmark click"
    assert not any("Compute the matrix" in label for label in buttons), "the matrix follows its inputs by itself"
    events = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    assert {event for _, event in events["clip_matrix"].targets} == {"input"}  # texts; the gallery's change: its own
    assert {event for _, event in events["clip_rank"].targets} == {"click", "submit"}  # 🔍 or Enter


def test_temperature_before_any_matrix_just_holds_the_new_tau():
    assert all(isinstance(out, type(gr.skip())) for out in tab.temperature(None, None, -1))
    assert all(isinstance(out, type(gr.skip())) for out in tab.temperature([], [], -1))


def test_walkthrough_measures_the_model_beside_the_lectures_numbers(batch):
    images, texts = batch
    walk, *_ = tab.matrix(images, texts, None, TIER)
    bundle, _ = tab._bundle(TIER)
    shapes_ = C.tower_shapes(bundle, texts.splitlines()[0])
    # the tiny model: 32 px in 8 px patches -> 4 x 4 + CLS = 17 tokens of width 32; text width 16; shared 16
    assert (shapes_.grid, shapes_.image_tokens, shapes_.image_width) == (4, 17, 32)
    assert (shapes_.text_width, shapes_.text_context, shapes_.shared) == (16, 16, 16)
    assert shapes_.text_tokens == len(bundle.tokenizer.encode(texts.splitlines()[0])) + 2  # + start and end of text
    assert "**50 × 768**" in walk and "**12 × 512**" in walk and "1 × 256" in walk  # the lecture's ViT-B/32
    assert "**17 × 32**" in walk and f"**{shapes_.text_tokens} × 16**" in walk and "S: 4 × 4" in walk
    assert "What to notice" in walk


def test_editable_reproduces_the_lecture():
    fig_r, fig_c, md = tab.editable(tab.lecture_table(), 1.0)
    assert "0.274" in md and "9.7156" in md and "7.3891" in md and "the lecture prints" in md
    assert "0.7607 (a slip)" in md and "0.76053" in md
    np.testing.assert_allclose(np.asarray(fig_c.data[0].z)[0, 0], 0.76053, atol=1e-5)
    np.testing.assert_allclose(np.asarray(fig_r.data[0].z).sum(1), 1.0, atol=1e-12)  # rows of a row softmax
    np.testing.assert_allclose(np.asarray(fig_c.data[0].z).sum(0), 1.0, atol=1e-12)
    assert fig_r.layout.title.text and fig_c.layout.title.text
    _, _, edited = tab.editable([[2.0, 0.5, 0.3], [0.2, 2.5, 0.4], [0.1, 0.6, 2.0]], 1.0)
    assert "the lecture prints" not in edited and "↺ The lecture's matrix" in edited
    for bad, t, match in (([[1, 2, 3], [4, 5, 6]], 1.0, "square"), ([["a", 1], [1, 1]], 1.0, "number"),
                          ([[1, 2], [3, 4]], 0.0, "temperature"), ([[1, 2], [3, 4]], float("nan"), "temperature"),
                          ([[1] * 9] * 9, 1.0, "8 × 8"), ([[1e9, 0], [0, 1]], 1.0, "finite number in")):
        with pytest.raises(ValueError, match=match):
            tab.editable(bad, t)


@pytest.mark.parametrize("size", range(2, 9))
def test_editable_grows_to_b_by_b(size):
    table = tab.resize_table(tab.lecture_table(), size)
    S = table.values
    assert S.shape == (size, size) and list(table.columns) == [f"T{j + 1}" for j in range(size)]
    keep = min(size, 3)
    np.testing.assert_array_equal(S[:keep, :keep], np.asarray(C.LECTURE_S)[:keep, :keep])  # the typed cells stay
    fig_r, fig_c, md = tab.editable(table, 0.5)
    loss = C.info_nce(S, 0.5)
    assert np.asarray(fig_r.data[0].z).shape == (size, size)
    assert f"**{loss.clip:.4f}**" in md and f"log B = {math.log(size):.3f}" in md
    if size >= 3:  # shrinking back to 3 x 3 gives the lecture's matrix again
        assert tab.resize_table(table, 3).values.tolist() == [list(r) for r in C.LECTURE_S]


@pytest.mark.parametrize("tau", [1e-3, 2e-3, 0.01])
def test_small_temperatures_give_finite_readable_numbers(tau):
    _, _, md = tab.editable(tab.resize_table(tab.lecture_table(), 8), tau)
    assert not re.search(r"\binf\b|\bnan\b", md, re.IGNORECASE), md
    assert not re.search(r"\d{12,}", md), "no number with dozens of digits"
    assert "\\times 10^{" in md and "log-sum-exp" in md  # e^{2000} is written 3.88 × 10^{868}
    assert tab._exp(2000.0) == "3.88 \\times 10^{868}" and tab._exp(2.0) == "7.3891"
    assert tab._num(1.1e-6, 3) == "1.10 \\times 10^{-6}" and tab._num(2000.0) == "2000"


def test_editable_says_a_mistake_once_in_place():
    said = tab._said_inline(tab.editable)
    r, c, md = said([["abc", 1], [1, 1]], 1.0)
    assert isinstance(r, type(gr.skip())) and isinstance(c, type(gr.skip()))
    assert "Every cell must be a number" in md


def test_zero_shot_rank_and_probe(batch):
    images, _ = batch
    fig, note = tab.zero_shot(images[0], "circle, star, square", "a {}", TIER)
    assert sum(fig.data[0].x) == pytest.approx(1.0, abs=1e-9) and "What to notice" in note
    with pytest.raises(ValueError):
        tab.zero_shot(images[0], "circle", "no placeholder", TIER)
    ranked = tab.rank_images(images, "a red star", TIER)
    scores = [float(caption.split("= ")[1]) for _, caption in ranked]
    assert scores == sorted(scores, reverse=True)
    fig, md = tab.word_order(None)
    assert len(fig.data) >= 1 and "bag of words" in md


def test_word_order_states_its_verdict_on_captions_you_write(tiny_pretrained):
    fig, md = tab.word_order(None, "a green star and a red circle", "a red star and a green circle")
    assert [bar.name for bar in fig.data] == ["bundled", "pretrained"]
    for bar in fig.data:
        assert list(bar.y) == ["a green star and a red<br>circle", "a red star and a green<br>circle"]  # whole
        assert sum(bar.x) == pytest.approx(1.0, abs=1e-9)
        p = float(bar.x[0])
        verdict = ("cannot tell the two orders apart" if abs(p - 0.5) < tab.BAG_OF_WORDS else
                   "picks the matching caption" if p > 0.5 else "picks the swapped caption")
        assert f"**{bar.name}** {verdict} (P = {p:.0%}" in md
    assert fig.layout.yaxis.automargin and fig.layout.title.text
    assert "do not hold the same words" not in md
    _, md = tab.word_order(None, "a red circle", "a blue square")
    assert "do not hold the same words" in md
    assert tab._verdict("m", 0.52, np.array([0.3, 0.29])).startswith("**m** cannot tell")
    assert tab._verdict("m", 0.9, np.array([0.3, 0.2])).startswith("**m** picks the matching caption")
    assert tab._verdict("m", 0.1, np.array([0.2, 0.3])).startswith("**m** picks the swapped caption")


def test_temperature_rejects_a_tampered_matrix():
    with pytest.raises(ValueError, match="not numeric"):
        tab.temperature([["a", "b"]], ["x", "y"], -1)
    with pytest.raises(ValueError, match="at most 16"):
        tab.temperature(np.zeros((20, 20)).tolist(), [], -1)
    with pytest.raises(ValueError, match=r"NaN|finite|inf"):
        tab.temperature([[float("nan"), 0.0], [0.0, 1.0]], ["a", "b"], -1)


def test_gap_draws_the_offset_at_its_length(batch):
    images, texts = batch
    fig, note = tab.gap(images, texts, TIER)
    bundle, _ = tab._bundle(TIER)
    _, size = C.modality_gap(C.encode_images(bundle, images), C.encode_texts(bundle, texts.splitlines()))
    assert f"= {size:.3f}**" in note and "What to notice" in note and "mean squared distance" in note
    arrow = fig.layout.annotations[0]
    assert (arrow.x - arrow.ax, arrow.y - arrow.ay) == pytest.approx((size, 0.0), abs=1e-6)
    assert [t.name for t in fig.data] == ["images", "texts", "centres"] and len(fig.data[0].x) == 4
    _, note = tab.gap(images, texts + "\na green star", TIER)
    assert "over 4 images and 5 texts" in note and "mean squared distance" not in note  # no matched pairs
    with pytest.raises(ValueError, match="No images yet"):
        tab.gap([], texts, TIER)
    with pytest.raises(ValueError, match="at least one text"):
        tab.gap(images, " \n ", TIER)


def test_prompt_ensemble_toggle(tiny_pretrained):
    templates = "a {}\na picture of a {}\nthere is a {}"
    bars, confusion, note = tab.prompt_ensemble("shape", templates, "one template", 12, TIER)
    accuracy = list(bars.data[0].x)
    assert list(bars.data[0].y) == ["a {}", "a picture of a {}", "there is a {}", "ensemble of 3"]
    assert bars.data[0].marker.color[0] != bars.data[0].marker.color[-1]  # the one template is highlighted
    assert np.asarray(confusion.data[0].z).sum() == 12 and np.trace(confusion.data[0].z) == round(12 * accuracy[0])
    assert f"**{accuracy[0]:.1%}**" in note and f"**{accuracy[-1]:.1%}**" in note and "What to notice" in note
    misses = C._EMBEDDINGS.misses
    bars2, confusion2, _ = tab.prompt_ensemble("shape", templates, "ensemble", 12, TIER)
    assert C._EMBEDDINGS.misses == misses, "the toggle re-encodes nothing"
    assert list(bars2.data[0].x) == accuracy and np.trace(confusion2.data[0].z) == round(12 * accuracy[-1])
    assert bars2.data[0].marker.color[-1] == bars.data[0].marker.color[0]


def test_ensemble_of_one_template_is_the_plain_zero_shot(batch):
    images, _ = batch
    bundle, _ = tab._bundle(TIER)
    labels = list(shapes.SHAPES)
    fig, _ = tab.zero_shot(images[0], ", ".join(labels), "a drawing of a {}", TIER)
    plain = dict(zip(fig.data[0].y, fig.data[0].x))  # prompt -> probability, as the zero-shot section shows it
    one = C.zero_shot(C.encode_images(bundle, images[:1])[0], C.class_embeddings(bundle, labels, ["a drawing of a {}"]),
                      bundle.logit_scale)
    assert [plain[f"a drawing of a {label}"] for label in labels] == pytest.approx(one.tolist(), abs=1e-6)
    bars, _, _ = tab.prompt_ensemble("colour", "a {} thing", "ensemble", 12, TIER)
    assert bars.data[0].x[0] == bars.data[0].x[1]  # the ensemble of one template is that template


@pytest.mark.parametrize("task, templates, mode, n, match", [
    ("size", "a {}", "ensemble", 12, "task must be one of shape, colour"),
    ("shape", "a {}", "both", 12, "prompts must be one of 'one template', 'ensemble'"),
    ("shape", "a {}\na shape", "ensemble", 12, r'exactly one "\{\}"'),
    ("shape", " \n", "ensemble", 12, "enter at least one template"),
    ("shape", "a {}", "ensemble", 500, r"labelled scenes must be in \[12, 96\]"),
    ("shape", "a {}", "ensemble", float("nan"), "labelled scenes must be a whole number"),
])
def test_prompt_ensemble_bad_input(tiny_pretrained, task, templates, mode, n, match):
    with pytest.raises(ValueError, match=match):
        tab.prompt_ensemble(task, templates, mode, n, TIER)


def test_default_templates():
    assert tab.default_templates("colour").splitlines()[0] == "a {} shape"
    assert all(t.count("{}") == 1 for task in tab.ENSEMBLE_TASKS for t in tab.ENSEMBLE_TEMPLATES[task])
    with pytest.raises(ValueError, match="task must be one of"):
        tab.default_templates("size")


def test_a_batch_larger_than_the_cache_is_encoded_whole(batch, monkeypatch):
    images, texts = batch
    bundle, _ = tab._bundle(TIER)
    monkeypatch.setattr(C, "_EMBEDDINGS", C.EmbeddingCache(max_items=2))  # 4 images evict their own first rows
    whole = C.encode_images(bundle, images)
    assert whole.shape[0] == 4 and len(C._EMBEDDINGS) == 2
    torch.testing.assert_close(whole[0], C.encode_images(bundle, images[:1])[0])
    assert C.encode_texts(bundle, texts.splitlines()).shape[0] == 4


def test_on_page_load_the_tab_waits_for_a_model_still_loading(monkeypatch):
    """The first event of the opening chain waits for the model (a bounded wait would end in a "still loading" error
    and leave the tab empty), and runs outside the device queue, where a wait would hold a slot."""
    waits = []
    real = common.load
    monkeypatch.setattr(common, "load", lambda family, tier, wait=common.LOAD_WAIT_S: (waits.append(wait),
                                                                                       real(family, tier))[1])
    assert tab.opening_log_tau("bundled") == tab.model_log_tau("bundled")
    assert waits[0] is None
    with gr.Blocks() as demo:
        tab.build()
    opening = [fn for fn in demo.fns.values() if getattr(fn.fn, "__wrapped__", None) is tab.opening_log_tau]
    assert opening and all(fn.fn.on_device is False for fn in opening)


def test_the_rest_of_the_matrix_refuses_damaged_kept_values_with_a_sentence():
    """What the page kept comes back from the browser, so it is checked again before any figure is drawn."""
    S, lines = [[0.5, 0.1], [0.2, 0.4]], ["a red circle", "a blue star"]
    plane = {"images": [[0.1, 0.2], [0.3, 0.4]], "texts": [[0.0, 0.1], [0.2, 0.3]], "ratio": [0.6, 0.3]}
    with pytest.raises(ValueError, match="PCA plane is damaged"):
        tab.views(S, lines, {"images": plane["images"]}, -2, "bundled")
    with pytest.raises(ValueError, match="does not fit the kept matrix"):
        tab.views(S, lines, {**plane, "texts": [[0.0, 0.1]]}, -2, "bundled")
    with pytest.raises(ValueError, match="not numeric"):
        tab.views([["x", 1], [2, 3]], lines, plane, -2, "bundled")
    walk, r_fig, _, pca = tab.views(S, lines, plane, -2, "bundled")
    np.testing.assert_allclose(np.asarray(r_fig.data[0].z).sum(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(pca.data[-1].x), [0.0, 0.2])  # the texts' markers, where they were kept
