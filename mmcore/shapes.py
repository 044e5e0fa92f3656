"""The Shapes world: procedurally drawn scenes with exact captions, questions and object masks.

Every bundled model in this project learns from these scenes, so each tab can draw a fresh one and show the ground
truth next to what the model says. A scene is a pure function of its seed:

    scene = sample_scene(seed=7)            # 1-3 objects, no overlaps
    image = render(scene, size=64)          # anti-aliased RGB uint8, (64, 64, 3)
    masks = render_masks(scene, size=64)    # bool, (num_objects, 64, 64)
    caption(scene), captions(scene), questions(scene)

Splits are disjoint seed ranges (see SPLITS). The "composition" split holds colour-shape pairs (HELD_OUT_PAIRS) that
the train split never shows, to test whether a model composes attributes rather than memorising pairs.

    python -m mmcore.shapes --n 16 --out sheet.png     # a contact sheet with captions
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "star", "hexagon")
COLORS = {  # name -> RGB, chosen to stay distinct after downscaling to 32 px
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
    "orange": (245, 130, 20),
}
COLOR_NAMES = tuple(COLORS)
SIZES = {"small": 0.13, "large": 0.24}  # radius as a fraction of the image side
NUMBERS = ("zero", "one", "two", "three")

# Colour-shape pairs that never appear in the train split (one per shape and per colour, so no word is unseen).
HELD_OUT_PAIRS = frozenset({
    ("red", "star"), ("green", "circle"), ("blue", "triangle"),
    ("yellow", "square"), ("purple", "hexagon"), ("orange", "diamond"),
})

# Disjoint seed ranges: scene i of a split has seed SPLITS[split] + i.
SPLITS = {"train": 0, "val": 1_000_000_000, "test": 2_000_000_000, "composition": 3_000_000_000}
SPLIT_SIZE = 1_000_000_000


@dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    size: str
    x: float  # centre, as a fraction of the image width (0 = left)
    y: float  # centre, as a fraction of the image height (0 = top)
    angle: float = 0.0  # rotation in degrees (shapes are drawn symmetric enough that words still hold)

    @property
    def radius(self) -> float:
        return SIZES[self.size]

    def phrase(self, with_size: bool = False) -> str:
        words = ([self.size] if with_size else []) + [self.color, self.shape]
        return " ".join(words)

    def noun(self, with_size: bool = False) -> str:
        """The phrase with its indefinite article: "a red circle", "an orange star"."""
        phrase = self.phrase(with_size)
        return ("an " if phrase[0] in "aeiou" else "a ") + phrase


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    background: tuple[int, int, int]
    seed: int


def split_seed(split: str, index: int) -> int:
    """The seed of scene `index` in `split` (one of SPLITS)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if not 0 <= index < SPLIT_SIZE:
        raise ValueError(f"index must be in [0, {SPLIT_SIZE}), got {index}")
    return SPLITS[split] + index


def _seed_split(seed: int) -> str:
    for name, start in SPLITS.items():
        if start <= seed < start + SPLIT_SIZE:
            return name
    return "train"


def sample_scene(seed: int, *, min_objects: int = 1, max_objects: int = 3, one_large: bool = False) -> Scene:
    """Draw a scene deterministically from `seed`.

    Objects never overlap and keep a margin, so "left of" and "above" are unambiguous when stated. Seeds in the train
    range never contain a HELD_OUT_PAIRS pair; seeds in the composition range always contain at least one.
    `one_large=True` makes exactly one object large (the ViT task: "the shape of the largest object").
    """
    rng = np.random.default_rng(seed)
    split = _seed_split(seed)
    for _ in range(1000):  # rejection sampling; a valid scene is found within a few tries
        n = int(rng.integers(min_objects, max_objects + 1))
        sizes = ["small"] * n
        if one_large:
            sizes[int(rng.integers(n))] = "large"
        else:
            sizes = [str(rng.choice(list(SIZES))) for _ in range(n)]
        objects: list[Obj] = []
        for size in sizes:
            r = SIZES[size]
            for _ in range(50):
                x, y = rng.uniform(r + 0.03, 1 - r - 0.03, size=2)
                if all(math.hypot(x - o.x, y - o.y) > r + o.radius + 0.04 for o in objects):
                    break
            else:
                break
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            color = COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
            angle = float(rng.uniform(-15, 15)) if shape != "circle" else 0.0
            objects.append(Obj(shape, color, size, float(x), float(y), angle))
        if len(objects) < n:
            continue
        pairs = {(o.color, o.shape) for o in objects}
        held = bool(pairs & HELD_OUT_PAIRS)
        if (split == "composition") != held:
            continue
        shade = int(rng.integers(225, 256))
        tint = rng.integers(-8, 9, size=3)
        background = tuple(int(np.clip(shade + t, 0, 255)) for t in tint)
        return Scene(tuple(objects), background, seed)
    raise RuntimeError(f"could not sample a scene for seed {seed}")  # unreachable in practice


