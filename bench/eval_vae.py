"""Held-out reconstruction quality of the bundled VAE: per-image PSNR on test-split scenes it never saw.

    python bench/eval_vae.py [--n 1000]

PSNR = 10 log10(peak^2 / MSE) on the [-1, 1] scale (peak-to-peak 2), of Decoder(mean of Encoder(x)), averaged per
image. Also the compression and the latents' standard deviation after scaling (about 1 by construction).
Target: >= 28 dB on the classic world's test split, the world the latent-diffusion model draws.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from PIL import Image

from mmcore import diffusion as D
from mmcore import models, shapes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="test scenes per world")
    args = ap.parse_args()
    vae = models.load("vae", "bundled")
    s = vae.image_size
    print(f"bundled VAE ({models.get_spec('vae', 'bundled').name}), {s} px, f = {vae.factor}, "
          f"scaling factor {vae.scaling_factor:.4f}, torch {torch.__version__}")
    for world in shapes.WORLDS:
        values, stds = [], []
        for start in range(0, args.n, 100):
            scenes = [shapes.sample_scene(shapes.split_seed("test", start + k), world=world)
                      for k in range(min(100, args.n - start))]
            x = torch.cat([D.to_tensor(Image.fromarray(shapes.render(sc, s)), s) for sc in scenes])
            z = vae.encode(x)
            rec = vae.decode(z)
            values += [D.psnr(a, b) for a, b in zip(rec, x)]
            stds.append(float(z.std()))
        target = "   target >= 28 dB" if world == "classic" else ""
        print(f"{world:<8} test split ({len(values)} scenes): PSNR mean {statistics.mean(values):.2f} dB, median "
              f"{statistics.median(values):.2f} dB, 5th percentile {sorted(values)[len(values) // 20]:.2f} dB; "
              f"scaled latent std {statistics.mean(stds):.3f}{target}")
    c, h = vae.latent_channels, s // vae.factor
    print(f"compression: 3 x {s} x {s} = {3 * s * s:,} numbers -> {c} x {h} x {h} = {c * h * h:,} "
          f"({3 * s * s / (c * h * h):.0f}x fewer)")


if __name__ == "__main__":
    main()
