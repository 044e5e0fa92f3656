"""The CLIP tab, in the lecture's order: (1) the shapes from the two encoders through the projections into one shared
space, (2) the lecture's 3 x 3 similarity example and its InfoNCE loss, worked out and editable up to 8 x 8, (3) a
live B x B matrix of your images and texts under a temperature you move, (4) zero-shot classification with one
prompt template or an ensemble; then, beyond the lecture, the modality gap and a word-order probe.

Handlers are plain functions; `build()` lays them out, one function per section. The maths (InfoNCE, softmaxes, PCA)
lives in mmcore.clip, and embeddings are cached by content there, so a temperature change only redoes the maths.
"""

from __future__ import annotations

import functools
import math
import textwrap

import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from PIL import Image

from demos import common
from mmcore import clip as C
from mmcore import shapes

FAMILY = "clip"
MAX_IMAGES = 16
MAX_EDIT = 8  # the editable matrix grows from 2 x 2 to this
EDIT_RANGE = 1000.0  # |S_ij| allowed in the editable matrix: cosines are in [-1, 1], the lecture's scores reach 3
NEW_CELL = {"matched": 2.0, "other": 0.5}  # a row and column added to the editable matrix start as a clear match
LOG_TAU_RANGE = (-3.0, 1.0)  # log10 of the temperature: 0.001 ... 10
LOG_TAU_DIGITS = 2  # the slider's step, 0.01
READABLE = (1e-4, 1e6)  # numbers outside this range are written a × 10^k
PROBE_TEXTS = ("a red circle and a blue square", "a blue circle and a red square")
BAG_OF_WORDS = 0.05  # a model whose P(true caption) is within this of 1/2 cannot tell the two orders apart
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
OPENING_SEED = 0  # the Shapes batch the tab opens with
GALLERY_HEIGHT = 360  # px: two rows of four; more images scroll down, never sideways
# Gradio's gallery gives every column at least 100 px, so a narrow screen scrolls sideways: let the batch's four
# columns shrink, and the ranking take as many columns as fit.
CSS = """
#clip-gallery .grid-container {grid-template-columns: repeat(var(--grid-cols), minmax(0, 1fr)) !important;}
#clip-ranked .grid-container {grid-template-columns: repeat(auto-fit, minmax(96px, 1fr)) !important;}
"""
LIVE = common.LIVE
PRIVATE = {"api_visibility": "private"}
FORMULAS = {  # each step's formulas (LaTeX), shown side by side under its heading
    "shapes": (
        r"I = \frac{\mathrm{pool}(f_{img}(x))\,W_{img}}{\lVert\cdot\rVert} \in \mathbb{R}^{1\times d}",
        r"T = \frac{\mathrm{pool}(f_{txt}(t))\,W_{txt}}{\lVert\cdot\rVert} \in \mathbb{R}^{1\times d}",
        r"S_{ij} = I_i \cdot T_j = \cos(I_i, T_j)",
    ),
    "loss": (
        r"\mathcal{L}_{i\to t} = -\frac{1}{B}\sum_{i}\log\frac{e^{S_{ii}/\tau}}{\sum_j e^{S_{ij}/\tau}}",
        r"\mathcal{L}_{t\to i} = -\frac{1}{B}\sum_{j}\log\frac{e^{S_{jj}/\tau}}{\sum_i e^{S_{ij}/\tau}}",
        r"\mathcal{L}_{CLIP} = \tfrac{1}{2}(\mathcal{L}_{i\to t} + \mathcal{L}_{t\to i})",
    ),
    "matrix": (
        r"S = I\,T^\top \in \mathbb{R}^{B\times B}",
        r"p_{i\to t}(j \mid i) = \frac{e^{S_{ij}/\tau}}{\sum_k e^{S_{ik}/\tau}}",
        r"p_{t\to i}(i \mid j) = \frac{e^{S_{ij}/\tau}}{\sum_k e^{S_{kj}/\tau}}",
    ),
    "zero_shot": (
        r"P(y = k \mid x) = \frac{e^{\cos(I_x,\, T_k)/\tau}}{\sum_{k'} e^{\cos(I_x,\, T_{k'})/\tau}}",
        r"T_k = \text{text encoder}(\text{template}(\text{label}_k))",
    ),
}


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


def _numbered(items: list) -> list[tuple]:
    """Gallery items captioned I1…In, the names every plot of the tab uses."""
    return [(item, f"I{i + 1}") for i, item in enumerate(items)]


def _tau(log_tau: float | None) -> float:
    if log_tau is None or not math.isfinite(float(log_tau)):
        raise ValueError(f"temperature (log10 τ) must be a finite number in {LOG_TAU_RANGE}, got {log_tau!r}")
    return C.validate_temperature(10.0 ** float(log_tau))


def _short(text: str, n: int = 22) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# ----------------------------------------------------------------------------------------------- readable numbers

def _power_of_ten(log10_value: float, sign: str = "") -> str:
    """sign · 10^{log10_value} written a × 10^{k} (LaTeX), from its logarithm, so any size is safe."""
    k = math.floor(log10_value)
    return f"{sign}{10 ** (log10_value - k):.2f} \\times 10^{{{k}}}"


def _num(x: float, digits: int = 4, fixed: bool = False) -> str:
    """A number for a worked sum: plain when it reads well (`digits` significant, or decimals when `fixed`), else
    a × 10^{k}; never 170 digits or inf."""
    if x == 0 or READABLE[0] <= abs(x) < READABLE[1]:
        return f"{x:.{digits}{'f' if fixed else 'g'}}"
    return _power_of_ten(math.log10(abs(x)), "-" if x < 0 else "")


def _exp(log_value: float) -> str:
    """e^{log_value}, written without ever forming a number beyond float64 (e^{2000} = 3.88 × 10^{868})."""
    if math.log(READABLE[0]) <= log_value < math.log(READABLE[1]):
        return f"{math.exp(log_value):.4f}"
    return _power_of_ten(log_value / math.log(10))


def _display(*latex: str) -> str:
    """Formulas at display size, side by side in one line of text: a narrow screen wraps them (at a gap, an = or a
    +) where a $$ block would be cut."""
    return "\u2003 ".join(f"$\\displaystyle {f}$" for f in latex)


# ------------------------------------------------------------------------------------------------------- figures

