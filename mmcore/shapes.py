"""The Shapes world: procedurally drawn scenes with exact captions, questions and object masks.

Every bundled model in this project learns from these scenes, so each tab can draw a fresh one and show the ground
truth next to what the model says. A scene is a pure function of its seed:

    scene = sample_scene(seed=7)            # 1-3 objects, no overlaps
    image = render(scene, size=64)          # anti-aliased RGB uint8, (64, 64, 3)
    masks = render_masks(scene, size=64)    # bool, (num_objects, 64, 64)
    caption(scene), captions(scene), questions(scene)

Splits are disjoint seed ranges (see SPLITS). The "composition" split holds colour-shape pairs (HELD_OUT_PAIRS) that
the train split never shows, to test whether a model composes attributes rather than memorising pairs.

There are two worlds (WORLDS), and a seed means the same scene in each world forever:

- "classic" (the default): flat colours on near-white, two sizes, rotations within +-15 degrees;
- "wide": any rotation, sizes from small to nearly filling the frame, proportion jitter (a taller triangle, a fatter
  diamond, a star with another inner radius), shades around each named colour, white, grey, dark and coloured
  backgrounds, outline-only shapes, a wobbly hand-drawn stroke, slight blur and noise, and JPEG at quality 30-95.
  Every recognition model trains on it. A fifth of its scenes look classic.

Captions, questions and masks are exact in both. A mask is the region the shape encloses, also when it is drawn as an
outline only.

    python -m mmcore.shapes --n 16 --out sheet.png [--world wide]    # a contact sheet with captions
"""

from __future__ import annotations

import argparse
import colorsys
import dataclasses
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

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
WORLDS = ("classic", "wide")

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
    # The wide world's knobs; the defaults draw exactly the classic shapes.
    r: float | None = None  # radius as a fraction of the image side; None = SIZES[size]
    aspect: float = 1.0  # width stretch before rotation (a fatter diamond, a narrower triangle)
    inner: float = 0.45  # a star's inner radius over its outer radius
    rgb: tuple[int, int, int] | None = None  # the shade actually drawn; None = COLORS[color]
    outline: float = 0.0  # stroke width as a fraction of the radius; 0 = filled
    wobble: float = 0.0  # hand-drawn wobble of the contour, as a fraction of the radius
    wobble_seed: int = 0

    @property
    def radius(self) -> float:
        return SIZES[self.size] if self.r is None else self.r

    @property
    def fill(self) -> tuple[int, int, int]:
        return COLORS[self.color] if self.rgb is None else self.rgb

    @property
    def classic(self) -> bool:
        return (self.r, self.aspect, self.inner, self.rgb, self.outline, self.wobble) == (None, 1.0, 0.45, None, 0, 0)

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
    world: str = "classic"
    blur: float = 0.0  # Gaussian blur radius, in output pixels
    noise: float = 0.0  # standard deviation of additive pixel noise, in 0-255 units
    jpeg: int = 0  # JPEG quality the image passes through (0 = none)


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


def sample_scene(seed: int, *, min_objects: int = 1, max_objects: int = 3, one_large: bool = False,
                 world: str = "classic") -> Scene:
    """Draw a scene deterministically from `seed` in `world` (one of WORLDS).

    Objects never overlap and keep a margin, so "left of" and "above" are unambiguous when stated. Seeds in the train
    range never contain a HELD_OUT_PAIRS pair; seeds in the composition range always contain at least one.
    `one_large=True` makes exactly one object clearly the largest (the ViT task: "the shape of the largest object").
    """
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    if world == "wide":
        return _sample_wide(seed, min_objects, max_objects, one_large)
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


# The wide world's draws. Shades stay inside each colour's name: hue within +-0.025 of a turn keeps red, orange and
# yellow apart. Proportions stay inside each shape's name: a square never stretches into a diamond's range.
_ASPECT = {"circle": (0.92, 1.08), "square": (0.92, 1.08), "triangle": (0.75, 1.3), "diamond": (0.72, 1.15),
           "star": (0.9, 1.1), "hexagon": (0.88, 1.12)}
_BACKGROUNDS = (("white", 0.3), ("light grey", 0.15), ("grey", 0.1), ("dark", 0.15), ("pastel", 0.2), ("deep", 0.1))
_MIN_CONTRAST = 90.0  # Euclidean RGB distance between every object's shade and the background


