"""CUDA check of mmcore: the bundled models on the GPU in fp16 agree with the CPU in fp32, attention maps stay valid
in fp16, and p50 latencies on CUDA for the bundled models and for ViT-B/16 and ViT-B-32 at their real size (random
init). Then the diffusion tab's path with MMLAB_COMPILE=1: the bundled ldm-shapes compiled and warmed, a run that
records per-word attention (eager underneath), and compiled runs from another thread, as Gradio's workers make them.
Needs no Gradio. Prints numbers; exits non-zero if a check fails.

    python bench/gpu_check.py [--diffusion-only]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from PIL import Image
from timing import p50, row

from mmcore import clip as C
from mmcore import ldm, models, shapes
from mmcore import vit as V


def diffusion(failures: list[str]) -> None:
    """The tab's diffusion path as MMLAB_COMPILE=1 runs it, on the bundled ldm-shapes."""
    sync = torch.cuda.synchronize
    bundle = models.load("ldm", "bundled")
    req = ldm.Request("a red circle", "", "DDIM", 20, 3.0, 0, bundle.default_size)

    def final() -> torch.Tensor:
        return [s.latents for s in ldm.denoise(bundle, req)][-1]

    eager, eager_ms = final(), p50(final, 10, 2, sync)
    t0 = time.perf_counter()
    ldm.accelerate(bundle, compile=True)
    ldm.warm_compiled(bundle)
    print(f"ldm-shapes compiled and warmed in {time.perf_counter() - t0:.1f} s")
    recorded = list(ldm.attention_run(bundle, req))
    maps = recorded[-1]
    ok_maps = isinstance(maps, ldm.WordMaps) and maps.words and bool(torch.isfinite(maps.maps).all())
    print(f"recorded run (eager underneath): {len(recorded) - 1} steps, word maps for {maps.words}")
    compiled, compiled_ms = final(), p50(final, 10, 2, sync)
    box = {}
    worker = threading.Thread(target=lambda: box.update(latents=final(), ms=p50(final, 5, 1, sync)))
    worker.start()
    worker.join()
    scale = float(eager.abs().max())
    err = float((compiled - eager).abs().max()) / scale
    err_thread = float((box["latents"] - eager).abs().max()) / scale
    print(row("ldm-shapes, 20 DDIM steps with guidance, eager (CUDA fp16)", eager_ms))
    print(row("the same, compiled (reduce-overhead, CUDA graphs)", compiled_ms))
    print(row("the same, compiled, from another thread", box["ms"]))
    print(f"final latents against eager: max relative difference {err:.2e}, from the other thread {err_thread:.2e}")
    if not ok_maps or err > 2e-2 or err_thread > 2e-2:
        failures.append("the compiled diffusion path differs from eager, or its word maps are broken")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--diffusion-only", action="store_true", help="only the diffusion tab's compiled path")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    failures = []
    sync = torch.cuda.synchronize
    if args.diffusion_only:
        diffusion(failures)
        print("FAILED: " + "; ".join(failures) if failures else "all CUDA checks passed")
        return 1 if failures else 0

    # 1. the cache picks CUDA + fp16 by itself
    vit = models.load("vit", "bundled")
    clip = models.load("clip", "bundled")
    print(f"cache: vit on {vit.device} {vit.dtype}, clip on {clip.device} {clip.dtype}")
    if vit.device.type != "cuda" or vit.dtype != torch.float16:
        failures.append("the cache did not choose CUDA fp16")
    spec = models.get_spec("vit", "bundled")
    vit_cpu = spec.loader(spec.path, cpu, torch.float32, True)
    spec = models.get_spec("clip", "bundled")
    clip_cpu = spec.loader(spec.path, cpu, torch.float32, True)

    # 2. ViT: predictions agree, attention rows sum to 1 in fp16, rollout and tracer work on CUDA
    size = vit.input_size
    scenes = [shapes.sample_scene(shapes.split_seed("test", i), one_large=True) for i in range(300)]
    images = [Image.fromarray(shapes.render(s, size)) for s in scenes]
    agree = correct = 0
    worst_row = 0.0
    for img, scene in zip(images, scenes):
        logits, atts = V.forward(vit.model, vit.pixel_values(img))
        ref, _ = V.forward(vit_cpu.model, vit_cpu.pixel_values(img))
        agree += int(logits.argmax() == ref.argmax())
        correct += int(vit.model.config.id2label[int(logits.argmax())] == shapes.largest(scene).shape)
        worst_row = max(worst_row, max(float((a.float().sum(-1) - 1).abs().max()) for a in atts))
    roll = V.attention_rollout([a.float().cpu() for a in atts])
    print(f"vit fp16 CUDA vs fp32 CPU: top-1 agreement {agree / len(images):.3f}, accuracy {correct / len(images):.3f},"
          f" worst attention row-sum error {worst_row:.2e}, rollout rows sum to {float(roll.sum(-1).mean()):.4f}")
    if agree / len(images) < 0.98 or worst_row > 1e-2:
        failures.append("vit fp16 disagrees with fp32")
    print("tracer:", " -> ".join("x".join(map(str, s)) for _, s in V.trace_shapes(vit.model, vit.pixel_values(img))))
    stats = V.layernorm_stats(vit.model, vit.pixel_values(img), 0)
    print(f"layernorm x_hat var mean {stats['var_hat'].mean():.4f} (expect ~1)")

    # 3. CLIP: the same similarity matrix on both devices
    batch = [Image.fromarray(shapes.render(s, 64)) for s in scenes[:32]]
    caps = [shapes.caption(s) for s in scenes[:32]]
    s_gpu = C.encode_images(clip, batch) @ C.encode_texts(clip, caps).T
    s_cpu = C.encode_images(clip_cpu, batch) @ C.encode_texts(clip_cpu, caps).T
    diff = float((s_gpu - s_cpu).abs().max())
    r1 = float((s_gpu.argmax(1) == s_cpu.argmax(1)).float().mean())
    print(f"clip fp16 CUDA vs fp32 CPU: max |ΔS| {diff:.4f}, same argmax per row {r1:.3f}")
    if diff > 0.02:
        failures.append("clip fp16 similarity differs from fp32")

    # 4. latencies on CUDA
    x = vit.pixel_values(images[0])
    print(row("bundled ViT forward + attentions + rollout, CUDA fp16",
              p50(lambda: V.attention_rollout(V.forward(vit.model, x)[1]), 50, 5, sync)))
    from transformers import ViTConfig, ViTForImageClassification

    big = ViTForImageClassification(ViTConfig(num_labels=1000)).to(cuda, torch.float16).eval()
    big.set_attn_implementation("eager")
    xb = torch.randn(1, 3, 224, 224, device=cuda, dtype=torch.float16)
    print(row("ViT-B/16 (real size, random init) forward + attentions, CUDA fp16",
              p50(lambda: V.forward(big, xb), 50, 5, sync)))
    import open_clip

    b32 = open_clip.create_model("ViT-B-32", device=cuda).half().eval()
    x8 = torch.randn(8, 3, 224, 224, device=cuda, dtype=torch.float16)
    with torch.inference_mode():
        print(row("ViT-B-32 (real size, random init) encode 8 images, CUDA fp16",
                  p50(lambda: b32.encode_image(x8), 50, 5, sync)))

    def matrix():
        C._EMBEDDINGS.clear()
        return C.encode_images(clip, batch[:8]) @ C.encode_texts(clip, caps[:8]).T

    print(row("bundled CLIP 8 x 8 matrix from scratch (encode + cosine), CUDA fp16", p50(matrix, 50, 5, sync)))
    diffusion(failures)
    print("FAILED: " + "; ".join(failures) if failures else "all CUDA checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
