"""The reverse process: CLIP's text tower converted for diffusers, the owned denoising loop against diffusers' own
pipeline, guidance, cancel, per-word cross-attention, and validation. Tiny random-init pipelines, on the CPU."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from mmcore import clip, ldm, models

PROMPTS = ["a red circle", "A Blue  square to the left of an orange star", "", "two objects: a small purple hexagon",
           "naïve café, with punctuation!"]


@pytest.fixture(scope="module")
def tiny(tiny_dirs) -> ldm.LdmBundle:
    return ldm.load_ldm(tiny_dirs["ldm"], torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def bundled_clip():
    return clip.load_clip(str(models.ASSETS / "models" / "clip-shapes"), torch.device("cpu"), torch.float32)


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
    theirs = clip.token_features(bundled_clip, PROMPTS)
    with torch.no_grad():
        ours = encoder(ids).last_hidden_state
        pooled = encoder(ids).pooler_output @ model.text_projection  # the EOS token's feature, projected
        assert (ours - theirs).abs().max() <= 1e-4
        assert torch.allclose(pooled, model.encode_text(ids), atol=1e-4)  # CLIP's text embedding too


def _tiny_tower(**text_cfg):
    import open_clip

    torch.manual_seed(0)
    quick = text_cfg.pop("quick_gelu", False)
    return open_clip.CLIP(embed_dim=16, quick_gelu=quick,
                          vision_cfg={"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
                          text_cfg={"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 2,
                                    **text_cfg}).eval()


def test_openais_quick_gelu_towers_convert_too():
    model = _tiny_tower(quick_gelu=True)
    encoder = ldm.text_encoder_from_open_clip(model)
    assert encoder.config.hidden_act == "quick_gelu"
    ids = torch.randint(0, 49408, (2, 16))
    with torch.no_grad():
        x = model.token_embedding(ids) + model.positional_embedding
        theirs = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
        assert (encoder(ids).last_hidden_state - theirs).abs().max() <= 1e-5


def test_a_tower_with_weights_clip_text_model_cannot_hold_is_refused():
    with pytest.raises(ValueError, match="ls_1"):
        ldm.text_encoder_from_open_clip(_tiny_tower(ls_init_value=0.1))  # LayerScale


def test_the_bundled_pipeline_shares_the_clip_tabs_text_weights(bundled_clip):
    folder = models.ASSETS / "models" / "ldm-shapes"
    if not (folder / "model_index.json").is_file():
        pytest.skip("ldm-shapes is not trained yet")
    bundle = ldm.load_ldm(str(folder), torch.device("cpu"), torch.float32)
    ids = bundled_clip.tokenizer(["a green star above a red square"])
    theirs = clip.token_features(bundled_clip, ["a green star above a red square"])
    with torch.no_grad():
        ours = bundle.text_encoder(ids).last_hidden_state
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


@pytest.mark.parametrize("scheduler", list(ldm.SCHEDULERS))
def test_our_loop_equals_the_diffusers_pipeline(tiny, tiny_dirs, scheduler):
    """Same seed, same prompt, same scheduler: our numbered loop lands on the pipeline's latents, for every scheduler
    (Euler's scaled inputs, the ancestral samplers' fresh noise from the one seeded generator, DPM++'s history)."""
    import diffusers
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_dirs["ldm"], local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.scheduler = getattr(diffusers, ldm.SCHEDULERS[scheduler]).from_config(pipe.scheduler.config)
    req = _request(num_inference_steps=5, guidance_scale=4.0, scheduler=scheduler)
    theirs = pipe(req.prompt, num_inference_steps=5, guidance_scale=4.0, height=16, width=16, output_type="latent",
                  generator=torch.Generator().manual_seed(req.seed)).images
    ours = list(ldm.denoise(tiny, req))[-1].latents
    assert torch.allclose(ours, theirs, atol=1e-4)
    x_T = ldm.initial_latents(tiny, req.size, torch.Generator().manual_seed(req.seed))
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

def test_the_recorder_keeps_the_prompts_half_as_softmax_qk_per_pixel():
    """One cross-attention layer, a batch of two whose halves differ (unconditional, prompt): the recorded map at token
    l and pixel (y, x) is softmax(Q K^T / sqrt(d)) of the prompt's half, summed over heads, at row y * side + x."""
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    attn = Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4).eval()
    side, L = 4, 5
    hidden = torch.randn(2, side * side, 8)
    text = torch.randn(2, L, 6)
    rec = ldm.CrossAttentionRecorder(side)
    with torch.no_grad():
        out = rec.attend(attn, hidden, text, None)
        plain = attn(hidden, text)  # the layer's own processor
        q = attn.to_q(hidden[1]).view(side * side, 2, 4).transpose(0, 1)  # (heads, h w, d) of the prompt's half
        k = attn.to_k(text[1]).view(L, 2, 4).transpose(0, 1)
        probs = (q @ k.transpose(1, 2) / 2.0).softmax(-1).sum(0)  # (h w, L), heads summed; sqrt(d) = 2
    assert torch.allclose(out, plain, atol=1e-5)
    expected = probs.T.reshape(L, side, side)  # map[l, y, x] = probs[y * side + x, l]
    assert torch.allclose(rec.maps, expected, atol=1e-5)
    assert not torch.allclose(rec.maps, expected.transpose(1, 2), atol=1e-3)  # orientation matters here
    assert rec.calls == 1


