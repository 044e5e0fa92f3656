"""Every environment variable the lab reads, read once, here.

    MMLAB_TIER            auto | bundled | pretrained      default tier for every model family (default: auto)
    MMLAB_DEVICE          cpu | cuda | cuda:N              force a device (default: CUDA when present)
    MMLAB_MAX_UPLOAD_MB   upload size limit in MB           (default: 10)
    MMLAB_MAX_IMAGE_SIDE  longest image side after loading  (default: 1024)
    MMLAB_MAX_PIXELS      refuse images above this many pixels before decoding (default: 40,000,000)
    MMLAB_QUEUE_SIZE      requests waiting in the queue     (default: 32)
    MMLAB_CONCURRENCY     requests run at once              (default: 2)
    MMLAB_PROBE_TIMEOUT   seconds to decide whether the hub answers (default: 1.5)
    HF_HUB_OFFLINE        1 = never touch the network (huggingface_hub's own variable, read here too)
    HF_ENDPOINT           the hub address (huggingface_hub's own variable)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

TIERS = ("auto", "bundled", "pretrained")


@dataclass(frozen=True)
class Settings:
    tier: str = "auto"
    device: str | None = None  # None: CUDA when available, else CPU
    max_upload_mb: int = 10
    max_image_side: int = 1024
    max_pixels: int = 40_000_000
    queue_size: int = 32
    concurrency: int = 2
    probe_timeout: float = 1.5
    hub_offline: bool = False
    hub_endpoint: str = "https://huggingface.co"


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
    tier = env.get("MMLAB_TIER", "auto").strip().lower() or "auto"
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
    return Settings(
        tier=tier,
        device=device,
        max_upload_mb=_int(env, "MMLAB_MAX_UPLOAD_MB", 10, 1, 200),
        max_image_side=_int(env, "MMLAB_MAX_IMAGE_SIDE", 1024, 64, 4096),
        max_pixels=_int(env, "MMLAB_MAX_PIXELS", 40_000_000, 10_000, 200_000_000),
        queue_size=_int(env, "MMLAB_QUEUE_SIZE", 32, 1, 1000),
        concurrency=_int(env, "MMLAB_CONCURRENCY", 2, 1, 16),
        probe_timeout=probe_timeout,
        hub_offline=env.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"),
        hub_endpoint=env.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/"),
    )


@lru_cache(maxsize=1)
def get() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return from_env()
