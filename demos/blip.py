"""The BLIP tab: captioning token by token with every decoding strategy, per-token cross-attention, VQA, matching that
binds words, the decoder's logit lens, and the lecture's four steps recorded from a real forward pass.

Handlers are plain functions (image path or PIL image, numbers, tier) -> HTML, tables, images, figures; `build()` lays
them out. The maths lives in mmcore.blip.
"""

from __future__ import annotations

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image

from demos import common
from demos.common import whole_number
from mmcore import blip as B
from mmcore import clip as C
from mmcore import shapes, viz

FAMILIES = {"caption": "blip-caption", "vqa": "blip-vqa", "itm": "blip-itm"}
OVERLAY_SIDE = 320
STEP_COLUMNS = ["step", "chosen", "p(chosen)", "top candidates (before sampling)"]
BEAM_COLUMNS = ["step", "beam", "log p (sum)", "status"]
LENS_COLUMNS = ["after", "1st guess", "2nd", "3rd", "4th", "5th"]
SCENE = {"min_objects": 2}  # two or three objects: captions to bind, pairs to swap
DEPTHS = ["mean"] + [str(i) for i in range(1, 13)]  # layers or heads to pick; BLIP base has 12 of each


def _bundle(kind: str, tier: str | None) -> tuple[B.BlipBundle, str]:
    family = FAMILIES[kind]
    bundle, res = common.load(family, tier)
    return bundle, common.tier_label(family, res)


def _image(image) -> Image.Image:
    return common.user_image(image)


