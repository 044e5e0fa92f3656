"""Held-out quality of the bundled ViT: accuracy on data it never saw, and where its attention rollout goes.

    python bench/eval_vit.py [--n 1000] [--foreign 180]

Four sets, none trained on:
- the test split of the classic and of the wide Shapes world (mmcore/shapes.py, seeds the training never used);
- the foreign set: shapes drawn by bench/foreign_shapes.py, with its own geometry, palette and rasteriser;
- the drawings committed under assets/drawings/ (labels.csv).

On the test splits, three maps of "which patches matter" are compared by the share of their mass that falls inside
the objects (the ground-truth masks of mmcore.shapes.render_masks): raw attention (the last layer's CLS row, mean over
heads), attention rollout, and gradient-weighted relevance for the predicted class (Chefer et al., 2021). Each share
is set beside the objects' share of the image area: a map that looks at the objects puts far more than that share
there (target for rollout: at least 2x). The same is measured for the largest object alone, the one whose shape the
model names. The logit lens line gives the accuracy of the class read from the CLS token after each block.
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

MAPS = ("raw attention (last layer)", "rollout (discard 0.0)", "rollout (discard 0.9)", "relevance (Chefer et al.)")


def _patch_maps(atts: tuple[torch.Tensor, ...], grads: tuple[torch.Tensor, ...], grid: int) -> list[np.ndarray]:
    """The four maps of MAPS, each (grid, grid) summing to 1."""
    raw = V.cls_attention(atts, len(atts) - 1).double()
    return [(raw / raw.sum()).numpy(),
            V.cls_rollout_map(V.attention_rollout(atts, discard_ratio=0.0), grid).numpy(),
            V.cls_rollout_map(V.attention_rollout(atts, discard_ratio=0.9), grid).numpy(),
            V.cls_rollout_map(V.relevance_rollout(atts, grads), grid).numpy()]


def shapes_split(bundle: V.ViTBundle, world: str, n: int) -> dict:
    """On n test scenes: accuracy, the logit lens's accuracy after each block, and for each map of MAPS its mean mass
    inside all objects and inside the largest one, with those regions' mean share of the image area."""
    cfg = bundle.model.config
    size, g, p = cfg.image_size, V.grid_size(cfg.image_size, cfg.patch_size), cfg.patch_size
    names = V.class_names(bundle.model)
    hits, lens_hits = 0, np.zeros(cfg.num_hidden_layers)
    inside = {region: np.zeros(len(MAPS)) for region in ("all objects", "the largest object")}
    area = dict.fromkeys(inside, 0.0)
    for i in range(n):
        scene = shapes.sample_scene(shapes.split_seed("test", i), one_large=True, world=world)
        x = bundle.pixel_values(Image.fromarray(shapes.render(scene, size)))
        truth = names.index(shapes.largest(scene).shape)
        logits, _, atts, grads = V.attention_gradients(bundle.model, x)  # relevance for the predicted class
        hits += int(logits.argmax()) == truth
        lens_hits += (V.logit_lens(bundle.model, x).argmax(1) == truth).numpy()
        masks = shapes.render_masks(scene, size)  # (objects, S, S)
        regions = {"all objects": masks.any(0), "the largest object": masks[scene.objects.index(shapes.largest(scene))]}
        maps = [np.kron(m, np.ones((p, p))) / p**2 for m in _patch_maps([a.float() for a in atts], grads, g)]
        for region, mask in regions.items():
            area[region] += mask.mean() / n
            inside[region] += np.array([m[mask].sum() for m in maps]) / n  # (S, S) pixel maps, each sums to 1
    return {"accuracy": hits / n, "lens": lens_hits / n, "inside": inside, "area": area}


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
        r = shapes_split(bundle, world, args.n)
        print(f"{world:<8} test split ({args.n} scenes): accuracy {r['accuracy']:.4f}   target >= 0.99")
        print(f"{'':<9}logit lens accuracy after blocks 0..{len(r['lens']) - 1}: "
              + "  ".join(f"{a:.3f}" for a in r["lens"]))
        for region, masses in r["inside"].items():
            print(f"{'':<9}map mass inside {region} (area share {r['area'][region]:.3f}):")
            for name, mass in zip(MAPS, masses):
                target = "   target >= 2x" if name.startswith("rollout") and region == "all objects" else ""
                print(f"{'':<11}{name:<28} {mass:.3f} -> {mass / r['area'][region]:.2f}x{target}")
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