def _heatmap(z: np.ndarray, title: str, rows: list[str], cols: list[str], hover_cols: list[str],
             zmin: float | None = None, zmax: float | None = None) -> go.Figure:
    """A heatmap with its values written in, the matched pairs (the diagonal of a square matrix) outlined in red.
    Built from dicts at once (common.figure): each update_* call after it would re-validate the figure. No colour
    bar: every cell has its value written in, and a bar pushes the margins, so the browser lays the figure out twice
    (a third of its drawing time)."""
    n_rows, n_cols = len(rows), len(cols)
    hover = np.array([[f"{r} × {c}" for c in hover_cols] for r in rows])  # (rows, cols)
    traces = [{"type": "heatmap", "z": z, "x": list(range(n_cols)), "y": list(range(n_rows)), "zmin": zmin,
               "zmax": zmax, "colorscale": common.VIRIDIS, "showscale": False, "texttemplate": "%{z:.2f}",
               "customdata": hover, "hovertemplate": "%{customdata}: %{z:.3f}<extra></extra>"}]
    if n_rows == n_cols:
        xs, ys = [], []  # one trace outlines every matched pair (a layout shape each is 10x slower to build)
        for i in range(n_rows):
            xs += [i - 0.5, i + 0.5, i + 0.5, i - 0.5, i - 0.5, None]
            ys += [i - 0.5, i - 0.5, i + 0.5, i + 0.5, i - 0.5, None]
        traces.append({"type": "scatter", "x": xs, "y": ys, "mode": "lines", "line": {"color": "red", "width": 2},
                       "hoverinfo": "skip", "showlegend": False})
    # The labels are short (I1…I16, T1…T16), so the margins are fixed: measuring them (automargin) makes the browser
    # lay the figure out twice, a quarter of its drawing time.
    return common.figure(traces, {
        "xaxis": {"tickvals": list(range(n_cols)), "ticktext": cols, "range": [-0.5, n_cols - 0.5],
                  "showgrid": False, "automargin": False},
        "yaxis": {"tickvals": list(range(n_rows)), "ticktext": rows, "range": [n_rows - 0.5, -0.5],
                  "showgrid": False, "automargin": False},
        "title": {"text": title}, "height": 360, "margin": {"l": 50, "r": 20, "t": 50, "b": 40}})


def _softmax_figures(S: np.ndarray, tau: float, hover: list[str]) -> tuple[go.Figure, go.Figure]:
    """Row softmax (image → text) and column softmax (text → image) of S / τ as heatmaps, I1… by T1…."""
    rows = [f"I{i + 1}" for i in range(S.shape[0])]
    cols = [f"T{j + 1}" for j in range(S.shape[1])]
    return (_heatmap(C.softmax_rows(S, tau).numpy(), f"Row softmax, image → text (τ = {tau:.3g})", rows, cols,
                     hover, 0, 1),
            _heatmap(C.softmax_cols(S, tau).numpy(), f"Column softmax, text → image (τ = {tau:.3g})", rows, cols,
                     hover, 0, 1))


def _points(fig: go.Figure, image_xy: np.ndarray, text_xy: np.ndarray, lines: list[str], size: int = 11) -> None:
    """Images (squares, I1…) and texts (dots, T1…) of a 2-D view of the shared space."""
    fig.add_scatter(x=image_xy[:, 0], y=image_xy[:, 1], mode="markers+text", name="images", textposition="top center",
                    text=[f"I{i + 1}" for i in range(len(image_xy))],
                    marker={"size": size + 1, "symbol": "square", "color": "#6366f1"})
    fig.add_scatter(x=text_xy[:, 0], y=text_xy[:, 1], mode="markers+text", name="texts", textposition="bottom center",
                    text=[f"T{j + 1}" for j in range(len(text_xy))], hovertext=lines,
                    marker={"size": size, "color": "#f59e0b"})


