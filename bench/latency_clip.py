"""CLIP tab latency: p50 of an 8 x 8 similarity matrix from scratch (the shapes walk-through included), of a
temperature change and of an edited caption with cached embeddings, of the editable 8 x 8 matrix, of the modality-gap
view and of the prompt-ensemble accuracy (from scratch, and the one-template/ensemble toggle with
cached embeddings) on the bundled tier (this CPU), and ViT-B-32 (real size, random init) encoding 8 images; CUDA when
present.

    python bench/latency_clip.py [--repeats 20]
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

from demos import clip as tab
from mmcore import clip as C


def vit_b32(device: str, repeats: int) -> tuple[float, float, float]:
    import open_clip

    model = open_clip.create_model("ViT-B-32", device=device).eval()  # real architecture, random init, 151 M params
    if device == "cuda":
        model = model.half()
    x = torch.randn(8, 3, 224, 224, device=device, dtype=next(model.parameters()).dtype)
    sync = torch.cuda.synchronize if device == "cuda" else None
    with torch.inference_mode():
        return p50(lambda: model.encode_image(x), repeats, warmup=2, sync=sync)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA: {torch.cuda.is_available()}")
    images, texts = tab.new_batch(8, seed=0)
    tab.matrix(images, texts, None, "bundled")  # load the model once

    def from_scratch():
        C._EMBEDDINGS.clear()  # nothing cached: encode 8 images and 8 texts, then all the maths and figures
        return tab.matrix(images, texts, None, "bundled")

    print(row("bundled: 8 x 8 matrix from scratch, clip_matrix", p50(from_scratch, args.repeats), 150))
    *_, S, lines = tab.matrix(images, texts, None, "bundled")
    print(row("bundled: temperature change (cached), clip_temperature",
              p50(lambda: tab.temperature(S, lines, -1.5), args.repeats), 30))
    print(row("bundled: a caption edited (cached images), clip_matrix",
              p50(lambda: tab.matrix(images, texts.replace("\n", " \n", 1), -1.5, "bundled"), args.repeats), 150))
    table = tab.resize_table(tab.lecture_table(), 8)
    print(row("editable 8 x 8 at tau = 0.001, clip_editable", p50(lambda: tab.editable(table, 1e-3), args.repeats), 30))

    def gap_from_scratch():
        C._EMBEDDINGS.clear()  # the 8 images and 8 texts are encoded again
        return tab.gap(images, texts, "bundled")

    print(row("bundled: modality gap (8 + 8), from scratch, clip_gap", p50(gap_from_scratch, args.repeats), 150))
    shape = tab.default_templates("shape")  # 8 templates x 6 shapes = 48 prompts, on 32 scenes

    def ensemble_from_scratch():
        C._EMBEDDINGS.clear()
        return tab.prompt_ensemble("shape", shape, "ensemble", 32, "bundled")

    print(row("bundled: prompt ensemble from scratch, clip_prompt_ensemble",
              p50(ensemble_from_scratch, args.repeats), 150))
    print(row("bundled: one template <-> ensemble toggle (cached)",
              p50(lambda: tab.prompt_ensemble("shape", shape, "one template", 32, "bundled"), args.repeats), 150))
    print(row("ViT-B-32 (real size, random init) encode 8 images, CPU fp32", vit_b32("cpu", max(3, args.repeats // 5))))
    if torch.cuda.is_available():
        print(row(f"ViT-B-32 encode 8 images, CUDA fp16 ({torch.cuda.get_device_name()})",
                  vit_b32("cuda", args.repeats)))


if __name__ == "__main__":
    main()
