"""The reverse process: CLIP's text tower converted for diffusers, the owned denoising loop against diffusers' own
pipeline, guidance, cancel, per-word cross-attention, and validation. Tiny random-init pipelines, on the CPU."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from mmcore import ldm, models

PROMPTS = ["a red circle", "A Blue  square to the left of an orange star", "", "two objects: a small purple hexagon",
           "naïve café, with punctuation!"]


@pytest.fixture(scope="module")
def tiny(tiny_dirs) -> ldm.LdmBundle:
    return ldm.load_ldm(tiny_dirs["ldm"], torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def bundled_clip():
    from mmcore import clip

    return clip.load_clip(str(models.ASSETS / "models" / "clip-shapes"), torch.device("cpu"), torch.float32)


def _open_clip_token_features(model, ids: torch.Tensor) -> torch.Tensor:
    """open_clip's text tower up to its final LayerNorm: the token features (B, L, D) before pooling."""
    x = model.token_embedding(ids) + model.positional_embedding
    return model.ln_final(model.transformer(x, attn_mask=model.attn_mask))


# ------------------------------------------------------------------------------------------------ the text encoder

def test_tokenizer_gives_open_clips_ids_up_to_the_end_token(bundled_clip):
    tok = ldm.clip_tokenizer(32)
    ours = tok(PROMPTS, padding="max_length", max_length=32, truncation=True, return_tensors="pt").input_ids
    theirs = bundled_clip.tokenizer(PROMPTS)
    for a, b in zip(ours, theirs):
        end = int((b == tok.eos_token_id).nonzero()[0]) + 1
        assert torch.equal(a[:end], b[:end])
        assert (a[end:] == tok.eos_token_id).all()  # Stable Diffusion's padding


def test_converted_text_tower_gives_open_clips_token_features(bundled_clip):
    model = bundled_clip.model
    encoder = ldm.text_encoder_from_open_clip(model)
    ids = bundled_clip.tokenizer(PROMPTS)  # open_clip's own ids, zero-padded
    with torch.no_grad():
        ours = encoder(ids).last_hidden_state
        theirs = _open_clip_token_features(model, ids)
        pooled = encoder(ids).pooler_output @ model.text_projection  # the EOS token's feature, projected
        assert (ours - theirs).abs().max() <= 1e-4
        assert torch.allclose(pooled, model.encode_text(ids), atol=1e-4)  # CLIP's text embedding too


def test_the_bundled_pipeline_shares_the_clip_tabs_text_weights(bundled_clip):
    folder = models.ASSETS / "models" / "ldm-shapes"
    if not (folder / "model_index.json").is_file():
        pytest.skip("ldm-shapes is not trained yet")
    bundle = ldm.load_ldm(str(folder), torch.device("cpu"), torch.float32)
    ids = bundled_clip.tokenizer(["a green star above a red square"])
    with torch.no_grad():
        ours = bundle.text_encoder(ids).last_hidden_state
        theirs = _open_clip_token_features(bundled_clip.model, ids)
    assert (ours - theirs).abs().max() <= 2e-2  # fp16 storage of the same weights


# ------------------------------------------------------------------------------------------------------- the loop

def _request(**kw) -> ldm.Request:
    base = dict(prompt="a red circle", negative_prompt="", scheduler="DDIM", num_inference_steps=4,
                guidance_scale=3.0, seed=7, size=16)
    return ldm.Request(**{**base, **kw})


def test_the_tiny_pipeline_loads_as_is_with_diffusers(tiny_dirs):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_dirs["ldm"], local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    image = pipe("a red circle", num_inference_steps=2, height=16, width=16, output_type="np").images
    assert image.shape == (1, 16, 16, 3)


