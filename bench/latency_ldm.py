"""Reverse-process latency, side by side in one run (medians):

- the bundled ldm-shapes: 20 steps with classifier-free guidance, with every step's x_t and x0 preview decoded, and
  without previews; the ratio is the previews' overhead;
- the tab's own streaming handler (demos.denoise.generate: previews, attention maps, final image, figures);
- one step of a Stable-Diffusion-1.5-sized UNet (random init, the real architecture) at 512 px with guidance, plus a
  TAESD-sized preview decode, on this machine's device.

    python bench/latency_ldm.py [--repeats 5] [--skip-sd] [--skip-handler] [--sd-loop [--levers]]

On a GPU, `--sd-loop --levers` times the 25-step loop eager, with channels-last memory, and compiled
(torch.compile "reduce-overhead": Inductor kernels replayed as CUDA graphs), through mmcore.ldm.accelerate, which
the tab uses; it also prints the compile's one-off warm-up time.

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

from mmcore import ldm, models


def stats(ms: list[float]) -> tuple[float, float, float]:
    return statistics.median(ms), min(ms), max(ms)


def bundled(repeats: int, handler: bool = True) -> None:
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
    if not handler:
        return
    from demos import denoise  # needs Gradio

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


def stable_diffusion_loop(device: torch.device, steps: int = 25, levers: bool = False) -> None:
    """Our own loop (mmcore.ldm.denoise) over SD-1.5-shaped random-init parts at 512 px: 25 DDIM steps with
    guidance, with and without TAESD-shaped previews at every step (x_t and x0 decoded as one batch of two, as the
    tab shows them). SDPA attention. Eager; with `levers`, also channels-last, then compiled, through
    ldm.accelerate. Meant for a GPU; minutes on a CPU."""
    from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from mmcore.diffusion import VaeBundle

    torch.manual_seed(0)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    unet = UNet2DConditionModel(cross_attention_dim=768).to(device, dtype).eval()
    ldm.install_router(unet)  # as the loader does: every attention layer behind the router, SDPA inside
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
    target = 500 if device.type == "cuda" else None

    def loop(previews: bool) -> torch.Tensor:
        for step in ldm.denoise(bundle, req):
            if previews:
                ldm.decode(bundle, torch.cat([step.x_t, step.x0_pred]), preview=True)
        return step.latents

    def measure(label: str) -> torch.Tensor:
        t0 = time.perf_counter()
        loop(True)  # the first run: for a compiled model, the compile and the CUDA-graph capture
        if sync:
            sync()
        first = time.perf_counter() - t0
        repeats = 5 if device.type == "cuda" else 1
        plain = p50(lambda: loop(False), repeats, warmup=1, sync=sync)
        with_previews = p50(lambda: loop(True), repeats, warmup=1, sync=sync)
        print(f"{label}: first run {first:.1f} s")
        print(row(f"  {steps} DDIM steps + CFG, no previews", plain, target))
        print(row("  the same, TAESD x_t and x0 previews every step", with_previews, target))
        print(f"{'  preview overhead (with / without)':<58} {with_previews[0] / plain[0]:8.3f}x")
        return loop(False)

    print(f"SD-1.5-shaped (random init), 512 px, {device.type} {dtype}, torch {torch.__version__}")
    reference = measure("eager, SDPA")
    if levers and device.type == "cuda":
        ldm.accelerate(bundle, channels_last=True)
        cl = measure("eager, SDPA, channels-last")
        ldm.accelerate(bundle, channels_last=True, compile=True)
        compiled = measure("torch.compile reduce-overhead (CUDA graphs), SDPA, channels-last")
        for name, x in (("channels-last", cl), ("compiled", compiled)):
            err = float((x - reference).abs().max() / reference.abs().max())
            print(f"  final latent of {name} vs eager: max relative difference {err:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-sd", action="store_true", help="leave out the Stable-Diffusion-sized step")
    ap.add_argument("--sd-loop", action="store_true",
                    help="also time 25 guided steps of an SD-1.5-shaped model at 512 px (for a GPU)")
    ap.add_argument("--levers", action="store_true", help="with --sd-loop on CUDA: channels-last, then compiled")
    ap.add_argument("--skip-handler", action="store_true", help="leave out the tab's handler (which needs Gradio)")
    args = ap.parse_args()
    device = models.pick_device()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}")
    bundled(args.repeats, handler=not args.skip_handler)
    if not args.skip_sd:
        stable_diffusion_sized(device)
    if args.sd_loop:
        stable_diffusion_loop(device, levers=args.levers)


if __name__ == "__main__":
    main()
