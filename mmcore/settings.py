"""Every environment variable the lab reads, read once, here.

    MMLAB_TIER            auto | bundled | pretrained      default tier for every model family (default: auto)
    MMLAB_PRESET          cpu-basic                        a named set of defaults (see PRESETS; default: none)
    MMLAB_DEVICE          cpu | cuda | cuda:N              force a device (default: CUDA when present)
    MMLAB_MAX_UPLOAD_MB   upload size limit in MB           (default: 10)
    MMLAB_MAX_IMAGE_SIDE  longest image side after loading  (default: 1024)
    MMLAB_MAX_PIXELS      refuse images above this many pixels before decoding (default: 40,000,000)
    MMLAB_QUEUE_SIZE      requests waiting in the queue, all events together (default: 128)
    MMLAB_CONCURRENCY     requests of one event that run at once, for events that run no model (default: 2)
    MMLAB_DEVICE_CONCURRENCY  model requests that run at once, all tabs together, on as many threads (default: 2)
    MMLAB_PROBE_TIMEOUT   seconds to decide whether the hub answers (default: 1.5)
    MMLAB_SHARE_S         seconds an answer is given to identical requests, 0 = never shared (default: 30)
    MMLAB_THREADS         worker threads for handlers and their inputs' and outputs' conversions (default: 40)
    MMLAB_COMPILE         1 = on CUDA, torch.compile the diffusion UNet and its preview decoder, warmed at start-up
                          (about a minute; default: 0, eager)
    GRADIO_SERVER_NAME    interface to bind, as Hugging Face Spaces set it (default: 127.0.0.1)
    PORT, GRADIO_SERVER_PORT  port to serve on, the first one set wins (default: 7860)
    HF_HUB_OFFLINE        1 = never touch the network (huggingface_hub's own variable, read here too)
    HF_ENDPOINT           the hub address (huggingface_hub's own variable)

A classroom is 30-40 students clicking within the same second. Each click starts at most about three queued events
at once (an action and the chains it sets off), so 40 students fill about 120 places: the queue holds 128, and a
click beyond that is refused at once ("busy, try again") rather than left waiting for minutes. Every model call
shares one device, so model events form one concurrency group of MMLAB_DEVICE_CONCURRENCY; on a 2-core CPU two at
once keep both cores busy, and on one GPU two at once overlap one request's Python with the other's kernels. The
model calls run on that many threads of their own, not on any of the MMLAB_THREADS workers, so that their large
allocations stay in a few of the C allocator's per-thread arenas (demos.common.DeviceThreads). When
the lecturer says "now click Caption", the room sends the same request forty times: an action whose answer depends
on its inputs alone computes it once and gives it to every identical request that arrives meanwhile or within
MMLAB_SHARE_S seconds after.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

TIERS = ("auto", "bundled", "pretrained")
PRESETS = {  # name -> default tier, per-family tiers, whether pretrained weights may be downloaded while serving
    # A Hugging Face Space on "CPU basic" (2 vCPU, 16 GB): the bundled models everywhere, plus SD-Turbo (4 steps)
    # and its TAESD previews when they are already in the cache (preload_from_hub), never a download mid-class.
    "cpu-basic": dict(tier="bundled", family_tiers={"ldm": "auto", "taesd": "auto"}, downloads=False),
}


@dataclass(frozen=True)
class Settings:
    tier: str = "auto"
    preset: str | None = None
    family_tiers: tuple[tuple[str, str], ...] = ()  # (family, tier) pairs from the preset
    downloads: bool = True      # False: pretrained weights are used only when already cached
    device: str | None = None  # None: CUDA when available, else CPU
    max_upload_mb: int = 10
    max_image_side: int = 1024
    max_pixels: int = 40_000_000
    queue_size: int = 128
    concurrency: int = 2
    device_concurrency: int = 2
    probe_timeout: float = 1.5
    share_s: int = 30
    threads: int = 40
    host: str = "127.0.0.1"
    port: int = 7860
    hub_offline: bool = False
    hub_endpoint: str = "https://huggingface.co"
    compile: bool = False  # torch.compile the diffusion loop on CUDA (warmed at start-up)

    def tier_for(self, family: str) -> str:
        """The default tier of `family`: the preset's choice for it, else the app-wide tier."""
        return dict(self.family_tiers).get(family, self.tier)


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {raw!r}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from `env` (default: os.environ), raising ValueError that names a bad variable."""
    env = os.environ if env is None else env
    preset_name = env.get("MMLAB_PRESET", "").strip().lower() or None
    if preset_name is not None and preset_name not in PRESETS:
        raise ValueError(f"MMLAB_PRESET must be one of {', '.join(PRESETS)}, got {preset_name!r}")
    preset = PRESETS.get(preset_name, {})
    tier = env.get("MMLAB_TIER", "").strip().lower() or preset.get("tier", "auto")
    if tier not in TIERS:
        raise ValueError(f"MMLAB_TIER must be one of {', '.join(TIERS)}, got {tier!r}")
    device = env.get("MMLAB_DEVICE", "").strip().lower() or None
    if device is not None and not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise ValueError(f"MMLAB_DEVICE must be cpu, cuda or cuda:N, got {device!r}")
    try:
        probe_timeout = float(env.get("MMLAB_PROBE_TIMEOUT", "1.5"))
    except ValueError:
        raise ValueError("MMLAB_PROBE_TIMEOUT must be a number of seconds") from None
    if not 0.05 <= probe_timeout <= 10:
        raise ValueError(f"MMLAB_PROBE_TIMEOUT must be in [0.05, 10] seconds, got {probe_timeout}")
    port_name = "PORT" if env.get("PORT") else "GRADIO_SERVER_PORT"
    compile_flag = env.get("MMLAB_COMPILE", "0").strip().lower()
    if compile_flag not in ("", "0", "1", "false", "true", "no", "yes", "off", "on"):
        raise ValueError(f"MMLAB_COMPILE must be 0 or 1, got {compile_flag!r}")
    return Settings(
        tier=tier,
        preset=preset_name,
        family_tiers=tuple(preset.get("family_tiers", {}).items()),
        downloads=preset.get("downloads", True),
        device=device,
        max_upload_mb=_int(env, "MMLAB_MAX_UPLOAD_MB", 10, 1, 200),
        max_image_side=_int(env, "MMLAB_MAX_IMAGE_SIDE", 1024, 64, 4096),
        max_pixels=_int(env, "MMLAB_MAX_PIXELS", 40_000_000, 10_000, 200_000_000),
        queue_size=_int(env, "MMLAB_QUEUE_SIZE", 128, 1, 1000),
        concurrency=_int(env, "MMLAB_CONCURRENCY", 2, 1, 16),
        device_concurrency=_int(env, "MMLAB_DEVICE_CONCURRENCY", 2, 1, 16),
        probe_timeout=probe_timeout,
        share_s=_int(env, "MMLAB_SHARE_S", 30, 0, 3600),
        threads=_int(env, "MMLAB_THREADS", 40, 2, 200),
        host=env.get("GRADIO_SERVER_NAME", "").strip() or "127.0.0.1",
        port=_int(env, port_name, 7860, 1, 65535),
        hub_offline=env.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"),
        hub_endpoint=env.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/"),
        compile=compile_flag in ("1", "true", "yes", "on"),
    )


@lru_cache(maxsize=1)
def get() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return from_env()
