"""A 2-D diffusion playground: the reverse process as paths in the plane.

A point cloud (a preset shape or a student's drawing) is the data distribution. A small MLP learns to predict the
noise ε in x_t, and sampling then walks 500 points from N(0, I) to the data, one step of the lecture's

    p_θ(x_{t-1} | x_t) = N(μ_θ(x_t, t), σ_t² I),   μ_θ = (x_t - β_t / sqrt(1 - abar_t) ε_θ(x_t, t)) / sqrt(1 - β_t)

at a time. The forward process runs the other way, q(x_t | x_{t-1}) = N(sqrt(1 - β_t) x_{t-1}, β_t I), one step at a
time, so each point leaves a continuous noisy path. The schedule, `add_noise` (training) and `step` (sampling) are
diffusers' DDPMScheduler; the chain is mmcore.diffusion's `forward_step`.

Paths are arrays (T + 1, n, 2) indexed by the lecture's t in both directions: paths[0] is the data (forward) or the
final samples (reverse), paths[T] is (nearly) pure noise. diffusers counts its timesteps from 0, so its timestep
index is t - 1; the denoiser is fed diffusers' index.

Everything runs on the CPU: the model has ~11 k parameters, and a GPU's launch latency would cost more than the maths.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

from mmcore.diffusion import finite_number, forward_step

if TYPE_CHECKING:
    from diffusers import DDPMScheduler

_INIT_LOCK = threading.Lock()
PRESETS = ("spiral", "two moons", "rings", "eight gaussians", "checkerboard")
SCHEDULES = ("squaredcos_cap_v2", "linear")  # diffusers' names
MIN_N, MAX_N = 10, 5000  # points per cloud / per sampling run
MAX_SEED = 2**32 - 1
MIN_STROKE_PIXELS = 20  # fewer drawn pixels than this is a click, not a shape
AXIS = 4.0  # plots show [-AXIS, AXIS]²: unit-variance data and N(0, I) noise both fit, so frames never rescale


# ------------------------------------------------------------------------------------------------------- checks

def _whole(value, name: str, lo: int, hi: int) -> int:
    """An integer in [lo, hi] from a slider, the API or a test, else ValueError naming it and the range."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number in [{lo}, {hi}], got {value!r}")
    x = finite_number(value, name)
    if x != int(x) or not lo <= x <= hi:
        raise ValueError(f"{name} must be a whole number in [{lo}, {hi}], got {value!r}")
    return int(x)