def test_our_loop_equals_the_diffusers_pipeline(tiny, tiny_dirs):
    """Same noise, same prompt, same scheduler: our numbered loop lands on the pipeline's latents."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_dirs["ldm"], local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    req = _request(num_inference_steps=5, guidance_scale=4.0)
    x_T = ldm.initial_latents(tiny, req.size, req.seed)
    theirs = pipe(req.prompt, num_inference_steps=5, guidance_scale=4.0, height=16, width=16, latents=x_T.clone(),
                  output_type="latent").images
    ours = list(ldm.denoise(tiny, req))[-1].latents
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(ours, x_T, atol=1e-2)  # it did move


@pytest.mark.parametrize("scheduler", list(ldm.SCHEDULERS))
def test_every_scheduler_streams_exactly_the_asked_steps_and_a_fixed_seed_repeats(tiny, scheduler):
    req = _request(scheduler=scheduler, num_inference_steps=3)
    steps = list(ldm.denoise(tiny, req))
    assert [s.index for s in steps] == [0, 1, 2]
    assert steps[0].t > steps[-1].t  # from noise towards the data
    again = list(ldm.denoise(tiny, req))
    assert torch.equal(steps[-1].latents, again[-1].latents)
    other = list(ldm.denoise(tiny, _request(scheduler=scheduler, num_inference_steps=3, seed=8)))
    assert not torch.allclose(steps[-1].latents, other[-1].latents)


def test_cancel_stops_within_one_step(tiny):
    cancel = threading.Event()
    seen = []
    for step in ldm.denoise(tiny, _request(num_inference_steps=10), cancel):
        seen.append(step.index)
        if step.index == 2:
            cancel.set()
    assert seen == [0, 1, 2]


def test_guidance_at_one_is_the_text_prediction_and_at_zero_the_unconditional(tiny):
    g = torch.Generator().manual_seed(0)
    u, t = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    assert torch.allclose(ldm.guide(u, t, 1.0), t, atol=1e-6)
    assert torch.allclose(ldm.guide(u, t, 0.0), u, atol=1e-6)
    assert torch.allclose(ldm.guide(u, t, 3.0), u + 3 * (t - u))
    # through the model: w = 1 without the unconditional branch equals w = 1 computed with it
    x = torch.randn(1, 4, 8, 8, generator=g)
    cond, _ = ldm.encode_prompt(tiny, "a red circle")
    uncond, _ = ldm.encode_prompt(tiny, "")
    out_u, out_t = ldm.predict(tiny, x, 500, cond, uncond)
    none, alone = ldm.predict(tiny, x, 500, cond, None)
    assert none is None and torch.allclose(out_t, alone, atol=1e-5)
    assert torch.allclose(ldm.guide(out_u, out_t, 1.0), alone, atol=1e-5)
    assert not torch.allclose(out_u, out_t, atol=1e-4)  # the prompt does change the prediction
    steps = list(ldm.denoise(tiny, _request(guidance_scale=1.0, num_inference_steps=2)))
    assert steps[0].eps_uncond is None and torch.equal(steps[0].eps, steps[0].eps_text)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_x0_and_epsilon_match_the_schedulers_own(prediction_type):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type, clip_sample=False)
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t = sched.timesteps[3]
    x_t = sched.add_noise(x0, eps, torch.tensor([int(t)]))
    output = eps if prediction_type == "epsilon" else sched.get_velocity(x0, eps, torch.tensor([int(t)]))
    eps_ours, x0_ours = ldm.to_epsilon_and_x0(output, x_t, float(sched.alphas_cumprod[int(t)]), prediction_type)
    assert torch.allclose(eps_ours, eps, atol=1e-4) and torch.allclose(x0_ours, x0, atol=1e-4)
    assert torch.allclose(x0_ours, sched.step(output, t, x_t).pred_original_sample, atol=1e-4)


def test_each_step_records_a_consistent_x0_and_noise(tiny):
    steps = list(ldm.denoise(tiny, _request(num_inference_steps=3)))
    for s in steps:
        assert s.x0_pred.shape == s.x_t.shape == (1, 4, 8, 8)
        eps, x0 = ldm.implied(tiny, s, ldm.guide(s.out_uncond, s.out_text, 3.0))
        assert torch.allclose(x0, s.x0_pred, atol=1e-5) and torch.allclose(eps, s.eps, atol=1e-5)
        abar = float(tiny.alphas_cumprod[s.t])  # and x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, as the lecture has it
        assert torch.allclose(math.sqrt(abar) * x0 + math.sqrt(1 - abar) * eps, s.x_t, atol=1e-4)
        assert math.isfinite(s.noise_norm) and s.noise_norm > 0
    image = ldm.decode(tiny, steps[-1].latents)
    assert image.shape == (1, 3, 16, 16) and image.abs().max() <= 1


def test_guidance_parts_recompute_the_unconditional_branch_when_the_run_had_none(tiny):
    guided = next(iter(ldm.denoise(tiny, _request(guidance_scale=2.0, num_inference_steps=2))))
    plain = next(iter(ldm.denoise(tiny, _request(guidance_scale=1.0, num_inference_steps=2))))
    assert plain.eps_uncond is None
    u, t = ldm.guidance_parts(tiny, _request(guidance_scale=1.0), plain)
    assert torch.allclose(u, guided.out_uncond, atol=1e-5) and torch.allclose(t, guided.out_text, atol=1e-5)
    assert torch.allclose(ldm.implied(tiny, guided, u)[0], guided.eps_uncond, atol=1e-5)


# ----------------------------------------------------------------------------------------------- attention maps

def test_words_of_joins_bpe_pieces():
    tokens = ["<|startoftext|>", "a</w>", "hexa", "gon</w>", "!</w>", "<|endoftext|>"]
    assert ldm.words_of(tokens) == [("a", [1]), ("hexagon", [2, 3]), ("!", [4])]


def test_word_maps_are_non_empty_normalised_and_follow_the_prompt(tiny):
    *steps, maps = list(ldm.attention_run(tiny, _request(prompt="a red circle", num_inference_steps=3)))
    assert len(steps) == 3 and isinstance(maps, ldm.WordMaps)
    assert maps.words == ["a", "red", "circle"]
    assert maps.maps.shape == (3, 8, 8)  # 16 px through the tiny VAE's f = 2: one map per word over the 8 x 8 latent
    assert torch.allclose(maps.maps.flatten(1).amax(1), torch.ones(3))
    assert (maps.maps >= 0).all()
    n_cross = sum(k.endswith("attn2.processor") for k in tiny.unet.attn_processors)
    assert maps.layers == n_cross
    assert not any(isinstance(p, ldm.CrossAttentionRecorder) for p in tiny.unet.attn_processors.values())
    # the recorder changes nothing about the images
    assert torch.allclose(steps[-1].latents, list(ldm.denoise(tiny, _request(num_inference_steps=3)))[-1].latents,
                          atol=1e-5)


# --------------------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("field, value, match", [
    ("prompt", "x" * 10_000, "at most 500"),
    ("num_inference_steps", 0, "num_inference_steps must be a whole number from 1"),
    ("num_inference_steps", 10**6, "num_inference_steps must be a whole number from 1"),
    ("num_inference_steps", 2.5, "whole number"),
    ("guidance_scale", float("nan"), "guidance_scale must be a finite number"),
    ("guidance_scale", -1, "guidance_scale must be in"),
    ("size", 20, "multiple of 8"),
    ("size", 4096, "multiple of 8 from 8 to 32"),
    ("seed", -1, "seed must be a whole number"),
    ("scheduler", "PLMS", "scheduler must be one of DDPM, DDIM"),
])
def test_bad_requests_get_messages(tiny, field, value, match):
    kw = dict(prompt="a red circle", negative_prompt="", scheduler="DDIM", num_inference_steps=4, guidance_scale=3.0,
              seed=0, size=16)
    kw[field] = value
    with pytest.raises(ValueError, match=match):
        ldm.Request.checked(tiny, **kw)


def test_an_empty_prompt_is_allowed(tiny):
    req = ldm.Request.checked(tiny, "", None, "Euler", 2, 1.0, 0, 16)
    assert req.prompt == "" and req.negative_prompt == ""
    assert len(list(ldm.denoise(tiny, req))) == 2


def test_the_catalogue_loads_both_tiers_through_one_loader(tiny_pretrained):
    for family in ("ldm", "ldm-sd15"):
        bundle = models.load(family, "pretrained")
        assert isinstance(bundle, ldm.LdmBundle) and bundle.default_size == 16
        assert bundle.prediction_type == "epsilon"
    assert np.isclose(float(bundle.alphas_cumprod[0]), 1 - 0.00085, atol=1e-6)


# ------------------------------------------------------------------------------------------------ preview decoder

def test_the_preview_decoder_learns_to_imitate_a_decoder_and_round_trips(tmp_path):
    torch.manual_seed(0)
    teacher = ldm.LatentPreview(4, 4, width=16)  # a random decoder of the same family stands in for the VAE
    z = torch.randn(256, 4, 8, 8)
    with torch.no_grad():
        images = teacher(z).tanh()
    student = ldm.LatentPreview(4, 4, width=32)
    with torch.no_grad():
        before = (student(z) - images).pow(2).mean()
    student.fit(z, images, steps=300, batch=64)
    with torch.no_grad():
        after = (student(z) - images).pow(2).mean()
    assert after < 0.2 * before
    again = ldm.LatentPreview(4, 4, width=32).fit(z, images, steps=300, batch=64)
    assert all(torch.equal(a, b) for a, b in zip(student.parameters(), again.parameters()))  # seeded
    student.save(tmp_path / "preview")
    loaded = ldm.LatentPreview.load(tmp_path / "preview")
    with torch.no_grad():
        assert torch.allclose(loaded.decode(z), student(z).clamp(-1, 1), atol=2e-2)  # fp16 storage


def test_the_preview_decoder_puts_each_cells_pixels_in_place():
    """A latent with one active cell decodes to a picture that changes only around that cell's f x f block (two 3x3
    convolutions reach two cells either way)."""
    torch.manual_seed(1)
    p = ldm.LatentPreview(4, 4).eval()
    z = torch.zeros(1, 4, 8, 8)
    with torch.no_grad():
        base = p(z)
        z[0, :, 3, 5] = 3.0
        changed = (p(z) - base).abs().sum(1)[0] > 1e-6  # (32, 32)
    rows, cols = changed.nonzero(as_tuple=True)
    assert rows.min() >= 4 * (3 - 2) and rows.max() < 4 * (3 + 3)
    assert cols.min() >= 4 * (5 - 2) and cols.max() < 4 * (5 + 3)
    assert changed[4 * 3:4 * 4, 4 * 5:4 * 6].all()  # the cell's own pixels do change
