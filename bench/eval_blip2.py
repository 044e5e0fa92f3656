"""Held-out quality of the bundled BLIP-2 (blip2-shapes): captions, what the queries read, and what each query is
worth to the caption.

    python bench/eval_blip2.py [--n 1000] [--card]

- captions: every object's colour and shape named and nothing else (greedy), on the test and composition splits of
  both worlds (the composition split always holds a colour-shape pair training never showed), and on single objects
  drawn by other code than the training renderer (bench/foreign_shapes.py) and by hand (assets/drawings);
- queries: on test scenes, where each query's attention argmax falls (an object or the background), how many of a
  scene's objects some query peaks on, beside chance;
- ablation: the caption's probability with each query switched off alone, and the caption accuracy with all off.

`--card` writes the numbers into the model card.
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
from foreign_shapes import foreign_set, load_drawings

from mmcore import blip as B
from mmcore import blip2 as B2
from mmcore import models, shapes
from mmcore.train.common import replace_section

SCENE = {"min_objects": 1, "max_objects": 3}


def pixels(bundle: B2.Blip2Bundle, images: list) -> torch.Tensor:
    return bundle.processor.image_processor([im.convert("RGB") for im in images], return_tensors="pt").pixel_values


def captions(bundle: B2.Blip2Bundle, images: list, batch: int = 250) -> list[str]:
    out = []
    for i in range(0, len(images), batch):
        out += B2.captions(bundle, pixels(bundle, images[i:i + batch]))
    return out


def scenes_of(split: str, n: int, world: str) -> tuple[list, list[shapes.Scene]]:
    scenes = [shapes.sample_scene(shapes.split_seed(split, i), world=world, **SCENE) for i in range(n)]
    from PIL import Image

    return [Image.fromarray(shapes.render(s, 64)) for s in scenes], scenes


def single_correct(text: str, color: str, shape: str) -> bool:
    return B.named_objects(text) == [(color, shape)]


def query_stats(bundle: B2.Blip2Bundle, images: list, scenes: list[shapes.Scene]) -> dict:
    """Per query: the share of scenes where its argmax is on an object. Per scene: the share of objects some query
    peaks on, and the chance of that (the share of patches objects cover, for one query)."""
    on_object = np.zeros(bundle.k)
    covered, area = [], []
    for image, scene in zip(images, scenes):
        hits = B2.query_objects(B2.read(bundle, image), scene)
        on_object += np.array(hits) >= 0
        covered.append(len({h for h in hits if h >= 0}) / len(scene.objects))
        area.append(float((B2.patch_objects(scene, bundle.grid) >= 0).mean()))
    return dict(on_object=on_object / len(scenes), covered=float(np.mean(covered)), area=float(np.mean(area)))


def ablation(bundle: B2.Blip2Bundle, images: list, scenes: list[shapes.Scene]) -> dict:
    """Mean p(true caption) with every query, with each one off alone; caption accuracy with all of them off."""
    tok = bundle.tokenizer
    full, alone = [], np.zeros((len(images), bundle.k))
    for i, (image, scene) in enumerate(zip(images, scenes)):
        ids = tok(shapes.caption(scene) + tok.eos_token, add_special_tokens=False).input_ids
        full.append(np.prod(B2.token_probs(bundle, B2.read(bundle, image), ids)))
        for q in range(bundle.k):
            alone[i, q] = np.prod(B2.token_probs(bundle, B2.read(bundle, image, off=(q,)), ids))
    none_on = [B2.caption(bundle, im, off=range(bundle.k))[0] for im in images]
    acc = float(np.mean([B.caption_correct(t, s) for t, s in zip(none_on, scenes)]))
    return dict(full=float(np.mean(full)), alone=alone.mean(0), all_off_accuracy=acc, all_off_example=none_on[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="scenes per split")
    ap.add_argument("--probe", type=int, default=200, help="test scenes for the query and ablation studies")
    ap.add_argument("--card", action="store_true", help="write the results into the model card")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    bundle = models.load("blip2", "bundled")
    lines = [f"`python bench/eval_blip2.py --n {args.n} --probe {args.probe}`; greedy captions, held-out scenes "
             "(1-3 objects).", "", "| data | captions right |", "|---|---|"]

    def say(name: str, value: float, example: str = "") -> None:
        print(f"  {name:34s} {value:.3f}   {example}")
        lines.append(f"| {name} | {value:.3f} |")

    print(f"blip2-shapes, {args.n} scenes per split; every object's colour and shape named, nothing else")
    kept = None
    for world in ("classic", "wide"):
        for split in ("test", "composition"):
            images, scenes = scenes_of(split, args.n, world)
            texts = captions(bundle, images)
            acc = float(np.mean([B.caption_correct(t, s) for t, s in zip(texts, scenes)]))
            say(f"{world} world, {split} split", acc, f"e.g. {texts[0]!r} for {shapes.caption(scenes[0])!r}")
            if kept is None:
                kept = images[:args.probe], scenes[:args.probe]
    for name, drawings in (("foreign renderer, one object", foreign_set(180)),
                           ("hand drawings, one object", load_drawings())):
        if drawings:
            texts = captions(bundle, [d.image for d in drawings])
            acc = float(np.mean([single_correct(t, d.color, d.shape) for t, d in zip(texts, drawings)]))
            say(f"{name} ({len(drawings)})", acc, f"e.g. {texts[0]!r} for '{drawings[0].color} {drawings[0].shape}'")

    images, scenes = kept
    q = query_stats(bundle, images, scenes)
    per_query = "  ".join(f"q{i} {v:.2f}" for i, v in enumerate(q["on_object"]))
    print(f"\nwhat the queries read, {len(scenes)} classic test scenes (attention argmax, mean of layers and heads)")
    print(f"  share of scenes where the query peaks on an object: {per_query}   (chance {q['area']:.2f})")
    print(f"  share of a scene's objects that some query peaks on: {q['covered']:.3f}")
    a = ablation(bundle, images, scenes)
    alone = "  ".join(f"q{i} {v:.3f}" for i, v in enumerate(a["alone"]))
    print(f"\nablation: mean p(true caption) {a['full']:.3f} with every query; with one switched off: {alone}")
    print(f"  all {bundle.k} off: captions right {a['all_off_accuracy']:.3f}, e.g. {a['all_off_example']!r}")
    lines += ["", f"What the {bundle.k} queries read, on {len(scenes)} classic test scenes (attention argmax, mean "
              "of layers and heads):", "",
              f"- share of scenes where each query peaks on an object: {per_query} (chance, the share of patches "
              f"objects cover: {q['area']:.2f})",
              f"- share of a scene's objects that at least one query peaks on: {q['covered']:.3f}",
              f"- mean p(true caption): {a['full']:.3f} with every query; with one query off: {alone}",
              f"- with all {bundle.k} queries off: captions right {a['all_off_accuracy']:.3f} "
              f"(e.g. *{a['all_off_example']}*)"]
    if args.card:
        card = models.ASSETS / "models" / "blip2-shapes" / "MODEL_CARD.md"
        replace_section(card, "## Measured after training", "\n".join(lines))
        print(f"\nwrote {card}")


if __name__ == "__main__":
    main()
