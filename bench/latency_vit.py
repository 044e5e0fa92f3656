"""ViT tab latency: p50 of the patch grid, the attention map, the three-map relevance view and the logit lens on the
bundled tier (this CPU), and of a forward pass of ViT-B/16 at its real size (random init, since no weights are
downloaded here), and of the forward + backward pass the relevance view needs; CUDA fp16 when present.

    python bench/latency_vit.py [--repeats 20]
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

from demos import vit as tab
from mmcore import vit as V


def vit_b16(device: str, dtype: torch.dtype, repeats: int, relevance: bool = False) -> tuple[float, float, float]:
    """p50 of ViT-B/16's forward with attentions, or with relevance=True of the relevance view's forward + backward
    and its rollouts."""
    from transformers import ViTConfig, ViTForImageClassification

    model = ViTForImageClassification(ViTConfig(num_labels=1000)).to(device, dtype).eval()  # ViT-B/16: 86 M params
    model.set_attn_implementation("eager")  # as the tab runs it: attention weights returned
    x = torch.randn(1, 3, 224, 224, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else None

    def explain():
        _, _, atts, grads = V.attention_gradients(model, x)
        return V.attention_rollout(atts), V.relevance_rollout(atts, grads)

    return p50(explain if relevance else lambda: V.forward(model, x), repeats, warmup=3, sync=sync)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA: {torch.cuda.is_available()}")
    image, _ = tab.new_scene(seed=1)
    print(row("bundled: patch grid (P=16, 224 px), vit_patches", p50(lambda: tab.patches(image, 16, 224, "bundled"),
                                                                    args.repeats), 150))
    print(row("bundled: attention map + rollout + top-5, vit_attention",
              p50(lambda: tab.attention(image, 3, "mean", 0.0, "bundled"), args.repeats), 150))
    print(row("bundled: raw attention + rollout + relevance, vit_relevance",
              p50(lambda: tab.relevance(image, tab.PREDICTED, "mean", 0.0, "bundled"), args.repeats), 150))
    print(row("bundled: rollout alone for a new head fusion, vit_rollout_fusion",
              p50(lambda: tab.fused_rollout(image, tab.PREDICTED, "max", 0.0, "bundled"), args.repeats), 100))
    print(row("bundled: logit lens heatmap, vit_logit_lens", p50(lambda: tab.logit_lens(image, "bundled"),
                                                                  args.repeats), 150))
    print(row("ViT-B/16 (real size, random init) forward + attentions, CPU fp32", vit_b16("cpu", torch.float32,
                                                                                          max(5, args.repeats // 4))))
    print(row("ViT-B/16 forward + backward + relevance, CPU fp32", vit_b16("cpu", torch.float32,
                                                                          max(5, args.repeats // 4), relevance=True)))
    if torch.cuda.is_available():
        print(row(f"ViT-B/16 forward + attentions, CUDA fp16 ({torch.cuda.get_device_name()})",
                  vit_b16("cuda", torch.float16, args.repeats)))
        print(row("ViT-B/16 forward + backward + relevance, CUDA fp16", vit_b16("cuda", torch.float16, args.repeats,
                                                                                relevance=True)))


if __name__ == "__main__":
    main()
