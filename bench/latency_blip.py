"""BLIP tab latency, handler time (p50) on the bundled tier: a greedy caption, beam search, VQA, one word's
cross-attention, matching; plus BLIP base at real size (random init) on the CPU, and in CUDA fp16 when a GPU is there.

    python bench/latency_blip.py [--repeats 20]

Click -> rendered in the browser (first streamed token, whole caption) is measured by bench/browser_latency.py.
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

from demos import blip as tab
from mmcore import blip as B
from mmcore import models


def real_size(device: torch.device, dtype: torch.dtype, repeats: int) -> None:
    """BLIP base (ViT-B/16 at 384 px, a 12-layer BERT decoder), random init: one greedy caption of 10 tokens."""
    from transformers import BlipConfig, BlipForConditionalGeneration

    model = BlipForConditionalGeneration(BlipConfig()).to(device, dtype).eval()
    pixels = torch.randn(1, 3, 384, 384, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    with torch.inference_mode():
        print(row(f"BLIP base, real size, random init ({device.type}, {str(dtype)[6:]}): 10-token caption",
                  p50(lambda: model.generate(pixel_values=pixels, max_new_tokens=10, min_new_tokens=10),
                      repeats, warmup=1, sync=sync)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA: {torch.cuda.is_available()}")
    image, *_, seed = tab.scene_view(seed=3)
    cap, vqa, itm = (models.load(f"blip-{k}", "bundled") for k in ("caption", "vqa", "itm"))
    result = B.caption(cap, image)
    print(f"caption of the bench scene: {result.text!r} ({len(result.ids)} tokens)")
    print(row("greedy caption (bundled)", p50(lambda: B.caption(cap, image), args.repeats), 150))
    print(row("greedy caption through the tab handler (all outputs)",
              p50(lambda: list(tab.caption(image, "greedy", 3, 1.0, 1.0, 0, 1.0, 20, 0, "", "bundled")),
                  args.repeats)))
    print(row("beam search, 3 beams (bundled)",
              p50(lambda: B.caption(cap, image, B.Decoding("beam search", num_beams=3)), args.repeats)))
    print(row("VQA (bundled)", p50(lambda: B.answer(vqa, image, "what color is the square?"), args.repeats), 150))
    state = {"ids": result.ids, "prompt": ""}
    print(row("one word's cross-attention overlay (tab handler)",
              p50(lambda: tab.token_attention(image, state, 0, "mean", "mean", "bundled"), args.repeats)))
    texts = ["a red circle and a blue star", "a blue circle and a red star", "a green square"]
    print(row("matching, 3 captions: ITM + ITC (bundled)", p50(lambda: B.match(itm, image, texts), args.repeats)))
    real_size(torch.device("cpu"), torch.float32, 3)
    if torch.cuda.is_available():
        real_size(torch.device("cuda"), torch.float16, 10)


if __name__ == "__main__":
    main()
