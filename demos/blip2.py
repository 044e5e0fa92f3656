"""The BLIP tab's BLIP-2 section: k learned queries read n patches, become the LLM's soft prompt, and can be switched
off one by one.

Handlers are plain functions (image, scene seed, numbers, tier) -> Markdown, pictures, figures; `build()` lays them
out under the BLIP tab's image. The maths lives in mmcore.blip2.
"""

from __future__ import annotations

import math

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image, ImageDraw, ImageFont

from demos import blip as blip_tab
from demos import common
from demos.common import whole_number
from mmcore import blip as B
from mmcore import blip2 as B2
from mmcore import models, shapes, viz

FAMILY = "blip2"
END = "</s>"
DEPTHS = ["mean"] + [str(i) for i in range(1, 13)]  # Q-Former layers or heads; the pretrained one has 12 of each
STEP_COLUMNS = ["step", "chosen", "p(chosen)", "top candidates"]
COMPARE_COLUMNS = ["step", "with every query", "p", "with queries off", "p (off)"]


def _bundle(tier: str | None) -> tuple[B2.Blip2Bundle, str]:
    bundle, res = common.load(FAMILY, tier)
    return bundle, common.tier_label(FAMILY, res)


def _depth(value, name: str, n: int) -> int | None:
    """A layer or head from its dropdown ("mean" or 1-based) -> None or a 0-based index, checked against the model."""
    return None if value in (None, "mean") else whole_number(value, f"the {name} (this Q-Former has {n})", 1, n) - 1


def _off(values, k: int) -> tuple[int, ...]:
    """The ablation checkboxes ("q0", "q5", ...) -> validated query indices."""
    out = []
    for v in values or ():
        text = str(v).strip().lower().removeprefix("q")
        if not text.isdigit():
            raise ValueError(f"queries are named q0 to q{k - 1}; cannot switch off {v!r}")
        out.append(int(text))
    return B2.check_ablation(out, k)


def object_names(scene: shapes.Scene | None) -> list[str]:
    return [f"{o.color} {o.shape}" for o in scene.objects] if scene is not None else []


# ---------------------------------------------------------------------------------------------------------- views

def compression(reading: B2.Reading) -> str:
    rows = "\n".join(f"| {stage} | **{shape}** | {what} |" for stage, shape, what in B2.shapes_of(reading))
    return ("| stage | tensor (from this forward pass) | size |\n|---|---|---|\n" + rows
            + "\n\nThe LLM never sees a patch: it reads only these k vectors, placed before the text as if they were "
              "word embeddings.")


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def query_sheet(image: Image.Image, reading: B2.Reading, layer: int | None, head: int | None,
                labels: list[str], off: tuple[int, ...] = ()) -> Image.Image:
    """Every query's cross-attention over the patches, overlaid on the image, in a grid with a label under each."""
    k = reading.maps.shape[2]
    g = math.isqrt(reading.maps.shape[-1])
    cols = 4 if k <= 8 else 8
    cell = 150 if k <= 8 else 96
    rows = -(-k // cols)
    strip = 20
    sheet = Image.new("RGB", (cols * (cell + 6) - 6, rows * (cell + strip + 6) - 6), "white")
    draw, font = ImageDraw.Draw(sheet), _font(13 if k <= 8 else 10)
    for q in range(k):
        r, c = divmod(q, cols)
        x, y = c * (cell + 6), r * (cell + strip + 6)
        tile = viz.overlay(image, reading.of(q, layer, head).reshape(g, g), side=cell)
        if q in off:
            tile = Image.blend(tile, Image.new("RGB", tile.size, "white"), 0.7)
        sheet.paste(tile, (x, y))
        draw.text((x + 2, y + cell + 3), labels[q] + ("  (off)" if q in off else ""), fill="black", font=font)
    return sheet


def soft_prompt_figure(reading: B2.Reading, off: tuple[int, ...] = ()) -> go.Figure:
    p = reading.prompt[0].float().cpu().numpy()
    names = [f"q{i}" + (" (off)" if i in off else "") for i in range(len(p))]
    lim = float(np.abs(p).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=p, y=names, colorscale="RdBu", zmid=0, zmin=-lim, zmax=lim,
                               colorbar=dict(title="value")))
    fig.update_layout(title=f"The soft prompt: {len(p)} vectors × {p.shape[1]} dimensions of the LLM's embedding space",
                      height=140 + 18 * len(p), margin=dict(l=10, r=10, t=40, b=30),
                      yaxis=dict(autorange="reversed"), xaxis=dict(title="dimension"))
    return fig