def _points(points, name: str = "points", min_n: int = MIN_N) -> np.ndarray:
    """(N, 2) finite float32 coordinates with N >= min_n."""
    if points is None:
        raise ValueError(f"{name} is missing: pick a preset or draw a shape first")
    arr = np.asarray(points, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must be an (N, 2) array of x, y coordinates, got shape {arr.shape}")
    if len(arr) < min_n:
        raise ValueError(f"{name} must hold at least {min_n} points, got {len(arr)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return arr


def _paths(paths, name: str = "paths") -> np.ndarray:
    """(T + 1, n, 2) finite float32 trajectories with T >= 1."""
    arr = np.asarray(paths, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[0] < 2 or arr.shape[2] != 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be a (T + 1, n, 2) array of trajectories with T >= 1, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return arr


def _normalise(x: np.ndarray) -> np.ndarray:
    """Zero mean, and one scale for both axes so that E|x|² = 2, as for N(0, I) in 2-D. A single scale keeps the
    shape's aspect ratio (a drawn line stays a line); it is where the forward process ends that sets the unit."""
    x = x - x.mean(axis=0)
    rms = float(np.sqrt((x**2).mean()))
    return (x / (rms or 1.0)).astype(np.float32)


# ------------------------------------------------------------------------------------------------------- point clouds

def make_points(preset: str, n: int = 1000, seed: int = 0) -> np.ndarray:
    """n points of a preset shape (one of PRESETS), (n, 2) float32, zero mean and unit standard deviation per
    coordinate on average. The same (preset, n, seed) gives the same points."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    n = _whole(n, "n (the number of points)", MIN_N, MAX_N)
    rng = np.random.default_rng(_whole(seed, "seed", 0, MAX_SEED))
    if preset == "spiral":  # r grows with the angle; sqrt spreads points evenly along the arm rather than at its tip
        theta = np.sqrt(rng.uniform(0, 1, n)) * 3 * np.pi + 0.5
        x = np.stack([theta * np.cos(theta), theta * np.sin(theta)], axis=1) + rng.normal(0, 0.25, (n, 2))
    elif preset == "two moons":  # two interleaved half circles, as sklearn's make_moons
        angle = rng.uniform(0, np.pi, n)
        lower = rng.integers(0, 2, n).astype(bool)
        x = np.stack([np.cos(angle), np.sin(angle)], axis=1)
        x[lower] = np.stack([1 - np.cos(angle[lower]), 0.5 - np.sin(angle[lower])], axis=1)
        x += rng.normal(0, 0.06, (n, 2))
    elif preset == "rings":  # two concentric circles (sklearn's make_circles), points in proportion to circumference
        radius = rng.choice([1.0, 2.0], size=n, p=[1 / 3, 2 / 3])
        angle = rng.uniform(0, 2 * np.pi, n)
        x = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1) + rng.normal(0, 0.08, (n, 2))
    elif preset == "eight gaussians":  # the classic multi-modal test: 8 small blobs on a circle
        angle = rng.integers(0, 8, n) * (np.pi / 4)
        x = 2 * np.stack([np.cos(angle), np.sin(angle)], axis=1) + rng.normal(0, 0.15, (n, 2))
    else:  # checkerboard: uniform over the dark squares of a 4 x 4 board, sharp edges everywhere
        cell = rng.integers(0, 8, n)  # 8 dark squares, numbered row by row
        row = cell // 2
        col = 2 * (cell % 2) + (row % 2)
        x = np.stack([col, row], axis=1) + rng.uniform(0, 1, (n, 2))
    return _normalise(x)


def _stroke_mask(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: the drawn pixels. With a varying alpha channel, the opaque ones; otherwise the pixels whose colour
    differs from the background, taken as the commonest colour on the border (a canvas is rarely drawn to its edge)."""
    if image.shape[2] == 4 and image[..., 3].min() != image[..., 3].max():
        return image[..., 3] >= 128
    rgb = image[..., :3].astype(np.int16)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])  # (2H + 2W, 3)
    colours, counts = np.unique(border, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    return np.abs(rgb - background).max(axis=2) > 40  # tolerates JPEG noise and anti-aliased edges


def points_from_sketch(image: np.ndarray | None, n: int = 1000, seed: int = 0) -> np.ndarray:
    """A drawing -> n points sampled from its strokes, (n, 2) float32, normalised as make_points.

    image: (H, W, 3) RGB or (H, W, 4) RGBA uint8, e.g. a Gradio Sketchpad's composite. Strokes are the pixels with
    alpha (when the alpha varies) or else the pixels that differ from the background colour. Each point is a drawn
    pixel chosen at random plus a uniform jitter within that pixel; y points up (image rows grow downwards).
    """
    if image is None:
        raise ValueError("there is no drawing yet: draw a few strokes first")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 8:
        raise ValueError(f"image must be an (H, W, 3) or (H, W, 4) array with H, W >= 8, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must hold uint8 values 0..255 (as a Sketchpad gives), got dtype {image.dtype}")
    n = _whole(n, "n (the number of points)", MIN_N, MAX_N)
    rng = np.random.default_rng(_whole(seed, "seed", 0, MAX_SEED))
    rows, cols = np.nonzero(_stroke_mask(image))
    if len(rows) < MIN_STROKE_PIXELS:
        raise ValueError(f"the drawing has only {len(rows)} drawn pixels (at least {MIN_STROKE_PIXELS} needed): "
                         "draw a few strokes first")
    pick = rng.integers(0, len(rows), n)
    jitter = rng.uniform(-0.5, 0.5, (n, 2))
    x = np.stack([cols[pick], -rows[pick]], axis=1) + jitter  # y up: the top row has the largest y
    return _normalise(x.astype(np.float64))


# ------------------------------------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class Toy2DConfig:
    """The schedule, the denoiser and its training. The defaults train in about 3 s on one CPU thread (up to ~9 s
    when other jobs crowd the cores); time_limit caps a run at 10 s whatever the machine."""

    T: int = 100  # diffusion steps: enough for smooth paths; 100 scheduler.step calls sample 500 points in ~0.1 s
    schedule: str = "squaredcos_cap_v2"  # cosine: noise grows evenly over t, so the whole slider shows motion
    hidden: int = 64  # MLP width: 2-D shapes need little capacity, and a small model is what fits in a few seconds
    layers: int = 3  # hidden layers; 2 blurred the spiral's arms in trials, 4 added time for a small gain
    time_dim: int = 32  # sinusoidal embedding of t: 16 frequencies (sin and cos of each)
    x_freqs: int = 3  # Fourier features of x_t at 1, 2, 4 rad/unit: halved the rings' and checkerboard's error
    steps: int = 2000  # Adam steps; quality still improves after, but the 10 s budget does not
    batch: int = 256  # points (each with its own t and ε) per step
    lr: float = 1e-2  # peak learning rate, cosine-decayed to 0; high because the run is short and the model small
    log_every: int = 50  # yield progress every this many steps: a 40-point loss curve at the default
    time_limit: float = 10.0  # seconds; a hard stop so that a slow machine still answers, `steps` normally ends it

    def __post_init__(self) -> None:
        _whole(self.T, "T (the number of diffusion steps)", 10, 1000)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        _whole(self.hidden, "hidden (the MLP width)", 8, 1024)
        _whole(self.layers, "layers (hidden layers of the MLP)", 1, 8)
        _whole(self.x_freqs, "x_freqs", 0, 8)
        if _whole(self.time_dim, "time_dim", 2, 256) % 2:
            raise ValueError(f"time_dim must be even (a sin and a cos per frequency), got {self.time_dim}")
        _whole(self.steps, "steps (training steps)", 1, 100_000)
        _whole(self.batch, "batch", 1, 8192)
        if not 0 < finite_number(self.lr, "lr") <= 1:
            raise ValueError(f"lr must lie in (0, 1], got {self.lr!r}")
        _whole(self.log_every, "log_every", 1, 100_000)
        if not finite_number(self.time_limit, "time_limit") > 0:
            raise ValueError(f"time_limit must be a positive number of seconds, got {self.time_limit!r}")


def make_scheduler(cfg: Toy2DConfig) -> DDPMScheduler:
    """diffusers' DDPMScheduler for cfg: ε-prediction, σ_t² = β̃_t = β_t (1 - abar_{t-1}) / (1 - abar_t) (its
    "fixed_small" variance), and no clipping of the predicted x_0 (the data spans about ±2.5, not [-1, 1])."""
    from diffusers import DDPMScheduler  # imported here: diffusers takes seconds to import, and only training needs it

    # The linear schedule's 1e-4..0.02 is tuned for T = 1000; at T = 100 it would end at abar_T = 0.36, far from noise.
    # Improved DDPM's rule scales both ends by 1000 / T, so x_T is pure noise for any T.
    scale = 1000 / cfg.T
    return DDPMScheduler(num_train_timesteps=cfg.T, beta_schedule=cfg.schedule, beta_start=1e-4 * scale,
                         beta_end=min(0.02 * scale, 0.999), clip_sample=False)


class Denoiser(nn.Module):
    """ε_θ(x_t, t): an MLP on [x_t, sin(2^k x_t), cos(2^k x_t), sin(ω t), cos(ω t)] -> the noise in x_t, (B, 2).

    t is diffusers' timestep index 0..T-1 (the lecture's t - 1), a tensor (B,) or a scalar shared by the batch.
    """

    def __init__(self, cfg: Toy2DConfig) -> None:
        super().__init__()
        self.cfg = cfg
        half = cfg.time_dim // 2
        # Geometric frequencies from 1 to 1/1000 rad per step: the fastest tells neighbouring t apart, the slowest
        # changes monotonically over the whole range t < T <= 1000, as the Transformer's position encoding.
        self.register_buffer("freqs", torch.exp(-math.log(1000.0) * torch.arange(half) / half), persistent=False)
        # An MLP on raw coordinates is biased towards smooth functions; sin/cos of x at a few octaves lets it bend
        # sharply where the data has edges (Tancik et al. 2020, "Fourier features").
        self.register_buffer("x_scales", 2.0 ** torch.arange(cfg.x_freqs, dtype=torch.float32), persistent=False)
        width = [2 + 4 * cfg.x_freqs + cfg.time_dim] + [cfg.hidden] * cfg.layers
        blocks: list[nn.Module] = []
        for d_in, d_out in itertools.pairwise(width):
            blocks += [nn.Linear(d_in, d_out), nn.SiLU()]  # SiLU: smooth, so the learned field ε_θ is smooth too
        self.net = nn.Sequential(*blocks, nn.Linear(cfg.hidden, 2))

    def embed(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        """Timesteps (B,) or () -> (B, time_dim) sinusoidal features."""
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(batch)  # (B,)
        angle = t[:, None] * self.freqs[None]  # (B, half)
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """x_t (B, 2) and t (B,) or () -> predicted ε (B, 2)."""
        angle = (x[:, :, None] * self.x_scales).flatten(1)  # (B, 2 * x_freqs)
        features = [x, torch.sin(angle), torch.cos(angle), self.embed(torch.as_tensor(t), len(x))]
        return self.net(torch.cat(features, dim=1))  # (B, 2)


# ------------------------------------------------------------------------------------------------------- training

@dataclass
class TrainProgress:
    """One report of a training run. `loss` is the mean over the steps since the previous report (NaN if a run was
    cancelled before its first step); `losses` and `loss_steps` are the whole curve so far. `model` is set (in eval
    mode) only on the last report."""

    step: int
    steps: int
    loss: float
    elapsed: float  # seconds of training so far
    status: str  # "training" | "done" | "cancelled" | "time limit"
    losses: list[float] = field(default_factory=list)
    loss_steps: list[int] = field(default_factory=list)
    model: Denoiser | None = None

    @property
    def done(self) -> bool:
        return self.model is not None


def train(points: np.ndarray, cfg: Toy2DConfig | None = None, seed: int = 0,
          cancel: threading.Event | None = None) -> Iterator[TrainProgress]:
    """Train a Denoiser on points (N, 2) with the DDPM loss |ε - ε_θ(x_t, t)|², yielding a TrainProgress every
    cfg.log_every steps and a last one holding the model. Stops early, still yielding the model trained so far, when
    `cancel` is set or cfg.time_limit seconds have passed. The same seed (on the same thread count) gives the same
    losses. Raises ValueError if the loss diverges."""
    data = torch.from_numpy(_points(points))
    cfg = cfg or Toy2DConfig()
    seed = _whole(seed, "seed", 0, MAX_SEED)
    scheduler = make_scheduler(cfg)
    # seeded initial weights without touching the caller's global RNG; the lock keeps two trainings at once (two
    # students) from seeding each other's weights
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Denoiser(cfg)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)  # fused: 1/5 of a plain Adam step on the CPU
    losses: list[float] = []
    loss_steps: list[int] = []
    total, count, step, status = 0.0, 0, 0, "done"
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        if cancel is not None and cancel.is_set():
            status, step = "cancelled", step - 1
            break
        if time.perf_counter() - start > cfg.time_limit:
            status, step = "time limit", step - 1
            break
        for group in opt.param_groups:  # cosine decay: large steps early, fine ones at the end
            group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / cfg.steps))
        # 1. a batch of data points, each with its own timestep and noise
        x0 = data[torch.randint(0, len(data), (cfg.batch,), generator=g)]  # (B, 2)
        t = torch.randint(0, cfg.T, (cfg.batch,), generator=g)  # (B,) diffusers' index
        eps = torch.randn(cfg.batch, 2, generator=g)  # (B, 2)
        # 2. x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) ε, the closed form of q(x_t | x_0)
        x_t = scheduler.add_noise(x0, eps, t)
        # 3. predict the noise and step
        loss = ((model(x_t, t) - eps) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.item()
        if not math.isfinite(value):
            raise ValueError(f"training diverged at step {step} (loss {value}): lower lr (now {cfg.lr:g})")
        total, count = total + value, count + 1
        if step % cfg.log_every == 0 and step < cfg.steps:
            losses.append(total / count)
            loss_steps.append(step)
            total, count = 0.0, 0
            yield TrainProgress(step, cfg.steps, losses[-1], time.perf_counter() - start, "training",
                                list(losses), list(loss_steps))
    if count:  # the steps since the last report
        losses.append(total / count)
        loss_steps.append(step)
    yield TrainProgress(step, cfg.steps, losses[-1] if losses else float("nan"), time.perf_counter() - start,
                        status, list(losses), list(loss_steps), model.eval())


def train_model(points: np.ndarray, cfg: Toy2DConfig | None = None, seed: int = 0) -> tuple[Denoiser, list[float]]:
    """Run `train` to the end: (the trained model, the loss curve)."""
    *_, last = train(points, cfg, seed)
    return last.model, last.losses


# ------------------------------------------------------------------------------------------------------- paths

@torch.inference_mode()
def sample_paths(model: Denoiser, cfg: Toy2DConfig | None = None, n: int = 500, seed: int = 0) -> np.ndarray:
    """Run the reverse process from x_T ~ N(0, I) to x_0 with scheduler.step: (T + 1, n, 2) float32, where
    paths[t] is x_t (paths[T] the noise, paths[0] the samples). cfg defaults to the model's own and must match it."""
    if not isinstance(model, Denoiser):
        raise ValueError(f"model must be a trained Denoiser (train it first), got {type(model).__name__}")
    cfg = cfg or model.cfg
    if (cfg.T, cfg.schedule) != (model.cfg.T, model.cfg.schedule):
        raise ValueError(f"cfg (T = {cfg.T}, {cfg.schedule}) must match the schedule the model was trained with "
                         f"(T = {model.cfg.T}, {model.cfg.schedule})")
    n = _whole(n, "n (the number of samples)", MIN_N, MAX_N)
    g = torch.Generator().manual_seed(_whole(seed, "seed", 0, MAX_SEED))
    scheduler = make_scheduler(cfg)
    scheduler.set_timesteps(cfg.T)  # all T steps: T-1, T-2, ..., 0 in diffusers' index
    x = torch.randn(n, 2, generator=g)  # x_T
    paths = torch.empty(cfg.T + 1, n, 2)
    paths[cfg.T] = x
    model.eval()
    for t in scheduler.timesteps:
        # 1. predict the noise in x_t
        eps = model(x, t)
        # 2. x_{t-1} ~ p_θ(x_{t-1} | x_t): the posterior mean from ε, plus σ_t z (no noise on the last step)
        x = scheduler.step(eps, int(t), x, generator=g).prev_sample
        paths[int(t)] = x  # diffusers' t is the lecture's t + 1, so this is the lecture's x_t
    return paths.numpy()


def forward_paths(points: np.ndarray, cfg: Toy2DConfig | None = None, n: int = 500, seed: int = 0) -> np.ndarray:
    """Run the forward chain x_t = sqrt(1 - β_t) x_{t-1} + sqrt(β_t) ε from n of the data points: (T + 1, n, 2)
    float32, paths[0] exactly those data points (distinct ones when n <= N), paths[T] about N(0, I)."""
    data = _points(points)
    cfg = cfg or Toy2DConfig()
    n = _whole(n, "n (the number of points)", MIN_N, MAX_N)
    g = torch.Generator().manual_seed(_whole(seed, "seed", 0, MAX_SEED))
    betas = make_scheduler(cfg).betas.float()  # (T,), indexed by t - 1
    pick = torch.randperm(len(data), generator=g)[:n] if n <= len(data) else torch.randint(0, len(data), (n,),
                                                                                           generator=g)
    x = torch.from_numpy(data)[pick]  # x_0, (n, 2)
    paths = torch.empty(cfg.T + 1, n, 2)
    paths[0] = x
    for t in range(1, cfg.T + 1):
        x = forward_step(x, float(betas[t - 1]), torch.randn(n, 2, generator=g))
        paths[t] = x
    return paths.numpy()


def sample_quality(samples: np.ndarray, data: np.ndarray) -> float:
    """Mean distance from each sample (n, 2) to its nearest data point (N, 2): about 0 when the samples lie on the
    data, and about 0.3 for N(0, I) noise against a unit-variance shape. Compare with the same number for noise."""
    a = torch.from_numpy(_points(samples, "samples", 1))
    b = torch.from_numpy(_points(data, "data", 1))
    nearest = [torch.cdist(chunk, b).min(dim=1).values for chunk in a.split(1024)]  # chunks bound memory at 5000²
    return float(torch.cat(nearest).mean())


# ------------------------------------------------------------------------------------------------------- figures

_GRID = "rgba(128, 128, 128, 0.2)"
TEMPLATE = go.layout.Template(layout=go.Layout(
    paper_bgcolor="rgba(0, 0, 0, 0)", plot_bgcolor="rgba(0, 0, 0, 0)",  # the page's light or dark shows through
    font={"color": "#888", "size": 12},  # mid-grey reads on white and on near-black
    title={"font": {"size": 14}, "x": 0.02, "xanchor": "left"},
    xaxis={"gridcolor": _GRID, "zerolinecolor": _GRID, "linecolor": _GRID},
    yaxis={"gridcolor": _GRID, "zerolinecolor": _GRID, "linecolor": _GRID},
    margin={"l": 45, "r": 15, "t": 45, "b": 40}, showlegend=False,
))
_SAMPLE_COLOUR = "#ef553b"  # saturated orange-red: visible over the blue density in both modes
_DENSITY_COLOUR = "99, 110, 250"  # plotly blue, drawn with transparency
_PATH_COLOUR = "rgba(128, 128, 128, 0.35)"


def _round(a: np.ndarray) -> list:
    return np.round(np.asarray(a, dtype=np.float64), 3).tolist()


def loss_figure(losses: Sequence[float], steps: Sequence[int] | None = None,
                total_steps: int | None = None) -> go.Figure:
    """The loss curve: losses (K,) at steps (K,) (default 1..K), log y. total_steps fixes the x range so that a
    streamed curve grows to the right instead of rescaling. An empty curve gives an empty, titled figure."""
    y = np.asarray(losses, dtype=np.float64).reshape(-1)
    if not np.isfinite(y).all() or (y <= 0).any():
        raise ValueError("losses must be positive finite numbers")
    x = np.arange(1, len(y) + 1) if steps is None else np.asarray(steps, dtype=np.float64).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"steps ({len(x)} values) and losses ({len(y)} values) must have the same length")
    fig = go.Figure(go.Scatter(x=x.tolist(), y=_round(y), mode="lines", line={"color": _SAMPLE_COLOUR, "width": 2},
                               hovertemplate="step %{x}: loss %{y:.3f}<extra></extra>"))
    # An untrained ε_θ = 0 scores mean(ε²) = 1; the minimum is above 0, since x_t does not pin down ε exactly.
    fig.add_hline(y=1.0, line={"dash": "dot", "color": "#888", "width": 1}, annotation_text="ε_θ = 0",
                  annotation_position="top right")
    title = f"Training loss |ε − ε_θ(x_t, t)|²: {y[-1]:.3f} at step {int(x[-1])}" if len(y) else "Training loss"
    xaxis = {"title": "step"}
    if total_steps:
        xaxis["range"] = [0, int(total_steps)]
    low, high = (float(y.min()), max(1.0, float(y.max()))) if len(y) else (0.3, 1.0)  # always show the ε_θ = 0 line
    yaxis = {"title": "loss", "type": "log", "range": [math.log10(0.9 * low), math.log10(1.15 * high)]}
    fig.update_layout(template=TEMPLATE, title=title, height=260, xaxis=xaxis, yaxis=yaxis)
    return fig


