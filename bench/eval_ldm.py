"""Held-out quality of the bundled text-to-image model (ldm-shapes): does it draw what the prompt asks for?

    python bench/eval_ldm.py [--folder assets/models/ldm-shapes] [--steps 20] [--guidance 2 3 5] [--seeds 4]
                             [--scheduler pipeline ddim ...] [--pairs 36] [--validate 300] [--sheet PATH] [--card]

The pipeline is loaded and sampled exactly as a user would: StableDiffusionPipeline.from_pretrained(folder, ...), then
pipe(prompts, num_inference_steps, guidance_scale, height=32, width=32, generator=[one per image], output_type="np").
Seed s of every prompt is torch.Generator().manual_seed(s), so the columns of the contact sheet share their noise.

Prompt sets:
1. single object: "a {colour} {shape}" for all 6 x 6 colour-shape pairs, `--seeds` seeds each. The six
   shapes.HELD_OUT_PAIRS never appear in the train split (the trainer adds a sixth of composition-split scenes, so they
   are seen, but rarely), and are reported apart from the other thirty;
2. two objects: `--pairs` random "a {c1} {s1} and a {c2} {s2}" (two colours and two shapes, all distinct; seeded).

Two strict judges score every sample. Both are plain functions (tests/test_eval_ldm.py calls them):
- colour (`judge_colour`): the background is the median of the 2-pixel border; the foreground is every pixel farther
  than FG_DISTANCE from it. Fails a blank image (foreground < MIN_FOREGROUND of the image), a blotched one (more than
  MAX_FOREGROUND of the image, or its largest 4-connected blob holding less than MAIN_BLOB_SHARE of the foreground),
  and passes only if at least COLOR_SHARE of the foreground pixels, one by one, have the target as their nearest
  palette colour (shapes.COLORS) and lie within COLOR_DISTANCE of it. A blob half red and half green whose mean is
  brown or orange fails, whatever its mean;
- shape (`judge_shape`): the bundled ViT (vit-shapes, trained on 64 px scenes to name the largest object's shape) on
  the image upsampled bicubically to 64 px (more accurate than nearest on real renders; the validation prints both).
  Fails a blank or blotched image as the colour judge does (the ViT names a shape for anything, noise included), and
  passes if the ViT names the target with softmax probability >= SHAPE_CONFIDENCE;
- two objects (`judge_pair`): the two largest foreground blobs, each judged alone: its colour per pixel (`blob_colour`)
  and its shape by the ViT on the blob cut out and scaled to a large object's size (`isolate`); passes if the set of
  (colour, shape) pairs is the prompt's.

Before sampling, the judges are validated on images whose truth is known (printed first): real 32 px renders of the
test split, the same renders after a round trip through the pipeline's VAE (the best its decoder can hand back), the
same judged against every wrong colour and shape, blank images, decoded latent noise, pixel noise, and the foreign
drawings of bench/foreign_shapes.py (another renderer and palette). `--validate 0` skips this.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from bench import foreign_shapes
from mmcore import shapes
from mmcore import vit as V
from mmcore.train.common import replace_section

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = ROOT / "assets" / "models" / "ldm-shapes"
VIT_FOLDER = ROOT / "assets" / "models" / "vit-shapes"
SIZE = 32  # the pipeline's images: 32 px, 4 x 8 x 8 latents

# --- the judges' thresholds (validated by `validate`, whose numbers the script prints) ------------------------------
# Every palette colour lies >= 179 (RGB, Euclidean) from the classic near-white backgrounds, so a pixel 80 away is at
# most ~55% background: the inner half of an anti-aliased rim counts, the faint haze of a decoder does not.
FG_DISTANCE = 80.0
# Within 60 of the target; the closest two palette colours (orange and yellow) are 71 apart, so the nearest-colour rule
# decides between them and the distance rule rejects washed-out or muddy ink that is merely nearer the target than the
# others. On real 32 px renders 70-100% of the foreground passes this per-pixel test (stars lowest: their rim is half
# their area); 60% keeps a margin for the VAE's softer edges while a two-colour blob (at most ~50%) fails.
COLOR_DISTANCE = 60.0
COLOR_SHARE = 0.6
MIN_FOREGROUND = 0.02  # of the image: 20 px at 32 px; a real large object covers 8-20%, a small one ~2-5%
MAX_FOREGROUND = 0.6  # of the image: a large circle covers ~20%, the foreign set's biggest ~52%; beyond: a wash
MAIN_BLOB_SHARE = 0.8  # a real render is one blob (100%); specks and fragments beyond 20% mean a blotched image
MIN_BLOB = 0.006  # of the image, for the two-object judge: 6 px at 32 px; a real small object keeps >= 24 px
# The ViT must name the target with p >= 0.6: more than all five other shapes together (0.5), with a margin. On real
# renders this costs under 1% of the correct answers (the validation prints it); it rejects the coin flips of a
# half-formed shape, which the argmax alone would accept.
SHAPE_CONFIDENCE = 0.6
# The two-object judge. Real objects at 32 px: a large one's foreground spans 13-17 px (0.47 of the side), a small
# one's 7-9 px; at least half a small object's pixels are palette colours, and >= 90% of those are its own colour.
BLOB_SIDE = 0.47  # isolate() scales each blob to a large object's span
PAIR_INK = 0.4
PAIR_PURITY = 0.8
PALETTE = np.array([shapes.COLORS[c] for c in shapes.COLOR_NAMES], dtype=np.float64)  # (6, 3)


@dataclass(frozen=True)
class Verdict:
    """A judge's answer: `ok`, and what it saw (the reason when not ok)."""

    ok: bool
    seen: str


# --- pixels ---------------------------------------------------------------------------------------------------------

def _as_array(image: np.ndarray | Image.Image) -> np.ndarray:
    a = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"image must be RGB with shape (H, W, 3), got {a.shape}")
    if a.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0-255), got {a.dtype}")
    return a


