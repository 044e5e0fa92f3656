"""Bridging Text, Vision, and Beyond: an interactive lab for Vision Transformers, CLIP, BLIP and latent diffusion.

    python app.py                        # http://127.0.0.1:7860, bundled models, no network needed
    python app.py --tier pretrained      # the real checkpoints (from the HF cache, or downloaded)

This file only composes: each tab lives in demos/, every model in mmcore/. Models load in a background thread after
the server is up, and the banner says what is still loading.
"""

from __future__ import annotations

import argparse
import os
import threading
import uuid
from pathlib import Path

import gradio as gr

from demos import blip as blip_tab
from demos import clip as clip_tab
from demos import common
from demos import diffusion as diffusion_tab
from demos import vit as vit_tab
from mmcore import models, settings

TABS = (("ViT", "vit", vit_tab), ("CLIP", "clip", clip_tab), ("BLIP", "blip", blip_tab),
        ("Latent diffusion", "diffusion", diffusion_tab))
FAMILIES = ("vit", "clip", "blip-caption", "blip-vqa", "blip-itm", "blip2", "vae", "ldm")  # banner and warm-up
CSS = """
.banner {border-left: 4px solid #6366f1; padding: 4px 12px !important; background: #f5f5ff;}
.banner p {margin: 2px 0 !important;}
""" + blip_tab.CSS + diffusion_tab.CSS


def banner() -> tuple[str, gr.Timer]:
    """Markdown naming, per family, the default tier and whether it is loaded yet; the timer stops when all are."""
    lines, busy = [], False
    for family in FAMILIES:
        res = common.resolve(family, None)
        status = models.CACHE.status(family, res.tier)
        busy |= status in ("not loaded", "loading")
        icon = {"ready": "✅", "loading": "⏳", "not loaded": "⏳"}.get(status, "⚠️")
        lines.append(f"{icon} **{family}**: {common.tier_label(family, res)}"
                     + ("" if status == "ready" else f" *({status})*"))
    return "\n\n".join(lines), gr.Timer(active=busy)


def warm_up() -> None:
    """Resolve each family's default tier and load it, so the first click is fast. Failures show in the banner."""
    for family in FAMILIES:
        try:
            common.load(family, None)
        except Exception as exc:  # the banner shows the failure; the tab will raise it again on use
            print(f"[warm-up] {family}: {exc}", flush=True)


def atomic_image_cache() -> None:
    """Gradio 6.31 names an output image's cache file by the hash of its bytes and rewrites it in place on every
    request, so when a room of students clicks the same sample at once one of them can be served a half-written file.
    Same name, same bytes: write each file once, atomically, and let later requests reuse it."""
    from gradio import processing_utils as pu

    if getattr(pu.save_pil_to_cache, "atomic", False):
        return

    def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = pu.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / pu.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        path = (folder / f"{name}.{format}").resolve()
        if not path.exists():
            tmp = path.with_name(f".{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # atomic: readers see the old file or the whole new one
        return str(path)

    save_pil_to_cache.atomic = True
    pu.save_pil_to_cache = save_pil_to_cache


def link_tabs(exports: dict[str, dict], tabs: gr.Tabs) -> None:
    """Buttons that carry a result from one tab to another: a generated image to the BLIP tab for a caption."""
    diffusion, blip = exports.get("diffusion", {}), exports.get("blip", {})
    if "to_blip" in diffusion and "image" in blip:
        diffusion["to_blip"].click(lambda image: (image, gr.Tabs(selected="blip")), [diffusion["final"]],
                                   [blip["image"], tabs], api_visibility="private", queue=False)


def build() -> gr.Blocks:
    """The whole app, not launched."""
    atomic_image_cache()
    with gr.Blocks(title="Multimodal models lab") as demo:
        gr.Markdown("# Bridging Text, Vision, and Beyond — a live lab\n"
                    "Each tab runs a real model, step by step, on your image or a fresh Shapes scene.")
        status = gr.Markdown("⏳ Loading models…", elem_classes="banner")
        timer = gr.Timer(1.0)
        with gr.Tabs() as tabs:
            exports = {}
            for label, tab_id, module in TABS:
                with gr.Tab(label, id=tab_id):
                    exports[tab_id] = module.build() or {}
        link_tabs(exports, tabs)
        timer.tick(banner, outputs=[status, timer], api_visibility="private", queue=False)
        demo.load(banner, outputs=[status, timer], api_visibility="private", queue=False)
    return demo


def serve(host: str = "127.0.0.1", port: int = 7860, share: bool = False, block: bool = True) -> gr.Blocks:
    """Build, launch with the configured limits, then load models in the background. Returns the running app."""
    cfg = settings.get()
    demo = build()
    demo.queue(default_concurrency_limit=cfg.concurrency, max_size=cfg.queue_size)
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=True, quiet=not block,
                max_file_size=f"{cfg.max_upload_mb}mb", allowed_paths=[str(models.ASSETS)], css=CSS,
                footer_links=["api", "gradio"])
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    if block:
        demo.block_thread()
    return demo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 to serve a room)")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    ap.add_argument("--tier", choices=settings.TIERS, help="default tier for every model family (or MMLAB_TIER)")
    args = ap.parse_args()
    if args.tier:  # the flag wins over the environment; set before anything reads the settings
        os.environ["MMLAB_TIER"] = args.tier
    serve(args.host, args.port, args.share)


if __name__ == "__main__":
    main()
