"""CLIP tab handlers, called as plain functions on a tiny model standing in for the pretrained tier."""

import numpy as np
import pytest
import torch
from PIL import Image

from demos import clip as tab
from mmcore import clip as C
from mmcore import shapes

TIER = "pretrained"


@pytest.fixture
def batch(tiny_pretrained):
    return tab.new_batch(4, seed=3)


def test_new_batch_brings_true_captions():
    images, texts = tab.new_batch(5, seed=0)
    assert len(images) == 5 and len(texts.splitlines()) == 5
    with pytest.raises(ValueError, match="batch size must be in"):
        tab.new_batch(17)


def test_matrix_and_temperature_without_reencoding(batch):
    images, texts = batch
    s_fig, r_fig, c_fig, md, pca, S, lines, note = tab.matrix(images, texts, None, TIER)
    assert np.asarray(S).shape == (4, 4) and len(lines) == 4
    rows = np.asarray(r_fig.data[0].z)
    np.testing.assert_allclose(rows.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(c_fig.data[0].z).sum(0), 1.0, atol=1e-6)
    assert "mathcal{L}_{CLIP}" in md and "τ = 0.07" in md  # the model's own temperature by default
    misses = C._EMBEDDINGS.misses
    *_, md2 = tab.temperature(S, lines, -1.0)
    assert "τ = 0.1" in md2 and C._EMBEDDINGS.misses == misses
    expected = C.info_nce(np.asarray(S), 0.1).clip
    assert f"{expected:.4f}" in md2


def test_unequal_counts_show_s_and_explain(batch):
    images, texts = batch
    *_, md, _, S, _, _ = tab.matrix(images, texts + "\na green star", -2, TIER)
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


def test_editable_reproduces_the_lecture():
    fig_r, fig_c, md = tab.editable([list(r) for r in C.LECTURE_S], 1.0)
    assert "0.274" in md and "9.7156" in md and "7.3891" in md
    np.testing.assert_allclose(np.asarray(fig_c.data[0].z)[0, 0], 0.76053, atol=1e-5)
    for bad, t, match in (([[1, 2, 3], [4, 5, 6]], 1.0, "square"), ([["a", 1], [1, 1]], 1.0, "number"),
                          ([[1, 2], [3, 4]], 0.0, "temperature"), ([[1, 2], [3, 4]], float("nan"), "temperature")):
        with pytest.raises(ValueError, match=match):
            tab.editable(bad, t)


def test_zero_shot_rank_and_probe(batch):
    images, _ = batch
    fig, _ = tab.zero_shot(images[0], "circle, star, square", "a {}", TIER)
    assert sum(fig.data[0].x) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        tab.zero_shot(images[0], "circle", "no placeholder", TIER)
    ranked = tab.rank_images(images, "a red star", TIER)
    scores = [float(caption.split("= ")[1]) for _, caption in ranked]
    assert scores == sorted(scores, reverse=True)
    fig, md = tab.word_order(None)
    assert len(fig.data) >= 1 and "bag of words" in md


def test_temperature_rejects_a_tampered_matrix():
    with pytest.raises(ValueError, match="Compute the similarity matrix first"):
        tab.temperature(None, None, -1)
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
