"""The latent-diffusion tab, part 3: a 2-D playground where the reverse process is a set of paths in the plane.

A student picks a point cloud or draws one; a small MLP denoiser trains on it in seconds while its loss streams; then
500 samples walk from noise to the data, drawn over the data's density with a t slider, and the forward process runs
the other way. The maths lives in mmcore.toy2d.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from demos import common
from mmcore import toy2d

DRAWING = "my drawing"
CONFIG = toy2d.Toy2DConfig()  # the defaults train in about 3 s on one idle core, at most 10 s


@dataclass
class Playground:
    """A trained playground, kept per browser session: the data and both directions' paths, (T + 1, n, 2)."""

    data: np.ndarray
    reverse: np.ndarray
    forward: np.ndarray
    quality: float
    noise_quality: float


def _points(source: str, sketch, seed: int) -> np.ndarray:
    if source == DRAWING:
        composite = sketch.get("composite") if isinstance(sketch, dict) else sketch
        if composite is None:
            raise ValueError("Draw a few strokes on the canvas first (or pick a preset shape).")
        return toy2d.points_from_sketch(np.asarray(composite), seed=seed)
    return toy2d.make_points(source, seed=seed)


def train(source: str, sketch, seed: float):
    """Stream the denoiser's training: (loss figure, status) every few dozen steps; the last yield adds the paths
    figure at t = 0 (the samples), the playground itself, and resets the t slider."""
    seed = common.whole_number(seed, "seed", 0, 2**31 - 1)
    if source not in (*toy2d.PRESETS, DRAWING):
        raise ValueError(f"data must be one of {', '.join((*toy2d.PRESETS, DRAWING))}, got {source!r}")
    data = _points(source, sketch, seed)
    cfg = CONFIG
    skip = gr.skip()
    for progress in toy2d.train(data, cfg, seed=seed):
        fig = toy2d.loss_figure(progress.losses, progress.loss_steps, progress.steps)
        md = (f"Training the denoiser ε_θ(x_t, t) on {len(data)} points: step {progress.step} / {progress.steps}, "
              f"loss {progress.loss:.3f}, {progress.elapsed:.1f} s")
        if not progress.done:
            yield fig, md, skip, skip, skip
            continue
        reverse = toy2d.sample_paths(progress.model, cfg, seed=seed)
        forward = toy2d.forward_paths(data, cfg, seed=seed)
        noise = np.random.default_rng(seed).standard_normal((len(reverse[0]), 2)).astype(np.float32)
        play = Playground(data, reverse, forward, toy2d.sample_quality(reverse[0], data),
                          toy2d.sample_quality(noise, data))
        md = (f"**Trained** in {progress.elapsed:.1f} s ({progress.status}, final loss {progress.loss:.3f}). "
              f"500 samples from N(0, I) walked T = {cfg.T} reverse steps: their mean distance to the nearest data "
              f"point is **{play.quality:.3f}**, against {play.noise_quality:.3f} for the noise they started from. "
              "Move t to watch them travel; switch to *forward* to watch the data dissolve.")
        yield fig, md, toy2d.paths_figure(data, reverse, 0, "reverse"), play, gr.Slider(value=0)


def paths(play: Playground | None, t: float, direction: str) -> go.Figure:
    """The paths figure at t, for the reverse (noise -> data) or forward (data -> noise) direction."""
    if play is None:
        raise ValueError("Train the denoiser first (▶ Train).")
    if direction not in ("reverse", "forward"):
        raise ValueError(f"direction must be reverse or forward, got {direction!r}")
    T = len(play.reverse) - 1
    t = common.whole_number(t, "t", 0, T)
    return toy2d.paths_figure(play.data, play.reverse if direction == "reverse" else play.forward, t, direction)


def preview(source: str, sketch, seed: float):
    """The chosen data before training: the density the samples should end in (nothing yet for an empty canvas)."""
    seed = common.whole_number(seed, "seed", 0, 2**31 - 1)
    if source == DRAWING and (not isinstance(sketch, dict) or sketch.get("composite") is None
                              or not np.asarray(sketch["composite"]).any()):
        return gr.skip()
    data = _points(source, sketch, seed)
    return toy2d.paths_figure(data, np.stack([data, data]), 0, "forward", n_lines=0)  # t = 0: the data alone


# -------------------------------------------------------------------------------------------------------------- UI

def build() -> None:
    gr.Markdown("## A 2-D playground: the reverse process as paths\n"
                "Here the data are points in the plane, so every x_t can be drawn. A 3-layer MLP learns ε_θ(x_t, t) "
                "in a few seconds; sampling then moves 500 points from N(0, I) to the data, one "
                "p_θ(x_(t−1) | x_t) step at a time (diffusers' DDPMScheduler, T = 100).")
    with gr.Row():
        with gr.Column(scale=1):
            source = gr.Radio([*toy2d.PRESETS, DRAWING], value="spiral", label="data")
            sketch = gr.Sketchpad(label="draw your own point cloud, then pick “my drawing”", height=260,
                                  canvas_size=(256, 256), type="numpy")
            with gr.Row():
                seed = gr.Number(0, label="seed", precision=0, minimum=0)
                train_btn = gr.Button("▶ Train", variant="primary")
        with gr.Column(scale=2):
            loss_plot = gr.Plot(label="training loss")
            status = gr.Markdown()
    with gr.Row():
        direction = gr.Radio(["reverse", "forward"], value="reverse", label="direction")
        t = gr.Slider(0, CONFIG.T, value=0, step=1, label="t (0 = data, T = noise)")
    paths_plot = gr.Plot(label="paths")
    play = gr.State(None)

    ui = common.show_errors
    train_btn.click(ui(train), [source, sketch, seed], [loss_plot, status, paths_plot, play, t],
                    api_name="diffusion_playground_train", concurrency_limit=2)
    gr.on([t.input, direction.change], ui(paths), [play, t, direction], [paths_plot],
          api_name="diffusion_playground_paths", **common.LIVE, queue=False)
    source.change(ui(preview), [source, sketch, seed], [paths_plot], api_visibility="private", queue=False)
