"""The app in a real browser: launch it on a free port, drive headless Chromium with Playwright, save screenshots.

Screenshots land in artifacts/ (git-ignored) for people to look at. Under CI (CI=true) a missing browser fails the
run instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def _require_browser() -> None:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append("Debian's chromium (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -r requirements-dev.txt)")
    if missing:
        msg = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (CI=true: browser tests may not be skipped)")
        pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    _require_browser()
    os.environ.setdefault("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
    import app

    port = _free_port()
    demo = app.serve(port=port, block=False)
    app.warm_up()  # every model loaded (and every library imported) before a browser starts beside the server
    yield f"http://127.0.0.1:{port}"
    demo.close()


@pytest.fixture(scope="module")
def page(url):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url, wait_until="load", timeout=90_000)
        page.get_by_role("tab", name="ViT").wait_for(timeout=90_000)
        yield page
        browser.close()
        assert not errors, f"JavaScript errors in the page: {errors}"


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _draw_every_plot(page) -> None:
    """A Plotly figure is drawn when it comes near the view (demos/plotly_once.js): scroll past every plot of the tab
    that is shown, as a reader would, until each is drawn, then back to the top."""
    page.evaluate("""async () => {
      const plots = [...document.querySelectorAll('[data-testid=plotly]')].filter(el => el.offsetParent !== null);
      for (const plot of plots) {
        plot.scrollIntoView({block: 'center'});
        for (let i = 0; i < 100 && !plot.classList.contains('js-plotly-plot'); i++)
          await new Promise(r => setTimeout(r, 50));
      }
      window.scrollTo(0, 0);
    }""")


def test_tabs_are_there_and_banner_names_tiers(page):
    for name in ("ViT", "CLIP", "BLIP", "Latent diffusion"):
        assert page.get_by_role("tab", name=name).count() == 1
    page.get_by_text("models ready").first.wait_for(timeout=60_000)
    page.get_by_text("Models in use").first.click()  # the folded details name each family's model
    page.get_by_text("vit-shapes").first.wait_for(timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=False)


def test_vit_attention_map(page):
    page.get_by_role("tab", name="ViT").click()
    page.get_by_role("button", name="🎲 Random Shapes scene").click()
    page.get_by_text("Ground truth").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="👁️ Show attention").click()
    page.get_by_text("where the CLS token looks").first.wait_for(timeout=60_000)
    page.get_by_role("button", name="✂️ Cut into patches").click()
    page.get_by_text("patches (").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    _draw_every_plot(page)
    page.screenshot(path=str(ARTIFACTS / "vit.png"), full_page=True)
    assert page.locator("img[alt], img").count() >= 3


def test_the_page_keeps_no_run_history(page):
    """Gradio 6 copies every event's inputs and outputs (Plotly figures included) into the browser's localStorage and
    rewrites the whole list at each event: tens of ms per click, growing through a lesson, and a record of a student's
    uploads left on a shared laptop. The lab turns it off."""
    page.get_by_role("tab", name="ViT").click()
    page.get_by_role("button", name="🎲 Random Shapes scene").click()
    page.get_by_text("Ground truth").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    assert page.evaluate("() => window.gradio_config.run_history") is False
    keys = page.evaluate("() => Object.keys(localStorage).concat(Object.keys(sessionStorage))")
    assert not [k for k in keys if k.startswith("gradio:run-history")], keys


def test_vit_sketchpad_classifies_a_drawing(page):
    """Draw a square with the mouse on the sketchpad: the bundled ViT classifies it live."""
    page.get_by_role("tab", name="ViT").click()
    page.get_by_text("Draw a shape").first.scroll_into_view_if_needed()
    # Choose the pad's brush (it draws only then); clicked from JavaScript, since Playwright's click waits on the
    # pad's animation. Returns the drawing canvas's box.
    pad = """() => {
        const brush = document.querySelector('button[aria-label=Brush]');
        let block = brush;
        while (block && !block.querySelector('canvas')) block = block.parentElement;
        block.scrollIntoView({block: 'center'});
        const r = block.querySelector('canvas').getBoundingClientRect();
        return {x: r.x, y: r.y, width: r.width, height: r.height};
    }"""
    page.evaluate("() => document.querySelector('button[aria-label=Brush]').click()")
    page.evaluate(pad)
    page.wait_for_timeout(2000)  # the pictures above load as they come into view and push the pad down: let them
    box = page.evaluate(pad)
    assert box and box["width"] > 100
    side = min(box["width"], box["height"]) * 0.35
    x0, y0 = box["x"] + box["width"] / 2 - side / 2, box["y"] + box["height"] / 2 - side / 2
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in ((x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side), (x0, y0)):
        page.mouse.move(x, y, steps=12)
    page.mouse.up()
    page.get_by_text("The model sees your drawing").first.wait_for(timeout=60_000)
    _draw_every_plot(page)
    page.screenshot(path=str(ARTIFACTS / "vit-sketch.png"), full_page=True)


def test_diffusion_chain_and_latents(page):
    page.get_by_role("tab", name="Latent diffusion").click()
    page.get_by_text("how much image is left").first.wait_for(timeout=60_000)
    for _ in range(3):
        page.get_by_role("button", name="▶ 1 step").click()
        page.wait_for_timeout(400)
    page.get_by_text("t = 3").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="🧬 Encode, noise, decode").click()
    page.get_by_text("Reconstruction PSNR").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    _draw_every_plot(page)
    assert page.locator(".js-plotly-plot").count() >= 2
    page.screenshot(path=str(ARTIFACTS / "diffusion.png"), full_page=True)


WATCH_STEPS = """
() => {
  window.__stepStates = [];
  const box = document.querySelector('#denoise-live');
  new MutationObserver(() => window.__stepStates.push(box.innerText)).observe(
      box, {childList: true, subtree: true, characterData: true});
}"""


def test_diffusion_reverse_process_streams_every_step(page):
    page.get_by_role("tab", name="Latent diffusion").click()
    page.get_by_role("tab", name="2 · Reverse process from a prompt").click()
    page.locator("text=ldm-shapes >> visible=true").first.wait_for(timeout=60_000)
    steps = page.get_by_label("num_inference_steps").locator("visible=true").first
    steps.fill("5")
    steps.press("Enter")
    page.get_by_label("prompt", exact=True).locator("visible=true").first.fill("a blue star")
    page.evaluate(WATCH_STEPS)
    page.get_by_role("button", name="🎨 Generate").click()
    page.locator("text=/Done: 5 steps/ >> visible=true").first.wait_for(timeout=120_000)
    page.locator("#denoise-final img").wait_for(timeout=30_000)
    seen = " ".join(page.evaluate("() => window.__stepStates"))
    streamed = [k for k in range(1, 6) if f"Step {k} / 5" in seen]
    assert len(streamed) >= 3, f"the steps were not streamed one by one: {seen[:500]}"
    page.locator("#denoise-words img").wait_for(timeout=30_000)  # the result and a map per word: a, blue, star
    page.wait_for_timeout(800)
    _draw_every_plot(page)
    page.screenshot(path=str(ARTIFACTS / "diffusion-reverse.png"), full_page=True)


WATCH_CAPTION = """
() => {
  window.__captionStates = [];
  const record = () => {
    const el = document.querySelector('#blip-caption-box .blip-caption');
    if (el) window.__captionStates.push([el.querySelectorAll('.blip-chip').length, !!el.querySelector('.blip-cursor')]);
  };
  new MutationObserver(record).observe(document.querySelector('#blip-caption-box'),
                                       {childList: true, subtree: true, characterData: true});
}"""


def test_blip_streams_a_caption_and_shows_where_a_word_looked(page):
    page.get_by_role("tab", name="BLIP").click()
    page.get_by_label("scene seed (−1 = random)").locator("visible=true").fill("7")  # two objects to swap
    run = "() => document.querySelector('#blip-caption-box .blip-caption')?.dataset.run"
    before = page.evaluate(run)
    page.get_by_role("button", name="🎲 Random Shapes scene").click()
    page.locator("text=Ground truth >> visible=true").first.wait_for(timeout=30_000)
    page.wait_for_function(f"b => ({run})() !== b && !document.querySelector('#blip-caption-box .blip-cursor')",
                           arg=before, timeout=60_000)  # the new scene's own caption, finished
    page.evaluate(WATCH_CAPTION)
    page.get_by_role("button", name="✍️ Caption").click()
    page.wait_for_function("() => { const s = window.__captionStates; return s.some(([, cursor]) => cursor) "
                           "&& !s[s.length - 1][1]; }", timeout=60_000)  # streamed, then finished
    page.locator("#blip-attention img").wait_for(timeout=60_000)
    states = page.evaluate("() => window.__captionStates")
    streaming = [n for n, cursor in states if cursor]
    assert streaming and min(streaming) >= 1, f"no streamed partial caption was rendered: {states}"
    assert states[-1][1] is False and states[-1][0] >= max(streaming), "the final caption holds every token"
    page.get_by_role("button", name="🔀 Swap the colours").click()
    page.locator("text=BLIP ITM p(match) >> visible=true").first.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    _draw_every_plot(page)
    page.screenshot(path=str(ARTIFACTS / "blip.png"), full_page=True)



def test_blip2_reads_with_queries_and_ablates_them(page):
    page.get_by_role("tab", name="BLIP").click()
    read = page.get_by_role("button", name="🔎 Read the image with the Q-Former and caption it")
    read.scroll_into_view_if_needed()
    read.click()
    page.locator("#blip2-maps img").wait_for(timeout=60_000)
    page.locator("text=/truth:/ >> visible=true").first.wait_for(timeout=60_000)
    assert page.locator("text=8 queries × 96 >> visible=true").count() >= 1  # the Q-Former's real output shape
    for q in ("q0", "q1", "q2", "q3"):
        page.get_by_label(q, exact=True).check()
    page.get_by_role("button", name="✂️ Caption again without them").click()
    page.locator("text=/with every query to/ >> visible=true").first.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    section = page.locator("#blip2-maps")
    section.scroll_into_view_if_needed()
    _draw_every_plot(page)
    page.screenshot(path=str(ARTIFACTS / "blip2.png"), full_page=True)

def test_clip_opens_computed_and_tau_follows_the_keyboard(page):
    """The CLIP tab opens with its batch's matrix; an arrow key on the τ slider changes the loss shown."""
    page.get_by_role("tab", name="CLIP").click()
    page.get_by_text("logit scale 1/τ").first.wait_for(timeout=60_000)  # opens computed
    before = page.locator("#clip-loss").inner_text()
    page.locator("#clip-log-tau input[type=range]").focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("b => document.querySelector('#clip-loss').innerText !== b", arg=before, timeout=10_000)
    page.wait_for_timeout(1000)
    _draw_every_plot(page)
    assert page.locator(".js-plotly-plot").count() >= 3
    page.screenshot(path=str(ARTIFACTS / "clip.png"), full_page=True)


