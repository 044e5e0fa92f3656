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

import gradio as gr

from demos import clip as clip_tab
from demos import common
from demos import vit as vit_tab
from mmcore import models, settings

TABS = (("ViT", "vit", vit_tab), ("CLIP", "clip", clip_tab))
CSS = """
.banner {border-left: 4px solid #6366f1; padding: 4px 12px !important; background: #f5f5ff;}
.banner p {margin: 2px 0 !important;}
"""


def banner() -> tuple[str, gr.Timer]:
    """Markdown naming, per family, the default tier and whether it is loaded yet; the timer stops when all are."""
    lines, busy = [], False
    for family in models.families():
        res = common.resolve(family, None)
        status = models.CACHE.status(family, res.tier)
        busy |= status in ("not loaded", "loading")
        icon = {"ready": "✅", "loading": "⏳", "not loaded": "⏳"}.get(status, "⚠️")
        lines.append(f"{icon} **{family}**: {common.tier_label(family, res)}"
                     + ("" if status == "ready" else f" *({status})*"))
    return "\n\n".join(lines), gr.Timer(active=busy)


def warm_up() -> None:
    """Resolve each family's default tier and load it, so the first click is fast. Failures show in the banner."""
    for family in models.families():
        try:
            common.load(family, None)
        except Exception as exc:  # the banner shows the failure; the tab will raise it again on use
            print(f"[warm-up] {family}: {exc}", flush=True)


def build() -> gr.Blocks:
    """The whole app, not launched."""
    with gr.Blocks(title="Multimodal models lab") as demo:
        gr.Markdown("# Bridging Text, Vision, and Beyond — a live lab\n"
                    "Each tab runs a real model, step by step, on your image or a fresh Shapes scene.")
        status = gr.Markdown("⏳ Loading models…", elem_classes="banner")
        timer = gr.Timer(1.0)
        with gr.Tabs():
            for label, tab_id, module in TABS:
                with gr.Tab(label, id=tab_id):
                    module.build()
        timer.tick(banner, outputs=[status, timer], api_visibility="private", queue=False)
        demo.load(banner, outputs=[status, timer], api_visibility="private", queue=False)
    return demo


def main() -> None:
    cfg = settings.get()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 to serve a room)")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    ap.add_argument("--tier", choices=settings.TIERS, default=cfg.tier,
                    help="default model tier for every family (also MMLAB_TIER)")
    args = ap.parse_args()
    if args.tier != cfg.tier:  # the flag wins over the environment; settings are read once, so set it before
        os.environ["MMLAB_TIER"] = args.tier
        settings.get.cache_clear()
        cfg = settings.get()

    demo = build()
    demo.queue(default_concurrency_limit=cfg.concurrency, max_size=cfg.queue_size)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, prevent_thread_lock=True,
                max_file_size=f"{cfg.max_upload_mb}mb", allowed_paths=[str(models.ASSETS)], css=CSS,
                footer_links=["api", "gradio"])
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    demo.block_thread()


if __name__ == "__main__":
    main()
