"""The reverse-process handlers, called as plain functions on the tiny pretrained stand-ins (no browser)."""

from __future__ import annotations

import gradio as gr
import pytest
from PIL import Image

from demos import denoise

ARGS = dict(prompt="a red circle", negative_prompt="", scheduler="DDIM", num_inference_steps=3, guidance_scale=3.0,
            seed=1, size=16, pipeline="ldm", tier="pretrained")


def _run(**kw):
    return list(denoise.generate(**{**ARGS, **kw}))


def test_generate_streams_one_preview_per_step_then_the_result(tiny_pretrained):
    out = _run()
    assert len(out) == 3 + 1
    for k, (live, *rest) in enumerate(out[:-1]):
        assert f"<b>Step {k + 1} / 3</b>" in live and live.count('src="data:image/png;base64,') == 2
        assert all(isinstance(r, type(gr.skip())) for r in rest)  # only the live view travels during the loop
    live, md, final, run = out[-1]
    assert "Done" in md and "<b>Step 3 / 3</b>" in live
    timeline, fig, words = denoise.details(run)
    assert isinstance(final, Image.Image) and final.width >= denoise.PREVIEW
    assert timeline.size == (3 * 80 + 2 * 6, 80 + 18)  # three steps in one row, labelled
    assert words.size == (4 * 160 + 3 * 6, 160 + 18)  # the result, then a, red, circle
    assert len(fig.data[0].y) == 3
    assert isinstance(run, denoise.Run) and len(run.steps) == 3 and run.request.prompt == "a red circle"
    again = _run()[-1][2]
    assert again.tobytes() == final.tobytes()  # a fixed seed gives the same picture
    other = _run(seed=2)[-1][2]
    assert other.tobytes() != final.tobytes()


@pytest.mark.parametrize("kw, match", [
    ({"prompt": "x" * 10_000}, "at most 500"),
    ({"num_inference_steps": 0}, "num_inference_steps"),
    ({"guidance_scale": float("nan")}, "guidance_scale"),
    ({"size": 12}, "multiple of 8"),
    ({"pipeline": "dall-e"}, "pipeline must be one of"),
])
def test_bad_requests_are_refused_before_any_step(tiny_pretrained, kw, match):
    with pytest.raises(ValueError, match=match):
        _run(**kw)


def test_the_guidance_explainer_replays_one_step(tiny_pretrained):
    run = _run()[-1][-1]
    eps1, x0_1, md1 = denoise.guidance(run, 2, 1.0)
    eps5, x0_5, md5 = denoise.guidance(run, 2, 5.0)
    assert "ε = ε_u + 5·(ε_t − ε_u)" in md5 and "t = " in md5
    assert eps1.size == eps5.size and eps1.tobytes() != eps5.tobytes()  # only the guided row moves with w
    top = (0, 0, eps1.width, eps1.height // 3)
    assert eps1.crop(top).tobytes() == eps5.crop(top).tobytes()  # eps_uncond does not depend on w
    with pytest.raises(ValueError, match="step must be in"):
        denoise.guidance(run, 4, 1.0)
    with pytest.raises(ValueError, match="Generate an image first"):
        denoise.guidance(None, 1, 1.0)


def test_compare_runs_two_schedulers_from_the_same_noise(tiny_pretrained):
    a, b, md = denoise.compare("a red circle", "", "DDIM", "DDIM", 3, 3.0, 1, 16, "ldm", "pretrained")
    assert a.width == 4 * 100 - 4  # three steps and the final image
    assert a.tobytes() == b.tobytes()  # the same scheduler from the same x_T ends in the same place
    c, d, _ = denoise.compare("a red circle", "", "DDIM", "Euler ancestral", 3, 3.0, 1, 16, "ldm", "pretrained")
    assert c.tobytes() == a.tobytes() and d.tobytes() != c.tobytes()
    assert "DDIM" in md


def test_the_text_encoder_panel_lists_the_tokens(tiny_pretrained):
    md = denoise.text_encoder_panel("a hexagon", "ldm", "pretrained")  # BPE splits the rarer word
    assert "`<|startoftext|>` `a</w>` `hex` `agon</w>` `<|endoftext|>`" in md and "(1, 16, 16)" in md


def test_presets_follow_the_model(tiny_pretrained):
    assert denoise.defaults("ldm", "pretrained")[:4] == denoise.PRESETS["ldm"]
    assert denoise.defaults("ldm-sd15", "pretrained")[:4] == denoise.PRESETS["ldm-sd15"]
    scheduler, steps, w, size, note = denoise.defaults("ldm", "bundled")
    assert (scheduler, steps, w, size) == denoise.PRESETS["bundled"] and "Shapes" in note


def test_word_maps_overlay_keeps_the_image_size():
    img = Image.new("RGB", (64, 64), "white")
    import numpy as np

    out = denoise.overlay(img, np.eye(8))
    assert out.size == (64, 64) and out.tobytes() != img.tobytes()


def test_clip_score_checks_the_prompt(tiny_pretrained):
    img = Image.new("RGB", (32, 32), "white")
    with pytest.raises(ValueError, match="at most 500"):
        denoise.clip_score(img, "x" * 10_000, "pretrained")
    assert "CLIP cosine(image, prompt) = " in denoise.clip_score(img, "a red circle", "pretrained")
    assert "empty" in denoise.clip_score(img, "", "pretrained")


def test_the_compile_warm_up_decodes_the_shapes_a_click_decodes(tiny_pretrained, monkeypatch):
    """A compiled preview decoder compiles once per input shape: the start-up warm-up must use the tab's shapes, or
    the compile lands on the first click."""
    from mmcore import ldm

    seen = {"warm": set(), "click": set()}
    phase = "warm"
    decode = ldm.decode
    monkeypatch.setattr(ldm, "decode", lambda bundle, latents, preview=False: (
        seen[phase].add((tuple(latents.shape), preview)), decode(bundle, latents, preview))[1])
    bundle, _ = denoise._bundle("ldm", "pretrained")
    ldm.warm_compiled(bundle)
    phase = "click"
    _run(size=bundle.default_size)
    assert seen["click"] <= seen["warm"]
    assert any(shape[0] == 2 and preview for shape, preview in seen["click"])  # x_t and x0, one batch
