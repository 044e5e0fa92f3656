"""The latent-diffusion tab, part 1: the forward process step by step, its schedules, and pixel against latent space.

Handlers are plain functions (image path or PIL image, numbers, tier) -> images, Markdown, figures; `build()` lays
them out. The maths lives in mmcore.diffusion.
"""

from __future__ import annotations

import math

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image, ImageDraw
from plotly.subplots import make_subplots

from demos import common, denoise, playground
from mmcore import diffusion as D
from mmcore import shapes, viz

WORK = 128  # the forward process runs on 128 x 128 pixels (49,152 numbers), sent as is and shown at >= 256 px
DISPLAY = 256
CSS = denoise.CSS + """
#diffusion-xt img, #diffusion-chain img, #diffusion-jump img {image-rendering: pixelated; width: 100%; height: 100%;
                                                              object-fit: contain;}
"""
AUTOENCODERS = {"vae": "KL VAE", "taesd": "TAESD (tiny)"}
MAX_STRIP = 10
COLORS = {"linear": "#6366f1", "scaled-linear": "#f59e0b", "cosine": "#10b981"}


def _seed(seed) -> int:
    if seed is None or not np.isfinite(float(seed)) or float(seed) != int(float(seed)) or not 0 <= seed < 2**31:
        raise ValueError(f"seed must be a whole number in [0, 2^31), got {seed!r}")
    return int(seed)


def _x0(image, size: int = WORK) -> torch.Tensor:
    return D.to_tensor(common.user_image(image), size)


def _noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """The closed form's eps for a seed: one draw, reused for every t, so the strip shows one image fading."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------------------- handlers

def new_scene(seed: float | None = None) -> tuple[Image.Image, str]:
    """A fresh test-split Shapes scene and its caption."""
    image, scene = common.random_scene(seed)
    return image, f"**Ground truth** (test-split scene {scene.seed - shapes.SPLITS['test']}): {shapes.caption(scene)}."


def lecture() -> str:
    """The lecture's worked first step, computed."""
    n = D.lecture_numbers()
    return (f"**The lecture's first step**: β₁ = {n['beta_1']:g}, so x₁ = √(1 − β₁)·x₀ + ε₁ = "
            f"**{n['scale']:.6f}**·x₀ + ε₁ with ε₁ ~ N(0, β₁ I): each pixel gets noise of standard deviation "
            f"σ = √β₁ = **{n['sigma']:g}** (on the [−1, 1] pixel scale: about 1.3 grey levels of 255).")


def _closed_form(image, schedule: str, beta_start: float, beta_end: float, T: float, t: float, seed: float):
    sched = D.make_schedule(schedule, beta_start, beta_end, T)
    t = D.check_t(t, sched.T)
    x0 = _x0(image)
    abar = sched.alpha_bar(t)
    return sched, t, abar, D.closed_form(x0, abar, _noise(tuple(x0.shape), _seed(seed)))


