"""The forward process as the lecture writes it, checked against diffusers' DDPMScheduler."""

import math

import numpy as np
import pytest
import torch

from mmcore import diffusion as D


@pytest.mark.parametrize("schedule", list(D.SCHEDULES))
@pytest.mark.parametrize("T", [10, 1000])
def test_closed_form_equals_ddpm_add_noise(schedule, T):
    from diffusers import DDPMScheduler

    ours = D.make_schedule(schedule, 1e-4, 0.02, T)
    ref = DDPMScheduler(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule=D.SCHEDULES[schedule],
                        clip_sample=False)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    for t in sorted({1, 2, T // 2, T - 1, T}):
        mine = D.closed_form(x0, ours.alpha_bar(t), noise)
        theirs = ref.add_noise(x0, noise, torch.tensor([t - 1]))  # diffusers counts from 0; the lecture from 1
        assert (mine - theirs).abs().max() <= 1e-6, (schedule, t)
    assert ours.alpha_bar(0) == 1.0


def test_chain_matches_the_closed_form_statistically():
    """Iterating q(x_t | x_{t-1}) from x_0 gives mean sqrt(abar) x_0 and variance 1 - abar, as the closed form."""
    sched = D.make_schedule("linear", 1e-4, 0.02, 1000)
    x0 = torch.full((20_000,), 0.8)
    x = x0.clone()
    g = torch.Generator().manual_seed(1)
    for t in range(1, 301):
        x = D.forward_step(x, float(sched.betas[t - 1]), torch.randn(x.shape, generator=g))
    abar = sched.alpha_bar(300)
    assert float(x.mean()) == pytest.approx(math.sqrt(abar) * 0.8, abs=0.02)
    assert float(x.var()) == pytest.approx(1 - abar, rel=0.03)
    # a dropped square root in the step would move the variance far off
    assert abs(float(x.var()) - (1 - abar)) < 0.1 * (1 - abar)


def test_lecture_beta_1_gives_sigma_0_01():
    n = D.lecture_numbers()
    assert n["sigma"] == pytest.approx(0.01, abs=1e-12)
    assert n["scale"] == pytest.approx(math.sqrt(0.9999))
    x1 = D.forward_step(torch.zeros(200_000), 1e-4, torch.randn(200_000, generator=torch.Generator().manual_seed(2)))
    assert float(x1.std()) == pytest.approx(0.01, rel=0.01)


@pytest.mark.parametrize("schedule", list(D.SCHEDULES))
def test_alpha_bar_is_monotone_and_ends_near_pure_noise(schedule):
    s = D.make_schedule(schedule, 1e-4, 0.02, 1000)
    abar = s.alphas_cumprod
    assert (np.diff(abar) < 0).all() and 0 < abar[-1] < abar[0] <= 1
    assert s.snr[-1] < 1e-3, "x_T is (nearly) pure noise"
    assert (np.diff(s.snr) < 0).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"T": 0}, "T \\(the number of steps\\) must be"), ({"T": 10**6}, "T \\(the number of steps\\) must be"),
    ({"T": 12.5}, "whole number"), ({"beta_start": 0.0}, "must lie in \\(0, 1\\)"),
    ({"beta_end": 1.0}, "must lie in \\(0, 1\\)"), ({"beta_start": 0.05, "beta_end": 0.01}, "must not be smaller"),
    ({"beta_start": float("nan")}, "finite"), ({"schedule": "sigmoid"}, "schedule must be one of"),
    ({"beta_end": "abc"}, "must be a number")])
def test_bad_schedules_get_messages(kwargs, match):
    args = {"schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02, "T": 1000, **kwargs}
    with pytest.raises(ValueError, match=match):
        D.make_schedule(**args)


def test_t_outside_the_schedule_is_refused():
    s = D.make_schedule("cosine", 1e-4, 0.02, 100)
    for bad in (-1, 101, 3.5, float("nan")):
        with pytest.raises(ValueError, match="t must be"):
            s.alpha_bar(bad)


def test_chain_cache_resumes_exactly_and_is_bounded():
    sched = D.make_schedule("linear", 1e-4, 0.02, 200)
    x0 = torch.rand(1, 3, 8, 8)
    cache = D.ChainCache(max_chains=2, states_per_chain=3)
    full = D.ChainCache().state(x0, sched, seed=5, t=150)  # computed from scratch
    cache.state(x0, sched, 5, 40)
    resumed = cache.state(x0, sched, 5, 150)  # continues from t = 40
    torch.testing.assert_close(resumed, full, rtol=0, atol=0)
    assert not torch.equal(cache.state(x0, sched, 6, 150), full), "another seed, another chain"
    cache.state(torch.zeros(1, 3, 8, 8), sched, 5, 10)
    assert len(cache._chains) == 2
    assert all(len(states) <= 3 for states in cache._chains.values())
    torch.testing.assert_close(cache.state(x0, sched, 5, 0), x0)


def test_image_round_trip_and_psnr():
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    x = D.to_tensor(img, 32)
    assert x.shape == (1, 3, 32, 32) and float(x.min()) >= -1 and float(x.max()) <= 1
    back = D.to_image(x, 64)
    assert back.size == (64, 64)
    assert D.psnr(x, x) == float("inf")
    y = x * 0.9  # away from the clipping edges
    assert D.psnr(y, y + 0.02) == pytest.approx(10 * math.log10(4 / 0.0004), abs=1e-3)
    assert D.psnr(y, y + 0.04) == pytest.approx(D.psnr(y, y + 0.02) - 20 * math.log10(2), abs=1e-3)
