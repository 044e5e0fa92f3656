"""What every tab shares: tier choice, safe image input, sample photos, random Shapes scenes, error display, and how
a model event runs on the shared device (one concurrency group; `spaces.GPU` on a ZeroGPU Space)."""

from __future__ import annotations

import contextvars
import functools
import hashlib
import html
import inspect
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import numpy as np
import plotly.colors
import plotly.graph_objects as go
import plotly.io as pio
from PIL import Image

from mmcore import images, models, settings, shapes

DEVICE = "device"  # the concurrency group of every event that runs a model (see app.share_device)
# Every live control (a slider dragged, a radio or a stepping button pressed again and again): run for the latest
# value only, so a drag never piles up the queue, and show a small timer rather than an overlay over the view that
# is about to update in place. The overlay, re-laid out at every tick, held back each update by ~50 ms on a laptop.
LIVE = {"trigger_mode": "always_last", "show_progress": "minimal"}
LOAD_WAIT_S = 5.0  # a click waits this long for a model that is still loading, then is told to try again
SAMPLES = sorted((models.ASSETS / "images").glob("*.jpg"))
PHOTO_NOTE = ("Real photos belong to the **pretrained** tier. The bundled models were trained only on the Shapes "
              "world, so on a photo of a cat they can only answer in shapes and colours.")


# ----------------------------------------------------------------------------------------------------------- figures

GRID = "rgba(128, 128, 128, 0.25)"  # reads on a light and on a dark page
FIGURE_CSS = """
.dark .js-plotly-plot :is(.xtick, .ytick, .g-gtitle, .g-xtitle, .g-ytitle, .cbaxis, .colorbar .cbtitle) text,
.dark .js-plotly-plot :is(.annotation-text, .legendtext) {fill: var(--body-text-color) !important;}
.dark .js-plotly-plot .legend .bg {fill: transparent !important;}
"""


def figure_template() -> go.layout.Template:
    """Every figure's template: transparent backgrounds, so the page's own (light or dark) shows through; grey grid
    lines that read on both; Plotly's colours and colour scales. Axis text turns light in dark mode through
    FIGURE_CSS. Small on purpose: a figure carries its template in its JSON, and Plotly's default adds 6.5 kB to
    each."""
    plotly = pio.templates["plotly"].layout
    axis = dict(gridcolor=GRID, zerolinecolor=GRID, linecolor=GRID, automargin=True)
    return go.layout.Template(layout=dict(
        colorway=plotly.colorway, colorscale=plotly.colorscale, autotypenumbers="strict", hovermode="closest",
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)", font=dict(color="#374151"),
        xaxis=axis, yaxis=axis, title=dict(x=0.05)))


pio.templates["lab"] = figure_template()
pio.templates.default = "lab"


VIRIDIS = plotly.colors.get_colorscale("Viridis")  # as validation writes a named colour scale: its stops


def figure(data: list[dict], layout: dict) -> go.Figure:
    """A figure from plain dicts, built without Plotly's validation, which checks every property of every trace: 2-3
    ms a figure, 5-9 times the build itself, paid at a click (a new ViT scene builds four such figures, a τ move two
    heatmaps). Titles are written as {"text": ...} and colour scales as their stops, as validation would have them.
    In the tests every such figure is built validated too (tests/conftest.py), where a misspelt property fails."""
    return go.Figure({"data": data, "layout": layout}, _validate=False)


# ------------------------------------------------------------------------------------------------------------- tiers

def resolve(family: str, choice: str | None) -> models.Resolution:
    """The tier to use for `family` when the user picked `choice` (auto | bundled | pretrained). Cheap after the
    first call: the cache lookup is a file check and the hub's reachability is probed once per process."""
    choice = choice or settings.get().tier_for(family)
    if choice not in settings.TIERS:
        raise ValueError(f"tier must be one of {', '.join(settings.TIERS)}, got {choice!r}")
    return models.resolve_tier(family, choice)


