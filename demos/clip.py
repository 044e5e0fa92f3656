"""The CLIP tab: a live image x text similarity matrix, temperature, the contrastive loss, the shared space and its
modality gap, zero-shot with one prompt template or an ensemble.

Handlers are plain functions; `build()` lays them out. The maths (InfoNCE, softmaxes, PCA) lives in mmcore.clip, and
embeddings are cached by content there, so a temperature change only redoes the maths.
"""

from __future__ import annotations

import functools
import math

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image

from demos import common
from mmcore import clip as C
from mmcore import shapes

FAMILY = "clip"
MAX_IMAGES = 16
LOG_TAU_RANGE = (-3.0, 1.0)  # log10 of the temperature: 0.001 ... 10
PROBE_TEXTS = ("a red circle and a blue square", "a blue circle and a red square")
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
ENSEMBLE_TASKS = {"shape": shapes.SHAPES, "colour": shapes.COLOR_NAMES}  # labels of a one-object Shapes scene
ENSEMBLE_TEMPLATES = {  # the defaults per task; the first line is the "one template"
    "shape": ("a {}", "a picture of a {}", "there is a {}", "one {}", "a drawing of a {}", "a photo of a {}",
              "a small {}", "a large {}"),
    "colour": ("a {} shape", "a {} object", "something {}", "a {} thing", "the colour {}", "a picture of something {}"),
}
PROMPT_MODES = ("one template", "ensemble")
MAX_TEMPLATES = 16
ENSEMBLE_BATCH = (12, 96)  # how many labelled one-object scenes the accuracy is measured on


def _bundle(tier: str | None) -> tuple[C.ClipBundle, str]:
    bundle, res = common.load(FAMILY, tier)
    return bundle, common.tier_label(FAMILY, res)


def _paths(gallery) -> list:
    """Gallery value -> list of image sources (a path, or a PIL image); Gradio gives (path, caption) pairs."""
    items = []
    for item in gallery or []:
        if isinstance(item, (tuple, list)):
            item = item[0]
        if isinstance(item, dict):
            item = item.get("path") or item.get("image") or item.get("name")
        items.append(item)
    return items


def _images(gallery) -> list[Image.Image]:
    items = _paths(gallery)
    if not items:
        raise ValueError("No images yet: upload some, use the sample photos, or draw a random Shapes batch.")
    if len(items) > MAX_IMAGES:
        raise ValueError(f"At most {MAX_IMAGES} images, got {len(items)}.")
    return [common.user_image(item, what=f"image {i + 1}") for i, item in enumerate(items)]


def _tau(log_tau: float | None) -> float:
    if log_tau is None or not math.isfinite(float(log_tau)):
        raise ValueError(f"temperature (log10 τ) must be a finite number in {LOG_TAU_RANGE}, got {log_tau!r}")
    return C.validate_temperature(10.0 ** float(log_tau))