def _density(data: np.ndarray, bins: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A lightly smoothed 2-D histogram of data on the plot's square: (bins,) centres and (bins, bins) in [0, 1]."""
    edges = np.linspace(-AXIS, AXIS, bins + 1)
    h, _, _ = np.histogram2d(data[:, 1], data[:, 0], bins=[edges, edges])  # rows = y, as go.Contour expects
    # a 3 x 3 binomial blur ([1, 2, 1] each way): 1000 points in 4096 cells would otherwise read as speckle
    padded = np.pad(h, 1)
    h = sum((2 - abs(dy)) * (2 - abs(dx)) * padded[1 + dy:1 + dy + bins, 1 + dx:1 + dx + bins]
            for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    return (edges[:-1] + edges[1:]) / 2, h / (h.max() or 1.0)


def paths_figure(data: np.ndarray, paths: np.ndarray, t: int, direction: str = "reverse",
                 n_lines: int = 40) -> go.Figure:
    """The data density, the n points of paths (T + 1, n, 2) at step t, and n_lines of their trajectories drawn from
    where they start (x_T for "reverse", x_0 for "forward") to t. Three traces: density, lines, points."""
    data = _points(data, "data", 1)
    paths = _paths(paths)
    T = paths.shape[0] - 1
    t = _whole(t, "t", 0, T)
    if direction not in ("reverse", "forward"):
        raise ValueError(f"direction must be 'reverse' or 'forward', got {direction!r}")
    n = paths.shape[1]
    n_lines = _whole(n_lines, "n_lines", 0, n)
    centres, z = _density(data)
    # a path so far: reverse walks T, T-1, ..., t; forward walks 0, 1, ..., t
    walked = paths[T:t - 1 if t else None:-1] if direction == "reverse" else paths[:t + 1]  # (steps, n, 2)
    chosen = np.linspace(0, n - 1, n_lines).round().astype(int) if n_lines else np.zeros(0, int)
    lines = np.concatenate([walked[:, chosen], np.full((1, len(chosen), 2), np.nan)])  # NaN row: a break per path
    lines = lines.transpose(1, 0, 2).reshape(-1, 2)  # (n_lines * (steps + 1), 2), path after path
    xs, ys = _round(lines[:, 0]), _round(lines[:, 1])
    xs = [None if math.isnan(v) else v for v in xs]  # plotly JSON wants null, not NaN, for a gap
    ys = [None if math.isnan(v) else v for v in ys]
    fig = go.Figure([
        go.Contour(x=_round(centres), y=_round(centres), z=_round(z), showscale=False, hoverinfo="skip",
                   colorscale=[[0, f"rgba({_DENSITY_COLOUR}, 0)"], [1, f"rgba({_DENSITY_COLOUR}, 0.6)"]],
                   contours={"coloring": "fill", "showlines": False, "start": 0.05, "end": 1, "size": 0.15}),
        go.Scatter(x=xs, y=ys, mode="lines", line={"color": _PATH_COLOUR, "width": 1}, hoverinfo="skip",
                   connectgaps=False),
        go.Scatter(x=_round(paths[t, :, 0]), y=_round(paths[t, :, 1]), mode="markers",
                   marker={"color": _SAMPLE_COLOUR, "size": 4, "opacity": 0.8},
                   hovertemplate="(%{x:.2f}, %{y:.2f})<extra></extra>"),
    ])
    if direction == "reverse":
        title = (f"Reverse process, t = {t} of {T}<br><sup>{n} samples of p_θ(x_{{t−1}} | x_t), "
                 f"noise (t = {T}) → data (t = 0); grey: {n_lines} paths so far</sup>")
    else:
        title = (f"Forward process, t = {t} of {T}<br><sup>{n} data points under q(x_t | x_{{t−1}}), "
                 f"data (t = 0) → noise (t = {T}); grey: {n_lines} paths so far</sup>")
    axis = {"range": [-AXIS, AXIS], "zeroline": False, "constrain": "domain"}
    fig.update_layout(template=TEMPLATE, title=title, height=480, margin={"t": 60}, xaxis=axis,
                      yaxis={**axis, "scaleanchor": "x", "scaleratio": 1})
    return fig
