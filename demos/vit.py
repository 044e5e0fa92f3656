"""The ViT tab: patches, the tensor-shape tracer, positional embeddings, LayerNorm, attention maps, rollout and
relevance, and the logit lens.

Handlers are plain functions (image path or PIL image, numbers, tier) -> images, Markdown, figures; `build()` lays
them out. All maths lives in mmcore.vit.
"""

from __future__ import annotations

import math

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image
from plotly.subplots import make_subplots

from demos import common
from mmcore import models, shapes, viz
from mmcore import vit as V

FAMILY = "vit"
INPUT_SIZES = (32, 64, 112, 128, 224, 256, 384, 448)
MAX_SINUSOID_D = 1024
MAX_SINUSOID_POSITIONS = 512
LENS_TOP_K = 10  # a head with more classes than this (ImageNet's 1000) shows its final top-10 as lens columns
PREDICTED = "predicted"  # the relevance view's default class: whatever the model predicts
DRAW_COLORS = ["#{:02x}{:02x}{:02x}".format(*rgb) for rgb in shapes.COLORS.values()]
KNOWS = ("The **bundled ViT** knows six shapes (circle, square, triangle, diamond, star, hexagon) in any colour, "
         "drawn the way the wide Shapes world draws them: any rotation and size, stretched or squat, filled or "
         "outlined, hand-drawn wobbles, on light, dark or coloured backgrounds. Draw one in **Draw a shape** below: "
         "it names about 9 in 10 drawings made by code it never saw; stars and hexagons fool it most.")


def _bundle(tier: str | None) -> tuple[V.ViTBundle, str]:
    bundle, res = common.load(FAMILY, tier)
    return bundle, common.tier_label(FAMILY, res)


# --------------------------------------------------------------------------------------------------------- handlers

def new_scene(seed: float | None = None) -> tuple[Image.Image, str]:
    """A fresh Shapes scene with exactly one large object, and its ground truth."""
    image, scene = common.random_scene(seed, one_large=True)
    big = shapes.largest(scene)
    return image, (f"**Ground truth** (test-split scene {scene.seed - shapes.SPLITS['test']}): {shapes.caption(scene)}."
                   f" The largest object is a **{big.shape}**, which the bundled ViT was trained to name.")


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


def _prediction_figure(top: list[tuple[str, float]], title: str, height: int = 300) -> go.Figure:
    fig = go.Figure(go.Bar(x=[p for _, p in top][::-1], y=[lab for lab, _ in top][::-1], orientation="h",
                           text=[f"{p:.1%}" for _, p in top][::-1], textposition="auto", marker_color="#6366f1"))
    fig.update_layout(title=title, xaxis={"range": [0, 1], "tickformat": ".0%"}, height=height,
                      margin={"l": 140, "r": 20, "t": 50, "b": 30})
    return fig


def drawing(sketch, tier: str | None = None) -> tuple[go.Figure, str]:
    """Classify a drawing from the sketchpad, live while it is drawn: (probabilities of every class, a sentence)."""
    img = _sketch_image(sketch)
    if img is None:
        return _prediction_figure([], "Draw a shape"), "Draw a shape in one of the six colours."
    bundle, label = _bundle(tier)
    with torch.no_grad():
        top = V.predict(bundle.model, bundle.pixel_values(img), top_k=bundle.model.config.num_labels)
    size = bundle.model.config.image_size
    return (_prediction_figure(top, "What the ViT sees in your drawing"),
            f"{label}\n\nThe model sees your drawing at {size} × {size} px and says **{top[0][0]}** "
            f"({top[0][1]:.0%}).")


def use_drawing(sketch) -> tuple[Image.Image, str]:
    """Send the drawing to the tab's image, so every view below explains it."""
    img = _sketch_image(sketch)
    if img is None:
        raise ValueError("Draw a shape first.")
    return img, "Your drawing: no ground truth, but you know what you drew."


