"""The model catalogue, the one model cache, device and dtype choice, and tier resolution.

Every family (vit, clip, ...) comes in two tiers loaded by the same code path:

- bundled:    tiny models this project trains on the Shapes world, read from a folder under assets/models/;
- pretrained: the real checkpoints, read from the Hugging Face cache or downloaded from the hub.

Family modules register a `ModelSpec` per tier at import (`register(...)`); a spec's loader imports its heavy library
only when called, so importing a family module stays cheap. `load(family, tier)` returns the one shared instance.

Tier resolution (`resolve_tier`) never calls `from_pretrained` to find out what is possible: it checks the local
cache, then asks whether the hub answers within `Settings.probe_timeout`, and otherwise falls back to bundled with a
reason the UI can show. With no network that takes under 2 s (a failed load would retry for 25-50 s).

A request that needs a model another request is still loading waits a few seconds at most, then gets `StillLoading`
("... still loading (12 s so far)") instead of hanging. A load that fails raises `ModelLoadError`, naming the damaged
file when one is found, and leaves nothing of the half-built model in memory.
"""

from __future__ import annotations

import gc
import json
import logging
import socket
import threading
import time
import traceback
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
    requested = requested or cfg.tier_for(family)
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
    if cfg.hub_offline or not cfg.downloads:
        why = "HF_HUB_OFFLINE=1" if cfg.hub_offline else f"the {cfg.preset} preset never downloads while serving"
        return done("bundled", f"{pretrained.name} is not cached and {why}; using {bundled.name}.")
    if hub.reachable(cfg.probe_timeout):
        return done("pretrained", f"{pretrained.name} will be downloaded ({pretrained.size_mb:,.0f} MB).", True)
    return done("bundled", f"{pretrained.name} is not cached and the hub is unreachable (no answer within "
                           f"{cfg.probe_timeout:g} s); using {bundled.name}.")


# ---------------------------------------------------------------------------------------------------------- the cache

class StillLoading(RuntimeError):
    """The model is being loaded (for another request, or after another model) and did not finish within the wait."""


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names the damaged file when one is found."""


def _check_file(path: Path) -> str | None:
    """Why `path` (a .safetensors or .json file) cannot be read, or None when it reads. Reads headers only."""
    try:
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
            return None
        size = path.stat().st_size
        with path.open("rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n > size - 8:
                return f"truncated or not a safetensors file ({size:,} bytes)"
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        return None if size == 8 + n + end else f"truncated: {size:,} of {8 + n + end:,} bytes"
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"


def _local_files(spec: ModelSpec) -> list[Path]:
    """The weight and config files of `spec` on this machine: a folder's (bundled, or a local pretrained source), or
    the cached copies of a hub repo's `cache_files`."""
    folder = Path(spec.path)
    if folder.is_dir():
        return sorted(p for p in folder.rglob("*") if p.suffix in (".safetensors", ".json"))
    from huggingface_hub import try_to_load_from_cache

    found = (try_to_load_from_cache(spec.source, f) for f in spec.cache_files if f.endswith((".safetensors", ".json")))
    return [Path(p) for p in found if isinstance(p, str)]


def damaged_files(spec: ModelSpec) -> list[tuple[Path, str]]:
    """(file, why) for each of `spec`'s local weight and config files that cannot be read."""
    return [(p, why) for p in _local_files(spec) if (why := _check_file(p)) is not None]


def _fingerprint(spec: ModelSpec) -> tuple:
    """(path, size, mtime) of `spec`'s local files: changes when a damaged file is repaired."""
    return tuple((str(p), (st := p.stat()).st_size, st.st_mtime_ns) for p in _local_files(spec))


def _failure_message(spec: ModelSpec, exc: Exception) -> tuple[str, bool]:
    """(one paragraph for the UI, whether a damaged file explains it): which file is damaged and how to repair it,
    else the loader's own error."""
    damaged = damaged_files(spec)
    if not damaged:
        return f"{spec.name} could not be loaded: {type(exc).__name__}: {exc}", False
    fix = ("Restore it from the repository (git checkout -- assets/)" if spec.tier == "bundled" else
           "Delete it from the Hugging Face cache so that it is downloaded again")
    files = "; ".join(f"{path} is {why}" for path, why in damaged)
    return f"{spec.name} could not be loaded: {files}. {fix}, and try again.", True


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    value: Any = None
    status: str = "not loaded"  # not loaded | loading | ready | failed: <message>
    seconds: float = 0.0
    since: float = 0.0  # time.monotonic() when the current load began
    damaged: tuple[str, tuple] | None = None  # (message, file fingerprint) of a load that failed on a damaged file


