"""The model catalogue, the one model cache, device and dtype choice, and tier resolution.

Every family (vit, clip, ...) comes in two tiers loaded by the same code path:

- bundled:    tiny models this project trains on the Shapes world, read from a folder under assets/models/;
- pretrained: the real checkpoints, read from the Hugging Face cache or downloaded from the hub.

Family modules register a `ModelSpec` per tier at import (`register(...)`); a spec's loader imports its heavy library
only when called, so importing a family module stays cheap. `load(family, tier)` returns the one shared instance.

Tier resolution (`resolve_tier`) never calls `from_pretrained` to find out what is possible: it checks the local
cache, then asks whether the hub answers within `Settings.probe_timeout`, and otherwise falls back to bundled with a
reason the UI can show. With no network that takes under 2 s (a failed load would retry for 25-50 s).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import torch

from mmcore import settings as settings_mod

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TIERS = ("bundled", "pretrained")

# A loader builds a model bundle: (source, device, dtype, local_files_only) -> family-specific object.
Loader = Callable[[str, torch.device, torch.dtype, bool], Any]


@dataclass(frozen=True)
class ModelSpec:
    """How to load one family in one tier."""

    family: str                 # "vit", "clip", ...
    tier: str                   # "bundled" or "pretrained"
    name: str                   # what the UI calls it
    source: str                 # bundled: folder relative to assets/; pretrained: hub repo id
    loader: Loader              # imports its library lazily
    size_mb: float              # download / disk size, told to users before a download
    licence: str
    cache_files: tuple[str, ...] = ()  # pretrained: files that must be in the HF cache to count as cached
    fp16: bool = True           # safe to run in fp16 on CUDA
    needs_cuda: bool = False    # too large for a CPU: offered only where a CUDA GPU is present
    notes: str = ""

    @property
    def path(self) -> str:
        """Where the loader reads from: an absolute folder (bundled) or the hub id (pretrained)."""
        return str(ASSETS / self.source) if self.tier == "bundled" else self.source


_CATALOGUE: dict[tuple[str, str], ModelSpec] = {}
_CATALOGUE_LOCK = threading.Lock()


def folder_mb(relative: str) -> float:
    """Size on disk of a bundled model folder under assets/, subfolders included, in MB (0 when it is not there)."""
    folder = ASSETS / relative
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6 if folder.is_dir() else 0.0


def register(spec: ModelSpec) -> ModelSpec:
    """Add `spec` to the catalogue. Registering the same (family, tier) twice with a different spec is an error."""
    if spec.tier not in TIERS:
        raise ValueError(f"tier must be one of {TIERS}, got {spec.tier!r}")
    with _CATALOGUE_LOCK:
        old = _CATALOGUE.get((spec.family, spec.tier))
        if old is not None and old != spec:
            raise ValueError(f"{spec.family}/{spec.tier} is already registered as {old.name}")
        _CATALOGUE[(spec.family, spec.tier)] = spec
    return spec


def get_spec(family: str, tier: str) -> ModelSpec:
    try:
        return _CATALOGUE[(family, tier)]
    except KeyError:
        known = ", ".join(f"{f}/{t}" for f, t in sorted(_CATALOGUE)) or "none"
        raise KeyError(f"no model registered for {family}/{tier}; registered: {known}") from None


def families() -> list[str]:
    """Registered families, in registration order."""
    return list(dict.fromkeys(f for f, _ in _CATALOGUE))


# ------------------------------------------------------------------------------------------------------ device, dtype

def pick_device(cfg: settings_mod.Settings | None = None) -> torch.device:
    """The device from MMLAB_DEVICE, else CUDA when present, else CPU."""
    cfg = cfg or settings_mod.get()
    if cfg.device:
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"MMLAB_DEVICE={cfg.device} but no CUDA device is available")
        return torch.device(cfg.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, spec: ModelSpec) -> torch.dtype:
    """fp16 on CUDA where the family allows it; fp32 on CPU (fp16 matmuls there are slow and less exact)."""
    return torch.float16 if device.type == "cuda" and spec.fp16 else torch.float32


# ---------------------------------------------------------------------------------------------------- tier resolution

class Hub(Protocol):
    def is_cached(self, spec: ModelSpec) -> bool: ...
    def reachable(self, timeout: float) -> bool: ...


class HuggingFaceHub:
    """The real hub: cache lookups through huggingface_hub, reachability by one TCP connect to the endpoint."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._reachable: bool | None = None
        self._lock = threading.Lock()

    def is_cached(self, spec: ModelSpec) -> bool:
        from huggingface_hub import try_to_load_from_cache

        return bool(spec.cache_files) and all(
            isinstance(try_to_load_from_cache(spec.source, f), str) for f in spec.cache_files)

    def reachable(self, timeout: float) -> bool:
        with self._lock:  # asked once per process: the answer will not change while a workshop runs
            if self._reachable is None:
                self._reachable = _tcp_probe(self.endpoint, timeout)
            return self._reachable