def load(family: str, choice: str | None, wait: float | None = LOAD_WAIT_S):
    """(model bundle, resolution) for the user's tier choice; downloads only when the resolution says so. A model
    still loading after `wait` seconds raises models.StillLoading (None: wait as long as it takes)."""
    res = resolve(family, choice)
    return models.load(family, res.tier, local_files_only=not res.download, wait=wait), res


def tier_label(family: str, res: models.Resolution) -> str:
    """One Markdown line naming the model in use, its tier, and why; a sentence first when the tier asked for could
    not be had, so that the radio button's choice never hides what is really running."""
    spec = models.get_spec(family, res.tier)
    badge = "🟢 pretrained" if res.tier == "pretrained" else "🟦 bundled (trained on Shapes)"
    line = f"**{badge}**: `{spec.name}` — {res.reason}"
    if res.requested == "pretrained" and res.tier != "pretrained":
        line = (f"⚠️ **The pretrained model can't be used here, so you are seeing the bundled one.** It knows only "
                f"Shapes scenes.  \n{line}")
    return line


def tier_radio(family: str) -> gr.Radio:
    """The tier control of a tab, saying how large each download is before any download happens."""
    choices = [("auto", "auto")]
    for tier in models.TIERS:
        try:
            spec = models.get_spec(family, tier)
        except KeyError:
            continue
        if tier == "bundled":
            size = f"{spec.size_mb:.1f} MB, offline"
        else:
            size = "cached" if models.default_hub(settings.get().hub_endpoint).is_cached(spec) else (
                f"{spec.size_mb:,.0f} MB download")
            if spec.needs_cuda and models.pick_device(settings.get()).type != "cuda":
                size += ", needs a CUDA GPU"
        choices.append((f"{tier}: {spec.name} ({size})", tier))
    return gr.Radio(choices, value=settings.get().tier_for(family), label="Model tier", elem_classes="tier",
                    info="auto = pretrained when cached or downloadable, else bundled.")


# ------------------------------------------------------------------------------------------------------------ images

def user_image(image: Image.Image | np.ndarray | str | Path | None, what: str = "image") -> Image.Image:
    """Any upload -> RGB PIL image within the configured limits, or ValueError with a message for people."""
    if image is None:
        raise ValueError(f"No {what} yet: upload one, pick a sample photo, or draw a Shapes scene.")
    cfg = settings.get()
    return images.load_image(image, max_side=cfg.max_image_side, max_pixels=cfg.max_pixels)


def random_scene(seed: float | None = None, size: int = 256, **scene_kwargs) -> tuple[Image.Image, shapes.Scene]:
    """A fresh test-split Shapes scene (never seen in training): (image, scene). A missing or bad seed draws one."""
    if seed is None or not np.isfinite(seed) or seed < 0:
        seed = int(np.random.default_rng().integers(0, 1_000_000))
    scene = shapes.sample_scene(shapes.split_seed("test", int(seed) % 1_000_000), **scene_kwargs)
    return Image.fromarray(shapes.render(scene, size)), scene


def cached_png(image: Image.Image) -> str:
    """`image` as a PNG in Gradio's cache, where an output picture goes (the app writes it once, atomically): its
    path, which a gallery or an image output then sends as it is."""
    from gradio import processing_utils
    from gradio.utils import get_upload_folder

    return processing_utils.save_pil_to_cache(image, cache_dir=get_upload_folder(), format="png")


