"""Reverse-process latency, side by side in one run (medians):

- the bundled ldm-shapes: 20 steps with classifier-free guidance, with every step's x_t and x0 preview decoded, and
  without previews; the ratio is the previews' overhead;
- the tab's own streaming handler (demos.denoise.generate: previews, attention maps, final image, figures);
- one step of a Stable-Diffusion-1.5-sized UNet (random init, the real architecture) at 512 px with guidance, plus a
  TAESD-sized preview decode, on this machine's device.

    python bench/latency_ldm.py [--repeats 5] [--skip-sd] [--sd-loop]

Click -> rendered in the browser is measured by bench/browser_latency.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import statistics
import time

import torch
from timing import p50, row

from demos import denoise
from mmcore import ldm, models


def stats(ms: list[float]) -> tuple[float, float, float]:
    return statistics.median(ms), min(ms), max(ms)


def bundled(repeats: int) -> None:
    bundle = models.load("ldm", "bundled")
    req = ldm.Request("a red circle", "", "DDIM", 20, 3.0, 0, 32)

    def loop(previews: bool) -> None:
        for step in ldm.denoise(bundle, req):
            if previews:
                ldm.decode(bundle, torch.cat([step.x_t, step.x0_pred]), preview=True)
        ldm.decode(bundle, step.latents)

    # interleaved, so that a slow moment of the machine lands on both sides alike
    times = {False: [], True: []}
    for previews in [False, True] * (repeats + 1):
        t0 = time.perf_counter()
        loop(previews)
        times[previews].append((time.perf_counter() - t0) * 1000)
    plain, with_previews = (stats(times[k][1:]) for k in (False, True))  # the first of each is a warm-up
    print(row("bundled: 20 DDIM steps with guidance, no previews", plain))
    print(row("bundled: the same, x_t and x0 previews decoded every step", with_previews, 2000))
    ratio = with_previews[0] / plain[0]
    verdict = "PASS" if ratio <= 1.15 else "FAIL"
    print(f"{'preview overhead (with / without)':<58} {ratio:8.3f}x   target ≤ 1.15: {verdict}")
    args = dict(prompt="a red circle", negative_prompt="", scheduler="DDIM", num_inference_steps=20,
                guidance_scale=3.0, seed=0, size=32, pipeline="ldm", tier="bundled")
    print(row("the tab's handler: 20 streamed steps + word maps + result", p50(
        lambda: list(denoise.generate(**args)), repeats), 2000))


def stable_diffusion_sized(device: torch.device) -> None:
    """One guided step of SD-1.5's UNet at 512 px (64 x 64 latents) and a TAESD-sized decode, random init."""
    from diffusers import AutoencoderTiny, UNet2DConditionModel

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    unet = UNet2DConditionModel(cross_attention_dim=768).to(device, dtype).eval()  # SD-1.5's architecture, 860 M
    taesd = AutoencoderTiny().to(device, dtype).eval()
    n = sum(p.numel() for p in unet.parameters()) / 1e6
    x = torch.randn(2, 4, 64, 64, device=device, dtype=dtype)  # guidance: a batch of two
    c = torch.randn(2, 77, 768, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    repeats = 10 if device.type == "cuda" else 2
    with torch.inference_mode():
        print(row(f"SD-1.5-sized UNet ({n:.0f} M), 512 px, one guided step ({device.type})",
                  p50(lambda: unet(x, 500, c), repeats, warmup=1, sync=sync)))
        print(row("TAESD-sized preview decode, 64x64 latent -> 512 px",
                  p50(lambda: taesd.decode(x[:1]), repeats, warmup=1, sync=sync)))


def stable_diffusion_loop(device: torch.device, steps: int = 25) -> None:
    """Our own loop (mmcore.ldm.denoise) over SD-1.5-shaped random-init parts at 512 px: 25 DDIM steps with
    guidance, with and without a TAESD-shaped preview of x0 at every step. Eager, SDPA attention; no torch.compile
    (a compile would land on the first click). Meant for a GPU; minutes on a CPU."""
    from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from mmcore.diffusion import VaeBundle

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    unet = UNet2DConditionModel(cross_attention_dim=768).to(device, dtype).eval()
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77)).to(device, dtype).eval()
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                        sample_size=512).to(device, dtype).eval()
    taesd = VaeBundle(AutoencoderTiny().to(device, dtype).eval(), "tiny", 512, device, dtype)
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    bundle = ldm.LdmBundle(unet, vae, text, ldm.clip_tokenizer(77), dict(sched.config),
                           sched.alphas_cumprod.float(), device, dtype, preview=taesd, name="sd15-shaped")
    req = ldm.Request("a photo of a cat", "", "DDIM", steps, 7.5, 0, 512)
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    def loop(previews: bool) -> None:
        for step in ldm.denoise(bundle, req):
            if previews:
                ldm.decode(bundle, step.x0_pred, preview=True)

    repeats = 5 if device.type == "cuda" else 1
    plain = p50(lambda: loop(False), repeats, warmup=1, sync=sync)
    with_previews = p50(lambda: loop(True), repeats, warmup=1, sync=sync)
    print(row(f"SD-1.5-shaped, 512 px, {steps} DDIM steps + CFG, no previews ({device.type}, {dtype})", plain,
              500 if device.type == "cuda" else None))
    print(row("the same with a TAESD preview of x0 every step", with_previews, 500 if device.type == "cuda" else None))
    print(f"{'preview overhead (with / without)':<58} {with_previews[0] / plain[0]:8.3f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-sd", action="store_true", help="leave out the Stable-Diffusion-sized step")
    ap.add_argument("--sd-loop", action="store_true",
                    help="also time 25 guided steps of an SD-1.5-shaped model at 512 px (for a GPU)")
    args = ap.parse_args()
    device = models.pick_device()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}")
    bundled(args.repeats)
    if not args.skip_sd:
        stable_diffusion_sized(device)
    if args.sd_loop:
        stable_diffusion_loop(device)


if __name__ == "__main__":
    main()