def query_report(reading: B2.Reading, scene: shapes.Scene | None, layer: int | None, head: int | None) -> str:
    """Which object each query's attention argmax falls on, and a plain verdict on whether they specialise."""
    if scene is None:
        return ("*Which object does each query read?* Draw a Shapes scene (🎲): on your own image there is no ground "
                "truth to check the maps against.")
    names = object_names(scene)
    hits = B2.query_objects(reading, scene, layer, head)
    lines = [f"- **q{q}** → {names[h] if h >= 0 else 'background'}" for q, h in enumerate(hits)]
    covered = sorted({h for h in hits if h >= 0})
    on_objects = sum(h >= 0 for h in hits)
    if not covered:
        verdict = ("**No query's strongest patch is on an object**: here the queries read the background (a scene's "
                   "layout is also information), so their maps do not tell the objects apart.")
    elif len(covered) == len(names) and len(names) > 1:
        verdict = (f"**The queries split the objects between them**: {on_objects} of {len(hits)} peak on an object, "
                   f"and every one of the {len(names)} objects has at least one query reading it.")
    elif len(covered) == 1 and len(names) > 1:
        verdict = (f"**The queries do not specialise here**: all {on_objects} that peak on an object peak on the "
                   f"same one, the {names[covered[0]]}; the others read the background.")
    else:
        missed = [names[i] for i in range(len(names)) if i not in covered]
        verdict = (f"**Partly specialised**: {on_objects} of {len(hits)} queries peak on an object; "
                   + (f"no query peaks on the {', '.join(missed)}." if missed else "each object has a reader."))
    return verdict + "\n\n" + "\n".join(lines) + "\n\n(Attention argmax, " + \
        ("mean of layers" if layer is None else f"layer {layer + 1}") + ", " + \
        ("mean of heads" if head is None else f"head {head + 1}") + ".)"


def _labels(reading: B2.Reading, scene: shapes.Scene | None, layer, head) -> list[str]:
    k = reading.maps.shape[2]
    if scene is None:
        return [f"q{q}" for q in range(k)]
    names = object_names(scene)
    return [f"q{q}: {names[h] if h >= 0 else 'background'}"
            for q, h in enumerate(B2.query_objects(reading, scene, layer, head))]


# ------------------------------------------------------------------------------------------------------- handlers

def _look(image, scene_seed, layer, head, tier):
    """The checked inputs and the Q-Former's reading: (image, bundle, tier label, reading, layer, head, scene)."""
    img = common.user_image(image)
    bundle, label = _bundle(tier)
    reading = B2.read(bundle, img)
    L, H = reading.maps.shape[:2]
    return (img, bundle, label, reading, _depth(layer, "layer", L), _depth(head, "head", H),
            blip_tab.scene_of(scene_seed))


def read(image, scene_seed, layer, head, tier):
    """Run BLIP-2 on the image: the three stages' shapes, the query maps, the soft prompt, then the caption streamed
    token by token. Yields (compression, query maps, report, soft prompt, caption HTML, step table, state, note)."""
    img, bundle, label, reading, li, hi, scene = _look(image, scene_seed, layer, head, tier)
    skip = gr.skip()
    sheet = query_sheet(img, reading, li, hi, _labels(reading, scene, li, hi))
    yield (compression(reading), sheet, query_report(reading, scene, li, hi), soft_prompt_figure(reading),
           common.token_chips([], end=END), skip, skip, skip)
    steps, pace = [], common.Pace()
    pace.due()  # the maps just went: the first token waits its turn
    for step in B2.stream(bundle, reading):
        steps.append(step)
        if pace.due():
            yield skip, skip, skip, skip, common.token_chips(steps, end=END), skip, skip, skip
    text = B2.text_of(bundle, steps)
    truth = ""
    if scene is not None:
        truth = (" ✅ names every object" if B.caption_correct(text, scene) else " ❌ not the scene's objects") + \
            f" (truth: *{shapes.caption(scene)}*)."
    note = f"{label}\n\n**{text or '(empty)'}**{truth}"
    yield (skip, skip, skip, skip, common.token_chips(steps, done=True, end=END), common.step_rows(steps),
           {"ids": [s.token_id for s in steps], "k": bundle.k}, note)


def maps(image, scene_seed, layer, head, off, tier):
    """Only the query maps and their report, for a new layer or head: (picture, Markdown)."""
    img, bundle, _, reading, li, hi, scene = _look(image, scene_seed, layer, head, tier)
    off = _off(off, bundle.k)
    return query_sheet(img, reading, li, hi, _labels(reading, scene, li, hi), off), query_report(reading, scene, li, hi)


