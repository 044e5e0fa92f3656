"""Diffusion tab latency, handler time (p50) on the bundled tier: a t change (closed form, then its histogram), one
chain step, and the VAE encode/noise/decode panel; plus Stable Diffusion's real-size VAE decode at 256 px (random init).

    python bench/latency_diffusion.py [--repeats 20]

Click -> rendered in the browser is measured by bench/browser_latency.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from timing import p50, row

from demos import diffusion as tab

PARAMS = ("linear", 1e-4, 0.02, 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA: {torch.cuda.is_available()}")
    image, _ = tab.new_scene(seed=3)
    ts = iter(range(1, 10_000))
    print(row("t change: closed form x_t and its numbers (forward)",
              p50(lambda: tab.forward(image, *PARAMS, next(ts) % 1000, 0), args.repeats), 100))
    print(row("its histogram, the event after (histogram)",
              p50(lambda: tab.histogram(image, *PARAMS, next(ts) % 1000, 0), args.repeats)))
    state = {"t": 0}

    def one_step():
        state["t"] = tab.chain(image, *PARAMS, state["t"], 1, 0)[0]

    print(row("one chain step (cached state, one application of q)", p50(one_step, args.repeats), 100))
    print(row("VAE panel: encode, reconstruct, noise both, decode (bundled)",
              p50(lambda: tab.latent(image, "vae", "bundled", *PARAMS, 300, 0), args.repeats), 150))
    print(row("schedule curves (3 schedules x 4 curves)", p50(lambda: tab.curves(*PARAMS), args.repeats)))

    from diffusers import AutoencoderKL

    sd_vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                           up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                           sample_size=512).eval()  # Stable Diffusion's VAE architecture, random init
    z = torch.randn(1, 4, 32, 32)
    with torch.inference_mode():
        print(row("Stable Diffusion VAE (real size, random init): decode 4x32x32 -> 256 px",
                  p50(lambda: sd_vae.decode(z), max(3, args.repeats // 5), warmup=1)))


if __name__ == "__main__":
    main()
