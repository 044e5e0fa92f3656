"""Diffusion tab handlers, called as plain functions; the pretrained VAEs are tiny random-init stand-ins."""

import numpy as np
import pytest
import torch

from demos import diffusion as tab
from mmcore import diffusion as D

PARAMS = ("linear", 1e-4, 0.02, 1000)


@pytest.fixture
def scene():
    image, truth = tab.new_scene(seed=4)
    assert "Ground truth" in truth
    return image


def test_forward_shows_x_t_its_histogram_and_numbers(scene):
    img, md = tab.forward(scene, *PARAMS, 500, 0)
    fig = tab.histogram(scene, *PARAMS, 500, 0)
    assert img.size == (tab.WORK, tab.WORK)  # the page scales it up
    abar = D.make_schedule(*PARAMS).alpha_bar(500)
    assert f"ᾱ_t = **{abar:.4g}**" in md
    bars = fig.data[0]
    assert bars.type == "bar" and len(bars.x) == 80
    assert sum(bars.y) * (bars.x[1] - bars.x[0]) == pytest.approx(1.0, abs=0.02), "a density: area 1"
    clean, md0 = tab.forward(scene, *PARAMS, 0, 0)
    assert "SNR = ᾱ/(1 − ᾱ) = ∞" in md0
    noisy = np.asarray(tab.forward(scene, *PARAMS, 1000, 0)[0], float)
    assert np.abs(noisy - np.asarray(clean, float)).mean() > 40, "x_T no longer looks like the image"


def test_chain_steps_restart_and_agree_with_the_closed_form(scene):
    t, chain_img, jump_img, md = tab.chain(scene, *PARAMS, 0, 1, 0)
    assert t == 1 and chain_img.size == jump_img.size == (tab.WORK, tab.WORK)
    t, *_ = tab.chain(scene, *PARAMS, t, 100, 0)
    assert t == 101
    t, _, _, md = tab.chain(scene, *PARAMS, t, 100, 0)
    theory = float(md.split("√(1 − ᾱ_t) = **")[1].split("**")[0])
    chain_std = float(md.split("the chain **")[1].split("**")[0])
    jump_std = float(md.split("closed form **")[1].split("**")[0])
    assert t == 201 and abs(chain_std - theory) < 0.02 and abs(jump_std - theory) < 0.02
    assert tab.chain(scene, *PARAMS, t, 0, 0)[0] == 0, "restart"
    assert tab.chain(scene, *PARAMS, 995, 10, 0)[0] == 1000, "the chain stops at T"


def test_strip_and_its_input(scene):
    img = tab.strip(scene, *PARAMS, "0, 100, 1000", 0)
    assert img.width > 3 * 160 and img.height > 160
    assert tab.parse_timesteps("0;5 7", 10) == [0, 5, 7]
    for text, match in (("", "at least one"), ("1,2,3,4,5,6,7,8,9,10,11", "At most 10"), ("a, b", "numbers"),
                        ("2000", "t must be")):
        with pytest.raises(ValueError, match=match):
            tab.parse_timesteps(text, 1000)


def test_curves_overlay_the_three_schedules():
    fig = tab.curves(*PARAMS)
    names = {tr.name for tr in fig.data}
    assert names == set(D.SCHEDULES)
    assert len(fig.data) == 5 * len(D.SCHEDULES)
    linear = D.make_schedule(*PARAMS)
    curves = {(tr.name, tr.line.dash, tr.xaxis): tr.y for tr in fig.data}
    np.testing.assert_allclose(curves[("linear", "dash", "x2")], linear.alphas_cumprod)
    np.testing.assert_allclose(curves[("linear", "dot", "x2")], np.sqrt(1 - linear.alphas_cumprod))
    np.testing.assert_allclose(curves[("linear", None, "x3")], linear.snr)