def _shade(rng: np.random.Generator, color: str) -> tuple[int, int, int]:
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in COLORS[color]))
    h = (h + rng.uniform(-0.025, 0.025)) % 1.0
    s = min(1.0, s * rng.uniform(0.75, 1.1))
    v = min(1.0, v * rng.uniform(0.8, 1.1))
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))


def _background(rng: np.random.Generator) -> tuple[int, int, int]:
    kinds, weights = zip(*_BACKGROUNDS)
    kind = kinds[int(rng.choice(len(kinds), p=np.array(weights) / sum(weights)))]
    if kind in ("white", "light grey", "grey", "dark"):
        lo, hi = {"white": (232, 256), "light grey": (185, 225), "grey": (110, 160), "dark": (10, 60)}[kind]
        level = int(rng.integers(lo, hi))
        return tuple(int(np.clip(level + t, 0, 255)) for t in rng.integers(-6, 7, size=3))
    hue = rng.uniform()
    s, v = (rng.uniform(0.08, 0.3), rng.uniform(0.85, 1.0)) if kind == "pastel" else (rng.uniform(0.3, 0.7),
                                                                                      rng.uniform(0.15, 0.35))
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, s, v))


def _reach(obj: Obj) -> float:
    """How far the drawn contour reaches from the centre, as a fraction of the image side."""
    pts = np.array(_contour(obj, 0.0, 0.0, 1.0))
    return float(np.hypot(pts[:, 0], pts[:, 1]).max()) * obj.radius


def _sample_wide(seed: int, min_objects: int, max_objects: int, one_large: bool) -> Scene:
    rng = np.random.default_rng((seed, 0x57DE))  # its own stream: the classic scene of this seed stays as it was
    split = _seed_split(seed)
    plain = rng.uniform() < 0.2  # a fifth of the wide world looks classic: flat colours, white, no effects
    hand = not plain and rng.uniform() < 0.3  # the hand-drawn style: every contour wobbles
    for _ in range(1000):
        n = int(rng.integers(min_objects, max_objects + 1))
        r_max = {1: 0.42, 2: 0.28, 3: 0.22}.get(n, 0.18)
        if one_large:
            big = rng.uniform(0.17, r_max)
            radii = [rng.uniform(0.08, 0.62 * big) for _ in range(n)]
            radii[int(rng.integers(n))] = big
        else:
            radii = [rng.uniform(0.08, r_max) for _ in range(n)]
        objects: list[Obj] = []
        for r in radii:
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            color = COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
            obj = Obj(shape, color, "large" if r >= 0.185 else "small", 0.5, 0.5,
                      angle=float(rng.uniform(0, 360)) if shape != "circle" else 0.0, r=float(r),
                      aspect=float(rng.uniform(*_ASPECT[shape])),
                      inner=float(rng.uniform(0.32, 0.6)) if shape == "star" else 0.45,
                      rgb=None if plain else _shade(rng, color),
                      outline=float(rng.uniform(0.12, 0.25)) if not plain and rng.uniform() < 0.25 else 0.0,
                      wobble=float(rng.uniform(0.03, 0.07)) if hand else 0.0,
                      wobble_seed=int(rng.integers(1 << 30)))
            reach = _reach(obj)
            if reach > 0.47:  # shrink what would not fit in the frame
                obj = _replace(obj, r=obj.radius * 0.47 / reach, size="large" if obj.radius * 0.47 / reach >= 0.185
                               else "small")
                reach = 0.47
            for _ in range(50):
                x, y = rng.uniform(reach + 0.02, 1 - reach - 0.02, size=2)
                if all(math.hypot(x - o.x, y - o.y) > reach + _reach(o) + 0.03 for o in objects):
                    break
            else:
                break
            objects.append(_replace(obj, x=float(x), y=float(y)))
        if len(objects) < n:
            continue
        held = bool({(o.color, o.shape) for o in objects} & HELD_OUT_PAIRS)
        if (split == "composition") != held:
            continue
        if plain:
            shade = int(rng.integers(225, 256))
            background = tuple(int(np.clip(shade + t, 0, 255)) for t in rng.integers(-8, 9, size=3))
            return Scene(tuple(objects), background, seed, world="wide")
        for _ in range(100):
            background = _background(rng)
            if all(math.dist(o.fill, background) >= _MIN_CONTRAST for o in objects):
                break
        else:
            continue
        blur = float(rng.uniform(0.3, 0.9)) if rng.uniform() < 0.4 else 0.0
        noise = float(rng.uniform(2, 10)) if rng.uniform() < 0.4 else 0.0
        jpeg = int(rng.integers(30, 96)) if rng.uniform() < 0.5 else 0
        return Scene(tuple(objects), background, seed, world="wide", blur=blur, noise=noise, jpeg=jpeg)
    raise RuntimeError(f"could not sample a wide scene for seed {seed}")  # unreachable in practice