# ----------------------------------------------------------------------------------------------------------- drawing

def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [(math.cos(math.radians(45 + 90 * k)), math.sin(math.radians(45 + 90 * k))) for k in range(4)]
        scale = r * 1.0
        pts = [(px * scale * math.sqrt(2) * 0.85, py * scale * math.sqrt(2) * 0.85) for px, py in pts]
    elif shape == "triangle":
        angles = [math.radians(-90 + 120 * k) for k in range(3)]
        pts = [(math.cos(a) * r * 1.1, math.sin(a) * r * 1.1 + r * 0.15) for a in angles]
    elif shape == "diamond":
        pts = [(0, -r), (r * 0.7, 0), (0, r), (-r * 0.7, 0)]
    elif shape == "hexagon":
        pts = [(math.cos(math.radians(60 * k)) * r, math.sin(math.radians(60 * k)) * r) for k in range(6)]
    elif shape == "star":
        pts = []
        for k in range(10):
            rr = r * (1.0 if k % 2 == 0 else 0.45)
            a = math.radians(-90 + 36 * k)
            pts.append((math.cos(a) * rr, math.sin(a) * rr))
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(cx + px * c - py * s, cy + px * s + py * c) for px, py in pts]


def _draw(draw: ImageDraw.ImageDraw, obj: Obj, side: int, fill) -> None:
    cx, cy, r = obj.x * side, obj.y * side, obj.radius * side
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(_polygon(obj.shape, cx, cy, r, obj.angle), fill=fill)


_SUPERSAMPLE = 4  # draw at 4x and downsample with a box filter: cheap, exact anti-aliasing


def render(scene: Scene, size: int = 64) -> np.ndarray:
    """Render `scene` to an anti-aliased RGB image, (size, size, 3) uint8."""
    if not 8 <= size <= 1024:
        raise ValueError(f"size must be in [8, 1024] pixels, got {size}")
    big = size * _SUPERSAMPLE
    img = Image.new("RGB", (big, big), scene.background)
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        _draw(draw, obj, big, COLORS[obj.color])
    return np.asarray(img.resize((size, size), Image.Resampling.BOX))


def render_masks(scene: Scene, size: int = 64) -> np.ndarray:
    """Per-object masks, (num_objects, size, size) bool: a pixel belongs to an object when it covers >= half of it."""
    big = size * _SUPERSAMPLE
    masks = []
    for obj in scene.objects:
        m = Image.new("L", (big, big), 0)
        _draw(ImageDraw.Draw(m), obj, big, 255)
        masks.append(np.asarray(m.resize((size, size), Image.Resampling.BOX)) >= 128)
    return np.stack(masks)


# --------------------------------------------------------------------------------------------------------- language

def _relation(a: Obj, b: Obj) -> str | None:
    """The spatial word for `a` relative to `b`, or None when neither axis clearly dominates."""
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) > 1.5 * abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    if abs(dy) > 1.5 * abs(dx):
        return "above" if dy < 0 else "below"
    return None


