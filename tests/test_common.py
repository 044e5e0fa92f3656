"""demos.common: the figure template every tab draws with, and the tier controls' honesty."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import plotly.io as pio

import mmcore.vit  # noqa: F401  (registers the vit family)
from demos import common
from mmcore import models


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