def _replace(obj: Obj, **changes) -> Obj:
    return Obj(**{**obj.__dict__, **changes})


def altered(scene: Scene, index: int, **changes) -> Scene:
    """The same scene with object `index` changed (e.g. color="red"): what a false caption describes."""
    objects = list(scene.objects)
    objects[index] = _replace(objects[index], **changes)
    return dataclasses.replace(scene, objects=tuple(objects))


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


def _contour(obj: Obj, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """The wide world's contour of `obj` centred at (cx, cy) with radius r: the shape with its proportions, then its
    hand-drawn wobble (a smooth radial displacement), then its rotation."""
    if obj.shape == "circle":
        pts = [(math.cos(2 * math.pi * k / 72), math.sin(2 * math.pi * k / 72)) for k in range(72)]
    elif obj.shape == "star":
        pts = [(math.cos(math.radians(-90 + 36 * k)) * (1.0 if k % 2 == 0 else obj.inner),
                math.sin(math.radians(-90 + 36 * k)) * (1.0 if k % 2 == 0 else obj.inner)) for k in range(10)]
    else:
        pts = _polygon(obj.shape, 0.0, 0.0, 1.0, 0.0)
    pts = [(px * obj.aspect, py) for px, py in pts]
    if obj.wobble:
        dense = []  # split each edge so the wobble bends edges, not only corners
        for (ax, ay), (bx, by) in zip(pts, pts[1:] + pts[:1]):
            dense += [(ax + (bx - ax) * j / 8, ay + (by - ay) * j / 8) for j in range(8)]
        rng = np.random.default_rng(obj.wobble_seed)
        freqs, phases, amps = np.arange(2, 7), rng.uniform(0, 2 * np.pi, 5), rng.normal(size=5)
        amps = amps / np.abs(amps).sum()
        pts = []
        for px, py in dense:
            theta = math.atan2(py, px)
            k = 1 + obj.wobble * float((amps * np.sin(freqs * theta + phases)).sum())
            pts.append((px * k, py * k))
    c, s = math.cos(math.radians(obj.angle)), math.sin(math.radians(obj.angle))
    return [(cx + (px * c - py * s) * r, cy + (px * s + py * c) * r) for px, py in pts]


def _outline(obj: Obj, side: int) -> tuple[list[tuple[float, float]], float]:
    """What `_draw` draws for `obj` on a canvas of `side` pixels: (its points, a width it may reach beyond them)."""
    cx, cy, r = obj.x * side, obj.y * side, obj.radius * side
    if obj.classic:
        if obj.shape == "circle":
            return [(cx - r, cy - r), (cx + r, cy + r)], 0.0
        return _polygon(obj.shape, cx, cy, r, obj.angle), 0.0
    pts = _contour(obj, cx, cy, r)
    return pts, (round(max(1.5 * _SUPERSAMPLE, obj.outline * r)) if obj.outline else 0.0)


def _draw(draw: ImageDraw.ImageDraw, obj: Obj, side: int, fill, *, filled: bool = False) -> None:
    """Draw `obj` on a canvas of `side` pixels; `filled` fills outline-only shapes too (their masks)."""
    pts, width = _outline(obj, side)
    if obj.classic and obj.shape == "circle":
        draw.ellipse([*pts[0], *pts[1]], fill=fill)
    elif width and not filled:
        draw.line([*pts, pts[0], pts[1]], fill=fill, width=width, joint="curve")  # at least 1.5 output pixels wide
    else:
        draw.polygon(pts, fill=fill)


_SUPERSAMPLE = 4  # draw at 4x and downsample with a box filter: cheap, exact anti-aliasing


def _blocks(obj: Obj, size: int) -> tuple[int, int, int, int]:
    """The output pixels (x0, y0, x1, y1) that `obj` can touch in an image of `size` pixels, one pixel to spare."""
    pts, width = _outline(obj, size * _SUPERSAMPLE)
    reach = width / 2 + _SUPERSAMPLE  # half a line, and one output pixel for the rasteriser's rounding
    xs, ys = [x for x, _ in pts], [y for _, y in pts]
    lo = (math.floor((min(xs) - reach) / _SUPERSAMPLE), math.floor((min(ys) - reach) / _SUPERSAMPLE))
    hi = (math.ceil((max(xs) + reach) / _SUPERSAMPLE), math.ceil((max(ys) + reach) / _SUPERSAMPLE))
    return max(lo[0], 0), max(lo[1], 0), min(hi[0], size), min(hi[1], size)


def render(scene: Scene, size: int = 64) -> np.ndarray:
    """Render `scene` to an anti-aliased RGB image, (size, size, 3) uint8."""
    if not 8 <= size <= 1024:
        raise ValueError(f"size must be in [8, 1024] pixels, got {size}")
    big = size * _SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), scene.background)
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        _draw(draw, obj, big, obj.fill)
    # The box filter averages each 4 x 4 block on its own, and a block of background averages to the background: so
    # only the blocks under an object are averaged: the same pixels as resizing the whole canvas, in a quarter the time.
    img = Image.new("RGB", (size, size), scene.background)
    for obj in scene.objects:
        x0, y0, x1, y1 = _blocks(obj, size)
        if x0 < x1 and y0 < y1:
            box = tuple(v * _SUPERSAMPLE for v in (x0, y0, x1, y1))
            img.paste(canvas.resize((x1 - x0, y1 - y0), Image.Resampling.BOX, box=box), (x0, y0))
    scale = size / 64  # the effects are specified at 64 px and scale with the image
    if scene.blur:
        img = img.filter(ImageFilter.GaussianBlur(scene.blur * scale))
    out = np.asarray(img)
    if scene.noise:
        noise = np.random.default_rng((scene.seed, size)).normal(0, scene.noise, out.shape)
        out = np.clip(out + noise, 0, 255).astype(np.uint8)
    if scene.jpeg:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=scene.jpeg)
        out = np.asarray(Image.open(buf).convert("RGB"))
    return out