def _pca_figure(pi: np.ndarray, pt: np.ndarray, ratio: np.ndarray, lines: list[str]) -> go.Figure:
    """The images and texts in the PCA plane of both (C.pca_2d's image_xy, text_xy and variance ratio), each pair
    joined by a line."""
    fig = go.Figure()
    for i in range(min(len(pi), len(pt))):
        fig.add_scatter(x=[pi[i, 0], pt[i, 0]], y=[pi[i, 1], pt[i, 1]], mode="lines", showlegend=False,
                        line={"color": "#94a3b8", "width": 1}, hoverinfo="skip")
    _points(fig, pi, pt, lines)
    fig.update_layout(title=f"The shared space, PCA of images and texts ({ratio.sum():.0%} of the variance)",
                      height=400, xaxis_title=f"PC1 ({ratio[0]:.0%})", yaxis_title=f"PC2 ({ratio[1]:.0%})",
                      margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig


# ------------------------------------------------------------------------------------ step 1: the shapes walk-through

def walkthrough(bundle: C.ClipBundle, label: str, caption: str, batch: tuple[int, int]) -> str:
    """Markdown: the lecture's shapes (ViT-B/32) beside the ones measured on the model in use (for `caption`, T1), from
    each tower's tokens through the projections to the shared space and the B_img × B_txt matrix."""
    lec, ours = C.LECTURE_TOWERS, C.tower_shapes(bundle, caption)
    b_img, b_txt = batch

    def rows(t: C.TowerShapes, batch_img: str, batch_txt: str, caption_note: str) -> list[str]:
        return [f"{t.image_side} × {t.image_side} px in {t.patch_px} px patches: {t.grid} × {t.grid}",
                f"**{t.image_tokens} × {t.image_width}** (n × D)",
                f"**{t.text_tokens} × {t.text_width}** (m × P){caption_note}",
                f"{t.image_width} × {t.shared} and {t.text_width} × {t.shared}",
                f"**1 × {t.shared}** each",
                f"{batch_img} × {t.shared} and {batch_txt} × {t.shared} → S: {batch_img} × {batch_txt}"]

    steps = ("image in", "image transformer out", "text transformer out", "projections W_img, W_txt",
             "one image, one text in the shared space", "a batch → cosine similarities")
    lecture = rows(lec, "B", "B", " for a 12-token caption")
    measured = rows(ours, str(b_img), str(b_txt), f" for T1, padded to {ours.text_context}")
    table = "\n".join(f"| {s} | {a} | {b} |" for s, a, b in zip(steps, lecture, measured))
    return (f"{label}\n\nIts learned temperature: τ = 1/{bundle.logit_scale:.1f} = {1 / bundle.logit_scale:.4f}.\n\n"
            "| step | the lecture (ViT-B/32, its “let's say 256” shared width) | the model in use, measured (T1's "
            "tokens counted) |\n|---|---|---|\n" + table + "\n\n"
            "Pooling: the image tower keeps its CLS token, the text tower its end-of-text token (the lecture allows a "
            "mean over tokens too).\n\n"
            "**What to notice:** the two towers disagree in everything, token count and width (n × D against m × P), "
            "until the projections; only there do both land in one space of width d, where a dot product can compare "
            "an image with a caption.")


# ------------------------------------------------------------------------------------ step 2: the lecture's example

def _table_matrix(table) -> np.ndarray:
    """The editable table -> float64 (B, B), or ValueError saying what is wrong with it."""
    try:
        S = np.asarray(table.values if hasattr(table, "values") else table, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("Every cell must be a number, such as 0.5 or -1.2.") from None
    if S.ndim != 2 or S.shape[0] != S.shape[1] or not 2 <= S.shape[0] <= MAX_EDIT:
        raise ValueError(f"The matrix must be square, 2 × 2 to {MAX_EDIT} × {MAX_EDIT}; got shape {S.shape}.")
    if not np.isfinite(S).all() or np.abs(S).max() > EDIT_RANGE:
        raise ValueError(f"Every cell must be a finite number in [{-EDIT_RANGE:g}, {EDIT_RANGE:g}].")
    return S


def _frame(S: np.ndarray) -> pd.DataFrame:
    """A B × B matrix as the editable table shows it: columns T1…TB (the rows are I1…IB)."""
    return pd.DataFrame(S, columns=[f"T{j + 1}" for j in range(S.shape[1])])


def lecture_table() -> pd.DataFrame:
    """The lecture's 3 × 3 similarity matrix, as the editable table's value."""
    return _frame(np.asarray(C.LECTURE_S))


def resize_table(table, size: float) -> pd.DataFrame:
    """Grow or shrink the editable matrix to size × size (2…8): existing cells stay, a new pair starts matched
    (S_ii = 2.0) with 0.5 elsewhere."""
    b = common.whole_number(size, "matrix size B", 2, MAX_EDIT)
    old = _table_matrix(table)
    S = np.full((b, b), NEW_CELL["other"])
    np.fill_diagonal(S, NEW_CELL["matched"])
    keep = min(b, len(old))
    S[:keep, :keep] = old[:keep, :keep]
    return _frame(S)


def _worked_sum(q: C.WorkedQuery) -> str:
    """denominator = e^{x1} + … = terms ≈ sum, then −log(p) ≈ loss; stable at any τ."""
    exps = " + ".join(f"e^{{{_num(x)}}}" for x in q.logits)
    terms = " + ".join(_exp(x) for x in q.logits)
    return (_display(f"\\text{{denominator}} = {exps} = {terms} \\approx {_exp(q.log_denominator)}") + "\n\n" +
            _display(f"-\\log\\left(\\frac{{{_exp(float(q.logits[q.match]))}}}{{{_exp(q.log_denominator)}}}\\right)"
                     f" = -\\log({_exp(-q.loss)}) \\approx {_num(q.loss, 3, fixed=True)}") + "\n\n")


def _stable_note(q: C.WorkedQuery) -> str:
    """How the code sums terms too large for float64 (shown when the terms are no longer plain numbers)."""
    m = float(q.logits.max())
    if m < math.log(READABLE[1]):
        return ""
    return (f"At this τ the terms are astronomically large (float64 overflows past $e^{{709}}$), so the code never "
            f"forms them. It subtracts the largest logit m = {_num(m)} first (log-sum-exp): "
            f"$\\log\\sum_k e^{{x_k}} = m + \\log\\sum_k e^{{x_k - m}} = {_num(q.log_denominator, 6)}$.\n\n")


def _lecture_comparison(S: np.ndarray, tau: float) -> str:
    """The slide's printed numbers beside ours, when the table holds the lecture's matrix at τ = 1."""
    if S.shape != (3, 3) or not np.allclose(S, np.asarray(C.LECTURE_S)) or tau != 1.0:
        return ("The lecture's numbers belong to its own matrix at τ = 1: press **↺ The lecture's matrix** to "
                "compare them with ours.\n\n")
    ex, printed = C.lecture_example(), C.LECTURE_PRINTED
    return ("| T1 against I1…I3 | the lecture prints | computed here |\n|---|---|---|\n"
            f"| denominator | {printed['denominator']} | {ex['t2i_denominator']:.5f} (its {printed['denominator']} "
            f"adds the rounded terms: {ex['t2i_denominator_rounded_terms']:.4f}) |\n"
            f"| probability of I1 | {printed['probability']} (a slip) | {ex['t2i_probability']:.5f} |\n"
            f"| loss | {printed['loss']} | **{ex['t2i_loss']:.3f}** |\n\n")


def _said_inline(handler):
    """`handler` for the editable matrix, whose mistakes are said in its Markdown (the last output) under the table,
    leaving the figures as they were. Gradio's table fires twice per edited cell, and a τ box both on Enter and on
    leaving it, so a popup would come twice."""
    @functools.wraps(handler)
    def said(*args):
        try:
            return handler(*args)
        except ValueError as exc:
            return gr.skip(), gr.skip(), f"⚠️ **Please check the matrix and τ:** {exc}"

    return said


def editable(table, temperature_value: float) -> tuple[go.Figure, go.Figure, str]:
    """Any B × B matrix typed by hand (2…8, preloaded with the lecture's example) at temperature τ: the row and column
    softmaxes, the lecture's worked numbers for T1 and I1 (stable at any τ), and the loss of the whole matrix."""
    tau = C.validate_temperature(temperature_value)
    S = _table_matrix(table)
    t2i, i2t = C.worked_example(S, tau)
    loss = C.info_nce(S, tau)
    names = [f"T{j + 1}" for j in range(len(S))]
    fig_r, fig_c = _softmax_figures(S, tau, names)
    md = (f"**Text → image for T1** (column T1 over the images, τ = {tau:g}): logits $S_{{i1}}/\\tau$ = "
          f"[{', '.join(_num(x) for x in t2i.logits)}]\n\n" + _worked_sum(t2i) + _stable_note(t2i) +
          f"\n**Image → text for I1** (row I1 over the texts, the lecture's $\\mathcal{{L}}_1$): logits = "
          f"[{', '.join(_num(x) for x in i2t.logits)}]\n\n" + _worked_sum(i2t) +
          f"\nThe whole matrix: $\\mathcal{{L}}_{{i\\to t}}$ = **{_num(loss.image_to_text, fixed=True)}**, "
          f"$\\mathcal{{L}}_{{t\\to i}}$ = **{_num(loss.text_to_image, fixed=True)}**, "
          f"$\\mathcal{{L}}_{{CLIP}}$ = **{_num(loss.clip, fixed=True)}**.\n\n" + _lecture_comparison(S, tau) +
          f"**What to notice:** the matched pair takes p = {t2i.probability:.2f} of its column. Lower τ and every p "
          f"goes to 1 or 0, so the loss goes to 0 when each diagonal cell wins its row and column, and grows without "
          f"bound when one does not; raise τ and every p goes to 1/B, the loss to log B = {math.log(len(S)):.3f}.")
    return fig_r, fig_c, md


# ------------------------------------------------------------------------------------ step 3: the live B × B matrix

DECK = common.SceneDeck(stock=MAX_IMAGES)  # a random batch's scenes, drawn ahead


def _draw_batch(n: float, seed: float | None) -> tuple[list[Image.Image], list, str]:
    """n fresh Shapes scenes (test split), from `seed` on or random (from the deck): (their pictures, what the gallery
    shows for them, their true captions, one per line, in order)."""
    count = int(n) if n is not None and math.isfinite(float(n)) else 8
    if not 2 <= count <= MAX_IMAGES:
        raise ValueError(f"batch size must be in [2, {MAX_IMAGES}], got {n}")
    if seed is None:  # the deck's pictures are in the cache already: the gallery sends their files
        images, scenes, shown = zip(*DECK.take(count))
    else:
        images, scenes = zip(*(common.random_scene(int(seed) + i) for i in range(count)))
        shown = images
    return list(images), list(shown), "\n".join(shapes.caption(s) for s in scenes)


def new_batch(n: float = 8, seed: float | None = None) -> tuple[list[tuple[Image.Image | str, str]], str]:
    """n fresh Shapes scenes (test split), captioned I1…In (pictures, or the files of random ones), and their true
    captions, one per line, in order."""
    _, shown, texts = _draw_batch(n, seed)
    return _numbered(shown), texts


def sample_photos() -> tuple[list[tuple[str, str]], str]:
    """The bundled sample photos (for the pretrained tier), captioned I1…In, with plain captions."""
    captions = {"astronaut": "a photo of an astronaut", "chelsea": "a photo of a cat",
                "coffee": "a photo of a cup of coffee", "rocket": "a photo of a rocket launch"}
    paths = [p for p in common.SAMPLES if p.stem in captions]
    return _numbered([str(p) for p in paths]), "\n".join(captions[p.stem] for p in paths)


def number_gallery(gallery) -> list[tuple]:
    """An uploaded gallery, captioned I1…In so that it matches the plots."""
    return _numbered(_paths(gallery)[:MAX_IMAGES + 1])  # one beyond the limit: the matrix then says why it refuses


def _hover(texts: list[str]) -> list[str]:
    return [f"T{j + 1} “{_short(t, 40)}”" for j, t in enumerate(texts)]


def _s_figure(S: np.ndarray, texts: list[str]) -> go.Figure:
    rows = [f"I{i + 1}" for i in range(S.shape[0])]
    return _heatmap(S, f"Cosine similarity S ({S.shape[0]} images × {S.shape[1]} texts)", rows,
                    [f"T{j + 1}" for j in range(S.shape[1])], _hover(texts), -1, 1)


def _loss_markdown(S: np.ndarray, texts: list[str], tau: float) -> str:
    """τ, the loss in both directions and per pair, and the texts T1…Tn, in Markdown."""
    legend = "\n".join(f"- **T{j + 1}**: {t}" for j, t in enumerate(texts))
    head = (f"**τ = {tau:.4g}** (log₁₀ τ = {math.log10(tau):.2f}, logit scale 1/τ = {1 / tau:.4g}). CLIP starts "
            "training at τ = 0.07 and ends near 0.01.\n\n")
    if S.shape[0] != S.shape[1]:
        return (head + f"⚠️ {S.shape[0]} images and {S.shape[1]} texts: the contrastive loss needs **B matched "
                "pairs** (image i with text i), so it is not computed. The matrix and the softmaxes still are.\n\n"
                + legend)
    loss = C.info_nce(S, tau)
    per = " · ".join(f"I{i + 1}: ${_num(a, 3, fixed=True)}$ / T{i + 1}: ${_num(b, 3, fixed=True)}$" for i, (a, b) in
                     enumerate(zip(loss.per_image, loss.per_text)))
    wins = int((S.argmax(1) == np.arange(len(S))).sum())
    return (head +
            _display(*(f"{formula} = {_num(value, fixed=True)}" for formula, value in
                       zip(FORMULAS["loss"], (loss.image_to_text, loss.text_to_image, loss.clip)))) + "\n\n"
            f"Per pair (row loss / column loss): {per}\n\n"
            f"**What to notice:** {wins} of {len(S)} images give their own text the highest cosine. Move τ: the "
            "softmaxes sharpen towards those winners as τ falls, and the loss follows the pairs that lose.\n\n"
            + legend)


def matrix_views(S: np.ndarray, texts: list[str], log_tau: float, cosine: bool = True
                 ) -> tuple[go.Figure | None, go.Figure, go.Figure, str]:
    """From a similarity matrix alone: heatmaps of S (None unless `cosine`), row softmax, column softmax, and the
    loss in Markdown."""
    tau = _tau(log_tau)
    S = np.asarray(S, dtype=np.float64)
    fig_r, fig_c = _softmax_figures(S, tau, _hover(texts))
    return _s_figure(S, texts) if cosine else None, fig_r, fig_c, _loss_markdown(S, texts, tau)


@common.deterministic
def similarity(gallery, texts: str, log_tau: float | None, tier: str | None = None, drawn: str | None = None):
    """The encoders' part of the matrix, which the page draws first: (S's heatmap, the loss in Markdown, S kept for
    what follows, its texts, the PCA plane of images and texts as {"images", "texts", "ratio"}, and the digest of the
    images, texts and tier it was computed from). `views` draws the rest from these, without the model. A None log_tau
    uses the model's own τ. When `drawn` is that digest already (the page shows this matrix), every output is left as
    it is."""
    images = _images(gallery)
    lines = C.parse_texts(texts, max_lines=MAX_IMAGES)
    key = common.digest(images, lines, tier)
    if key == drawn:
        return (gr.skip(),) * 6
    bundle, _ = _bundle(tier)
    img, txt = C.encode_images(bundle, images), C.encode_texts(bundle, lines)  # (Bi, D), (Bt, D), unit rows
    S = (img @ txt.T).double().numpy()  # (Bi, Bt)
    tau = _tau(-math.log10(bundle.logit_scale) if log_tau is None else log_tau)
    pi, pt, ratio = C.pca_2d(img, txt)
    plane = {"images": pi.tolist(), "texts": pt.tolist(), "ratio": ratio.tolist()}
    return _s_figure(S, lines), _loss_markdown(S, lines, tau), S.tolist(), lines, plane, key


def batch_matrix(n: float, log_tau: float | None, tier: str | None = None):
    """A new random Shapes batch and its matrix in one request: (its true captions, what `similarity` returns for
    them, the last of which, the digest, paired with the gallery: (gallery, digest), which `hand_over` gives the page
    a message later). The gallery's change event that follows finds the matrix drawn and leaves it."""
    images, shown, texts = _draw_batch(n, None)
    *matrix, key = similarity(_numbered(images), texts, log_tau, tier)
    return texts, *matrix, (_numbered(shown), key)


def hand_over(handed: tuple) -> tuple:
    """A new batch's second message, from what its first kept in the session, `handed` = (the gallery, the digest of
    its matrix): (the gallery, the digest for `drawn`, the session's copy emptied). See `_matrix_section`."""
    gallery, key = handed
    return gallery, key, None


def views(S: list, lines: list[str], plane: dict, log_tau: float | None, tier: str | None = None):
    """The rest of the matrix, from what `similarity` kept: (the shapes walk-through of step 1, row softmax, column
    softmax, PCA map of the shared space). A None log_tau uses the model's own τ."""
    S, lines = _kept(S, lines)
    try:
        pi, pt, ratio = (np.asarray(plane[k], dtype=np.float64) for k in ("images", "texts", "ratio"))
    except (TypeError, KeyError, ValueError):
        raise ValueError("The kept PCA plane is damaged: compute the matrix again.") from None
    if pi.shape != (S.shape[0], 2) or pt.shape != (S.shape[1], 2) or ratio.shape != (2,):
        raise ValueError("The kept PCA plane does not fit the kept matrix: compute the matrix again.")
    bundle, label = _bundle(tier)
    tau = _tau(-math.log10(bundle.logit_scale) if log_tau is None else log_tau)
    fig_r, fig_c = _softmax_figures(S, tau, _hover(lines))
    return walkthrough(bundle, label, lines[0], S.shape), fig_r, fig_c, _pca_figure(pi, pt, ratio, lines)


@common.deterministic
def matrix(gallery, texts: str, log_tau: float | None, tier: str | None = None):
    """Everything the matrix shows, from scratch: (the shapes walk-through of step 1, S, row softmax, column softmax,
    loss Markdown, PCA map of the shared space, the S kept for temperature changes, its texts). A None log_tau uses
    the model's own τ. The page draws it in two steps, `similarity` (S and the loss), then `views`."""
    fig_s, md, S, lines, plane, _ = similarity(gallery, texts, log_tau, tier)
    walk, fig_r, fig_c, pca = views(S, lines, plane, log_tau, tier)
    return walk, fig_s, fig_r, fig_c, md, pca, S, lines


def temperature(S: list | None, texts: list[str] | None, log_tau: float):
    """A temperature change: redo the maths on the kept S; nothing is re-encoded, and S's own heatmap, which τ does
    not touch, is not redrawn. Returns (row softmax, column softmax, loss Markdown). With no matrix yet, the slider
    just holds the new τ (every output is left as it is) until one is computed."""
    if not S:
        return (gr.skip(),) * 3
    S, texts = _kept(S, texts)
    _, fig_r, fig_c, md = matrix_views(S, texts, log_tau, cosine=False)
    return fig_r, fig_c, md


def _kept(S, texts) -> tuple[np.ndarray, list[str]]:
    """The S and texts the page kept (values a browser sends back, so checked again): (S as float64, its texts, one
    per column, placeholders when they do not fit)."""
    try:
        S = np.asarray(S, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("The kept similarity matrix is not numeric: compute the matrix again.") from None
    if S.ndim != 2 or not (1 <= S.shape[0] <= MAX_IMAGES and 1 <= S.shape[1] <= MAX_IMAGES):
        raise ValueError(f"The kept similarity matrix must be at most {MAX_IMAGES} × {MAX_IMAGES}, got {S.shape}.")
    if not isinstance(texts, list) or len(texts) != S.shape[1]:
        texts = [f"text {j + 1}" for j in range(S.shape[1])]
    return S, [str(t)[:300] for t in texts]


def model_log_tau(tier: str | None = None) -> float:
    """log10 of the model's learned temperature τ = 1/logit_scale, rounded to the slider's step, to reset it."""
    bundle, _ = _bundle(tier)
    log_tau = round(-math.log10(bundle.logit_scale), LOG_TAU_DIGITS)
    return max(LOG_TAU_RANGE[0], min(LOG_TAU_RANGE[1], log_tau))


def opening_log_tau(tier: str | None = None) -> float:
    """model_log_tau on page load and on a tier change, when the model may still be loading: waits for it (outside
    the device's queue), so that the matrix after it opens computed instead of failing."""
    common.load(FAMILY, tier, wait=None)
    return model_log_tau(tier)


def rank_images(gallery, query: str, tier: str | None = None) -> list[tuple]:
    """Text -> image retrieval over the loaded images: the gallery's own items (files are served again, not
    re-encoded), sorted by cosine similarity to `query` and captioned with their rank, name and cosine."""
    images = _images(gallery)
    text = C.parse_texts(query, max_lines=1)
    bundle, _ = _bundle(tier)
    scores = (C.encode_images(bundle, images) @ C.encode_texts(bundle, text).T)[:, 0]  # (B,)
    order = torch.argsort(scores, descending=True).tolist()
    items = _paths(gallery)
    return [(items[i], f"#{r + 1}  I{i + 1}  cos = {scores[i]:.3f}") for r, i in enumerate(order)]


# ------------------------------------------------------------------------------------------------ step 4: zero-shot

@common.deterministic
def zero_shot(image, labels: str, template: str, tier: str | None = None) -> tuple[go.Figure, str]:
    """P(label | image) = softmax over labels of cos(image, template(label)) / τ, as a bar chart, and a note."""
    img = common.user_image(image)
    names = C.parse_labels(labels)
    prompts = [C.fill_template(template, name) for name in names]
    bundle, label = _bundle(tier)
    probs = C.zero_shot(C.encode_images(bundle, [img])[0], C.encode_texts(bundle, prompts), bundle.logit_scale)
    order = np.argsort(probs)
    fig = go.Figure(go.Bar(x=probs[order], y=[prompts[i] for i in order], orientation="h",
                           text=[f"{probs[i]:.1%}" for i in order], textposition="auto", marker_color="#6366f1"))
    fig.update_yaxes(automargin=True)
    fig.update_layout(title=f"Zero-shot: P(label | image) over {len(names)} prompts", height=120 + 32 * len(names),
                      xaxis={"range": [0, 1], "tickformat": ".0%"}, margin={"l": 20, "r": 20, "t": 50, "b": 30})
    best = int(probs.argmax())
    return fig, (f"{label}\n\nThe model's answer: **{names[best]}** ({probs[best]:.1%}), from “{prompts[best]}”.\n\n"
                 "**What to notice:** no classifier was trained; the labels, put into a sentence, are encoded by the "
                 "text tower and the image is scored against them, exactly as against the texts in step 3.")


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
                            textposition="auto", marker_color=["#6366f1" if i == picked else "#94a3b8"
                                                               for i in range(len(names))]))
    bars.update_yaxes(autorange="reversed", automargin=True)
    bars.update_layout(title="Accuracy of each template alone, and of the ensemble", height=120 + 28 * len(names),
                       xaxis={"range": [0, 1], "tickformat": ".0%"}, margin={"l": 20, "r": 20, "t": 50, "b": 30})
    confusion = np.zeros((len(labels), len(labels)))
    np.add.at(confusion, (truth.numpy(), predicted[picked].numpy()), 1)
    matrix_fig = go.Figure(go.Heatmap(z=confusion, x=list(labels), y=list(labels), colorscale="Viridis",
                                      texttemplate="%{z:.0f}", showscale=False,
                                      hovertemplate="true %{y}, said %{x}: %{z:.0f}<extra></extra>"))
    matrix_fig.update_yaxes(autorange="reversed", title_text="true")
    matrix_fig.update_layout(title=f"Confusion matrix with {mode}", xaxis_title="predicted", height=360,
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


# ---------------------------------------------------------------------------------- beyond the lecture: gap, probe

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
    _points(fig, pi, pt, lines, size=10)
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


def probe_scene() -> Image.Image:
    """A red circle on the left and a blue square on the right."""
    scene = shapes.Scene((shapes.Obj("circle", "red", "large", 0.28, 0.5), shapes.Obj("square", "blue", "large", 0.72,
                                                                                    0.5)), (245, 245, 245), seed=-1)
    return Image.fromarray(shapes.render(scene, 256))


def _verdict(tier: str, p_true: float, cos: np.ndarray) -> str:
    """One sentence per model: does it tell the matching caption from the swapped one?"""
    numbers = f"P = {p_true:.0%} for the matching caption, Δcos = {cos[0] - cos[1]:+.3f}"
    if abs(p_true - 0.5) < BAG_OF_WORDS:
        return f"**{tier}** cannot tell the two orders apart ({numbers}): to it, the caption is a bag of words."
    if p_true > 0.5:
        return f"**{tier}** picks the matching caption ({numbers}): it binds each colour to its shape here."
    return f"**{tier}** picks the swapped caption ({numbers}): it binds the colours to the wrong shapes."


def word_order(image=None, caption: str = PROBE_TEXTS[0], swapped: str = PROBE_TEXTS[1]) -> tuple[go.Figure, str]:
    """Score a caption that matches the image against the same words reordered, with both tiers (the pretrained one
    when it can run): a bar chart of P(caption | image) and a verdict in words per model."""
    img = common.user_image(image) if image is not None else probe_scene()
    captions = [C.parse_texts(text, max_lines=1, max_chars=120)[0] for text in (caption, swapped)]
    results, notes = {}, []
    for choice in ("bundled", "pretrained"):
        res = common.resolve(FAMILY, choice)
        if res.tier != choice:  # pretrained weights unavailable (offline): say why instead of failing
            notes.append(f"{choice}: {res.reason}")
            continue
        bundle, _ = common.load(FAMILY, choice)
        image_emb, text_emb = C.encode_images(bundle, [img])[0], C.encode_texts(bundle, captions)
        results[choice] = (C.zero_shot(image_emb, text_emb, bundle.logit_scale), (text_emb @ image_emb).numpy())
    wrapped = ["<br>".join(textwrap.wrap(c, 24)) for c in captions]
    fig = go.Figure()
    for tier_name, (prob, cos) in results.items():
        fig.add_bar(name=tier_name, y=wrapped, x=prob, orientation="h", textposition="auto",
                    text=[f"{p:.1%} (cos {c:.3f})" for c, p in zip(cos, prob)])
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_layout(barmode="group", title="Word-order probe: P(caption | image) per model", height=320,
                      xaxis={"range": [0, 1], "tickformat": ".0%", "title": "P(caption | image)"},
                      margin={"l": 20, "r": 20, "t": 50, "b": 40}, legend={"orientation": "h", "y": -0.25})
    md = "\n\n".join(_verdict(t, float(prob[0]), cos) for t, (prob, cos) in results.items())
    if sorted(captions[0].lower().split()) != sorted(captions[1].lower().split()):
        md += "\n\n⚠️ The two captions do not hold the same words, so this tests more than their order."
    md += ("\n\n**What to notice:** both captions hold the same bag of words. A model that scores them alike has not "
           "bound the colours to the shapes (Yuksekgonul et al., 2023, *When and why vision-language models behave "
           "like bags-of-words*).")
    if notes:
        md += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return fig, md


# ---------------------------------------------------------------------------------------------------------------- UI

def _formulas(step: str) -> str:
    """A step's formulas (FORMULAS), as a paragraph of their own."""
    return "\n\n" + _display(*FORMULAS[step])


def tau_slider(**kwargs) -> gr.Slider:
    """The log₁₀ τ slider. An API call may leave it empty (None), which the handlers read as "the model's own τ": let
    None through to them instead of failing the slider's range check. (A wrapper, not a subclass: Gradio writes a
    .pyi stub next to the source of every Component subclass.)"""
    slider = gr.Slider(**kwargs)
    check = slider.preprocess
    slider.preprocess = lambda payload: None if payload is None else check(payload)
    return slider


def _walkthrough_section() -> gr.Markdown:
    """Step 1: the shapes from pixels and tokens to the shared space. Returns its Markdown (filled by the matrix)."""
    gr.Markdown("### 1 · Two encoders, one shared space: the shapes\n"
                + _formulas("shapes"), latex_delimiters=LATEX)
    return gr.Markdown("⏳ Measuring the model in use…", latex_delimiters=LATEX)


def _lecture_section() -> None:
    """Step 2: the lecture's 3 × 3 example, editable and resizable, worked out at any τ."""
    gr.Markdown("### 2 · The lecture's 3 × 3 example: edit any cell, grow it to B × B\n"
                + _formulas("loss"),
                latex_delimiters=LATEX)
    with gr.Row():
        table = gr.Dataframe(value=lecture_table(), datatype="number", interactive=True, show_row_numbers=True,
                             label="S: row i is image Ii, column j is text Tj", scale=3,
                             elem_id="clip-table")
        with gr.Column(scale=1, min_width=200):
            size = gr.Slider(2, MAX_EDIT, value=3, step=1, label="B (matrix size)", elem_id="clip-size")
            tau = gr.Number(value=1.0, label=f"τ ({C.TEMPERATURE_MIN:g} to {C.TEMPERATURE_MAX:g})",
                            elem_id="clip-edit-tau")  # no range here: the worked numbers say what is wrong
            reset = gr.Button("↺ The lecture's matrix", size="sm")
    edit_md = gr.Markdown(latex_delimiters=LATEX, elem_id="clip-worked")
    with gr.Row():
        edit_r = gr.Plot(label="Row softmax of the matrix above")
        edit_c = gr.Plot(label="Column softmax of the matrix above")

    ui, edit_io = common.show_errors, ([table, tau], [edit_r, edit_c, edit_md])
    worked = ui(_said_inline(editable))
    table.input(worked, *edit_io, api_name="clip_editable", **LIVE)
    gr.on([tau.submit, tau.blur], worked, *edit_io, **PRIVATE, **LIVE)  # not per keystroke: "0." is no τ yet
    size.input(ui(resize_table), [table, size], [table], api_name="clip_resize", **LIVE).success(
        ui(editable), *edit_io, **PRIVATE)
    reset.click(lambda: (lecture_table(), 3, 1.0), None, [table, size, tau], **PRIVATE, queue=False).then(
        ui(editable), *edit_io, **PRIVATE)
    common.on_load(ui(editable), *edit_io, **PRIVATE)


def _matrix_section(tier: gr.Radio, walk_md: gr.Markdown) -> tuple[gr.Gallery, gr.Textbox, gr.State]:
    """Step 3: your images and texts, the live B × B matrix under τ, the shared space and text → image search.
    Returns (gallery, texts, the state that changes with every new matrix)."""
    gr.Markdown("### 3 · Your batch: the live B × B matrix\n"
                + _formulas("matrix") + "\n\n"
                "Images are I1…In in the gallery's order, texts T1…Tn in the box's; a matched pair shares its number. "
                "Every change below recomputes at once.", latex_delimiters=LATEX)
    opening, opening_texts = new_batch(8, seed=OPENING_SEED)
    with gr.Row():
        gallery = gr.Gallery(value=opening, label=f"Images I1…In (up to {MAX_IMAGES})", type="filepath",
                             format="png", columns=4, height=GALLERY_HEIGHT, object_fit="contain", interactive=True,
                             file_types=["image"], elem_id="clip-gallery", scale=3)
        texts = gr.Textbox(value=opening_texts, label=f"Texts T1…Tn, one per line (up to {MAX_IMAGES})", lines=12,
                           max_lines=MAX_IMAGES, scale=2, elem_id="clip-texts")
    with gr.Row(equal_height=True):
        batch_n = gr.Slider(2, MAX_IMAGES, value=8, step=1, label="Shapes batch size", scale=2)
        batch_btn = gr.Button("🎲 Draw a random Shapes batch", scale=1, min_width=260)
        photos_btn = gr.Button("📷 Sample photos (pretrained tier)", scale=1, min_width=290)
    gr.Markdown(common.PHOTO_NOTE)
    with gr.Row():
        log_tau = tau_slider(minimum=LOG_TAU_RANGE[0], maximum=LOG_TAU_RANGE[1], value=-2.0,
                             step=10**-LOG_TAU_DIGITS, label="log₁₀ τ (temperature, log scale)", min_width=300,
                             info="left: sharp (τ → 0.001); right: soft (τ → 10). Arrow keys and typed values work.",
                             elem_id="clip-log-tau")
        reset_btn = gr.Button("↺ Model's τ", scale=0, min_width=140)
    with gr.Row():
        fig_s = gr.Plot(label="Cosine similarity S", elem_id="clip-s")
        fig_r = gr.Plot(label="Row softmax: image → text")
        fig_c = gr.Plot(label="Column softmax: text → image")
    with gr.Row():
        with gr.Column(min_width=320):
            loss_md = gr.Markdown(latex_delimiters=LATEX, elem_id="clip-loss")
        pca = gr.Plot(label="The shared space (PCA)", min_width=320, elem_id="clip-pca")
    # The last S and its texts live in the page (hidden), so a temperature change redoes only the maths; `drawn`
    # names what they were computed from, so that the gallery's change event after a new batch (which brings its
    # matrix along) leaves it as it is, and the views that follow the matrix run once per new matrix.
    s_state, texts_state, plane_state = gr.JSON(visible=False), gr.JSON(visible=False), gr.JSON(visible=False)
    drawn = gr.State(None)
    gr.Markdown("**Search the images above with a text** (a new column of S): Enter or 🔍 ranks them by cosine.")
    with gr.Row():
        query = gr.Textbox(value="a red star", show_label=False, scale=3)
        rank_btn = gr.Button("🔍 Rank images", scale=1, min_width=160)
    ranked = gr.Gallery(label="The images ranked by cosine similarity to the search text", columns=8,
                        height=GALLERY_HEIGHT // 2, object_fit="contain", elem_id="clip-ranked")

    ui = common.show_errors
    # a new matrix in two requests, S and the loss first (what a new input changes most), then the rest from them,
    # once per new matrix (when `drawn` changes)
    similarity_io = ([gallery, texts, log_tau, tier, drawn], [fig_s, loss_md, s_state, texts_state, plane_state, drawn])
    views_io = ([s_state, texts_state, plane_state, log_tau, tier], [walk_md, fig_r, fig_c, pca])
    tau_io = ([s_state, texts_state, log_tau], [fig_r, fig_c, loss_md])  # τ leaves S itself as it is
    # A new batch shows its progress on the gallery, where the new images land: a spinner over each of its 8 outputs
    # costs the page its work at the click (the main thread's 30-40 ms there became 15-20), and flickers over S. Its
    # gallery and `drawn` follow its matrix a message later: the page handles a message in one task and paints when
    # the task ends, and in S's message they would send their change events there (the search, the views, the gap,
    # each with its status), which held back S's paint (S on screen at 179-346 ms that way, 128-221 ms this way: the
    # medians of 10 clicks in nine alternating pairs of runs, lower this way in seven). A caption edit, which changes
    # no gallery, gained nothing measurable that way.
    handed = gr.State(None)  # a new batch's gallery and digest, between its two messages
    batch_btn.click(ui(batch_matrix), [batch_n, log_tau, tier], [texts, *similarity_io[1][:-1], handed],
                    api_name="clip_batch", show_progress="minimal", show_progress_on=[gallery]).success(
        hand_over, [handed], [gallery, drawn, handed], **PRIVATE, show_progress="hidden")
    photos_btn.click(ui(sample_photos), None, [gallery, texts], api_name="clip_samples")
    gallery.upload(number_gallery, [gallery], [gallery], **PRIVATE, queue=False)
    texts.input(ui(similarity), *similarity_io, api_name="clip_matrix", **LIVE)
    # a new gallery from the page (an upload, a paste, a deletion, the sample photos) shows its progress on the
    # gallery: after a new batch this event only finds its matrix drawn, and must not flicker over S
    gallery.change(ui(similarity), *similarity_io, **PRIVATE, **{**LIVE, "show_progress_on": [gallery]})
    drawn.change(ui(views), *views_io, **PRIVATE)
    log_tau.input(ui(temperature), *tau_io, api_name="clip_temperature", **LIVE)
    reset_btn.click(ui(model_log_tau), [tier], [log_tau], api_name="clip_model_temperature").success(
        ui(temperature), *tau_io, **PRIVATE)
    # on load and on a tier change: the model's τ first, then the matrix under it
    opened = gr.on(None, ui(opening_log_tau, on_device=False), [tier], [log_tau], **PRIVATE).success(
        ui(similarity), *similarity_io, **PRIVATE)
    rank_io = ([gallery, query, tier], [ranked])
    gr.on([rank_btn.click, query.submit], ui(rank_images), *rank_io, api_name="clip_rank", **LIVE)
    gallery.change(ui(rank_images), *rank_io, **PRIVATE, **LIVE)
    opened.success(ui(rank_images), *rank_io, **PRIVATE)
    return gallery, texts, drawn


def _zero_shot_section(tier: gr.Radio) -> None:
    """Step 4: zero-shot classification with one template, then prompt ensembles measured on labelled scenes."""
    gr.Markdown("### 4 · Zero-shot: the labels, written as texts, become the classifier\n"
                + _formulas("zero_shot"), latex_delimiters=LATEX)
    with gr.Row():
        with gr.Column():
            zs_image = common.image_input("Image to classify", value=common.random_scene(7)[0])
            zs_labels = gr.Textbox(value="circle, square, triangle, diamond, star, hexagon", label="labels (comma)")
            zs_template = gr.Textbox(value="a {}", label="prompt template ({} = label)",
                                     info="Try 'a photo of a {}' with the pretrained tier.")
        with gr.Column():
            zs_plot = gr.Plot(label="P(label | image)")
            zs_note = gr.Markdown()

    gr.Markdown("#### Prompt ensembles: one template or many?\n"
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
        ens_confusion = gr.Plot(label="Confusion matrix", elem_id="clip-confusion")

    ui = common.show_errors
    gr.on(None, ui(zero_shot), [zs_image, zs_labels, zs_template, tier], [zs_plot, zs_note], api_name="clip_zero_shot",
          **LIVE)
    ens_io = ([ens_task, ens_templates, ens_mode, ens_n, tier], [ens_plot, ens_confusion, ens_md])
    gr.on([ens_btn.click, ens_mode.input, ens_n.input], ui(prompt_ensemble), *ens_io,
          api_name="clip_prompt_ensemble", **LIVE)
    ens_task.input(ui(default_templates), [ens_task], [ens_templates], **PRIVATE, queue=False).then(
        ui(prompt_ensemble), *ens_io, **PRIVATE)
    gr.on([tier.change, gr.context.Context.root_block.load], ui(prompt_ensemble), *ens_io, **PRIVATE)  # on open


def _beyond_section(tier: gr.Radio, gallery: gr.Gallery, texts: gr.Textbox, drawn: gr.State) -> None:
    """Beyond the lecture: the modality gap of the batch above, and the word-order probe."""
    gr.Markdown("### Beyond the lecture: the modality gap\n"
                "Where do the images and the texts of step 3 sit in the shared space? Both are unit vectors; the "
                "arrow joins the centre of the texts to the centre of the images.")
    with gr.Row():
        with gr.Column(scale=1):
            gap_btn = gr.Button("↔️ Measure the gap for the images and texts above", variant="primary")
            gap_md = gr.Markdown()
        gap_plot = gr.Plot(label="Images, texts and the gap between them", scale=2, elem_id="clip-gap")

    gr.Markdown("### Beyond the lecture: is CLIP a bag of words?\n"
                "Two captions with the same words in another order: does the model prefer the one that matches?")
    with gr.Row():
        probe_img = gr.Image(value=probe_scene(), label="probe image", format="png", interactive=False, height=220,
                             scale=1)
        with gr.Column(scale=1):
            probe_true = gr.Textbox(value=PROBE_TEXTS[0], label="a caption that matches the image")
            probe_swap = gr.Textbox(value=PROBE_TEXTS[1], label="the same words, reordered")
            probe_md = gr.Markdown()
        probe_plot = gr.Plot(label="P(caption | image)", scale=2)

    ui = common.show_errors
    gap_io = ([gallery, texts, tier], [gap_plot, gap_md])
    gap_btn.click(ui(gap), *gap_io, api_name="clip_gap")
    drawn.change(ui(gap), *gap_io, **PRIVATE)  # the gap follows every new matrix (and none that failed)
    probe = ui(word_order, on_device=True)
    gr.on(None, probe, [probe_img, probe_true, probe_swap], [probe_plot, probe_md], api_name="clip_word_order", **LIVE)


def build() -> None:
    """Lay out the CLIP tab inside the current Blocks context, in the lecture's order."""
    gr.Markdown("## CLIP: two encoders, one shared space\n"
                "An image encoder and a text encoder each end in a projection to the same space. For a batch of B "
                "pairs, the B × B cosine-similarity matrix S should light up on its diagonal; InfoNCE, in both "
                "directions and with a temperature τ, is the loss that makes it so.")
    tier = common.tier_radio(FAMILY)
    walk_md = _walkthrough_section()
    _lecture_section()
    gallery, texts, drawn = _matrix_section(tier, walk_md)
    _zero_shot_section(tier)
    _beyond_section(tier, gallery, texts, drawn)
