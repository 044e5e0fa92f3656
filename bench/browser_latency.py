"""Click -> rendered in the browser, p50, for the diffusion tab's actions, beside the handler time of the same call.

    python bench/browser_latency.py [--repeats 7]

Starts the app on loopback, drives headless Chromium (Debian's chromium) with Playwright, and for each action blanks
the output image, triggers the action as a person would (a key press on the t slider, a button click) and stops the
clock when the new image has loaded in the page. Targets: a t change <= 100 ms, one chain step <= 100 ms, the VAE
panel <= 150 ms.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
BLANK_AND_WAIT = """
async ([id, before]) => {
  const img = () => document.querySelector(`#${id} img`);
  const deadline = performance.now() + 30000;
  while (performance.now() < deadline) {
    const el = img();
    if (el && el.src && el.src !== before && el.complete && el.naturalWidth > 0) return true;
    await new Promise(r => setTimeout(r, 2));
  }
  return false;
}"""


def _src(page, elem_id: str) -> str:
    return page.evaluate(f"() => (document.querySelector('#{elem_id} img') || {{}}).src || ''")


def measure(page, elem_id: str, act, repeats: int) -> list[float]:
    """ms from `act()` to a new, fully loaded image in #elem_id, `repeats` times."""
    times = []
    for _ in range(repeats):
        before = _src(page, elem_id)
        t0 = time.perf_counter()
        act()
        if not page.evaluate(BLANK_AND_WAIT, [elem_id, before]):
            raise RuntimeError(f"{elem_id} did not change within 30 s")
        times.append((time.perf_counter() - t0) * 1000)
        page.wait_for_timeout(150)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="lab-bench-"))
    from playwright.sync_api import sync_playwright
    from timing import p50

    import app
    from demos import diffusion as tab

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.serve(port=port, block=False)
    app.warm_up()
    image, _ = tab.new_scene(seed=3)
    params = ("linear", 1e-4, 0.02, 1000)
    handler = {
        "t change (arrow key on the slider)": p50(lambda: tab.forward(image, *params, 300, 0), 10)[0],
        "one chain step (▶ 1 step)": p50(lambda: tab.chain(image, *params, 5, 1, 0), 10)[0],
        "VAE panel (🧬 Encode, noise, decode)": p50(lambda: tab.latent(image, "vae", "bundled", *params, 300, 0),
                                                    10)[0],
    }
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(f"http://127.0.0.1:{port}", wait_until="load", timeout=90_000)
        page.get_by_role("tab", name="Latent diffusion").click()
        page.locator("#diffusion-xt img").wait_for(timeout=90_000)
        page.wait_for_timeout(3000)  # let the page's on-load events of every tab finish
        slider = page.locator("#diffusion-t input[type=range]")
        slider.focus()
        seed = page.get_by_label("noise seed")

        def vae_click():
            seed.fill(str(int(time.time() * 1000) % 100000))  # a new seed, so a new picture
            page.get_by_role("button", name="🧬 Encode, noise, decode").click()

        browser_ms = {
            "t change (arrow key on the slider)": measure(page, "diffusion-xt",
                                                          lambda: slider.press("ArrowRight"), args.repeats),
            "one chain step (▶ 1 step)": measure(page, "diffusion-chain",
                                                 lambda: page.get_by_role("button", name="▶ 1 step").click(),
                                                 args.repeats),
        }
        page.get_by_role("button", name="🧬 Encode, noise, decode").click()
        page.locator("#diffusion-recon img").wait_for(timeout=60_000)
        browser_ms["VAE panel (🧬 Encode, noise, decode)"] = measure(page, "diffusion-pixnoise", vae_click,
                                                                     args.repeats)
        browser.close()
    demo.close()
    targets = {"t change (arrow key on the slider)": 100, "one chain step (▶ 1 step)": 100,
               "VAE panel (🧬 Encode, noise, decode)": 150}
    print(f"diffusion tab, bundled tier, {args.repeats} repeats, Chromium headless on this machine")
    print(f"{'action':<40} {'handler p50':>12} {'click->rendered p50':>20}  target")
    for name, times in browser_ms.items():
        med = statistics.median(times)
        print(f"{name:<40} {handler[name]:>9.1f} ms {med:>17.1f} ms  ≤ {targets[name]} ms: "
              f"{'PASS' if med <= targets[name] else 'FAIL'}")


if __name__ == "__main__":
    main()
