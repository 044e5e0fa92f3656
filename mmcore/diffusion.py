"""Diffusion, the forward half: noise schedules, q(x_t | x_{t-1}) step by step, its closed form q(x_t | x_0), and the
VAE that moves the process from pixels to a small latent space (latent diffusion).

The lecture's formulas, written out because they are what is being taught (tests check them against diffusers):

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)          forward_step
    q(x_t | x_0)     = N(sqrt(abar_t) x_0, (1 - abar_t) I)            closed_form,   abar_t = prod_{s<=t} (1 - beta_s)
    SNR(t)           = abar_t / (1 - abar_t)

The schedules themselves come from diffusers' DDPMScheduler (linear, scaled_linear, squaredcos_cap_v2). Timesteps are
1-based as in the lecture (x_1 is the first noisy image); diffusers' index is t - 1.

Both VAE tiers load through `load_vae`: the bundled `vae-shapes` (a diffusers AutoencoderKL trained by
`python -m mmcore.train vae`), Stable Diffusion's VAE, and TAESD (AutoencoderTiny) as the fast alternative.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmcore.models import ModelSpec, folder_mb, register

SCHEDULES = {"linear": "linear", "scaled-linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}
MAX_T = 2000
LECTURE_BETA_1 = 1e-4  # the lecture's worked number: beta_1 = 0.0001 -> sigma = sqrt(beta_1) = 0.01

BUNDLED_VAE = dict(  # diffusers AutoencoderKL kwargs of vae-shapes: 32 px scenes -> 4 x 8 x 8 latents (f = 4)
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,  # two downsamplings: f = 2^2 = 4
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    latent_channels=4,  # as Stable Diffusion
    norm_num_groups=16,
    sample_size=32,
)


# ------------------------------------------------------------------------------------------------------- schedules

@dataclass(frozen=True)
class Schedule:
    """A noise schedule over t = 1..T, numpy arrays indexed by t - 1. The betas stay in float32 and the product is
    taken in float32, as diffusers does, so that both give the same abar_t to the last digit."""

    name: str
    betas: np.ndarray  # (T,) float32

    @property
    def T(self) -> int:
        return len(self.betas)

    @property
    def alphas_cumprod(self) -> np.ndarray:
        """abar_t = prod_{s<=t} (1 - beta_s), (T,) float64."""
        return np.cumprod(np.float32(1.0) - self.betas, dtype=np.float32).astype(np.float64)

    @property
    def snr(self) -> np.ndarray:
        """SNR(t) = abar_t / (1 - abar_t), (T,)."""
        abar = self.alphas_cumprod
        return abar / (1.0 - abar)

    def alpha_bar(self, t: int) -> float:
        """abar_t for t in 0..T (abar_0 = 1: x_0 is the image itself)."""
        check_t(t, self.T)
        return 1.0 if t == 0 else float(self.alphas_cumprod[t - 1])


def finite_number(value, name: str) -> float:
    """`value` as a float, or ValueError naming `name` when it is not a number or not finite (NaN, inf)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return x


def check_T(T) -> int:
    """The number of diffusion steps: a whole number in [2, MAX_T]."""
    x = finite_number(T, "T (the number of steps)")
    if x != int(x) or not 2 <= x <= MAX_T:
        raise ValueError(f"T (the number of steps) must be a whole number in [2, {MAX_T}], got {T!r}")
    return int(x)


def check_t(t, T: int) -> int:
    """A timestep in 0..T (0 = the clean image)."""
    x = finite_number(t, "t")
    if x != int(x) or not 0 <= x <= T:
        raise ValueError(f"t must be a whole number in [0, T = {T}], got {t!r}")
    return int(x)


def make_schedule(schedule: str = "linear", beta_start: float = 1e-4, beta_end: float = 0.02,
                  T: int = 1000) -> Schedule:
    """The betas of `schedule` (linear | scaled-linear | cosine) from diffusers' DDPMScheduler.

    beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1; the cosine schedule (Nichol & Dhariwal)
    derives its betas from abar_t = cos^2(...) and ignores them.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    T = check_T(T)
    b0, b1 = finite_number(beta_start, "beta_start"), finite_number(beta_end, "beta_end")
    if not 0 < b0 < 1 or not 0 < b1 < 1:
        raise ValueError(f"beta_start and beta_end must lie in (0, 1), got {b0:g} and {b1:g}")
    if b1 < b0:
        raise ValueError(f"beta_end ({b1:g}) must not be smaller than beta_start ({b0:g}): noise grows with t")
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=T, beta_start=b0, beta_end=b1, beta_schedule=SCHEDULES[schedule],
                          clip_sample=False)
    return Schedule(schedule, sched.betas.float().numpy())


def lecture_numbers(beta_1: float = LECTURE_BETA_1) -> dict[str, float]:
    """The lecture's first step: x_1 = sqrt(1 - beta_1) x_0 + eps_1, eps_1 ~ N(0, beta_1 I), so sigma = sqrt(beta_1)."""
    return {"beta_1": beta_1, "scale": math.sqrt(1 - beta_1), "sigma": math.sqrt(beta_1)}


