"""BLIP-2 section latency, handler time (p50) on the bundled tier: a caption with the query maps (the Q-Former's
forward with its cross-attention, then greedy decoding), the whole tab handler (maps picture, soft-prompt figure,
streamed caption), a new layer's maps, and an ablation. With a CUDA GPU, also Salesforce/blip2-opt-2.7b's size
(random init when the weights are absent) in fp16: the time per generated token.

    python bench/latency_blip2.py [--repeats 20]

Click -> rendered in the browser is measured by bench/browser_latency.py (--tabs blip2).
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

from demos import blip as blip_tab
from demos import blip2 as tab
from mmcore import blip2 as B2
from mmcore import models


def real_size(repeats: int) -> None:
    """blip2-opt-2.7b's architecture (EVA ViT-g/14 at 224 px, a 12-layer Q-Former with 32 queries, OPT-2.7B), random
    init in fp16 on CUDA: per-token time of greedy decoding after the soft prompt."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    config = Blip2Config(
        vision_config=dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
                           image_size=224, patch_size=14, qkv_bias=True),
        qformer_config=dict(encoder_hidden_size=1408),
        text_config=dict(model_type="opt", hidden_size=2560, word_embed_proj_dim=2560, num_hidden_layers=32,
                         num_attention_heads=32, ffn_dim=10240, vocab_size=50272, max_position_embeddings=2048),
        num_query_tokens=32, image_token_index=50265)
    with torch.device("cuda"):
        model = Blip2ForConditionalGeneration(config).half().eval()
    pixels = torch.randn(1, 3, 224, 224, device="cuda", dtype=torch.float16)
    sync = torch.cuda.synchronize

    def tokens(n: int):
        return lambda: model.generate(pixel_values=pixels, max_new_tokens=n, min_new_tokens=n, do_sample=False)

    one = p50(tokens(1), repeats, warmup=2, sync=sync)
    twenty = p50(tokens(21), repeats, warmup=1, sync=sync)
    print(row("blip2-opt-2.7b size, fp16 CUDA: image + Q-Former + first token", one))
    print(f"{'  ... each further token':<58} p50 {(twenty[0] - one[0]) / 20:8.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA: {torch.cuda.is_available()}")
    image, *_, seed = blip_tab.scene_view(seed=3)
    bundle = models.load("blip2", "bundled")
    text, steps = B2.caption(bundle, image)
    print(f"caption of the bench scene: {text!r} ({len(steps)} tokens)")
    print(row("caption with the query maps (mmcore: read + stream)",
              p50(lambda: list(B2.stream(bundle, B2.read(bundle, image))), args.repeats), 200))
    print(row("the tab handler: maps picture, soft prompt, caption",
              p50(lambda: list(tab.read(image, seed, "mean", "mean", "bundled")), args.repeats)))
    print(row("a new layer and head: maps picture and report",
              p50(lambda: tab.maps(image, seed, "2", "1", [], "bundled"), args.repeats)))
    *_, state, _ = list(tab.read(image, seed, "mean", "mean", "bundled"))[-1]
    print(row("ablation of 4 queries, both captions and the table",
              p50(lambda: list(tab.ablate(image, state, ["q0", "q1", "q2", "q3"], "bundled")), args.repeats)))
    if torch.cuda.is_available():
        real_size(10)
    else:
        print("blip2-opt-2.7b size: needs a CUDA GPU (about 8 GB in fp16); skipped on this machine")


if __name__ == "__main__":
    main()