def render_masks(scene: Scene, size: int = 64) -> np.ndarray:
    """Per-object masks, (num_objects, size, size) bool: a pixel belongs to an object when it covers >= half of it."""
    big = size * _SUPERSAMPLE
    masks = []
    for obj in scene.objects:
        m = Image.new("L", (big, big), 0)
        _draw(ImageDraw.Draw(m), obj, big, 255, filled=True)
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


def swapped_caption(scene: Scene) -> str | None:
    """The canonical caption with the colours of two objects swapped ("a blue circle and a red square" for a red
    circle and a blue square): the same bag of words, now false. None when no two objects differ in both colour and
    shape. The hard negative that tests whether a model binds colours to shapes."""
    objs = sorted(scene.objects, key=lambda o: o.x)
    for i, a in enumerate(objs):
        for j in range(i + 1, len(objs)):
            b = objs[j]
            if a.color != b.color and a.shape != b.shape:
                swapped = list(objs)
                swapped[i], swapped[j] = _replace(a, color=b.color), _replace(b, color=a.color)
                return _listing([o.noun() for o in swapped])
    return None


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
    ap.add_argument("--world", default="classic", choices=WORLDS)
    ap.add_argument("--out", default="sheet.png")
    args = ap.parse_args()
    if not 1 <= args.n <= 256:
        ap.error("--n must be in [1, 256]")
    scenes = [sample_scene(split_seed(args.split, i), world=args.world) for i in range(args.n)]
    contact_sheet(scenes, args.size).save(args.out)
    print(f"wrote {args.out} ({args.n} scenes from the {args.split} split of the {args.world} world)")


if __name__ == "__main__":
    main()
