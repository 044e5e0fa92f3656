"""A foreign test set: coloured shapes drawn by code that shares nothing with mmcore/shapes.py.

The bundled models train on mmcore/shapes.py. To learn whether they learned shapes or only that renderer, this module
draws the same 6 shapes x 6 colours with its own geometry and its own rasteriser (numpy coverage sampling, even-odd
point-in-polygon and distance-to-segment strokes; no PIL drawing), its own palette (CSS and paint-program swatches),
other proportions, canvas sizes, paper textures, gradients and stroke styles. One object per image, labelled with its
colour and shape.

    python bench/foreign_shapes.py --n 180 --out foreign.png     # a contact sheet of the set
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "star", "hexagon")
# Swatches per name, from CSS colour names and paint-program palettes (not the Shapes world's RGB values).
PALETTE = {
    "red": [(255, 0, 0), (200, 16, 46), (178, 34, 34), (220, 50, 50)],
    "green": [(0, 128, 0), (34, 139, 34), (50, 205, 50), (46, 160, 67)],
    "blue": [(0, 0, 255), (30, 110, 240), (65, 105, 225), (0, 71, 171)],
    "yellow": [(255, 215, 0), (255, 221, 51), (240, 200, 0), (250, 230, 80)],
    "purple": [(128, 0, 128), (106, 13, 173), (147, 80, 200), (153, 50, 204)],
    "orange": [(255, 140, 0), (255, 117, 24), (240, 110, 30), (230, 126, 34)],
}
COLORS = tuple(PALETTE)
STYLES = ("fill", "outline", "fill+border")
DRAWINGS = Path(__file__).resolve().parents[1] / "assets" / "drawings"  # see bench/mouse_drawings.py; labels.csv


@dataclass(frozen=True)
class Drawing:
    image: Image.Image
    color: str
    shape: str
    style: str

    @property
    def label(self) -> str:
        return f"{self.color} {self.shape}"


def _vertices(shape: str, rng: np.random.Generator) -> np.ndarray:
    """The outline of `shape` as (k, 2) points around the origin, radius about 1, before rotation."""
    if shape == "circle":  # a polygon fine enough to be a circle at these sizes, slightly elliptical at most
        t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        return np.stack([np.cos(t) * rng.uniform(0.94, 1.06), np.sin(t)], 1)
    if shape == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * 0.75
    if shape == "triangle":  # isosceles, from flat to tall, with the base below the centre
        h, w = rng.uniform(1.4, 2.0), rng.uniform(1.5, 2.0)
        return np.array([[0, -h * 0.6], [w / 2, h * 0.4], [-w / 2, h * 0.4]])
    if shape == "diamond":  # a rhombus, narrow to fat, never square
        return np.array([[0, -1], [rng.uniform(0.42, 0.78), 0], [0, 1], [-rng.uniform(0.42, 0.78), 0]]) * 1.0
    if shape == "star":  # five points, inner radius from spiky to chubby
        inner = rng.uniform(0.33, 0.55)
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        return np.stack([np.cos(t) * r, np.sin(t) * r], 1)
    if shape == "hexagon":
        t = np.arange(6) * np.pi / 3 + rng.choice([0.0, np.pi / 6])
        return np.stack([np.cos(t), np.sin(t)], 1)
    raise ValueError(f"unknown shape {shape!r}")


def _inside(px: np.ndarray, py: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule: cast a ray to +x from each sample point and count the edges it crosses."""
    inside = np.zeros(px.shape, bool)
    for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, axis=0)):
        crosses = (y0 > py) != (y1 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (px < x_at)
    return inside


def _edge_distance(px: np.ndarray, py: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance from each sample point to the nearest edge of the closed polygon."""
    best = np.full(px.shape, np.inf)
    for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, axis=0)):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((px - x0) * dx + (py - y0) * dy) / max(dx * dx + dy * dy, 1e-12), 0, 1)
        best = np.minimum(best, np.hypot(px - (x0 + t * dx), py - (y0 + t * dy)))
    return best


def _coverage(poly: np.ndarray, size: int, stroke: float | None, ss: int = 3) -> np.ndarray:
    """Fraction of each pixel covered, (size, size) in [0, 1]: the filled polygon, or a stroke of width `stroke`
    along its outline. Each pixel is sampled ss x ss times."""
    offsets = (np.arange(ss) + 0.5) / ss
    grid = (np.arange(size)[:, None] + offsets[None, :]).reshape(-1)  # (size * ss,)
    py, px = np.meshgrid(grid, grid, indexing="ij")
    hit = _edge_distance(px, py, poly) <= stroke / 2 if stroke else _inside(px, py, poly)
    return hit.reshape(size, ss, size, ss).mean(axis=(1, 3))


def _paper(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    kind = str(rng.choice(["white", "paper", "grey", "dark", "gradient", "tinted"]))
    base = {"white": (255, 255, 255), "paper": (244, 240, 228), "grey": (200, 200, 204), "dark": (40, 44, 52),
            "gradient": (235, 235, 245), "tinted": tuple(int(v) for v in rng.integers(200, 250, 3))}[kind]
    img = np.ones((size, size, 3)) * np.array(base, float)
    if kind == "paper":
        img += rng.normal(0, 4, (size, size, 1))
    if kind == "gradient":
        img *= np.linspace(1.0, 0.82, size)[:, None, None]
    return img, kind


def draw(shape: str, color: str, rng: np.random.Generator) -> Drawing:
    """One foreign drawing of a `color` `shape`, its canvas, proportions, rotation and style drawn from `rng`."""
    size = int(rng.choice([96, 128, 160, 200]))
    img, paper = _paper(rng, size)
    rgb = np.array(PALETTE[color][int(rng.integers(len(PALETTE[color])))], float)
    if math.dist(rgb, img[size // 2, size // 2]) < 100:  # keep the shape visible: fall back to white paper
        img, paper = np.full((size, size, 3), 255.0), "white"
    radius = rng.uniform(0.2, 0.4) * size
    angle = rng.uniform(0, 2 * np.pi)
    pts = _vertices(shape, rng)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = pts @ rot.T * radius
    reach = np.abs(pts).max(0)
    centre = rng.uniform(reach + 2, size - reach - 2) if (reach + 2 < size - reach - 2).all() else size / 2
    poly = pts + centre
    style = str(rng.choice(STYLES, p=[0.5, 0.25, 0.25]))
    width = rng.uniform(0.05, 0.1) * size
    layers = []
    if style in ("fill", "fill+border"):
        layers.append((_coverage(poly, size, None), rgb))
    if style in ("outline", "fill+border"):
        ink = rgb if style == "outline" else rgb * 0.55  # a darker border, as a paint program's outline tool draws
        layers.append((_coverage(poly, size, width if style == "outline" else width * 0.4), ink))
    for alpha, ink in layers:
        img = img * (1 - alpha[..., None]) + ink * alpha[..., None]
    return Drawing(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)), color, shape, f"{style} on {paper}")


def foreign_set(n: int = 180, seed: int = 12345) -> list[Drawing]:
    """`n` drawings cycling through every colour x shape pair (180 = 5 of each), reproducible from `seed`."""
    if not 1 <= n <= 10_000:
        raise ValueError(f"n must be in [1, 10000], got {n}")
    rng = np.random.default_rng(seed)
    pairs = [(c, s) for s in SHAPES for c in COLORS]
    return [draw(pairs[i % len(pairs)][1], pairs[i % len(pairs)][0], rng) for i in range(n)]


def load_drawings(folder: Path = DRAWINGS) -> list[Drawing]:
    """The drawings committed under assets/drawings/, labelled in its labels.csv (file, color, shape, how)."""
    table = folder / "labels.csv"
    if not table.is_file():
        return []
    with table.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [Drawing(Image.open(folder / row["file"]).convert("RGB"), row["color"], row["shape"], row["how"])
            for row in rows]


def sheet(drawings: list[Drawing], tile: int = 96, cols: int = 12) -> Image.Image:
    rows = math.ceil(len(drawings) / cols)
    out = Image.new("RGB", (cols * tile, rows * (tile + 14)), "white")
    pen = ImageDraw.Draw(out)
    for i, d in enumerate(drawings):
        x, y = (i % cols) * tile, (i // cols) * (tile + 14)
        out.paste(d.image.resize((tile - 4, tile - 4)), (x + 2, y + 2))
        pen.text((x + 2, y + tile - 1), d.label, fill=(20, 20, 20))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=180)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--out", default="foreign.png")
    args = ap.parse_args()
    sheet(foreign_set(args.n, args.seed)).save(args.out)
    print(f"wrote {args.out} ({args.n} foreign drawings)")


if __name__ == "__main__":
    main()
