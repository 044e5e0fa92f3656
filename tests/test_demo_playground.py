"""The 2-D playground's handlers, as plain functions, with a short training run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from demos import playground as P


@pytest.fixture(autouse=True)
def no_remembered_runs(monkeypatch):
    """Each test starts with no finished run in memory (they are shared by every session of the app)."""
    monkeypatch.setattr(P, "_RUNS", type(P._RUNS)())


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(P, "CONFIG", dataclasses.replace(P.CONFIG, steps=300, log_every=50))


def test_training_streams_the_loss_then_delivers_paths(quick):
    outs = list(P.train("two moons", None, 0))
    assert len(outs) == 300 // 50  # one report per 50 steps; the last one carries the paths
    for fig, md, *_ in outs[:-1]:
        assert "step" in md and len(fig.data[0].y) >= 1
    fig, md, paths_fig, play, slider = outs[-1]
    assert isinstance(play, P.Playground) and play.reverse.shape == (P.CONFIG.T + 1, 500, 2)
    assert play.quality < 0.5 * play.noise_quality  # the samples moved towards the data
    assert "Trained" in md and f"{play.quality:.3f}" in md
    nearest = np.linalg.norm(play.forward[0][:, None] - play.data[None], axis=-1).min(1)
    assert nearest.max() < 1e-6  # the forward paths start on the data points themselves
    assert play.forward[-1].std() > 0.8  # and end near N(0, I)


def test_the_same_data_and_seed_are_trained_once_and_then_served_at_once(quick, monkeypatch):
    first = list(P.train("spiral", None, 3))
    assert len(first) == 300 // 50  # trained, streaming
    trained = []
    monkeypatch.setattr(P.toy2d, "train", lambda *a, **k: trained.append(a) or iter(()))  # training would fail now
    again = list(P.train("spiral", None, 3))
    assert trained == [] and len(again) == 1  # no training: the remembered run at once
    fig, md, paths_fig, play, _ = again[0]
    assert play is first[-1][3]  # the very same playground
    assert list(fig.data[0].y) == list(first[-1][0].data[0].y)  # the whole loss curve
    assert paths_fig.to_json() == first[-1][2].to_json()
    assert "trained moments ago" in md and f"{play.quality:.3f}" in md
    assert list(P.train("spiral", None, 4)) == [] and len(trained) == 1  # another seed trains anew
    assert list(P.train("rings", None, 3)) == [] and len(trained) == 2  # and so does other data


def test_a_run_cut_short_by_the_time_limit_is_remembered_and_says_so(monkeypatch):
    monkeypatch.setattr(P, "CONFIG", dataclasses.replace(P.CONFIG, steps=5000, log_every=50, time_limit=0.05))
    first = list(P.train("spiral", None, 0))
    step = int(first[-1][1].split("time limit at step ")[1].split(" ")[0])
    assert 0 < step < 5000
    again = list(P.train("spiral", None, 0))
    assert len(again) == 1 and again[0][3] is first[-1][3]  # shown at once, not trained into the limit again
    assert f"time limit at step {step} of 5000" in again[0][1] and "trained moments ago" in again[0][1]


def test_only_the_latest_runs_are_kept(quick, monkeypatch):
    monkeypatch.setattr(P, "MAX_RUNS", 2)
    for seed in (0, 1, 0, 2):  # seed 0 used again, so seed 1 is the oldest when seed 2 arrives
        list(P.train("spiral", None, seed))
    assert [seed for _, seed, _ in P._RUNS] == [0, 2]


def test_the_t_slider_moves_along_the_paths(quick):
    play = list(P.train("spiral", None, 1))[-1][3]
    start, end = P.paths(play, P.CONFIG.T, "reverse"), P.paths(play, 0, "reverse")
    assert "t = 100" in start.layout.title.text and "t = 0" in end.layout.title.text
    assert "Forward" in P.paths(play, 10, "forward").layout.title.text


def test_a_drawing_becomes_the_data(quick):
    img = np.zeros((256, 256, 4), np.uint8)
    img[100:110, 30:220, 3] = 255  # a horizontal stroke
    play = list(P.train(P.DRAWING, {"composite": img}, 0))[-1][3]
    assert play.data[:, 1].std() < 0.2 * play.data[:, 0].std()


@pytest.mark.parametrize("args, match", [
    (("my drawing", None, 0), "Draw a few strokes"),
    (("a cat", None, 0), "data must be one of"),
    (("spiral", None, -1), "seed must be"),
])
def test_bad_inputs_get_messages(args, match):
    with pytest.raises(ValueError, match=match):
        list(P.train(*args))


def test_paths_need_a_trained_playground_and_a_t_in_range(quick):
    with pytest.raises(ValueError, match="Train the denoiser first"):
        P.paths(None, 0, "reverse")
    play = P.Playground(*(np.zeros((3, 4, 2), np.float32),) * 3, 0.1, 1.0)
    with pytest.raises(ValueError, match=r"t must be in \[0, 2\]"):
        P.paths(play, 3, "reverse")
