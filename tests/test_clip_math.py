"""Tests for the CLIP maths in mmcore.clip: InfoNCE against open_clip.ClipLoss, the lecture's worked numbers,
input validation, softmax, zero-shot, PCA, the modality gap, prompt ensembles and the embedding cache. Tiny seeded
tensors only; no model is loaded.
"""

from __future__ import annotations

import math

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from mmcore import clip as C
from mmcore import shapes
from mmcore.clip import (
    LECTURE_PRINTED,
    LECTURE_S,
    EmbeddingCache,
    InfoNCE,
    cosine_similarity,
    ensemble_embeddings,
    fill_template,
    gap_plane,
    info_nce,
    lecture_example,
    modality_gap,
    parse_labels,
    parse_texts,
    pca_2d,
    softmax_cols,
    softmax_rows,
    validate_temperature,
    worked_example,
    zero_shot,
)


def _features(seed: int, batch: int, dim: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = F.normalize(torch.randn(batch, dim, generator=g, dtype=torch.float64), dim=-1)
    texts = F.normalize(torch.randn(batch, dim, generator=g, dtype=torch.float64), dim=-1)
    return images, texts


# --- InfoNCE ----------------------------------------------------------------------


@pytest.mark.parametrize("batch", [2, 5, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("logit_scale", [1.0, 1 / 0.07, 100.0])
def test_info_nce_matches_open_clip(batch: int, seed: int, logit_scale: float) -> None:
    images, texts = _features(seed, batch)
    expected = open_clip.ClipLoss()(images, texts, torch.tensor(logit_scale, dtype=torch.float64))
    ours = info_nce(images @ texts.T, temperature=1 / logit_scale)
    assert isinstance(ours, InfoNCE)
    assert ours.clip == pytest.approx(float(expected), abs=1e-5)
    assert ours.per_image.shape == ours.per_text.shape == (batch,)
    assert ours.image_to_text == pytest.approx(ours.per_image.mean())
    assert ours.text_to_image == pytest.approx(ours.per_text.mean())


def test_info_nce_matches_cross_entropy_per_direction() -> None:
    images, texts = _features(3, 4)
    logits = 10.0 * images @ texts.T
    labels = torch.arange(4)
    ours = info_nce(images @ texts.T, 0.1)
    assert ours.image_to_text == pytest.approx(float(F.cross_entropy(logits, labels)), abs=1e-9)
    assert ours.text_to_image == pytest.approx(float(F.cross_entropy(logits.T, labels)), abs=1e-9)


def test_info_nce_accepts_numpy_lists_and_float32() -> None:
    reference = info_nce(LECTURE_S, 0.5).clip
    assert info_nce(np.array(LECTURE_S), 0.5).clip == pytest.approx(reference)
    assert info_nce(torch.tensor(LECTURE_S, dtype=torch.float32), 0.5).clip == pytest.approx(reference, abs=1e-6)


def test_info_nce_is_stable_at_small_temperature() -> None:
    # e^{1/0.001} = e^1000 overflows float64; logsumexp must not
    loss = info_nce([[1.0, -1.0], [-1.0, 1.0]], 1e-3)
    assert math.isfinite(loss.clip) and loss.clip == pytest.approx(0.0, abs=1e-12)


def test_symmetric_loss_invariant_to_transpose() -> None:
    images, texts = _features(7, 5)
    S = images @ texts.T
    a, b = info_nce(S, 0.2), info_nce(S.T, 0.2)
    assert a.image_to_text == pytest.approx(b.text_to_image)
    assert a.text_to_image == pytest.approx(b.image_to_text)
    np.testing.assert_allclose(a.per_image, b.per_text)
    assert a.clip == pytest.approx(b.clip)


def test_lecture_example() -> None:
    ex = lecture_example()
    # the lecture prints 9.7157 = 7.3891 + 1.2214 + 1.1052 (rounded terms); the exact sum is 9.71563
    assert round(ex["t2i_denominator_rounded_terms"], 4) == LECTURE_PRINTED["denominator"] == 9.7157
    assert ex["t2i_denominator"] == pytest.approx(math.exp(2.0) + math.exp(0.2) + math.exp(0.1), rel=1e-12)
    assert round(ex["t2i_denominator"], 4) == 9.7156
    # the lecture prints 0.7607, a slip: 7.3891 / 9.7157 = 0.76053
    assert round(ex["t2i_probability"], 4) == 0.7605
    assert ex["t2i_probability"] == pytest.approx(LECTURE_PRINTED["probability"], abs=3e-4)
    assert round(ex["t2i_loss"], 3) == LECTURE_PRINTED["loss"] == 0.274
    # L1 (image -> text for I1) = -log(e^2 / (e^2 + e^0.5 + e^0.3))
    expected_l1 = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(0.5) + math.exp(0.3)))
    assert ex["i2t_loss"] == pytest.approx(expected_l1, rel=1e-12)
    loss = info_nce(LECTURE_S, 1.0)
    assert loss.per_text[0] == pytest.approx(ex["t2i_loss"])
    assert loss.per_image[0] == pytest.approx(ex["i2t_loss"])
    assert ex["clip"] == pytest.approx(loss.clip)


@pytest.mark.parametrize("batch", [2, 3, 5, 8])
@pytest.mark.parametrize("temperature", [1e-3, 0.07, 1.0, 100.0])
def test_worked_example_is_the_loss_term_by_term(batch: int, temperature: float) -> None:
    images, texts = _features(batch, batch)
    S = 3 * images @ texts.T  # scores up to 3, as in the lecture: at tau = 0.001 the terms reach e^3000
    loss = info_nce(S, temperature)
    for pair in range(batch):
        t2i, i2t = worked_example(S, temperature, pair)
        np.testing.assert_allclose(t2i.logits, (S[:, pair] / temperature).numpy())
        np.testing.assert_allclose(i2t.logits, (S[pair, :] / temperature).numpy())
        assert t2i.loss == pytest.approx(loss.per_text[pair], rel=1e-9, abs=1e-12)
        assert i2t.loss == pytest.approx(loss.per_image[pair], rel=1e-9, abs=1e-12)
        for q in (t2i, i2t):
            assert math.isfinite(q.log_denominator) and q.loss >= 0 and 0 <= q.probability <= 1
            assert q.log_denominator >= q.logits.max()  # log-sum-exp is at least its largest term


def test_worked_example_at_a_tiny_temperature_never_overflows() -> None:
    t2i, i2t = worked_example(LECTURE_S, 1e-3)  # e^{3.0 / 0.001} = e^3000 would be inf in float64
    assert t2i.log_denominator == pytest.approx(2000.0) and t2i.loss == pytest.approx(0.0, abs=1e-300)
    assert i2t.probability == pytest.approx(1.0)
    flipped = worked_example([[0.1, 0.0], [2.0, 1.0]], 1e-3)[0]  # the matched image loses its column by 1.9 / tau
    assert flipped.loss == pytest.approx(1900.0) and flipped.probability == 0.0
    with pytest.raises(ValueError, match="pair must index"):
        worked_example(np.zeros((2, 3)), 1.0)


@pytest.mark.parametrize(
    ("S", "match"),
    [
        (np.zeros((3, 4)), "got 3 images and 4 texts"),
        (np.zeros((0, 0)), "empty"),
        ([[1.0, float("nan")], [0.0, 1.0]], "NaN"),
        ([[1.0, 0.0], [float("inf"), 1.0]], "inf"),
        ([[1.0, 0.0], [float("-inf"), 1.0]], "inf"),
        (np.zeros(3), "2-D"),
    ],
)
def test_info_nce_rejects_bad_matrices(S, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        info_nce(S, 1.0)


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), float("-inf"), 0.0, -1.0, 1e6, 1e-4])
def test_temperature_rejected_with_range(temperature: float) -> None:
    with pytest.raises(ValueError, match=r"\[0\.001, 100\]"):
        validate_temperature(temperature)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(LECTURE_S, temperature)


