"""Held-out quality of the bundled BLIP models, on the test split and the composition split (colour-shape pairs the
training never showed) of the Shapes world they were trained on, with the other world beside it.

    python bench/eval_blip.py [--n 1000] [--world classic]

- captions (greedy): the share whose caption names every object's colour and shape, and nothing else;
- VQA exact match (greedy), by question type: colour, shape, count, existence, relation;
- ITM: on scenes with two objects that differ in colour and shape, the share where the true caption scores above
  the same words with the two colours swapped; BLIP's ITC and the bundled CLIP on the same pairs beside it;
- grounding: for each colour or shape word of a correct caption, the share where the argmax over the patches of the
  decoder's cross-attention (the query that chose the word, mean over heads) falls on that object: a patch with at
  least a quarter of its pixels inside the object's mask. Per layer, the best layer and the mean over layers.
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

from mmcore import blip as B
from mmcore import clip as C
from mmcore import models, shapes

BATCH = 128


def question_type(question: str) -> str:
    if question.startswith("what color"):
        return "colour"
    if question.startswith("what shape"):
        return "shape"
    if question.startswith("how many"):
        return "count"
    if question.startswith("is there"):
        return "existence"
    return "relation"


def scenes_of(split: str, n: int, world: str, **kw) -> list[shapes.Scene]:
    return [shapes.sample_scene(shapes.split_seed(split, i), world=world, **kw) for i in range(n)]


def pixels(bundle: B.BlipBundle, scenes: list[shapes.Scene]) -> torch.Tensor:
    size = bundle.model.config.vision_config.image_size
    imgs = [Image.fromarray(shapes.render(s, size)) for s in scenes]
    return bundle.processor(images=imgs, return_tensors="pt").pixel_values.to(bundle.device, bundle.dtype)


@torch.inference_mode()
def captions(bundle: B.BlipBundle, scenes: list[shapes.Scene]) -> list[str]:
    out = []
    for i in range(0, len(scenes), BATCH):
        gen = bundle.model.generate(pixel_values=pixels(bundle, scenes[i:i + BATCH]), max_new_tokens=B.MAX_NEW_TOKENS)
        out += bundle.tokenizer.batch_decode(gen, skip_special_tokens=True)
    return out


@torch.inference_mode()
def vqa(bundle: B.BlipBundle, scenes: list[shapes.Scene]) -> dict[str, tuple[int, int]]:
    items = [(s, q, a) for s in scenes for q, a in shapes.questions(s)]
    hits: Counter = Counter()
    total: Counter = Counter()
    for i in range(0, len(items), BATCH):
        chunk = items[i:i + BATCH]
        ids, mask = bundle.encode_text([q for _, q, _ in chunk])
        images = pixels(bundle, [s for s, _, _ in chunk])
        gen = bundle.model.generate(input_ids=ids, attention_mask=mask, pixel_values=images, max_new_tokens=6)
        for (_, q, a), text in zip(chunk, bundle.tokenizer.batch_decode(gen, skip_special_tokens=True)):
            kind = question_type(q)
            total[kind] += 1
            hits[kind] += text.strip() == a
    return {k: (hits[k], total[k]) for k in ("colour", "shape", "count", "existence", "relation")}


@torch.inference_mode()
def binding(itm: B.BlipBundle, clip: C.ClipBundle | None, n: int, world: str) -> dict[str, float]:
    right: Counter = Counter()
    total = 0
    for scene in scenes_of("test", n, world, min_objects=2, max_objects=2):
        swapped = shapes.swapped_caption(scene)
        if swapped is None:
            continue
        img = Image.fromarray(shapes.render(scene, 128))
        p, cos = B.match(itm, img, [shapes.caption(scene), swapped])
        right["BLIP ITM"] += p[0] > p[1]
        right["BLIP ITC"] += cos[0] > cos[1]
        if clip is not None:
            c = (C.encode_images(clip, [img]) @ C.encode_texts(clip, [shapes.caption(scene), swapped]).T)[0]
            right["CLIP cosine"] += bool(c[0] > c[1])
        total += 1
    return {k: v / total for k, v in right.items()} | {"pairs": total}


def patch_masks(scene: shapes.Scene, grid: int, size: int) -> np.ndarray:
    """(objects, grid * grid) bool: the patches with at least a quarter of their pixels inside each object."""
    masks = shapes.render_masks(scene, size).astype(np.float64)  # (k, size, size)
    p = size // grid
    cover = masks.reshape(len(masks), grid, p, grid, p).mean((2, 4))
    return (cover >= 0.25).reshape(len(masks), -1)


@torch.inference_mode()
def grounding(cap: B.BlipBundle, scenes: list[shapes.Scene], texts: list[str]) -> np.ndarray:
    """(hits per layer, words) over the colour and shape words of the correct captions."""
    size = cap.model.config.vision_config.image_size
    colours, shape_words = set(shapes.COLOR_NAMES), set(shapes.SHAPES)
    hits, words = None, 0
    for scene, text in zip(scenes, texts):
        if not B.caption_correct(text, scene):
            continue
        ids = cap.tokenizer(text, add_special_tokens=False).input_ids
        att = B.decoder_attention(cap, Image.fromarray(shapes.render(scene, size)), ids)
        masks = patch_masks(scene, cap.grid, size)
        objs = sorted(range(len(scene.objects)), key=lambda k: scene.objects[k].x)  # caption order: left to right
        tokens = cap.words(ids)
        pair = 0
        for i, tok in enumerate(tokens):
            if tok not in colours and tok not in shape_words:
                continue
            color, shape = B.named_objects(text)[pair]
            candidates = [k for k in objs if (scene.objects[k].color, scene.objects[k].shape) == (color, shape)]
            if tok in shape_words:
                pair += 1
            if len(candidates) != 1:
                continue  # two identical objects: either could be meant
            per_layer = att.maps[:, :, i].mean(1).argmax(-1)  # (layers,)
            row = masks[candidates[0]][per_layer]
            hits = row.astype(int) if hits is None else hits + row
            words += 1
    return (hits if hits is not None else np.zeros(1)) / max(words, 1), words


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="scenes per split")
    ap.add_argument("--world", default="classic", choices=shapes.WORLDS, help="the world the models trained on")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cap, vq, itm = (models.load(f"blip-{k}", "bundled") for k in ("caption", "vqa", "itm"))
    clip = models.load("clip", "bundled")
    other = [w for w in shapes.WORLDS if w != args.world]
    print(f"bundled BLIP models, {args.n} scenes per split; trained on the {args.world} world\n")

    print("captions: every object's colour and shape named, nothing else (greedy)")
    kept = {}
    for world in [args.world, *other]:
        for split in ("test", "composition"):
            scenes = scenes_of(split, args.n, world)
            texts = captions(cap, scenes)
            acc = np.mean([B.caption_correct(t, s) for t, s in zip(texts, scenes)])
            print(f"  {world:8s} {split:12s} {acc:.3f}   e.g. {texts[0]!r} for {shapes.caption(scenes[0])!r}")
            if world == args.world and split == "test":
                kept = dict(scenes=scenes, texts=texts)

    print("\nVQA exact match (greedy), by question type")
    for world in [args.world, *other]:
        for split in ("test", "composition"):
            res = vqa(vq, scenes_of(split, args.n // 2, world))
            hits, total = sum(h for h, _ in res.values()), sum(t for _, t in res.values())
            parts = "  ".join(f"{k} {h / t:.3f}" for k, (h, t) in res.items() if t)
            print(f"  {world:8s} {split:12s} all {hits / total:.3f} ({total} questions)   {parts}")

    print("\ncolour binding: true caption above the colour-swapped one (0.5 = a bag of words)")
    for world in [args.world, *other]:
        res = binding(itm, clip, args.n, world)
        print(f"  {world:8s} " + "  ".join(f"{k} {v:.3f}" if k != "pairs" else f"({v} pairs)" for k, v in res.items()))

    print("\ngrounding: the cross-attention argmax of each colour or shape word falls on its object")
    rates, words = grounding(cap, kept["scenes"][:300], kept["texts"][:300])
    per_layer = "  ".join(f"layer {i + 1} {r:.3f}" for i, r in enumerate(rates))
    print(f"  {args.world} test, {words} words: {per_layer}   best {rates.max():.3f}   mean {rates.mean():.3f}")
    print(f"  (chance: the object's share of the patches, about "
          f"{np.mean([patch_masks(s, cap.grid, 64).mean(1).mean() for s in kept['scenes'][:300]]):.3f})")


if __name__ == "__main__":
    main()
