"""The floor under every browser latency: a bare Gradio app on this machine, with the same clocks as
bench/browser_latency.py, so that the lab's own numbers can be read against what Gradio and Chromium cost alone.

    python bench/browser_floor.py [--repeats 9] [--page-scripts]

The app has one slider, one button, one picture and one Plotly heatmap, and handlers that take no time (a 128 px
picture, an 8 x 8 heatmap of the lab's own kind). What it prints is click -> rendered for a handler of ~0 ms: the
page's event bookkeeping, the request, Gradio's processing, the picture's download and the paint (or the Plotly
drawing). The lab's page holds ~430 blocks instead of 4, and every number here grows with that. With
--page-scripts the bare app carries the lab's two page scripts (app.HEAD), so their effect shows on its own.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build():
    import gradio as gr
    import numpy as np
    from PIL import Image

    from demos import clip

    def picture(value: float) -> Image.Image:
        array = np.zeros((128, 128, 3), np.uint8)
        array[..., 0] = int(value * 37) % 256
        return Image.fromarray(array)

    def heatmap(value: float):
        S = np.random.default_rng(int(value)).uniform(-1, 1, (8, 8))
        names = [f"T{j + 1}" for j in range(8)]
        return clip._heatmap(S, "S", [f"I{i + 1}" for i in range(8)], names, names, -1, 1)

    with gr.Blocks() as demo:
        queued = gr.Slider(0, 100, 1, step=1, label="queued", elem_id="queued")
        unqueued = gr.Slider(0, 100, 1, step=1, label="unqueued", elem_id="unqueued")
        minimal = gr.Slider(0, 100, 1, step=1, label="queued, minimal progress", elem_id="minimal")
        out = gr.Image(type="pil", format="png", elem_id="out")
        button = gr.Button("plot")
        count = gr.Number(0, visible=False)
        plot = gr.Plot(elem_id="plot")
        queued.input(picture, queued, out)
        unqueued.input(picture, unqueued, out, queue=False)
        minimal.input(picture, minimal, out, show_progress="minimal")
        button.click(lambda n: (n + 1, heatmap(n + 1)), count, [count, plot])
    return demo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--page-scripts", action="store_true", help="add the lab's page scripts (app.HEAD)")
    args = ap.parse_args()
    import browser_latency as bl
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build().queue()
    head = None
    if args.page_scripts:
        import app

        head = app.HEAD
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, head=head)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=bl.FLAGS)
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(f"http://127.0.0.1:{port}", wait_until="load", timeout=60_000)
        page.wait_for_timeout(2000)
        rows = [(f"slider -> picture, {name}", bl.measure(page, "out", "slider", slider, args.repeats))
                for name, slider in (("queued", "queued"), ("unqueued (queue=False)", "unqueued"),
                                     ("queued, minimal progress", "minimal"))]
        shown = []
        rows.append(("button -> 8 x 8 Plotly heatmap drawn (settled)", bl.measure(page, "plot", "plot", "plot",
                                                                                 args.repeats, frames=shown)))
        rows.append(("button -> that heatmap on screen (next frame)", shown))
        browser.close()
    demo.close()
    scripts = "with the lab's page scripts" if args.page_scripts else "as Gradio ships it"
    print(f"a bare Gradio app {scripts}, handlers of ~0 ms, {args.repeats} repeats, Chromium headless on this machine")
    for name, times in rows:
        print(f"{name:<50} click->rendered p50 {statistics.median(times):7.1f} ms  (min {min(times):.1f})")


if __name__ == "__main__":
    main()
