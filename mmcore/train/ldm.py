"""Train the bundled text-to-image latent diffusion model (ldm-shapes) on Shapes captions.

    python -m mmcore.train ldm --steps 4500 --batch-size 64 --seed 0 --threads 1

Stable Diffusion in miniature. The VAE (vae-shapes) and the text encoder (the bundled CLIP's text tower, converted to
transformers' CLIPTextModel) stay frozen; only the UNet learns. Each step:

    z_0 = vae.encode(x) * scaling_factor        a 32 px scene -> a 4 x 8 x 8 latent (precomputed once)
    c   = text_encoder(tokenizer(caption))      one of the scene's true phrasings; the empty prompt 10% of the time,
                                                so that classifier-free guidance has an unconditional model to use
    z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps        (scheduler.add_noise)
    loss = w(t) * || unet(z_t, t, c) - v_t ||^2          v-prediction, min-SNR-5 weighting

The weights kept are an exponential moving average of the UNet's (diffusers' EMAModel). Scenes hold one or two
objects, one of them large, drawn from the train split; a sixth come from the composition split (past the scenes
that any evaluation uses), so every colour-shape pair appears in some caption. The result is saved as a diffusers
StableDiffusionPipeline folder (fp16 safetensors) in assets/models/ldm-shapes; `bench/eval_ldm.py --card` measures it
and writes the held-out numbers into its model card.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmcore import clip as clip_mod
from mmcore import ldm, models, shapes
from mmcore.train.common import (
    Clock,
    arguments,
    log,
    normalise,
    replace_section,
    seed_everything,
    warmup_cosine,
    write_model_card,
)

OUT = Path(__file__).resolve().parents[2] / "assets" / "models" / "ldm-shapes"
SCENE = dict(min_objects=1, max_objects=2, one_large=True)  # single-object scenes hold one large shape
COMPOSITION_OFFSET = 100_000  # composition-split scenes from here on; evaluations use the first few thousand
UNCOND_PROB = 0.1
MIN_SNR_GAMMA = 5.0


def scenes(n: int, world: str) -> tuple[torch.Tensor, list[shapes.Scene]]:
    """n scenes, five sixths from the train split and one sixth from the composition split: uint8 (n, 3, 32, 32)."""
    n_comp = n // 6
    a, sa = shapes.batch("train", 0, n - n_comp, 32, world=world, **SCENE)
    b, sb = shapes.batch("composition", COMPOSITION_OFFSET, n_comp, 32, world=world, **SCENE)
    return torch.from_numpy(np.concatenate([a, b])).permute(0, 3, 1, 2).contiguous(), sa + sb


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, bs: int = 256) -> torch.Tensor:
    """Scaled latents (n, 4, 8, 8): the encoder's mean times the VAE's scaling_factor."""
    s = vae.config.scaling_factor
    return torch.cat([vae.encode(normalise(images[i:i + bs])).latent_dist.mean * s for i in range(0, len(images), bs)])


@torch.no_grad()
def encode_text(tokenizer, text_encoder, texts: list[str]) -> torch.Tensor:
    ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids).last_hidden_state


def sampler(scheduler):
    """The scheduler the folder ships with: DDIM, built from the training schedule's config (DDPM's own ancestral
    sampler needs far more than 20 steps). Any other diffusers scheduler can be built from the same config."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(scheduler.config)