class SceneDeck:
    """Fresh test-split scenes drawn ahead of time, each with its PNG in Gradio's cache, for the clicks that ask for
    random scenes: a click takes them instead of drawing them, and a background thread draws the deck full again
    when the server is quiet (no model call for `quiet_s`; it stops between two scenes while one runs). Drawing and
    encoding eight scenes was half of a new CLIP batch's handler. The scenes are as random as ones drawn at the
    click; a deck that runs out (a room clicking at once) draws the rest on the spot, and a picture the cache sweep
    deleted meanwhile is written again."""

    def __init__(self, stock: int, size: int = 256, quiet_s: float = 0.3):
        self.stock, self.size, self.quiet_s = stock, size, quiet_s
        self._cards: deque[tuple[Image.Image, shapes.Scene, str]] = deque()
        self._lock = threading.Lock()
        self._filling = False

    def _card(self, image: Image.Image, scene: shapes.Scene) -> tuple[Image.Image, shapes.Scene, str]:
        return image, scene, cached_png(image)

    def take(self, n: int) -> list[tuple[Image.Image, shapes.Scene, str]]:
        """n random scenes: (image, scene, the path of its PNG in Gradio's cache) each."""
        with self._lock:
            cards = [self._cards.popleft() for _ in range(min(n, len(self._cards)))]
        cards = [card if Path(card[2]).is_file() else self._card(*card[:2]) for card in cards]
        cards += [self._card(*random_scene(None, self.size)) for _ in range(n - len(cards))]
        self.refill()
        return cards

    def refill(self) -> None:
        """Draw the deck full in the background, at the next quiet moment (unless that is under way already)."""
        with self._lock:
            if self._filling:
                return
            self._filling = True
        threading.Thread(target=self._fill, name="scene-deck", daemon=True).start()

    def _fill(self) -> None:
        try:
            while True:
                with self._lock:
                    if len(self._cards) >= self.stock:
                        self._filling = False
                        return
                while (idle := DEVICE_THREADS.idle_for()) < self.quiet_s:
                    time.sleep(self.quiet_s - idle + 0.01)
                card = self._card(*random_scene(None, self.size))
                with self._lock:
                    self._cards.append(card)
        except BaseException:
            with self._lock:
                self._filling = False
            raise


def image_input(label: str = "Image", value: Image.Image | None = None) -> gr.Image:
    """An image input that hands the handler a file path, so that our own loader (mmcore.images) decodes it. What a
    handler puts there (a scene, a drawing) is sent as PNG: the exact pixels come back to the model, where Gradio's
    default WebP would hand it a lossy copy of the picture that it drew."""
    return gr.Image(value=value, label=label, type="filepath", image_mode=None, sources=["upload", "clipboard"],
                    height=300, format="png")


def picture(**kwargs) -> gr.Image:
    """An image output for a picture the page only shows (a map, an overlay), sent as JPEG: the app's image cache
    writes it at quality 95 with full colour resolution (app.atomic_image_cache), which no one can tell from the PNG,
    in a fifth of the time and two thirds of the bytes (a 448 × 448 attention overlay: 0.9 ms and 11 KB, against 5.1
    ms and 23 KB; two of them were a third of a discard-ratio move's server time). A picture that goes back into a
    model is not one of these: it stays PNG, exact."""
    return gr.Image(format="jpeg", interactive=False, **kwargs)


def _paths(value) -> list[str]:
    """Every file path inside an upload's payload (an image, a gallery, a sketchpad's layers), as a flat list."""
    if isinstance(value, dict):
        return ([value["path"]] if isinstance(value.get("path"), str) else []) + [
            p for k, v in value.items() if k != "path" for p in _paths(v)]
    return [p for v in value for p in _paths(v)] if isinstance(value, (list, tuple)) else []


def _unreadable(component: gr.components.Component, payload, exc: Exception) -> str:
    """A sentence for an input Gradio could not convert: our loader's for an upload, else one naming the control."""
    paths = _paths(payload.model_dump() if hasattr(payload, "model_dump") else payload)
    for path in paths:
        try:
            user_image(Path(path).read_bytes())  # bytes, so that no message names a server path
        except ValueError as bad:
            return str(bad)
        except OSError:
            return "The upload could not be read. Please upload it again."
    if paths:
        return f"This upload could not be read as an image ({images.ACCEPTED})."
    name, value = component.label or type(component).__name__, str(payload)[:60]
    if getattr(component, "minimum", None) is not None and getattr(component, "maximum", None) is not None:
        return f"{name} must be a number in [{component.minimum:g}, {component.maximum:g}], got {value!r}."
    return f"{name} cannot be {value!r} ({type(exc).__name__})."


