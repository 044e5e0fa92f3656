"""CLIP tab handlers, called as plain functions on a tiny model standing in for the pretrained tier."""

import numpy as np
import pytest
from PIL import Image

from demos import clip as tab
from mmcore import clip as C

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