# ------------------------------------------------------------------------------------------- the forward process

def forward_step(x_prev: torch.Tensor, beta_t: float, noise: torch.Tensor) -> torch.Tensor:
    """One step of the chain: x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps, eps ~ N(0, I). Same shape as x_prev."""
    return math.sqrt(1.0 - beta_t) * x_prev + math.sqrt(beta_t) * noise


def closed_form(x0: torch.Tensor, alpha_bar_t: float, noise: torch.Tensor) -> torch.Tensor:
    """Jump straight to step t: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps. Same shape as x0."""
    return math.sqrt(alpha_bar_t) * x0 + math.sqrt(1.0 - alpha_bar_t) * noise


def step_noise(shape: tuple[int, ...], seed: int, t: int) -> torch.Tensor:
    """eps_t of the chain with `seed`: the same for a given (seed, t) whatever was computed before, so a chain can be
    resumed from any cached x_t and still reproduce the full recomputation exactly."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(t)) % (1 << 63))
    return torch.randn(shape, generator=g)


class ChainCache:
    """The latest states of recent forward chains, so that "one step" costs one step rather than t. LRU, thread-safe.

    A chain is keyed by its image, its betas and its seed; it stores x_t for the most recent t values it reached.
    """

    def __init__(self, max_chains: int = 64, states_per_chain: int = 8) -> None:
        self._chains: OrderedDict[str, dict[int, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_chains, self.states_per_chain = max_chains, states_per_chain

    @staticmethod
    def key(x0: torch.Tensor, schedule: Schedule, seed: int) -> str:
        h = hashlib.sha1(x0.contiguous().numpy().tobytes())
        h.update(schedule.betas.tobytes())
        h.update(str(int(seed)).encode())
        return h.hexdigest()

    def state(self, x0: torch.Tensor, schedule: Schedule, seed: int, t: int) -> torch.Tensor:
        """x_t of the chain from x0 (float32, any shape), iterating forward_step from the nearest cached state."""
        t = check_t(t, schedule.T)
        key = self.key(x0, schedule, seed)
        with self._lock:
            states = self._chains.get(key, {})
            start = max((s for s in states if s <= t), default=0)
            x = states[start].clone() if start else x0.clone()
        for s in range(start + 1, t + 1):
            x = forward_step(x, float(schedule.betas[s - 1]), step_noise(tuple(x0.shape), seed, s))
        with self._lock:
            states = self._chains.setdefault(key, {})
            states[t] = x.clone()
            for old in sorted(states)[:-self.states_per_chain]:
                del states[old]
            self._chains.move_to_end(key)
            while len(self._chains) > self.max_chains:
                self._chains.popitem(last=False)
        return x


CHAINS = ChainCache()


# ----------------------------------------------------------------------------------------------------- image <-> x

def to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """RGB PIL image -> (1, 3, size, size) float32 in [-1, 1] (the scale diffusion works in), centre-cropped square."""
    image = image.convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)


def to_image(x: torch.Tensor, display: int | None = None) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [-1, 1] -> RGB PIL image, clipped; optionally enlarged (nearest) to `display`."""
    x = x.detach().float().cpu()
    x = x[0] if x.ndim == 4 else x
    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    img = Image.fromarray(arr)
    if display and display != img.width:
        img = img.resize((display, display), Image.Resampling.NEAREST)
    return img


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB between two images in [-1, 1] (peak-to-peak 2)."""
    mse = float(((a.float().clamp(-1, 1) - b.float().clamp(-1, 1)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


# ---------------------------------------------------------------------------------------------------------- the VAE

@dataclass
class VaeBundle:
    """A loaded autoencoder: a diffusers AutoencoderKL (bundled, Stable Diffusion) or AutoencoderTiny (TAESD)."""

    model: torch.nn.Module
    kind: str  # "kl" | "tiny"
    image_size: int  # the side this tab feeds it (its training size for the bundled model)
    device: torch.device
    dtype: torch.dtype

    @property
    def scaling_factor(self) -> float:
        """Latents are multiplied by this so that they have about unit variance, as the diffusion model expects."""
        return float(getattr(self.model.config, "scaling_factor", 1.0))

    @property
    def factor(self) -> int:
        """The spatial downsampling f: a side of S pixels becomes S / f latent cells."""
        cfg = self.model.config
        blocks = cfg.encoder_block_out_channels if self.kind == "tiny" else cfg.block_out_channels
        return 2 ** (len(blocks) - 1)  # every encoder block but the last halves the side

    @property
    def latent_channels(self) -> int:
        return int(self.model.config.latent_channels)

    @torch.inference_mode()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1] -> scaled latents (B, C, S/f, S/f). The KL encoder's mean, so the map is
        deterministic; TAESD's latents are already on Stable Diffusion's scaled scale."""
        x = x.to(self.device, self.dtype)
        if self.kind == "tiny":
            return self.model.encode(x).latents.float().cpu()
        return (self.model.encode(x).latent_dist.mean * self.scaling_factor).float().cpu()

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, C, h, w) -> images (B, 3, h f, w f) in about [-1, 1]."""
        z = z.to(self.device, self.dtype)
        if self.kind == "tiny":
            return self.model.decode(z).sample.float().cpu()
        return self.model.decode(z / self.scaling_factor).sample.float().cpu()


def _load_autoencoder(source: str, device: torch.device, dtype: torch.dtype, local_files_only: bool,
                      kind: str) -> VaeBundle:
    """from_pretrained on a folder or hub id, safetensors only. A Stable Diffusion repo (or pipeline folder) keeps its
    VAE in the subfolder vae/; a plain VAE folder has config.json at its root. The tab feeds each model images at its
    own sample size, at most 256 px on a GPU and 128 px on the CPU (the bundled model's is 32 px)."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    folder = Path(source)
    if folder.is_absolute() and not folder.is_dir():
        raise FileNotFoundError(f"{source} does not exist: train it with `python -m mmcore.train vae`")
    kwargs = {} if kind == "tiny" or (folder / "config.json").is_file() else {"subfolder": "vae"}
    cls = AutoencoderTiny if kind == "tiny" else AutoencoderKL
    model = cls.from_pretrained(source, dtype=dtype, use_safetensors=True, local_files_only=local_files_only,
                                low_cpu_mem_usage=False, **kwargs)
    side = 256 if device.type == "cuda" else 128  # Stable Diffusion's VAE decodes 256 px in about 5 s on 2 CPU cores
    size = min(side, int(getattr(model.config, "sample_size", side) or side))
    return VaeBundle(model.to(device).eval(), kind, size, device, dtype)


def load_vae(source: str, device: torch.device, dtype: torch.dtype, local_files_only: bool = True) -> VaeBundle:
    """An AutoencoderKL: the bundled vae-shapes (a folder) or Stable Diffusion's VAE (hub id, subfolder vae)."""
    return _load_autoencoder(source, device, dtype, local_files_only, "kl")


def load_taesd(source: str, device: torch.device, dtype: torch.dtype, local_files_only: bool = True) -> VaeBundle:
    """TAESD, the tiny distilled autoencoder with Stable Diffusion's latent space (AutoencoderTiny)."""
    return _load_autoencoder(source, device, dtype, local_files_only, "tiny")


register(ModelSpec(
    family="vae", tier="bundled", name="vae-shapes", source="models/vae-shapes", loader=load_vae,
    size_mb=folder_mb("models/vae-shapes"), licence="MIT",
    notes="diffusers AutoencoderKL, 32 px Shapes scenes -> 4 x 8 x 8 latents (f = 4)"))
register(ModelSpec(
    family="vae", tier="pretrained", name="stable-diffusion-v1-5 VAE",
    source="stable-diffusion-v1-5/stable-diffusion-v1-5",
    loader=load_vae, size_mb=335, licence="CreativeML OpenRAIL-M",
    cache_files=("vae/config.json", "vae/diffusion_pytorch_model.safetensors"),
    notes="AutoencoderKL of Stable Diffusion 1.5: 8x downsampling, 4 latent channels, scaling factor 0.18215"))
register(ModelSpec(
    family="taesd", tier="bundled", name="vae-shapes", source="models/vae-shapes", loader=load_vae,
    size_mb=folder_mb("models/vae-shapes"), licence="MIT",
    notes="offline stand-in for TAESD: the bundled vae-shapes"))
register(ModelSpec(
    family="taesd", tier="pretrained", name="madebyollin/taesd", source="madebyollin/taesd", loader=load_taesd,
    size_mb=10, licence="MIT", cache_files=("config.json", "diffusion_pytorch_model.safetensors"),
    notes="AutoencoderTiny: a 2.4 M-parameter distilled VAE in Stable Diffusion's latent space"))
