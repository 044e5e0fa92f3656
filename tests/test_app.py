"""The app composes without launching, and its HTTP API reads like a table of contents."""

import os
import subprocess
import sys
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def demo():
    import app

    return app.build()


def test_app_builds_with_every_tab(demo):
    assert isinstance(demo, gr.Blocks)
    tabs = [b for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert [t.label for t in tabs] == ["ViT", "CLIP", "BLIP", "Latent diffusion", "1 · Forward process",
                                       "2 · Reverse process from a prompt", "3 · 2-D playground"]


def test_every_public_event_is_named_after_its_tab(demo):
    names = [fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"]
    assert names, "no public API"
    assert all(n.split("_")[0] in ("vit", "clip", "blip", "blip2", "diffusion") for n in names), names
    for expected in ("vit_patches", "vit_trace", "vit_attention", "vit_positions", "vit_layernorm", "vit_sinusoid",
                     "vit_draw", "clip_matrix", "clip_temperature", "clip_editable", "clip_zero_shot",
                     "clip_word_order", "diffusion_forward", "diffusion_curves", "diffusion_chain", "diffusion_strip",
                     "diffusion_latent", "diffusion_scene", "blip_scene", "blip_caption", "blip_attention",
                     "blip_lens", "blip_vqa", "blip_match", "blip_swap", "blip_pipeline", "diffusion_generate",
                     "diffusion_details", "diffusion_guidance", "diffusion_compare", "diffusion_clip_score",
                     "diffusion_tokens", "diffusion_playground_train", "diffusion_playground_paths", "blip2_read",
                     "blip2_maps", "blip2_ablate", "vit_relevance", "vit_rollout_fusion", "vit_attention_layer",
                     "vit_rollouts", "vit_logit_lens", "clip_gap",
                     "clip_prompt_ensemble"):
        assert expected in names


def test_image_inputs_are_decoded_by_our_loader(demo):
    images = [b for b in demo.blocks.values() if isinstance(b, gr.Image) and b.interactive is not False]
    assert images and all(b.type == "filepath" for b in images if b.sources)


# ------------------------------------------------------------------------------------------------- a classroom at once

def test_model_events_share_one_device_group(demo):
    """Whichever tabs a room clicks, no more model calls run at once than the device group allows."""
    from demos import common
    from mmcore import settings

    queued = [fn for fn in demo.fns.values() if fn.queue]
    on_device = {fn.api_name for fn in queued if fn.concurrency_id == common.DEVICE}
    assert {"vit_attention", "clip_matrix", "blip_caption", "blip_vqa", "blip2_read", "diffusion_generate",
            "diffusion_compare", "diffusion_latent", "vit_scene", "clip_batch"} <= on_device  # a scene and its views
    assert all(fn.concurrency_limit == settings.get().device_concurrency for fn in queued
               if fn.concurrency_id == common.DEVICE)
    assert {fn.api_name for fn in queued if getattr(fn.fn, "on_device", False)} <= on_device
    assert not {"blip_scene", "diffusion_curves"} & on_device, "no model, no waiting"
    waits = [fn.name for fn in demo.fns.values() if not fn.queue and getattr(fn.fn, "device_threads", False)]
    assert not waits, f"an unqueued event answers at once, so it must not wait for the device's threads: {waits}"


def test_an_upload_gradio_cannot_open_gets_our_sentence(demo, tmp_path):
    """Gradio opens an uploaded image before any handler runs: a non-image or an empty file must still come back as
    the loader's sentence, with no server path in it."""
    image = next(b for b in demo.blocks.values() if isinstance(b, gr.Image) and b.type == "filepath" and b.sources)
    cases = {"notes.png": (b"not an image at all", "not an image Pillow can read"),
             "empty.png": (b"", "The upload is empty (0 bytes)")}
    for name, (data, sentence) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(gr.Error) as err:
            image.preprocess(image.data_model(path=str(tmp_path / name), orig_name=name))
        assert sentence in err.value.message and str(tmp_path) not in err.value.message


def test_handler_errors_are_sentences(monkeypatch):
    """Still loading, a damaged model and CUDA running out of memory each reach the user as a titled sentence."""
    import torch

    from demos import common
    from mmcore import models

    for exc, title, words in ((models.StillLoading("vit-shapes is still loading (3 s so far)."), "Still loading",
                               "3 s so far"),
                              (models.ModelLoadError("clip-shapes could not be loaded: x is truncated."),
                               "A model could not be loaded", "x is truncated"),
                              (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
                               "Out of GPU memory", "ran out of memory"),
                              (ImportError("cannot import name 'DDPMScheduler' from 'diffusers'"), "Still starting",
                               "please try again in a few seconds")):
        def handler(image, tier=None, exc=exc):
            raise exc

        with pytest.raises(gr.Error) as err:
            common.show_errors(handler)(None, "bundled")
        assert err.value.title == title and words in err.value.message


def test_a_request_that_meets_a_half_imported_library_runs_once_more():
    """diffusers and transformers import lazily and not thread-safely: a first request during the warm-up's loads can
    meet a half-imported module. It runs again once the loads settle (a stream only before its first yield)."""
    from demos import common

    calls = []

    def caption(image, tier=None):
        calls.append(image)
        if len(calls) == 1:
            raise ImportError("cannot import name 'DDPMScheduler' from 'diffusers'")
        return f"caption of {image}"

    def steps(prompt, tier=None):
        calls.append(prompt)
        if len(calls) == 1:
            raise ImportError("partially initialized module")
        yield from prompt.split()

    def late(prompt, tier=None):
        yield "first"
        raise ImportError("partially initialized module")

    assert common.show_errors(caption)("cat", "bundled") == "caption of cat" and calls == ["cat", "cat"]
    calls.clear()
    assert list(common.show_errors(steps)("a red circle", "bundled")) == ["a", "red", "circle"] and len(calls) == 2
    stream = common.show_errors(late)("x", "bundled")
    assert next(stream) == "first"
    with pytest.raises(gr.Error, match="try again"):
        next(stream)  # a stream that has shown something is not started again


def test_hub_unreachable_falls_back_to_bundled_within_two_seconds_and_the_banner_says_why(monkeypatch):
    """tier auto, no cached weights, a hub that never answers (a black-holed connect): every family of the banner is
    decided within 2 s, and the banner says in words why the bundled model is used."""
    import dataclasses
    import threading
    import time

    import app
    from mmcore import models, settings

    never = threading.Event()
    cfg = dataclasses.replace(settings.Settings(), hub_offline=False, hub_endpoint="https://hub.invalid",
                              device="cpu")
    monkeypatch.setattr(settings, "get", lambda: cfg)
    monkeypatch.setattr(models.HuggingFaceHub, "is_cached", lambda self, spec: False)

    def black_hole(*args, **kwargs):
        never.wait(30)
        raise OSError("no answer")

    monkeypatch.setattr(models.socket, "create_connection", black_hole)
    monkeypatch.setattr(models, "_HUBS", {})
    try:
        t0 = time.perf_counter()
        _, text, _ = app.banner()
        seconds = time.perf_counter() - t0
    finally:
        never.set()
    assert seconds <= 2.0, f"the banner took {seconds:.1f} s"
    assert "google/vit-base-patch16-224 is not cached and the hub is unreachable (no answer within 1.5 s); " \
           "using vit-shapes" in text
    assert text.count("hub is unreachable") >= 5 and "🟦 bundled" in text


@pytest.mark.slow
def test_a_full_queue_answers_at_once_and_the_room_is_served_after(monkeypatch, tmp_path):
    """One model call at a time and two places in the queue: the fourth click is refused within a second (Gradio
    answers 503, which the page shows as "This application is currently busy. Please try again."), and every
    accepted click, then a fresh one, is served."""
    import dataclasses
    import socket
    import threading
    import time

    from gradio_client import Client, handle_file
    from gradio_client.utils import QueueError

    import app
    import mmcore.vit
    from mmcore import models, settings

    cfg = dataclasses.replace(settings.get(), tier="bundled", queue_size=2, device_concurrency=1, threads=6)
    monkeypatch.setattr(settings, "get", lambda: cfg)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.serve(port=port, block=False)
    try:
        assert demo.max_threads == 6 and demo.limiter.total_tokens == 6  # the worker threads, as set
        deadline = time.monotonic() + 120
        while models.CACHE.status("vit", "bundled") != "ready" and time.monotonic() < deadline:
            time.sleep(0.2)
        gate, forward = threading.Event(), mmcore.vit.forward
        monkeypatch.setattr(mmcore.vit, "forward", lambda *a, **k: gate.wait(60) and forward(*a, **k))
        client = Client(f"http://127.0.0.1:{port}", verbose=False, download_files=str(tmp_path))
        image = handle_file(str(models.ASSETS / "images" / "chelsea.jpg"))
        jobs = []
        for _ in range(3):  # one runs (held at the gate), two wait
            jobs.append(client.submit(image=image, tier="bundled", api_name="/vit_attention"))
            time.sleep(1.0)
        t0 = time.perf_counter()
        with pytest.raises(QueueError, match="Queue is full"):
            client.submit(image=image, tier="bundled", api_name="/vit_attention").result(timeout=30)
        assert time.perf_counter() - t0 < 1.0
        gate.set()
        assert [len(job.result(timeout=60)) for job in jobs] == [5, 5, 5]  # every accepted click is served
        assert len(client.predict(image=image, tier="bundled", api_name="/vit_attention")) == 5
    finally:
        demo.close()


def test_the_banner_opens_with_a_one_line_summary_and_stops_its_timer_when_all_are_settled(monkeypatch):
    """Presentation mode shows only the banner's summary line, so it must summarise every family."""
    import app
    from mmcore import models

    states = dict.fromkeys(app.FAMILIES, "ready")
    monkeypatch.setattr(models.CACHE, "status", lambda family, tier: states[family])
    summary, details, timer = app.banner()
    assert summary == f"✅ **All {len(app.FAMILIES)} models ready** (bundled tier)" and not timer.active
    assert len(details.split("\n\n")) == len(app.FAMILIES)
    states["clip"] = "loading"
    summary, _, timer = app.banner()
    assert summary == f"⏳ **Loading models: {len(app.FAMILIES) - 1} of {len(app.FAMILIES)} ready**"
    assert timer.active
    states["clip"] = "failed: clip-shapes/model.safetensors is damaged"
    summary, details, timer = app.banner()
    assert summary.startswith("⚠️ **1 of") and not timer.active and "is damaged" in details


def test_the_theme_serves_only_complete_font_files():
    """Gradio's semi-bold Source Sans Pro is a subset missing most letters; every face the theme declares must be a
    file with the whole Latin alphabet (judged by size: the subset is 5 kB, the full faces about 100 kB)."""
    import re
    from pathlib import Path

    import gradio as gr

    import app

    css = "".join(f.stylesheet()["css"] or "" for f in app.THEME._font if isinstance(f, gr.themes.LocalFont))
    files = re.findall(r"url\('static/fonts/([^']+)'\)", css)
    fonts = Path(gr.__file__).parent / "templates" / "frontend" / "static" / "fonts"
    assert len(files) == 2 and all((fonts / f).stat().st_size > 50_000 for f in files), files


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_a_skipped_output_goes_to_the_page_as_it_is_without_rebuilding_its_component(monkeypatch):
    """Gradio rebuilds a component and its configuration for every gr.skip() (ms each); app.cheap_skips sends the
    skip as it is, the very value Gradio sends after that work, and still hands a State its own way."""
    import asyncio

    from gradio.state_holder import SessionState

    import app

    app.cheap_skips()
    with gr.Blocks() as demo:
        outputs = [gr.Plot(), gr.Image(), gr.Markdown(), gr.State("kept"), gr.Textbox()]
        gr.Button().click(lambda: None, None, outputs)
    fn = next(iter(demo.fns.values()))
    rebuilt = []
    monkeypatch.setattr(SessionState, "_update_config", lambda self, key: rebuilt.append(key))

    def run(postprocess, predictions):
        return asyncio.run(postprocess(demo, fn, predictions, SessionState(demo)))

    skip = gr.skip()
    predictions = [skip, skip, "hello", skip, skip]
    assert run(gr.Blocks.postprocess_data, list(predictions)) == [skip, skip, "hello", None, skip]
    assert rebuilt == [], "no component rebuilt for a skip"
    assert run(gr.Blocks.postprocess_data.original, list(predictions)) == [skip, skip, "hello", None, skip]
    assert len(rebuilt) == 3, "what Gradio does instead, once per skipped component"
    assert run(gr.Blocks.postprocess_data, skip) == [skip, skip, skip, None, skip]  # one skip for every output
    assert run(gr.Blocks.postprocess_data, [skip, skip, "hello", "new", skip])[3] is None  # a State: server-side


@pytest.mark.slow  # a process of its own: the app's imports, ~6 s
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="glibc's malloc on Linux")
def test_a_requests_pictures_reuse_the_heap_instead_of_fresh_pages():
    """Five 2.4 MB arrays alive together and then freed (a request's pictures) come back by default as fresh pages
    that the kernel zeroes on first touch, thousands of page faults per request; after keep_freed_blocks the heap
    keeps them for the next request. Run in a process of its own: the setting is process-wide."""
    script = """
import resource
import numpy as np
import app

def faults_per_request():
    def request():
        held = [np.ones((448, 448, 3), np.float32) for _ in range(5)]
        return sum(float(a[0, 0, 0]) for a in held)
    request()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        request()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10

default = faults_per_request()
assert app.keep_freed_blocks()
print(default, faults_per_request())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONPATH": "."})
    assert out.returncode == 0, out.stderr[-2000:]
    default, kept = map(int, out.stdout.split()[-2:])
    assert default > 1000 and kept < 50, (default, kept)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_freed_memory_goes_back_to_the_os():
    import threading

    import numpy as np

    import app

    assert app.return_freed_memory() and app.return_freed_memory()
    assert [t.name for t in threading.enumerate()].count("malloc-trim") == 1  # one per process, however often served
    blocks = [np.ones(100_000 // 8) for _ in range(2000)]  # 200 MB in 100 kB blocks, from the heap (not mmap)
    del blocks[::2]  # 100 MB of holes that the heap cannot give back by shrinking
    held = _rss_mb()  # freeing alone keeps them
    assert app.trim_heap()
    assert _rss_mb() < held - 50  # the holes went back to the OS
    del blocks


def test_a_picture_is_sent_as_a_jpeg_a_person_cannot_tell_from_the_png(tmp_path, monkeypatch):
    import app
    from demos import common

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    app.atomic_image_cache()  # how the app writes its pictures (build() does this)
    rng = np.random.default_rng(0)
    cells = Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)).resize((448, 448), Image.NEAREST)
    picture = common.picture(label="map")
    assert type(picture) is gr.Image and not picture.interactive  # the page's own Image component draws it
    sent = picture.postprocess(cells)
    path = Path(sent.path)
    assert path.is_relative_to(tmp_path) and path.is_file() and path.suffix == ".jpeg" == Path(sent.orig_name).suffix
    with Image.open(path) as back:
        assert back.format == "JPEG"
        error = np.abs(np.asarray(back, dtype=int) - np.asarray(cells, dtype=int))  # (448, 448, 3)
    # every colour edge kept: Gradio's own JPEG (quality 75, colour at half resolution) is 135 levels off at edges
    assert error.max() <= 2 and error.mean() < 0.5
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 8, 16))
    with Image.open(picture.postprocess(rgba).path) as back:  # no alpha in a JPEG: flattened onto white
        assert back.mode == "RGB" and back.getpixel((12, 8)) == (255, 255, 255)
        assert np.abs(np.subtract(back.getpixel((3, 8)), (0, 0, 255))).max() <= 2
    assert picture.postprocess(None) is None


def test_the_queue_builds_no_summary_of_past_events(monkeypatch):
    from gradio import queueing

    import app

    monkeypatch.delenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", raising=False)
    monkeypatch.setattr(queueing.Queue, "_get_df", lambda records: pytest.fail("a summary of past events was built"))
    app.no_event_summaries()
    with gr.Blocks() as demo:
        gr.Button().click(lambda: None)
    demo.queue()
    queue = demo._queue
    records = [{"time": 0.0, "status": "success", "function": "f", "process_time": 0.01}] * 10_000
    queue.events_recorded = 10_000  # a lesson's worth of events
    assert queue.compute_analytics_summary(records) == {"functions": {}}


def test_the_static_file_check_resolves_a_file_once_and_answers_as_gradio_does(tmp_path, monkeypatch):
    from gradio import utils
    from gradio.data_classes import FileData, _StaticFiles

    import app

    app.quick_static_check()
    original = utils.is_static_file.original
    (tmp_path / "static").mkdir()
    icon, inside, other = tmp_path / "icon.svg", tmp_path / "static" / "a.png", tmp_path / "b.png"
    for f in (icon, inside, other):
        f.write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(inside)
    monkeypatch.setattr(_StaticFiles, "all_paths", [])
    utils.set_static_paths([icon, tmp_path / "static"])
    cases = [str(icon), icon, str(inside), str(other), other, str(tmp_path / "link.png"), str(tmp_path / "gone.png"),
             f"{tmp_path}/static/../b.png", FileData(path=str(inside)), FileData(path=str(other)), None, 3]
    assert [utils.is_static_file(c) for c in cases] == [original(c) for c in cases] == [
        True, True, True, False, False, True, False, False, True, False, False, False]
    resolved = []
    resolve = type(tmp_path).resolve
    monkeypatch.setattr(type(tmp_path), "resolve", lambda self, *a: resolved.append(self) or resolve(self, *a))
    assert utils.is_static_file(str(other)) is False and len(resolved) == 1  # Gradio's: 1 + 2 per static path
