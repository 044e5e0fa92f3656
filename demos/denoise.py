"""The latent-diffusion tab, part 2: reverse denoising step by step from a prompt, the guidance explainer, per-word
cross-attention, two schedulers from the same noise, and links to the CLIP and BLIP tabs.

Handlers are plain functions (prompt, numbers, names) -> images, Markdown, figures; `build()` lays them out inside
the diffusion tab. The loop and the maths live in mmcore.ldm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image

from demos import common
from mmcore import diffusion as D
from mmcore import ldm, viz

PIPELINES = {"ldm": "SD-Turbo (1–4 steps)", "ldm-sd15": "Stable Diffusion 1.5 (20–50 steps)"}
PREVIEW = 192  # every preview is sent at this side and drawn pixelated at the size of its box
CSS = """
.denoise-live {display: flex; gap: 12px; align-items: flex-start; flex-wrap: wrap;}
.denoise-live figure {margin: 0; text-align: center;}
.denoise-live img {width: 200px; height: 200px; image-rendering: pixelated; border-radius: 6px;
                   border: 1px solid var(--border-color-primary);}
.denoise-live figcaption {font-size: 0.85em; opacity: 0.8;}
.denoise-status {min-width: 180px; line-height: 1.6;}
.denoise-bar {height: 8px; background: var(--border-color-primary); border-radius: 4px; margin: 6px 0;}
.denoise-bar div {height: 100%; background: #f97316; border-radius: 4px;}
#denoise-final img, #denoise-compare img, #denoise-guidance img,
#denoise-words img, #denoise-timeline img {image-rendering: pixelated;}
"""
PRESETS = {  # what each model was made for: (scheduler, steps, guidance scale, size in pixels)
    "bundled": ("DDIM", 20, 3.0, 32),
    "ldm": ("Euler ancestral", 4, 1.0, 512),
    "ldm-sd15": ("DPM++ 2M", 20, 7.5, 512),
}


@dataclass
class Run:
    """One finished generation, kept per browser session for the guidance explainer."""

    family: str
    tier: str
    request: ldm.Request
    steps: list[ldm.Step]
    final: Image.Image | None = None
    word_maps: ldm.WordMaps | None = None
    previews: list[Image.Image] | None = None  # each step's predicted x0, as streamed


def _bundle(pipeline: str, tier: str | None) -> tuple[ldm.LdmBundle, common.models.Resolution]:
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {', '.join(PIPELINES)}, got {pipeline!r}")
    bundle, res = common.load(pipeline, tier)
    if res.tier == "pretrained" and bundle.preview is None:  # TAESD decodes each step's preview in milliseconds
        taesd = common.resolve("taesd", "pretrained")
        if taesd.tier == "pretrained":  # never the bundled stand-in: it knows another latent space
            try:
                bundle.preview = common.models.load("taesd", "pretrained", local_files_only=not taesd.download)
            except Exception as exc:  # no TAESD: the previews use the full VAE, slower but right
                print(f"[diffusion] previews without TAESD: {exc}", flush=True)
    ldm.accelerate(bundle, compile=common.settings.get().compile)  # on CUDA: channels-last, compiled if asked
    return bundle, res


def warm_compiled() -> None:
    """With MMLAB_COMPILE=1 on CUDA, compile the default pipeline's loop at start-up, not at the first click."""
    if common.settings.get().compile:
        bundle, _ = _bundle("ldm", None)
        if bundle.device.type == "cuda":
            ldm.warm_compiled(bundle)


def _picture(x: torch.Tensor, side: int = PREVIEW) -> Image.Image:
    """(1, 3, S, S) in [-1, 1] -> a PIL image `side` px wide, nearest-neighbour so a 32 px sample stays crisp."""
    img = D.to_image(x)
    return img if img.width >= side else img.resize((side, side), Image.Resampling.NEAREST)


def _decode_pair(bundle: ldm.LdmBundle, step: ldm.Step) -> tuple[Image.Image, Image.Image]:
    """The step's x_t and predicted x0, decoded together in one batch of two by the preview decoder, at the
    decoder's own size (the page scales them up, pixelated)."""
    both = ldm.decode(bundle, torch.cat([step.x_t, step.x0_pred]), preview=True)
    return D.to_image(both[:1]), D.to_image(both[1:])


def _data_uri(img: Image.Image) -> str:
    import base64
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def live_view(x_t: Image.Image, x0: Image.Image, k: int, n: int, t: int, noise_norm: float, seconds: float) -> str:
    """One step of the stream as one small HTML update: x_t and the predicted x0 inlined as PNG data (a 32 px preview
    is about 1 kB), the progress bar and the numbers. Inline pictures need no file written, served and fetched per
    step, which is what kept a streamed step from showing at once."""
    bar = f'<div class="denoise-bar"><div style="width:{100 * k / n:.1f}%"></div></div>'
    figure = ('<figure><img src="{src}" alt="{alt}"><figcaption>{alt}</figcaption></figure>')
    return (f'<div class="denoise-live">{figure.format(src=_data_uri(x_t), alt="x_t, decoded")}'
            f'{figure.format(src=_data_uri(x0), alt="predicted x̂₀")}'
            f'<div class="denoise-status"><b>Step {k} / {n}</b>{bar}t = {t}, rms ε̂ = {noise_norm:.3f}<br>'
            f'{seconds:.2f} s</div></div>')


def defaults(pipeline: str, tier: str | None) -> tuple[str, int, float, int, str]:
    """The preset that suits the model the tier resolves to: (scheduler, steps, guidance, size, note)."""
    res = common.resolve(pipeline, tier)
    key = "bundled" if res.tier == "bundled" else pipeline
    scheduler, steps, guidance, size = PRESETS[key]
    note = (common.tier_label(pipeline, res) + "\n\n" +
            ("The bundled model knows only the Shapes world at 32 px: ask for colours and shapes, e.g. "
             "“a red circle” or “a blue star and a green square”." if res.tier == "bundled" else
             "A CPU preset: without a GPU, a 512 px step of Stable Diffusion takes about 8 s (16 s with guidance) "
             "on two cores, so SD-Turbo's 4 steps take about half a minute and SD 1.5's 20 guided steps about "
             "five minutes." if common.models.pick_device().type == "cpu" else
             "Stable Diffusion's own settings, on the GPU."))
    return scheduler, steps, guidance, size, note


def norm_figure(steps: list[ldm.Step]) -> go.Figure:
    """RMS of the guided noise prediction per step: near 1 while the latent is mostly noise."""
    fig = go.Figure(go.Scatter(x=[s.index + 1 for s in steps], y=[round(s.noise_norm, 4) for s in steps],
                               mode="lines+markers", line=dict(color="#6366f1"),
                               hovertemplate="step %{x}<br>‖ε̂‖ rms %{y}<extra></extra>"))
    fig.update_layout(height=260, margin=dict(l=50, r=10, t=40, b=40),
                      title="Noise prediction per step (rms of ε̂)", xaxis_title="step", yaxis_title="rms ε̂")
    return fig


def sheet(cells: list[tuple[Image.Image, str]], cell: int = 96, cols: int = 10) -> Image.Image:
    """Pictures in a grid of `cols` columns, each resized to `cell` px (nearest: the pixels stay visible) with its
    label underneath; one image, so nothing is cropped or scrolled on a projector."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    cols = max(1, min(cols, len(cells)))
    rows = -(-len(cells) // cols)
    pad, label_h = 6, 18
    out = Image.new("RGB", (cols * (cell + pad) - pad, rows * (cell + label_h + pad) - pad), "white")
    draw = ImageDraw.Draw(out)
    for k, (img, label) in enumerate(cells):
        x, y = (k % cols) * (cell + pad), (k // cols) * (cell + label_h + pad)
        resample = Image.Resampling.NEAREST if img.width <= cell else Image.Resampling.BOX
        out.paste(img.convert("RGB").resize((cell, cell), resample), (x, y))
        text = label if draw.textlength(label, font=font) <= cell else label[: max(1, cell // 8)] + "…"
        draw.text((x + cell / 2, y + cell + 2), text, fill="#374151", font=font, anchor="mt")
    return out


def overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """A heat map (h, w) in [0, 1] laid over `image`, bilinearly upsampled to its size."""
    side = image.width
    hm = Image.fromarray(viz.colormap(heat, 0.0, 1.0)).resize((side, side), Image.Resampling.BILINEAR)
    return Image.blend(image.convert("RGB"), hm, alpha)


def _attention_caveat(pipeline: str, tier: str) -> str:
    """What the bundled model's word maps are worth, as bench/eval_ldm.py measured it (from the model's metrics)."""
    if tier != "bundled":
        return ""
    import json

    spec = common.models.get_spec(pipeline, "bundled")
    metrics_file = common.models.ASSETS / spec.source / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    colour, shape = (metrics.get(f"attention_peak_on_object_{k}_word") for k in ("colour", "shape"))
    if colour is None or shape is None:
        return ""
    chance = metrics.get("object_area_share_dilated", float("nan"))
    return (f"Measured on this small model (bench/eval_ldm.py): the colour word's map peaks on the drawn object for "
            f"{colour:.0%} of single-object prompts and the shape word's for {shape:.0%}, where a uniform map would "
            f"for about {chance:.0%}." + ("" if min(colour, shape) >= chance else
            " So here a word's map does not show where the word was drawn: this small UNet reads the prompt "
            "mostly at the start, end-of-text and padding positions (which the causal text encoder fills with a "
            "summary of the sentence), and the object's pixels attend to the words themselves less than the "
            "background's do."))


def _clip_score(image: Image.Image, prompt: str, tier: str | None) -> str:
    """The CLIP tab's cosine between the result and the prompt."""
    from mmcore import clip as C

    prompt = ldm.check_prompt(prompt)
    if not prompt:
        return "The prompt is empty: nothing to score against."
    bundle, res = common.load("clip", tier)
    cos = float(C.encode_images(bundle, [image]) @ C.encode_texts(bundle, [prompt]).T)
    return (f"**CLIP cosine(image, prompt) = {cos:.3f}** ({common.tier_label('clip', res)}); the CLIP tab scores any "
            "caption against any image the same way.")