def _heatmap(z: np.ndarray, title: str, rows: list[str], cols: list[str], hover_cols: list[str],
             zmin: float | None = None, zmax: float | None = None, highlight_diagonal: bool = True) -> go.Figure:
    """A heatmap with its values written in, the matched pairs (the diagonal) outlined in red."""
    n_rows, n_cols = len(rows), len(cols)
    hover = np.array([[f"{r} × {c}" for c in hover_cols] for r in rows])  # (rows, cols)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(n_cols)), y=list(range(n_rows)), zmin=zmin, zmax=zmax, colorscale="Viridis",
        texttemplate="%{z:.2f}", customdata=hover, hovertemplate="%{customdata}: %{z:.3f}<extra></extra>"))
    if highlight_diagonal and n_rows == n_cols:
        xs, ys = [], []  # one trace outlines every matched pair (a layout shape each is 10x slower to build)
        for i in range(n_rows):
            xs += [i - 0.5, i + 0.5, i + 0.5, i - 0.5, i - 0.5, None]
            ys += [i - 0.5, i - 0.5, i + 0.5, i + 0.5, i - 0.5, None]
        fig.add_scatter(x=xs, y=ys, mode="lines", line={"color": "red", "width": 2}, hoverinfo="skip",
                        showlegend=False)
    fig.update_xaxes(tickvals=list(range(n_cols)), ticktext=cols, range=[-0.5, n_cols - 0.5], showgrid=False)
    fig.update_yaxes(tickvals=list(range(n_rows)), ticktext=rows, range=[n_rows - 0.5, -0.5], showgrid=False)
    fig.update_layout(title=title, height=380, margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig


def _short(text: str, n: int = 22) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------------------------------------- handlers

def new_batch(n: float = 8, seed: float | None = None) -> tuple[list[Image.Image], str]:
    """n fresh Shapes scenes (test split) and their true captions, in matching order."""
    count = int(n) if n is not None and math.isfinite(float(n)) else 8
    if not 2 <= count <= MAX_IMAGES:
        raise ValueError(f"batch size must be in [2, {MAX_IMAGES}], got {n}")
    first = None if seed is None else int(seed)
    scenes = [common.random_scene(None if first is None else first + i) for i in range(count)]
    return [img for img, _ in scenes], "\n".join(shapes.caption(s) for _, s in scenes)


def sample_photos() -> tuple[list[str], str]:
    """The bundled sample photos with plain captions, for the pretrained tier."""
    captions = {"astronaut": "a photo of an astronaut", "chelsea": "a photo of a cat",
                "coffee": "a photo of a cup of coffee", "rocket": "a photo of a rocket launch"}
    paths = [p for p in common.SAMPLES if p.stem in captions]
    return [str(p) for p in paths], "\n".join(captions[p.stem] for p in paths)


def similarity(gallery, texts: str, tier: str | None = None):
    """Encode (cached) and compare. Returns S (B_img, B_txt) cosine similarities, the texts, the image and text
    embeddings (B, D), and the model's label."""
    images = _images(gallery)
    lines = C.parse_texts(texts, max_lines=MAX_IMAGES)
    bundle, label = _bundle(tier)
    img = C.encode_images(bundle, images)  # (Bi, D), unit norm
    txt = C.encode_texts(bundle, lines)  # (Bt, D), unit norm
    return (img @ txt.T).double().numpy(), lines, img, txt, bundle, label


def matrix_views(S: np.ndarray, texts: list[str], log_tau: float) -> tuple[go.Figure, go.Figure, go.Figure, str]:
    """From a similarity matrix alone: heatmaps of S, row softmax, column softmax, and the loss in Markdown."""
    tau = _tau(log_tau)
    S = np.asarray(S, dtype=np.float64)
    rows = [f"I{i + 1}" for i in range(S.shape[0])]
    cols = [f"T{j + 1}" for j in range(S.shape[1])]
    hover = [f"T{j + 1} “{_short(t, 40)}”" for j, t in enumerate(texts)]
    fig_s = _heatmap(S, "Cosine similarity S", rows, cols, hover, -1, 1)
    fig_r = _heatmap(C.softmax_rows(S, tau).numpy(), f"image→text: row softmax, τ={tau:.3g}",
                     rows, cols, hover, 0, 1)
    fig_c = _heatmap(C.softmax_cols(S, tau).numpy(), f"text→image: column softmax, τ={tau:.3g}",
                     rows, cols, hover, 0, 1)
    legend = "\n".join(f"- **T{j + 1}**: {t}" for j, t in enumerate(texts))
    head = f"**τ = {tau:.4g}** (logit scale 1/τ = {1 / tau:.4g})\n\n"
    if S.shape[0] != S.shape[1]:
        return fig_s, fig_r, fig_c, (head + f"⚠️ {S.shape[0]} images and {S.shape[1]} texts: the contrastive loss "
                                     "needs **B matched pairs** (image i with text i), so it is not computed. The "
                                     "matrix and the softmaxes still are.\n\n" + legend)
    loss = C.info_nce(S, tau)
    per = " · ".join(f"I{i + 1}: {a:.3f} / T{i + 1}: {b:.3f}" for i, (a, b) in
                     enumerate(zip(loss.per_image, loss.per_text)))
    md = (head +
          r"$$\mathcal{L}_{i\to t} = -\frac{1}{B}\sum_{i=1}^{B}\log\frac{e^{S_{ii}/\tau}}{\sum_{j} e^{S_{ij}/\tau}}"
          rf" = {loss.image_to_text:.4f}$$" "\n"
          r"$$\mathcal{L}_{t\to i} = -\frac{1}{B}\sum_{j=1}^{B}\log\frac{e^{S_{jj}/\tau}}{\sum_{i} e^{S_{ij}/\tau}}"
          rf" = {loss.text_to_image:.4f}$$" "\n"
          r"$$\mathcal{L}_{CLIP} = \tfrac{1}{2}\left(\mathcal{L}_{i\to t} + \mathcal{L}_{t\to i}\right)"
          rf" = {loss.clip:.4f}$$" "\n\n"
          f"Per pair (row loss / column loss): {per}\n\n" + legend)
    return fig_s, fig_r, fig_c, md


def _pca_figure(img: torch.Tensor, txt: torch.Tensor, lines: list[str]) -> go.Figure:
    pi, pt, ratio = C.pca_2d(img, txt)
    fig = go.Figure()
    for i in range(min(len(pi), len(pt))):
        fig.add_scatter(x=[pi[i, 0], pt[i, 0]], y=[pi[i, 1], pt[i, 1]], mode="lines", showlegend=False,
                        line={"color": "#cbd5e1", "width": 1}, hoverinfo="skip")
    fig.add_scatter(x=pi[:, 0], y=pi[:, 1], mode="markers+text", name="images",
                    text=[f"I{i + 1}" for i in range(len(pi))], textposition="top center",
                    marker={"size": 12, "symbol": "square", "color": "#6366f1"})
    fig.add_scatter(x=pt[:, 0], y=pt[:, 1], mode="markers+text", name="texts",
                    text=[f"T{j + 1}" for j in range(len(pt))], hovertext=lines, textposition="bottom center",
                    marker={"size": 11, "color": "#f59e0b"})
    fig.update_layout(title=f"Shared space, PCA (explains {ratio.sum():.0%} of the variance)", height=420,
                      xaxis_title=f"PC1 ({ratio[0]:.0%})", yaxis_title=f"PC2 ({ratio[1]:.0%})",
                      margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig


def gap(gallery, texts: str, tier: str | None = None) -> tuple[go.Figure, str]:
    """The modality gap of the images and texts above: both in the plane spanned by the gap's direction and the main
    remaining variation (mmcore.clip.gap_plane), the offset between the two clusters' centres drawn as an arrow at its
    true length, and a note with |mean_img - mean_txt| and what it means."""
    images = _images(gallery)
    lines = C.parse_texts(texts, max_lines=MAX_IMAGES)
    bundle, label = _bundle(tier)
    img, txt = C.encode_images(bundle, images), C.encode_texts(bundle, lines)  # (Bi, D), (Bt, D), unit rows
    _, size = C.modality_gap(img, txt)
    pi, pt = C.gap_plane(img, txt)
    ci, ct = pi.mean(axis=0), pt.mean(axis=0)  # the two centres: (size, 0) apart
    fig = go.Figure()
    fig.add_scatter(x=pi[:, 0], y=pi[:, 1], mode="markers+text", name="images", textposition="top center",
                    text=[f"I{i + 1}" for i in range(len(pi))],
                    marker={"size": 11, "symbol": "square", "color": "#6366f1"})
    fig.add_scatter(x=pt[:, 0], y=pt[:, 1], mode="markers+text", name="texts", textposition="bottom center",
                    text=[f"T{j + 1}" for j in range(len(pt))], hovertext=lines,
                    marker={"size": 10, "color": "#f59e0b"})
    fig.add_annotation(x=ci[0], y=ci[1], ax=ct[0], ay=ct[1], xref="x", yref="y", axref="x", ayref="y", text="",
                       showarrow=True, arrowhead=3, arrowsize=1.5, arrowwidth=2.5, arrowcolor="#dc2626")
    fig.add_scatter(x=[ct[0], ci[0]], y=[ct[1], ci[1]], mode="markers", name="centres",
                    marker={"size": 14, "symbol": "x", "color": "#dc2626"})
    fig.update_yaxes(scaleanchor="x")
    fig.update_layout(title=f"The modality gap: |mean_img − mean_txt| = {size:.3f}", height=420,
                      xaxis_title="along the gap (mean_img − mean_txt)", yaxis_title="main remaining direction",
                      margin={"l": 50, "r": 20, "t": 50, "b": 40})
    apart = ("every image lies beyond every text" if pi[:, 0].min() > pt[:, 0].max() else
             "the two clouds overlap")
    note = (f"{label}\n\n**|Δ| = |mean_img − mean_txt| = {size:.3f}** over {len(img)} images and {len(txt)} texts "
            f"(unit vectors: 0 = one centre, 2 = opposite). Along Δ, {apart}.")
    if len(img) == len(txt):  # matched pairs: |img_i - txt_i|^2 averages to |Δ|^2 + the spread of the differences
        pair_sq = float(((img - txt) ** 2).sum(1).mean())
        note += (f" A matched pair's mean cosine is {float((img * txt).sum(1).mean()):.3f}; the shift Δ, the same for "
                 f"every pair, makes up **{size ** 2 / pair_sq:.0%}** of the mean squared distance between an image "
                 "and its caption.")
    note += ("\n\n**What to notice:** images and texts share one space but not one region: the arrow is a shift "
             "common to every pair. The loss only ranks similarities, so that shift costs nothing and training never "
             "removes it (Liang et al., 2022, *Mind the Gap*).")
    return fig, note


@functools.lru_cache(maxsize=8)
def _labelled_scenes(n: int, side: int) -> tuple[tuple[Image.Image, ...], tuple[shapes.Scene, ...]]:
    """The first n one-object test-split scenes, rendered at side px (drawn once per size)."""
    scenes = tuple(shapes.sample_scene(shapes.split_seed("test", i), max_objects=1) for i in range(n))
    return tuple(Image.fromarray(shapes.render(s, side)) for s in scenes), scenes


def prompt_ensemble(task: str, templates: str, mode: str, n: float = 32, tier: str | None = None
                    ) -> tuple[go.Figure, go.Figure, str]:
    """Zero-shot accuracy on n labelled one-object Shapes scenes (label = the object's shape or colour) with one
    template (the first line) or the ensemble of all lines (mmcore.clip.ensemble_embeddings). Returns the accuracy
    of every single template and of the ensemble (the chosen mode highlighted), the chosen mode's confusion matrix,
    and the numbers in Markdown."""
    if task not in ENSEMBLE_TASKS:
        raise ValueError(f"task must be one of {', '.join(ENSEMBLE_TASKS)}, got {task!r}")
    if mode not in PROMPT_MODES:
        raise ValueError(f"prompts must be one of {', '.join(repr(m) for m in PROMPT_MODES)}, got {mode!r}")
    count = common.whole_number(n, "labelled scenes", *ENSEMBLE_BATCH)
    if not (templates or "").strip():
        raise ValueError("enter at least one template, one per line, with {} where the label goes")
    lines = C.parse_texts(templates, max_lines=MAX_TEMPLATES, max_chars=100)
    labels = ENSEMBLE_TASKS[task]
    prompts = [C.fill_template(t, label) for t in lines for label in labels]  # says which template lacks its {}
    bundle, label = _bundle(tier)
    side = bundle.model.visual.image_size
    images, scenes = _labelled_scenes(count, side[0] if isinstance(side, (tuple, list)) else side)
    truth = torch.tensor([labels.index(s.objects[0].shape if task == "shape" else s.objects[0].color) for s in scenes])
    per_template = C.encode_texts(bundle, prompts).reshape(len(lines), len(labels), -1)  # (T, K, D)
    weights = torch.stack([*(C.ensemble_embeddings(e[None]) for e in per_template),
                           C.ensemble_embeddings(per_template)])  # (T + 1, K, D): each template alone, then all
    predicted = (C.encode_images(bundle, images).double() @ weights.transpose(1, 2)).argmax(-1)  # (T + 1, n)
    accuracy = (predicted == truth).double().mean(1).tolist()  # (T + 1,)
    singles, ensemble = accuracy[:-1], accuracy[-1]
    picked = len(lines) if mode == "ensemble" else 0

    names = [_short(t, 24) for t in lines] + [f"ensemble of {len(lines)}"]
    bars = go.Figure(go.Bar(x=accuracy, y=names, orientation="h", text=[f"{a:.0%}" for a in accuracy],
                            textposition="auto", marker_color=["#6366f1" if i == picked else "#cbd5e1"
                                                               for i in range(len(names))]))
    bars.update_yaxes(autorange="reversed")
    bars.update_layout(title="Accuracy of each template alone, and of the ensemble", height=120 + 28 * len(names),
                       xaxis={"range": [0, 1], "tickformat": ".0%"}, margin={"l": 170, "r": 20, "t": 50, "b": 30})
    confusion = np.zeros((len(labels), len(labels)))
    np.add.at(confusion, (truth.numpy(), predicted[picked].numpy()), 1)
    matrix_fig = go.Figure(go.Heatmap(z=confusion, x=list(labels), y=list(labels), colorscale="Viridis",
                                      texttemplate="%{z:.0f}", showscale=False,
                                      hovertemplate="true %{y}, said %{x}: %{z:.0f}<extra></extra>"))
    matrix_fig.update_yaxes(autorange="reversed", title_text="true")
    matrix_fig.update_layout(title=f"Confusion with {mode}", xaxis_title="predicted", height=360,
                             margin={"l": 80, "r": 20, "t": 50, "b": 50})
    note = (f"{label}\n\n{count} one-object test scenes, labelled by **{task}** ({len(labels)} classes, chance "
            f"{1 / len(labels):.0%}). One template, *“{lines[0]}”*: **{singles[0]:.1%}**. The ensemble of "
            f"{len(lines)} (each class's normalised embeddings averaged over the templates, then renormalised): "
            f"**{ensemble:.1%}** ({100 * (ensemble - singles[0]):+.1f} points). Each template alone: "
            f"{min(singles):.1%} to {max(singles):.1%} (mean {sum(singles) / len(singles):.1%}).\n\n"
            "**What to notice:** wording alone moves a single template's accuracy; the ensemble does not depend on "
            "which template you happened to write first. CLIP's paper gained 3.5 points on ImageNet by ensembling 80 "
            "templates; a model trained on one caption grammar, like the bundled one, gains little.")
    return bars, matrix_fig, note


def default_templates(task: str) -> str:
    """The default templates of a task, one per line."""
    if task not in ENSEMBLE_TEMPLATES:
        raise ValueError(f"task must be one of {', '.join(ENSEMBLE_TEMPLATES)}, got {task!r}")
    return "\n".join(ENSEMBLE_TEMPLATES[task])


def matrix(gallery, texts: str, log_tau: float | None, tier: str | None = None):
    """Everything the matrix section shows, from scratch: (S, row softmax, column softmax, loss Markdown, PCA map,
    the S state for temperature changes, the texts state, the model note). A None log_tau uses the model's τ."""
    S, lines, img, txt, bundle, label = similarity(gallery, texts, tier)
    if log_tau is None:
        log_tau = -math.log10(bundle.logit_scale)
    figs = matrix_views(S, lines, log_tau)
    pca = _pca_figure(img, txt, lines)
    note = f"{label}\n\nThe model's learned temperature: τ = 1/{bundle.logit_scale:.1f} = {1 / bundle.logit_scale:.4f}."
    return (*figs, pca, S.tolist(), lines, note)


def temperature(S: list | None, texts: list[str] | None, log_tau: float):
    """A temperature change: redo the maths on the kept S; nothing is re-encoded."""
    if not S:
        raise ValueError("Compute the similarity matrix first.")
    try:
        S = np.asarray(S, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("The kept similarity matrix is not numeric: compute the matrix again.") from None
    if S.ndim != 2 or not (1 <= S.shape[0] <= MAX_IMAGES and 1 <= S.shape[1] <= MAX_IMAGES):
        raise ValueError(f"The kept similarity matrix must be at most {MAX_IMAGES} × {MAX_IMAGES}, got {S.shape}.")
    if not isinstance(texts, list) or len(texts) != S.shape[1]:
        texts = [f"text {j + 1}" for j in range(S.shape[1])]
    return matrix_views(S, [str(t)[:300] for t in texts], log_tau)


def model_log_tau(tier: str | None = None) -> float:
    """log10 of the model's learned temperature τ = 1/logit_scale, to reset the slider."""
    bundle, _ = _bundle(tier)
    return max(LOG_TAU_RANGE[0], min(LOG_TAU_RANGE[1], -math.log10(bundle.logit_scale)))


def editable(table, temperature_value: float) -> tuple[go.Figure, go.Figure, str]:
    """Any B x B matrix typed by hand (preloaded with the lecture's example): softmaxes and the full loss, with the
    lecture's worked numbers for T1 and I1."""
    tau = C.validate_temperature(temperature_value)
    try:
        S = np.asarray(table.values if hasattr(table, "values") else table, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("Every cell must be a number.") from None
    if S.ndim != 2 or S.shape[0] != S.shape[1] or not 2 <= S.shape[0] <= MAX_IMAGES:
        raise ValueError(f"The matrix must be square, 2×2 to {MAX_IMAGES}×{MAX_IMAGES}; got shape {S.shape}.")
    loss = C.info_nce(S, tau)
    b = S.shape[0]
    names = [f"T{j + 1}" for j in range(b)]
    rows = [f"I{i + 1}" for i in range(b)]
    fig_r = _heatmap(C.softmax_rows(S, tau).numpy(), "image → text (rows)", rows, names, names, 0, 1)
    fig_c = _heatmap(C.softmax_cols(S, tau).numpy(), "text → image (columns)", rows, names, names, 0, 1)
    col = S[:, 0] / tau
    e = np.exp(col)
    row = S[0, :] / tau
    er = np.exp(row)
    terms = " + ".join(f"e^{{{v:.4g}}}" for v in col)
    values = " + ".join(f"{v:.4f}" for v in e)
    md = (f"**Text → image for T₁** (column 1, τ = {tau:g}): logits = [{', '.join(f'{v:.4g}' for v in col)}]\n\n"
          f"$$\\text{{denominator}} = {terms} = {values} \\approx {e.sum():.4f}$$\n"
          f"$$-\\log\\left(\\frac{{{e[0]:.4f}}}{{{e.sum():.4f}}}\\right) = -\\log({e[0] / e.sum():.4f}) "
          f"\\approx {loss.per_text[0]:.3f}$$\n"
          f"**Image → text for I₁** (row 1): $$\\mathcal{{L}}_1 = -\\log\\frac{{e^{{{row[0]:.4g}}}}}"
          f"{{{' + '.join(f'e^{{{v:.4g}}}' for v in row)}}} = -\\log({er[0] / er.sum():.4f}) "
          f"\\approx {loss.per_image[0]:.3f}$$\n\n"
          f"Whole matrix: **L_i→t = {loss.image_to_text:.4f}**, **L_t→i = {loss.text_to_image:.4f}**, "
          f"**L_CLIP = {loss.clip:.4f}**.\n\n")
    if np.allclose(S, np.asarray(C.LECTURE_S)) and tau == 1.0:
        ex = C.lecture_example()
        md += (f"ℹ️ The lecture prints the denominator as 9.7157 (the sum of the rounded terms, "
               f"{ex['t2i_denominator_rounded_terms']:.4f}); exactly it is {ex['t2i_denominator']:.5f}, and the "
               f"probability is {ex['t2i_probability']:.4f} (the slide says 0.7607). The loss, "
               f"**{ex['t2i_loss']:.3f}**, agrees.")
    return fig_r, fig_c, md


def zero_shot(image, labels: str, template: str, tier: str | None = None) -> tuple[go.Figure, str]:
    """P(label | image) = softmax over labels of cos(image, template(label)) / τ, as a bar chart."""
    img = common.user_image(image)
    names = C.parse_labels(labels)
    prompts = [C.fill_template(template, name) for name in names]
    bundle, label = _bundle(tier)
    probs = C.zero_shot(C.encode_images(bundle, [img])[0], C.encode_texts(bundle, prompts), bundle.logit_scale)
    order = np.argsort(probs)
    fig = go.Figure(go.Bar(x=probs[order], y=[prompts[i] for i in order], orientation="h",
                           text=[f"{probs[i]:.1%}" for i in order], textposition="auto", marker_color="#6366f1"))
    fig.update_layout(title="Zero-shot classification", xaxis={"range": [0, 1], "tickformat": ".0%"},
                      height=120 + 32 * len(names), margin={"l": 220, "r": 20, "t": 50, "b": 30})
    return fig, label


def rank_images(gallery, query: str, tier: str | None = None) -> list[tuple[Image.Image, str]]:
    """Text -> image retrieval over the loaded images: the gallery sorted by cosine similarity to `query`."""
    images = _images(gallery)
    text = C.parse_texts(query, max_lines=1)
    bundle, _ = _bundle(tier)
    scores = (C.encode_images(bundle, images) @ C.encode_texts(bundle, text).T)[:, 0]  # (B,)
    order = torch.argsort(scores, descending=True).tolist()
    return [(images[i], f"#{r + 1}  I{i + 1}  cos = {scores[i]:.3f}") for r, i in enumerate(order)]


def probe_scene() -> Image.Image:
    """A red circle on the left and a blue square on the right."""
    scene = shapes.Scene((shapes.Obj("circle", "red", "large", 0.28, 0.5), shapes.Obj("square", "blue", "large", 0.72,
                                                                                    0.5)), (245, 245, 245), seed=-1)
    return Image.fromarray(shapes.render(scene, 256))


def word_order(image=None) -> tuple[go.Figure, str]:
    """Score the two swapped captions against the image with both tiers (the pretrained one when it can run)."""
    img = common.user_image(image) if image is not None else probe_scene()
    results, notes = {}, []
    for choice in ("bundled", "pretrained"):
        res = common.resolve(FAMILY, choice)
        if res.tier != choice:  # pretrained weights unavailable (offline): say why instead of failing
            notes.append(f"{choice}: {res.reason}")
            continue
        bundle, _ = common.load(FAMILY, choice)
        cos = (C.encode_images(bundle, [img]) @ C.encode_texts(bundle, list(PROBE_TEXTS)).T)[0]  # (2,)
        results[choice] = (cos.numpy(), torch.softmax(cos * bundle.logit_scale, 0).numpy())
    fig = go.Figure()
    for tier_name, (cos, prob) in results.items():
        fig.add_bar(name=tier_name, x=list(PROBE_TEXTS), y=prob, text=[f"{p:.1%} (cos {c:.3f})" for c, p in
                                                                      zip(cos, prob)], textposition="auto")
    fig.update_layout(barmode="group", title="Same words, different order", yaxis={"range": [0, 1],
                      "tickformat": ".0%", "title": "P(text | image)"}, height=360,
                      margin={"l": 50, "r": 20, "t": 50, "b": 40})
    gaps = [f"**{t}**: cos difference {abs(c[0] - c[1]):.3f}" for t, (c, _) in results.items()]
    md = ("Both captions hold the same bag of words. A model that scores them almost alike treats the caption as "
          "a bag of words and has not bound the colours to the shapes (Yuksekgonul et al., 2023, "
          "*When and why vision-language models behave like bags-of-words*).\n\n" + " · ".join(gaps))
    if notes:
        md += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return fig, md


# -------------------------------------------------------------------------------------------------------------- UI

def build() -> None:
    """Lay out the CLIP tab inside the current Blocks context."""
    gr.Markdown("## CLIP: two encoders, one shared space\n"
                "An image encoder and a text encoder each end in a projection to the same space. For a batch of B "
                "pairs, the B × B cosine-similarity matrix S should light up on its diagonal; InfoNCE, in both "
                "directions and with a temperature τ, is the loss that makes it so.")
    tier = common.tier_radio(FAMILY)
    note = gr.Markdown()
    with gr.Row():
        with gr.Column(scale=3):
            gallery = gr.Gallery(label=f"Images (up to {MAX_IMAGES})", type="filepath", format="png", columns=8,
                                 height=220, interactive=True, file_types=["image"], elem_id="clip-gallery")
            with gr.Row():
                batch_n = gr.Slider(2, MAX_IMAGES, value=8, step=1, label="Shapes batch size")
                batch_btn = gr.Button("🎲 Draw a random Shapes batch")
                photos_btn = gr.Button("📷 Sample photos")
            gr.Markdown(common.PHOTO_NOTE)
        with gr.Column(scale=2):
            texts = gr.Textbox(label=f"Texts, one per line (up to {MAX_IMAGES})", lines=9, max_lines=16)
    with gr.Row():
        log_tau = gr.Slider(*LOG_TAU_RANGE, value=-2.0, step=0.01, label="log₁₀ τ (temperature, log scale)",
                            info="left: sharp (τ → 0.001); right: soft (τ → 10)")
        reset_btn = gr.Button("↺ Model's τ", scale=0, min_width=120)
        matrix_btn = gr.Button("▦ Compute the matrix", variant="primary", scale=0, min_width=200)
    with gr.Row():
        fig_s = gr.Plot(label="S")
        fig_r = gr.Plot(label="row softmax")
        fig_c = gr.Plot(label="column softmax")
    with gr.Row():
        loss_md = gr.Markdown(latex_delimiters=LATEX)
        pca = gr.Plot(label="Embedding map")
    # The last S and its texts live in the page (hidden), so a temperature change redoes only the maths. Not
    # gr.State: that opens a per-session heartbeat stream, and the page would never be network-idle.
    s_state, texts_state = gr.JSON(visible=False), gr.JSON(visible=False)

    gr.Markdown("### The modality gap: two clusters in one space\n"
                "Where do the images and the texts above sit in the shared space? Both are unit vectors; the arrow "
                "joins the centre of the texts to the centre of the images.")
    with gr.Row():
        with gr.Column(scale=1):
            gap_btn = gr.Button("↔️ Measure the gap for the images and texts above", variant="primary")
            gap_md = gr.Markdown()
        gap_plot = gr.Plot(label="Images, texts and the gap between them", scale=2, elem_id="clip-gap")

    gr.Markdown("### The lecture's 3 × 3 example: edit any cell")
    with gr.Row():
        table = gr.Dataframe(value=[list(r) for r in C.LECTURE_S], headers=["T1", "T2", "T3"], datatype="number",
                             row_count=3, column_count=3, interactive=True, label="S (rows = images)")
        tau_edit = gr.Number(value=1.0, label="τ", minimum=C.TEMPERATURE_MIN, maximum=C.TEMPERATURE_MAX)
    edit_md = gr.Markdown(latex_delimiters=LATEX)
    with gr.Row():
        edit_r = gr.Plot()
        edit_c = gr.Plot()

    gr.Markdown("### Zero-shot classification and text → image search")
    with gr.Row():
        with gr.Column():
            zs_image = common.image_input("Image to classify", value=common.random_scene(7)[0])
            zs_labels = gr.Textbox(value="circle, square, triangle, diamond, star, hexagon", label="labels (comma)")
            zs_template = gr.Textbox(value="a {}", label="prompt template ({} = label)",
                                     info="Try 'a photo of a {}' with the pretrained tier.")
            zs_btn = gr.Button("Classify", variant="primary")
        with gr.Column():
            zs_plot = gr.Plot(label="P(label | image)")
            zs_note = gr.Markdown()
    with gr.Row():
        query = gr.Textbox(label="Search the images above with a text", value="a red star", scale=3)
        rank_btn = gr.Button("🔍 Rank images", scale=1)
    ranked = gr.Gallery(label="Ranked by cosine similarity", columns=8, height=200)

    gr.Markdown("### Prompt ensembles: one template or many?\n"
                "CLIP's paper averages each class's (normalised) text embedding over many templates, then "
                "renormalises. Measured here on one-object Shapes scenes whose labels we know.")
    with gr.Row():
        with gr.Column():
            ens_task = gr.Radio(list(ENSEMBLE_TASKS), value="shape", label="label each scene by its object's")
            ens_templates = gr.Textbox(value=default_templates("shape"), lines=8, max_lines=MAX_TEMPLATES,
                                       label="templates, one per line ({} = label); the first is the one template")
            with gr.Row():
                ens_n = gr.Slider(*ENSEMBLE_BATCH, value=32, step=1, label="labelled scenes", elem_id="clip-ens-n")
                ens_mode = gr.Radio(list(PROMPT_MODES), value="one template", label="prompts")
            ens_btn = gr.Button("🎯 Measure zero-shot accuracy", variant="primary")
        ens_md = gr.Markdown()
    with gr.Row():
        ens_plot = gr.Plot(label="Zero-shot accuracy", elem_id="clip-ensemble")
        ens_confusion = gr.Plot(label="Confusion matrix")

    gr.Markdown("### Word-order probe: is CLIP a bag of words?")
    with gr.Row():
        probe_img = gr.Image(value=probe_scene(), label="probe image", format="png", interactive=False, height=220)
        with gr.Column():
            probe_btn = gr.Button("Compare the two captions")
            probe_md = gr.Markdown()
        probe_plot = gr.Plot()

    ui = common.show_errors
    batch_btn.click(ui(new_batch), [batch_n], [gallery, texts], api_name="clip_batch")
    photos_btn.click(ui(sample_photos), None, [gallery, texts], api_name="clip_samples")
    matrix_btn.click(ui(matrix), [gallery, texts, log_tau, tier],
                     [fig_s, fig_r, fig_c, loss_md, pca, s_state, texts_state, note], api_name="clip_matrix")
    log_tau.release(ui(temperature), [s_state, texts_state, log_tau], [fig_s, fig_r, fig_c, loss_md],
                    api_name="clip_temperature")
    reset_btn.click(ui(model_log_tau), [tier], [log_tau], api_name="clip_model_temperature").then(
        ui(temperature), [s_state, texts_state, log_tau], [fig_s, fig_r, fig_c, loss_md], api_visibility="private")
    gr.on(None, ui(editable), [table, tau_edit], [edit_r, edit_c, edit_md], api_name="clip_editable")
    zs_btn.click(ui(zero_shot), [zs_image, zs_labels, zs_template, tier], [zs_plot, zs_note], api_name="clip_zero_shot")
    gap_btn.click(ui(gap), [gallery, texts, tier], [gap_plot, gap_md], api_name="clip_gap")
    rank_btn.click(ui(rank_images), [gallery, query, tier], [ranked], api_name="clip_rank")
    ens_inputs = [ens_task, ens_templates, ens_mode, ens_n, tier]
    ens_outputs = [ens_plot, ens_confusion, ens_md]
    ens_btn.click(ui(prompt_ensemble), ens_inputs, ens_outputs, api_name="clip_prompt_ensemble")
    ens_mode.input(ui(prompt_ensemble), ens_inputs, ens_outputs, api_visibility="private")  # the toggle
    ens_task.input(ui(default_templates), [ens_task], [ens_templates], api_visibility="private")
    probe_btn.click(ui(word_order, on_device=True), [probe_img], [probe_plot, probe_md], api_name="clip_word_order")
    gr.on(None, ui(model_log_tau), [tier], [log_tau], api_visibility="private")  # on load and on tier change