def test_temperature_accepted() -> None:
    assert validate_temperature(1) == 1.0 and isinstance(validate_temperature(1), float)
    assert validate_temperature(1e-3) == 1e-3 and validate_temperature(100) == 100.0


# --- softmax, cosine, zero-shot -------------------------------------------------------


def test_softmax_rows_and_cols_sum_to_one() -> None:
    S = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    rows, cols = softmax_rows(S, 0.07), softmax_cols(S, 0.07)
    assert rows.shape == cols.shape == (3, 5)
    torch.testing.assert_close(rows.sum(dim=1), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(cols.sum(dim=0), torch.ones(5, dtype=torch.float64))
    # on the lecture matrix, column T1 at tau = 1 gives e^2 / 9.7156 = 0.7605 (the lecture prints 0.7607)
    assert round(float(softmax_cols(LECTURE_S, 1.0)[0, 0]), 4) == 0.7605


def test_cosine_similarity_normalises() -> None:
    images, texts = torch.tensor([[3.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 5.0], [2.0, 0.0], [1.0, 1.0]])
    S = cosine_similarity(images, texts)
    assert S.shape == (2, 3)
    torch.testing.assert_close(S[0], torch.tensor([0.0, 1.0, 1 / math.sqrt(2)]))
    with pytest.raises(ValueError, match="embedding width"):
        cosine_similarity(torch.ones(2, 3), torch.ones(2, 4))


def test_zero_shot_sums_to_one() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randn(4, 8, generator=g)
    probs = zero_shot(labels[2] * 3.0, labels, logit_scale=100.0)
    assert probs.shape == (4,)
    assert probs.sum() == pytest.approx(1.0)
    assert int(probs.argmax()) == 2
    np.testing.assert_allclose(zero_shot(labels[2:3], labels, 100.0), probs, rtol=1e-5, atol=1e-12)
    with pytest.raises(ValueError, match="logit_scale"):
        zero_shot(labels[0], labels, 0.0)


# --- PCA -----------------------------------------------------------------------------


def test_pca_2d_shapes_and_determinism() -> None:
    g = torch.Generator().manual_seed(0)
    images, texts = torch.randn(4, 8, generator=g), torch.randn(3, 8, generator=g)
    xy_i, xy_t, ratio = pca_2d(images, texts)
    assert xy_i.shape == (4, 2) and xy_t.shape == (3, 2) and ratio.shape == (2,)
    assert 0 < ratio[1] <= ratio[0] and ratio.sum() <= 1 + 1e-12
    again = pca_2d(images.numpy().copy(), texts.numpy().copy())
    np.testing.assert_allclose(again[0], xy_i)
    np.testing.assert_allclose(again[1], xy_t)
    # negating every input flips the data, not the plot's orientation convention: loadings stay positive-dominant
    flipped = pca_2d(-images, -texts)
    np.testing.assert_allclose(np.abs(flipped[0]), np.abs(xy_i), atol=1e-10)


def _flip_svd(monkeypatch) -> None:
    """Make numpy's SVD return each singular pair with the opposite sign: an equally valid answer."""
    svd = np.linalg.svd

    def flipped(*args, **kwargs):
        u, s, vt = svd(*args, **kwargs)
        return -u, s, -vt

    monkeypatch.setattr(np.linalg, "svd", flipped)


def test_pca_2d_does_not_depend_on_the_svds_signs(monkeypatch) -> None:
    g = torch.Generator().manual_seed(4)
    images, texts = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    xy_i, xy_t, ratio = pca_2d(images, texts)
    _flip_svd(monkeypatch)
    again = pca_2d(images, texts)
    np.testing.assert_allclose(again[0], xy_i, atol=1e-12)
    np.testing.assert_allclose(again[1], xy_t, atol=1e-12)
    np.testing.assert_allclose(again[2], ratio)


def test_gap_plane_does_not_depend_on_the_svds_signs(monkeypatch) -> None:
    images, texts = _clusters(5)
    xy_i, xy_t = gap_plane(images, texts)
    _flip_svd(monkeypatch)
    again = gap_plane(images, texts)
    np.testing.assert_allclose(again[0], xy_i, atol=1e-12)
    np.testing.assert_allclose(again[1], xy_t, atol=1e-12)


@pytest.mark.parametrize(
    ("images", "texts", "n_i", "n_t"),
    [
        (np.ones((1, 4)), np.zeros((0, 4)), 1, 0),  # one point
        (np.zeros((0, 4)), np.zeros((0, 4)), 0, 0),  # nothing
        (np.ones((2, 4)), 2 * np.ones((1, 4)), 2, 1),  # identical after normalising: rank 0
        (np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), 1, 1),  # two points: rank 1
    ],
)
def test_pca_2d_degenerate(images: np.ndarray, texts: np.ndarray, n_i: int, n_t: int) -> None:
    xy_i, xy_t, ratio = pca_2d(images, texts)
    assert xy_i.shape == (n_i, 2) and xy_t.shape == (n_t, 2) and ratio.shape == (2,)
    assert np.isfinite(xy_i).all() and np.isfinite(xy_t).all() and np.isfinite(ratio).all()
    assert ratio[1] == 0.0
    if n_i + n_t == 2 and ratio[0] > 0:
        assert ratio[0] == pytest.approx(1.0)
        assert (xy_i[:, 1] == 0).all() and (xy_t[:, 1] == 0).all()