def _float(value, name: str) -> float:
    if value is None or not np.isfinite(float(value)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def decoding(strategy: str, beams, length_penalty, temperature, top_k, top_p, max_tokens, seed) -> B.Decoding:
    """The UI's decoding controls as a validated Decoding (ValueError with a readable message otherwise)."""
    return B.Decoding(strategy=strategy, num_beams=whole_number(beams, "the number of beams", 1, B.MAX_BEAMS),
                      length_penalty=_float(length_penalty, "the length penalty"),
                      temperature=_float(temperature, "the temperature"), top_k=whole_number(top_k, "top-k", 0, 1000),
                      top_p=_float(top_p, "top-p"),
                      max_new_tokens=whole_number(max_tokens, "the maximum length", 1, B.MAX_NEW_TOKENS),
                      seed=whole_number(seed, "the seed", 0, 2**31 - 1))


# ------------------------------------------------------------------------------------------------------------ scene

def new_scene(seed: float | None = None):
    """A fresh test-split scene: (image, ground truth Markdown, mask picture, question choices, scene seed, captions
    to match: the true one and its colour swap)."""
    image, truth, picture, qs, scene_seed = scene_view(seed)
    return (image, truth, picture, gr.Dropdown(choices=qs, value=qs[0]), scene_seed,
            probe_captions(scene_of(scene_seed)))


def probe_captions(scene: shapes.Scene) -> str:
    """The scene's caption, and the same words with two colours swapped when it has such a pair."""
    return "\n".join(filter(None, [shapes.caption(scene), shapes.swapped_caption(scene)]))


def scene_view(seed: float | None = None):
    """(image, ground truth Markdown, mask picture, questions, scene seed) of a test-split scene."""
    image, scene = common.random_scene(seed, **SCENE)
    qa = shapes.questions(scene)
    lines = "\n".join(f"- {q} → **{a}**" for q, a in qa[:8])
    truth = (f"**Ground truth** (test-split scene {scene.seed - shapes.SPLITS['test']}): "
             f"*{shapes.caption(scene)}*\n\n{lines}")
    masks = shapes.render_masks(scene, 128)  # (k, 128, 128) bool, one per object
    label = np.full(masks.shape[1:], np.nan)  # the background stays white
    for i, m in enumerate(masks, start=1):
        label[m] = i
    picture = Image.fromarray(viz.colormap(label, 0, max(1, len(masks)))).resize((160, 160), Image.NEAREST)
    return image, truth, picture, [q for q, _ in qa], scene.seed


def scene_of(seed) -> shapes.Scene | None:
    return None if seed is None or int(seed) < 0 else shapes.sample_scene(int(seed), **SCENE)


# ------------------------------------------------------------------------------------------------------- captioning

def _beam_rows(cap: B.Caption) -> list[list]:
    best = " ".join(s.token for s in cap.steps)  # the winner's tokens, [SEP] included
    rows = []
    for b in cap.beams:
        text = " ".join(b.tokens)
        status = (f"finished, score {b.score:.3f}" + (" ★ winner" if text == best else "")) if b.finished else "live"
        rows.append([b.step, text, round(b.logprob, 3), status])
    return rows


def _token_choices(cap_ids: list[int], words: list[str]):
    choices = [(f"{i + 1}: {w}", i) for i, w in enumerate(words)]
    return gr.Radio(choices=choices, value=0 if choices else None)


def caption(image, strategy, beams, length_penalty, temperature, top_k, top_p, max_tokens, seed, prompt, tier):
    """Stream the caption token by token. Yields (caption HTML, step table, beam table, token choices, ids state,
    note)."""
    img = _image(image)
    dec = decoding(strategy, beams, length_penalty, temperature, top_k, top_p, max_tokens, seed)
    prompt = (prompt or "").strip()
    if len(prompt) > B.MAX_QUESTION_CHARS:
        raise ValueError(f"The prompt is {len(prompt):,} characters long; please keep it under "
                         f"{B.MAX_QUESTION_CHARS}.")
    bundle, label = _bundle("caption", tier)
    nothing = gr.skip()
    if dec.strategy == "beam search":
        cap = B.caption(bundle, img, dec, prompt)
    else:
        steps, pace = [], common.Pace()
        for step in B.stream_caption(bundle, img, dec, prompt):
            steps.append(step)
            if pace.due():
                yield common.token_chips(steps, prompt), nothing, nothing, nothing, nothing, nothing
        cap = B.finish(bundle, steps, prompt)
    words = bundle.words(cap.ids)
    note = (f"{label}\n\n**{len(cap.ids)} tokens**, "
            + ("ended with [SEP]." if cap.ended else f"stopped at the maximum length ({dec.max_new_tokens}).")
            + (" Pick a word below to see where the decoder looked while it chose it." if cap.ids else ""))
    yield (common.token_chips(cap.steps, prompt, done=True), common.step_rows(cap.steps),
           _beam_rows(cap) if cap.beams else [], _token_choices(cap.ids, words), {"ids": cap.ids, "prompt": prompt},
           note)


def token_attention(image, state, token, layer, head, tier):
    """The cross-attention behind one generated token, over the image patches: (overlay, note)."""
    if not state or not state.get("ids"):
        raise ValueError("Caption the image first, then pick one of its words.")
    ids = state["ids"]
    index = whole_number(token, "the token", 0, len(ids) - 1)
    img = _image(image)
    bundle, _ = _bundle("caption", tier)
    att = B.decoder_attention(bundle, img, ids, state.get("prompt", ""))
    L, H = att.maps.shape[:2]
    layer_i = None if layer in (None, "mean") else whole_number(layer, f"the layer (this decoder has {L})", 1, L) - 1
    head_i = None if head in (None, "mean") else whole_number(head, f"the head (this decoder has {H})", 1, H) - 1
    m = att.of(index, layer_i, head_i)
    g = bundle.grid
    where = np.unravel_index(int(m.argmax()), (g, g))
    cls = att.cls_share[:, :, index]
    cls = cls.mean() if layer_i is None else cls[layer_i].mean() if head_i is None else cls[layer_i, head_i]
    note = (f"While choosing **{att.tokens[index]}**, the decoder's query looked hardest at patch (row {where[0]}, "
            f"column {where[1]}) of the {g} × {g} grid; the image's [CLS] token took {cls:.0%} of the attention "
            "(left out of the map). Layer " + ("mean" if layer_i is None else str(layer_i + 1)) + ", head "
            + ("mean" if head_i is None else str(head_i + 1)) + ".")
    return viz.overlay(img, m.reshape(g, g), side=OVERLAY_SIDE), note


def lens(image, state, step, tier):
    """The logit lens on the decoder at one generation step (1 = the first word): the top guesses after each layer, a
    table. A step past the caption's end shows the last step, where [SEP] was chosen. Before any caption the table
    stays empty: this runs on its own whenever the caption or the step changes, and a new scene clears the caption."""
    if not state or "ids" not in state:
        return []
    ids = state["ids"]
    k = min(whole_number(step, "the step", 1, B.MAX_NEW_TOKENS), len(ids) + 1) - 1  # past the end: [SEP]'s step
    bundle, _ = _bundle("caption", tier)
    rows = B.logit_lens(bundle, _image(image), ids, k, state.get("prompt", ""))
    names = ["embeddings"] + [f"layer {i}" for i in range(1, len(rows))]
    return [[n] + [f"{t} {p:.2f}" for t, p in r] for n, r in zip(names, rows)]


# -------------------------------------------------------------------------------------------------------------- VQA

@common.deterministic
def ask(image, question, scene_seed, layer, tier):
    """(answer Markdown, overlay of where the question looked)."""
    img = _image(image)
    question = B.check_question(question)
    bundle, label = _bundle("vqa", tier)
    a = B.answer(bundle, img, question)
    L = a.attention.maps.shape[0]
    layer_i = None if layer in (None, "mean") else whole_number(layer, f"the layer (this encoder has {L})", 1, L) - 1
    real = [i for i, t in enumerate(a.attention.tokens) if t not in ("[CLS]", "[SEP]", "[PAD]", "?")]
    m = np.mean([a.attention.of(i, layer_i) for i in real or [0]], axis=0)
    truth = ""
    scene = scene_of(scene_seed)
    if scene is not None:
        known = dict(shapes.questions(scene))
        if question.lower() in known:
            right = known[question.lower()] == a.text
            truth = f" True answer: **{known[question.lower()]}** {'✅' if right else '❌'}."
    text = f"**{a.text or '(no answer)'}** (p = {a.prob:.2f}).{truth}\n\n{label}"
    g = bundle.grid
    return text, viz.overlay(img, m.reshape(g, g), side=OVERLAY_SIDE)


# --------------------------------------------------------------------------------------------------------- matching

@common.deterministic
def matching(image, captions, tier):
    """ITM probability and ITC cosine for each caption (one per line), as a figure."""
    img = _image(image)
    texts = C.parse_texts(captions or "", max_lines=16, max_chars=B.MAX_QUESTION_CHARS)
    bundle, label = _bundle("itm", tier)
    itm, itc = B.match(bundle, img, texts)
    fig = go.Figure([go.Bar(y=texts, x=itm, orientation="h", name="ITM p(match)", marker_color="#6366f1"),
                     go.Bar(y=texts, x=itc, orientation="h", name="ITC cosine", marker_color="#f59e0b")])
    fig.update_layout(barmode="group", height=120 + 48 * len(texts), margin=dict(l=10, r=10, t=30, b=10),
                      title="Does the caption match the image?", yaxis=dict(autorange="reversed", automargin=True),
                      xaxis=dict(range=[min(0, float(itc.min()) - 0.05), 1]), legend=dict(orientation="h"))
    return fig, label


def swap_probe(image, scene_seed, tier):
    """The true caption of the scene against the same words with two colours swapped: BLIP's ITM beside the bundled
    CLIP's cosine. Markdown."""
    scene = scene_of(scene_seed)
    if scene is None:
        raise ValueError("Draw a Shapes scene first (🎲): the probe needs a scene whose caption it knows.")
    true, swapped = shapes.caption(scene), shapes.swapped_caption(scene)
    if swapped is None:
        raise ValueError("This scene has no two objects that differ in both colour and shape; draw another one.")
    img = _image(image)
    bundle, _ = _bundle("itm", tier)
    itm, itc = B.match(bundle, img, [true, swapped])
    clip_bundle, clip_res = common.load("clip", tier)
    feats = C.encode_images(clip_bundle, [img])
    txt = C.encode_texts(clip_bundle, [true, swapped])
    cos = (feats @ txt.T)[0].float().cpu().numpy()
    def verdict(a: float, b: float) -> str:
        if abs(a - b) < 5e-4:
            return "🤷 cannot tell them apart"
        return "✅ prefers the true caption" if a > b else "❌ prefers the swapped one"

    return (f"| | true: *{true}* | swapped: *{swapped}* | |\n|---|---|---|---|\n"
            f"| BLIP ITM p(match) | {itm[0]:.3f} | {itm[1]:.3f} | {verdict(itm[0], itm[1])} |\n"
            f"| BLIP ITC cosine | {itc[0]:.3f} | {itc[1]:.3f} | {verdict(itc[0], itc[1])} |\n"
            f"| CLIP cosine ({clip_res.tier}) | {cos[0]:.3f} | {cos[1]:.3f} | {verdict(cos[0], cos[1])} |\n\n"
            "The swapped caption has exactly the same words. CLIP and BLIP's ITC compare one pooled vector per side, "
            "close to a bag of words; BLIP's ITM reads the caption *through* cross-attention on the image, word by "
            "word, so it *can* bind each colour to its shape. Whether it does is measured by `bench/eval_blip.py`: "
            "the bundled ITM puts the true caption first in 0.93 of held-out pairs, the bundled CLIP in 0.84 and "
            "BLIP's own ITC in 0.78.")


def probe_note(image, scene_seed, tier) -> str:
    """The swap probe when the image is a scene that allows it; otherwise a line saying what it needs."""
    try:
        return swap_probe(image, scene_seed, tier)
    except ValueError as exc:
        return f"*Swap the colours:* {exc}"


# --------------------------------------------------------------------------------------------------------- pipeline

@torch.inference_mode()
def pipeline(image, text, tier):
    """The lecture's steps 1-4 on this image and text, recorded from one forward pass: (Markdown, attention figure,
    next-token figure)."""
    img = _image(image)
    text = (text or "").strip()
    if len(text) > B.MAX_QUESTION_CHARS:
        raise ValueError(f"The text must be under {B.MAX_QUESTION_CHARS} characters.")
    bundle, _ = _bundle("caption", tier)
    rec = B.record_pipeline(bundle, img, text)
    md = (
        f"**1. Encode the image**: {rec['patches']} patches of {rec['patch']}×{rec['patch']} px, each a vector: "
        f"I ∈ ℝ^(n×d) = **{rec['image_tokens']}** (n = {rec['patches']} patches + 1 [CLS], d = {rec['d_image']}).\n\n"
        f"**2. Positions**: i_j ← i_j + p_j on the patches (inside the ViT), and for the text T = token embedding + "
        f"position embedding: **{rec['text_tokens']}** for {rec['n_text']} tokens ({', '.join(rec['tokens'])}). "
        "BLIP learns its position vectors, where the lecture's sinusoids PE(pos, 2i) = sin(pos / 10000^(2i/d)) are "
        "fixed; both are added, not concatenated.\n\n"
        f"**3. Cross-attention** in each of the {rec['layers']} decoder layers: Q = W_Q·T is **{rec['q']}**, "
        f"K = W_K·I and V = W_V·I are **{rec['k']}** and **{rec['v']}** ({rec['heads']} heads of "
        f"{rec['head_dim']}); softmax(QKᵀ/√d)·V gives every text token a mix of image patches.\n\n"
        f"**4. Decode**: the last position's output goes through the LM head to a distribution over "
        f"{rec['vocab']:,} tokens; the most likely next token is **{rec['next'][0][0]}**.")
    att = rec["attention"]  # (L_text, 1 + n), last layer, mean over heads
    fig = go.Figure(go.Heatmap(z=att, y=[f"{i}: {t}" for i, t in enumerate(rec["tokens"])],
                               x=["CLS"] + [str(i) for i in range(1, att.shape[1])], colorscale="Viridis",
                               colorbar=dict(title="weight")))
    fig.update_layout(title="softmax(QKᵀ/√d): text queries (rows) × image keys (columns), last layer, mean of heads",
                      height=160 + 22 * len(rec["tokens"]), margin=dict(l=10, r=10, t=40, b=30),
                      yaxis=dict(autorange="reversed", automargin=True), xaxis=dict(title="image token"))
    words, probs = zip(*rec["next"])
    bar = go.Figure(go.Bar(x=list(probs), y=list(words), orientation="h", marker_color="#6366f1"))
    bar.update_layout(title="p(next token)", height=260, margin=dict(l=10, r=10, t=40, b=10),
                      yaxis=dict(autorange="reversed", automargin=True), xaxis=dict(range=[0, 1]))
    return md, fig, bar


# ------------------------------------------------------------------------------------------------------------ build

CSS = """
.blip-caption {font-size: 1.35em; line-height: 2.1em; min-height: 2.4em;}
.blip-chip {padding: 2px 6px; border-radius: 6px; margin-right: 2px;}
.blip-chip sub {font-size: 0.55em; opacity: 0.8; margin-left: 2px;}
.blip-prompt {background: rgba(16,185,129,0.3);}
.blip-end {background: rgba(148,163,184,0.35); font-size: 0.75em;}
.blip-cursor {animation: blip-blink 1s step-start infinite;}
@keyframes blip-blink {50% {opacity: 0;}}
"""


def build() -> dict:
    """Lay out the BLIP tab inside the current Blocks context."""
    gr.Markdown("## BLIP: an image encoder, a text decoder, and cross-attention between them\n"
                "The lecture's multimodal recipe, run by a real BLIP model: **1.** encode the image as patch vectors, "
                "**2.** add positions, **3.** fuse text with image by cross-attention (Q from the text, K and V from "
                "the image), **4.** generate one token at a time until the end token.")
    first = scene_view(seed=7)
    with gr.Row():
        with gr.Column(scale=1):
            image = common.image_input(value=first[0])
            with gr.Row():
                scene_btn = gr.Button("🎲 Random Shapes scene")
                scene_seed = gr.Number(label="scene seed (−1 = random)", value=-1, precision=0, minimum=-1, scale=0,
                                       min_width=140)
            gr.Examples([[str(p)] for p in common.SAMPLES], inputs=[image], label="Sample photos (pretrained tier)")
            gr.Markdown(common.PHOTO_NOTE)
        with gr.Column(scale=1):
            with gr.Row():
                truth = gr.Markdown(first[1])
                masks = gr.Image(first[2], label="object masks", interactive=False, height=170, width=170,
                                 show_label=True, format="png")
            tier = common.tier_radio("blip-caption")
    scene = gr.State(first[4])

    gr.Markdown("### Captioning, token by token\n"
                "**Greedy** takes the most likely token each step. **Beam search** keeps the n best partial captions "
                "and scores a finished one by its summed log-probability ÷ length^penalty. **Sampling** draws from "
                "the distribution, sharpened or flattened by the temperature and cut by top-k and top-p.")
    with gr.Row():
        strategy = gr.Radio(list(B.DECODINGS), value="greedy", label="decoding")
        max_tokens = gr.Slider(1, B.MAX_NEW_TOKENS, value=20, step=1, label="maximum length")
        prompt = gr.Textbox(label="prompt (optional, e.g. 'a picture of')", max_length=B.MAX_QUESTION_CHARS)
    with gr.Row():
        beams = gr.Slider(1, B.MAX_BEAMS, value=3, step=1, label="beams")
        length_penalty = gr.Slider(-2, 2, value=1.0, step=0.1, label="length penalty")
        temperature = gr.Slider(0.1, 3, value=1.0, step=0.05, label="temperature")
        top_k = gr.Slider(0, 50, value=0, step=1, label="top-k (0 = off)")
        top_p = gr.Slider(0.05, 1, value=1.0, step=0.05, label="top-p")
        seed = gr.Number(0, label="sampling seed", precision=0, minimum=0)
    caption_btn = gr.Button("✍️ Caption", variant="primary")
    caption_html = gr.HTML(common.token_chips([], done=True), elem_id="blip-caption-box")
    caption_note = gr.Markdown()
    with gr.Row():
        steps_table = gr.Dataframe(headers=STEP_COLUMNS, label="Each step's next-token distribution",
                                   interactive=False, wrap=True)
        beams_table = gr.Dataframe(headers=BEAM_COLUMNS, label="Beam search: every beam at every step",
                                   interactive=False, wrap=True, max_height=360)
    ids_state = gr.State({})

    gr.Markdown("### Where did each word look? Cross-attention over the image\n"
                "Query i of the decoder is the position whose output chose word i; its cross-attention weights over "
                "the image's patch tokens show where it looked.")
    with gr.Row():
        with gr.Column(scale=1):
            token = gr.Radio([], label="generated word", elem_id="blip-token")
            layer = gr.Dropdown(DEPTHS, value="mean", label="decoder layer")
            head = gr.Dropdown(DEPTHS, value="mean", label="head")
            att_note = gr.Markdown()
        att_img = gr.Image(label="cross-attention of the chosen word", interactive=False, format="png",
                           height=OVERLAY_SIDE, elem_id="blip-attention")

    gr.Markdown("### The logit lens: the next word forming across depth\n"
                "Each layer's output at the current position, sent straight through the final LM head.")
    with gr.Row():
        lens_step = gr.Slider(1, B.MAX_NEW_TOKENS, value=1, step=1, label="generation step", scale=1)
        lens_table = gr.Dataframe(headers=LENS_COLUMNS, interactive=False, label="top guesses after each layer",
                                  scale=3)

    gr.Markdown("### Visual question answering\n"
                "A question encoder reads the image through cross-attention; an answer decoder reads the question "
                "encoder's output and generates the answer.")
    with gr.Row():
        with gr.Column(scale=1):
            question = gr.Dropdown(first[3], value=first[3][0], allow_custom_value=True,
                                   label="question (pick one, or type your own)")
            vqa_layer = gr.Dropdown(DEPTHS, value="mean", label="question-encoder layer")
            ask_btn = gr.Button("❓ Ask", variant="primary")
            answer_md = gr.Markdown()
        vqa_img = gr.Image(label="where the question's words looked", interactive=False, format="png",
                           height=OVERLAY_SIDE, elem_id="blip-vqa")

    gr.Markdown("### Image-text matching: does fusion bind colour to shape?\n"
                "**ITM** reads each caption through cross-attention on the image and outputs p(match). **ITC** "
                "compares one image vector with one text vector, as CLIP does.")
    with gr.Row():
        with gr.Column(scale=1):
            captions = gr.Textbox(value=probe_captions(scene_of(first[4])), lines=4,
                                  label="captions, one per line (up to 16)")
            with gr.Row():
                match_btn = gr.Button("🔗 Match", variant="primary")
                swap_btn = gr.Button("🔀 Swap the colours")
        match_plot = gr.Plot(label="ITM and ITC")
    swap_md = gr.Markdown()

    gr.Markdown("### The four steps, recorded from one forward pass")
    with gr.Row():
        pipe_text = gr.Textbox(value="a", label="text so far (the decoder's input after [DEC])", scale=3)
        pipe_btn = gr.Button("🔬 Run the pipeline", scale=1)
    pipe_md = gr.Markdown()
    with gr.Row():
        pipe_att = gr.Plot(label="cross-attention")
        pipe_next = gr.Plot(label="next token")

    ui = common.show_errors
    scene_event = scene_btn.click(ui(new_scene), [scene_seed], [image, truth, masks, question, scene, captions],
                                  api_name="blip_scene")
    image.upload(lambda: ("", -1), None, [truth, scene], api_visibility="private")
    controls = [strategy, beams, length_penalty, temperature, top_k, top_p, max_tokens, seed, prompt, tier]
    caption_btn.click(ui(caption), [image, *controls],
                      [caption_html, steps_table, beams_table, token, ids_state, caption_note],
                      api_name="blip_caption").then(
        ui(token_attention), [image, ids_state, token, layer, head, tier], [att_img, att_note],
        api_visibility="private")
    gr.on([token.change, layer.change, head.change], ui(token_attention), [image, ids_state, token, layer, head, tier],
          [att_img, att_note], api_name="blip_attention", **common.LIVE)
    gr.on([lens_step.change, ids_state.change], ui(lens), [image, ids_state, lens_step, tier], [lens_table],
          api_name="blip_lens", **common.LIVE)
    gr.on([ask_btn.click, question.input], ui(ask), [image, question, scene, vqa_layer, tier], [answer_md, vqa_img],
          api_name="blip_vqa", **common.LIVE)
    match_btn.click(ui(matching), [image, captions, tier], [match_plot, swap_md], api_name="blip_match")
    swap_btn.click(ui(swap_probe), [image, scene, tier], [swap_md], api_name="blip_swap")
    pipe_btn.click(ui(pipeline), [image, pipe_text, tier], [pipe_md, pipe_att, pipe_next], api_name="blip_pipeline")

    # open computed, and caption each new scene: caption it, then fill every panel below
    def fill(event) -> None:
        event.then(
            ui(caption), [image, *controls], [caption_html, steps_table, beams_table, token, ids_state,
                                              caption_note], **private).then(
            ui(token_attention), [image, ids_state, token, layer, head, tier], [att_img, att_note], **private).then(
            ui(ask), [image, question, scene, vqa_layer, tier], [answer_md, vqa_img], **private).then(
            ui(matching), [image, captions, tier], [match_plot, swap_md], **private).then(
            ui(probe_note), [image, scene, tier], [swap_md], **private).then(
            ui(pipeline), [image, pipe_text, tier], [pipe_md, pipe_att, pipe_next], **private)
        blip2_read(event)

    from demos import blip2  # the BLIP-2 section reads this tab's image and scene (and imports this module)

    blip2_read = blip2.build(image, scene)
    private = {"api_visibility": "private"}
    fill(common.on_load(lambda: None, None, None, queue=False, **private))
    fill(scene_event)
    return {"image": image}  # other tabs send images here (a generated image, to caption)
