"""Held-out quality of the bundled ViT: test accuracy, and how much attention-rollout mass falls inside the objects.

    python bench/eval_vit.py [--n 1000]

Rollout mass inside the objects is compared with the objects' share of the image area: a model that looks at the
objects puts far more than that share there (target: at least 2x). Scenes come from the test split, never trained on.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from PIL import Image

from mmcore import models, shapes
from mmcore import vit as V


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="test scenes")
    args = ap.parse_args()
    bundle = models.load("vit", "bundled")
    cfg = bundle.model.config
    size, g = cfg.image_size, V.grid_size(cfg.image_size, cfg.patch_size)
    hits, inside, share = 0, {0.0: [], 0.9: []}, []
    for i in range(args.n):
        scene = shapes.sample_scene(shapes.split_seed("test", i), one_large=True)
        image = Image.fromarray(shapes.render(scene, size))
        x = bundle.pixel_values(image)
        logits, atts = V.forward(bundle.model, x)
        hits += int(cfg.id2label[int(logits.argmax())] == shapes.largest(scene).shape)
        mask = shapes.render_masks(scene, size).any(0)  # (S, S) union of the objects
        share.append(mask.mean())
        atts = [a.float() for a in atts]
        for ratio in inside:
            heat = V.cls_rollout_map(V.attention_rollout(atts, discard_ratio=ratio), g).numpy()  # (g, g), sums to 1
            pixel_heat = np.kron(heat, np.ones((cfg.patch_size, cfg.patch_size))) / cfg.patch_size**2  # (S, S)
            inside[ratio].append(pixel_heat[mask].sum())
    area = float(np.mean(share))
    name = models.get_spec("vit", "bundled").name
    print(f"bundled ViT ({name}), {args.n} test-split scenes, torch {torch.__version__}")
    print(f"test accuracy (shape of the largest object): {hits / args.n:.4f}   target >= 0.95")
    for ratio, values in inside.items():
        mass = float(np.mean(values))
        print(f"rollout (discard {ratio:.1f}): mass inside objects {mass:.3f} vs area share {area:.3f} "
              f"-> {mass / area:.2f}x   target >= 2x")


if __name__ == "__main__":
    main()