def background(image: np.ndarray) -> np.ndarray:
    """The background colour: the per-channel median of the 2-pixel border ring. (H, W, 3) uint8 -> (3,) float64."""
    a = _as_array(image).astype(np.float64)
    ring = np.concatenate([a[:2].reshape(-1, 3), a[-2:].reshape(-1, 3), a[2:-2, :2].reshape(-1, 3),
                           a[2:-2, -2:].reshape(-1, 3)])
    return np.median(ring, axis=0)


def foreground(image: np.ndarray, bg: np.ndarray | None = None) -> np.ndarray:
    """Pixels farther than FG_DISTANCE (RGB, Euclidean) from the background: (H, W, 3) uint8 -> (H, W) bool."""
    a = _as_array(image).astype(np.float64)
    bg = background(a.astype(np.uint8)) if bg is None else bg
    return np.linalg.norm(a - bg, axis=-1) > FG_DISTANCE


def components(mask: np.ndarray, connectivity: int = 4) -> list[np.ndarray]:
    """The connected components of a (H, W) bool mask (4- or 8-connected), largest first, each a (H, W) bool mask.

    A flood fill, so that the script needs nothing beyond numpy (scipy.ndimage.label gives the same components).
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)] if connectivity == 8 else []
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int32)
    sizes = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if labels[y0, x0]:
            continue
        label = len(sizes) + 1
        labels[y0, x0], stack, size = label, [(y0, x0)], 0
        while stack:
            y, x = stack.pop()
            size += 1
            for dy, dx in steps:
                ny, nx = y + dy, x + dx
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = label
                    stack.append((ny, nx))
        sizes.append(size)
    order = np.argsort(sizes, kind="stable")[::-1]
    return [labels == int(k) + 1 for k in order]


def palette_votes(image: np.ndarray, mask: np.ndarray) -> Counter:
    """Per-pixel colour names of the masked pixels: the nearest palette colour when within COLOR_DISTANCE of it,
    else "other". Returns Counter({name: pixels})."""
    px = _as_array(image)[mask].astype(np.float64)  # (n, 3)
    dist = np.linalg.norm(px[:, None, :] - PALETTE[None], axis=-1)  # (n, 6)
    nearest = dist.argmin(axis=1)
    close = dist[np.arange(len(px)), nearest] <= COLOR_DISTANCE
    return Counter(shapes.COLOR_NAMES[k] if c else "other" for k, c in zip(nearest.tolist(), close.tolist()))


def _check_color(color: str) -> None:
    if color not in shapes.COLORS:
        raise ValueError(f"color must be one of {shapes.COLOR_NAMES}, got {color!r}")


def _check_shape(shape: str) -> None:
    if shape not in shapes.SHAPES:
        raise ValueError(f"shape must be one of {shapes.SHAPES}, got {shape!r}")


# --- the judges -----------------------------------------------------------------------------------------------------

def object_problem(image: np.ndarray | Image.Image) -> str | None:
    """Why `image` (H, W, 3) uint8 is not one object on a plain background, or None when it is.

    "blank": foreground < MIN_FOREGROUND of the image; "blotched": foreground > MAX_FOREGROUND of it, or its largest
    4-connected blob holds < MAIN_BLOB_SHARE of the foreground ("2 objects" when several blobs are >= MIN_BLOB).
    Both judges fail such an image whatever the target.
    """
    fg = foreground(image)
    n, area = int(fg.sum()), fg.size
    if n < MIN_FOREGROUND * area:
        return f"blank ({n} px)"
    if n > MAX_FOREGROUND * area:
        return f"blotched ({n / area:.0%} of the image)"
    parts = components(fg)
    if parts[0].sum() < MAIN_BLOB_SHARE * n:
        objects = sum(int(p.sum() >= MIN_BLOB * area) for p in parts)  # blobs the size of a small object or more
        what = f"{objects} objects" if objects > 1 else "blotched"
        return f"{what} ({len(parts)} blobs, largest {parts[0].sum() / n:.0%})"
    return None


def judge_colour(image: np.ndarray | Image.Image, color: str) -> Verdict:
    """Is `image` (H, W, 3) uint8 one object of colour `color` (a shapes.COLORS name) on a plain background?

    Fails a blank or blotched image (`object_problem`), and one where fewer than COLOR_SHARE of the foreground pixels
    are, each on its own, `color` (nearest palette colour and within COLOR_DISTANCE). The mean colour plays no part.
    """
    _check_color(color)
    a = _as_array(image)
    problem = object_problem(a)
    if problem:
        return Verdict(False, problem)
    fg = foreground(a)
    n = int(fg.sum())
    votes = palette_votes(a, fg)
    share = votes[color] / n
    top, k = votes.most_common(1)[0]
    seen = f"{share:.0%} {color}" + ("" if top == color else f", {k / n:.0%} {top}")
    return Verdict(share >= COLOR_SHARE, seen)


def _vit_input(bundle: V.ViTBundle, images: Sequence[np.ndarray]) -> torch.Tensor:
    """Bicubic upsampling to the ViT's input size, then its processor's normalisation: (B, 3, S, S)."""
    s = bundle.input_size
    pil = [Image.fromarray(_as_array(a)).resize((s, s), Image.Resampling.BICUBIC) for a in images]
    return bundle.processor(images=pil, return_tensors="pt")["pixel_values"].to(bundle.device, bundle.dtype)


def shape_probabilities(bundle: V.ViTBundle, images: Sequence[np.ndarray]) -> np.ndarray:
    """The ViT's softmax over its labels for each image, upsampled bicubically to its input size (an image already
    that size passes as it is): B images (H, W, 3) uint8 -> (B, num_labels) float."""
    probs = []
    for i in range(0, len(images), 256):
        with torch.inference_mode():
            logits = bundle.model(pixel_values=_vit_input(bundle, images[i:i + 256])).logits
        probs.append(logits.float().softmax(-1).cpu().numpy())
    return np.concatenate(probs) if probs else np.zeros((0, bundle.model.config.num_labels))


def judge_shape(bundle: V.ViTBundle, images: Sequence[np.ndarray], targets: Sequence[str]) -> list[Verdict]:
    """Is each image one `target` shape? B images (H, W, 3) uint8 and B shape names -> B Verdicts.

    Fails a blank or blotched image (`object_problem`: the ViT names a shape for anything, noise included); otherwise
    passes when the bundled ViT names the target with softmax probability >= SHAPE_CONFIDENCE.
    """
    if len(images) != len(targets):
        raise ValueError(f"images and targets must have the same length, got {len(images)} and {len(targets)}")
    for t in targets:
        _check_shape(t)
    labels = bundle.model.config.id2label
    out = []
    for a, target, p in zip(images, targets, shape_probabilities(bundle, images)):
        k = int(p.argmax())
        guess, conf = labels[k], float(p[k])
        problem = object_problem(a)
        if problem:
            out.append(Verdict(False, f"{problem}, {guess} {conf:.2f}"))
        else:
            out.append(Verdict(guess == target and conf >= SHAPE_CONFIDENCE, f"{guess} {conf:.2f}"))
    return out


def _dilate(mask: np.ndarray) -> np.ndarray:
    """A (H, W) bool mask grown by one pixel in the 8 directions."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    grown = out.copy()
    out[:, 1:] |= grown[:, :-1]
    out[:, :-1] |= grown[:, 1:]
    return out


