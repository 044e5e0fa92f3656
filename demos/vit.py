"""The ViT tab: a numbered walk through the lecture's Vision Transformer, on the model in use.

1 patches -> 2 linear projection -> 3 position embeddings (z = x + p) -> 4 LayerNorm -> 5 multi-head attention ->
6 the MLP (D -> 4D -> D), with every shape traced -> 7 CLS -> head; then beyond the lecture: which patches matter for a
class (rollout and relevance), and a shape drawn by hand. Every control redraws its figures as it moves.

Handlers are plain functions (image path or PIL image, numbers, tier) -> images, Markdown, figures; `build()` lays
them out, one function per step, and `_wire_*` connect them. All maths lives in mmcore.vit.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from types import SimpleNamespace

import gradio as gr
import numpy as np
import plotly.graph_objects as go
from PIL import Image

from demos import common
from mmcore import models, shapes, viz
from mmcore import vit as V

FAMILY = "vit"
MAX_SINUSOID_D = 1024
MAX_SINUSOID_POSITIONS = 512
MOSAIC_SIDE = 440  # the position mosaic's side in pixels, about
FILTER_COUNT = 28  # principal components of W_e shown, as in the ViT paper's figure 7
LENS_TOP_K = 10  # a head with more classes than this (ImageNet's 1000) shows its final top-10 as lens columns
PREDICTED = "predicted"  # the relevance view's default class: whatever the model predicts
PASSES_KEPT = 4  # forward passes kept for the images seen last (see _forward): ViT-B/16's attentions are 22 MB each
LIVE = common.LIVE
DRAW_COLORS = ["#{:02x}{:02x}{:02x}".format(*rgb) for rgb in shapes.COLORS.values()]
KNOWS = ("The **bundled ViT** knows six shapes (circle, square, triangle, diamond, star, hexagon) in any colour, "
         "drawn the way the wide Shapes world draws them: any rotation and size, stretched or squat, filled or "
         "outlined, hand-drawn wobbles, on light, dark or coloured backgrounds. Draw one in **Draw a shape** at the "
         "bottom: it names 99 in 100 drawings made by code it never saw, and 17 in 18 drawn with a mouse.")


def _bundle(tier: str | None) -> V.ViTBundle:
    """The model of the tier chosen (see common.load)."""
    return common.load(FAMILY, tier)[0]


def _notice(text: str) -> str:
    """The one line under a step's figure that says what to look at."""
    return f"**What to notice:** {text}"


# ------------------------------------------------------------------------------------------ handlers: inputs, numbers

def new_scene(seed: float | None = None) -> tuple[Image.Image, str]:
    """A fresh Shapes scene with exactly one large object, and its ground truth."""
    image, scene = common.random_scene(seed, one_large=True)
    big = shapes.largest(scene)
    return image, (f"**Ground truth** (test-split scene {scene.seed - shapes.SPLITS['test']}): {shapes.caption(scene)}."
                   f" The largest object is a **{big.shape}**, which the bundled ViT was trained to name.")


def numbers(tier: str | None = None) -> str:
    """The lecture's ViT-B/16 beside the model in use, size by size, as a Markdown table."""
    bundle, res = common.load(FAMILY, tier)
    name = models.get_spec(FAMILY, res.tier).name
    lec, use = V.LECTURE, V.dims(bundle.model.config)

    def row(what: str, show: Callable[[V.Dims], str]) -> str:
        return f"| {what} | {show(lec)} | {show(use)} |"

    rows = [
        row("input H × W", lambda d: f"{d.image_size} × {d.image_size} px"),
        row("patch size P", lambda d: f"{d.patch_size}"),
        row("grid, N = HW / P²", lambda d: f"{d.grid} × {d.grid} = {d.patches}"),
        row("one patch, P²·C numbers", lambda d: f"{d.patch_size}²·{d.channels} = {d.patch_dim}"),
        row("width D", lambda d: f"{d.width}"),
        row("tokens T = N + CLS, sequence", lambda d: f"1 × {d.tokens} × {d.width}"),
        row("heads h × d_k = D", lambda d: f"{d.heads} × {d.head_dim}"),
        row("MLP D → 4D → D", lambda d: f"{d.width} → {d.mlp} → {d.width}"),
        row("blocks L", lambda d: f"{d.layers}"),
        row("classes", lambda d: f"{d.classes}"),
    ]
    return "\n".join([common.tier_label(FAMILY, res), "",
                      f"| | **Lecture** (ViT-B/16) | **Model in use** (`{name}`) |", "|---|---|---|", *rows,
                      "", "The slides' code sample builds its attention with 8 heads and writes the MLP with ReLU; "
                      "ViT-B/16 itself has 12 heads and uses GELU."])


# ------------------------------------------------------------------------------------------ handlers: 1 · patches

def fit_input_size(patch_size: float, input_size: float) -> gr.Dropdown:
    """The input sizes this patch size divides, keeping the current one when it is among them."""
    p = int(patch_size)
    return gr.Dropdown(choices=V.input_sizes(p), value=V.nearest_input_size(int(input_size), p))


def patches_for_size(image, patch_size: float, input_size: float, tier: str | None = None
                     ) -> tuple[gr.Dropdown, Image.Image, str, Image.Image]:
    """A new patch size, in one request: the input sizes it divides (the current one kept when it is among them),
    then the cut at that size: (input-size dropdown, grid, readout, patch sequence)."""
    size = V.nearest_input_size(int(input_size), int(patch_size))  # what fit_input_size keeps
    return (fit_input_size(patch_size, input_size), *patches(image, patch_size, size, tier))


