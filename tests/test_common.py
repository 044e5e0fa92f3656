"""demos.common: the figure template every tab draws with, and the tier controls' honesty."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from PIL import Image

import mmcore.vit  # noqa: F401  (registers the vit family)
from demos import common
from mmcore import models, settings, shapes


def test_every_figure_uses_the_small_transparent_template():
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    layout = json.loads(fig.to_json())["layout"]["template"]["layout"]
    assert pio.templates.default == "lab"
    assert layout["paper_bgcolor"] == layout["plot_bgcolor"] == "rgba(0,0,0,0)"  # the page's theme shows through
    assert layout["xaxis"]["gridcolor"] == common.GRID
    assert layout["colorway"] == list(pio.templates["plotly"].layout.colorway)  # Plotly's own colours
    assert len(go.Figure().to_json()) < len(go.Figure(layout=dict(template="plotly")).to_json()) / 3


def test_dark_mode_css_recolours_axis_text_but_not_heatmap_cells():
    assert ".dark .js-plotly-plot" in common.FIGURE_CSS and "var(--body-text-color)" in common.FIGURE_CSS
    assert ".textpoint" not in common.FIGURE_CSS  # cell labels keep Plotly's contrast colours


def test_a_fallback_from_pretrained_is_said_in_a_sentence():
    fell_back = models.Resolution("vit", "pretrained", "bundled", "google/vit-base-patch16-224 is not cached and "
                                  "HF_HUB_OFFLINE=1; using vit-shapes.")
    asked = models.Resolution("vit", "bundled", "bundled", "vit-shapes (bundled, trained on Shapes) as requested.")
    assert common.tier_label("vit", fell_back).startswith("⚠️ **The pretrained model can't be used here")
    assert "HF_HUB_OFFLINE=1" in common.tier_label("vit", fell_back)
    assert "⚠️" not in common.tier_label("vit", asked)


def test_the_tier_radio_says_cached_when_the_pretrained_model_is(monkeypatch):
    def labels() -> dict[str, str]:
        return {value: label for label, value in common.tier_radio("vit").choices}

    monkeypatch.setattr(models.HuggingFaceHub, "is_cached", lambda self, spec: True)
    assert labels()["pretrained"].endswith("(cached)")
    monkeypatch.setattr(models.HuggingFaceHub, "is_cached", lambda self, spec: False)
    assert "MB download" in labels()["pretrained"] and "offline" in labels()["bundled"]


def test_no_tab_subclasses_a_gradio_component():
    """Gradio writes a .pyi stub beside the source of every Component subclass when it is imported (into the source
    tree, read-only on some hosts): the tabs wrap components instead."""
    import importlib
    import inspect
    from pathlib import Path

    import gradio as gr

    folder = Path(common.__file__).parent
    for path in sorted(folder.glob("*.py")):
        module = importlib.import_module(f"demos.{path.stem}")
        subclasses = [name for name, obj in vars(module).items() if inspect.isclass(obj)
                      and issubclass(obj, gr.components.Component) and obj.__module__ == module.__name__]
        assert not subclasses, (path.name, subclasses)
    assert not list(folder.glob("*.pyi"))


def test_pace_sends_the_first_update_at_once_then_one_per_interval(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(common.time, "monotonic", lambda: now[0])
    pace = common.Pace(0.05)
    due = []
    for dt in (0.0, 0.01, 0.02, 0.03, 0.01, 0.05, 0.0):  # 0, .01, .03, .06, .07, .12, .12 s
        now[0] += dt
        due.append(pace.due())
    assert due == [True, False, False, True, False, True, False]
    assert all(common.Pace(0.0).due() for _ in range(3))


# ------------------------------------------------------------------------------------------------ a room at once

def test_a_fingerprint_sees_content_not_names(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # where Gradio puts what it receives
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (8, 8), "red").save(a)
    Image.new("RGB", (8, 8), "red").save(b)
    assert common.fingerprint(str(a)) != common.fingerprint(str(b))  # the name is part of it, the content too
    assert common.fingerprint(str(a))[2] == common.fingerprint(str(b))[2]
    red, also_red = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "red")
    assert common.fingerprint(red) == common.fingerprint(also_red)
    also_red.putpixel((7, 7), (254, 0, 0))
    assert common.fingerprint(red) != common.fingerprint(also_red)  # one pixel
    assert common.fingerprint(Image.new("L", (8, 8))) != common.fingerprint(Image.new("RGB", (8, 8)))
    assert common.fingerprint(np.zeros((2, 3))) != common.fingerprint(np.zeros((3, 2)))
    assert common.fingerprint(np.zeros(2, np.float32)) != common.fingerprint(np.zeros(2, np.float64))
    assert common.fingerprint(0.0) != common.fingerprint(-0.0) != common.fingerprint(0)
    assert common.fingerprint(("a", 1)) != common.fingerprint(["a", 1])
    assert common.fingerprint({"x": 1, "y": 2}) == common.fingerprint({"y": 2, "x": 1})
    with pytest.raises(TypeError):
        common.fingerprint(object())


def test_a_path_typed_as_text_is_never_opened(tmp_path, monkeypatch):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    elsewhere = tmp_path / "secret.txt"
    elsewhere.write_text("not an upload")
    assert common.fingerprint(str(elsewhere)) == ("text", str(elsewhere))
    assert common.fingerprint(str(uploads / ".." / "secret.txt"))[0] == "text"  # no way out of the folder
    received = uploads / "x.png"
    received.write_bytes(b"png")
    assert common.fingerprint(str(received))[0] == "file"


def test_identical_requests_at_once_share_one_computation():
    answers, calls, started = common.SharedAnswers(), [], threading.Event()

    def compute():
        calls.append(1)
        started.set()
        time.sleep(0.2)  # the others arrive while it runs
        return {"__type__": "update", "value": len(calls)}, [1, 2]

    got = []
    first = threading.Thread(target=lambda: got.append(answers("key", compute)))
    first.start()
    started.wait(5)
    rest = [threading.Thread(target=lambda: got.append(answers("key", compute))) for _ in range(7)]
    for t in rest:
        t.start()
    for t in [first, *rest]:
        t.join(5)
    assert len(calls) == 1 and len(got) == 8 and all(g == ({"__type__": "update", "value": 1}, [1, 2]) for g in got)
    assert (answers.computed, answers.shared) == (1, 7)
    got[0][0].pop("value")  # Gradio pops keys out of update dicts as it sends them
    got[0][1].append(3)
    assert answers("key", compute) == ({"__type__": "update", "value": 1}, [1, 2])  # the kept answer is untouched
    assert answers("other key", compute)[0]["value"] == 2  # other inputs compute


def test_a_failure_is_not_kept_and_an_answer_expires():
    answers, calls = common.SharedAnswers(ttl_s=0.1), []

    def fail():
        calls.append(1)
        raise ValueError("bad input")

    for _ in range(2):
        with pytest.raises(ValueError, match="bad input"):
            answers("key", fail)
    assert len(calls) == 2  # the second request tried again
    assert answers("key", lambda: "ok") == "ok" == answers("key", lambda: "not again")
    time.sleep(0.15)
    assert answers("key", lambda: "anew") == "anew"  # expired
    never = common.SharedAnswers(ttl_s=0)
    assert never("key", lambda: 1) == 1 and never("key", lambda: 2) == 2  # 0 s: nothing is shared
    small = common.SharedAnswers(max_items=2)
    for key in "abc":
        small(key, lambda k=key: k)
    assert small("a", lambda: "recomputed") == "recomputed"  # the oldest went first
    assert small("c", lambda: "kept?") == "c"


def test_the_sharing_window_is_a_setting():
    assert settings.from_env({}).share_s == 30
    assert settings.from_env({"MMLAB_SHARE_S": "0"}).share_s == 0
    with pytest.raises(ValueError, match="MMLAB_SHARE_S"):
        settings.from_env({"MMLAB_SHARE_S": "-1"})


def test_only_handlers_marked_deterministic_share_their_answers():
    calls = []

    def handler(image, t: float) -> str:
        calls.append(t)
        return f"t = {t}"

    plain = common.show_errors(handler)
    marked = common.show_errors(common.deterministic(handler))
    image = Image.new("RGB", (8, 8), "blue")
    assert plain(image, 1.0) == plain(image, 1.0) and len(calls) == 2  # unmarked: every call computes
    calls.clear()
    assert marked(image, 1.0) == marked(image.copy(), 1.0) == "t = 1.0" and calls == [1.0]  # the same content
    assert marked(image, 2.0) == "t = 2.0" and calls == [1.0, 2.0]
    assert marked(Image.new("RGB", (8, 8), "red"), 1.0) == "t = 1.0" and len(calls) == 3
    with pytest.raises(gr.Error, match="bad"):  # a marked handler's errors still become messages
        common.show_errors(common.deterministic(lambda x: (_ for _ in ()).throw(ValueError("bad"))))(1)

    def stream(x):
        yield x

    with pytest.raises(ValueError, match="streams"):
        common.show_errors(common.deterministic(stream))


def test_the_main_actions_that_a_room_clicks_at_once_are_marked():
    from demos import blip, clip, diffusion, vit

    marked = [vit.patches, vit.attention, clip.matrix, clip.zero_shot, blip.ask, blip.matching, diffusion.forward,
              diffusion.latent]
    assert all(getattr(fn, "deterministic", False) for fn in marked)
    random_draws = [vit.new_scene, clip.new_batch, clip.batch_matrix, blip.new_scene, blip.caption, diffusion.new_scene]
    assert not any(getattr(fn, "deterministic", False) for fn in random_draws)


# ------------------------------------------------------------------------------------- the device's own threads

def test_a_model_handler_runs_on_the_device_threads_and_any_other_where_it_is_called():
    """Model calls run on DEVICE_THREADS, not on whichever of Gradio's workers took the request (each thread that
    allocates at once keeps an arena of its own: fewer threads, less memory kept)."""
    def model(x, tier=None):  # takes a tier: runs a model
        return threading.current_thread().name, x * 2

    def plain(x):
        return threading.current_thread().name, x * 2

    where, value = common.show_errors(model)(21, "bundled")
    assert where.startswith("device") and value == 42
    assert common.show_errors(plain)(21) == (threading.current_thread().name, 42)
    assert common.show_errors(plain, on_device=True)(1)[0].startswith("device")


def test_a_streamed_model_handler_takes_every_step_on_the_device_threads_and_closes_there():
    steps, closed = [], []

    def stream(n, tier=None):
        try:
            for i in range(n):
                steps.append(threading.current_thread().name)
                yield i
        finally:
            closed.append(threading.current_thread().name)

    assert list(common.show_errors(stream)(3, "bundled")) == [0, 1, 2]
    assert len(steps) == 3 and all(name.startswith("device") for name in steps + closed) and len(closed) == 1
    steps.clear(), closed.clear()
    abandoned = common.show_errors(stream)(100, "bundled")
    assert next(abandoned) == 0
    abandoned.close()  # a cancelled stream: its generator is closed, on a device thread, after one step
    assert len(steps) == 1 and len(closed) == 1 and closed[0].startswith("device")


def test_the_device_threads_carry_the_callers_context_and_errors_and_never_wait_on_themselves(monkeypatch):
    import contextvars

    request = contextvars.ContextVar("request", default=None)
    request.set("student 7")
    assert common.show_errors(lambda tier=None: request.get())("bundled") == "student 7"

    def bad(text, tier=None):
        raise ValueError(f"no such word: {text}")

    with pytest.raises(gr.Error, match="no such word: blorp"):
        common.show_errors(bad)("blorp", "bundled")

    monkeypatch.setattr(settings, "get", lambda: settings.from_env({"MMLAB_DEVICE_CONCURRENCY": "1"}))
    threads = common.DeviceThreads()  # one thread: a call from inside it must run where it is, or wait forever
    inner = lambda: threading.current_thread().name  # noqa: E731
    outer = threading.Thread(target=lambda: result.append(threads.call(lambda: (threads.inside(),
                                                                                   threads.call(inner)))))
    result = []
    outer.start()
    outer.join(timeout=10)
    assert not outer.is_alive(), "a nested call waited for the only device thread, which was its own caller"
    assert result[0][0] is True and result[0][1].startswith("device")
    assert not threads.inside()


def test_an_unqueued_model_handler_runs_where_it_is_called():
    """An unqueued event (the guidance explainer: a few ms) answers at once; it must not wait behind the model calls
    that hold the device's threads."""
    def replay(step, tier=None):
        return threading.current_thread().name

    wrapped = common.show_errors(replay, on_device=True, queued=False)
    assert wrapped(3, "bundled") == threading.current_thread().name
    assert wrapped.on_device and not wrapped.device_threads
    assert common.show_errors(replay).device_threads



