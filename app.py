"""Bridging Text, Vision, and Beyond: an interactive lab for Vision Transformers, CLIP, BLIP and latent diffusion.

    python app.py                        # http://127.0.0.1:7860, bundled models, no network needed
    python app.py --tier pretrained      # the real checkpoints (from the HF cache, or downloaded)
    python app.py --preset cpu-basic     # a Space on CPU basic: bundled models, SD-Turbo when cached

This file only composes: each tab lives in demos/, every model in mmcore/. Models load in a background thread after
the server is up, and the banner says what is still loading. On a Hugging Face Space, `PORT` and
`GRADIO_SERVER_NAME` say where to serve, and `spaces` (ZeroGPU) is imported before anything touches CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import functools
import io
import os
import signal
import threading
import time
import uuid
from pathlib import Path

with contextlib.suppress(ImportError):
    import spaces  # noqa: F401  (ZeroGPU patches torch's CUDA entry points, so it must come first)

import gradio as gr
import torch
from gradio import route_utils
from PIL import Image
from starlette.requests import ClientDisconnect

import mmcore.blip2  # noqa: F401  (registers blip2, whose section the BLIP tab builds lazily, for the banner)
from demos import blip as blip_tab
from demos import clip as clip_tab
from demos import common, denoise
from demos import diffusion as diffusion_tab
from demos import vit as vit_tab
from mmcore import models, settings

TABS = (("ViT", "vit", vit_tab), ("CLIP", "clip", clip_tab), ("BLIP", "blip", blip_tab),
        ("Latent diffusion", "diffusion", diffusion_tab))
FAMILIES = ("vit", "clip", "blip-caption", "blip-vqa", "blip-itm", "blip2", "vae", "ldm")  # banner and warm-up
TRIM_EVERY_S = 10  # how often freed C heap goes back to the OS (see return_freed_memory)
MALLOC_KEEP = 32 << 20  # bytes: freed blocks up to this size stay in the heap for reuse (see keep_freed_blocks)
CACHE_SWEEP = (3600, 6 * 3600)  # every hour, delete served files older than a workshop day; all of them at shutdown
CSS = """
.banner {border-left: 4px solid #6366f1; padding: 4px 12px !important; background: var(--background-fill-secondary);}
.banner p {margin: 2px 0 !important;}
.lab-present .gradio-container {--text-sm: 16px; --text-md: 19px; --text-lg: 22px; --text-xl: 26px;
  --block-label-text-size: 15px; --block-info-text-size: 15px; --prose-text-size: 19px; --button-large-text-size: 19px;
  --input-text-size: 18px;}
.lab-present .tier, .lab-present .banner-details {display: none;}
""" + common.FIGURE_CSS + clip_tab.CSS + blip_tab.CSS + diffusion_tab.CSS
# Gradio 6.31 ships Source Sans Pro's semi-bold (600) as a 5 kB subset without most letters, so every heading, label
# and button fell back letter by letter to another font. Its full bold (700) is the nearest face for 600 instead.
THEME = gr.themes.Default(font=[gr.themes.LocalFont("Source Sans Pro", weights=(400, 700)), "ui-sans-serif",
                                "system-ui", "sans-serif"])
# Presentation mode, for a projector: larger text, no tier controls, a one-line banner. `?present` opens in it.
PRESENT_JS = "() => document.body.classList.toggle('lab-present')"
PRESENT_ON_LOAD_JS = ("() => { if (new URLSearchParams(location.search).has('present')) "
                      "document.body.classList.add('lab-present'); }")
# Two page scripts, each saying why: Gradio re-sends every finished loading status on every status message, and
# draws every Plotly figure twice (and refits it), in view or not.
HEAD = "".join(f'<script type="module">{(Path(__file__).parent / "demos" / name).read_text()}</script>'
               for name in ("status_registry.js", "plotly_once.js"))


def banner() -> tuple[str, str, gr.Timer]:
    """Markdown: a one-line summary, and per family the default tier and whether it is loaded yet (shown folded,
    and not at all in presentation mode). The timer stops when every model is loaded or has failed."""
    lines, tiers, ready, failed = [], set(), 0, 0
    for family in FAMILIES:
        res = common.resolve(family, None)
        tiers.add(res.tier)
        status = models.CACHE.status(family, res.tier)
        ready, failed = ready + (status == "ready"), failed + (status not in ("ready", "loading", "not loaded"))
        icon = {"ready": "✅", "loading": "⏳", "not loaded": "⏳"}.get(status, "⚠️")
        lines.append(f"{icon} **{family}**: {common.tier_label(family, res)}"
                     + ("" if status == "ready" else f" *({status})*"))
    busy = ready + failed < len(FAMILIES)
    summary = (f"⏳ **Loading models: {ready} of {len(FAMILIES)} ready**" if busy
               else f"⚠️ **{failed} of {len(FAMILIES)} models failed to load**: see *Models in use*" if failed
               else f"✅ **All {len(FAMILIES)} models ready** ({' and '.join(sorted(tiers))} tier)")
    return summary, "\n\n".join(lines), gr.Timer(active=busy)


def warm_up() -> None:
    """Resolve each family's default tier and load it, and draw the first random scenes ahead, so the first click is
    fast. Failures show in the banner."""
    for family in FAMILIES:
        try:
            common.load(family, None, wait=None)
        except Exception as exc:  # the banner shows the failure; the tab will raise it again on use
            print(f"[warm-up] {family}: {exc}", flush=True)
    try:
        denoise.warm_compiled()
    except Exception as exc:  # then the first click pays for the compile
        print(f"[warm-up] compiling the diffusion loop: {exc}", flush=True)
    clip_tab.DECK.refill()  # the first random batch too is drawn ahead


def atomic_image_cache() -> None:
    """Gradio 6.31 names an output image's cache file by the hash of its bytes and rewrites it in place on every
    request, so when a room of students clicks the same sample at once one of them can be served a half-written file.
    Same name, same bytes: write each file once, atomically, and let later requests reuse it. PNGs are compressed
    fast, as a room's worth of them is encoded on a couple of cores, and JPEGs kept sharp. The paths written are kept
    in `.written`, for delete_outputs."""
    from gradio import processing_utils as pu

    if getattr(pu.save_pil_to_cache, "atomic", False):
        return

    def encode(img, format: str) -> bytes:
        buf = io.BytesIO()
        if format.lower() == "png":  # zlib level 1: a noisy 448 px picture in 40 ms instead of 126 ms, 13 % larger
            img.save(buf, "png", compress_level=1, pnginfo=pu.get_pil_metadata(img))
        elif format.lower() in ("jpeg", "jpg"):  # a picture only shown (common.picture): quality 95, and every pixel
            if img.mode != "RGB":  # its own colour (4:4:4; Gradio's quality 75 at 4:2:0 blurs a map's colour edges)
                rgba = img.convert("RGBA")  # no alpha in a JPEG: onto white, the page's background
                img = Image.new("RGB", rgba.size, "white")
                img.paste(rgba, mask=rgba.getchannel("A"))
            img.save(buf, "jpeg", quality=95, subsampling=0)
        else:
            return pu.encode_pil_to_bytes(img, format)
        return buf.getvalue()

    def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = encode(img, format)
        folder = Path(cache_dir) / pu.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        path = (folder / f"{name}.{format}").resolve()
        if path.exists():
            os.utime(path)  # served again: the cache sweep ages files by ctime, so restart its clock
        else:
            tmp = path.with_name(f".{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # atomic: readers see the old file or the whole new one
            save_pil_to_cache.written.add(str(path))
        return str(path)

    save_pil_to_cache.atomic, save_pil_to_cache.written = True, set()
    pu.save_pil_to_cache = save_pil_to_cache


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, found once (find_library runs ldconfig), or None."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def trim_heap() -> bool:
    """Hand the C heap's free pages back to the OS now (glibc's malloc_trim). False where there is no glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def keep_freed_blocks() -> bool:
    """Let freed blocks of up to MALLOC_KEEP bytes stay in the C heap for the next request. By default glibc hands
    every block over 128 kB (its threshold grows a little with use) straight back to the OS, so each picture-sized
    array of a request (a 448 px overlay is 2.4 MB in float32) comes back as fresh pages that the kernel zeroes on
    first touch: 12,000 page faults and a fifth of a new ViT scene's time on this machine. return_freed_memory still
    hands idle pages back every TRIM_EVERY_S. Returns whether the setting took (glibc only)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, MALLOC_KEEP)) and bool(libc.mallopt(m_trim_threshold, 4 * MALLOC_KEEP))


def return_freed_memory(every_s: float = TRIM_EVERY_S) -> bool:
    """Every `every_s` seconds, trim_heap. Requests run on Gradio's pool of up to 40 worker threads, each with its own
    malloc arena, and free their pictures and activations there; glibc keeps those pages for the arena's next use, so
    under a room's load the server's RSS grew by a third in five minutes, a fifth with the trims. A trim takes a few
    ms. Returns whether it runs (glibc only); one such thread serves the whole process."""
    if any(t.name == "malloc-trim" for t in threading.enumerate()):
        return True
    if _libc() is None:
        return False

    def trim() -> None:
        while True:
            time.sleep(every_s)
            trim_heap()

    threading.Thread(target=trim, name="malloc-trim", daemon=True).start()
    return True


def tidy_aborted_uploads() -> None:
    """Gradio deletes a half-received upload when its data is malformed or too large, but not when the browser goes
    away mid-body (a closed laptop, a lost connection): the partial file stayed in the temp folder for good, with a
    traceback in the log. Delete it, and end the request as Gradio ends a malformed one."""
    parser = route_utils.GradioMultiPartParser
    if getattr(parser.parse, "tidy", False):
        return
    parse = parser.parse

    async def tidy_parse(self):
        try:
            return await parse(self)
        except ClientDisconnect:
            for file in self._files_to_close_on_error:
                file.close()
                Path(file.name).unlink(missing_ok=True)
            raise route_utils.MultiPartException("The upload was interrupted before it finished.") from None

    tidy_parse.tidy = True
    parser.parse = tidy_parse


def cheap_skips() -> None:
    """gr.skip() is how a handler leaves an output as it is, but Gradio 6.31 treats it as an update of the
    component's properties: it builds the component anew and regenerates its whole configuration (a JSON schema of
    its API) on the server's event loop, 2-4 ms per skipped output. A stream that draws a page in stages skips most
    of its outputs at each step: a new ViT scene paid 50-90 ms for it. A bare skip changes nothing, so it goes to the
    page as it is, which is what Gradio sends for it after all that work."""
    from gradio.components import _Keywords

    if getattr(gr.Blocks.postprocess_data, "cheap_skips", False):
        return
    postprocess_data = gr.Blocks.postprocess_data
    bare = gr.skip()

    async def skipping_postprocess_data(self, block_fn, predictions, state):
        outputs = block_fn.outputs
        if isinstance(predictions, dict) and predictions == bare and len(outputs) > 1:
            predictions = [bare] * len(outputs)  # a single skip for every output, as Gradio reads it
        skipped = []
        if isinstance(predictions, (list, tuple)) and len(outputs) > 1:
            predictions = list(predictions)
            for i, (block, value) in enumerate(zip(outputs, predictions)):
                if isinstance(value, dict) and value == bare and not block.stateful:
                    predictions[i] = _Keywords.FINISHED_ITERATING  # Gradio passes this over; set back below
                    skipped.append(i)
        data = await postprocess_data(self, block_fn, predictions, state)
        for i in skipped:
            data[i] = dict(bare)
        return data

    skipping_postprocess_data.cheap_skips, skipping_postprocess_data.original = True, postprocess_data
    gr.Blocks.postprocess_data = skipping_postprocess_data


def quick_static_check() -> None:
    """Gradio 6.31 asks of every file an event sends or receives whether it is one of its static files (its own two
    icons), resolving the file's path and each static path again, link by link, on the server's event loop: a new
    CLIP batch moves 40 files (its gallery out, twice, then into three follow-up events), 28 ms of the loop's time.
    The static paths are kept resolved when they are registered, so the file's path alone is resolved, once, and
    compared with them: the same answer."""
    from gradio import utils
    from gradio.data_classes import FileData, _StaticFiles

    if getattr(utils.is_static_file, "quick", False):
        return

    def is_static_file(file_path) -> bool:
        if isinstance(file_path, FileData):
            file_path = file_path.path
        if not isinstance(file_path, (str, Path)):
            return False
        if isinstance(file_path, str) and not Path(file_path).exists():
            return False
        path = utils.abspath(file_path).resolve()
        return any(path == static or static in path.parents for static in _StaticFiles.all_paths)

    is_static_file.quick, is_static_file.original = True, utils.is_static_file
    utils.is_static_file = is_static_file


def delete_outputs(demo: gr.Blocks) -> None:
    """Delete the uploads and pictures the requests made; keep the app's own (the values its page opens with).
    Gradio's server does the first part when it shuts down, but it waits for every browser's open stream first, and it
    forgets the pictures of components it copied into a session (a streamed generation's final image)."""
    from gradio import processing_utils as pu

    route_utils.delete_files_created_by_app(demo, age=None)
    keep = set().union(*(getattr(block, "keep_in_cache", set()) for block in demo.blocks.values()))
    for path in getattr(pu.save_pil_to_cache, "written", set()) - keep:
        Path(path).unlink(missing_ok=True)


def link_tabs(exports: dict[str, dict], tabs: gr.Tabs) -> None:
    """Buttons that carry a result from one tab to another: a generated image to the BLIP tab for a caption."""
    diffusion, blip = exports.get("diffusion", {}), exports.get("blip", {})
    if "to_blip" in diffusion and "image" in blip:
        diffusion["to_blip"].click(lambda image: (image, gr.Tabs(selected="blip")), [diffusion["final"]],
                                   [blip["image"], tabs], api_visibility="private", queue=False)


def share_device(demo: gr.Blocks, limit: int) -> None:
    """Put every queued event that runs a model (its handler marked `on_device` by common.show_errors, or given a
    concurrency group by its tab) in one group of `limit`, so that a room of clicks never runs more model calls at
    once than the device takes, whichever tabs they come from."""
    for fn in demo.fns.values():
        grouped = fn.concurrency_id != str(id(fn.fn))  # Gradio's default group is the handler's own
        if fn.queue and (getattr(fn.fn, "on_device", False) or grouped):
            fn.concurrency_id, fn.concurrency_limit = common.DEVICE, limit


def build() -> gr.Blocks:
    """The whole app, not launched: every model event in one device group, every input converted safely."""
    atomic_image_cache()
    tidy_aborted_uploads()
    cheap_skips()
    quick_static_check()
    with gr.Blocks(title="Multimodal models lab", delete_cache=CACHE_SWEEP) as demo:
        with gr.Row():
            gr.Markdown("# Bridging Text, Vision, and Beyond — a live lab\n"
                        "Each tab runs a real model, step by step, on your image or a fresh Shapes scene.")
            present = gr.Button("📽️ Presentation mode", scale=0, min_width=200, size="sm")
        status = gr.Markdown("⏳ Loading models…", elem_classes="banner")
        with gr.Accordion("Models in use: which tier each family runs, and why", open=False,
                          elem_classes="banner-details"):
            details = gr.Markdown()
        timer = gr.Timer(1.0)
        with gr.Tabs() as tabs:
            exports = {}
            for label, tab_id, module in TABS:
                with gr.Tab(label, id=tab_id):
                    exports[tab_id] = module.build() or {}
        link_tabs(exports, tabs)
        timer.tick(banner, outputs=[status, details, timer], api_visibility="private", queue=False)
        demo.load(banner, outputs=[status, details, timer], api_visibility="private", queue=False)
        present.click(None, js=PRESENT_JS)
        demo.load(None, js=PRESENT_ON_LOAD_JS)
    share_device(demo, settings.get().device_concurrency)
    for block in {id(b): b for fn in demo.fns.values() for b in fn.inputs}.values():
        common.guard_input(block)
    return demo


def no_event_summaries() -> None:
    """Gradio 6.31's queue, after every event, rebuilds a summary of all the events it has run (a pandas table of up
    to 10,000 of them, grouped by function, with percentiles) for its monitoring page, which this app does not open:
    8 ms of the server's CPU per event at first, 27 ms once a lesson has filled the table, and a new CLIP batch runs
    five events. Only a queue made after this call is spared (GRADIO_ANALYTICS_CACHE_FREQUENCY: rebuild after this
    many events); a value already set is kept."""
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(2**62))