@common.deterministic
def patches(image, patch_size: float, input_size: float, tier: str | None = None
            ) -> tuple[Image.Image, str, Image.Image]:
    """Cut the image into P x P patches: (grid overlay, readout Markdown, 16 patches in token order from the middle
    row, wrapped like text)."""
    img = common.user_image(image)
    p = int(patch_size) if patch_size in V.PATCH_SIZES else None
    if p is None:
        raise ValueError(f"patch_size must be one of {V.PATCH_SIZES}, got {patch_size!r}")
    size = common.whole_number(input_size, "input size", min(V.INPUT_SIZES), max(V.INPUT_SIZES))
    n = V.num_patches(size, p)  # raises a clear error when P does not divide the input size
    g = V.grid_size(size, p)
    bundle, res = common.load(FAMILY, tier)
    name = models.get_spec(FAMILY, res.tier).name
    model = V.dims(bundle.model.config)
    labels = ("every index" if V.labels_every_patch(size, p) else
              "the indices of the first row and column (the rest follow row by row)")
    readout = (
        f"### N = HW / P² = {size}·{size} / {p}² = **{n} patches** ({g} × {g} grid)\n"
        f"**The grid you chose:** each patch is P²·C = {p}²·3 = **{p * p * 3}** numbers, and patch (r, c) becomes "
        f"token 1 + {g}·r + c, after CLS. The picture shows {labels}.\n\n"
        f"**Model in use** (`{name}`): trained at {model.image_size} px with P = {model.patch_size}, so it always "
        f"cuts {model.grid} × {model.grid} = {model.patches} patches; the steps below use that grid.")
    count = min(16, n)
    start = min((g // 2) * g, n - count)  # from the middle row: the first row is often only background
    return V.patch_grid(img, p, size), readout, V.patch_sequence(img, p, size, count=count, start=start)


# ------------------------------------------------------------------------------------ handlers: 2 · linear projection

def _filter_mosaic(components: np.ndarray, per_row: int = 7, tile: int = 48, gap: int = 4) -> Image.Image:
    """(k, P, P, C) components as RGB tiles, each min-max scaled on its own, per_row to a row on white."""
    k, p = components.shape[:2]
    scale = max(1, tile // p)
    rows = -(-k // per_row)
    side = p * scale
    canvas = Image.new("RGB", (per_row * (side + gap) + gap, rows * (side + gap) + gap), "white")
    for i, comp in enumerate(components):
        span = comp.max() - comp.min()
        rgb = ((comp - comp.min()) / (span or 1.0) * 255).round().astype(np.uint8)  # (P, P, C)
        picture = Image.fromarray(rgb if rgb.shape[-1] == 3 else rgb[..., 0], "RGB" if rgb.shape[-1] == 3 else "L")
        r, c = divmod(i, per_row)
        canvas.paste(picture.convert("RGB").resize((side, side), Image.Resampling.NEAREST),
                     (gap + c * (side + gap), gap + r * (side + gap)))
    return canvas


def projection(tier: str | None = None) -> tuple[Image.Image, str]:
    """The patch projection W_e: its first principal components as pictures (ViT paper, figure 7 left), and its
    shape in the lecture and in the model in use."""
    bundle = _bundle(tier)
    components, ratio = V.embedding_filters(bundle.model, FILTER_COUNT)
    lec, use = V.LECTURE, V.dims(bundle.model.config)
    note = (f"**Lecture:** W_e is D × P²C = {lec.width} × {lec.patch_dim}, so 1 × {lec.patches}"
            f" × {lec.patch_dim} patches become 1 × {lec.patches} × {lec.width}. **Model in use:** W_e is "
            f"{use.width} × {use.patch_dim}, so 1 × {use.patches} × {use.patch_dim} becomes 1 × {use.patches} × "
            f"{use.width}. The Conv2d with kernel = stride = P is this one matrix, applied to every patch.\n\n"
            f"The {len(components)} pictures are the directions in patch space W_e reads most, largest first: "
            f"together they hold {ratio.sum():.0%} of its filters' variance, the first alone {ratio[0]:.0%}.")
    return _filter_mosaic(components), note


# ------------------------------------------------------------------------------------ handlers: 3 · positions

def positions(tier: str | None = None) -> tuple[Image.Image, str]:
    """The learned position embeddings' cosine similarities, one small map per patch (the ViT paper's figure 7),
    and what the picture shows, measured."""
    bundle = _bundle(tier)
    pos = V.patch_position_embeddings(bundle.model)  # (N, D)
    g = V.dims(bundle.model.config).grid
    sim = V.position_similarity(pos)  # (N, N)
    side = g * (g + 1) - 1
    img = viz.mosaic(sim.numpy().reshape(g, g, g, g), gap=1, cell_px=max(1, MOSAIC_SIDE // side))
    rel = V.similarity_by_relation(sim, g)
    learned = rel["neighbours"] > rel.get("same row or column", -1) > rel.get("elsewhere", -1)
    verdict = ("so the model learned the 2-D layout: near patches get similar embeddings, and rows and columns "
               "stand out" if learned else "so this model's embeddings do not (yet) order the patches by distance")
    measured = ", ".join(f"{name} {value:.2f}" for name, value in rel.items())
    note = (f"{g} × {g} patches, p_i ∈ ℝ^{pos.shape[1]}. Tile (r, c) is patch (r, c)'s cosine similarity to every "
            f"position, yellow = most similar; each tile peaks at its own patch. Mean similarity: {measured}, "
            f"{verdict}. Nobody told the model about rows and columns. **Click a tile** to enlarge it.")
    return img, note


def position_map(patch_index: float, tier: str | None = None) -> go.Figure:
    """One patch's similarity to every position, as a heatmap with values."""
    bundle = _bundle(tier)
    pos = V.patch_position_embeddings(bundle.model)  # (N, D)
    g = V.dims(bundle.model.config).grid
    i = common.whole_number(patch_index, "patch index", 0, g * g - 1)
    row, col = divmod(i, g)
    sim = V.position_similarity(pos)[i].reshape(g, g).numpy()
    fig = go.Figure(go.Heatmap(z=sim, colorscale="Viridis", zmin=-1, zmax=1, colorbar={"title": "cos"},
                               hovertemplate="row %{y}, column %{x}: cos %{z:.2f}<extra></extra>"))
    fig.add_scatter(x=[col], y=[row], mode="markers", marker={"symbol": "x", "size": 12, "color": "red"},
                    name=f"patch {i}")
    fig.update_xaxes(title_text="column", range=[-0.5, g - 0.5])
    fig.update_yaxes(title_text="row", range=[g - 0.5, -0.5])
    fig.update_layout(title=f"Patch {i} (row {row}, column {col}) vs all", height=380,
                      margin={"l": 50, "r": 10, "t": 40, "b": 40}, showlegend=False)
    return fig


def patch_from_click(tier: str | None, evt: gr.SelectData) -> tuple[int, go.Figure]:
    """Which tile of the position mosaic was clicked (g x g tiles of g x g cells, with 1-cell gaps), and its map."""
    bundle = _bundle(tier)
    g = V.dims(bundle.model.config).grid
    tile_px = max(1, MOSAIC_SIDE // (g * (g + 1) - 1)) * (g + 1)  # one tile and its gap, in pixels
    x, y = evt.index
    row, col = min(g - 1, int(y) // tile_px), min(g - 1, int(x) // tile_px)
    return row * g + col, position_map(row * g + col, tier)


def sinusoid(d_model: float, num_positions: float) -> go.Figure:
    """The lecture's fixed encoding PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...), as a heatmap."""
    d = common.whole_number(d_model, "d_model", 2, MAX_SINUSOID_D)
    if d % 2:
        raise ValueError(f"d_model must be even (sin and cos come in pairs), got {d}")
    n = common.whole_number(num_positions, "positions", 1, MAX_SINUSOID_POSITIONS)
    pe = V.sinusoidal_encoding(n, d)
    fig = go.Figure(go.Heatmap(z=pe, colorscale="RdBu", zmid=0, colorbar={"title": "PE"}))
    fig.update_layout(title=f"Sinusoidal PE, {n} positions × d = {d}", xaxis_title="dimension (2i, 2i+1)",
                      yaxis_title="position", height=340, margin={"l": 50, "r": 10, "t": 40, "b": 40})
    fig.update_yaxes(autorange="reversed")
    return fig


# ------------------------------------------------------------------------------------ handlers: 4 · LayerNorm

def layernorm(image, layer: float, tier: str | None = None) -> go.Figure:
    """Per-token mean and variance before and after the LayerNorm in front of attention, at one layer."""
    img = common.user_image(image)
    bundle = _bundle(tier)
    li = common.whole_number(layer, "layer", 0, bundle.model.config.num_hidden_layers - 1)
    stats = V.layernorm_stats(bundle.model, bundle.pixel_values(img), li)
    tokens = np.arange(len(stats["mean_before"]))
    traces = []
    for col, kind in ((1, "mean"), (2, "var")):
        for key, name, color in (("before", "x (input)", "#94a3b8"), ("hat", "x̂ = (x−μ)/√(σ²+ε)", "#6366f1"),
                                 ("after", "LN(x) = x̂·γ + β", "#f59e0b")):
            traces.append({"type": "scatter", "x": tokens, "y": stats[f"{kind}_{key}"], "mode": "lines",
                           "name": name, "line": {"color": color}, "legendgroup": key, "showlegend": col == 1,
                           "xaxis": "x" if col == 1 else "x2", "yaxis": "y" if col == 1 else "y2"})
    # two panels side by side, laid out by hand in one figure (make_subplots costs 15 ms a figure)
    titles = [{"text": text, "x": x, "y": 1.0, "xref": "paper", "yref": "paper", "xanchor": "center",
               "yanchor": "bottom", "showarrow": False} for text, x in (("per-token mean μ", 0.225),
                                                                        ("per-token variance σ²", 0.775))]
    axis_title = {"text": "token (0 = CLS)"}
    return common.figure(traces, {
        "xaxis": {"domain": [0, 0.45], "title": axis_title}, "yaxis": {"anchor": "x"},
        "xaxis2": {"domain": [0.55, 1], "title": axis_title}, "yaxis2": {"anchor": "x2"},
        "annotations": titles, "title": {"text": f"LayerNorm before attention, block {li}"}, "height": 380,
        "margin": {"l": 40, "r": 10, "t": 60, "b": 40}, "legend": {"orientation": "h", "y": -0.25, "yanchor": "top"}})


# ------------------------------------------------------------------------------------ handlers: 5 · attention

def _discard(discard_ratio: float | None) -> float:
    """The rollout discard ratio from a slider or the API, in [0, 1), else ValueError."""
    if discard_ratio is None or not 0 <= float(discard_ratio) < 1:
        raise ValueError(f"discard ratio must be in [0, 1), got {discard_ratio!r}")
    return float(discard_ratio)


def _distance_figure(dist: np.ndarray, patch_size: int, uniform: float) -> go.Figure:
    """Mean attention distance per head and layer, with the two references as lines: one patch away (local) and
    uniform attention (global)."""
    layers = np.arange(dist.shape[0])
    lines = [{"type": "scatter", "x": [-0.4, dist.shape[0] - 0.6], "y": [y, y], "mode": "lines", "name": name,
              "hoverinfo": "name", "line": {"dash": dash, "color": "#64748b"}}
             for y, name, dash in ((uniform, f"uniform attention, global: {uniform:.0f} px", "dash"),
                                   (patch_size, f"one patch away, local: {patch_size} px", "dot"))]
    heads = [{"type": "scatter", "x": layers, "y": dist[:, h], "mode": "markers", "name": f"head {h}",
              "marker": {"size": 9}} for h in range(dist.shape[1])]
    return common.figure(lines + heads, {
        "title": {"text": "Mean attention distance per head"}, "xaxis": {"title": {"text": "layer"}, "dtick": 1},
        "yaxis": {"title": {"text": "pixels"}, "range": [0, 1.1 * max(uniform, float(dist.max()))]}, "height": 400,
        "margin": {"l": 50, "r": 10, "t": 40, "b": 40}, "legend": {"orientation": "h", "y": -0.2, "yanchor": "top"}})


def _distance_sentence(dist: np.ndarray, patch_size: int, uniform: float) -> str:
    """What the distance chart shows: how many heads sit nearer the global line than the local one, and where."""
    midway = (patch_size + uniform) / 2
    global_heads = int((dist > midway).sum())
    return (f"In the distance chart (the ViT paper's figure 7, right), a local head, like a convolution, looks at "
            f"its neighbours about P = {patch_size} px away; a global "
            f"head that attends everywhere equally averages {uniform:.0f} px (the dashed line). Here the heads span "
            f"{dist.min():.0f}–{dist.max():.0f} px, and {global_heads} of {dist.size} sit nearer the global line.")


_passes: OrderedDict[tuple, tuple[weakref.ref, SimpleNamespace]] = OrderedDict()  # see _forward
_passes_lock = threading.Lock()


def _forward(image, tier: str | None) -> SimpleNamespace:
    """One forward pass that keeps the attentions, and what the attention views draw on: the model (bundle), its dims
    (d), logits (1, classes), attentions L x (1, H, T, T) on the CPU in float32, and the image as the model sees it
    (seen); all of it only read. The last PASSES_KEPT passes are kept by the image's pixels and the model, so that a
    layer, head, discard ratio or head fusion moved on the same image draws from its pass (a third of such a move's
    handler time). A kept pass holds no reference to its model: one that was unloaded is not kept alive."""
    img = common.user_image(image)
    bundle = _bundle(tier)
    key = hashlib.sha1(img.tobytes()).digest(), img.size, id(bundle)
    with _passes_lock:
        model, kept = _passes.get(key, (None, None))
        if model is not None and model() is bundle:
            _passes.move_to_end(key)
            return SimpleNamespace(bundle=bundle, **vars(kept))
    d = V.dims(bundle.model.config)
    logits, atts = V.forward(bundle.model, bundle.pixel_values(img))
    kept = SimpleNamespace(d=d, logits=logits, atts=[a.float().cpu() for a in atts], seen=V.square(img, d.image_size))
    with _passes_lock:
        _passes[key] = weakref.ref(bundle), kept
        while len(_passes) > PASSES_KEPT:
            _passes.popitem(last=False)
    return SimpleNamespace(bundle=bundle, **vars(kept))


def _attention_parts(f: SimpleNamespace, layer: float, head: str | None, discard_ratio: float,
                     parts: tuple[str, ...]) -> dict:
    """What the attention step shows, from one forward pass `f` (see _forward): any of "map" (one layer and head's
    CLS row), "rollout", "distance" and "top5" as pictures and figures, and always "note"."""
    discard = _discard(discard_ratio)
    d, atts = f.d, f.atts
    li = common.whole_number(layer, "layer", 0, d.layers - 1)
    hi = None if head in (None, "", "mean") else common.whole_number(head, "head", 0, d.heads - 1)
    dist = V.mean_attention_distance(atts, d.patch_size)  # (L, H) pixels
    uniform = V.uniform_attention_distance(d.grid, d.patch_size)
    out = {}
    if "map" in parts:
        out["map"] = viz.overlay(f.seen, V.cls_attention(atts, li, hi).numpy())
    if "rollout" in parts:
        out["rollout"] = viz.overlay(f.seen, V.cls_rollout_map(V.attention_rollout(atts, discard_ratio=discard),
                                                               d.grid).numpy())
    if "distance" in parts:
        out["distance"] = _distance_figure(dist, d.patch_size, uniform)
    if "top5" in parts:
        out["top5"] = _prediction_figure(V.top_classes(f.bundle.model, f.logits[0], top_k=5),
                                         "Top-5 predictions: softmax of the head's logits")
    lec = V.LECTURE
    head_name = "mean over heads" if hi is None else f"head {hi}"
    out["note"] = (
        f"Layer {li}, {head_name}: where the CLS token looks. Q, K and V are 1 × T × D, split into "
        f"h heads of d_k = D / h: **lecture** 1 × {lec.tokens} × {lec.width} → {lec.heads} heads of 1 × "
        f"{lec.tokens} × {lec.head_dim}, each with a {lec.tokens} × {lec.tokens} attention matrix; **model in "
        f"use** 1 × {d.tokens} × {d.width} → {d.heads} heads of 1 × {d.tokens} × {d.head_dim}, {d.tokens} × "
        f"{d.tokens}. Rollout multiplies (A + I), rows re-normalised, through all {d.layers} layers; it discards "
        f"the lowest {discard:.0%} of each layer's weights first, all but CLS→CLS (as jacobgil/vit-explain "
        f"does). Grid {d.grid} × {d.grid} of {d.patch_size}-px patches.\n\n"
        + _notice("one layer's map is noisy and changes from head to head; rollout follows the attention "
                  "through every layer and usually lands on the object. " + _distance_sentence(dist, d.patch_size,
                                                                                               uniform)))
    return out


@common.deterministic
def attention(image, layer: float, head: str | None, discard_ratio: float, tier: str | None = None
              ) -> tuple[Image.Image, Image.Image, go.Figure, go.Figure, str]:
    """CLS->patch attention of one layer and head (or the head mean), attention rollout over all layers, the mean
    attention distance per head and layer, and the top-5 predictions, all from one forward pass."""
    out = _attention_parts(_forward(image, tier), layer, head, discard_ratio, ("map", "rollout", "distance", "top5"))
    return out["map"], out["rollout"], out["distance"], out["top5"], out["note"]


def attention_layer(image, layer: float, head: str | None, discard_ratio: float, tier: str | None = None
                    ) -> tuple[Image.Image, str]:
    """A new layer or head changes one map (and the note that names them): (that map, note). The rollout, the
    distances and the top-5 do not depend on it, so they are not redrawn."""
    out = _attention_parts(_forward(image, tier), layer, head, discard_ratio, ("map",))
    return out["map"], out["note"]


def rollouts(image, layer: float, head: str | None, discard_ratio: float, class_name: str | None, head_fusion: str,
             tier: str | None = None) -> tuple[Image.Image, str, Image.Image, str]:
    """A new discard ratio changes the two rollouts alone, step 5's (heads averaged) and the relevance section's
    (heads fused as chosen), and the notes that state it; one forward pass draws both: (rollout, attention note,
    fused rollout, relevance note)."""
    f = _forward(image, tier)
    out = _attention_parts(f, layer, head, discard_ratio, ("rollout",))
    return (out["rollout"], out["note"], *_fused(f, class_name, head_fusion, discard_ratio))


# ------------------------------------------------------------------------------------ handlers: 6 · MLP, the tracer

def trace(image, tier: str | None = None) -> tuple[list[list[str]], str]:
    """Hook every stage of one real forward pass, block 0 from inside: a table of (stage, shape) and the chain of
    the outer stages as Markdown."""
    img = common.user_image(image)
    bundle = _bundle(tier)
    steps = V.trace_shapes(bundle.model, bundle.pixel_values(img))
    rows = [[name, " × ".join(map(str, shape))] for name, shape in steps]
    chain = " → ".join(f"`{shape}`" for name, shape in rows if not name.startswith("block 0 ·"))
    return rows, f"The outer stages: {chain}"


# ------------------------------------------------------------------------------------ handlers: 7 · CLS -> head

def _prediction_figure(top: list[tuple[str, float]], title: str, height: int = 300) -> go.Figure:
    return common.figure(
        [{"type": "bar", "x": [p for _, p in top][::-1], "y": [lab for lab, _ in top][::-1], "orientation": "h",
          "text": [f"{p:.1%}" for _, p in top][::-1], "textposition": "auto", "marker": {"color": "#6366f1"}}],
        {"title": {"text": title}, "xaxis": {"range": [0, 1], "tickformat": ".0%", "title": {"text": "probability"}},
         "height": height, "margin": {"l": 110, "r": 10, "t": 40, "b": 40}})


def logit_lens(image, tier: str | None = None) -> tuple[go.Figure, str]:
    """The logit lens: the prediction read from the CLS token after each block, through the model's own final
    LayerNorm and head. Returns a blocks x classes heatmap of probabilities (every class, or the final top
    LENS_TOP_K of a larger head) and a note naming the block from which the final answer leads."""
    img = common.user_image(image)
    bundle = _bundle(tier)
    probs = V.logit_lens(bundle.model, bundle.pixel_values(img)).softmax(-1).cpu().numpy()  # (L, num_labels)
    n_blocks, n_classes = probs.shape
    columns = np.arange(n_classes) if n_classes <= LENS_TOP_K else np.argsort(-probs[-1])[:LENS_TOP_K]
    names = V.class_names(bundle.model)
    z = probs[:, columns]  # (L, k)
    hover = np.array([[names[c] for c in columns]] * n_blocks)  # (L, k)
    # columns by position, named by tick: ImageNet repeats some labels ("crane" the bird and the machine)
    fig = common.figure(
        [{"type": "heatmap", "z": z, "y": [f"block {b}" for b in range(n_blocks)], "zmin": 0, "zmax": 1,
          "colorscale": common.VIRIDIS, "texttemplate": "%{z:.2f}",
          "colorbar": {"title": {"text": "p"}, "tickformat": ".0%"},
          "customdata": hover, "hovertemplate": "%{y}, %{customdata}: p = %{z:.3f}<extra></extra>"}],
        {"xaxis": {"tickvals": list(range(len(columns))), "ticktext": [names[c][:24] for c in columns]},
         "yaxis": {"autorange": "reversed"}, "title": {"text": "Logit lens: head(LayerNorm(CLS after block l))"},
         "height": 140 + 40 * n_blocks, "margin": {"l": 70, "r": 10, "t": 40, "b": 90}})
    top = probs.argmax(axis=1)  # (L,) the lens's answer after each block
    final = int(top[-1])
    settled = n_blocks - int(np.argmax(top[::-1] != final)) if (top != final).any() else 0
    shown = "every class" if n_classes <= LENS_TOP_K else f"the final top {LENS_TOP_K} of {n_classes} classes"
    note = (f"Columns: {shown}. The last row is the model's own prediction, **{names[final]}** "
            f"({probs[-1, final]:.1%}); it leads from **block {settled}** on.\n\n"
            + _notice("the answer is not in the CLS token from the start: it forms block by block, mostly in the "
                      "later ones. Watch for a runner-up that leads early and is overtaken."))
    return fig, note


# ------------------------------------------------------------------------------------ handlers: beyond the lecture

def _class_index(bundle: V.ViTBundle, class_name: str | None) -> int | None:
    """The head's index for a class label, None for the predicted class, or ValueError naming the accepted values."""
    if class_name in (None, "", PREDICTED):
        return None
    names = V.class_names(bundle.model)
    if class_name not in names:
        examples = ", ".join(repr(n) for n in names[:6])
        raise ValueError(f"class must be {PREDICTED!r} or one of the model's {len(names)} labels ({examples}, …), "
                         f"got {class_name!r}")
    return names.index(class_name)


def _relevance_note(names: list[str], index: int, prob: float, class_name: str | None, head_fusion: str,
                    discard: float) -> str:
    chosen = "the predicted class" if class_name in (None, "", PREDICTED) else "the chosen class"
    return (f"Relevance for **{names[index]}** ({chosen}, p = {prob:.1%}); rollout fuses the heads by "
            f"**{head_fusion}** and discards the lowest {discard:.0%} of each layer's weights.\n\n"
            + _notice("raw attention and rollout ignore the class: pick another class and only the relevance map "
                      "changes. Relevance keeps only the attention whose gradient raises that class's logit, so it "
                      "usually sits tighter on the object than plain rollout. Try the runner-up class: what evidence "
                      "does the model find for it?"))


def relevance(image, class_name: str | None, head_fusion: str, discard_ratio: float, tier: str | None = None
              ) -> tuple[Image.Image, Image.Image, Image.Image, str]:
    """Three answers to "which patches matter?" for one image, side by side: raw attention (the last layer's CLS
    row, mean over heads), attention rollout (heads fused by `head_fusion`), and gradient-weighted relevance for one
    class (the predicted one by default). Returns the three overlays and a note on what to notice."""
    img = common.user_image(image)
    discard = _discard(discard_ratio)
    bundle = _bundle(tier)
    index = _class_index(bundle, class_name)
    d = V.dims(bundle.model.config)
    logits, index, atts, grads = V.attention_gradients(bundle.model, bundle.pixel_values(img), index)
    raw = V.cls_attention(atts, len(atts) - 1).float().cpu().numpy()
    roll = V.cls_rollout_map(V.attention_rollout(atts, discard, head_fusion), d.grid).cpu().numpy()
    rel = V.cls_rollout_map(V.relevance_rollout(atts, grads), d.grid).cpu().numpy()
    note = _relevance_note(V.class_names(bundle.model), index, float(logits.softmax(-1)[index]), class_name,
                           head_fusion, discard)
    seen = V.square(img, d.image_size)
    return viz.overlay(seen, raw), viz.overlay(seen, roll), viz.overlay(seen, rel), note


def _fused(f: SimpleNamespace, class_name: str | None, head_fusion: str, discard_ratio: float
           ) -> tuple[Image.Image, str]:
    """The relevance section's rollout, heads fused by `head_fusion`, from a forward pass `f`, and its note."""
    discard = _discard(discard_ratio)
    index = _class_index(f.bundle, class_name)
    probs = f.logits[0].float().softmax(-1)
    index = int(probs.argmax()) if index is None else index
    roll = V.cls_rollout_map(V.attention_rollout(f.atts, discard, head_fusion), f.d.grid)
    note = _relevance_note(V.class_names(f.bundle.model), index, float(probs[index]), class_name, head_fusion,
                           discard)
    return viz.overlay(f.seen, roll.cpu().numpy()), note


def fused_rollout(image, class_name: str | None, head_fusion: str, discard_ratio: float, tier: str | None = None
                  ) -> tuple[Image.Image, str]:
    """A new head fusion redraws what it changes, the rollout (and the note that names the fusion), from one forward
    pass without gradients; raw attention and relevance do not depend on it. Returns (rollout overlay, note)."""
    return _fused(_forward(image, tier), class_name, head_fusion, discard_ratio)


def _sketch_image(sketch) -> Image.Image | None:
    """The sketchpad's composite on white as an RGB image, or None while nothing is drawn."""
    composite = sketch.get("composite") if isinstance(sketch, dict) else sketch
    if composite is None:
        return None
    rgba = np.asarray(composite)
    if rgba.ndim != 3 or rgba.shape[-1] not in (3, 4) or min(rgba.shape[:2]) < 8:
        raise ValueError(f"The drawing must be an RGB or RGBA image of at least 8 × 8 pixels, got {rgba.shape}.")
    if rgba.shape[-1] == 4:
        if not (rgba[..., 3] > 0).any():
            return None
        alpha = rgba[..., 3:].astype(np.float32) / 255
        rgba = rgba[..., :3] * alpha + 255 * (1 - alpha)
    return Image.fromarray(rgba.astype(np.uint8), "RGB")


def drawing(sketch, tier: str | None = None) -> tuple[go.Figure, str]:
    """Classify a drawing from the sketchpad, live while it is drawn: (probabilities of every class, a sentence)."""
    img = _sketch_image(sketch)
    if img is None:
        return (_prediction_figure([], "Draw a shape to see what the ViT says"),
                "Draw a shape in one of the six colours.")
    bundle = _bundle(tier)
    top = V.predict(bundle.model, bundle.pixel_values(img), top_k=bundle.model.config.num_labels)
    size = bundle.model.config.image_size
    return (_prediction_figure(top, "What the ViT sees in your drawing"),
            f"The model sees your drawing at {size} × {size} px and says **{top[0][0]}** "
            f"({top[0][1]:.0%}).")


def use_drawing(sketch) -> tuple[Image.Image, str]:
    """Send the drawing to the tab's image, so every step explains it."""
    img = _sketch_image(sketch)
    if img is None:
        raise ValueError("Draw a shape first.")
    return img, "Your drawing: no ground truth, but you know what you drew."


def sync_controls(tier: str | None) -> tuple:
    """Fit the controls to the model in use: the numbers table, the layer and head choices, the class list, and the
    patch index's range. Runs first on page load, when the model may still be loading: it waits for the model, so
    that the steps after it open computed instead of failing."""
    bundle = common.load(FAMILY, tier, wait=None)[0]
    d = V.dims(bundle.model.config)
    heads = ["mean"] + [str(h) for h in range(d.heads)]
    return (numbers(tier), gr.Slider(maximum=d.layers - 1, value=0), gr.Dropdown(choices=heads, value="mean"),
            gr.Slider(maximum=d.layers - 1, value=0),
            gr.Dropdown(choices=[PREDICTED, *V.class_names(bundle.model)], value=PREDICTED),
            gr.Number(value=0, maximum=d.patches - 1))


# -------------------------------------------------------------------------------------------------------------- UI

def _figure(caption: str, buttons: tuple[str, ...] = ("download", "fullscreen"), **kwargs) -> gr.Image:
    """A picture the tab draws, under its caption (a label would cover the picture's corner): shown only (see
    common.picture), no share button."""
    with gr.Column():
        gr.Markdown(caption)
        return common.picture(label=caption.replace("*", ""), show_label=False, buttons=list(buttons), **kwargs)


def _step(number: int, title: str, formula: str) -> None:
    gr.Markdown(f"### {number} · {title}\n{formula}")


def _inputs(ui: SimpleNamespace) -> None:
    """The image and where it comes from, the tier, and the lecture's numbers beside the model's."""
    gr.Markdown("## Vision Transformer: an image is worth 16×16 words\n"
                "The lecture's walk, step by step, on a real model: cut the image into P×P patches (1), project each "
                "to D numbers (2), add a learned position embedding z = x + p (3), prepend a CLS token, and run "
                "transformer blocks: LayerNorm (4) → multi-head attention (5) → residual → MLP (6); the head reads "
                "the CLS token (7). Every control redraws its step as it moves.")
    with gr.Row():
        with gr.Column(scale=1):
            first_image, first_truth = new_scene(seed=42)  # something to look at straight away
            ui.image = common.image_input(value=first_image)
            ui.drawn = gr.State(None)  # the digest of the image the views show (see _all_views)
            with gr.Row(equal_height=True):
                ui.scene_btn = gr.Button("🎲 Random Shapes scene", variant="secondary", min_width=200)
                ui.seed = gr.Number(label="seed (−1 = random)", value=-1, precision=0, minimum=-1, min_width=120)
            ui.truth = gr.Markdown(first_truth)
            gr.Examples([[str(p)] for p in common.SAMPLES], inputs=[ui.image], outputs=[ui.truth], fn=lambda _: "",
                        run_on_click=True, cache_examples=False, label="Sample photos")  # photos: no ground truth
            gr.Markdown(common.PHOTO_NOTE + "\n\n" + KNOWS)
        with gr.Column(scale=1):
            ui.tier = common.tier_radio(FAMILY)
            ui.numbers = gr.Markdown()


def _step_patches(ui: SimpleNamespace) -> None:
    _step(1, "Patches", "An H × W image becomes N = HW / P² patches x_i ∈ ℝ^(P²·C), read row by row.")
    with gr.Row(equal_height=True):
        ui.patch_size = gr.Radio(list(V.PATCH_SIZES), value=16, label="patch size P", elem_id="vit-patch-size")
        ui.input_size = gr.Dropdown(list(V.INPUT_SIZES), value=224, label="input size (px)",
                                    info="only sizes that P divides")
        ui.patch_btn = gr.Button("✂️ Cut into patches", variant="primary", min_width=200)
    with gr.Row():
        ui.grid_img = _figure("**The patch grid**, indices in token order", elem_id="vit-grid")
        with gr.Column():
            ui.readout = gr.Markdown()
            ui.seq_img = _figure("**16 patches in token order**, from the middle row: a sentence of 'words'",
                                 buttons=())  # a toolbar would cover the strip's last tiles
    gr.Markdown(_notice("the transformer never sees the picture in 2-D, only this sequence. Halve P and N "
                        "quadruples, and attention, which compares every token with every other, costs N² as much."))


def _step_projection(ui: SimpleNamespace) -> None:
    _step(2, "Linear projection", "z_i = W_e x_i + b_e, W_e ∈ ℝ^(D × P²C): one matrix for every patch.")
    with gr.Row():
        ui.filters_img = _figure("**Principal components of W_e**, the 28 largest")
        ui.projection_note = gr.Markdown()
    gr.Markdown(_notice("each picture is a pattern of colour and brightness across a patch that the projection "
                        "responds to; the first ones are smooth blobs of colour, later ones finer and noisier. A "
                        "patch's D numbers say how much of each pattern it holds."))


def _step_positions(ui: SimpleNamespace) -> None:
    _step(3, "Position embeddings: z_i = x_i + p_i",
          "Attention ignores order, so each patch's token gets a learned vector p_i ∈ ℝ^D for its place.")
    with gr.Row():
        with gr.Column():
            ui.pos_img = _figure("**Cosine similarity of the position embeddings** (click a tile)")
        with gr.Column():
            ui.patch_index = gr.Number(label="patch index", value=0, precision=0, minimum=0)
            ui.pos_map = gr.Plot(label="One patch vs every position")
    ui.pos_note = gr.Markdown()
    gr.Markdown("**For contrast, the fixed sinusoidal encoding** of *Attention is all you need*: "
                "PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)).")
    with gr.Row():
        ui.d_model = gr.Slider(2, 512, value=128, step=2, label="d (sinusoidal)")
        ui.n_pos = gr.Slider(1, 256, value=64, step=1, label="positions")
    ui.pe_plot = gr.Plot(value=sinusoid(128, 64), label="Sinusoidal encoding")
    gr.Markdown(_notice("low dimensions (left) change fast with position, high ones slowly, so every position "
                        "gets a different pattern; ViT learns its p_i instead, and in 2-D."))


def _step_layernorm(ui: SimpleNamespace) -> None:
    _step(4, "LayerNorm", "LN(x) = (x − μ) / √(σ² + ε) · γ + β, with μ and σ² over the D features of each token.")
    ui.ln_layer = gr.Slider(0, 11, value=0, step=1, label="block")
    ui.ln_plot = gr.Plot(label="Per-token statistics")
    gr.Markdown(_notice("the input x (grey) has its own mean and variance for every token; x̂ (indigo) is at mean 0 "
                        "and variance 1 for all of them; γ and β (orange) then scale and shift each feature, so "
                        "LN(x) is no longer exactly (0, 1)."))


def _step_attention(ui: SimpleNamespace) -> None:
    _step(5, "Multi-head attention",
          "Q = LN(z) W_Q, K = LN(z) W_K, V = LN(z) W_V, split into h heads; head_j = softmax(Q_j K_jᵀ / √d_k) V_j; "
          "z ← z + [head_1 … head_h] W_O.")
    with gr.Row(equal_height=True):
        ui.layer = gr.Slider(0, 11, value=0, step=1, label="layer", elem_id="vit-layer")
        ui.head = gr.Dropdown(["mean"] + [str(h) for h in range(12)], value="mean", label="head")
        ui.discard = gr.Slider(0.0, 0.95, value=0.0, step=0.05, label="rollout discard ratio",
                               elem_id="vit-discard")
        ui.attn_btn = gr.Button("👁️ Show attention", variant="primary", min_width=180)
    with gr.Row():
        ui.attn_img = _figure("**CLS → patch attention**, one layer", elem_id="vit-attn")
        ui.roll_img = _figure("**Attention rollout**, all layers", elem_id="vit-roll")
    ui.distance = gr.Plot(label="Mean attention distance")
    ui.attn_note = gr.Markdown()


def _step_mlp(ui: SimpleNamespace) -> None:
    _step(6, "MLP: D → 4D → D",
          "MLP(x) = GELU(x W₁ + b₁) W₂ + b₂, W₁ ∈ ℝ^(D × 4D), W₂ ∈ ℝ^(4D × D), then z ← z + MLP(LN(z)).")
    ui.trace_table = gr.Dataframe(headers=["stage", "shape"], label="Every shape of one forward pass, block 0 from "
                                  "inside (recorded by hooks)", interactive=False, wrap=True, max_height=520)
    ui.chain = gr.Markdown()
    gr.Markdown(_notice("inside a block only the width changes: Q, K and V keep D (split into h heads of d_k), the "
                        "MLP widens every token to 4D and back to D, so blocks stack without reshaping."))


def _step_head(ui: SimpleNamespace) -> None:
    _step(7, "CLS → head", "logits = W · LN(z_L[CLS]) + b; p = softmax(logits). Only the CLS token reaches the head.")
    ui.top5 = gr.Plot(label="Top-5 predictions")
    gr.Markdown("**The logit lens**: apply the same LayerNorm and head to the CLS token after every earlier block, "
                "as if the network stopped there.")
    ui.lens_btn = gr.Button("🔭 Read the CLS token after every block", variant="primary")
    ui.lens_plot = gr.Plot(label="Logit lens (blocks × classes)", elem_id="vit-lens")
    ui.lens_note = gr.Markdown()


def _relevance_section(ui: SimpleNamespace) -> None:
    gr.Markdown("### Beyond the lecture: which patches matter for a class?\n"
                "Raw attention is one layer; rollout multiplies the layers' (A + I) with the heads fused as you "
                "choose; relevance (Chefer et al., 2021) weights every head's attention by the gradient of the "
                "class's logit, keeps the positive part, and rolls it up: R = I, R += mean_heads((∇A ⊙ A)⁺) R. "
                "Rollout uses the discard ratio of step 5.")
    with gr.Row(equal_height=True):
        ui.rel_class = gr.Dropdown([PREDICTED], value=PREDICTED, label="class (relevance)", filterable=True)
        ui.fusion = gr.Radio(list(V.HEAD_FUSIONS), value="mean", label="head fusion (rollout)", elem_id="vit-fusion")
        ui.rel_btn = gr.Button("🧭 Compare the three maps", variant="primary", min_width=220)
    with gr.Row():
        ui.raw_img = _figure("**Raw attention**: last layer, CLS row, mean over heads")
        ui.fused_img = _figure("**Attention rollout**, heads fused as chosen", elem_id="vit-rollout")
        ui.rel_img = _figure("**Relevance for the class**: gradient-weighted rollout", elem_id="vit-relevance")
    ui.rel_note = gr.Markdown()


def _drawing_section(ui: SimpleNamespace) -> None:
    gr.Markdown("### Draw a shape\nChoose the brush (✏️ on the left of the pad), then draw one of the six shapes "
                "with a colour from the palette. The ViT classifies it as you draw.")
    with gr.Row():
        ui.sketch = gr.Sketchpad(label="Draw a shape", type="numpy", image_mode="RGBA", canvas_size=(256, 256),
                                 brush=gr.Brush(default_size=12, colors=DRAW_COLORS, default_color=DRAW_COLORS[0]),
                                 height=340)
        with gr.Column():
            ui.draw_plot = gr.Plot(value=drawing(None)[0], label="Prediction for the drawing")
            ui.draw_note = gr.Markdown()
            ui.draw_use = gr.Button("⬆️ Explain this drawing in every step")


def _all_views(stages: list[list[tuple[Callable, int, int]]]) -> Callable:
    """One handler for every view that reads the image, so a new image costs one request instead of one per view.
    `stages` lists (view, the count of its inputs after the image, its output count) in the order of the event's
    controls and outputs. The handler takes (image, the digest of the image the views show, the controls) and
    yields (the new digest, the views' outputs): after each stage the views computed so far (the top of the page
    first), the others left as they are. A view that fails leaves its outputs as they were and the rest go on; the
    first failure is raised at the end, with the digest forgotten, so that the same image draws again. A cleared
    image (None), or the image the views already show, leaves everything as it is."""
    total = sum(n_out for stage in stages for _, _, n_out in stage)

    def views(image, drawn, *controls):
        picture = None if image is None else common.user_image(image)  # decoded once, for the digest and each view
        key = None if picture is None else common.digest(picture)
        if key is None or key == drawn:
            yield (gr.skip(),) * (1 + total)
            return
        failure, at_in, at_out = None, 0, 0
        for number, stage in enumerate(stages):
            out = [gr.skip()] * total
            for fn, n_in, n_out in stage:
                try:
                    result = fn(picture, *controls[at_in:at_in + n_in])
                    out[at_out:at_out + n_out] = result if n_out > 1 else (result,)
                except Exception as exc:  # reported once the other views are drawn
                    failure = failure or exc
                at_in, at_out = at_in + n_in, at_out + n_out
            yield (key if number == 0 else gr.skip(), *out)
        if failure is not None:
            yield (None, *[gr.skip()] * total)
            raise failure

    n_controls = sum(n_in for stage in stages for _, n_in, _ in stage)  # Gradio passes as many values as it sees
    views.__signature__ = inspect.Signature([inspect.Parameter(name, inspect.Parameter.POSITIONAL_ONLY) for name in
                                             ["image", "drawn", *(f"control_{i}" for i in range(n_controls))]])
    return views


def _with_scene(views: Callable) -> Callable:
    """A new scene and every view of it in one request: (scene, its ground truth, then what `views` yields for it).
    The image's change event that follows finds the views drawn and leaves them."""

    def scene(seed, drawn, *controls):
        image, truth = new_scene(seed)
        for number, out in enumerate(views(image, drawn, *controls)):
            yield (image, truth, *out) if number == 0 else (gr.skip(), gr.skip(), *out)

    scene.__signature__ = inspect.Signature([inspect.Parameter("seed", inspect.Parameter.POSITIONAL_ONLY),
                                             *list(inspect.signature(views).parameters.values())[1:]])
    return scene


def _views(ui: SimpleNamespace) -> list[tuple[Callable, list, list, str]]:
    """Every view that follows the image or the tier: (handler, inputs, outputs, api_name)."""
    return [
        (patches, [ui.image, ui.patch_size, ui.input_size, ui.tier], [ui.grid_img, ui.readout, ui.seq_img],
         "vit_patches"),
        (projection, [ui.tier], [ui.filters_img, ui.projection_note], "vit_projection"),
        (positions, [ui.tier], [ui.pos_img, ui.pos_note], "vit_positions"),
        (position_map, [ui.patch_index, ui.tier], [ui.pos_map], "vit_position_map"),
        (layernorm, [ui.image, ui.ln_layer, ui.tier], [ui.ln_plot], "vit_layernorm"),
        (attention, [ui.image, ui.layer, ui.head, ui.discard, ui.tier],
         [ui.attn_img, ui.roll_img, ui.distance, ui.top5, ui.attn_note], "vit_attention"),
        (trace, [ui.image, ui.tier], [ui.trace_table, ui.chain], "vit_trace"),
        (logit_lens, [ui.image, ui.tier], [ui.lens_plot, ui.lens_note], "vit_logit_lens"),
        (relevance, [ui.image, ui.rel_class, ui.fusion, ui.discard, ui.tier],
         [ui.raw_img, ui.fused_img, ui.rel_img, ui.rel_note], "vit_relevance"),
    ]


def _wire_views(ui: SimpleNamespace) -> None:
    """On load and on a new tier: fit the controls, then redraw every view; on a new image: redraw the views that
    read it. Each view's controls redraw it live (`.input`, so keyboard moves and typed values count too)."""
    show = common.show_errors
    synced = gr.on(None, show(sync_controls, on_device=False), [ui.tier],  # on load and on a tier change; it only
                   # waits for a model to load, so it holds no place in the device's queue
                   [ui.numbers, ui.layer, ui.head, ui.ln_layer, ui.rel_class, ui.patch_index],
                   api_visibility="private")
    controls = {  # api_name -> the triggers that redraw that view, besides a new image or tier
        "vit_patches": [ui.patch_btn.click, ui.input_size.input],
        "vit_position_map": [ui.patch_index.input, ui.patch_index.submit],
        "vit_layernorm": [ui.ln_layer.input],
        "vit_attention": [ui.attn_btn.click],
        "vit_logit_lens": [ui.lens_btn.click],
        "vit_relevance": [ui.rel_btn.click, ui.rel_class.input],
    }
    for fn, inputs, outputs, api_name in _views(ui):
        triggers = controls.get(api_name)
        if triggers:
            gr.on(triggers, show(fn), inputs, outputs, api_name=api_name, **LIVE)
        synced.then(show(fn), inputs, outputs, **({"api_visibility": "private"} if triggers else
                                                  {"api_name": api_name}))
    # a new image redraws every view that reads it, in one request, from the top of the page down; a new scene
    # brings them along with it (its image's change event then finds them drawn)
    reading = [(fn, inputs, outputs) for fn, inputs, outputs, _ in _views(ui) if ui.image in inputs]
    assert all(inputs[0] is ui.image for _, inputs, _ in reading), "the image first: _all_views passes it so"
    stages = [reading[:1], reading[1:3], reading[3:5], reading[5:]]  # the cut (step 1), steps 4-5, 6-7, relevance
    every_view = _all_views([[(fn, len(i) - 1, len(o)) for fn, i, o in stage] for stage in stages])
    knobs = [c for _, inputs, _ in reading for c in inputs[1:]]  # each view's inputs after the image, in order
    shown = [ui.drawn, *(c for _, _, outputs in reading for c in outputs)]  # the digest, then every view
    ui.image.change(show(every_view, on_device=True), [ui.image, ui.drawn, *knobs], shown, api_visibility="private",
                    **{**LIVE, "show_progress_on": [ui.image]})  # not over the views when it only finds them drawn
    # a new scene shows its progress on the image, where it lands: a spinner over each of the 20 outputs costs the page
    # its work at the click, and animates over views that are already drawn while the rest stream in
    gr.on([ui.scene_btn.click, ui.seed.submit], show(_with_scene(every_view), on_device=True),
          [ui.seed, ui.drawn, *knobs], [ui.image, ui.truth, *shown], api_name="vit_scene",
          **{**LIVE, "show_progress_on": [ui.image]})
    # a control redraws what it changes and nothing else: a layer or head its map; a discard ratio both rollouts,
    # from one forward pass; a head fusion the relevance section's rollout, without the backward pass relevance needs
    gr.on([ui.layer.input, ui.head.input], show(attention_layer), [ui.image, ui.layer, ui.head, ui.discard, ui.tier],
          [ui.attn_img, ui.attn_note], api_name="vit_attention_layer", **LIVE)
    ui.discard.input(show(rollouts), [ui.image, ui.layer, ui.head, ui.discard, ui.rel_class, ui.fusion, ui.tier],
                     [ui.roll_img, ui.attn_note, ui.fused_img, ui.rel_note], api_name="vit_rollouts", **LIVE)
    ui.fusion.input(show(fused_rollout), [ui.image, ui.rel_class, ui.fusion, ui.discard, ui.tier],
                    [ui.fused_img, ui.rel_note], api_name="vit_rollout_fusion", **LIVE)
    views = {api_name: (fn, inputs, outputs) for fn, inputs, outputs, api_name in _views(ui)}
    _, inputs, outputs = views["vit_patches"]  # a new P moves the input size to one that P divides, and cuts
    ui.patch_size.input(show(patches_for_size), inputs, [ui.input_size, *outputs], api_visibility="private", **LIVE)


def _wire_inputs(ui: SimpleNamespace) -> None:
    """Uploads, clicks on the position mosaic, the sinusoid's sliders, and the drawing pad."""
    show = common.show_errors
    ui.image.upload(lambda: "", None, ui.truth, api_visibility="private")  # an upload has no Shapes ground truth
    ui.pos_img.select(show(patch_from_click), [ui.tier], [ui.patch_index, ui.pos_map], api_visibility="private")
    gr.on([ui.d_model.input, ui.n_pos.input], show(sinusoid), [ui.d_model, ui.n_pos], [ui.pe_plot],
          api_name="vit_sinusoid", **LIVE)
    ui.sketch.change(show(drawing), [ui.sketch, ui.tier], [ui.draw_plot, ui.draw_note], api_name="vit_draw", **LIVE)
    ui.draw_use.click(show(use_drawing), [ui.sketch], [ui.image, ui.truth], api_name="vit_use_drawing")


def build() -> None:
    """Lay out the ViT tab inside the current Blocks context: the inputs, the lecture's seven steps, then what goes
    beyond it, and wire every control live."""
    ui = SimpleNamespace()
    for section in (_inputs, _step_patches, _step_projection, _step_positions, _step_layernorm, _step_attention,
                    _step_mlp, _step_head, _relevance_section, _drawing_section):
        section(ui)
    _wire_views(ui)
    _wire_inputs(ui)
