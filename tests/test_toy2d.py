"""The 2-D diffusion playground: point clouds, training, the two directions of paths, quality and figures."""

import itertools
import math
import threading
import time

import numpy as np
import pytest
import torch

from mmcore import toy2d as M

FAST = M.Toy2DConfig(steps=300, log_every=25)  # ~1 s on one busy thread; enough to pull samples onto two moons
TINY = M.Toy2DConfig(steps=60, log_every=20)


@pytest.fixture(scope="module")
def moons() -> np.ndarray:
    return M.make_points("two moons", 1000, seed=0)


@pytest.fixture(scope="module")
def trained(moons):
    *reports, last = M.train(moons, FAST, seed=0)
    return reports, last


def noise_quality(data: np.ndarray, n: int = 500) -> float:
    return M.sample_quality(np.random.default_rng(123).standard_normal((n, 2)).astype(np.float32), data)


# ------------------------------------------------------------------------------------------------------- point clouds

@pytest.mark.parametrize("preset", M.PRESETS)
def test_presets_are_normalised_reproducible_shapes(preset):
    x = M.make_points(preset, 800, seed=3)
    assert x.shape == (800, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-5)
    assert float(np.sqrt((x**2).mean())) == pytest.approx(1.0, abs=1e-4)  # E|x|² = 2, as N(0, I)
    assert ((x.std(axis=0) > 0.5) & (x.std(axis=0) < 1.5)).all()
    np.testing.assert_array_equal(x, M.make_points(preset, 800, seed=3))
    # a fresh draw lies on the same shape: much nearer to it than Gaussian noise is (a preset of noise would fail)
    other = M.make_points(preset, 500, seed=4)
    assert not np.array_equal(other, x[:500])
    assert M.sample_quality(other, x) < 0.5 * noise_quality(x)


def test_rings_have_two_radii_and_gaussians_eight_modes():
    r = np.linalg.norm(M.make_points("rings", 3000), axis=1)
    inner, outer = r[r < r.mean() * 0.85], r[r >= r.mean() * 0.85]
    assert outer.mean() / inner.mean() == pytest.approx(2.0, rel=0.05)
    angles = np.arctan2(*M.make_points("eight gaussians", 3000).T[::-1])
    counts = np.histogram(np.mod(angles + np.pi / 8, 2 * np.pi), bins=8, range=(0, 2 * np.pi))[0]
    assert counts.min() > 250  # 8 blobs 45° apart, one per bin


@pytest.mark.parametrize("kwargs, match", [
    ({"preset": "swiss roll"}, "preset must be one of spiral, two moons, rings"),
    ({"n": 5}, "n \\(the number of points\\) must be a whole number in \\[10, 5000\\]"),
    ({"n": 5001}, "\\[10, 5000\\]"), ({"n": 10.5}, "whole number"), ({"n": float("nan")}, "finite"),
    ({"seed": -1}, "seed must be"), ({"seed": "abc"}, "seed must be a number")])
def test_bad_make_points_arguments_get_messages(kwargs, match):
    with pytest.raises(ValueError, match=match):
        M.make_points(**{"preset": "spiral", **kwargs})


# ------------------------------------------------------------------------------------------------------- sketches

def canvas(h: int = 200, w: int = 300, rgba: bool = False) -> np.ndarray:
    """A white canvas (or, with rgba, a transparent one as a Sketchpad layer)."""
    return np.zeros((h, w, 4), np.uint8) if rgba else np.full((h, w, 3), 255, np.uint8)


def test_a_drawn_horizontal_line_gives_a_flat_cloud():
    img = canvas()
    img[99:102, 20:281] = (20, 30, 200)  # a blue line, 3 px thick
    pts = M.points_from_sketch(img, 1000, seed=0)
    assert pts.shape == (1000, 2) and pts.dtype == np.float32
    assert pts[:, 1].std() < 0.05 and pts[:, 0].std() > 1.3
    np.testing.assert_allclose(pts.mean(axis=0), 0, atol=1e-5)
    assert not np.array_equal(pts, M.points_from_sketch(img, 1000, seed=1)), "jitter and picks follow the seed"


@pytest.mark.parametrize("rgba", [False, True])
def test_sketch_y_axis_points_up(rgba):
    img = canvas(rgba=rgba)
    ink = (0, 0, 0, 255) if rgba else (0, 0, 0)
    img[18:22, 20:281] = ink  # a long stroke near the top
    img[178:182, 140:161] = ink  # a short one near the bottom
    pts = M.points_from_sketch(img, 2000, seed=0)
    wide = np.abs(pts[:, 0]) > 0.5  # only the top stroke reaches that far left or right
    assert wide.sum() > 500 and (pts[wide, 1] > 0).all()
    assert (pts[:, 1] < -1).any(), "the bottom stroke is there, below"
    diag = canvas(rgba=rgba)
    for i in range(150):  # from bottom left to top right
        diag[190 - i, 40 + i:43 + i] = ink
    d = M.points_from_sketch(diag, 1000)
    assert np.corrcoef(d[:, 0], d[:, 1])[0, 1] > 0.95