def ship_ddim(out: Path) -> None:
    """Swap a saved folder's scheduler for `sampler(...)`, rewriting scheduler/ and model_index.json consistently."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True, dtype=torch.float16,
                                                   safety_checker=None, requires_safety_checker=False)
    if not isinstance(pipe.scheduler, DDIMScheduler):
        pipe.scheduler = sampler(pipe.scheduler)
        pipe.save_pretrained(out, safe_serialization=True)


def compute_in_float32(out: Path) -> None:
    """The weights are stored in fp16, but transformers 5 would also *run* the text encoder in the dtype its config
    names, beside a UNet and VAE that diffusers loads in fp32; say float32, so the folder runs as is. Also drops the
    `_name_or_path` that a save after a load records: the folder it was loaded from, a path on the training machine."""
    config = out / "text_encoder" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "dtype": "float32"}, indent=2) + "\n")
    for config in (out / "model_index.json", *out.glob("*/config.json")):
        cfg = json.loads(config.read_text())
        if cfg.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


@torch.no_grad()
def fit_preview(vae, latents: torch.Tensor, out: Path, steps: int = 2000, n: int = 4096) -> float:
    """Fit the fast preview decoder to the VAE's own decodes of up to `n` latents (four fifths at most), save it in
    out/preview, and return its PSNR (dB) against the VAE on latents it was not fitted on."""
    n = min(n, len(latents) * 4 // 5)
    fit, held = latents[:n], latents[n:n + 512]
    s = vae.config.scaling_factor

    def vae_decode(z: torch.Tensor) -> torch.Tensor:
        return torch.cat([vae.decode(z[i:i + 256] / s).sample.clamp(-1, 1) for i in range(0, len(z), 256)])

    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    preview = ldm.LatentPreview(latents.shape[1], factor).fit(fit, vae_decode(fit), steps=steps)
    preview.save(out / ldm.PREVIEW_DIR)
    mse = (preview.decode(held) - vae_decode(held)).pow(2).mean(dim=(1, 2, 3))
    value = float((10 * torch.log10(4 / mse)).mean())  # peak-to-peak 2 on the [-1, 1] scale
    config = out / ldm.PREVIEW_DIR / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "held_out_psnr_vs_vae_db": round(value, 2),
                                  "fitted_on_latents": len(fit)}) + "\n")
    return value


FINISH_SECTION = "## Shipped sampler and preview decoder"


def note_finish(out: Path, psnr: float) -> None:
    """Say in the model card what `finish` did, replacing an earlier note of the same kind."""
    replace_section(out / "MODEL_CARD.md", FINISH_SECTION, (
        "- The folder ships diffusers' `DDIMScheduler`, built from the training `DDPMScheduler`'s config "
        "(v-prediction, cosine schedule, trailing timesteps); any diffusers scheduler can be built from it.\n"
        f"- `preview/` holds `LatentPreview` (mmcore/ldm.py), a 42 k-parameter decoder for per-step previews that "
        f"imitates the VAE's decoder: {psnr:.1f} dB PSNR against the VAE's own decodes on held-out latents. "
        "diffusers' loader ignores the folder."))


def main() -> None:
    args = arguments(__doc__, steps=4500, lr=5e-4, eval_scenes=0, out=OUT, batch_size=64, train_scenes=60_000,
                     world="classic", extra=[("--ema-decay", dict(type=float, default=0.999)),
                                             ("--preview-steps", dict(type=int, default=2000)),
                                             ("--finish-only", dict(action="store_true",
                                                                    help="only finish the saved pipeline: ship DDIM, "
                                                                         "fit the fast preview decoder"))])
    clock = Clock()
    gen = seed_everything(args.seed)
    rng = np.random.default_rng(args.seed)
    from diffusers import AutoencoderKL
    from diffusers.training_utils import EMAModel

    vae = AutoencoderKL.from_pretrained(models.ASSETS / "models" / "vae-shapes", dtype=torch.float32).eval()
    clip = clip_mod.load_clip(str(models.ASSETS / "models" / "clip-shapes"), torch.device("cpu"), torch.float32)
    text_encoder = ldm.text_encoder_from_open_clip(clip.model)
    tokenizer = ldm.clip_tokenizer(text_encoder.config.max_position_embeddings)

    if args.finish_only:
        ship_ddim(args.out)
        compute_in_float32(args.out)
        images, _ = scenes(min(args.train_scenes, 6_000), args.world)
        psnr = fit_preview(vae, encode_latents(vae, images), args.out, args.preview_steps)
        note_finish(args.out, psnr)
        print(f"preview decoder: {psnr:.2f} dB PSNR against the VAE on held-out latents", flush=True)
        return
    images, train_scenes = scenes(args.train_scenes, args.world)
    latents = encode_latents(vae, images)
    phrasings = [shapes.captions(s) for s in train_scenes]
    print(f"{len(latents)} scenes -> latents {tuple(latents.shape[1:])} (std {latents.std():.3f}) "
          f"in {clock.minutes:.1f} min", flush=True)

    unet, scheduler = ldm.bundled_parts(args.seed)
    if args.init:
        from diffusers import UNet2DConditionModel
        unet = UNet2DConditionModel.from_pretrained(args.init, subfolder="unet", dtype=torch.float32)
    n_params = sum(p.numel() for p in unet.parameters())
    print(f"UNet: {n_params / 1e6:.2f} M parameters", flush=True)
    ema = EMAModel(unet.parameters(), decay=args.ema_decay, use_ema_warmup=True, power=2 / 3)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=1e-2)
    lr_sched = warmup_cosine(opt, args.steps)
    abar = scheduler.alphas_cumprod
    snr = abar / (1 - abar)
    weight = snr.clamp(max=MIN_SNR_GAMMA) / (snr + 1)  # min-SNR-gamma for v-prediction

    def save(step: int) -> None:
        export = copy.deepcopy(unet)  # the same architecture (also after --init), holding the EMA weights
        ema.copy_to(export.parameters())
        pipe = ldm.assemble(export, vae, text_encoder, tokenizer, sampler(scheduler))
        args.out.mkdir(parents=True, exist_ok=True)
        # the frozen VAE and text encoder go through fp16 and back: from the first save on, training reads the same
        # fp16-rounded text features the shipped folder gives
        pipe.to(dtype=torch.float16).save_pretrained(args.out, safe_serialization=True)
        pipe.to(dtype=torch.float32)
        compute_in_float32(args.out)
        write_model_card(
            args.out, title="ldm-shapes: a tiny text-to-image latent diffusion model of the Shapes world",
            summary="Stable Diffusion in miniature, as a diffusers `StableDiffusionPipeline` folder: a "
                    f"{n_params / 1e6:.1f} M-parameter `UNet2DConditionModel` denoises 4 x 8 x 8 latents of the "
                    "bundled VAE (vae-shapes), cross-attending to the token features of the bundled CLIP's text tower "
                    "(converted to transformers' `CLIPTextModel`, with CLIP's BPE `CLIPTokenizer`). v-prediction on "
                    "a cosine schedule (`DDPMScheduler`, 1000 steps); any diffusers scheduler can sample it. "
                    "Load it with `StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)`.",
            command="python -m mmcore.train ldm " + " ".join(sys.argv[1:]), seed=args.seed, minutes=clock.minutes,
            metrics={"steps_trained": step, "final_loss": float(np.mean(losses[-100:]))},
            config={"unet": ldm.BUNDLED_UNET, "scheduler": ldm.BUNDLED_SCHEDULER, "parameters": n_params,
                    "ema_decay": args.ema_decay, "uncond_prob": UNCOND_PROB, "min_snr_gamma": MIN_SNR_GAMMA},
            data=f"{len(latents)} scenes of the {args.world} Shapes world at 32 px, one or two objects, one of them "
                 f"large: five sixths from the train split (seeds {shapes.SPLITS['train']}+), one sixth from the "
                 f"composition split from scene {COMPOSITION_OFFSET} on, so that every colour-shape pair is seen. "
                 "Each step pairs a scene with one of its true phrasings (shapes.captions).")
        print(f"saved {args.out} at step {step}", flush=True)

    losses: list[float] = []
    unet.train()
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(latents), (args.batch_size,), generator=gen)
        texts = ["" if rng.random() < UNCOND_PROB else str(rng.choice(phrasings[i])) for i in idx.tolist()]
        cond = encode_text(tokenizer, text_encoder, texts)
        z0 = latents[idx]
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(z0),), generator=gen)
        zt = scheduler.add_noise(z0, noise, t)
        target = scheduler.get_velocity(z0, noise, t)
        pred = unet(zt, t, cond).sample
        loss = (weight[t] * F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        ema.step(unet.parameters())
        losses.append(loss.item())
        if step % 50 == 0:
            log(step, clock, loss=float(np.mean(losses[-50:])), lr=lr_sched.get_last_lr()[0])
        if step % 500 == 0 or step == args.steps:
            save(step)
    psnr = fit_preview(vae, latents, args.out, args.preview_steps)
    note_finish(args.out, psnr)
    print(f"preview decoder: {psnr:.2f} dB PSNR against the VAE", flush=True)


if __name__ == "__main__":
    main()