def _channel_grid(eps: np.ndarray) -> np.ndarray:
    """(K, C, h, w) -> one (K (h + 1) - 1, C (w + 1) - 1) array: row k, column c holds eps[k, c], NaN gaps between."""
    K, C, h, w = eps.shape
    grid = np.full((K * (h + 1) - 1, C * (w + 1) - 1), np.nan)
    for k in range(K):
        for c in range(C):
            grid[k * (h + 1):k * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = eps[k, c]
    return grid


# --------------------------------------------------------------------------------------------------------- handlers

def generate(prompt: str, negative_prompt: str, scheduler: str, num_inference_steps: float, guidance_scale: float,
             seed: float, size: float, pipeline: str, tier: str | None):
    """Stream the reverse process. Each step yields the live view (x_t, predicted x0, progress, as HTML); the last
    yield adds the summary, the final image and the run itself (for `details` and the guidance explainer)."""
    bundle, res = _bundle(pipeline, tier)
    req = ldm.Request.checked(bundle, prompt, negative_prompt, scheduler, num_inference_steps, guidance_scale, seed,
                              size)
    steps, previews, start = [], [], time.perf_counter()
    skip = gr.skip()
    word_maps = None
    for item in ldm.attention_run(bundle, req):
        if isinstance(item, ldm.WordMaps):
            word_maps = item
            continue
        steps.append(item)
        xt_img, x0_img = _decode_pair(bundle, item)
        previews.append(x0_img)
        live = live_view(xt_img, x0_img, len(steps), req.num_inference_steps, item.t, item.noise_norm,
                         time.perf_counter() - start)
        yield live, skip, skip, skip
    final = _picture(ldm.decode(bundle, steps[-1].latents))
    seconds = time.perf_counter() - start
    md = (f"**Done**: {req.num_inference_steps} steps of {req.scheduler} in {seconds:.2f} s "
          f"({1000 * seconds / req.num_inference_steps:.0f} ms a step, previews included), guidance w = "
          f"{req.guidance_scale:g}, seed {req.seed}, {req.size} px. {common.tier_label(pipeline, res)}")
    if word_maps is not None:
        md += (f"\n\nWord maps: cross-attention summed over {req.num_inference_steps} steps × {word_maps.layers} "
               "layers × all heads, each scaled to its own peak. " + _attention_caveat(pipeline, res.tier))
    yield live, md, final, Run(pipeline, res.tier, req, steps, final, word_maps, previews)


def details(run: Run | None) -> tuple[Image.Image, go.Figure, Image.Image | None]:
    """What follows a finished run, as its own event so that the final image never waits for it: the timeline of
    predicted x0 (one labelled sheet of the previews already streamed), the noise-prediction norm per step, and the
    per-word attention maps."""
    if run is None or not run.previews:
        raise ValueError("Generate an image first.")
    timeline = sheet([(img, f"{s.index + 1} · t={s.t}") for img, s in zip(run.previews, run.steps)],
                     cell=80, cols=10)  # the pictures already streamed: no step is decoded twice
    maps = run.word_maps
    words = None if maps is None or not maps.words else sheet(
        [(run.final, "result")] + [(overlay(run.final, m.numpy()), w) for w, m in zip(maps.words, maps.maps)],
        cell=160, cols=6)
    return timeline, norm_figure(run.steps), words


def guidance(run: Run | None, step: float, guidance_scale: float) -> tuple[Image.Image, Image.Image, str]:
    """At one recorded step: eps_uncond, eps_text and the guided eps = eps_u + w (eps_t - eps_u) as latent channel
    maps, and the x0 each implies, decoded. Moving w re-runs only this step (one UNet call at most)."""
    if run is None:
        raise ValueError("Generate an image first: the explainer replays one of its steps.")
    i = common.whole_number(step, "step", 1, len(run.steps)) - 1
    w = ldm.check_guidance(guidance_scale)
    bundle, _ = _bundle(run.family, run.tier)
    s = run.steps[i]
    out_u, out_t = ldm.guidance_parts(bundle, run.request, s)
    parts = [ldm.implied(bundle, s, out) for out in (out_u, out_t, ldm.guide(out_u, out_t, w))]
    eps = torch.cat([e for e, _ in parts])  # (3, C, h, w): eps_u, eps_t, guided eps
    x0 = torch.cat([x for _, x in parts])
    pictures = ldm.decode(bundle, x0, preview=True)
    row = Image.new("RGB", (3 * PREVIEW + 16, PREVIEW), "white")
    for k in range(3):
        row.paste(_picture(pictures[k:k + 1]), (k * (PREVIEW + 8), 0))
    lim = float(eps[:2].abs().max()) or 1.0  # the two predictions set the scale, so moving w moves only row 3
    heat = Image.fromarray(viz.colormap(_channel_grid(eps.numpy()), -lim, lim))
    cell = max(1, 256 // heat.width)
    heat = heat.resize((heat.width * cell, heat.height * cell), Image.Resampling.NEAREST)
    diff = float((eps[1] - eps[0]).pow(2).mean().sqrt())
    abar = float(bundle.alphas_cumprod[s.t])
    md = (f"Step {i + 1} of {len(run.steps)} (t = {s.t}). Rows: **ε_uncond** (the negative prompt, "
          f"“{run.request.negative_prompt}”), **ε_text** (“{run.request.prompt}”), and **ε = ε_u + {w:g}·(ε_t − ε_u)**"
          f"; columns: the {eps.shape[1]} latent channels. rms(ε_t − ε_u) = {diff:.4f}: guidance multiplies this "
          "difference by w. Right, left to right: the x̂₀ each prediction implies."
          + (f" At this t, ᾱ_t = {abar:.1e}: x_t is almost all noise, so every ε̂ ≈ x_t and the prompt shows only in "
             "x̂₀." if abar < 0.01 else ""))
    return heat, row, md


def compare(prompt: str, negative_prompt: str, scheduler_a: str, scheduler_b: str, num_inference_steps: float,
            guidance_scale: float, seed: float, size: float, pipeline: str, tier: str | None
            ) -> tuple[Image.Image, Image.Image, str]:
    """Two schedulers from the same x_T: each one's timeline of predicted x0 as a strip, final image last."""
    bundle, _ = _bundle(pipeline, tier)
    strips, notes = [], []
    requests = [ldm.Request.checked(bundle, prompt, negative_prompt, name, num_inference_steps, guidance_scale, seed,
                                    size) for name in (scheduler_a, scheduler_b)]  # both checked before either runs
    for name, req in zip((scheduler_a, scheduler_b), requests):
        start = time.perf_counter()
        steps = list(ldm.denoise(bundle, req))
        x0 = torch.cat([ldm.decode(bundle, torch.cat([s.x0_pred for s in steps[k:k + 8]]), preview=True)
                        for k in range(0, len(steps), 8)])  # in chunks: at 512 px a whole run at once is GBs
        final = ldm.decode(bundle, steps[-1].latents)
        cells = [_picture(x0[k:k + 1], 96) for k in range(len(steps))] + [_picture(final, 96)]
        strip = Image.new("RGB", (len(cells) * 100 - 4, 96), "white")
        for k, c in enumerate(cells):
            strip.paste(c.resize((96, 96), Image.Resampling.NEAREST if c.width <= 96 else Image.Resampling.BOX),
                        (k * 100, 0))
        strips.append(strip)
        notes.append(f"**{name}**: {time.perf_counter() - start:.2f} s")
    md = (f"Same seed ({int(seed)}), same x_T, {int(num_inference_steps)} steps each: predicted x̂₀ after every step, "
          "the final image last. " + " · ".join(notes) + ". Deterministic samplers (DDIM, Euler, DPM++) follow the "
          "probability-flow path; DDPM and Euler ancestral add fresh noise at every step and may end elsewhere.")
    return strips[0], strips[1], md


def clip_score(image, prompt: str, tier: str | None) -> str:
    """The CLIP tab's cosine between the generated image and the prompt."""
    return _clip_score(common.user_image(image, "generated image"), prompt, tier)


def text_encoder_panel(prompt: str, pipeline: str, tier: str | None) -> str:
    """The prompt's tokens, and proof that their features are the CLIP tab's text tower's (bundled tier)."""
    bundle, res = _bundle(pipeline, tier)
    prompt = ldm.check_prompt(prompt)
    features, tokens = ldm.encode_prompt(bundle, prompt)
    shown = " ".join(f"`{t}`" for t in tokens)
    md = (f"**Tokens** ({len(tokens)} of {bundle.tokenizer.model_max_length}): {shown}\n\n"
          f"**Token features**: {tuple(features.shape)}: one {features.shape[-1]}-d vector per position, which "
          "every cross-attention layer of the UNet reads as its keys and values.")
    if res.tier == "bundled":
        from mmcore import clip as C

        clip_bundle, _ = common.load("clip", "bundled")
        theirs = C.token_features(clip_bundle, [prompt])  # (1, L, D): the CLIP tab's own text tower
        end = len(tokens)  # up to the end token: the two tokenizers pad differently after it
        delta = float((features[:, :end].float().cpu() - theirs[:, :end]).abs().max())
        md += (f"\n\nThese are the **CLIP tab's text tower** (open_clip, `{C.WEIGHTS_FILE}`) converted to "
               f"transformers' CLIPTextModel: max |Δ| between the two on this prompt = **{delta:.1e}** "
               "(fp16 storage). Stable Diffusion 1.5 uses OpenAI CLIP ViT-L/14's text tower the same way.")
    return md


# -------------------------------------------------------------------------------------------------------------- UI

def build() -> dict:
    """Lay out part 2 inside the current Blocks context; returns the components other tabs link to."""
    gr.Markdown("## Latent diffusion, part 2: the reverse process from a prompt\n"
                "p_θ(x_(t−1) | x_t) = N(μ_θ(x_t, t), Σ_θ(x_t, t)): a UNet predicts the noise ε̂ in the latent x_t, "
                "reading the prompt's CLIP token features by cross-attention; the scheduler turns ε̂ into x_(t−1). "
                "Classifier-free guidance runs the UNet with and without the prompt and pushes further along the "
                "difference: ε = ε_u + w·(ε_t − ε_u).")
    scheduler0, steps0, guidance0, size0, note0 = defaults("ldm", None)
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox("a red circle", label="prompt", max_lines=2, max_length=ldm.MAX_PROMPT_CHARS)
            negative = gr.Textbox("", label="negative prompt (the unconditional branch of guidance)", max_lines=1,
                                  max_length=ldm.MAX_PROMPT_CHARS)
            with gr.Row():
                pipeline = gr.Radio([(v, k) for k, v in PIPELINES.items()], value="ldm",
                                    label="pretrained pipeline (the bundled tier is ldm-shapes for both)")
                tier = common.tier_radio("ldm")
            tier_note = gr.Markdown(note0)
        with gr.Column(scale=1):
            scheduler = gr.Dropdown(list(ldm.SCHEDULERS), value=scheduler0, label="scheduler")
            steps = gr.Slider(1, 50, value=steps0, step=1, label="num_inference_steps")
            guidance_scale = gr.Slider(0, 15, value=guidance0, step=0.5,
                                       label="guidance scale w (1 = prompt only, 0 = ignore it)")
            with gr.Row():
                seed = gr.Number(0, label="seed", precision=0, minimum=0, elem_id="denoise-seed")
                size = gr.Number(size0, label="size (px)", precision=0, minimum=8)
            with gr.Row():
                go_btn = gr.Button("🎨 Generate", variant="primary")
                stop_btn = gr.Button("⏹ Cancel")
    with gr.Row():
        live = gr.HTML('<div class="denoise-live"><div class="denoise-status">Press 🎨 Generate: each step of the '
                       'reverse process shows here as it happens.</div></div>', elem_id="denoise-live")
        final_img = gr.Image(label="final image", format="png", interactive=False, height=260, type="pil",
                             elem_id="denoise-final")
        norm_plot = gr.Plot(label="noise prediction")
    progress = gr.Markdown(elem_id="denoise-progress")
    timeline = gr.Image(label="timeline: predicted x̂₀ after every step (step · t)", format="png", interactive=False,
                        elem_id="denoise-timeline", show_label=True)
    with gr.Row():
        to_blip = gr.Button("📝 Caption this image (BLIP tab)")
        score_btn = gr.Button("📐 Score against the prompt (CLIP)")
    score = gr.Markdown()

    gr.Markdown("### Per-word cross-attention\nFor each word of the prompt, where the UNet looked while it drew: "
                "the cross-attention probabilities to the word's tokens, summed over every step, layer and head, "
                "over the final image (as DAAM does).")
    words = gr.Image(label="word maps (viridis: yellow = most attention)", format="png", interactive=False,
                     elem_id="denoise-words")

    gr.Markdown("### The guidance explainer\nPick a step of the last run; moving w re-runs only that step.")
    with gr.Row():
        g_step = gr.Slider(1, 50, value=1, step=1, label="step")
        g_w = gr.Slider(0, 15, value=guidance0, step=0.5, label="w", elem_id="denoise-w")
    with gr.Row():
        g_eps = gr.Image(label="ε_uncond / ε_text / guided ε (rows), latent channels (columns)", format="png",
                         interactive=False, height=260, elem_id="denoise-guidance")
        g_x0 = gr.Image(label="x̂₀ implied by each", format="png", interactive=False, height=260)
    g_note = gr.Markdown()

    gr.Markdown("### Same seed, other scheduler")
    with gr.Row():
        sched_b = gr.Dropdown(list(ldm.SCHEDULERS), value="Euler ancestral", label="second scheduler")
        cmp_btn = gr.Button("⚖ Compare")
    cmp_a = gr.Image(label="first scheduler", format="png", interactive=False, elem_id="denoise-compare")
    cmp_b = gr.Image(label="second scheduler", format="png", interactive=False)
    cmp_note = gr.Markdown()

    with gr.Accordion("The text encoder: where the prompt's features come from", open=False):
        tokens_btn = gr.Button("Show the tokens and their features")
        tokens_md = gr.Markdown()

    ui = common.show_errors
    run = gr.State(None)
    request = [prompt, negative, scheduler, steps, guidance_scale, seed, size, pipeline, tier]
    unet = {"concurrency_id": "diffusion_unet", "concurrency_limit": 2}  # every event that runs the UNet shares 2
    gen = gr.on([go_btn.click, prompt.submit], ui(generate), request,
                [live, progress, final_img, run], api_name="diffusion_generate", **unet)
    gen.success(ui(details), [run], [timeline, norm_plot, words], api_name="diffusion_details")
    stop_btn.click(None, None, None, cancels=[gen], api_visibility="private", queue=False)
    # .input follows every way of moving a slider (drag, arrow keys, a typed value); .release only the mouse
    # unqueued: replaying a step is arithmetic on stored UNet outputs plus a preview decode (a few ms on the bundled
    # tier); only a run made without guidance costs one UNet call here
    gr.on([g_step.input, g_w.input], ui(guidance, on_device=True, queued=False), [run, g_step, g_w],
          [g_eps, g_x0, g_note], api_name="diffusion_guidance", **common.LIVE, queue=False)
    # after a run, the explainer opens at its middle step (near t = T every eps is about x_t, whatever the prompt)
    gen.success(lambda r, w: (gr.Slider(maximum=len(r.steps), value=max(1, len(r.steps) // 2)), w) if r else
             (gr.skip(), gr.skip()), [run, guidance_scale], [g_step, g_w], api_visibility="private", queue=False
             ).then(ui(guidance, on_device=True), [run, g_step, g_w], [g_eps, g_x0, g_note], api_visibility="private",
                    **unet)
    cmp_btn.click(ui(compare), [prompt, negative, scheduler, sched_b, steps, guidance_scale, seed, size, pipeline,
                                tier], [cmp_a, cmp_b, cmp_note], api_name="diffusion_compare", **unet)
    score_btn.click(ui(clip_score), [final_img, prompt, tier], [score], api_name="diffusion_clip_score")
    tokens_btn.click(ui(text_encoder_panel), [prompt, pipeline, tier], [tokens_md], api_name="diffusion_tokens")
    gr.on([pipeline.change, tier.change], ui(defaults, on_device=False), [pipeline, tier],
          [scheduler, steps, guidance_scale, size, tier_note], api_visibility="private", queue=False)
    pipeline.change(common.tier_radio, [pipeline], [tier], api_visibility="private", queue=False)
    return {"final": final_img, "to_blip": to_blip}