def test_a_new_batch_brings_its_images_captions_matrix_and_gap(page):
    """🎲 draws a new batch: the captions and S come first, the gallery a message later, and the modality gap below
    follows them; the gap drawn is the new batch's (measuring it again finds the same number), not a mix of the new
    captions with the last batch's images."""
    page.get_by_role("tab", name="CLIP").click()
    page.get_by_text("logit scale 1/τ").first.wait_for(timeout=60_000)
    page.locator("#clip-s").scroll_into_view_if_needed()
    page.locator("#clip-s .js-plotly-plot").wait_for(timeout=30_000)
    read = """() => [[...document.querySelectorAll('#clip-gallery img')].map(i => i.src).join(' '),
                     document.querySelector('#clip-texts textarea').value,
                     JSON.stringify(document.querySelector('#clip-s .js-plotly-plot').data[0].z)]"""
    gap = """() => { const el = document.querySelector('#clip-gap .gtitle'); return el ? el.textContent : ''; }"""
    click = "(n) => [...document.querySelectorAll('button')].find(b => b.innerText.trim() === n).click()"
    before = page.evaluate(read)
    page.evaluate("() => { window.gapBefore = document.querySelector('#clip-gap .js-plotly-plot'); }")
    page.evaluate(click, "🎲 Draw a random Shapes batch")
    page.wait_for_function(f"b => ({read})()[0] !== b[0] && ({read})()[1] !== b[1] && ({read})()[2] !== b[2]",
                           arg=before, timeout=30_000)
    gallery, texts, _ = page.evaluate(read)
    assert len(gallery.split()) == len(texts.split("\n")) == 8
    page.locator("#clip-gap").scroll_into_view_if_needed()  # drawn when in view, in a div of its own
    page.wait_for_function("""() => { const plot = document.querySelector('#clip-gap .js-plotly-plot');
                                      return plot && plot !== window.gapBefore && plot.querySelector('.gtitle'); }""",
                           timeout=30_000)
    page.wait_for_timeout(1000)  # nothing still in flight
    followed = page.evaluate(gap)
    page.evaluate(click, "↔️ Measure the gap for the images and texts above")
    page.wait_for_timeout(3000)  # a different figure would be drawn by then
    assert page.evaluate(gap) == followed, "the gap that followed the new batch was not the new batch's"


