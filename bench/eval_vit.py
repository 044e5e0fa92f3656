"""Held-out quality of the bundled ViT: accuracy on data it never saw, and where its attention rollout goes.

    python bench/eval_vit.py [--n 1000] [--foreign 180]

Four sets, none trained on:
- the test split of the classic and of the wide Shapes world (mmcore/shapes.py, seeds the training never used);
- the foreign set: shapes drawn by bench/foreign_shapes.py, with its own geometry, palette and rasteriser;
- the drawings committed under assets/drawings/ (labels.csv).

Rollout mass inside the objects is compared with the objects' share of the image area: a model that looks at the
objects puts far more than that share there (target: at least 2x).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from PIL import Image

from bench import foreign_shapes
from mmcore import models, shapes
from mmcore import vit as V


def shapes_split(bundle: V.ViTBundle, world: str, n: int) -> tuple[float, dict[float, float], float]:
    """(accuracy, {discard ratio: rollout mass inside the objects}, the objects' share of the area)."""
    cfg = bundle.model.config
    size, g = cfg.image_size, V.grid_size(cfg.image_size, cfg.patch_size)
    hits, inside, share = 0, {0.0: [], 0.9: []}, []
    for i in range(n):
        scene = shapes.sample_scene(shapes.split_seed("test", i), one_large=True, world=world)
        logits, atts = V.forward(bundle.model, bundle.pixel_values(Image.fromarray(shapes.render(scene, size))))
        hits += int(cfg.id2label[int(logits.argmax())] == shapes.largest(scene).shape)
        mask = shapes.render_masks(scene, size).any(0)  # (S, S) union of the objects
        share.append(mask.mean())
        atts = [a.float() for a in atts]
        for ratio in inside:
            heat = V.cls_rollout_map(V.attention_rollout(atts, discard_ratio=ratio), g).numpy()  # (g, g), sums to 1
            pixel_heat = np.kron(heat, np.ones((cfg.patch_size, cfg.patch_size))) / cfg.patch_size**2  # (S, S)
            inside[ratio].append(pixel_heat[mask].sum())
    return hits / n, {r: float(np.mean(v)) for r, v in inside.items()}, float(np.mean(share))


def drawings_accuracy(bundle: V.ViTBundle, drawings: list[foreign_shapes.Drawing]) -> tuple[float, Counter]:
    """Share of drawings whose shape the model names, and a count of (true, predicted) mistakes."""
    labels = bundle.model.config.id2label
    mistakes: Counter = Counter()
    for d in drawings:
        logits, _ = V.forward(bundle.model, bundle.pixel_values(d.image))
        guess = labels[int(logits.argmax())]
        if guess != d.shape:
            mistakes[(d.shape, guess)] += 1
    return 1 - sum(mistakes.values()) / max(1, len(drawings)), mistakes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="test scenes per world")
    ap.add_argument("--foreign", type=int, default=180, help="foreign drawings (bench/foreign_shapes.py)")
    args = ap.parse_args()
    bundle = models.load("vit", "bundled")
    print(f"bundled ViT ({models.get_spec('vit', 'bundled').name}), torch {torch.__version__}")
    for world in shapes.WORLDS:
        acc, inside, area = shapes_split(bundle, world, args.n)
        print(f"{world:<8} test split ({args.n} scenes): accuracy {acc:.4f}   target >= 0.99")
        for ratio, mass in inside.items():
            print(f"{'':<9}rollout (discard {ratio:.1f}): mass inside objects {mass:.3f} vs area share {area:.3f} "
                  f"-> {mass / area:.2f}x   target >= 2x")
    for name, drawings in (("foreign set", foreign_shapes.foreign_set(args.foreign)),
                           ("drawings", foreign_shapes.load_drawings())):
        if not drawings:
            print(f"{name}: none found")
            continue
        acc, mistakes = drawings_accuracy(bundle, drawings)
        top = ", ".join(f"{t}->{p} x{k}" for (t, p), k in mistakes.most_common(5)) or "none"
        print(f"{name} ({len(drawings)} images): shape accuracy {acc:.4f}   target >= 0.97   mistakes: {top}")


if __name__ == "__main__":
    main()