# --- the modality gap and prompt ensembles ----------------------------------------------


def _clusters(seed: int, n_images: int = 6, n_texts: int = 5, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Two clusters around different centres, rows of random lengths (the functions normalise them)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n_images, dim, generator=g, dtype=torch.float64) + 3 * torch.eye(dim, dtype=torch.float64)[0]
    texts = torch.randn(n_texts, dim, generator=g, dtype=torch.float64) + 3 * torch.eye(dim, dtype=torch.float64)[1]
    lengths = torch.rand(n_images + n_texts, 1, generator=g, dtype=torch.float64) * 5 + 0.1
    return images * lengths[:n_images], texts * lengths[n_images:]


def test_modality_gap_is_the_difference_of_the_normalised_means() -> None:
    images, texts = _clusters(0)
    offset, size = modality_gap(images, texts)
    expected = F.normalize(images, dim=-1).mean(0) - F.normalize(texts, dim=-1).mean(0)
    np.testing.assert_allclose(offset, expected.numpy(), atol=1e-12)
    assert size == pytest.approx(float(expected.norm()))
    assert size > 0.5  # the clusters sit around different axes
    assert modality_gap(texts, images)[1] == pytest.approx(size)  # |offset| is symmetric, the sign is not
    np.testing.assert_allclose(modality_gap(texts, images)[0], -offset)
    assert modality_gap(images, F.normalize(images, dim=-1) * 7)[1] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least one image and one text"):
        modality_gap(images, np.zeros((0, 8)))
    with pytest.raises(ValueError, match="width D"):
        modality_gap(images, texts[:, :4])