def test_finished_loading_statuses_are_dropped_so_each_status_message_stays_cheap(page):
    """Gradio re-sends its whole loading-status registry on every status message; demos/status_registry.js keeps it
    to the events in flight. Without the script the registry holds every input and output ever used (hundreds)."""
    page.get_by_role("tab", name="ViT").click()
    for _ in range(3):
        page.get_by_role("button", name="🎲 Random Shapes scene").click()
        page.wait_for_timeout(700)
    state = page.evaluate("() => window.labStatusRegistry")
    assert state is not None, "the status-registry script did not find Gradio's LoadingStatus class"
    for _ in range(180):  # the scenes' events finish (one per scene, streamed in two parts); then nothing is in flight
        page.wait_for_timeout(500)
        state = page.evaluate("() => window.labStatusRegistry")
        if state["size"] <= 3:
            break
    assert state["dropped"] >= 10 and state["size"] <= 3, state


def test_plotly_figures_are_drawn_once_when_in_view_and_still_follow_a_resize(page):
    """Gradio draws every new Plotly figure twice (in the div it is about to remove, then in a fresh one) and then
    redraws it to fit its container; demos/plotly_once.js skips the drawing in the outgoing div and the refit when
    the figure already fits, and holds a figure out of view until it scrolls near, then draws the newest one. A
    narrower window still re-lays the figures out."""
    page.get_by_role("tab", name="CLIP").click()
    page.get_by_text("logit scale 1/τ").first.wait_for(timeout=60_000)
    page.locator("#clip-s").scroll_into_view_if_needed()
    page.wait_for_timeout(1500)
    state = lambda: page.evaluate("() => window.labPlotlyOnce")  # noqa: E731
    assert state() is not None, "the page script did not find Plotly.react and Plotly.Plots.resize"
    assert state()["skipped"] >= 3, state()  # the matrix's three heatmaps at least
    titles = lambda: page.evaluate(  # noqa: E731  # the live matrix's row, beside S (the lecture's 3 × 3 has its own)
        "() => [...document.querySelector('#clip-s').parentElement.querySelectorAll('.js-plotly-plot .gtitle')]"
        ".map(e => e.textContent).filter(t => t.includes('softmax'))")
    step = """() => {  // τ one step: the row and the column softmax, two figures, are redrawn
      const el = document.querySelector('#clip-log-tau input[type=range]');
      el.value = String(Number(el.value) + Number(el.step));
      el.dispatchEvent(new Event('input', {bubbles: true}));
      return Number(el.value);
    }"""
    tau = lambda log_tau: f"τ = {10 ** log_tau:.3g}"  # noqa: E731  # as the titles print it

    before = state()
    log_tau = page.evaluate(step)
    page.wait_for_timeout(1500)
    after = state()
    assert after["drawn"] - before["drawn"] == 2 and after["dropped"] - before["dropped"] == 2, (before, after)
    assert len(titles()) == 2 and all(tau(log_tau) in t for t in titles()), titles()

    page.evaluate("() => window.scrollTo(0, 0)")  # the softmaxes out of view: two more steps wait
    page.wait_for_timeout(300)
    before = state()
    page.evaluate(step)
    page.wait_for_timeout(1000)
    log_tau = page.evaluate(step)
    page.wait_for_timeout(1500)
    after = state()
    assert after["drawn"] == before["drawn"] and after["deferred"] - before["deferred"] == 4, (before, after)
    page.locator("#clip-s").scroll_into_view_if_needed()  # back in view: the newest figures, drawn once each
    page.wait_for_timeout(1500)
    assert state()["drawn"] - after["drawn"] == 2, state()
    assert len(titles()) == 2 and all(tau(log_tau) in t for t in titles()), (titles(), log_tau)
    skipped, fitted, narrowed, restored = page.evaluate("""async () => {
      const gd = [...document.querySelectorAll('.js-plotly-plot')].find(e => e.offsetParent);
      const before = window.labPlotlyOnce.skipped, width = gd._fullLayout.width;
      await Plotly.Plots.resize(gd);  // it fits: nothing to redraw
      const skipped = window.labPlotlyOnce.skipped - before;
      gd.style.width = `${Math.round(width / 2)}px`;  // its container narrows: it is laid out again
      await Plotly.Plots.resize(gd);
      const narrowed = gd._fullLayout.width;
      gd.style.width = '';
      await Plotly.Plots.resize(gd);
      return [skipped, width, narrowed, gd._fullLayout.width];
    }""")
    assert skipped == 1
    assert abs(narrowed - fitted / 2) <= 2 and abs(restored - fitted) <= 1, (fitted, narrowed, restored)