@pytest.mark.parametrize("autoencoder, factor", [("vae", 2), ("taesd", 8)])
def test_latent_panel_on_pretrained_stand_ins(tiny_pretrained, scene, autoencoder, factor):
    latent, rec, err, pix, lat, md = tab.latent(scene, autoencoder, "pretrained", *PARAMS, 300, 0)
    bundle = tab.common.load(autoencoder, "pretrained")[0]
    assert bundle.factor == factor
    s = bundle.image_size
    assert f"3 × {s} × {s} = **{3 * s * s:,}**" in md and "(f = " in md
    z = bundle.encode(D.to_tensor(scene, s))
    assert z.shape == (1, 4, s // factor, s // factor)
    assert bundle.decode(z).shape == (1, 3, s, s), "the round trip keeps the shape"
    assert all(im.size == (tab.DISPLAY, tab.DISPLAY) for im in (rec, err, pix, lat))
    assert "🟢 pretrained" in md
    # at t = 0 nothing is noised: pixel space shows the image, latent space decodes to the reconstruction
    _, rec0, _, pix0, lat0, _ = tab.latent(scene, autoencoder, "pretrained", *PARAMS, 0, 0)
    np.testing.assert_array_equal(np.asarray(lat0), np.asarray(rec0))
    np.testing.assert_array_equal(np.asarray(pix0), np.asarray(D.to_image(D.to_tensor(scene, s), tab.DISPLAY)))
    assert np.abs(np.asarray(pix, float) - np.asarray(pix0, float)).mean() > 5, "t = 300 noises the pixels"


def test_bad_inputs_get_messages(scene, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    cases = [
        (lambda: tab.forward(None, *PARAMS, 5, 0), "No image"),
        (lambda: tab.forward(str(bad), *PARAMS, 5, 0), "not an image"),
        (lambda: tab.forward(scene, "linear", 1e-4, 0.02, 0, 5, 0), "T \\(the number"),
        (lambda: tab.forward(scene, "linear", 1e-4, 0.02, 10**6, 5, 0), "T \\(the number"),
        (lambda: tab.forward(scene, "linear", 0.02, 1e-4, 1000, 5, 0), "must not be smaller"),
        (lambda: tab.forward(scene, "linear", 1e-4, 1.5, 1000, 5, 0), "must lie in"),
        (lambda: tab.forward(scene, *PARAMS, 1001, 0), "t must be"),
        (lambda: tab.forward(scene, *PARAMS, float("nan"), 0), "t must be"),
        (lambda: tab.forward(scene, *PARAMS, 5, -3), "seed must be"),
        (lambda: tab.latent(scene, "sd3", None, *PARAMS, 5, 0), "autoencoder must be"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()


def test_forward_step_is_what_the_chain_applies():
    """The chain uses forward_step with eps_t = step_noise(seed, t): recompute two steps by hand."""
    sched = D.make_schedule(*PARAMS)
    x0 = torch.rand(1, 3, 4, 4) * 2 - 1
    x1 = D.forward_step(x0, float(sched.betas[0]), D.step_noise((1, 3, 4, 4), 3, 1))
    x2 = D.forward_step(x1, float(sched.betas[1]), D.step_noise((1, 3, 4, 4), 3, 2))
    torch.testing.assert_close(D.ChainCache().state(x0, sched, 3, 2), x2)


def test_the_vae_panel_shows_its_progress_on_the_latent_picture_alone():
    """The panel's six outputs take ~20 ms to compute on the bundled VAE: a full overlay over each of them cost the page
    ~40 ms of drawing; one timer, on the picture under the button, says the same."""
    import gradio as gr

    with gr.Blocks() as demo:
        tab.build_forward()
    fn = next(fn for fn in demo.fns.values() if fn.api_name == "diffusion_latent")
    assert fn.show_progress == "minimal"
    assert [block._id for block in fn.show_progress_on] == [fn.outputs[0]._id]
    assert fn.outputs[0].label.startswith("Latent channels")