def test_sketch_on_a_coloured_background_uses_the_strokes_only():
    img = np.zeros((120, 120, 4), np.uint8)
    img[...] = (240, 230, 200, 255)  # an opaque beige canvas, as a Sketchpad composite
    img[30:90, 58:62, :3] = (10, 10, 10)  # a vertical stroke
    pts = M.points_from_sketch(img, 500)
    assert pts[:, 0].std() < 0.1 and pts[:, 1].std() > 1.3


@pytest.mark.parametrize("image, match", [
    (None, "draw a few strokes first"), (np.full((100, 100, 3), 255, np.uint8), "draw a few strokes first"),
    (np.zeros((100, 100), np.uint8), "must be an \\(H, W, 3\\) or \\(H, W, 4\\) array"),
    (np.zeros((4, 4, 3), np.uint8), "H, W >= 8"), (np.zeros((50, 50, 3), np.float32), "uint8")])
def test_bad_sketches_get_messages(image, match):
    with pytest.raises(ValueError, match=match):
        M.points_from_sketch(image)


def test_a_few_pixels_are_not_a_shape():
    img = canvas()
    img[50:52, 50:55] = 0  # 10 pixels
    with pytest.raises(ValueError, match="only 10 drawn pixels"):
        M.points_from_sketch(img)


# ------------------------------------------------------------------------------------------------------- training

def test_training_streams_progress_and_the_loss_goes_down(trained):
    reports, last = trained
    assert len(reports) == FAST.steps // FAST.log_every - 1  # the last interval comes with the model
    assert [r.step for r in reports] == list(range(25, 300, 25))
    assert all(r.model is None and r.status == "training" for r in reports)
    assert all(a.elapsed <= b.elapsed for a, b in itertools.pairwise(reports))
    assert last.status == "done" and last.step == FAST.steps and isinstance(last.model, M.Denoiser)
    assert last.losses[:-1] == [r.loss for r in reports] and last.loss_steps[-1] == 300
    assert last.losses[-1] < 0.8 * last.losses[0]
    assert last.losses[-1] < 0.7, "ε_θ = 0 scores 1; a trained model does far better"
    assert not last.model.training


def test_the_trained_denoiser_knows_t(trained, moons):
    """At the last step x_T is almost all noise, so the best guess of ε is x_T itself; at the first step ε is nearly
    invisible in x_1, and the guess is a different function of x. A model blind to t cannot do both."""
    model = trained[1].model
    x = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        late, early = model(x, FAST.T - 1), model(x, 0)
    assert float(((late - x) ** 2).mean()) < 0.05
    assert float(((early - late) ** 2).mean()) > 0.2


def test_same_seed_same_losses_other_seed_other_losses(moons):
    a = M.train_model(moons, TINY, seed=7)
    b = M.train_model(moons, TINY, seed=7)
    c = M.train_model(moons, TINY, seed=8)
    assert a[1] == b[1] and a[1] != c[1]
    np.testing.assert_array_equal(M.sample_paths(a[0], n=50, seed=1), M.sample_paths(b[0], n=50, seed=1))


def test_training_does_not_touch_the_global_rng(moons):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    M.train_model(moons, M.Toy2DConfig(steps=2), seed=5)
    torch.testing.assert_close(torch.rand(3), expected)


def test_cancel_stops_training_early(moons):
    cancel = threading.Event()
    reports = []
    for progress in M.train(moons, M.Toy2DConfig(steps=100_000, log_every=10, time_limit=10), cancel=cancel):
        reports.append(progress)
        cancel.set()  # as a Stop button pressed after the first report
    assert len(reports) == 2
    last = reports[-1]
    assert last.status == "cancelled" and last.step == 10 and isinstance(last.model, M.Denoiser)
    already = threading.Event()
    already.set()
    (only,) = M.train(moons, FAST, cancel=already)
    assert only.status == "cancelled" and only.step == 0 and only.losses == [] and math.isnan(only.loss)


def test_time_limit_stops_training(moons):
    start = time.perf_counter()
    *_, last = M.train(moons, M.Toy2DConfig(steps=100_000, time_limit=0.3))
    assert last.status == "time limit" and 0 < last.step < 100_000 and last.model is not None
    assert time.perf_counter() - start < 3