def _tcp_probe(endpoint: str, timeout: float) -> bool:
    """True when a TCP connection to `endpoint` opens within `timeout` s. DNS runs in a thread, so it is bounded too."""
    url = urlparse(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


_HUBS: dict[str, HuggingFaceHub] = {}
_HUBS_LOCK = threading.Lock()


def default_hub(endpoint: str) -> HuggingFaceHub:
    """One hub object per endpoint for the process, so that its reachability is probed once, not per request."""
    with _HUBS_LOCK:
        return _HUBS.setdefault(endpoint, HuggingFaceHub(endpoint))


@dataclass(frozen=True)
class Resolution:
    family: str
    requested: str      # auto | bundled | pretrained
    tier: str           # bundled | pretrained: what will be loaded
    reason: str         # one sentence for the banner
    download: bool = False  # pretrained weights must be downloaded first
    seconds: float = 0.0    # how long the decision took


def resolve_tier(family: str, requested: str | None = None, *, hub: Hub | None = None,
                 cfg: settings_mod.Settings | None = None) -> Resolution:
    """Decide which tier of `family` to load, without calling from_pretrained (see module docstring)."""
    t0 = time.perf_counter()
    cfg = cfg or settings_mod.get()
    requested = requested or cfg.tier
    if requested not in settings_mod.TIERS:
        raise ValueError(f"tier must be one of {', '.join(settings_mod.TIERS)}, got {requested!r}")

    def done(tier: str, reason: str, download: bool = False) -> Resolution:
        return Resolution(family, requested, tier, reason, download, time.perf_counter() - t0)

    bundled = get_spec(family, "bundled")
    if requested == "bundled":
        return done("bundled", f"{bundled.name} (bundled, trained on Shapes) as requested.")
    try:
        pretrained = get_spec(family, "pretrained")
    except KeyError:
        return done("bundled", f"no pretrained model is registered for {family}; using {bundled.name}.")
    if pretrained.needs_cuda and pick_device(cfg).type != "cuda":
        return done("bundled", f"{pretrained.name} needs a CUDA GPU and this server has none; using {bundled.name}.")
    hub = hub or default_hub(cfg.hub_endpoint)
    if hub.is_cached(pretrained):
        return done("pretrained", f"{pretrained.name} found in the local Hugging Face cache.")
    if cfg.hub_offline:
        return done("bundled", f"{pretrained.name} is not cached and HF_HUB_OFFLINE=1; using {bundled.name}.")
    if hub.reachable(cfg.probe_timeout):
        return done("pretrained", f"{pretrained.name} will be downloaded ({pretrained.size_mb:,.0f} MB).", True)
    return done("bundled", f"{pretrained.name} is not cached and the hub is unreachable (no answer within "
                           f"{cfg.probe_timeout:g} s); using {bundled.name}.")


# ---------------------------------------------------------------------------------------------------------- the cache

@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    value: Any = None
    status: str = "not loaded"  # not loaded | loading | ready | failed: <message>
    seconds: float = 0.0


_LOADING = threading.Lock()  # from_pretrained is not thread-safe (its meta-device init is global): one load at a time


class ModelCache:
    """Each model is loaded once, on first use, and shared by every tab and user. Thread-safe: concurrent first
    requests wait for one load instead of starting several, and loads of different models run one after another.
    Entries are keyed by what is loaded (loader and path), so two catalogue entries that name the same weights
    (TAESD's offline stand-in is the bundled VAE) share one."""

    def __init__(self, cfg: settings_mod.Settings | None = None) -> None:
        self._cfg = cfg
        self._entries: dict[tuple[Loader, str], _Entry] = {}
        self._lock = threading.Lock()

    def _entry(self, family: str, tier: str) -> _Entry:
        spec = get_spec(family, tier)
        with self._lock:
            return self._entries.setdefault((spec.loader, spec.path), _Entry())

    def get(self, family: str, tier: str, *, local_files_only: bool = True) -> Any:
        """The loaded bundle for `family`/`tier`; loads it on first use."""
        spec = get_spec(family, tier)
        entry = self._entry(family, tier)
        if entry.value is not None:
            return entry.value
        with entry.lock:
            if entry.value is None:
                device = pick_device(self._cfg)
                entry.status = "loading"
                t0 = time.perf_counter()
                try:
                    only_local = local_files_only or tier == "bundled"
                    with _LOADING:
                        entry.value = spec.loader(spec.path, device, pick_dtype(device, spec), only_local)
                except Exception as exc:
                    entry.status = f"failed: {exc}"
                    raise
                entry.seconds = time.perf_counter() - t0
                entry.status = "ready"
        return entry.value

    def status(self, family: str, tier: str) -> str:
        return self._entry(family, tier).status

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


CACHE = ModelCache()


def load(family: str, tier: str, *, local_files_only: bool = True) -> Any:
    """The shared instance of `family` in `tier` (see ModelCache.get)."""
    return CACHE.get(family, tier, local_files_only=local_files_only)