@pytest.mark.parametrize(("n_images", "n_texts"), [(6, 5), (4, 4), (1, 1), (1, 3)])
def test_gap_plane_shows_the_gap_at_its_length(n_images: int, n_texts: int) -> None:
    images, texts = _clusters(1, n_images, n_texts)
    xy_i, xy_t = gap_plane(images, texts)
    assert xy_i.shape == (n_images, 2) and xy_t.shape == (n_texts, 2)
    centre_gap = xy_i.mean(0) - xy_t.mean(0)
    np.testing.assert_allclose(centre_gap, [modality_gap(images, texts)[1], 0.0], atol=1e-10)
    # the plane is an orthogonal projection: distances in it never exceed those in the full space
    full = torch.cdist(F.normalize(images, dim=-1), F.normalize(texts, dim=-1)).numpy()
    assert (np.linalg.norm(xy_i[:, None] - xy_t[None], axis=-1) <= full + 1e-10).all()


def test_ensemble_of_one_template_is_the_plain_zero_shot() -> None:
    g = torch.Generator().manual_seed(2)
    prompts = torch.randn(1, 4, 8, generator=g, dtype=torch.float64) * 3  # one template, 4 classes
    image = torch.randn(8, generator=g, dtype=torch.float64)
    one = ensemble_embeddings(prompts)
    torch.testing.assert_close(one, F.normalize(prompts[0], dim=-1))
    np.testing.assert_allclose(zero_shot(image, one, 100.0), zero_shot(image, prompts[0], 100.0), atol=1e-12)