@pytest.mark.parametrize("kwargs, match", [
    ({"T": 5}, "T \\(the number of diffusion steps\\) must be a whole number in \\[10, 1000\\]"),
    ({"schedule": "cosine"}, "schedule must be one of squaredcos_cap_v2, linear"),
    ({"lr": 0}, "lr must lie in \\(0, 1\\]"), ({"lr": float("nan")}, "lr must be a finite number"),
    ({"time_dim": 31}, "time_dim must be even"), ({"hidden": 0}, "hidden \\(the MLP width\\)"),
    ({"steps": 0}, "steps \\(training steps\\)"), ({"time_limit": 0}, "time_limit must be a positive")])
def test_bad_configs_get_messages(kwargs, match):
    with pytest.raises(ValueError, match=match):
        M.Toy2DConfig(**kwargs)


@pytest.mark.parametrize("points, match", [
    (None, "pick a preset or draw"), (np.zeros((100, 3)), "\\(N, 2\\) array"), (np.zeros((5, 2)), "at least 10"),
    (np.full((20, 2), np.nan), "NaN")])
def test_bad_training_data_gets_messages(points, match):
    with pytest.raises(ValueError, match=match):
        next(M.train(points, TINY))


# ------------------------------------------------------------------------------------------------------- paths

def test_samples_land_on_the_data_and_start_from_noise(trained, moons):
    model = trained[1].model
    paths = M.sample_paths(model, FAST, n=500, seed=0)
    assert paths.shape == (FAST.T + 1, 500, 2) and paths.dtype == np.float32
    x_T, x_0 = paths[-1], paths[0]
    assert abs(float(x_T.std()) - 1) < 0.1 and np.abs(x_T.mean(axis=0)).max() < 0.15  # x_T ~ N(0, I)
    noise = noise_quality(moons)
    assert M.sample_quality(x_0, moons) < 0.5 * noise
    assert M.sample_quality(x_0, moons) < 0.5 * M.sample_quality(x_T, moons), "index 0 is the end of sampling"
    # an untrained denoiser of the same shape does not find the moons
    with torch.random.fork_rng():
        torch.manual_seed(0)
        untrained = M.Denoiser(FAST).eval()
    assert M.sample_quality(M.sample_paths(untrained, n=500)[0], moons) > 2 * M.sample_quality(x_0, moons)


def test_sample_paths_are_seeded_and_checked(trained):
    model = trained[1].model
    a, b = M.sample_paths(model, n=30, seed=2), M.sample_paths(model, n=30, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, M.sample_paths(model, n=30, seed=3))
    with pytest.raises(ValueError, match="must match the schedule"):
        M.sample_paths(model, M.Toy2DConfig(T=50))
    with pytest.raises(ValueError, match="model must be a trained Denoiser"):
        M.sample_paths(None)
    with pytest.raises(ValueError, match="n \\(the number of samples\\) must be a whole number in \\[10, 5000\\]"):
        M.sample_paths(model, n=6000)


def test_forward_paths_start_at_the_data_and_end_in_unit_noise(moons):
    cfg = M.Toy2DConfig()
    paths = M.forward_paths(moons, cfg, n=1000, seed=0)
    assert paths.shape == (cfg.T + 1, 1000, 2) and paths.dtype == np.float32
    # x_0 is the data itself: each row is one of the data points, each point used once
    rows = {tuple(p) for p in moons}
    assert all(tuple(p) in rows for p in paths[0]) and len({tuple(p) for p in paths[0]}) == 1000
    x_T = paths[-1]
    assert abs(float(x_T.std()) - 1) < 0.06 and np.abs(x_T.mean(axis=0)).max() < 0.1
    assert abs(np.corrcoef(x_T[:, 0], paths[0][:, 0])[0, 1]) < 0.1, "x_T has forgotten x_0"


def test_forward_paths_are_one_chain_of_small_steps(moons):
    """x_t - sqrt(1 - β_t) x_{t-1} has variance β_t: the chain q(x_t | x_{t-1}), not fresh draws from q(x_t | x_0)
    (whose residuals would be far larger) nor a walk without noise (residual 0)."""
    cfg = M.Toy2DConfig()
    paths = M.forward_paths(moons, cfg, n=2000, seed=1)
    betas = M.make_scheduler(cfg).betas.double().numpy()
    for t in (1, 10, 50, 90):
        residual = paths[t].astype(np.float64) - math.sqrt(1 - betas[t - 1]) * paths[t - 1]
        assert residual.var() == pytest.approx(betas[t - 1], rel=0.1), t