def guard_input(component: gr.components.Component) -> gr.components.Component:
    """Gradio converts every input before any handler runs (it opens an uploaded image, reads a slider's number);
    make a value it cannot convert (not an image, zero bytes, a decompression bomb, a word for a number) fail with a
    sentence instead of a stack trace or an empty error. Returns `component`."""
    decode = component.preprocess

    @functools.wraps(decode)
    def preprocess(payload):
        try:
            return decode(payload)
        except gr.Error:
            raise
        except Exception as exc:
            raise gr.Error(_unreadable(component, payload, exc), title="Please check the input",
                           print_exception=False) from None

    component.preprocess = preprocess
    return component


# ------------------------------------------------------------------------------------------------------------ inputs

def whole_number(value, name: str, lo: int, hi: int) -> int:
    """Validate a number from a slider or the API: an integer in [lo, hi], else ValueError naming it."""
    if value is None or not np.isfinite(float(value)) or float(value) != int(float(value)):
        raise ValueError(f"{name} must be a whole number in [{lo}, {hi}], got {value!r}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {int(value)}")
    return int(value)


# ------------------------------------------------------------------------------------------------------------ events

def on_load(fn: Callable, inputs, outputs, **kwargs):
    """An event that runs once when the page loads. (`gr.on(None, ...)` also runs on every change of its inputs,
    which turns a start-up chain into work on each slider move.) Call inside the app's Blocks context."""
    return gr.context.Context.root_block.load(fn, inputs, outputs, **kwargs)


# ------------------------------------------------------------------------------------------------ device and errors

def runs_model(fn: Callable) -> bool:
    """Whether a handler runs a model: it takes the tab's `tier` (the tier control's value)."""
    return "tier" in inspect.signature(fn).parameters


def gpu(fn: Callable) -> Callable:
    """`fn` under `spaces.GPU` when the `spaces` package is importable (on a ZeroGPU Space it borrows a GPU for the
    call, elsewhere it does nothing), else `fn` itself, unchanged."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)


class DeviceThreads:
    """The threads every model call runs on: as many as may run at once (MMLAB_DEVICE_CONCURRENCY, the `device`
    group's limit), instead of whichever of Gradio's ~40 worker threads took the request.

    Why: glibc gives each thread that allocates while another does an arena of its own, and keeps what a thread frees
    in that arena for its next allocation. Model calls make the server's big allocations (decoded images, tensors),
    so when any of 40 threads could make them, up to 16 arenas (8 per core) each kept their share: under 40 students
    the server's RSS grew by ~22 % in its first minutes, and half that with model calls on two threads
    (`python bench/load.py`). A call made from one of these threads (a model call inside another) runs where it is,
    so nesting never waits for a free thread. The caller's context variables (Gradio's request and progress
    tracker, which `spaces.GPU` reads) go with each call."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._here = threading.local()
        self._running, self._ended = 0, float("-inf")  # calls under way; when the last one ended (monotonic s)

    def idle_for(self) -> float:
        """Seconds since the last call ended (infinite before the first), or 0.0 while one runs: background work that
        must not slow a request down (SceneDeck) waits for a quiet moment with it."""
        with self._lock:
            return 0.0 if self._running else time.monotonic() - self._ended

    def _run(self, fn: Callable, *args, **kwargs):
        with self._lock:
            self._running += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self._running -= 1
                self._ended = time.monotonic()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(settings.get().device_concurrency, thread_name_prefix="device",
                                                initializer=lambda: setattr(self._here, "inside", True))
            return self._pool

    def inside(self) -> bool:
        """Whether the calling thread is one of these."""
        return getattr(self._here, "inside", False)

    def call(self, fn: Callable, *args, **kwargs):
        """fn(*args, **kwargs), run on one of these threads; returns its result or raises its exception."""
        if self.inside():
            return fn(*args, **kwargs)
        return self._executor().submit(contextvars.copy_context().run, self._run, fn, *args, **kwargs).result()

    def steps(self, stream):
        """A generator's items, each step of it run on one of these threads (in one context throughout)."""
        if self.inside():
            yield from stream
            return
        context, end = contextvars.copy_context(), object()
        try:
            while (item := self._executor().submit(context.run, self._run, next, stream, end).result()) is not end:
                yield item
        finally:  # a stream cancelled or abandoned halfway: close it where it ran
            self._executor().submit(context.run, stream.close).result()


