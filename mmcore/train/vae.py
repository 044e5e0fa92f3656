"""Train the bundled VAE (a diffusers AutoencoderKL) on Shapes scenes: 32 px images -> 4 x 8 x 8 latents (f = 4).

    python -m mmcore.train vae --steps 3000 --seed 0 --threads 2

The loss is the reconstruction (L1 + MSE) plus a small KL term that keeps the latent space smooth enough to diffuse
in. After training, the latents' standard deviation is measured on training scenes and its inverse saved as the
config's `scaling_factor`, as Stable Diffusion's 0.18215 was. Writes fp16 safetensors in diffusers' save_pretrained
layout and a model card to assets/models/vae-shapes/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from mmcore import shapes
from mmcore.diffusion import BUNDLED_VAE, psnr
from mmcore.train.common import Clock, arguments, log, normalise, seed_everything, warmup_cosine, write_model_card

OUT = Path(__file__).resolve().parents[2] / "assets" / "models" / "vae-shapes"
KL_WEIGHT = 1e-6


def make_split(split: str, n: int, size: int, world: str) -> torch.Tensor:
    """uint8 images (n, 3, size, size) of `split`."""
    images, _ = shapes.batch(split, 0, n, size, world=world)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def mean_psnr(model, x: torch.Tensor, bs: int = 256) -> float:
    """Mean per-image PSNR (dB) of the deterministic reconstruction (the posterior mean, decoded)."""
    model.eval()
    values = []
    for i in range(0, len(x), bs):
        xb = normalise(x[i:i + bs])
        rec = model.decode(model.encode(xb).latent_dist.mean).sample
        values += [psnr(a, b) for a, b in zip(rec, xb)]
    model.train()
    return sum(values) / len(values)


def main() -> None:
    args = arguments(__doc__, steps=3000, lr=1e-3, eval_scenes=1_024, out=OUT, batch_size=32, train_scenes=20_000,
                     world="classic")
    clock = Clock()
    gen = seed_everything(args.seed)
    from diffusers import AutoencoderKL

    size = BUNDLED_VAE["sample_size"]
    x_train = make_split("train", args.train_scenes, size, args.world)
    x_val = make_split("val", args.eval_scenes, size, args.world)
    print(f"rendered {len(x_train)} train / {len(x_val)} val scenes in {clock.minutes:.1f} min", flush=True)

    model = AutoencoderKL(**BUNDLED_VAE)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params / 1e6:.2f} M parameters", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    sched = warmup_cosine(opt, args.steps)

    best, best_state = -1.0, None
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(x_train), (args.batch_size,), generator=gen)
        xb = normalise(x_train[idx])
        posterior = model.encode(xb).latent_dist
        rec = model.decode(posterior.sample()).sample
        loss_rec = F.l1_loss(rec, xb) + F.mse_loss(rec, xb)
        loss = loss_rec + KL_WEIGHT * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0:
            log(step, clock, loss=loss.item(), rec=loss_rec.item())
        if step % 1000 == 0 or step == args.steps:
            value = mean_psnr(model, x_val)
            log(step, clock, val_psnr=value)
            if value >= best:
                best, best_state = value, {k: v.clone() for k, v in model.state_dict().items()}

    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():  # scaling_factor = 1 / std of the latents, so the diffusion model sees unit variance
        z = torch.cat([model.encode(normalise(x_train[i:i + 256])).latent_dist.mean
                       for i in range(0, min(2048, len(x_train)), 256)])
    scaling_factor = float(1.0 / z.std())
    model.register_to_config(scaling_factor=scaling_factor)
    metrics = {"val_psnr_db": best}
    for world in shapes.WORLDS:
        metrics[f"test_psnr_db_{world}"] = mean_psnr(model, make_split("test", args.eval_scenes, size, world))
    metrics.update(scaling_factor=scaling_factor, test_scenes_per_world=args.eval_scenes)
    print(metrics, flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    model.half().save_pretrained(args.out)  # safetensors by default
    write_model_card(
        args.out, title="vae-shapes: a tiny VAE for latent diffusion on the Shapes world",
        summary="A diffusers `AutoencoderKL` that compresses a 32 px Shapes scene (3 x 32 x 32 = 3,072 numbers) to "
                "a 4 x 8 x 8 latent (256 numbers, 12x fewer), as Stable Diffusion's VAE turns 3 x 512 x 512 into "
                "4 x 64 x 64. Same class and loader as Stable Diffusion's VAE. Its `scaling_factor` is 1 / std of its "
                "own latents, measured after training.",
        command="python -m mmcore.train vae " + " ".join(sys.argv[1:]), seed=args.seed, minutes=clock.minutes,
        metrics=metrics, config={**BUNDLED_VAE, "scaling_factor": scaling_factor, "parameters": n_params},
        data=f"{args.train_scenes} train scenes of the {args.world} Shapes world (seeds {shapes.SPLITS['train']}+), "
             f"{size} px; loss L1 + MSE + {KL_WEIGHT:g} KL. PSNR is measured on the test split (seeds never trained "
             "on), per image, peak-to-peak 2 on the [-1, 1] scale.")
    print(f"saved {args.out}", flush=True)


if __name__ == "__main__":
    main()