def test_forward_paths_seeds_schedules_and_checks(moons):
    np.testing.assert_array_equal(M.forward_paths(moons, n=20, seed=4), M.forward_paths(moons, n=20, seed=4))
    assert not np.array_equal(M.forward_paths(moons, n=20, seed=4), M.forward_paths(moons, n=20, seed=5))
    linear = M.forward_paths(moons, M.Toy2DConfig(schedule="linear"), n=2000)
    assert abs(float(linear[-1].std()) - 1) < 0.06, "the linear betas are rescaled so that x_T is noise at T = 100"
    few = M.make_points("spiral", 50)
    assert M.forward_paths(few, n=200).shape[1] == 200  # more paths than points: points repeat
    with pytest.raises(ValueError, match="NaN"):
        M.forward_paths(np.full((50, 2), np.inf))


def test_sample_quality_is_the_mean_nearest_distance():
    data = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    assert M.sample_quality(data, data) == 0
    samples = np.array([[0.1, 0], [10, 0.3], [-0.2, 10]], np.float32)
    assert M.sample_quality(samples, data) == pytest.approx(0.2, abs=1e-6)
    with pytest.raises(ValueError, match="samples contains NaN"):
        M.sample_quality(np.array([[np.nan, 0]]), data)
    with pytest.raises(ValueError, match="data must be an \\(N, 2\\) array"):
        M.sample_quality(samples, np.zeros(3))


# ------------------------------------------------------------------------------------------------------- figures

@pytest.mark.parametrize("direction, t", [("reverse", 37), ("reverse", 0), ("forward", 37), ("forward", 100)])
def test_paths_figure_shows_the_density_points_at_t_and_paths_so_far(moons, direction, t):
    paths = M.forward_paths(moons, n=300)
    fig = M.paths_figure(moons, paths, t, direction, n_lines=40)
    density, lines, points = fig.data
    assert (density.type, lines.type, points.type) == ("contour", "scatter", "scatter")
    assert fig.layout.title.text.startswith(("Reverse" if direction == "reverse" else "Forward") + " process, t = "
                                            f"{t} of 100")
    np.testing.assert_allclose(points.x, paths[t, :, 0], atol=5e-4)  # the points are x_t, rounded to 3 decimals
    assert all(v == round(v, 3) for v in points.y)
    # 40 paths separated by gaps; each walks from its start (x_T reverse, x_0 forward) to x_t
    assert lines.x.count(None) == 40
    walked = 100 - t + 1 if direction == "reverse" else t + 1
    assert len(lines.x) == 40 * (walked + 1)
    first = np.array(lines.x[:walked], dtype=float)
    start = paths[100 if direction == "reverse" else 0, 0, 0]
    assert first[0] == pytest.approx(start, abs=5e-4) and first[-1] == pytest.approx(paths[t, 0, 0], abs=5e-4)
    assert list(fig.layout.xaxis.range) == list(fig.layout.yaxis.range) == [-M.AXIS, M.AXIS]
    assert len(fig.to_json()) < 150_000


def test_paths_figure_checks_its_inputs(moons):
    paths = M.forward_paths(moons, n=50)
    with pytest.raises(ValueError, match="t must be a whole number in \\[0, 100\\]"):
        M.paths_figure(moons, paths, 101)
    with pytest.raises(ValueError, match="direction must be 'reverse' or 'forward'"):
        M.paths_figure(moons, paths, 3, "sideways")
    with pytest.raises(ValueError, match="paths must be a \\(T \\+ 1, n, 2\\) array"):
        M.paths_figure(moons, paths[0], 0)


def test_loss_figure(trained):
    last = trained[1]
    fig = M.loss_figure(last.losses, last.loss_steps, total_steps=FAST.steps)
    assert len(fig.data) == 1 and list(fig.data[0].x) == last.loss_steps
    assert f"{last.losses[-1]:.3f} at step 300" in fig.layout.title.text
    assert fig.layout.yaxis.type == "log" and list(fig.layout.xaxis.range) == [0, 300]
    assert len(M.loss_figure([]).data) == 1  # the empty curve before the first report
    with pytest.raises(ValueError, match="losses must be positive finite"):
        M.loss_figure([0.5, float("nan")])
    with pytest.raises(ValueError, match="same length"):
        M.loss_figure([0.5, 0.4], [10])


# ------------------------------------------------------------------------------------------------------- slow

@pytest.mark.slow
def test_default_config_trains_well_within_the_budget():
    data = M.make_points("spiral", 1000, seed=0)
    M.make_scheduler(M.Toy2DConfig())  # the diffusers import is not training time
    start = time.perf_counter()
    *_, last = M.train(data, M.Toy2DConfig(time_limit=60), seed=0)
    seconds = time.perf_counter() - start
    assert last.status == "done" and seconds < 20, f"{seconds:.1f} s"
    samples = M.sample_paths(last.model, n=500, seed=0)[0]
    assert M.sample_quality(samples, data) < 0.25 * noise_quality(data)