def isolate(image: np.ndarray, blob: np.ndarray, out_size: int = 64) -> np.ndarray:
    """One object of several, as the ViT is shown it: the blob (dilated by a pixel, to keep its anti-aliased rim) on
    the background, scaled so that its longer side spans BLOB_SIDE of the frame (a large object's) and centred.

    A small object (0.13 of the side: 4 px of radius at 32 px) is too small for the ViT, which names the largest
    object's shape and saw small ones only beside a large one; scaled up, it is judged like a large one.
    image (H, W, 3) uint8, blob (H, W) bool -> (out_size, out_size, 3) uint8.
    """
    a = _as_array(image)
    bg = tuple(int(v) for v in np.round(background(a)))
    keep = _dilate(blob)
    alone = np.empty_like(a)
    alone[:] = bg
    alone[keep] = a[keep]
    ys, xs = np.nonzero(blob)
    side = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    scale = min(4.0, BLOB_SIDE * a.shape[0] / side) * out_size / a.shape[0]  # 32 px image -> out_size px canvas
    big = Image.fromarray(alone).resize((round(a.shape[1] * scale), round(a.shape[0] * scale)),
                                        Image.Resampling.BICUBIC)
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    canvas = Image.new("RGB", (out_size, out_size), bg)
    canvas.paste(big, (round(out_size / 2 - cx * scale), round(out_size / 2 - cy * scale)))
    return np.asarray(canvas)


def blob_colour(image: np.ndarray, blob: np.ndarray) -> str:
    """The colour name of one blob of a several-object image, "mixed" or "muddy" when it has none.

    A small object's anti-aliased rim can be half its pixels, so the single-object rule (COLOR_SHARE of all pixels)
    would fail real small objects; here at least PAIR_INK of the blob's pixels must be palette colours (within
    COLOR_DISTANCE), and at least PAIR_PURITY of those must be one colour: a half red, half green blob still fails.
    """
    votes = palette_votes(image, blob)
    n = int(blob.sum())
    ink = n - votes["other"]
    if ink < PAIR_INK * n:
        return "muddy"
    color, k = Counter({c: v for c, v in votes.items() if c != "other"}).most_common(1)[0]
    return color if k >= PAIR_PURITY * ink else "mixed"


def judge_pair(bundle: V.ViTBundle, image: np.ndarray, objects: Sequence[tuple[str, str]]) -> Verdict:
    """Does `image` (H, W, 3) uint8 hold the two (colour, shape) `objects`, and nothing else of note?

    The two largest 4-connected foreground blobs (objects that touch only at a corner count apart) must each be
    >= MIN_BLOB of the image and hold together >= MAIN_BLOB_SHARE of the foreground; each gets its colour
    (`blob_colour`) and the ViT's shape on the blob alone (`isolate`; p >= SHAPE_CONFIDENCE). Passes if the set of
    (colour, shape) pairs equals that of `objects`.
    """
    if len(objects) != 2:
        raise ValueError(f"objects must be two (colour, shape) pairs, got {len(objects)}")
    for c, s in objects:
        _check_color(c)
        _check_shape(s)
    a = _as_array(image)
    fg = foreground(a)
    n, area = int(fg.sum()), fg.size
    if n < MIN_FOREGROUND * area:
        return Verdict(False, f"blank ({n} px)")
    if n > MAX_FOREGROUND * area:
        return Verdict(False, f"blotched ({n / area:.0%} of the image)")
    parts = components(fg)
    if len(parts) < 2 or parts[1].sum() < MIN_BLOB * area:
        return Verdict(False, "one object")
    blobs = parts[:2]
    if (blobs[0].sum() + blobs[1].sum()) < MAIN_BLOB_SHARE * n:
        return Verdict(False, f"blotched ({len(parts)} blobs)")
    probs = shape_probabilities(bundle, [isolate(a, b, bundle.input_size) for b in blobs])
    labels = bundle.model.config.id2label
    seen = [(blob_colour(a, b), labels[int(p.argmax())] if p.max() >= SHAPE_CONFIDENCE else "unsure")
            for b, p in zip(blobs, probs)]
    return Verdict(set(seen) == set(map(tuple, objects)), " + ".join(f"{c} {s}" for c, s in seen))


# --- validation of the judges ---------------------------------------------------------------------------------------

def _test_renders(n: int, objects: int = 1) -> tuple[list[np.ndarray], list[shapes.Scene]]:
    scenes = [shapes.sample_scene(shapes.split_seed("test", i), min_objects=objects, max_objects=objects,
                                  one_large=True) for i in range(n)]
    return [shapes.render(s, SIZE) for s in scenes], scenes


def _rate(flags: Sequence[bool]) -> str:
    return f"{np.mean(flags):.3f} ({sum(flags)}/{len(flags)})" if len(flags) else "n/a"