def ablate(image, state, off, tier):
    """Switch the chosen queries off (zero their outputs) and caption again, beside the original. Yields (caption
    HTML, comparison table, Markdown)."""
    if not state or "ids" not in state:
        raise ValueError("Run BLIP-2 on the image first (🔎), then switch queries off.")
    img = common.user_image(image)
    bundle, _ = _bundle(tier)
    off = _off(off, bundle.k)
    if not off:
        raise ValueError("Tick at least one query to switch off.")
    full, cut = B2.read(bundle, img), B2.read(bundle, img, off)
    original = B2.stream(bundle, full)
    skip = gr.skip()
    steps, pace = [], common.Pace()
    for step in B2.stream(bundle, cut):
        steps.append(step)
        if pace.due():
            yield common.token_chips(steps, end=END), skip, skip
    before = list(original)
    rows = []
    for i in range(max(len(before), len(steps))):
        a = before[i] if i < len(before) else None
        b = steps[i] if i < len(steps) else None
        rows.append([i + 1, a.token if a else "", round(a.prob, 3) if a else None, b.token if b else "",
                     round(b.prob, 3) if b else None])
    ids = state["ids"]
    p_full, p_cut = B2.token_probs(bundle, full, ids), B2.token_probs(bundle, cut, ids)
    t_full, t_cut = B2.text_of(bundle, before), B2.text_of(bundle, steps)
    which = ", ".join(f"q{q}" for q in off)
    same = "the same caption" if t_full == t_cut else "a different caption"
    p0, p1 = float(np.prod(p_full)), float(np.prod(p_cut))
    md = (f"With **{which}** off ({len(off)} of {bundle.k} queries), the LLM writes {same}: *{t_cut or '(empty)'}* "
          f"(was *{t_full}*). The original caption's probability (the product of its tokens' probabilities) goes "
          f"from **{p0:.3f}** with every query to **{p1:.3f}**: the switched-off queries carried "
          f"{'much' if p1 < 0.5 * p0 else 'little'} of what this caption needs.")
    yield common.token_chips(steps, done=True, end=END), rows, md


def query_choices(tier) -> gr.CheckboxGroup:
    """The ablation checkboxes for the model in use (8 queries bundled, 32 pretrained)."""
    bundle, _ = _bundle(tier)
    return gr.CheckboxGroup([f"q{i}" for i in range(bundle.k)], value=[])


# ------------------------------------------------------------------------------------------------------------ build

def build(image: gr.Image, scene: gr.State):
    """The BLIP-2 section, under the BLIP tab's image and scene; returns the event that reads a new scene."""
    gr.Markdown("## BLIP-2: a Q-Former turns n patches into k prompt vectors for an LLM\n"
                "The image encoder gives **n patch tokens**; a Q-Former with **k ≪ n learned query tokens** "
                "cross-attends to them; the k outputs are **projected into the LLM's embedding space** and placed "
                "before the text, so the LLM captions the image from a short *visual prompt*.")
    cuda = torch.cuda.is_available()
    pretrained = models.get_spec(FAMILY, "pretrained")
    with gr.Row():
        tier = gr.Radio([("bundled: blip2-shapes (offline)", "bundled"),
                         (f"pretrained: {pretrained.name} (fp16, {pretrained.size_mb / 1000:.1f} GB download)",
                          "pretrained")], value="bundled", label="BLIP-2 model", interactive=cuda,
                        info=None if cuda else f"{pretrained.name} needs a CUDA GPU (about 8 GB in fp16); this "
                                               "server has none, so the bundled BLIP-2 runs.")
        layer = gr.Dropdown(DEPTHS, value="mean", label="Q-Former layer")
        head = gr.Dropdown(DEPTHS, value="mean", label="head")
    read_btn = gr.Button("🔎 Read the image with the Q-Former and caption it", variant="primary")
    shapes_md = gr.Markdown()
    with gr.Row():
        with gr.Column(scale=3):
            sheet = gr.Image(label="what each query reads: its cross-attention over the patches", interactive=False,
                             format="png", elem_id="blip2-maps")
        report = gr.Markdown()
    prompt_plot = gr.Plot(label="the soft prompt")
    caption_html = gr.HTML(common.token_chips([], done=True, end=END), elem_id="blip2-caption")
    note = gr.Markdown()
    steps_table = gr.Dataframe(headers=STEP_COLUMNS,
                               label="the LLM's next-token distribution at each step", interactive=False, wrap=True)
    state = gr.State({})

    gr.Markdown("### Ablation: switch queries off\nA switched-off query's output is zeroed before the projection, so "
                "its prompt vector carries nothing about the image. Which queries does the caption need?")
    with gr.Row():
        off = gr.CheckboxGroup([f"q{i}" for i in range(B2.NUM_QUERIES)], label="queries to switch off", scale=3)
        ablate_btn = gr.Button("✂️ Caption again without them", scale=1)
    ablated_html = gr.HTML(elem_id="blip2-ablated")
    ablate_md = gr.Markdown()
    compare = gr.Dataframe(headers=COMPARE_COLUMNS,
                           label="the two captions, step by step", interactive=False)

    ui, private = common.show_errors, {"api_visibility": "private"}
    outputs = [shapes_md, sheet, report, prompt_plot, caption_html, steps_table, state, note]
    read_btn.click(ui(read), [image, scene, layer, head, tier], outputs, api_name="blip2_read")
    gr.on([layer.change, head.change], ui(maps), [image, scene, layer, head, off, tier], [sheet, report],
          api_name="blip2_maps", **common.LIVE)
    ablate_btn.click(ui(ablate), [image, state, off, tier], [ablated_html, compare, ablate_md], api_name="blip2_ablate")
    tier.change(ui(query_choices), [tier], [off], **private).then(
        ui(read), [image, scene, layer, head, tier], outputs, **private)
    return lambda previous: previous.then(ui(read), [image, scene, layer, head, tier], outputs, **private)