def test_two_requests_at_once_each_record_only_their_own_attention(tiny):
    """Two generations interleaved step by step on the one shared model (as two users' requests can be): each gets the
    maps it would get alone, and neither changes the other's images."""
    a, b = _request(prompt="a red circle", num_inference_steps=3), _request(prompt="a blue star", seed=3,
                                                                            num_inference_steps=3)
    alone_a, alone_b = list(ldm.attention_run(tiny, a)), list(ldm.attention_run(tiny, b))
    run_a, run_b, mixed_a, mixed_b = ldm.attention_run(tiny, a), ldm.attention_run(tiny, b), [], []
    for x, y in zip(run_a, run_b):
        mixed_a.append(x)
        mixed_b.append(y)
    for alone, mixed in ((alone_a, mixed_a), (alone_b, mixed_b)):
        assert alone[-1].words == mixed[-1].words
        assert torch.allclose(alone[-1].maps, mixed[-1].maps, atol=1e-6)
        assert torch.allclose(alone[-2].latents, mixed[-2].latents, atol=1e-6)


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
    assert all(isinstance(p, ldm.AttentionRouter) for p in tiny.unet.attn_processors.values())
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


def test_a_large_model_on_a_cpu_gets_a_work_budget(tiny, monkeypatch):
    monkeypatch.setattr(ldm, "_small", lambda bundle: False)  # pretend the tiny pipeline is Stable Diffusion
    ldm.Request.checked(tiny, "a cat", "", "DDIM", 20, 7.5, 0, 16)  # 20 steps x 2: SD 1.5's preset
    with pytest.raises(ValueError, match="many minutes"):
        ldm.Request.checked(tiny, "a cat", "", "DDIM", 25, 7.5, 0, 16)
    ldm.Request.checked(tiny, "a cat", "", "DDIM", 40, 1.0, 0, 16)  # no guidance: one UNet call a step
    with pytest.raises(ValueError, match="multiple of 8 from 8 to 16"):
        ldm.Request.checked(tiny, "a cat", "", "DDIM", 4, 1.0, 0, 32)  # no upscaling on a CPU


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


def test_accelerate_leaves_a_cpu_model_as_it_is(tiny):
    unet = tiny.unet
    assert ldm.accelerate(tiny, compile=True) is tiny and tiny.unet is unet
    assert tiny.unet.conv_in.weight.is_contiguous()  # not turned channels-last either


def test_accelerate_on_cuda_goes_channels_last_and_compiles_once(tiny, tiny_dirs):
    """The CUDA branch, on CPU modules (torch.compile only wraps until the first call): channels-last weights for the
    UNet and the TAESD decoder, each compiled once however often the tab asks."""
    import copy
    import dataclasses

    taesd = models.get_spec("taesd", "pretrained").loader(tiny_dirs["taesd"], torch.device("cpu"), torch.float32)
    bundle = dataclasses.replace(tiny, unet=copy.deepcopy(tiny.unet), preview=taesd, device=torch.device("cuda"))
    ldm.accelerate(bundle)
    assert bundle.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert not hasattr(bundle.unet, "_orig_mod")  # compiling is asked for separately
    ldm.accelerate(bundle, compile=True)
    compiled_unet, compiled_decoder = bundle.unet, taesd.model.decoder
    assert hasattr(compiled_unet, "_orig_mod") and hasattr(compiled_decoder, "_orig_mod")
    ldm.accelerate(bundle, compile=True)
    assert bundle.unet is compiled_unet and taesd.model.decoder is compiled_decoder
    assert bundle.unet.config.in_channels == tiny.unet.config.in_channels  # the wrapper still reads as the UNet


class _Compiled(torch.nn.Module):
    """Stands in for torch.compile's wrapper: the original module under `_orig_mod`, and a forward that must not run
    while attention is being recorded."""

    def __init__(self, unet) -> None:
        super().__init__()
        self._orig_mod = unet
        self.calls = 0

    def __getattr__(self, name):  # as torch.compile's wrapper does: what it lacks, the original has
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["_orig_mod"], name)

    def forward(self, *args, **kwargs):
        self.calls += 1
        assert "cross_attention_kwargs" not in kwargs, "the compiled UNet was handed the recorder"
        return self._orig_mod(*args, **kwargs)


def test_a_recorded_run_calls_the_eager_unet_and_a_plain_run_the_compiled_one(tiny):
    import dataclasses

    wrapped = dataclasses.replace(tiny, unet=_Compiled(tiny.unet))
    req = _request(num_inference_steps=3)
    recorded = list(ldm.attention_run(wrapped, req))
    assert wrapped.unet.calls == 0 and recorded[-1].words  # every step went to the original, maps and all
    assert torch.equal(recorded[-2].latents, list(ldm.attention_run(tiny, req))[-2].latents)
    plain = list(ldm.denoise(wrapped, req))
    assert wrapped.unet.calls == 3  # the same run, but SDPA in place of the recorder's explicit softmax:
    torch.testing.assert_close(plain[-1].latents, recorded[-2].latents, atol=1e-3, rtol=1e-3)