def test_the_scene_deck_hands_out_scenes_drawn_ahead_and_draws_itself_full_again(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    deck = common.SceneDeck(stock=4, size=64, quiet_s=0.0)

    def filled() -> list:
        for _ in range(200):
            if not deck._filling:
                return list(deck._cards)
            time.sleep(0.01)
        pytest.fail("the deck was not drawn full again")

    first = deck.take(3)  # an empty deck draws on the spot, then fills up behind
    ahead = filled()
    assert len(first) == 3 and len(ahead) == 4
    for image, scene, path in first + ahead:
        assert Path(path).is_relative_to(tmp_path) and image.size == (64, 64)
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(image))  # the PNG is the picture, exactly
        assert np.array_equal(np.asarray(image), shapes.render(scene, 64))
    Path(ahead[0][2]).unlink()  # the cache sweep took one picture meanwhile
    second = deck.take(5)  # the four drawn ahead, in order, and one more drawn on the spot
    assert [c[1] for c in second[:4]] == [c[1] for c in ahead] and Path(second[0][2]).is_file()
    assert len(filled()) == 4
    scenes = [c[1] for c in first + second + deck.take(4)]
    assert len({repr(s) for s in scenes}) == len(scenes) == 12  # every scene a new random draw
    deck = common.SceneDeck(stock=3, size=64, quiet_s=0.0)
    deck.refill()  # at start-up: the first click is served from the deck too
    assert len(filled()) == 3


