"""Held-out quality of the bundled CLIP.

    python bench/eval_clip.py [--n 2048] [--foreign 180]

- R@1 among 32 candidates, image -> text and text -> image, on the test and composition splits (colour-shape pairs
  never seen in training) of both Shapes worlds. A retrieved candidate whose caption equals the query's is a hit.
- Zero-shot naming of colour and shape among all 36 "a {color} {shape}" labels, on the foreign set
  (bench/foreign_shapes.py, its own renderer) and on the drawings under assets/drawings/.
- Colour binding: on test scenes with two objects that differ in colour and shape, the share where the true caption
  scores above the same caption with the two colours swapped. 0.5 is a pure bag of words.
- The word-order probe of the CLIP tab.
- The modality gap |mean_img - mean_txt| of test scenes and their captions, and its share of the mean squared
  distance between an image and its caption.
- Prompt ensembles: zero-shot accuracy on one-object test scenes (label = the object's shape, or its colour) of each
  of the CLIP tab's default templates alone and of their ensemble.
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

from bench import foreign_shapes
from mmcore import clip as C
from mmcore import models, shapes

GROUP = 32
LABELS = [f"{c} {s}" for c in shapes.COLOR_NAMES for s in shapes.SHAPES]  # all 36


def _size(bundle: C.ClipBundle) -> int:
    size = bundle.model.visual.image_size
    return size[0] if isinstance(size, (tuple, list)) else size


def recall(bundle: C.ClipBundle, split: str, n: int, world: str) -> tuple[float, float]:
    i2t = t2i = total = 0
    for start in range(0, n - GROUP + 1, GROUP):
        scenes = [shapes.sample_scene(shapes.split_seed(split, start + k), world=world) for k in range(GROUP)]
        caps = [shapes.caption(s) for s in scenes]
        img = C.encode_images(bundle, [Image.fromarray(shapes.render(s, _size(bundle))) for s in scenes])
        S = img @ C.encode_texts(bundle, caps).T  # (32, 32)
        i2t += sum(caps[int(j)] == caps[i] for i, j in enumerate(S.argmax(1)))
        t2i += sum(caps[int(i)] == caps[j] for j, i in enumerate(S.argmax(0)))
        total += GROUP
    return i2t / total, t2i / total


def zero_shot_accuracy(bundle: C.ClipBundle, drawings: list[foreign_shapes.Drawing],
                       template: str = "a {}") -> dict[str, float]:
    """Share of drawings whose top label among all 36 is right: colour and shape, colour alone, shape alone."""
    labels = C.encode_texts(bundle, [C.fill_template(template, label) for label in LABELS])  # (36, D)
    hits = {"colour+shape": 0, "colour": 0, "shape": 0}
    for start in range(0, len(drawings), 64):
        chunk = drawings[start:start + 64]
        best = (C.encode_images(bundle, [d.image for d in chunk]) @ labels.T).argmax(1)  # (b,)
        for d, k in zip(chunk, best.tolist()):
            color, shape = LABELS[k].split()
            hits["colour+shape"] += (color, shape) == (d.color, d.shape)
            hits["colour"] += color == d.color
            hits["shape"] += shape == d.shape
    return {k: v / len(drawings) for k, v in hits.items()}


def binding(bundle: C.ClipBundle, n: int, world: str) -> tuple[float, int]:
    """(share of scenes where cos(image, true caption) > cos(image, colour-swapped caption), scenes scored)."""
    right = total = 0
    for i in range(n):
        scene = shapes.sample_scene(shapes.split_seed("test", i), min_objects=2, max_objects=2, world=world)
        swapped = shapes.swapped_caption(scene)
        if swapped is None:
            continue
        cos = (C.encode_images(bundle, [Image.fromarray(shapes.render(scene, _size(bundle)))])
               @ C.encode_texts(bundle, [shapes.caption(scene), swapped]).T)[0]
        right += int(cos[0] > cos[1])
        total += 1
    return right / max(1, total), total


def gap(bundle: C.ClipBundle, n: int, world: str) -> tuple[float, float]:
    """(|mean_img - mean_txt|, its square's share of the mean |img_i - txt_i|^2 of matched pairs) on n test scenes."""
    scenes = [shapes.sample_scene(shapes.split_seed("test", i), world=world) for i in range(n)]
    img = C.encode_images(bundle, [Image.fromarray(shapes.render(s, _size(bundle))) for s in scenes])
    txt = C.encode_texts(bundle, [shapes.caption(s) for s in scenes])
    _, size = C.modality_gap(img, txt)
    return size, size**2 / float(((img - txt) ** 2).sum(1).mean())


def ensemble_accuracy(bundle: C.ClipBundle, task: str, n: int, world: str) -> tuple[list[float], float]:
    """Zero-shot accuracy on n one-object test scenes of each default template of the CLIP tab alone, and of their
    ensemble."""
    from demos.clip import ENSEMBLE_TASKS, ENSEMBLE_TEMPLATES

    labels, templates = ENSEMBLE_TASKS[task], ENSEMBLE_TEMPLATES[task]
    scenes = [shapes.sample_scene(shapes.split_seed("test", i), max_objects=1, world=world) for i in range(n)]
    img = C.encode_images(bundle, [Image.fromarray(shapes.render(s, _size(bundle))) for s in scenes]).double()
    truth = torch.tensor([labels.index(s.objects[0].shape if task == "shape" else s.objects[0].color) for s in scenes])

    def accuracy(prompt_set) -> float:
        return float(((img @ C.class_embeddings(bundle, labels, prompt_set).T).argmax(1) == truth).double().mean())

    return [accuracy([t]) for t in templates], accuracy(templates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2048, help="scenes per split (a multiple of 32)")
    ap.add_argument("--foreign", type=int, default=180, help="foreign drawings (bench/foreign_shapes.py)")
    ap.add_argument("--binding", type=int, default=500, help="two-object scenes for the colour-binding share")
    ap.add_argument("--gap", type=int, default=512, help="scenes for the modality gap")
    ap.add_argument("--ensemble", type=int, default=600, help="one-object scenes for the prompt-ensemble accuracy")
    args = ap.parse_args()
    bundle = models.load("clip", "bundled")
    print(f"bundled CLIP ({models.get_spec('clip', 'bundled').name}), logit scale {bundle.logit_scale:.1f}, "
          f"torch {torch.__version__}")
    for world in shapes.WORLDS:
        for split in ("test", "composition"):
            i2t, t2i = recall(bundle, split, args.n, world)
            target = 0.95 if split == "test" else 0.90
            print(f"{world:<8} {split:<12} R@1 among {GROUP}: image->text {i2t:.4f}   text->image {t2i:.4f}   "
                  f"target image->text >= {target:.2f} ({args.n} scenes)")
    for name, drawings in (("foreign set", foreign_shapes.foreign_set(args.foreign)),
                           ("drawings", foreign_shapes.load_drawings())):
        if not drawings:
            print(f"{name}: none found")
            continue
        acc = zero_shot_accuracy(bundle, drawings)
        print(f"{name} ({len(drawings)} images), zero-shot among all {len(LABELS)} labels: colour+shape "
              f"{acc['colour+shape']:.4f} (target >= 0.90), colour {acc['colour']:.4f}, shape {acc['shape']:.4f}")
    for world in shapes.WORLDS:
        share, total = binding(bundle, args.binding, world)
        print(f"{world:<8} colour binding: true caption above the colour-swapped one in {share:.4f} of {total} "
              "two-object test scenes (0.5 = a bag of words)")
    from demos.clip import PROBE_TEXTS, probe_scene

    cos = (C.encode_images(bundle, [probe_scene()]) @ C.encode_texts(bundle, list(PROBE_TEXTS)).T)[0]
    print(f"word-order probe: cos('{PROBE_TEXTS[0]}') = {cos[0]:.3f}, cos('{PROBE_TEXTS[1]}') = {cos[1]:.3f}")
    for world in shapes.WORLDS:
        size, share = gap(bundle, args.gap, world)
        print(f"{world:<8} modality gap over {args.gap} test scenes and their captions: |mean_img - mean_txt| = "
              f"{size:.3f}, {share:.0%} of the mean squared image-caption distance")
    for world in shapes.WORLDS:
        for task in ("shape", "colour"):
            singles, ensemble = ensemble_accuracy(bundle, task, args.ensemble, world)
            print(f"{world:<8} zero-shot {task} of one-object scenes ({args.ensemble}): first template "
                  f"{singles[0]:.4f}, single templates {min(singles):.4f}-{max(singles):.4f} (mean "
                  f"{sum(singles) / len(singles):.4f}), ensemble of {len(singles)} {ensemble:.4f}")


if __name__ == "__main__":
    main()