def test_presentation_mode_enlarges_text_and_hides_the_tier_controls(page):
    page.get_by_role("tab", name="ViT").click()  # whichever tab the test before left open: the first tier radio
    button = page.get_by_role("button", name="📽️ Presentation mode")
    size = lambda: page.evaluate("() => parseFloat(getComputedStyle(document.querySelector('.prose p')).fontSize)")  # noqa: E731
    before = size()
    assert page.locator(".tier").first.is_visible()
    button.click()
    try:
        page.wait_for_timeout(300)
        assert page.evaluate("() => document.body.classList.contains('lab-present')")
        assert size() > before and not page.locator(".tier").first.is_visible()
        assert page.locator(".banner-details").is_hidden() and "models" in page.locator(".banner").first.inner_text()
        page.screenshot(path=str(ARTIFACTS / "presentation.png"), full_page=False)
    finally:
        button.click()
    assert page.locator(".tier").first.is_visible()


def test_dark_mode_keeps_the_banner_and_plot_text_readable(url, page):
    """With ?__theme=dark the banner takes the theme's background and the plots' axis text turns light."""
    dark = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        dark.goto(f"{url}/?__theme=dark", wait_until="load", timeout=90_000)
        dark.get_by_text("models ready").first.wait_for(timeout=90_000)
        dark.wait_for_timeout(3000)  # the tab's opening events
        _draw_every_plot(dark)
        dark.locator(".js-plotly-plot .xtick text").first.wait_for(timeout=60_000)
        banner_bg = dark.locator(".banner").first.evaluate(
            "(el) => getComputedStyle(el).backgroundColor.match(/[0-9.]+/g).slice(0, 3).map(Number)")
        assert sum(banner_bg) / 3 < 80, banner_bg
        tick = dark.locator(".js-plotly-plot .xtick text").first.evaluate(
            "(el) => getComputedStyle(el).fill.match(/[0-9.]+/g).slice(0, 3).map(Number)")
        assert sum(tick) / 3 > 170, tick
        dark.screenshot(path=str(ARTIFACTS / "dark.png"), full_page=False)
    finally:
        dark.close()