def test_the_scene_deck_draws_only_while_no_model_call_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    release = threading.Event()
    busy = threading.Thread(target=common.DEVICE_THREADS.call, args=(release.wait,))
    busy.start()
    for _ in range(200):
        if common.DEVICE_THREADS.idle_for() == 0.0:
            break
        time.sleep(0.01)
    deck = common.SceneDeck(stock=2, size=64, quiet_s=0.05)
    assert len(deck.take(1)) == 1
    time.sleep(0.3)
    assert len(deck._cards) == 0 and deck._filling  # a request's model call runs: the deck waits
    release.set()
    busy.join()
    for _ in range(200):
        if not deck._filling:
            break
        time.sleep(0.01)
    assert len(deck._cards) == 2 and common.DEVICE_THREADS.idle_for() > 0.05


def test_a_figure_from_dicts_is_the_figure_validation_would_build():
    data = [{"type": "heatmap", "z": np.arange(6.0).reshape(2, 3), "colorscale": common.VIRIDIS,
             "texttemplate": "%{z:.1f}"}, {"type": "scatter", "x": [0, 1], "y": [1, 0], "mode": "lines"}]
    layout = {"title": {"text": "t"}, "xaxis": {"title": {"text": "x"}, "range": [0, 2]}, "height": 300}
    fig = common.figure(data, layout)
    assert json.loads(fig.to_json()) == json.loads(go.Figure({"data": data, "layout": layout}).to_json())
    assert json.loads(fig.to_json())["layout"]["template"] == json.loads(go.Figure().to_json())["layout"]["template"]
    with pytest.raises(ValueError, match="hovertemplat"):  # in the tests, a misspelt property fails (conftest.py)
        common.figure([{"type": "scatter", "x": [0], "hovertemplat": "%{x}"}], {})