DEVICE_THREADS = DeviceThreads()


# ------------------------------------------------------------------------------------------------ a room at once

SHARE_ITEMS = 16  # answers kept at most (each a few pictures and figures, up to ~1 MB)


def _upload(value: str | Path) -> bool:
    """Whether `value` names a file that Gradio received (its upload folder; at most the upload limit). Any other
    text, a path typed into a text box included, is only text: it is never opened."""
    from gradio.utils import get_upload_folder

    if len(str(value)) > 4096 or "\0" in str(value):
        return False
    path, folder = Path(value).resolve(), Path(get_upload_folder()).resolve()
    return (path.is_relative_to(folder) and path.is_file()
            and path.stat().st_size <= settings.get().max_upload_mb * 1024 * 1024)


def fingerprint(value) -> object:
    """A hashable stand-in for a handler's input: pictures, arrays and files (uploads arrive under a new name each
    time) by their content, numbers by their exact repr. Raises TypeError for anything else."""
    if isinstance(value, Image.Image):
        return "image", value.mode, value.size, hashlib.sha1(value.tobytes()).digest()
    if isinstance(value, np.ndarray):
        return "array", value.dtype.str, value.shape, hashlib.sha1(np.ascontiguousarray(value).tobytes()).digest()
    if isinstance(value, (list, tuple)):
        return type(value).__name__, *map(fingerprint, value)
    if isinstance(value, dict):
        return "dict", *sorted((str(k), fingerprint(v)) for k, v in value.items())
    if isinstance(value, (str, Path)):
        if _upload(value):
            return "file", str(value), hashlib.sha1(Path(value).read_bytes()).digest()
        return "text", str(value)
    if value is None or isinstance(value, (bool, int, float)):
        return type(value).__name__, repr(value)
    raise TypeError(f"no fingerprint for {type(value).__name__}")


def digest(*values) -> str:
    """A short name for `values` by their content (see fingerprint): what a view on the page was drawn from, kept so
    that an event bringing the same inputs again (a component's change event echoing a handler's own output) can
    leave the view as it is instead of drawing it twice."""
    return hashlib.sha1(repr(fingerprint(values)).encode()).hexdigest()[:16]


def _fresh(value):
    """`value` with its dicts and lists copied, so that Gradio, which pops keys out of update dicts as it sends them,
    cannot change an answer that another request will be given too. Pictures and figures are only read."""
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(map(_fresh, value)) if type(value) in (list, tuple) else value
    return value


class SharedAnswers:
    """Identical requests share one computation. When a room clicks the same button on the same scene, the first
    request computes and every identical one, arriving meanwhile or within `ttl_s` after (by default the setting
    MMLAB_SHARE_S; 0 shares nothing), is given its answer instead of computing it again behind it in the queue. Only
    for handlers whose answer is a function of their inputs alone; a failure is not kept (the requests waiting on it
    get the same error, the next one tries again)."""

    def __init__(self, ttl_s: float | None = None, max_items: int = SHARE_ITEMS):
        self.ttl_s, self.max_items = ttl_s, max_items
        self._answers: OrderedDict[object, tuple[float, Future]] = OrderedDict()  # key -> (when asked, answer)
        self._lock = threading.Lock()
        self.computed = self.shared = 0

    def __call__(self, key, compute: Callable):
        ttl_s = settings.get().share_s if self.ttl_s is None else self.ttl_s
        if ttl_s <= 0:
            return compute()
        now = time.monotonic()
        with self._lock:
            for old in [k for k, (t, _) in self._answers.items() if now - t > ttl_s]:
                del self._answers[old]
            entry = self._answers.get(key)
            owner = entry is None
            if owner:
                entry = self._answers[key] = (now, Future())
                while len(self._answers) > self.max_items:
                    self._answers.popitem(last=False)
                self.computed += 1
            else:
                self.shared += 1
        answer = entry[1]
        if owner:
            try:
                answer.set_result(compute())
            except BaseException as exc:
                answer.set_exception(exc)
                with self._lock:
                    if self._answers.get(key) is entry:
                        del self._answers[key]
        return _fresh(answer.result())

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()