def test_ensemble_normalises_before_and_after_averaging() -> None:
    g = torch.Generator().manual_seed(3)
    prompts = torch.randn(5, 3, 8, generator=g, dtype=torch.float64)  # 5 templates, 3 classes
    prompts = prompts * torch.rand(5, 3, 1, generator=g, dtype=torch.float64) * 10  # lengths that differ a lot
    ensembled = ensemble_embeddings(prompts.numpy())
    torch.testing.assert_close(ensembled.norm(dim=-1), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(ensembled, F.normalize(F.normalize(prompts, dim=-1).mean(0), dim=-1))
    unweighted = F.normalize(prompts.mean(0), dim=-1)  # long embeddings would outvote short ones without step 1
    assert not torch.allclose(ensembled, unweighted)
    for bad in (torch.zeros(3, 8), torch.zeros(0, 3, 8), torch.zeros(2, 0, 8)):
        with pytest.raises(ValueError, match="templates, classes, D"):
            ensemble_embeddings(bad)


# --- text input -------------------------------------------------------------------------


def test_parse_texts() -> None:
    assert parse_texts("  a red circle \n\n   \na blue square\n") == ["a red circle", "a blue square"]
    assert parse_texts("a cat 🐱\n🚀") == ["a cat 🐱", "🚀"]
    assert len(parse_texts("\n".join(["x"] * 16))) == 16


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "at least one"),
        ("  \n\t\n ", "at least one"),
        ("\n".join(f"t{i}" for i in range(17)), "at most 16 texts, got 17"),
        ("ok\n" + "x" * 10_000, "line 2"),
    ],
)
def test_parse_texts_rejects(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_texts(text)


def test_parse_labels_and_template() -> None:
    assert parse_labels("circle, square\ntriangle,, ") == ["circle", "square", "triangle"]
    with pytest.raises(ValueError, match="at least one"):
        parse_labels(" , \n")
    assert len(parse_labels(", ".join(f"{c} {s}" for c in shapes.COLORS for s in shapes.SHAPES))) == 36
    with pytest.raises(ValueError, match="at most 36 labels, got 37"):
        parse_labels(",".join(f"label{i}" for i in range(37)))
    assert fill_template("a photo of a {}.", "circle") == "a photo of a circle."
    for bad in ("a photo", "{} and {}", "a {0}"):
        with pytest.raises(ValueError, match="exactly one"):
            fill_template(bad, "circle")


# --- cache -------------------------------------------------------------------------------


def test_cache_hits_misses_and_content_keys() -> None:
    cache = EmbeddingCache(max_items=4)
    arr = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    key = EmbeddingCache.key_image(arr, "clip-shapes")
    assert EmbeddingCache.key_image(arr.copy(), "clip-shapes") == key  # same content, another object
    assert EmbeddingCache.key_image(arr, "ViT-B-32") != key  # another model
    assert EmbeddingCache.key_image(arr.reshape(3, 2, 2), "clip-shapes") != key  # same bytes, another shape
    assert EmbeddingCache.key_image(arr.astype(np.int16), "clip-shapes") != key
    assert EmbeddingCache.key_text("a circle", "m") == EmbeddingCache.key_text("a circle", "m")
    assert EmbeddingCache.key_text("a circle", "m") != EmbeddingCache.key_text("a square", "m")

    assert cache.get(key) is None and (cache.hits, cache.misses) == (0, 1)
    cache.put(key, torch.ones(3))
    torch.testing.assert_close(cache.get(key), torch.ones(3))
    assert (cache.hits, cache.misses) == (1, 1) and len(cache) == 1


def test_cache_lru_eviction() -> None:
    cache = EmbeddingCache(max_items=2)
    cache.put("a", torch.zeros(1))
    cache.put("b", torch.zeros(1))
    assert cache.get("a") is not None  # a is now most recent
    cache.put("c", torch.zeros(1))  # evicts b
    assert len(cache) == 2
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    with pytest.raises(ValueError, match="max_items"):
        EmbeddingCache(max_items=0)


def test_cached_encoding_counts_each_lookup_once(monkeypatch) -> None:
    cache = EmbeddingCache(max_items=8)
    monkeypatch.setattr(C, "_EMBEDDINGS", cache)
    encoded = []

    def encode(indices: list[int]) -> torch.Tensor:
        encoded.append(list(indices))
        return torch.tensor([[float(i), 1.0] for i in indices])

    keys = ["a", "b", "a", "c"]  # "a" twice in one batch: looked up and encoded once
    out = C._cached(keys, encode)
    assert encoded == [[0, 1, 3]] and (cache.hits, cache.misses) == (0, 3) and len(cache) == 3
    torch.testing.assert_close(out[2], out[0])
    again = C._cached(keys, encode)
    assert encoded == [[0, 1, 3]] and (cache.hits, cache.misses) == (3, 3), "a stored miss is a miss, then hits"
    torch.testing.assert_close(again, out)


def test_cached_encoding_of_a_batch_larger_than_the_cache(monkeypatch) -> None:
    monkeypatch.setattr(C, "_EMBEDDINGS", EmbeddingCache(max_items=2))
    out = C._cached([f"k{i}" for i in range(5)], lambda idx: torch.tensor([[float(i)] for i in idx]))
    assert out.shape == (5, 1) and out[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len(C._EMBEDDINGS) == 2 and "k4" in C._EMBEDDINGS and "k0" not in C._EMBEDDINGS