@common.deterministic
def forward(image, schedule: str, beta_start: float, beta_end: float, T: float, t: float, seed: float
            ) -> tuple[Image.Image, str]:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps at one t: (the image, the numbers). Its histogram comes from
    `histogram`, a second event, so that the image never waits for a plot."""
    sched, t, abar, xt = _closed_form(image, schedule, beta_start, beta_end, T, t, seed)
    values = xt.flatten().numpy()
    beta = 0.0 if t == 0 else float(sched.betas[t - 1])
    snr = "∞" if t == 0 else f"{abar / (1 - abar):.3g}"
    md = (f"t = **{t}** of T = {sched.T} ({schedule}): β_t = {beta:.3g}, ᾱ_t = **{abar:.4g}**, "
          f"√ᾱ_t = {math.sqrt(abar):.4f} (how much image is left), √(1 − ᾱ_t) = {math.sqrt(1 - abar):.4f} (how much "
          f"noise), SNR = ᾱ/(1 − ᾱ) = {snr}. Measured: mean {values.mean():+.3f}, std {values.std():.3f}.")
    return D.to_image(xt, WORK), md  # sent at its own 128 px; the page scales it up, pixelated (CSS)


def histogram(image, schedule: str, beta_start: float, beta_end: float, T: float, t: float, seed: float
              ) -> go.Figure:
    """The pixel values of the same x_t as `forward`, binned here (80 numbers, not 49k), against N(0, 1)."""
    _, t, _, xt = _closed_form(image, schedule, beta_start, beta_end, T, t, seed)
    grid = np.linspace(-4, 4, 161)
    density, edges = np.histogram(xt.flatten().numpy(), bins=80, range=(-4, 4), density=True)
    fig = go.Figure()
    fig.add_bar(x=(edges[:-1] + edges[1:]) / 2, y=density, width=edges[1] - edges[0], name=f"x_{t} pixel values",
                marker_color="#6366f1", opacity=0.75)
    fig.add_scatter(x=grid, y=np.exp(-grid**2 / 2) / math.sqrt(2 * math.pi), mode="lines", name="N(0, 1)",
                    line={"color": "#ef4444", "width": 2})
    fig.update_layout(title=f"Pixel values at t = {t}: drifting to N(0, 1)", xaxis={"range": [-4, 4]},
                      height=300, margin={"l": 40, "r": 20, "t": 50, "b": 30}, legend={"x": 0.01, "y": 0.99},
                      bargap=0)
    return fig


def curves(schedule: str, beta_start: float, beta_end: float, T: float) -> go.Figure:
    """β_t, ᾱ_t, √ᾱ_t, √(1 − ᾱ_t) and SNR(t) for the three schedules at this T, the chosen one bold. It does not
    depend on t, so moving t never redraws its 12 curves."""
    chosen = D.make_schedule(schedule, beta_start, beta_end, T)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("β_t", "√ᾱ_t (solid), ᾱ_t (dashed), √(1 − ᾱ_t) (dotted)",
                                                        "SNR(t) = ᾱ/(1 − ᾱ), log scale"))
    steps = np.arange(1, chosen.T + 1)
    for name in D.SCHEDULES:
        s = chosen if name == schedule else D.make_schedule(name, beta_start, beta_end, T)
        width = 3 if name == schedule else 1.5
        line = {"color": COLORS[name], "width": width}
        abar = s.alphas_cumprod
        fig.add_scatter(x=steps, y=s.betas, name=name, line=line, legendgroup=name, row=1, col=1)
        fig.add_scatter(x=steps, y=np.sqrt(abar), name=name, line=line, legendgroup=name, showlegend=False,
                        row=1, col=2)
        fig.add_scatter(x=steps, y=abar, name=name, line={**line, "dash": "dash"}, legendgroup=name,
                        showlegend=False, row=1, col=2)
        fig.add_scatter(x=steps, y=np.sqrt(1 - abar), name=name, line={**line, "dash": "dot"}, legendgroup=name,
                        showlegend=False, row=1, col=2)
        fig.add_scatter(x=steps, y=s.snr, name=name, line=line, legendgroup=name, showlegend=False, row=1, col=3)
    fig.update_yaxes(type="log", row=1, col=3)
    fig.update_xaxes(title_text="t")
    fig.update_layout(height=330, margin={"l": 40, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.25}, title=None)
    return fig


def chain(image, schedule: str, beta_start: float, beta_end: float, T: float, chain_t: float, steps: float,
          seed: float) -> tuple[float, Image.Image, Image.Image, str]:
    """Advance the Markov chain x_{t-1} -> x_t by `steps` applications of q(x_t | x_{t-1}) (0 = restart), and show it
    beside a fresh draw from the closed form q(x_t | x_0) at the same t: (new t, chain image, closed-form image,
    the comparison)."""
    sched = D.make_schedule(schedule, beta_start, beta_end, T)
    steps = D.check_t(steps, sched.T)
    t = 0 if steps == 0 else min(sched.T, D.check_t(chain_t, sched.T) + steps)
    x0, seed = _x0(image), _seed(seed)
    xt = D.CHAINS.state(x0, sched, seed, t)
    abar = sched.alpha_bar(t)
    jump = D.closed_form(x0, abar, _noise(tuple(x0.shape), seed + 1))
    # The chain's x_t - sqrt(abar) x_0 must be noise of std sqrt(1 - abar): check it on these pixels.
    resid_chain = float((xt - math.sqrt(abar) * x0).std()) if t else 0.0
    resid_jump = float((jump - math.sqrt(abar) * x0).std()) if t else 0.0
    md = (f"**t = {t}** after {t} steps of x_t = √(1 − β_t)·x_(t−1) + √β_t·ε. Theory: x_t − √ᾱ_t·x₀ has std "
          f"√(1 − ᾱ_t) = **{math.sqrt(1 - abar):.4f}**. Measured on {x0.numel():,} pixels: the chain "
          f"**{resid_chain:.4f}**, the one-jump closed form **{resid_jump:.4f}**. Many small steps and one jump give "
          "the same distribution, which is why training can sample any t directly.")
    return t, D.to_image(xt, WORK), D.to_image(jump, WORK), md


def parse_timesteps(text: str, T: int) -> list[int]:
    """"0, 50, 100" -> [0, 50, 100]: whole numbers in [0, T], at most MAX_STRIP of them."""
    parts = [p for p in str(text or "").replace(";", ",").replace(" ", ",").split(",") if p]
    if not parts:
        raise ValueError("Enter at least one t, for example 0, 100, 500, 1000.")
    if len(parts) > MAX_STRIP:
        raise ValueError(f"At most {MAX_STRIP} values of t, got {len(parts)}.")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"The t values must be numbers separated by commas, got {text!r}.") from None
    return [D.check_t(v, T) for v in values]


def strip(image, schedule: str, beta_start: float, beta_end: float, T: float, timesteps: str, seed: float
          ) -> Image.Image:
    """x_t at several t side by side (closed form, one noise draw), each labelled with t and ᾱ_t."""
    sched = D.make_schedule(schedule, beta_start, beta_end, T)
    ts = parse_timesteps(timesteps, sched.T)
    x0 = _x0(image)
    noise = _noise(tuple(x0.shape), _seed(seed))
    tile, label = 160, 34
    out = Image.new("RGB", (len(ts) * (tile + 6) + 6, tile + label + 6), "white")
    pen = ImageDraw.Draw(out)
    for i, t in enumerate(ts):
        abar = sched.alpha_bar(t)
        out.paste(D.to_image(D.closed_form(x0, abar, noise), tile), (6 + i * (tile + 6), 6))
        pen.text((8 + i * (tile + 6), tile + 9), f"t = {t}\nabar = {abar:.3g}", fill=(30, 30, 30))
    return out


def _latent_picture(z: torch.Tensor, cell: int) -> Image.Image:
    """The latent's channels side by side, each a viridis heat map on the common scale, (C maps in a row)."""
    z = z[0].numpy()  # (C, h, w)
    lim = float(np.abs(z).max()) or 1.0
    gap = np.full((z.shape[1], 1), np.nan)
    row = np.concatenate([m for c in range(z.shape[0]) for m in (z[c], gap)][:-1], axis=1)
    img = Image.fromarray(viz.colormap(row, -lim, lim))
    return img.resize((img.width * cell, img.height * cell), Image.Resampling.NEAREST)