def _listing(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption(scene: Scene) -> str:
    """The canonical caption: every object, left to right, with colour and shape ("a red circle and a blue star")."""
    objs = sorted(scene.objects, key=lambda o: o.x)
    return _listing([o.noun() for o in objs])


def captions(scene: Scene) -> list[str]:
    """Every phrasing the grammar produces for `scene`; all are true of it. The first is `caption(scene)`."""
    objs = sorted(scene.objects, key=lambda o: o.x)
    out = [caption(scene)]
    out.append(_listing([o.noun(with_size=True) for o in objs]))
    n = len(objs)
    if n == 1:
        o = objs[0]
        out += [f"there is {o.noun()}", f"a picture of {o.noun()}", f"one {o.phrase()}"]
    else:
        out.append(f"{NUMBERS[n]} shapes: " + _listing([o.noun() for o in objs]))
        out.append(f"{NUMBERS[n]} objects: " + _listing([o.noun() for o in reversed(objs)]))
    if n == 2:
        a, b = objs
        for first, second in ((a, b), (b, a)):
            rel = _relation(first, second)
            if rel:
                out.append(f"{first.noun()} {rel} {second.noun()}")
    return list(dict.fromkeys(out))


def _unique(objs: tuple[Obj, ...], key) -> list[Obj]:
    values = [key(o) for o in objs]
    return [o for o, v in zip(objs, values) if values.count(v) == 1]


def questions(scene: Scene, seed: int | None = None) -> list[tuple[str, str]]:
    """Question-answer pairs about `scene`: colour, shape, count, existence and relation. Answers are single words."""
    rng = np.random.default_rng(scene.seed if seed is None else seed)
    objs = scene.objects
    qa: list[tuple[str, str]] = []
    for o in _unique(objs, lambda o: o.shape):  # colour
        qa.append((f"what color is the {o.shape}?", o.color))
    for o in _unique(objs, lambda o: o.color):  # shape
        qa.append((f"what shape is the {o.color} object?", o.shape))
    qa.append(("how many objects are there?", NUMBERS[len(objs)]))  # count
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    qa.append((f"how many {shape}s are there?", NUMBERS[sum(o.shape == shape for o in objs)]))
    present = objs[int(rng.integers(len(objs)))]  # existence, one yes and one (usually) no
    qa.append((f"is there {present.noun()}?", "yes"))
    color, shape = COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))], SHAPES[int(rng.integers(len(SHAPES)))]
    exists = any(o.color == color and o.shape == shape for o in objs)
    article = "an" if color[0] in "aeiou" else "a"
    qa.append((f"is there {article} {color} {shape}?", "yes" if exists else "no"))
    named = _unique(objs, lambda o: (o.color, o.shape))  # relation, between objects a phrase picks out exactly
    for i, a in enumerate(named):
        for b in named[i + 1:]:
            rel = _relation(a, b)
            if rel in ("to the left of", "to the right of"):
                answer = "yes" if rel == "to the left of" else "no"
                qa.append((f"is the {a.phrase()} left of the {b.phrase()}?", answer))
            elif rel in ("above", "below"):
                qa.append((f"is the {a.phrase()} above the {b.phrase()}?", "yes" if rel == "above" else "no"))
    return qa


def largest(scene: Scene) -> Obj:
    """The largest object (ties broken by position, left first)."""
    return max(scene.objects, key=lambda o: (o.radius, -o.x))


# ----------------------------------------------------------------------------------------------------- batches, sheet

def batch(split: str, start: int, n: int, size: int = 64, **scene_kwargs) -> tuple[np.ndarray, list[Scene]]:
    """Render scenes start..start+n-1 of `split`: images (n, size, size, 3) uint8 and their Scene objects."""
    scenes = [sample_scene(split_seed(split, start + i), **scene_kwargs) for i in range(n)]
    return np.stack([render(s, size) for s in scenes]), scenes


def contact_sheet(scenes: list[Scene], size: int = 128, cols: int = 4) -> Image.Image:
    """A grid of rendered scenes with their canonical captions beneath, for people to look at."""
    rows = math.ceil(len(scenes) / cols)
    pad, text_h = 8, 44
    sheet = Image.new("RGB", (cols * (size + pad) + pad, rows * (size + text_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, scene in enumerate(scenes):
        x = pad + (i % cols) * (size + pad)
        y = pad + (i // cols) * (size + text_h + pad)
        sheet.paste(Image.fromarray(render(scene, size)), (x, y))
        words, lines = caption(scene).split(), [""]
        for w in words:  # wrap to the tile width at roughly 6 px per character
            if len(lines[-1]) + len(w) + 1 > size // 6:
                lines.append("")
            lines[-1] = (lines[-1] + " " + w).strip()
        draw.multiline_text((x, y + size + 2), "\n".join(lines[:3]), fill=(30, 30, 30), spacing=1)
    return sheet


def main() -> None:
    ap = argparse.ArgumentParser(description="Write a contact sheet of Shapes scenes with their captions.")
    ap.add_argument("--n", type=int, default=16, help="number of scenes")
    ap.add_argument("--split", default="val", choices=sorted(SPLITS))
    ap.add_argument("--size", type=int, default=128, help="pixels per scene")
    ap.add_argument("--out", default="sheet.png")
    args = ap.parse_args()
    if not 1 <= args.n <= 256:
        ap.error("--n must be in [1, 256]")
    scenes = [sample_scene(split_seed(args.split, i)) for i in range(args.n)]
    contact_sheet(scenes, args.size).save(args.out)
    print(f"wrote {args.out} ({args.n} scenes from the {args.split} split)")


if __name__ == "__main__":
    main()
