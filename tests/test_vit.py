"""Tests for mmcore.vit on a tiny random-init ViT (32 px, 8 px patches -> 16 patches + CLS, D = 32, 2 layers).

Nothing is downloaded. Rollout, relevance and mean attention distance are checked against plain loop references.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from mmcore import vit

torch.set_num_threads(1)

LAYERS, HEADS, TOKENS = 2, 4, 17  # the tiny model: 2 layers, 4 heads, 1 + (32 / 8)^2 tokens


@pytest.fixture(scope="module")
def model():
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=LAYERS,
                       num_attention_heads=HEADS, intermediate_size=64, num_labels=3)
    tiny = ViTForImageClassification(config)  # transformers 5: the constructor takes no attn_implementation
    tiny.set_attn_implementation("eager")  # SDPA returns no attention maps
    return tiny.eval()


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def attentions(model, pixels) -> tuple[torch.Tensor, ...]:
    return vit.forward(model, pixels)[1]


@pytest.fixture
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))


def _random_attention(rng: np.random.Generator, heads: int = HEADS, tokens: int = TOKENS) -> torch.Tensor:
    """(1, heads, tokens, tokens) with rows summing to 1."""
    a = rng.random((1, heads, tokens, tokens)) + 1e-3
    return torch.tensor(a / a.sum(-1, keepdims=True), dtype=torch.float32)


# --- patches ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("input_size", "patch_size", "expected"), [
    (224, 16, 196), (224, 14, 256), (224, 32, 49), (224, 8, 784), (448, 16, 784), (448, 14, 1024),
    (448, 32, 196), (448, 8, 3136), (112, 16, 49), (112, 14, 64), (112, 8, 196), (64, 8, 64), (64, 32, 4),
])
def test_num_patches(input_size, patch_size, expected):
    assert vit.num_patches(input_size, patch_size) == expected
    assert vit.grid_size(input_size, patch_size) ** 2 == expected
    assert patch_size in vit.PATCH_SIZES


@pytest.mark.parametrize(("input_size", "patch_size"), [(224, 32 + 1), (100, 16), (112, 32), (0, 16), (-224, 16),
                                                        (224, 0)])
def test_num_patches_rejects_non_multiples(input_size, patch_size):
    with pytest.raises(ValueError, match="patch_size"):
        vit.num_patches(input_size, patch_size)


def test_offered_input_sizes_are_multiples_of_the_patch_size():
    offered = [(size, p) for p in vit.PATCH_SIZES for size in vit.input_sizes(p)]
    assert all(size % p == 0 for size, p in offered) and len(offered) == 26  # of the 32 pairs, 6 cannot be cut
    assert vit.input_sizes(14) == [112, 224, 448] and 112 not in vit.input_sizes(32)
    assert vit.nearest_input_size(224, 14) == 224  # kept when P divides it
    assert vit.nearest_input_size(64, 14) == 112 and vit.nearest_input_size(112, 32) == 128  # the tie: the larger


def test_lecture_numbers():
    lec = vit.LECTURE
    assert (lec.image_size, lec.patch_size, lec.grid, lec.patches, lec.tokens) == (224, 16, 14, 196, 197)
    assert (lec.patch_dim, lec.width, lec.heads, lec.head_dim, lec.mlp) == (768, 768, 12, 64, 3072)


def test_dims_of_the_model(model):
    d = vit.dims(model.config)
    assert (d.grid, d.patches, d.tokens, d.width, d.heads, d.head_dim, d.mlp, d.layers, d.classes) == (
        4, 16, 17, 32, HEADS, 8, 64, LAYERS, 3)


def test_patch_grid_size(image):
    assert vit.patch_grid(image, 16, 224).size == (448, 448)  # 224 upscaled x2
    assert vit.patch_grid(image, 8, 64).size == (448, 448)  # 64 upscaled x7, labelled 8 x 8 grid
    assert vit.patch_grid(image, 8, 224).size == (448, 448)  # 28 x 28: the first row and column labelled
    assert vit.patch_grid(image, 16, 480).size == (480, 480)
    assert vit.patch_grid(image.convert("L"), 32, 224).mode == "RGB"


def _label_widths(picture: Image.Image, cells: list[tuple[int, int]], cell: int) -> list[int]:
    """The width in pixels of the dark index box in the top-left corner of each (row, col) cell of a grid drawn
    over a white image."""
    dark = np.asarray(picture.convert("L")) < 128
    return [int(dark[row * cell:row * cell + cell // 2, col * cell:(col + 1) * cell].sum(axis=1).max())
            for row, col in cells]


@pytest.mark.parametrize(("input_size", "patch_size"), [(64, 8), (224, 16), (224, 8)])
def test_patch_grid_labels_follow_token_order(input_size, patch_size):
    """Row-major indices in the corner cells: a label with more digits draws a wider box (8 x 8: "0", "7", "56",
    "63"; 14 x 14, first row and column only: "0", "13", "182"). Reversed or transposed labels break the order."""
    white = Image.new("RGB", (input_size, input_size), "white")
    grid = input_size // patch_size
    cells = [(0, 0), (0, grid - 1), (grid - 1, 0)] + [(grid - 1, grid - 1)] * vit.labels_every_patch(input_size,
                                                                                                      patch_size)
    widths = _label_widths(vit.patch_grid(white, patch_size, input_size), cells, 448 // grid)
    digits = [len(str(row * grid + col)) for row, col in cells]
    assert min(widths) > 0
    for (w_a, d_a) in zip(widths, digits):
        for (w_b, d_b) in zip(widths, digits):
            assert d_a >= d_b or w_a < w_b, (cells, digits, widths)


def test_labels_every_patch_only_where_there_is_room():
    assert vit.labels_every_patch(64, 8) and vit.labels_every_patch(224, 32)
    assert not vit.labels_every_patch(224, 16) and not vit.labels_every_patch(448, 8)


def test_patch_sequence_size(image):
    strip = vit.patch_sequence(image, 16, 224, count=16)  # 16 px patches -> 48 px tiles, 6 px gaps, 2 rows of 8
    assert strip.size == (8 * 54 + 6, 2 * (48 + 18 + 6) + 6)
    assert vit.patch_sequence(image, 14, 224, count=4).size == (4 * 62 + 6, 56 + 18 + 6 + 6)
    with pytest.raises(ValueError, match="count"):
        vit.patch_sequence(image, 32, 64, count=5)  # only 4 patches
    with pytest.raises(ValueError, match="per_row"):
        vit.patch_sequence(image, 16, 224, per_row=0)


def test_patch_sequence_reads_the_patches_row_by_row():
    """Each patch of a 4 x 4 grid painted a grey of its own index: the tiles must come in token order."""
    values = np.arange(16, dtype=np.uint8).reshape(4, 4) * 15  # (row, col) -> grey 15 * index
    picture = Image.fromarray(np.kron(values, np.ones((8, 8), np.uint8))).convert("RGB")  # 32 x 32, P = 8
    strip = np.asarray(vit.patch_sequence(picture, 8, 32, count=6, start=5, per_row=4))
    tile, gap, label_h = 48, 6, 18
    for k, index in enumerate(range(5, 11)):
        line, place = divmod(k, 4)
        y, x = gap + line * (tile + label_h + gap) + tile // 2, gap + place * (tile + gap) + tile // 2
        assert tuple(strip[y, x]) == (15 * index,) * 3, f"tile {k} should be patch {index}"


# --- positions -------------------------------------------------------------------------------------------------


def test_sinusoidal_encoding_formula():
    pe = vit.sinusoidal_encoding(10, 8)
    assert pe.shape == (10, 8)
    assert pe[0, 0] == 0.0 and pe[0, 1] == 1.0
    assert pe[1, 0] == pytest.approx(math.sin(1.0)) and pe[1, 1] == pytest.approx(math.cos(1.0))
    assert pe[3, 2] == pytest.approx(math.sin(3 / 10000 ** (2 / 8)))  # i = 1
    assert pe[5, 7] == pytest.approx(math.cos(5 / 10000 ** (6 / 8)))  # i = 3


@pytest.mark.parametrize("d_model", [0, 1, 7])
def test_sinusoidal_encoding_rejects_bad_width(d_model):
    with pytest.raises(ValueError, match="d_model"):
        vit.sinusoidal_encoding(4, d_model)


def test_position_similarity(model):
    pos = model.vit.embeddings.position_embeddings[0, 1:]  # (16, 32): patches only
    sim = vit.position_similarity(pos)
    assert sim.shape == (16, 16)
    torch.testing.assert_close(sim, sim.T)
    torch.testing.assert_close(sim.diagonal(), torch.ones(16))


def test_patch_position_embeddings_drop_the_cls_row(model):
    pos = vit.patch_position_embeddings(model)
    assert pos.shape == (16, 32)
    torch.testing.assert_close(pos, model.vit.embeddings.position_embeddings[0, 1:].detach())


def test_similarity_by_relation_reads_a_2d_layout():
    grid = 5
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    angles = np.stack([rows, cols], 1)[:, :, None] * np.array([0.6, 1.3])  # (N, 2, 2): two frequencies per axis
    smooth = torch.tensor(np.concatenate([np.sin(angles), np.cos(angles)], 1).reshape(grid * grid, -1))
    rel = vit.similarity_by_relation(vit.position_similarity(smooth), grid)
    assert list(rel) == ["neighbours", "same row or column", "elsewhere"]
    assert rel["neighbours"] > rel["same row or column"] > rel["elsewhere"]
    eye = vit.similarity_by_relation(torch.eye(grid * grid), grid)  # unrelated positions: all zero
    assert eye == {"neighbours": 0.0, "same row or column": 0.0, "elsewhere": 0.0}
    assert list(vit.similarity_by_relation(torch.eye(4), 2)) == ["neighbours", "elsewhere"]
    with pytest.raises(ValueError, match="shape"):
        vit.similarity_by_relation(torch.eye(16), 3)


def test_embedding_filters_are_principal_components_with_a_fixed_sign(model):
    components, ratio = vit.embedding_filters(model, count=28)
    assert components.shape == (28, 8, 8, 3) and ratio.shape == (28,)
    assert np.all(np.diff(ratio) <= 1e-12) and 0 < ratio.sum() <= 1
    flat = components.reshape(28, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(28), atol=1e-8)  # orthonormal directions
    peaks = flat[np.arange(28), np.abs(flat).argmax(1)]
    assert (peaks > 0).all(), "every component's largest entry is positive, so its picture never flips"
    # the projection's first principal direction, by brute force: the centred filters' top right-singular vector
    weight = model.vit.embeddings.patch_embeddings.projection.weight.detach().double()
    filters = weight.permute(0, 2, 3, 1).reshape(32, -1).numpy()
    top = np.linalg.eigh(np.cov(filters.T))[1][:, -1]
    np.testing.assert_allclose(np.abs(flat[0]), np.abs(top), atol=1e-6)
    assert vit.embedding_filters(model, count=10_000)[0].shape[0] == 32  # capped at min(D, P^2 C)
    with pytest.raises(ValueError, match="count"):
        vit.embedding_filters(model, count=0)


# --- attention -------------------------------------------------------------------------------------------------


def test_attentions_are_real_probabilities(attentions):
    assert len(attentions) == LAYERS
    for a in attentions:
        assert a.shape == (1, HEADS, TOKENS, TOKENS)
        torch.testing.assert_close(a.sum(-1), torch.ones(1, HEADS, TOKENS), atol=1e-5, rtol=0)


def test_forward_without_eager_attention_fails_loudly(model, pixels):
    model.set_attn_implementation("sdpa")
    try:
        with pytest.raises(RuntimeError, match="eager"):
            vit.forward(model, pixels)
    finally:
        model.set_attn_implementation("eager")


def _reference_rollout(attentions, discard_ratio, head_fusion):
    """Rollout with explicit loops: fuse heads, drop the lowest entries (never CLS->CLS), + I, normalise."""
    t = attentions[0].shape[-1]
    result = np.eye(t)
    for layer in attentions:
        heads = layer[0].double().numpy()
        fused = np.zeros((t, t))
        for i in range(t):
            for j in range(t):
                fused[i, j] = {"mean": np.mean, "max": np.max, "min": np.min}[head_fusion](heads[:, i, j])
        k = int(t * t * discard_ratio)
        for flat_index in np.argsort(fused.flatten(), kind="stable")[:k]:
            if flat_index != 0:  # jacobgil/vit-explain keeps only CLS->CLS
                i, j = divmod(int(flat_index), t)
                fused[i, j] = 0.0
        a = fused + np.eye(t)
        for i in range(t):
            a[i] /= a[i].sum()
        result = a @ result
    return result


@pytest.mark.parametrize("head_fusion", vit.HEAD_FUSIONS)
@pytest.mark.parametrize("discard_ratio", [0.0, 0.5, 0.9])
def test_rollout_matches_reference(head_fusion, discard_ratio):
    rng = np.random.default_rng(42)
    attentions = [_random_attention(rng) for _ in range(3)]
    rollout = vit.attention_rollout(attentions, discard_ratio=discard_ratio, head_fusion=head_fusion)
    np.testing.assert_allclose(rollout.numpy(), _reference_rollout(attentions, discard_ratio, head_fusion),
                               atol=1e-6)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(TOKENS), atol=1e-5, rtol=0)


def test_rollout_discards_in_the_cls_row_and_column_but_keeps_cls_to_cls():
    """A map whose weakest entries are CLS->patch and patch->CLS: discarding zeroes them, as the reference does."""
    t = 5
    fused = torch.full((t, t), 0.5)
    fused[0, 1:] = fused[1:, 0] = 0.01  # 8 weak entries in the CLS row and column
    fused[0, 0] = 0.001  # the weakest of all, and protected
    fused = fused / fused.sum(-1, keepdim=True)
    rollout = vit.attention_rollout([fused.expand(1, 1, t, t)], discard_ratio=9 / 25)  # the 9 lowest entries
    assert rollout[0, 1:].abs().max() == 0 and rollout[1:, 0].abs().max() == 0
    assert rollout[0, 0] == 1.0


def test_rollout_on_model(attentions):
    rollout = vit.attention_rollout(attentions)
    assert rollout.shape == (TOKENS, TOKENS)
    squeezed = vit.attention_rollout([a[0] for a in attentions])  # (H, T, T) is accepted too
    torch.testing.assert_close(rollout, squeezed)
    heatmap = vit.cls_rollout_map(rollout, grid=4)
    assert heatmap.shape == (4, 4) and heatmap.sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(("kwargs", "match"), [({"discard_ratio": 1.0}, "discard_ratio"),
                                               ({"discard_ratio": -0.1}, "discard_ratio"),
                                               ({"head_fusion": "median"}, "head_fusion")])
def test_rollout_validation(attentions, kwargs, match):
    with pytest.raises(ValueError, match=match):
        vit.attention_rollout(attentions, **kwargs)


def _reference_relevance(attentions, gradients):
    """Relevance with explicit loops: R = I; per layer, R += mean over heads of max(grad * A, 0), times R."""
    t = attentions[0].shape[-1]
    relevance = np.eye(t)
    for layer, grad in zip(attentions, gradients):
        a, g = layer[0].double().numpy(), grad[0].double().numpy()
        fused = np.zeros((t, t))
        for i in range(t):
            for j in range(t):
                fused[i, j] = np.mean([max(g[h, i, j] * a[h, i, j], 0.0) for h in range(a.shape[0])])
        relevance = relevance + fused @ relevance
    return relevance


def test_relevance_rollout_matches_reference():
    rng = np.random.default_rng(7)
    attentions = [_random_attention(rng) for _ in range(3)]
    gradients = [torch.tensor(rng.normal(size=(1, HEADS, TOKENS, TOKENS)), dtype=torch.float32) for _ in range(3)]
    relevance = vit.relevance_rollout(attentions, gradients)
    np.testing.assert_allclose(relevance.numpy(), _reference_relevance(attentions, gradients), rtol=1e-5, atol=1e-6)
    assert (relevance >= 0).all()
    # with no positive evidence R stays I: row 0 gives no patch any mass, and the map falls back to uniform
    nothing = vit.relevance_rollout(attentions, [-g.abs() for g in gradients])
    torch.testing.assert_close(nothing, torch.eye(TOKENS))
    torch.testing.assert_close(vit.cls_rollout_map(nothing, grid=4), torch.full((4, 4), 1 / 16))


def test_relevance_validation(attentions):
    grads = [torch.ones_like(a) for a in attentions]
    with pytest.raises(ValueError, match="one gradient per attention map"):
        vit.relevance_rollout(attentions, grads[:1])
    with pytest.raises(ValueError, match="match the attentions"):
        vit.relevance_rollout(attentions, [g[..., :-1, :-1] for g in grads])
    with pytest.raises(ValueError, match="eager"):
        vit.relevance_rollout([], [])


def test_attention_gradients_on_model(model, pixels):
    logits, index, atts, grads = vit.attention_gradients(model, pixels)
    expected, expected_atts = vit.forward(model, pixels)
    torch.testing.assert_close(logits, expected[0])
    assert index == int(expected[0].argmax())  # None means the predicted class
    assert len(atts) == len(grads) == LAYERS and all(g.shape == (HEADS, TOKENS, TOKENS) for g in grads)
    torch.testing.assert_close(atts[0], expected_atts[0][0])
    assert all(p.grad is None for p in model.parameters()), "only the attentions get gradients"
    # in the last block only the CLS query's attention reaches the head: every other row's gradient is exactly zero
    assert grads[-1][:, 1:].abs().max() == 0 and grads[-1][:, 0].abs().max() > 0
    relevance = vit.cls_rollout_map(vit.relevance_rollout(atts, grads), grid=4)
    assert (relevance >= 0).all() and relevance.sum().item() == pytest.approx(1.0, abs=1e-5)
    other = vit.cls_rollout_map(vit.relevance_rollout(*vit.attention_gradients(model, pixels, (index + 1) % 3)[2:]), 4)
    assert not torch.allclose(relevance, other), "relevance depends on the class, unlike rollout"
    with pytest.raises(ValueError, match="class_index"):
        vit.attention_gradients(model, pixels, 3)
    with torch.inference_mode():
        frozen = pixels.clone()
    torch.testing.assert_close(vit.attention_gradients(model, frozen)[3][0], grads[0])


def test_logit_lens_ends_at_the_models_prediction(model, pixels):
    lens = vit.logit_lens(model, pixels)
    logits, _ = vit.forward(model, pixels)
    assert lens.shape == (LAYERS, 3)
    torch.testing.assert_close(lens[-1], logits[0].float(), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(lens[0], lens[-1]), "the first block's reading is not the final answer"
    with pytest.raises(ValueError, match="pixel_values"):
        vit.logit_lens(model, pixels[0])


def test_cls_attention(attentions):
    one = vit.cls_attention(attentions, layer=1, head=2)
    torch.testing.assert_close(one.flatten(), attentions[1][0, 2, 0, 1:])
    mean = vit.cls_attention(attentions, layer=0, head=None)
    torch.testing.assert_close(mean.flatten(), attentions[0][0, :, 0, 1:].mean(0))
    for layer, head, match in [(2, 0, "layer"), (-1, 0, "layer"), (0, 4, "head"), (0, -1, "head")]:
        with pytest.raises(ValueError, match=match):
            vit.cls_attention(attentions, layer=layer, head=head)


def test_mean_attention_distance(attentions):
    mad = vit.mean_attention_distance(attentions, patch_size=8)
    assert mad.shape == (LAYERS, HEADS)
    assert (mad >= 0).all() and (mad <= 8 * math.sqrt(2) * 3).all()
    # reference for layer 0, head 0 with explicit loops
    a = attentions[0][0, 0].double().numpy()
    total = 0.0
    for q in range(16):
        weights = a[1 + q, 1:] / a[1 + q, 1:].sum()
        total += sum(weights[k] * 8 * math.dist(divmod(q, 4), divmod(k, 4)) for k in range(16))
    assert mad[0, 0] == pytest.approx(total / 16)


def test_mean_attention_distance_extremes():
    eye = torch.eye(TOKENS).expand(1, HEADS, TOKENS, TOKENS)  # every patch attends to itself: distance 0
    np.testing.assert_allclose(vit.mean_attention_distance([eye], patch_size=16), 0.0)
    uniform = torch.full((1, HEADS, TOKENS, TOKENS), 1 / TOKENS)  # everywhere equally: the global reference
    np.testing.assert_allclose(vit.mean_attention_distance([uniform], patch_size=16),
                               vit.uniform_attention_distance(4, 16))


def test_uniform_attention_distance():
    assert vit.uniform_attention_distance(1, 16) == 0.0
    assert vit.uniform_attention_distance(2, 10) == pytest.approx((0 + 10 + 10 + 10 * math.sqrt(2)) / 4)
    with pytest.raises(ValueError, match="grid"):
        vit.uniform_attention_distance(0, 16)


def test_mean_attention_distance_leaves_out_queries_that_only_look_at_cls():
    rng = np.random.default_rng(3)
    a = _random_attention(rng)
    a[0, 0, 1 + 5] = 0.0
    a[0, 0, 1 + 5, 0] = 1.0  # head 0: patch 5 looks only at CLS
    a[0, 1, 1:] = 0.0
    a[0, 1, 1:, 0] = 1.0  # head 1: every patch looks only at CLS
    mad = vit.mean_attention_distance([a], patch_size=8)
    assert np.isfinite(mad).all() and mad[0, 1] == 0.0
    w = a[0, 0, 1:, 1:].double().numpy()
    per_query = [sum(w[q, k] / w[q].sum() * 8 * math.dist(divmod(q, 4), divmod(k, 4)) for k in range(16))
                 for q in range(16) if q != 5]
    assert mad[0, 0] == pytest.approx(np.mean(per_query))


# --- the real model --------------------------------------------------------------------------------------------


def _our_hooks(model) -> list:
    """Hooks registered by mmcore.vit still on the model (transformers keeps its own output-capture hooks)."""
    hooks = [h for m in model.modules() for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())]
    return [h for h in hooks if getattr(h, "__module__", "") == vit.__name__]


def test_trace_shapes(model, pixels):
    vit.forward(model, pixels)  # let transformers install its lazy hooks first, so the counts compare like for like
    modules = list(model.modules())
    before = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in modules]
    assert vit.trace_shapes(model, pixels) == [
        ("input", (1, 3, 32, 32)),
        ("conv (patch projection)", (1, 32, 4, 4)),
        ("flatten + transpose", (1, 16, 32)),
        ("+ CLS, + position embeddings", (1, 17, 32)),
        ("block 0 · LayerNorm", (1, 17, 32)),
        ("block 0 · Q = LN(z) W_Q", (1, 17, 32)),
        ("block 0 · K = LN(z) W_K", (1, 17, 32)),
        ("block 0 · V = LN(z) W_V", (1, 17, 32)),
        ("block 0 · softmax(QKᵀ/√d_k) V, heads joined", (1, 17, 32)),
        ("block 0 · attention out (W_O)", (1, 17, 32)),
        ("block 0 · MLP fc1 (D → 4D)", (1, 17, 64)),  # the tiny model's MLP is 2D wide
        ("block 0 · MLP fc2 (4D → D)", (1, 17, 32)),
        ("encoder block 0", (1, 17, 32)),
        ("encoder block 1", (1, 17, 32)),
        ("LayerNorm", (1, 17, 32)),
        ("CLS token", (1, 32)),
        ("head (logits)", (1, 3)),
    ]
    assert [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in modules] == before
    assert _our_hooks(model) == []


def test_layernorm_stats(model, pixels):
    stats = vit.layernorm_stats(model, pixels, layer=1)
    assert set(stats) == {f"{s}_{w}" for s in ("mean", "var") for w in ("before", "after", "hat")}
    assert all(v.shape == (TOKENS,) for v in stats.values())
    np.testing.assert_allclose(stats["mean_hat"], 0.0, atol=1e-6)
    np.testing.assert_allclose(stats["var_hat"], 1.0, atol=1e-3)
    assert _our_hooks(model) == []
    with pytest.raises(ValueError, match="layer"):
        vit.layernorm_stats(model, pixels, layer=LAYERS)


def test_top_classes_are_the_softmax_of_the_logits(model):
    logits = torch.tensor([1.0, 3.0, 2.0])
    top = vit.top_classes(model, logits, top_k=2)
    expected = torch.softmax(logits, 0)
    assert [label for label, _ in top] == [model.config.id2label[1], model.config.id2label[2]]
    assert [p for _, p in top] == pytest.approx([float(expected[1]), float(expected[2])], abs=1e-7)
    with pytest.raises(ValueError, match="top_k"):
        vit.top_classes(model, logits, top_k=0)


def test_predict(model, pixels):
    top = vit.predict(model, pixels, top_k=5)  # capped at the 3 classes
    assert [label for label, _ in top] and len(top) == 3
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert {label for label, _ in top} == set(model.config.id2label.values())