@pytest.mark.parametrize("tab", ["ViT", "CLIP"])
@pytest.mark.parametrize("width, height", [(1366, 768), (390, 844)])
def test_laptop_and_phone_widths_show_whole_pictures(url, page, tab, width, height):
    """At a laptop's and a phone's width the tab opens computed, nothing scrolls sideways, and no picture is cut off
    at the right edge. Screenshots of the first screens land in artifacts/ (docs/ keeps a copy)."""
    view = page.context.browser.new_page(viewport={"width": width, "height": height})
    try:
        view.goto(url, wait_until="load", timeout=90_000)
        view.get_by_role("tab", name=tab).click()
        view.get_by_text("models ready").first.wait_for(timeout=90_000)
        view.wait_for_timeout(4000)  # the tab's opening events
        _draw_every_plot(view)
        assert view.locator(".js-plotly-plot .main-svg >> visible=true").count() >= 3, "the tab opens computed"
        view.evaluate("() => document.querySelector('[role=tablist]').scrollIntoView()")  # the tab, not the banner
        view.wait_for_timeout(500)
        overflow = view.evaluate("() => document.scrollingElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"the page scrolls {overflow} px sideways"
        cut = view.evaluate("""() => [...document.querySelectorAll('img, .js-plotly-plot')]
            .filter(el => el.offsetParent !== null && el.getBoundingClientRect().width > 0)
            .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1)
            .map(el => el.closest('[id]')?.id || el.tagName)""")
        assert not cut, f"cut at the right edge: {cut}"
        view.screenshot(path=str(ARTIFACTS / f"{tab.lower()}-{width}.png"), full_page=False)
    finally:
        view.close()

def test_only_assets_are_served(url):
    assert _status(f"{url}/gradio_api/file={ROOT / 'assets' / 'images' / 'chelsea.jpg'}") == 200
    for private in (ROOT / "app.py", ROOT / "mmcore" / "models.py", Path("/etc/passwd")):
        assert _status(f"{url}/gradio_api/file={private}") in (403, 404), private


def test_identical_concurrent_requests_all_arrive(url, tmp_path):
    """A room clicking the same sample at once: 20 identical calls, every image must come back whole."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file
    from PIL import Image

    client = Client(url, download_files=str(tmp_path), verbose=False)
    sample = handle_file(str(ROOT / "assets" / "images" / "chelsea.jpg"))

    def call(_):
        grid, readout, sequence = client.predict(sample, 16, 224, "bundled", api_name="/vit_patches")
        for path in (grid, sequence):
            with Image.open(path) as im:
                im.load()  # raises on a truncated file
        return readout

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(call, range(20)))
    assert len(results) == 20 and all("196 patches" in r for r in results)