def patches(image, patch_size: float, input_size: float, tier: str | None = None
            ) -> tuple[Image.Image, str, Image.Image]:
    """Cut the image into P x P patches: (grid overlay, readout Markdown, 16 patches in
    token order from the middle row, as a sequence)."""
    img = common.user_image(image)
    p = int(patch_size) if patch_size in V.PATCH_SIZES else None
    if p is None:
        raise ValueError(f"patch_size must be one of {V.PATCH_SIZES}, got {patch_size!r}")
    size = common.whole_number(input_size, "input size", 32, 448)
    n = V.num_patches(size, p)  # raises a clear error when P does not divide the input size
    g = V.grid_size(size, p)
    bundle, res = common.load(FAMILY, tier)
    name = models.get_spec(FAMILY, res.tier).name
    cfg = bundle.model.config
    d = cfg.hidden_size
    readout = (
        f"### N = HW / P² = {size}·{size} / {p}² = **{n} patches** ({g} × {g} grid)\n"
        f"Each patch is a vector of P²·C = {p}²·3 = **{p * p * 3}** numbers; the projection "
        f"(a Conv2d with kernel = stride = P) maps it to D. With this model's D = **{d}** the sequence is "
        f"**1 × {n} × {d}**, and **1 × {n + 1} × {d}** with the CLS token.\n\n"
        f"The model in use ({name}) was trained at **{cfg.image_size} px with P = {cfg.patch_size}** "
        f"(N = {V.num_patches(cfg.image_size, cfg.patch_size)}): the grid above is for exploring, the attention "
        f"maps below use the model's own grid.")
    count = min(16, n)
    start = min((g // 2) * g, n - count)  # from the middle row: the first row is often only background
    return V.patch_grid(img, p, size), readout, V.patch_sequence(img, p, size, count=count, start=start)


def trace(image, tier: str | None = None) -> tuple[list[list[str]], str]:
    """Hook every stage of one real forward pass: a table of (stage, shape) and the chain as Markdown."""
    img = common.user_image(image)
    bundle, label = _bundle(tier)
    steps = V.trace_shapes(bundle.model, bundle.pixel_values(img))
    rows = [[name, " × ".join(map(str, shape))] for name, shape in steps]
    chain = " → ".join(f"`{s}`" for _, s in rows)
    return rows, f"{label}\n\n{chain}"


def positions(tier: str | None = None) -> tuple[Image.Image, str]:
    """The learned position embeddings' cosine similarities: one small map per patch (the ViT paper's figure 7)."""
    bundle, _ = _bundle(tier)
    pos = bundle.model.vit.embeddings.position_embeddings[0, 1:].detach().float().cpu()  # (N, D), CLS row dropped
    g = math.isqrt(pos.shape[0])
    sim = V.position_similarity(pos).numpy().reshape(g, g, g, g)  # (row, col) of query patch x key grid
    side = g * (g + 1) - 1
    img = viz.mosaic(sim, gap=1, cell_px=max(1, 440 // side))
    return img, (f"{g} × {g} patches, D = {pos.shape[1]}. Tile (r, c) shows how similar the position embedding of "
                 "patch (r, c) is to every other one (yellow = similar). Nobody told the model about rows and "
                 "columns: it learned them. **Click a tile** to enlarge it.")


def position_map(patch_index: float, tier: str | None = None) -> go.Figure:
    """One patch's similarity to every position, as a heatmap with values."""
    bundle, _ = _bundle(tier)
    pos = bundle.model.vit.embeddings.position_embeddings[0, 1:].detach().float().cpu()  # (N, D)
    n = pos.shape[0]
    g = math.isqrt(n)
    i = common.whole_number(patch_index, "patch index", 0, n - 1)
    sim = V.position_similarity(pos)[i].reshape(g, g).numpy()
    fig = go.Figure(go.Heatmap(z=sim, colorscale="Viridis", zmin=-1, zmax=1, colorbar={"title": "cos"}))
    fig.add_scatter(x=[i % g], y=[i // g], mode="markers", marker={"symbol": "x", "size": 12, "color": "red"},
                    name=f"patch {i}")
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    fig.update_layout(title=f"Patch {i} (row {i // g}, column {i % g}) vs every position", height=420,
                      margin={"l": 30, "r": 30, "t": 50, "b": 30}, showlegend=False)
    return fig


def patch_from_click(tier: str | None, evt: gr.SelectData) -> tuple[float, go.Figure]:
    """Which tile of the position mosaic was clicked (the mosaic is g x g tiles of g x g cells plus 1-cell gaps)."""
    bundle, _ = _bundle(tier)
    n = bundle.model.vit.embeddings.position_embeddings.shape[1] - 1
    g = math.isqrt(n)
    side = g * (g + 1) - 1
    cell_px = max(1, 440 // side)
    x, y = evt.index
    col, row = min(g - 1, int(x) // (cell_px * (g + 1))), min(g - 1, int(y) // (cell_px * (g + 1)))
    return row * g + col, position_map(row * g + col, tier)


def sinusoid(d_model: float, num_positions: float) -> go.Figure:
    """The lecture's fixed encoding PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...), as a heatmap."""
    d = common.whole_number(d_model, "d_model", 2, MAX_SINUSOID_D)
    if d % 2:
        raise ValueError(f"d_model must be even (sin and cos come in pairs), got {d}")
    n = common.whole_number(num_positions, "positions", 1, MAX_SINUSOID_POSITIONS)
    pe = V.sinusoidal_encoding(n, d)
    fig = go.Figure(go.Heatmap(z=pe, colorscale="RdBu", zmid=0, colorbar={"title": "PE"}))
    fig.update_layout(title=f"Sinusoidal encoding, {n} positions × d = {d}", xaxis_title="dimension (2i, 2i+1)",
                      yaxis_title="position", height=380, margin={"l": 50, "r": 30, "t": 50, "b": 40})
    fig.update_yaxes(autorange="reversed")
    return fig


def layernorm(image, layer: float, tier: str | None = None) -> go.Figure:
    """Per-token mean and variance before and after the LayerNorm in front of attention, at one layer."""
    img = common.user_image(image)
    bundle, _ = _bundle(tier)
    n_layers = bundle.model.config.num_hidden_layers
    li = common.whole_number(layer, "layer", 0, n_layers - 1)
    stats = V.layernorm_stats(bundle.model, bundle.pixel_values(img), li)
    tokens = np.arange(len(stats["mean_before"]))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("per-token mean μ", "per-token variance σ²"))
    for col, kind in ((1, "mean"), (2, "var")):
        for key, name, color in (("before", "x (input)", "#94a3b8"), ("hat", "x̂ = (x−μ)/√(σ²+ε)", "#6366f1"),
                                 ("after", "LN(x) = x̂·γ + β", "#f59e0b")):
            fig.add_scatter(x=tokens, y=stats[f"{kind}_{key}"], mode="lines", name=name, line={"color": color},
                            legendgroup=key, showlegend=col == 1, row=1, col=col)
    fig.update_xaxes(title_text="token (0 = CLS)")
    fig.update_layout(title=f"LayerNorm before attention in block {li}", height=360,
                      margin={"l": 40, "r": 20, "t": 60, "b": 40}, legend={"orientation": "h", "y": -0.25})
    return fig


def attention(image, layer: float, head: str | None, discard_ratio: float, tier: str | None = None
              ) -> tuple[Image.Image, Image.Image, go.Figure, go.Figure, str]:
    """CLS->patch attention of one layer and head (or the head mean), attention rollout over all layers, the mean
    attention distance per head and layer, and the top-5 predictions."""
    img = common.user_image(image)
    if discard_ratio is None or not 0 <= float(discard_ratio) < 1:
        raise ValueError(f"discard ratio must be in [0, 1), got {discard_ratio!r}")
    bundle, label = _bundle(tier)
    cfg = bundle.model.config
    li = common.whole_number(layer, "layer", 0, cfg.num_hidden_layers - 1)
    hi = None if head in (None, "", "mean") else common.whole_number(head, "head", 0, cfg.num_attention_heads - 1)
    x = bundle.pixel_values(img)
    _, atts = V.forward(bundle.model, x)
    atts = [a.float().cpu() for a in atts]  # L x (1, H, T, T)
    g = V.grid_size(cfg.image_size, cfg.patch_size)
    seen = img.convert("RGB").resize((cfg.image_size, cfg.image_size), Image.Resampling.BICUBIC)
    one = V.cls_attention(atts, li, hi).numpy()
    roll = V.cls_rollout_map(V.attention_rollout(atts, discard_ratio=float(discard_ratio)), g).numpy()

    dist = V.mean_attention_distance(atts, cfg.patch_size)  # (L, H) pixels
    fig_d = go.Figure()
    for h in range(dist.shape[1]):
        fig_d.add_scatter(x=np.arange(dist.shape[0]), y=dist[:, h], mode="markers", name=f"head {h}",
                          marker={"size": 9})
    fig_d.update_layout(title="Mean attention distance (ViT paper, fig. 7 right)", xaxis_title="layer",
                        yaxis_title="pixels", height=330, margin={"l": 50, "r": 20, "t": 50, "b": 40})

    with torch.no_grad():
        top = V.predict(bundle.model, x, top_k=5)
    fig_p = _prediction_figure(top, "Top-5 predictions")
    head_name = "mean over heads" if hi is None else f"head {hi}"
    note = (f"{label}\n\nLayer {li}, {head_name}: where the CLS token looks. Rollout multiplies (A + I)/2 through "
            f"all {cfg.num_hidden_layers} layers (residual-aware), discarding the lowest {float(discard_ratio):.0%} "
            f"of weights per layer. Grid {g} × {g} of {cfg.patch_size}-px patches.")
    return viz.overlay(seen, one), viz.overlay(seen, roll), fig_d, fig_p, note


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


def relevance(image, class_name: str | None, head_fusion: str, discard_ratio: float, tier: str | None = None
              ) -> tuple[Image.Image, Image.Image, Image.Image, str]:
    """Three answers to "which patches matter?" for one image, side by side: raw attention (the last layer's CLS
    row, mean over heads), attention rollout (heads fused by `head_fusion`), and gradient-weighted relevance for one
    class (the predicted one by default). Returns the three overlays and a note on what to notice."""
    img = common.user_image(image)
    if head_fusion not in V.HEAD_FUSIONS:
        raise ValueError(f"head fusion must be one of {', '.join(V.HEAD_FUSIONS)}, got {head_fusion!r}")
    if discard_ratio is None or not 0 <= float(discard_ratio) < 1:
        raise ValueError(f"discard ratio must be in [0, 1), got {discard_ratio!r}")
    bundle, label = _bundle(tier)
    index = _class_index(bundle, class_name)
    cfg = bundle.model.config
    g = V.grid_size(cfg.image_size, cfg.patch_size)
    logits, index, atts, grads = V.attention_gradients(bundle.model, bundle.pixel_values(img), index)
    raw = V.cls_attention(atts, len(atts) - 1).float().cpu().numpy()
    roll = V.cls_rollout_map(V.attention_rollout(atts, float(discard_ratio), head_fusion), g).cpu().numpy()
    rel = V.cls_rollout_map(V.relevance_rollout(atts, grads), g).cpu().numpy()
    names = V.class_names(bundle.model)
    prob = float(logits.softmax(-1)[index])
    chosen = "the predicted class" if class_name in (None, "", PREDICTED) else "the chosen class"
    seen = img.convert("RGB").resize((cfg.image_size, cfg.image_size), Image.Resampling.BICUBIC)
    note = (f"{label}\n\nRelevance for **{names[index]}** ({chosen}, p = {prob:.1%}); rollout fuses the heads by "
            f"**{head_fusion}** and discards the lowest {float(discard_ratio):.0%} of each layer's weights.\n\n"
            "**What to notice:** raw attention and rollout ignore the class: pick another class and only the "
            "relevance map changes. Relevance keeps only the attention whose gradient raises that class's logit, so "
            "it usually sits tighter on the object than plain rollout. Try the runner-up class: what evidence does "
            "the model find for it?")
    return viz.overlay(seen, raw), viz.overlay(seen, roll), viz.overlay(seen, rel), note


def logit_lens(image, tier: str | None = None) -> tuple[go.Figure, str]:
    """The logit lens: the prediction read from the CLS token after each block, through the model's own final
    LayerNorm and head. Returns a blocks x classes heatmap of probabilities (every class, or the final top
    LENS_TOP_K of a larger head) and a note naming the block from which the final answer leads."""
    img = common.user_image(image)
    bundle, label = _bundle(tier)
    probs = V.logit_lens(bundle.model, bundle.pixel_values(img)).softmax(-1).cpu().numpy()  # (L, num_labels)
    n_blocks, n_classes = probs.shape
    columns = np.arange(n_classes) if n_classes <= LENS_TOP_K else np.argsort(-probs[-1])[:LENS_TOP_K]
    names = V.class_names(bundle.model)
    z = probs[:, columns]  # (L, k)
    hover = np.array([[names[c] for c in columns]] * n_blocks)  # (L, k)
    fig = go.Figure(go.Heatmap(z=z, y=[f"block {b}" for b in range(n_blocks)], zmin=0, zmax=1, colorscale="Viridis",
                               texttemplate="%{z:.2f}", colorbar={"title": "p", "tickformat": ".0%"}, customdata=hover,
                               hovertemplate="%{y}, %{customdata}: p = %{z:.3f}<extra></extra>"))
    # columns by position, named by tick: ImageNet repeats some labels ("crane" the bird and the machine)
    fig.update_xaxes(tickvals=list(range(len(columns))), ticktext=[names[c][:24] for c in columns])
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title="Logit lens: head(LayerNorm(CLS after block l))", height=140 + 40 * n_blocks,
                      margin={"l": 70, "r": 20, "t": 50, "b": 90})
    top = probs.argmax(axis=1)  # (L,) the lens's answer after each block
    final = int(top[-1])
    settled = n_blocks - int(np.argmax(top[::-1] != final)) if (top != final).any() else 0
    shown = "every class" if n_classes <= LENS_TOP_K else f"the final top {LENS_TOP_K} of {n_classes} classes"
    note = (f"{label}\n\nColumns: {shown}. The last row is the model's own prediction, **{names[final]}** "
            f"({probs[-1, final]:.1%}); it leads from **block {settled}** on.\n\n"
            "**What to notice:** the answer is not in the CLS token from the start: it forms block by block, mostly "
            "in the later ones. Watch for a runner-up that leads early and is overtaken.")
    return fig, note


# -------------------------------------------------------------------------------------------------------------- UI

def build() -> None:
    """Lay out the ViT tab inside the current Blocks context."""
    gr.Markdown("## Vision Transformer: an image is worth 16×16 words\n"
                "Cut the image into P×P patches, project each to D numbers (a Conv2d with kernel = stride = P), add "
                "a learned position embedding z = x + p, prepend a CLS token, and run transformer blocks "
                "(LayerNorm → multi-head attention → residual → MLP).")
    with gr.Row():
        with gr.Column(scale=1):
            first_image, first_truth = new_scene(seed=42)  # something to click on straight away
            image = common.image_input(value=first_image)
            gr.Markdown(KNOWS)
            with gr.Row():
                scene_btn = gr.Button("🎲 Random Shapes scene", variant="secondary")
                seed = gr.Number(label="seed (−1 = random)", value=-1, precision=0, minimum=-1, scale=0,
                                 min_width=140)
            truth = gr.Markdown(first_truth)
            gr.Examples([[str(p)] for p in common.SAMPLES], inputs=[image], outputs=[truth], fn=lambda _: "",
                        run_on_click=True, cache_examples=False, label="Sample photos")  # photos: no ground truth
            gr.Markdown(common.PHOTO_NOTE)
        with gr.Column(scale=1):
            tier = common.tier_radio(FAMILY)
            with gr.Row():
                patch_size = gr.Radio(list(V.PATCH_SIZES), value=16, label="patch size P")
                input_size = gr.Dropdown(list(INPUT_SIZES), value=224, label="input size (px)")
            patch_btn = gr.Button("✂️ Cut into patches", variant="primary")
            readout = gr.Markdown()
    with gr.Row():
        grid_img = gr.Image(label="Patch grid (indices = token order)", format="png", interactive=False)
        with gr.Column():
            seq_img = gr.Image(label="Patches in token order, from the middle row: a sequence of 'words'",
                               format="png", interactive=False)
            trace_btn = gr.Button("🔎 Trace tensor shapes through a real forward pass")
            chain = gr.Markdown()
            trace_table = gr.Dataframe(headers=["stage", "shape"], label="Shape tracer (recorded by hooks)",
                                       interactive=False, wrap=True)

    gr.Markdown("### Draw a shape\nChoose the brush (✏️ on the left of the pad), then draw one of the six shapes "
                "with a colour from the palette. The ViT classifies it as you draw.")
    with gr.Row():
        sketch = gr.Sketchpad(label="Draw a shape", type="numpy", image_mode="RGBA", canvas_size=(256, 256),
                              brush=gr.Brush(default_size=12, colors=DRAW_COLORS, default_color=DRAW_COLORS[0]),
                              height=340)
        with gr.Column():
            draw_plot = gr.Plot(label="Prediction for the drawing")
            draw_note = gr.Markdown()
            draw_use = gr.Button("⬆️ Explain this drawing in the views above and below")

    gr.Markdown("### Attention: where does the CLS token look?")
    with gr.Row():
        layer = gr.Slider(0, 11, value=0, step=1, label="layer")
        head = gr.Dropdown(["mean"] + [str(h) for h in range(12)], value="mean", label="head")
        discard = gr.Slider(0.0, 0.95, value=0.0, step=0.05, label="rollout discard ratio")
        attn_btn = gr.Button("👁️ Show attention", variant="primary")
    attn_note = gr.Markdown()
    with gr.Row():
        attn_img = gr.Image(label="CLS → patch attention (one layer)", format="png", interactive=False)
        roll_img = gr.Image(label="Attention rollout (all layers)", format="png", interactive=False)
    with gr.Row():
        top5 = gr.Plot(label="Predictions")
        distance = gr.Plot(label="Mean attention distance")

    gr.Markdown("### Which patches matter for a class? Raw attention, rollout and relevance\n"
                "Raw attention is one layer; rollout multiplies the layers' (A + I) with the heads fused as you "
                "choose; relevance (Chefer et al., 2021) weights every head's attention by the gradient of the "
                "class's logit, keeps the positive part, and rolls it up: R = I, R += mean_heads((∇A ⊙ A)⁺) R. "
                "Rollout uses the discard ratio set above.")
    with gr.Row():
        rel_class = gr.Dropdown([PREDICTED], value=PREDICTED, label="class (relevance)", filterable=True)
        fusion = gr.Radio(list(V.HEAD_FUSIONS), value="mean", label="head fusion (rollout)")
        rel_btn = gr.Button("🧭 Compare the three maps", variant="primary")
    rel_note = gr.Markdown()
    with gr.Row():
        raw_img = gr.Image(label="Raw attention (last layer, CLS row, mean over heads)", format="png",
                           interactive=False)
        fused_img = gr.Image(label="Attention rollout (heads fused as chosen)", format="png", interactive=False)
        rel_img = gr.Image(label="Relevance for the class (gradient-weighted rollout)", format="png",
                           interactive=False, elem_id="vit-relevance")

    gr.Markdown("### Positional embeddings: learned (z = x + p) and sinusoidal")
    with gr.Row():
        with gr.Column():
            pos_btn = gr.Button("Show learned position similarities")
            pos_note = gr.Markdown()
            pos_img = gr.Image(label="Cosine similarity of position embeddings (click a tile)", format="png",
                               interactive=False, height=480)
        with gr.Column():
            patch_index = gr.Number(label="patch index", value=0, precision=0, minimum=0)
            pos_map = gr.Plot(label="One patch vs every position")
    with gr.Row():
        d_model = gr.Slider(2, 512, value=128, step=2, label="d (sinusoidal)")
        n_pos = gr.Slider(1, 256, value=64, step=1, label="positions")
    pe_plot = gr.Plot(label="PE(pos, 2i) = sin(pos/10000^(2i/d)), PE(pos, 2i+1) = cos(…)")

    gr.Markdown("### LayerNorm: LN(x) = (x − μ) / √(σ² + ε) · γ + β, per token")
    with gr.Row():
        ln_layer = gr.Slider(0, 11, value=0, step=1, label="block")
        ln_btn = gr.Button("📏 Measure LayerNorm")
    ln_plot = gr.Plot(label="Per-token statistics")

    gr.Markdown("### Output layer: the logit lens\n"
                "The head reads only the CLS token after the last block: logits = W · LN(h_L[CLS]) + b. Apply the "
                "same LayerNorm and head to the CLS token after every earlier block, as if the network stopped there.")
    with gr.Row():
        lens_btn = gr.Button("🔭 Read the CLS token after every block", variant="primary", scale=0, min_width=280)
        lens_note = gr.Markdown()
    lens_plot = gr.Plot(label="Logit lens (blocks × classes)", elem_id="vit-lens")

    def sync_controls(choice):
        """Fit the layer/head/class controls to the model in use."""
        bundle, _ = _bundle(choice)
        cfg = bundle.model.config
        last = cfg.num_hidden_layers - 1
        heads = ["mean"] + [str(h) for h in range(cfg.num_attention_heads)]
        return (gr.Slider(maximum=last, value=min(last, 0)), gr.Dropdown(choices=heads, value="mean"),
                gr.Slider(maximum=last, value=0),
                gr.Dropdown(choices=[PREDICTED, *V.class_names(bundle.model)], value=PREDICTED))

    ui = common.show_errors
    scene_btn.click(ui(new_scene), [seed], [image, truth], api_name="vit_scene")
    image.upload(lambda: "", None, truth, api_visibility="private")  # an uploaded image has no Shapes ground truth
    patch_btn.click(ui(patches), [image, patch_size, input_size, tier], [grid_img, readout, seq_img],
                    api_name="vit_patches")
    trace_btn.click(ui(trace), [image, tier], [trace_table, chain], api_name="vit_trace")
    attn_btn.click(ui(attention), [image, layer, head, discard, tier], [attn_img, roll_img, distance, top5, attn_note],
                   api_name="vit_attention")
    sketch.change(ui(drawing), [sketch, tier], [draw_plot, draw_note], api_name="vit_draw", trigger_mode="always_last")
    draw_use.click(ui(use_drawing), [sketch], [image, truth], api_name="vit_use_drawing")
    pos_btn.click(ui(positions), [tier], [pos_img, pos_note], api_name="vit_positions")
    gr.on(None, ui(positions), [tier], [pos_img, pos_note], api_visibility="private").then(  # on load, tier change
        ui(position_map), [patch_index, tier], [pos_map], api_visibility="private")
    patch_index.submit(ui(position_map), [patch_index, tier], [pos_map], api_name="vit_position_map")
    pos_img.select(ui(patch_from_click), [tier], [patch_index, pos_map], api_visibility="private")
    gr.on(None, ui(sinusoid), [d_model, n_pos], [pe_plot], api_name="vit_sinusoid")  # on load and on change
    rel_btn.click(ui(relevance), [image, rel_class, fusion, discard, tier], [raw_img, fused_img, rel_img, rel_note],
                  api_name="vit_relevance")
    ln_btn.click(ui(layernorm), [image, ln_layer, tier], [ln_plot], api_name="vit_layernorm")
    lens_btn.click(ui(logit_lens), [image, tier], [lens_plot, lens_note], api_name="vit_logit_lens")
    gr.on(None, ui(sync_controls), [tier], [layer, head, ln_layer, rel_class],
          api_visibility="private")  # on load + change
