"""What every tab shares: tier choice, safe image input, sample photos, random Shapes scenes, error display."""

from __future__ import annotations

import functools
import html
import inspect
import time
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from mmcore import images, models, settings, shapes

SAMPLES = sorted((models.ASSETS / "images").glob("*.jpg"))
PHOTO_NOTE = ("Real photos belong to the **pretrained** tier. The bundled models were trained only on the Shapes "
              "world, so on a photo of a cat they can only answer in shapes and colours.")


# ------------------------------------------------------------------------------------------------------------- tiers

def resolve(family: str, choice: str | None) -> models.Resolution:
    """The tier to use for `family` when the user picked `choice` (auto | bundled | pretrained). Cheap after the
    first call: the cache lookup is a file check and the hub's reachability is probed once per process."""
    choice = choice or settings.get().tier
    if choice not in settings.TIERS:
        raise ValueError(f"tier must be one of {', '.join(settings.TIERS)}, got {choice!r}")
    return models.resolve_tier(family, choice)


def load(family: str, choice: str | None):
    """(model bundle, resolution) for the user's tier choice; downloads only when the resolution says so."""
    res = resolve(family, choice)
    return models.load(family, res.tier, local_files_only=not res.download), res


def tier_label(family: str, res: models.Resolution) -> str:
    """One Markdown line naming the model in use, its tier, and why."""
    spec = models.get_spec(family, res.tier)
    badge = "🟢 pretrained" if res.tier == "pretrained" else "🟦 bundled (trained on Shapes)"
    return f"**{badge}**: `{spec.name}` — {res.reason}"


def tier_radio(family: str) -> gr.Radio:
    """The tier control of a tab, saying how large each download is before any download happens."""
    choices = [("auto", "auto")]
    for tier in models.TIERS:
        try:
            spec = models.get_spec(family, tier)
        except KeyError:
            continue
        size = f"{spec.size_mb:,.0f} MB download" if tier == "pretrained" else f"{spec.size_mb:.1f} MB, offline"
        choices.append((f"{tier}: {spec.name} ({size})", tier))
    return gr.Radio(choices, value=settings.get().tier, label="Model tier",
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


def image_input(label: str = "Image", value: Image.Image | None = None) -> gr.Image:
    """An image input that hands the handler a file path, so that our own loader (mmcore.images) decodes it."""
    return gr.Image(value=value, label=label, type="filepath", image_mode=None, sources=["upload", "clipboard"],
                    height=300)


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


# ------------------------------------------------------------------------------------------------------------ errors

def show_errors(fn: Callable) -> Callable:
    """Wrap a handler for the UI: ValueError (bad input) becomes a Gradio error popup, CUDA out-of-memory a polite
    retry message, and any tqdm bar inside (a first download of pretrained weights) shows as a progress bar."""

    def clean(args: tuple, kwargs: dict) -> tuple:
        if args and isinstance(args[-1], gr.Progress):
            args = args[:-1]  # the progress tracker Gradio passed in: only there for track_tqdm
        kwargs.pop("progress", None)
        return args

    def translate(exc: Exception) -> Exception:
        if isinstance(exc, ValueError):
            return gr.Error(str(exc), title="Please check the input")
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            torch.cuda.empty_cache()
            return gr.Error("The GPU ran out of memory for this request; please try a smaller input.")
        return exc

    if inspect.isgeneratorfunction(fn):  # a streaming handler stays a generator, so Gradio streams it
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                yield from fn(*clean(args, kwargs), **kwargs)
            except Exception as exc:
                err = translate(exc)
                if err is exc:
                    raise
                raise err from None
    else:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*clean(args, kwargs), **kwargs)
            except Exception as exc:
                err = translate(exc)
                if err is exc:
                    raise
                raise err from None

    signature = inspect.signature(fn)
    progress = inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 default=gr.Progress(track_tqdm=True))
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), progress])
    return wrapper


# ------------------------------------------------------------------------------------------------------- decoding

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