def _swatch_in_palette(drawing: foreign_shapes.Drawing) -> bool:
    """Whether a foreign drawing's ink (its most saturated pixel colour) lies within COLOR_DISTANCE of its palette
    colour: the foreign palette's pure blue (0, 0, 255) is 96 from the classic one, which the colour judge rejects."""
    a = np.asarray(drawing.image, dtype=np.float64).reshape(-1, 3)
    ink = a[np.argmax(a.max(1) - a.min(1))]
    return bool(np.linalg.norm(ink - np.array(shapes.COLORS[drawing.color])) <= COLOR_DISTANCE)


def _decode(vae, z: torch.Tensor) -> list[np.ndarray]:
    """Unscaled latents (B, 4, h, w) -> B images (H, W, 3) uint8, through the VAE's decoder."""
    with torch.inference_mode():
        x = torch.cat([vae.decode(z[i:i + 100]).sample for i in range(0, len(z), 100)])
    return list(((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())


def _round_trip(vae, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Decoder(mean of Encoder(x)) of B images (H, W, 3) uint8: what the decoder hands back for a perfect latent."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.inference_mode():
        z = torch.cat([vae.encode(x[i:i + 100]).latent_dist.mean for i in range(0, len(x), 100)])
    return _decode(vae, z)


def validate(bundle: V.ViTBundle, n: int, vae=None) -> dict[str, float]:
    """Print how the judges fare on images whose truth is known; returns the headline rates."""
    rng = np.random.default_rng(0)
    renders, scenes = _test_renders(n)
    objs = [s.objects[0] for s in scenes]
    col = [judge_colour(a, o.color).ok for a, o in zip(renders, objs)]
    shp = [v.ok for v in judge_shape(bundle, renders, [o.shape for o in objs])]
    both = [c and s for c, s in zip(col, shp)]
    print(f"judge validation (test split, one large object, {SIZE} px; thresholds: foreground > {FG_DISTANCE:g} from "
          f"the border median, >= {COLOR_SHARE:.0%} of it within {COLOR_DISTANCE:g} of the target and nearest to it; "
          f"ViT p >= {SHAPE_CONFIDENCE})")
    print(f"  {'set':<52}{'colour':>20}{'shape':>20}{'both':>20}")

    def row(name: str, c: Sequence[bool], s: Sequence[bool], b: Sequence[bool] | None = None, note: str = "") -> None:
        b = [x and y for x, y in zip(c, s)] if b is None else b
        print(f"  {name:<52}{_rate(c):>20}{_rate(s):>20}{_rate(b):>20}{note}")

    row(f"real renders, true target: accepted ({n})", col, shp, both, "   target >= 0.98")
    labels = bundle.model.config.id2label
    s64 = bundle.input_size
    nearest_in = [np.asarray(Image.fromarray(a).resize((s64, s64), Image.Resampling.NEAREST)) for a in renders]
    p_near = shape_probabilities(bundle, nearest_in)  # the processor leaves a 64 px image as it is
    p_bic = shape_probabilities(bundle, renders)
    acc_near = np.mean([labels[int(p.argmax())] == o.shape for p, o in zip(p_near, objs)])
    acc_bic = np.mean([labels[int(p.argmax())] == o.shape for p, o in zip(p_bic, objs)])
    print(f"  {'  ViT argmax accuracy, bicubic vs nearest upsampling':<52}{acc_bic:>20.3f}{acc_near:>20.3f}"
          "   (bicubic is used)")
    wrong_c = [judge_colour(a, c).ok for a, o in zip(renders, objs) for c in shapes.COLOR_NAMES if c != o.color]
    wrong_imgs = [a for a, o in zip(renders, objs) for s in shapes.SHAPES if s != o.shape]
    wrong_s = [v.ok for v in judge_shape(bundle, wrong_imgs, [s for o in objs for s in shapes.SHAPES if s != o.shape])]
    print(f"  {f'real renders, every wrong target: false accepts ({n} x 5)':<52}{_rate(wrong_c):>20}"
          f"{_rate(wrong_s):>20}{'':>20}   target <= 0.01")
    out = {"judge_real_both": float(np.mean(both)), "judge_wrong_colour_false_accept": float(np.mean(wrong_c)),
           "judge_wrong_shape_false_accept": float(np.mean(wrong_s))}

    if vae is not None:  # what the pipeline's own decoder hands back for a perfect latent
        rec_imgs = _round_trip(vae, renders)
        c = [judge_colour(a, o.color).ok for a, o in zip(rec_imgs, objs)]
        s = [v.ok for v in judge_shape(bundle, rec_imgs, [o.shape for o in objs])]
        row(f"VAE round trip of those renders: accepted ({n})", c, s, note="   target >= 0.95")
        out["judge_vae_round_trip_both"] = float(np.mean([p and q for p, q in zip(c, s)]))
        f = 2 ** (len(vae.config.block_out_channels) - 1)
        noise_z = torch.randn((n, vae.config.latent_channels, SIZE // f, SIZE // f),
                              generator=torch.Generator().manual_seed(0)) / vae.config.scaling_factor
        noise_imgs = _decode(vae, noise_z)
        targets = [(shapes.COLOR_NAMES[i % 6], shapes.SHAPES[(i // 6) % 6]) for i in range(n)]
        c = [judge_colour(a, t[0]).ok for a, t in zip(noise_imgs, targets)]
        s = [v.ok for v in judge_shape(bundle, noise_imgs, [t[1] for t in targets])]
        row(f"decoded latent noise N(0, I): accepted ({n})", c, s, note="   target 0")
        out["judge_latent_noise_both"] = float(np.mean([p and q for p, q in zip(c, s)]))

    blanks = [np.broadcast_to(np.array(sc.background, np.uint8), (SIZE, SIZE, 3)).copy() for sc in scenes]
    c = [judge_colour(a, o.color).ok for a, o in zip(blanks, objs)]
    s = [v.ok for v in judge_shape(bundle, blanks, [o.shape for o in objs])]
    row(f"blank backgrounds: accepted ({n})", c, s, note="   target 0")
    pixel_noise = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(n)]
    c = [judge_colour(a, o.color).ok for a, o in zip(pixel_noise, objs)]
    s = [v.ok for v in judge_shape(bundle, pixel_noise, [o.shape for o in objs])]
    row(f"uniform pixel noise: accepted ({n})", c, s, note="   target 0")
    # the mean-colour trick: the true object with its left half recoloured to the palette colour three places on
    # (red <-> yellow, green <-> purple, blue <-> orange), so the mean is neither (red + yellow averages to orange)
    halves = []
    for a, sc in zip(renders, scenes):
        o = sc.objects[0]
        other = shapes.COLOR_NAMES[(shapes.COLOR_NAMES.index(o.color) + 3) % 6]
        left = shapes.render(shapes.altered(sc, 0, color=other), SIZE)
        split = a.copy()
        cut = round(o.x * SIZE)
        split[:, :cut] = left[:, :cut]
        halves.append(split)
    c = [judge_colour(a, o.color).ok for a, o in zip(halves, objs)]
    print(f"  {f'half target colour, half another: accepted ({n})':<52}{_rate(c):>20}{'':>20}{'':>20}   target 0")

    drawings = foreign_shapes.foreign_set(max(36, n))
    small = [np.asarray(d.image.resize((SIZE, SIZE), Image.Resampling.BOX)) for d in drawings]
    c = [judge_colour(a, d.color).ok for a, d in zip(small, drawings)]
    s = [v.ok for v in judge_shape(bundle, small, [d.shape for d in drawings])]
    row(f"foreign drawings at {SIZE} px, all styles: accepted ({len(drawings)})", c, s, note="   (another palette)")
    plain = [i for i, d in enumerate(drawings) if d.style.startswith("fill on") and "dark" not in d.style]
    row(f"  of which filled on a light paper ({len(plain)})", [c[i] for i in plain], [s[i] for i in plain])
    ink = [i for i in plain if _swatch_in_palette(drawings[i])]
    row(f"    and inked within {COLOR_DISTANCE:g} of the palette ({len(ink)})", [c[i] for i in ink],
        [s[i] for i in ink])
    out["judge_foreign_both"] = float(np.mean([p and q for p, q in zip(c, s)]))

    pairs_imgs, pair_scenes = _test_renders(n, objects=2)
    truth = [[(o.color, o.shape) for o in sc.objects] for sc in pair_scenes]
    ok = [judge_pair(bundle, a, t).ok for a, t in zip(pairs_imgs, truth)]
    swapped = [(a, [(t[1][0], t[0][1]), (t[0][0], t[1][1])]) for a, t in zip(pairs_imgs, truth)
               if t[0][0] != t[1][0] and t[0][1] != t[1][1]]
    fooled = [judge_pair(bundle, a, t).ok for a, t in swapped]
    print(f"  {f'two-object renders (one large): accepted ({n})':<52}{_rate(ok):>20}   the same, colours swapped "
          f"between the shapes: accepted {_rate(fooled)}")
    out["judge_pair_real"] = float(np.mean(ok))
    if vae is not None:
        ok = [judge_pair(bundle, a, t).ok for a, t in zip(_round_trip(vae, pairs_imgs), truth)]
        print(f"  {f'  their VAE round trip: accepted ({n})':<52}{_rate(ok):>20}")
        out["judge_pair_vae_round_trip"] = float(np.mean(ok))
    return out


# --- sampling -------------------------------------------------------------------------------------------------------

SCHEDULERS = {  # --scheduler name -> diffusers class name; "pipeline" keeps the folder's own
    "ddpm": "DDPMScheduler",
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "dpm++2m": "DPMSolverMultistepScheduler",
}


def noun(color: str, shape: str) -> str:
    """"a red circle", "an orange star": the phrasing of shapes' captions."""
    return shapes.Obj(shape, color, "large", 0.5, 0.5).noun()


def single_prompts() -> list[tuple[str, str, str]]:
    """(prompt, colour, shape) for every colour x shape, colour-major."""
    return [(noun(c, s), c, s) for c in shapes.COLOR_NAMES for s in shapes.SHAPES]


def pair_prompts(n: int, seed: int = 0) -> list[tuple[str, list[tuple[str, str]]]]:
    """n distinct two-object prompts with two colours and two shapes, all different: (prompt, [(c1, s1), (c2, s2)])."""
    rng = np.random.default_rng(seed)
    out, seen = [], set()
    while len(out) < n:
        c1, c2 = rng.choice(len(shapes.COLOR_NAMES), 2, replace=False)
        s1, s2 = rng.choice(len(shapes.SHAPES), 2, replace=False)
        objs = [(shapes.COLOR_NAMES[c1], shapes.SHAPES[s1]), (shapes.COLOR_NAMES[c2], shapes.SHAPES[s2])]
        key = frozenset(objs)
        if key in seen:
            continue
        seen.add(key)
        out.append((f"{noun(*objs[0])} and {noun(*objs[1])}", objs))
    return out


def sample(pipe, prompts: list[str], seeds: int, steps: int, guidance: float, batch: int = 48) -> np.ndarray:
    """Every prompt x seed 0..seeds-1, prompt-major: (len(prompts) * seeds, 32, 32, 3) uint8."""
    jobs = [(p, s) for p in prompts for s in range(seeds)]
    out = []
    for i in range(0, len(jobs), batch):
        chunk = jobs[i:i + batch]
        generators = [torch.Generator().manual_seed(s) for _, s in chunk]
        images = pipe([p for p, _ in chunk], num_inference_steps=steps, guidance_scale=guidance, height=SIZE,
                      width=SIZE, generator=generators, output_type="np").images
        out.append(np.round(np.clip(images, 0, 1) * 255).astype(np.uint8))
    return np.concatenate(out)


# --- the contact sheet ----------------------------------------------------------------------------------------------

def _mark(draw: ImageDraw.ImageDraw, x: int, y: int, ok: bool) -> None:
    """A 9 px tick (green) or cross (red), drawn as lines so that no font needs the glyphs."""
    if ok:
        draw.line([(x, y + 5), (x + 3, y + 8), (x + 9, y)], fill=(20, 140, 40), width=2)
    else:
        draw.line([(x, y), (x + 8, y + 8)], fill=(200, 30, 30), width=2)
        draw.line([(x, y + 8), (x + 8, y)], fill=(200, 30, 30), width=2)


def contact_sheet(images: np.ndarray, verdicts: list[tuple[Verdict, Verdict]], seeds: int, title: str,
                  cell: int = 64) -> Image.Image:
    """Rows = colours, column groups = shapes, one column per seed. Under each cell: a mark per judge (C = colour,
    S = shape) and the ViT's guess when it differs. Held-out pairs get a gold frame. images: (36 * seeds, 32, 32, 3)."""
    font = ImageFont.load_default()
    pad, label_w, head_h, text_h, gap = 3, 56, 48, 14, 10
    group_w = seeds * (cell + pad) + gap
    sheet = Image.new("RGB", (label_w + len(shapes.SHAPES) * group_w, head_h + 6 * (cell + text_h + pad) + pad),
                      "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), title, fill=(20, 20, 20), font=font)
    draw.rectangle([4, 17, 12, 25], outline=(212, 160, 0), width=2)
    draw.text((16, 16), "held-out pair   C = colour judge, S = shape judge (ViT guess when wrong)", fill=(60, 60, 60),
              font=font)
    for j, s in enumerate(shapes.SHAPES):
        draw.text((label_w + j * group_w, head_h - 14), s, fill=(20, 20, 20), font=font)
    for i, (_, c, s) in enumerate(single_prompts()):
        row, group = shapes.COLOR_NAMES.index(c), shapes.SHAPES.index(s)
        y = head_h + row * (cell + text_h + pad)
        draw.text((4, y + cell // 2 - 6), c, fill=(20, 20, 20), font=font)
        for k in range(seeds):
            x = label_w + group * group_w + k * (cell + pad)
            tile = Image.fromarray(images[i * seeds + k]).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(tile, (x, y))
            if (c, s) in shapes.HELD_OUT_PAIRS:
                draw.rectangle([x - 1, y - 1, x + cell, y + cell], outline=(212, 160, 0), width=2)
            colour_v, shape_v = verdicts[i * seeds + k]
            draw.text((x, y + cell + 1), "C", fill=(40, 40, 40), font=font)
            _mark(draw, x + 8, y + cell + 3, colour_v.ok)
            draw.text((x + 22, y + cell + 1), "S", fill=(40, 40, 40), font=font)
            _mark(draw, x + 30, y + cell + 3, shape_v.ok)
            if not shape_v.ok:
                draw.text((x + 42, y + cell + 1), shape_v.seen.split()[-2][:4] if " " in shape_v.seen else "",
                          fill=(120, 120, 120), font=font)
    return sheet


# --- the model card -------------------------------------------------------------------------------------------------

SECTION = "## Measured by bench/eval_ldm.py"
OWN_METRICS = ("eval_", "judge_", "single_object_", "held_out_pairs_", "two_object_")  # metrics.json keys it writes


def write_card(folder: Path, metrics: dict, section: str) -> None:
    """Merge `metrics` into folder/metrics.json (dropping every OWN_METRICS key of an earlier run) and put `section`
    (markdown, starting with SECTION) in MODEL_CARD.md, replacing a previous one and keeping the rest of the card."""
    path = folder / "metrics.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    old = {k: v for k, v in old.items() if not k.startswith(OWN_METRICS)}  # no stale numbers of an earlier run
    path.write_text(json.dumps({**old, **metrics}, indent=2) + "\n")
    heading, _, body = section.partition("\n")
    assert heading == SECTION, heading  # the section starts with its own heading
    replace_section(folder / "MODEL_CARD.md", SECTION, body)


# --- the run --------------------------------------------------------------------------------------------------------

def _failure(colour: Verdict, shape: Verdict) -> str:
    """What the judges saw in a failed sample, the blank/blotched reason once when both share it."""
    if not colour.ok and not shape.ok and shape.seen.startswith(colour.seen):
        return shape.seen
    return " / ".join(v.seen for v in (colour, shape) if not v.ok)


def _steps_trained(folder: Path) -> object:
    """The training steps that folder/metrics.json records (the trainer rewrites it at every save), or "?"."""
    path = folder / "metrics.json"
    return json.loads(path.read_text()).get("steps_trained", "?") if path.is_file() else "?"


def _share(flags: Sequence[bool]) -> str:
    return f"{np.mean(flags):.3f}" if len(flags) else "  n/a"


def attention_peaks(folder: Path, steps: int, guidance: float, seeds: int = 1) -> dict[str, float]:
    """How often the per-word cross-attention map (mmcore.ldm.attention_run: summed over steps, layers and heads, as
    the tab shows it) of the colour word and of the shape word peaks on the generated object: the map's argmax,
    upsampled bilinearly to 32 px, inside the image's foreground dilated by one pixel. Single-object prompts, DDIM. A
    map that peaks on the background fails; a uniform map lands on the object about as often as its area share."""
    import torch.nn.functional as F

    from mmcore import ldm

    bundle = ldm.load_ldm(str(folder), torch.device("cpu"), torch.float32)
    hits: dict[str, list[bool]] = {"colour": [], "shape": []}
    area = []
    for _, color, shape in single_prompts():
        for seed in range(seeds):
            req = ldm.Request(noun(color, shape), "", "DDIM", steps, guidance, seed, SIZE)
            *run, maps = list(ldm.attention_run(bundle, req))
            image = ((ldm.decode(bundle, run[-1].latents)[0].permute(1, 2, 0).numpy() + 1) * 127.5).round()
            image = image.clip(0, 255).astype(np.uint8)
            fg = _dilate(foreground(image))
            area.append(float(fg.mean()))
            for kind, word in (("colour", color), ("shape", shape)):
                if word not in maps.words:
                    hits[kind].append(False)
                    continue
                heat = maps.maps[maps.words.index(word)][None, None]
                heat = F.interpolate(heat, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0, 0]
                y, x = divmod(int(heat.argmax()), SIZE)
                hits[kind].append(bool(fg[y, x]))
    return {"attention_peak_on_object_colour_word": float(np.mean(hits["colour"])),
            "attention_peak_on_object_shape_word": float(np.mean(hits["shape"])),
            "object_area_share_dilated": float(np.mean(area))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help="a StableDiffusionPipeline folder")
    ap.add_argument("--steps", type=int, default=20, help="num_inference_steps")
    ap.add_argument("--guidance", type=float, nargs="+", default=[3.0], help="guidance_scale values to compare")
    ap.add_argument("--seeds", type=int, default=4, help="seeds per prompt (0, 1, ...)")
    ap.add_argument("--scheduler", nargs="+", default=["pipeline"], choices=["pipeline", *SCHEDULERS],
                    help="samplers to compare; pipeline = the folder's own")
    ap.add_argument("--pairs", type=int, default=36, help="two-object prompts")
    ap.add_argument("--validate", type=int, default=300, help="known images per judge-validation set (0 = skip)")
    ap.add_argument("--sheet", type=Path, default=None, help="contact sheet PNG (default with --card: samples.png)")
    ap.add_argument("--card", action="store_true", help="write the results into metrics.json and MODEL_CARD.md")
    ap.add_argument("--attention", action="store_true",
                    help="also measure where the colour and shape words' cross-attention maps peak (one seed)")
    args = ap.parse_args()
    if not 1 <= args.steps <= 1000:
        ap.error(f"--steps must be in [1, 1000], got {args.steps}")
    if not 1 <= args.seeds <= 64:
        ap.error(f"--seeds must be in [1, 64], got {args.seeds}")
    if not 0 <= args.pairs <= 225:
        ap.error(f"--pairs must be in [0, 225] (the distinct two-object prompts), got {args.pairs}")
    if any(w < 0 for w in args.guidance):
        ap.error(f"--guidance values must be >= 0 (1 or less turns classifier-free guidance off), got {args.guidance}")
    if not (args.folder / "model_index.json").is_file():
        ap.error(f"--folder {args.folder} holds no StableDiffusionPipeline (no model_index.json); train it with "
                 "`python -m mmcore.train ldm`")
    sheet_path = args.sheet or (args.folder / "samples.png" if args.card else None)
    import diffusers
    import transformers
    from diffusers import StableDiffusionPipeline

    for lib in (diffusers, transformers):  # no loading bars or accelerate advice between the tables
        lib.utils.logging.set_verbosity_error()
        lib.utils.logging.disable_progress_bar()

    t_start = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(args.folder, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    own = pipe.scheduler
    bundle = V.load_vit(str(VIT_FOLDER), torch.device("cpu"), torch.float32)
    steps_trained = _steps_trained(args.folder)
    print(f"ldm-shapes at {args.folder} (steps trained: {steps_trained}), own scheduler {type(own).__name__} "
          f"({own.config.prediction_type}), diffusers {diffusers.__version__}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    validation = {}
    if args.validate:
        t0 = time.perf_counter()
        validation = validate(bundle, args.validate, pipe.vae)
        print(f"  (validation took {time.perf_counter() - t0:.1f} s)")

    singles, pairs = single_prompts(), pair_prompts(args.pairs)
    results, sheet_data = [], None
    for sched_name in args.scheduler:
        pipe.scheduler = own if sched_name == "pipeline" else \
            getattr(diffusers, SCHEDULERS[sched_name]).from_config(own.config)
        for w in args.guidance:
            label = f"{sched_name} ({type(pipe.scheduler).__name__}), {args.steps} steps, guidance {w:g}"
            t0 = time.perf_counter()
            imgs = sample(pipe, [p for p, _, _ in singles], args.seeds, args.steps, w)
            pair_imgs = sample(pipe, [p for p, _ in pairs], args.seeds, args.steps, w) if pairs else imgs[:0]
            t_sample = time.perf_counter() - t0
            t0 = time.perf_counter()
            targets = [(c, s) for _, c, s in singles for _ in range(args.seeds)]
            col = [judge_colour(a, c) for a, (c, _) in zip(imgs, targets)]
            shp = judge_shape(bundle, list(imgs), [s for _, s in targets])
            pair_v = [judge_pair(bundle, a, objs) for a, (_, objs) in
                      zip(pair_imgs, [q for q in pairs for _ in range(args.seeds)])]
            t_judge = time.perf_counter() - t0
            both = [c.ok and s.ok for c, s in zip(col, shp)]
            held = [(c, s) in shapes.HELD_OUT_PAIRS for c, s in targets]
            r = {"label": label, "scheduler": sched_name, "guidance": w,
                 "both": np.mean(both), "colour": np.mean([v.ok for v in col]), "shape": np.mean([v.ok for v in shp]),
                 "held_out": np.mean([b for b, h in zip(both, held) if h]),
                 "seen": np.mean([b for b, h in zip(both, held) if not h]),
                 "pairs": np.mean([v.ok for v in pair_v]) if pair_v else float("nan"),
                 "per_image_ms": 1000 * t_sample / (len(imgs) + len(pair_imgs)), "judge_s": t_judge}
            results.append(r)
            print(f"\n{label}: sampled {len(imgs) + len(pair_imgs)} images in {t_sample:.1f} s "
                  f"({r['per_image_ms']:.0f} ms per image), judged in {t_judge:.1f} s")
            print(f"  single object, {len(imgs)} images: both judges {_share(both)}  (colour {r['colour']:.3f}, "
                  f"shape {r['shape']:.3f});  held-out pairs {r['held_out']:.3f}, other pairs {r['seen']:.3f}")
            print(f"  two objects, {len(pair_imgs)} images ({len(pairs)} prompts x {args.seeds} seeds): "
                  f"both objects right {_share([v.ok for v in pair_v])}")
            print(f"  {'prompt':<22}{'both':>6}{'colour':>8}{'shape':>7}   what the judges saw when failing")
            for i, (prompt, c, s) in enumerate(singles):
                sl = slice(i * args.seeds, (i + 1) * args.seeds)
                nb, nc, ns = sum(both[sl]), sum(v.ok for v in col[sl]), sum(v.ok for v in shp[sl])
                if nb == args.seeds:
                    continue
                seen = "; ".join(f"s{k}: {_failure(cv, sv)}" for k, (cv, sv) in enumerate(zip(col[sl], shp[sl]))
                                 if not (cv.ok and sv.ok))
                tag = " *" if (c, s) in shapes.HELD_OUT_PAIRS else ""
                print(f"  {prompt + tag:<22}{nb:>4}/{args.seeds}{nc:>6}/{args.seeds}{ns:>5}/{args.seeds}   {seen}")
            print("  (* = held-out pair; prompts right on every seed are not listed)")
            failures = Counter(v.seen for v in pair_v if not v.ok)
            if pair_v:
                print(f"  two objects, most frequent failures: "
                      f"{', '.join(f'{k} x{n}' for k, n in failures.most_common(5)) or 'none'}")
            if sheet_data is None:
                sheet_data = (imgs, list(zip(col, shp)), label)

    peaks = {}
    if args.attention:
        t0 = time.perf_counter()
        peaks = attention_peaks(args.folder, args.steps, args.guidance[0])
        print(f"\nper-word cross-attention (DDIM, {args.steps} steps, guidance {args.guidance[0]:g}, seed 0, "
              f"36 prompts): the map peaks on the object for the colour word "
              f"{peaks['attention_peak_on_object_colour_word']:.3f}, the shape word "
              f"{peaks['attention_peak_on_object_shape_word']:.3f} (the object, dilated, covers "
              f"{peaks['object_area_share_dilated']:.3f} of the image: a uniform map's chance), "
              f"in {time.perf_counter() - t0:.1f} s")

    total = time.perf_counter() - t_start
    width = max(len(r["label"]) for r in results) + 2
    print(f"\n{'sampler':<{width}}{'single':>8}{'colour':>8}{'shape':>8}{'held':>7}{'other':>7}{'pairs':>7}"
          f"{'ms/img':>8}")
    for r in results:
        print(f"{r['label']:<{width}}{r['both']:>8.3f}{r['colour']:>8.3f}{r['shape']:>8.3f}{r['held_out']:>7.3f}"
              f"{r['seen']:>7.3f}{r['pairs']:>7.3f}{r['per_image_ms']:>8.0f}")
    print("single = both judges right on a single-object prompt; held/other = the held-out pairs / the other 30; "
          "pairs = both objects of a two-object prompt right")
    print(f"total time {total:.1f} s")

    if sheet_path and sheet_data:
        imgs, verdicts, label = sheet_data
        seeds = "seed 0" if args.seeds == 1 else f"seeds 0-{args.seeds - 1}"
        contact_sheet(imgs, verdicts, args.seeds, f"ldm-shapes, {label}, {seeds}").save(sheet_path)
        print(f"wrote {sheet_path}")
    if args.card and _steps_trained(args.folder) != steps_trained:
        print(f"not writing the card: the folder was saved again during the run (steps trained {steps_trained} -> "
              f"{_steps_trained(args.folder)}); run it again")
    elif args.card:
        head = results[0]
        metrics = {"eval_sampler": head["label"], "eval_seeds": args.seeds,
                   "single_object_both_judges": round(float(head["both"]), 4),
                   "single_object_colour": round(float(head["colour"]), 4),
                   "single_object_shape": round(float(head["shape"]), 4),
                   "held_out_pairs_both_judges": round(float(head["held_out"]), 4),
                   "two_object_both_right": round(float(head["pairs"]), 4),
                   **{k: round(v, 4) for k, v in peaks.items()},
                   **{k: round(v, 4) for k, v in validation.items()}}
        rows = "\n".join(f"| {r['label']} | {r['both']:.3f} | {r['colour']:.3f} | {r['shape']:.3f} | "
                         f"{r['held_out']:.3f} | {r['seen']:.3f} | {r['pairs']:.3f} |" for r in results)
        v = {k: validation.get(k, float("nan")) for k in ("judge_real_both", "judge_vae_round_trip_both",
                                                           "judge_pair_real", "judge_pair_vae_round_trip",
                                                           "judge_latent_noise_both")}
        checked = (f"The judges together accept {v['judge_real_both']:.3f} of real 32 px renders of the test split "
                   f"and {v['judge_vae_round_trip_both']:.3f} of their VAE round trips (two objects: "
                   f"{v['judge_pair_real']:.3f} and {v['judge_pair_vae_round_trip']:.3f}; the VAE rounds small "
                   f"hexagons into circles), and {v['judge_latent_noise_both']:.3f} of decoded latent noise."
                   if validation else "The judges were not validated in this run (--validate 0).")
        about = textwrap.fill(
            f"At {steps_trained} training steps: {len(singles)} single-object prompts (\"a red circle\", every "
            f"colour x shape) and {len(pairs)} two-object prompts (\"a red circle and a blue star\"), {args.seeds} "
            "seeds each, sampled with the pipeline itself at 32 px. A sample counts as right only if both strict "
            f"judges accept it: the colour judge (at least {COLOR_SHARE:.0%} of the foreground pixels, one by one, "
            "are the prompt's palette colour; no blank or blotched image) and the shape judge (the bundled ViT names "
            f"the prompt's shape with p >= {SHAPE_CONFIDENCE}). {checked} \"Held-out pairs\" = the six colour-shape "
            "pairs the train split never shows.", width=118)
        section = f"""{SECTION}

    python bench/eval_ldm.py {' '.join(sys.argv[1:])}

{about}

| sampler | single object | colour | shape | held-out pairs | other pairs | two objects |
|---|---|---|---|---|---|---|
{rows}
""" + (f"\nSamples: `{sheet_path.name}`.\n" if sheet_path and sheet_path.parent == args.folder else "")
        write_card(args.folder, metrics, section)
        print(f"wrote {args.folder / 'metrics.json'} and the '{SECTION[3:]}' section of "
              f"{args.folder / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main()