ANSWERS = SharedAnswers()


def deterministic(fn: Callable) -> Callable:
    """Mark a handler whose answer depends on its inputs alone (no random draw, no per-user state): its events then
    share one computation among identical requests (show_errors)."""
    fn.deterministic = True
    return fn


def shared(fn: Callable, name: str) -> Callable:
    """`fn`, with identical calls at once (or within MMLAB_SHARE_S) answered by one computation (see SharedAnswers);
    `name` keeps different handlers' answers apart. Calls whose inputs have no fingerprint run as they are."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            key = name, fingerprint(args), fingerprint(kwargs)
        except TypeError:
            return fn(*args, **kwargs)
        return ANSWERS(key, lambda: fn(*args, **kwargs))

    return wrapper


def show_errors(fn: Callable, on_device: bool | None = None, queued: bool = True) -> Callable:
    """Wrap a handler for the UI: ValueError (bad input) becomes a Gradio error popup, a model still loading or that
    failed to load says so, CUDA out-of-memory a polite retry message, and any tqdm bar inside (a first download of
    pretrained weights) shows as a progress bar. A handler that runs a model (`on_device`, by default: it takes a
    `tier`) runs under `gpu` and is marked `.on_device`, so that the app puts its events in the DEVICE group. A
    handler marked `deterministic` gives identical requests at once one computation's answer. A model handler runs
    on DEVICE_THREADS, unless its event is not `queued`: such an event answers at once by design (a few ms of work),
    so it runs where it is rather than wait behind the model calls that hold those threads."""
    on_device = runs_model(fn) if on_device is None else on_device
    call = gpu(fn) if on_device else fn
    if getattr(fn, "deterministic", False):
        if inspect.isgeneratorfunction(fn):
            raise ValueError(f"{fn.__name__} streams: its answers cannot be shared")
        call = shared(call, f"{fn.__module__}.{fn.__qualname__}")
    if on_device and queued:  # on the device's own threads (see DeviceThreads), a stream one step at a time
        run = call
        call = ((lambda *a, **k: DEVICE_THREADS.steps(run(*a, **k))) if inspect.isgeneratorfunction(fn)
                else functools.partial(DEVICE_THREADS.call, run))

    def clean(args: tuple, kwargs: dict) -> tuple:
        if args and isinstance(args[-1], gr.Progress):
            args = args[:-1]  # the progress tracker Gradio passed in: only there for track_tqdm
        kwargs.pop("progress", None)
        return args

    def translate(exc: Exception) -> Exception:
        if isinstance(exc, ValueError):
            return gr.Error(str(exc), title="Please check the input", print_exception=False)
        if isinstance(exc, models.StillLoading):
            return gr.Error(str(exc), title="Still loading", duration=8, print_exception=False)
        if isinstance(exc, models.ModelLoadError):
            return gr.Error(str(exc), title="A model could not be loaded")
        if isinstance(exc, ImportError):
            return gr.Error(f"A library could not be imported ({exc}). If the lab has just started, please try "
                            "again in a few seconds.", title="Still starting")
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            torch.cuda.empty_cache()
            return gr.Error("The GPU ran out of memory for this request (too many at once, or too large). "
                            "Please try again in a moment, or with a smaller input.", title="Out of GPU memory")
        return exc

    # diffusers and transformers import their classes on first use, and not thread-safely: a request that does so
    # while the warm-up thread is loading a model can meet a half-imported module (ImportError). Such a request runs
    # once more when the loads have settled (a stream: if it has yielded nothing yet).
    if inspect.isgeneratorfunction(fn):  # a streaming handler stays a generator, so Gradio streams it
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            args = clean(args, kwargs)
            try:
                for again in (False, True):
                    stream = call(*args, **kwargs)
                    try:
                        first = next(stream)
                    except StopIteration:
                        return
                    except ImportError:
                        if again:
                            raise
                        models.settle(LOAD_WAIT_S)
                        continue
                    yield first
                    yield from stream
                    return
            except Exception as exc:
                err = translate(exc)
                if err is exc:
                    raise
                raise err from None
    else:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            args = clean(args, kwargs)
            try:
                try:
                    return call(*args, **kwargs)
                except ImportError:
                    models.settle(LOAD_WAIT_S)
                    return call(*args, **kwargs)
            except Exception as exc:
                err = translate(exc)
                if err is exc:
                    raise
                raise err from None

    signature = inspect.signature(fn)
    progress = inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 default=gr.Progress(track_tqdm=True))
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), progress])
    wrapper.on_device = on_device
    wrapper.device_threads = on_device and queued  # the app checks that no unqueued event waits for them
    return wrapper


# ------------------------------------------------------------------------------------------------------- decoding

# A small model writes a token every few ms, faster than a page can draw them: each streamed update costs this
# app's page 30-50 ms of main thread on a laptop, so eight tokens sent one by one arrive as a queue of redraws and
# the whole caption shows ~150 ms later than it could. A stream therefore sends its first token at once and then at
# most one update per STREAM_EVERY_S (each carrying every token so far); the finished state always follows. A
# pretrained model on a CPU, slower than that per token, still streams every token on its own.
STREAM_EVERY_S = 0.05


class Pace:
    """When a stream's next update is due: the first at once, then once `every_s` (STREAM_EVERY_S by default) has
    passed since the last one sent."""

    def __init__(self, every_s: float | None = None):
        self.every_s = STREAM_EVERY_S if every_s is None else every_s
        self.last: float | None = None

    def due(self) -> bool:
        now = time.monotonic()
        if self.last is not None and now - self.last < self.every_s:
            return False
        self.last = now
        return True


def token_chips(steps: list, prompt: str = "", done: bool = False, end: str = "[SEP]") -> str:
    """A caption being decoded, as token chips shaded by the probability the decoder gave each (mmcore.blip.Step);
    `end` is the model's end-of-text token."""
    chips = [f'<span class="blip-chip blip-prompt">{html.escape(prompt)}</span>'] if prompt.strip() else []
    for s in steps:
        if s.token == end:
            chips.append(f'<span class="blip-chip blip-end" title="end of caption">{html.escape(end)}</span>')
            continue
        alpha = 0.15 + 0.6 * s.prob
        chips.append(f'<span class="blip-chip" style="background: rgba(99,102,241,{alpha:.2f})" '
                     f'title="p = {s.prob:.3f}">{html.escape(s.token)}<sub>{s.prob:.2f}</sub></span>')
    cursor = "" if done else '<span class="blip-cursor">▌</span>'
    run = time.monotonic_ns()  # every render differs, so the page redraws even when a caption repeats
    return f'<div class="blip-caption" data-run="{run}">{" ".join(chips)}{cursor}</div>'


def step_rows(steps: list) -> list[list]:
    """A decoding's steps (mmcore.blip.Step) as table rows: step, chosen token, its probability, the top candidates."""
    return [[i + 1, s.token, round(s.prob, 3), " · ".join(f"{t} {p:.2f}" for t, p in s.top)]
            for i, s in enumerate(steps)]