class _LoadSlot:
    """from_pretrained is not thread-safe (its meta-device init is global): one load at a time, and which it is."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.name, self.since = "", 0.0


_LOADING = _LoadSlot()
log = logging.getLogger(__name__)


def settle(wait: float) -> None:
    """Return once no model is loading; StillLoading if one still is after `wait` seconds."""
    if not _LOADING.lock.acquire(timeout=wait):
        raise StillLoading(f"{_LOADING.name} is still loading ({time.monotonic() - _LOADING.since:.0f} s so far). "
                           "Please try again in a few seconds.")
    _LOADING.lock.release()


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

    def get(self, family: str, tier: str, *, local_files_only: bool = True, wait: float | None = None) -> Any:
        """The loaded bundle for `family`/`tier`; loads it on first use. With `wait` (seconds), a model that another
        request is loading, or that waits for another model's load, raises StillLoading after that long instead of
        blocking until it is ready; a failed load raises ModelLoadError."""
        spec = get_spec(family, tier)
        entry = self._entry(family, tier)
        if entry.value is not None:
            return entry.value
        deadline = None if wait is None else time.monotonic() + wait

        def left() -> float:  # Lock.acquire's timeout: -1 blocks
            return -1 if deadline is None else max(0.0, deadline - time.monotonic())

        if not entry.lock.acquire(timeout=left()):
            raise StillLoading(f"{spec.name} is still loading ({time.monotonic() - entry.since:.0f} s so far). "
                               "Please try again in a few seconds.")
        try:
            if entry.value is None and entry.damaged and entry.damaged[1] == _fingerprint(spec):
                raise ModelLoadError(entry.damaged[0])  # same damaged files: no need to build the model again
            if entry.value is None:
                before, entry.status, entry.since = entry.status, "loading", time.monotonic()
                if not _LOADING.lock.acquire(timeout=left()):
                    entry.status = before
                    raise StillLoading(f"{spec.name} waits for {_LOADING.name}, still loading "
                                       f"({time.monotonic() - _LOADING.since:.0f} s so far). "
                                       "Please try again in a few seconds.")
                try:
                    _LOADING.name, _LOADING.since = spec.name, time.monotonic()
                    entry.value = self._load(spec, entry, local_files_only)
                finally:
                    _LOADING.lock.release()
        finally:
            entry.lock.release()
        return entry.value

    def _load(self, spec: ModelSpec, entry: _Entry, local_files_only: bool) -> Any:
        """Run the spec's loader; on failure, free what it built and raise ModelLoadError."""
        device = pick_device(self._cfg)
        try:
            value = spec.loader(spec.path, device, pick_dtype(device, spec), local_files_only or spec.tier == "bundled")
        except Exception as exc:
            message, damaged = _failure_message(spec, exc)
            log.warning("loading %s failed", spec.name, exc_info=exc)
            entry.status = f"failed: {message}"
            entry.damaged = (message, _fingerprint(spec)) if damaged else None
            # A half-built model stays reachable from the traceback's frames (and open_clip's in reference cycles):
            # hundreds of MB per failed click at real size, until the frames are cleared and the cycles collected.
            traceback.clear_frames(exc.__traceback__)
            del exc
            gc.collect()
            raise ModelLoadError(message) from None
        entry.seconds = time.monotonic() - entry.since
        entry.status = "ready"
        return value

    def status(self, family: str, tier: str) -> str:
        return self._entry(family, tier).status

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


CACHE = ModelCache()


def load(family: str, tier: str, *, local_files_only: bool = True, wait: float | None = None) -> Any:
    """The shared instance of `family` in `tier` (see ModelCache.get)."""
    return CACHE.get(family, tier, local_files_only=local_files_only, wait=wait)
