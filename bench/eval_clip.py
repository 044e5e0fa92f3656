"""Held-out retrieval of the bundled CLIP: R@1 among 32 candidates, image -> text and text -> image, on the test split
and on the composition split (colour-shape pairs never seen in training).

    python bench/eval_clip.py [--n 2048]

Candidates are groups of 32 scenes with their canonical captions; a retrieved candidate whose caption is identical
to the query's counts as a hit (two scenes can share a caption). Also: the word-order probe on the bundled model.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from PIL import Image

from mmcore import clip as C
from mmcore import models, shapes

GROUP = 32


def recall(bundle: C.ClipBundle, split: str, n: int) -> tuple[float, float]:
    size = bundle.model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    i2t = t2i = total = 0
    for start in range(0, n - GROUP + 1, GROUP):
        scenes = [shapes.sample_scene(shapes.split_seed(split, start + k)) for k in range(GROUP)]
        caps = [shapes.caption(s) for s in scenes]
        img = C.encode_images(bundle, [Image.fromarray(shapes.render(s, size)) for s in scenes])
        S = img @ C.encode_texts(bundle, caps).T  # (32, 32)
        i2t += sum(caps[int(j)] == caps[i] for i, j in enumerate(S.argmax(1)))
        t2i += sum(caps[int(i)] == caps[j] for j, i in enumerate(S.argmax(0)))
        total += GROUP
    return i2t / total, t2i / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2048, help="scenes per split (a multiple of 32)")
    args = ap.parse_args()
    bundle = models.load("clip", "bundled")
    print(f"bundled CLIP ({models.get_spec('clip', 'bundled').name}), logit scale {bundle.logit_scale:.1f}, "
          f"torch {torch.__version__}")
    for split in ("test", "composition"):
        i2t, t2i = recall(bundle, split, args.n)
        print(f"{split:<12} R@1 among {GROUP}: image->text {i2t:.4f}   text->image {t2i:.4f}   target >= 0.90 "
              f"({args.n} scenes)")
    from demos.clip import PROBE_TEXTS, probe_scene

    cos = (C.encode_images(bundle, [probe_scene()]) @ C.encode_texts(bundle, list(PROBE_TEXTS)).T)[0]
    print(f"word-order probe: cos('{PROBE_TEXTS[0]}') = {cos[0]:.3f}, cos('{PROBE_TEXTS[1]}') = {cos[1]:.3f}")


if __name__ == "__main__":
    main()