@common.deterministic
def latent(image, autoencoder: str, tier: str | None, schedule: str, beta_start: float, beta_end: float, T: float,
           t: float, seed: float) -> tuple[Image.Image, Image.Image, Image.Image, Image.Image, Image.Image, str]:
    """Pixel space against latent space: the VAE's latent channels, its reconstruction and error map, and the same
    t of noise added in pixel space and in latent space (then decoded)."""
    family = autoencoder if autoencoder in AUTOENCODERS else None
    if family is None:
        raise ValueError(f"autoencoder must be one of {', '.join(AUTOENCODERS)}, got {autoencoder!r}")
    sched = D.make_schedule(schedule, beta_start, beta_end, T)
    t = D.check_t(t, sched.T)
    bundle, res = common.load(family, tier)
    x = _x0(image, bundle.image_size)  # (1, 3, S, S)
    z = bundle.encode(x)  # (1, C, S/f, S/f)
    rec = bundle.decode(z)
    err = (rec.clamp(-1, 1) - x).abs().mean(1)[0].numpy()  # (S, S)
    abar = sched.alpha_bar(t)
    seed = _seed(seed)
    pixel_noisy = D.closed_form(x, abar, _noise(tuple(x.shape), seed))
    latent_noisy = bundle.decode(D.closed_form(z, abar, _noise(tuple(z.shape), seed)))
    n_pix, n_lat = x.numel(), z.numel()
    c, h = z.shape[1], z.shape[2]
    s = x.shape[-1]
    md = (f"{common.tier_label(family, res)}\n\n"
          f"**Pixels**: 3 × {s} × {s} = **{n_pix:,}** numbers. **Latent**: {c} × {h} × {h} = **{n_lat:,}** numbers "
          f"(f = {bundle.factor}): **{n_pix / n_lat:.0f}× fewer** for the UNet to denoise at every step. Stable "
          f"Diffusion at 512 px: 3 × 512 × 512 = 786,432 against 4 × 64 × 64 = 16,384 (48×).\n\n"
          f"Reconstruction PSNR **{D.psnr(rec, x):.1f} dB**. Latents are scaled by {bundle.scaling_factor:.4g} so "
          f"their std is about 1 (here {float(z.std()):.2f}). At t = {t} (ᾱ = {abar:.3g}) the same noise level "
          "destroys pixels grain by grain, while noised latents decode to blobs: every latent cell stands for a "
          f"{bundle.factor} × {bundle.factor} patch of pixels.")
    cell = max(4, 192 // h)
    err_img = Image.fromarray(viz.colormap(err, 0.0, max(0.05, float(err.max())))).resize(
        (DISPLAY, DISPLAY), Image.Resampling.NEAREST)
    return (_latent_picture(z, cell), D.to_image(rec, DISPLAY), err_img, D.to_image(pixel_noisy, DISPLAY),
            D.to_image(latent_noisy, DISPLAY), md)


# -------------------------------------------------------------------------------------------------------------- UI

def build() -> dict:
    """Lay out the diffusion tab inside the current Blocks context: the forward process, then the reverse process
    (demos.denoise). Returns the components other tabs link to."""
    with gr.Tabs():
        with gr.Tab("1 · Forward process", id="forward"):
            build_forward()
        with gr.Tab("2 · Reverse process from a prompt", id="reverse"):
            exports = denoise.build()
        with gr.Tab("3 · 2-D playground", id="playground"):
            playground.build()
    return exports


def build_forward() -> None:
    """Part 1: the forward process, its schedules, and pixel against latent space."""
    gr.Markdown("## Latent diffusion, part 1: the forward process\n"
                "A diffusion model learns to undo noise. First the noise: the forward chain "
                "q(x_t | x_(t−1)) = N(√(1 − β_t)·x_(t−1), β_t·I) adds a little Gaussian noise at each of T steps, "
                "and its closed form q(x_t | x₀) = N(√ᾱ_t·x₀, (1 − ᾱ_t)·I), ᾱ_t = ∏(1 − β_s), jumps to any t at "
                "once.")
    gr.Markdown(lecture())
    with gr.Row():
        with gr.Column(scale=1):
            first_image, first_truth = new_scene(seed=3)
            image = common.image_input(value=first_image)
            with gr.Row():
                scene_btn = gr.Button("🎲 Random Shapes scene")
                scene_seed = gr.Number(label="scene seed (−1 = random)", value=-1, precision=0, minimum=-1, scale=0,
                                       min_width=140)
            truth = gr.Markdown(first_truth)
            gr.Examples([[str(p)] for p in common.SAMPLES], inputs=[image], label="Sample photos (pretrained tier)")
            gr.Markdown("The forward process needs no model: any image works. The **bundled** VAE below was trained "
                        "only on 32 px Shapes scenes, so it returns a photo blurred and off-colour; photos belong to "
                        "the pretrained VAEs.")
        with gr.Column(scale=1):
            with gr.Row():
                schedule = gr.Radio(list(D.SCHEDULES), value="linear", label="schedule")
                T = gr.Number(value=1000, label="T (steps)", precision=0, minimum=2, maximum=D.MAX_T)
            with gr.Row():
                beta_start = gr.Number(value=1e-4, label="β_start", minimum=1e-8, maximum=0.999)
                beta_end = gr.Number(value=0.02, label="β_end", minimum=1e-8, maximum=0.999)
                seed = gr.Number(value=0, label="noise seed", precision=0, minimum=0)
            gr.Markdown("The cosine schedule (squaredcos_cap_v2) sets its own β from ᾱ_t = cos²(…) and ignores "
                        "β_start and β_end.")
            t = gr.Slider(0, 1000, value=250, step=1, label="t", elem_id="diffusion-t")
    with gr.Row():
        xt_img = common.picture(label="x_t (closed form)", height=300, elem_id="diffusion-xt")
        hist = gr.Plot(label="Pixel values")
    xt_note = gr.Markdown()
    curve_plot = gr.Plot(label="Schedules")

    gr.Markdown("### One step at a time: the Markov chain against the closed form")
    with gr.Row():
        chain_t = gr.Number(value=0, label="chain at t", precision=0, interactive=False)
        step1 = gr.Button("▶ 1 step")
        step10 = gr.Button("▶▶ 10 steps")
        step100 = gr.Button("⏩ 100 steps")
        reset = gr.Button("↺ restart")
    with gr.Row():
        chain_img = common.picture(label="Chain: x_t from x_(t−1), one step at a time", height=300,
                                   elem_id="diffusion-chain")
        jump_img = common.picture(label="Closed form: x_t from x₀ in one jump", height=300, elem_id="diffusion-jump")
    chain_note = gr.Markdown()

    gr.Markdown("### A strip of x_t")
    with gr.Row():
        timesteps = gr.Textbox(value="0, 10, 50, 100, 250, 500, 750, 1000", label="t values (up to 10)", scale=3)
        strip_btn = gr.Button("Draw the strip", scale=1)
    strip_img = common.picture(label="x_t at the chosen t")

    gr.Markdown("### Pixel space against latent space\n"
                "Latent diffusion runs the same process on a VAE's latent z = Encoder(x) and decodes at the end, "
                "x = Decoder(z): far fewer numbers per step (the lecture's \"10×–100× cheaper\").")
    with gr.Row():
        autoencoder = gr.Radio([(v, k) for k, v in AUTOENCODERS.items()], value="vae", label="autoencoder")
        tier = common.tier_radio("vae")
        latent_btn = gr.Button("🧬 Encode, noise, decode", variant="primary")
    latent_note = gr.Markdown()
    with gr.Row():
        latent_img = common.picture(label="Latent channels z (blue < 0 < yellow)")
    with gr.Row():
        rec_img = common.picture(label="Decoder(Encoder(x))", height=280, elem_id="diffusion-recon")
        err_img = common.picture(label="|error| per pixel", height=280)
        pix_img = common.picture(label="noise at t in pixel space", height=280, elem_id="diffusion-pixnoise")
        lat_img = common.picture(label="noise at t in latent space, decoded", height=280)

    ui = common.show_errors
    params = [schedule, beta_start, beta_end, T]
    scene_btn.click(ui(new_scene), [scene_seed], [image, truth], api_name="diffusion_scene")
    image.upload(lambda: "", None, truth, api_visibility="private")
    # x_t follows the slider live, unqueued (pure maths, a few ms); its histogram (a Plotly redraw that would hold
    # the picture back by about 100 ms) follows when the slider is let go, and on every other change
    changes = [schedule.change, T.submit, beta_start.submit, beta_end.submit, seed.submit, image.change]
    gr.on([t.input, *changes], ui(forward), [image, *params, t, seed], [xt_img, xt_note],
          api_name="diffusion_forward", **common.LIVE, queue=False)
    gr.on([t.release, *changes], ui(histogram), [image, *params, t, seed], [hist], api_name="diffusion_histogram",
          **common.LIVE, queue=False)
    gr.on([schedule.change, T.submit, beta_start.submit, beta_end.submit], ui(curves), params,
          [curve_plot], api_name="diffusion_curves", **common.LIVE)
    T.submit(lambda n: gr.Slider(maximum=max(2, min(D.MAX_T, int(n or 2)))), [T], [t], api_visibility="private")
    for button, n in ((step1, 1), (step10, 10), (step100, 100), (reset, 0)):
        button.click(ui(chain), [image, *params, chain_t, gr.Number(n, visible=False), seed],
                     [chain_t, chain_img, jump_img, chain_note], **common.LIVE, queue=False,
                     **({"api_name": "diffusion_chain"} if n == 1 else {"api_visibility": "private"}))
    gr.on([image.change, schedule.change, T.submit, beta_start.submit, beta_end.submit, seed.submit],
          lambda: 0, None, [chain_t], api_visibility="private", queue=False)  # a new chain starts at t = 0
    strip_btn.click(ui(strip), [image, *params, timesteps, seed], [strip_img], api_name="diffusion_strip")
    autoencoder.change(common.tier_radio, [autoencoder], [tier], api_visibility="private", queue=False)  # its tiers
    latent_btn.click(ui(latent), [image, autoencoder, tier, *params, t, seed],
                     [latent_img, rec_img, err_img, pix_img, lat_img, latent_note], api_name="diffusion_latent",
                     show_progress="minimal", show_progress_on=[latent_img])
    # open computed; pure maths, so the page's first pictures never wait behind other tabs' model events in the queue
    maths = {"api_visibility": "private", "queue": False}
    common.on_load(ui(forward), [image, *params, t, seed], [xt_img, xt_note], **maths).then(
        ui(histogram), [image, *params, t, seed], [hist], **maths).then(
        ui(curves), params, [curve_plot], **maths).then(
        ui(strip), [image, *params, timesteps, seed], [strip_img], **maths).then(
        ui(chain), [image, *params, chain_t, gr.Number(0, visible=False), seed],
        [chain_t, chain_img, jump_img, chain_note], **maths)