def serve(host: str | None = None, port: int | None = None, share: bool = False, block: bool = True) -> gr.Blocks:
    """Build, launch with the configured limits (host and port: from the settings when None), then load models in
    the background. Returns the running app; with `block`, returns only after SIGINT or SIGTERM has closed it."""
    cfg = settings.get()
    host, port = host or cfg.host, port or cfg.port
    if models.pick_device(cfg).type == "cpu":  # the model calls that run at once share the cores, one thread each
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.device_concurrency))
    demo = build()
    no_event_summaries()
    demo.queue(default_concurrency_limit=cfg.concurrency, max_size=cfg.queue_size)
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=True, quiet=not block,
                max_threads=cfg.threads, max_file_size=f"{cfg.max_upload_mb}mb", allowed_paths=[str(models.ASSETS)],
                css=CSS, head=HEAD, theme=THEME, footer_links=["api", "gradio"],
                # no run history: Gradio's page would copy every event's inputs and outputs into localStorage,
                # rewriting the whole list at each click (tens of ms per click, and a student's uploads kept on a
                # shared laptop)
                run_history=False)
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    keep_freed_blocks()
    return_freed_memory()
    if block:
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM closes cleanly, as Ctrl-C does
        demo.block_thread()
        delete_outputs(demo)
    return demo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", help="interface to bind (0.0.0.0 to serve a room; default: GRADIO_SERVER_NAME or "
                                    "127.0.0.1)")
    ap.add_argument("--port", type=int, help="default: PORT, GRADIO_SERVER_PORT or 7860")
    ap.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    ap.add_argument("--tier", choices=settings.TIERS, help="default tier for every model family (or MMLAB_TIER)")
    ap.add_argument("--preset", choices=settings.PRESETS, help="a named set of defaults (or MMLAB_PRESET)")
    args = ap.parse_args()
    for name, value in (("MMLAB_TIER", args.tier), ("MMLAB_PRESET", args.preset)):
        if value:  # a flag wins over the environment; set before anything reads the settings
            os.environ[name] = value
    serve(args.host, args.port, args.share)


if __name__ == "__main__":
    main()
