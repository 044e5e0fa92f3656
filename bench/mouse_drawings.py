"""Drawings made with the mouse in a browser canvas: a third renderer, beside mmcore/shapes.py and foreign_shapes.py.

A student's first drawing is made with a mouse or a finger in a paint program, with a round brush, wobbly strokes,
corners that overshoot and outlines that do not quite close, often coloured in with a scribble. This script draws
such pictures in headless Chromium: a plain HTML canvas with a round brush (the paint program), and Playwright's
mouse pressing, moving and releasing along each stroke. The strokes are scripted (jittered paths, not a person's
hand), and the pixels come from Chromium's own rasteriser. The pictures, and a labels.csv naming each one's colour,
shape and how it was drawn, go to assets/drawings/, where bench/eval_vit.py and bench/eval_clip.py score them.

    python bench/mouse_drawings.py [--per-pair 2] [--seed 7] [--out assets/drawings]

Needs Playwright and a Chromium (the README's browser-test setup).
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "star", "hexagon")
# A paint program's default swatches, plus a second shade a student might mix.
INKS = {
    "red": ["#ed1c24", "#c81e1e"],
    "green": ["#22b14c", "#3c9a3c"],
    "blue": ["#3f48cc", "#1e64dc"],
    "yellow": ["#ffd200", "#f5c814"],
    "purple": ["#a349a4", "#7832b4"],
    "orange": ["#ff7f27", "#f08c1e"],
}
PAPERS = {"white": "#ffffff", "cream": "#f7f2e4", "light grey": "#e6e6e8", "pale blue": "#eaf0fa"}
SIDE = 256
OUT = Path(__file__).resolve().parents[1] / "assets" / "drawings"

PAGE = f"""<html><body style="margin:0;background:#888">
<canvas id="c" width="{SIDE}" height="{SIDE}" style="display:block"></canvas>
<script>
const c = document.getElementById('c'), g = c.getContext('2d');
let down = false, last = null;
window.reset = (paper) => {{ g.fillStyle = paper; g.fillRect(0, 0, {SIDE}, {SIDE}); }};
window.brush = (ink, width) => {{ g.strokeStyle = ink; g.fillStyle = ink; g.lineWidth = width;
                                  g.lineCap = 'round'; g.lineJoin = 'round'; }};
c.addEventListener('mousedown', e => {{ down = true; last = [e.offsetX, e.offsetY];
  g.beginPath(); g.arc(last[0], last[1], g.lineWidth / 2, 0, 2 * Math.PI); g.fill(); }});
c.addEventListener('mousemove', e => {{ if (!down) return; g.beginPath(); g.moveTo(...last);
  g.lineTo(e.offsetX, e.offsetY); g.stroke(); last = [e.offsetX, e.offsetY]; }});
window.addEventListener('mouseup', () => {{ down = false; }});
</script></body></html>"""


def outline(shape: str, rng: np.random.Generator) -> np.ndarray:
    """The corners of `shape` as a person would aim for them, (k, 2) around the origin with radius about 1."""
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        return np.stack([np.cos(t) * rng.uniform(0.9, 1.1), np.sin(t)], 1)
    if shape == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * 0.72 * (1 + rng.normal(0, 0.04, (4, 2)))
    if shape == "triangle":
        h, w = rng.uniform(1.5, 2.0), rng.uniform(1.5, 2.1)
        return np.array([[rng.normal(0, 0.1), -0.6 * h], [w / 2, 0.4 * h], [-w / 2, 0.4 * h]])
    if shape == "diamond":
        w = rng.uniform(0.45, 0.75)
        return np.array([[0, -1], [w, 0], [0, 1], [-w, 0]])
    if shape == "star":
        inner = rng.uniform(0.35, 0.5)
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        return np.stack([np.cos(t) * r, np.sin(t) * r], 1)
    if shape == "hexagon":
        t = np.arange(6) * np.pi / 3 + rng.choice([0.0, np.pi / 6])
        return np.stack([np.cos(t), np.sin(t)], 1)
    raise ValueError(f"unknown shape {shape!r}")


def hand_path(corners: np.ndarray, rng: np.random.Generator, step: float = 3.0) -> np.ndarray:
    """A mouse path along the closed polygon `corners` (pixels): a few pixels between samples, a slow sideways wobble,
    corners that overshoot a little, and an end that stops short of, or runs past, the start."""
    pts = []
    k = len(corners)
    for i in range(k):
        a, b = corners[i], corners[(i + 1) % k]
        n = max(2, int(np.linalg.norm(b - a) / step))
        t = np.linspace(0, 1, n, endpoint=False)
        normal = np.array([a[1] - b[1], b[0] - a[0]]) / max(np.linalg.norm(b - a), 1e-9)
        wobble = rng.normal(0, 1.2) * np.sin(np.pi * t) + rng.normal(0, 0.4, n)
        seg = a + t[:, None] * (b - a) + wobble[:, None] * normal
        pts.append(seg)
    path = np.concatenate(pts)
    gap = int(rng.integers(-3, 6))  # negative: stop short of the start; positive: run past it
    return path[:gap] if gap < 0 else np.concatenate([path, path[:gap]])


def scribble(corners: np.ndarray, width: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Colouring in: back-and-forth strokes across each horizontal run inside the polygon, a brush width apart."""
    ys = np.arange(corners[:, 1].min() + width / 2, corners[:, 1].max() - width / 3, width * rng.uniform(0.6, 0.85))
    strokes, row = [], []
    for j, y in enumerate(ys):
        xs = []
        for a, b in zip(corners, np.roll(corners, -1, axis=0)):
            if (a[1] > y) != (b[1] > y):
                xs.append(a[0] + (y - a[1]) * (b[0] - a[0]) / (b[1] - a[1]))
        xs.sort()
        runs = [(xs[i] + width / 3, xs[i + 1] - width / 3) for i in range(0, len(xs) - 1, 2)]
        if len(runs) != 1:  # a star's points: colour each run as its own stroke
            strokes += [np.array([[x0, y], [x1, y]]) for x0, x1 in runs if x1 > x0]
            continue
        x0, x1 = runs[0]
        if x1 > x0:
            row += [[x0, y], [x1, y]] if j % 2 == 0 else [[x1, y], [x0, y]]
    if row:
        strokes.insert(0, np.array(row))
    return strokes


def plan(shape: str, color: str, rng: np.random.Generator) -> dict:
    """Everything one drawing needs: paper, ink, brush width, and the strokes (lists of pixel points)."""
    paper = str(rng.choice(list(PAPERS), p=[0.55, 0.15, 0.15, 0.15]))
    ink = INKS[color][int(rng.integers(2))]
    radius = rng.uniform(0.22, 0.42) * SIDE
    angle = rng.uniform(-0.35, 0.35) if rng.random() < 0.6 else rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = outline(shape, rng) @ rot.T * radius
    reach = np.abs(corners).max(0) + 10
    centre = np.array([rng.uniform(r, SIDE - r) if r < SIDE - r else SIDE / 2 for r in reach])
    corners = corners + centre
    width = float(rng.uniform(4, 12))
    filled = bool(rng.random() < 0.45)
    strokes = [hand_path(corners, rng)]
    if filled:
        strokes += scribble(corners, width, rng)
    how = f"mouse, {'outline coloured in' if filled else 'outline'}, {width:.0f} px brush, on {paper} canvas"
    return {"paper": PAPERS[paper], "ink": ink, "width": width, "strokes": strokes, "how": how}


def draw_all(out: Path, per_pair: int, seed: int) -> int:
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(seed)
    pairs = [(c, s) for s in SHAPES for c in INKS for _ in range(per_pair)]
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or None)
        page = browser.new_page(viewport={"width": SIDE, "height": SIDE})
        page.set_content(PAGE)
        for i, (color, shape) in enumerate(pairs):
            d = plan(shape, color, rng)
            page.evaluate(f"reset('{d['paper']}'); brush('{d['ink']}', {d['width']})")
            for stroke in d["strokes"]:
                stroke = np.clip(stroke, 1, SIDE - 2)
                page.mouse.move(*stroke[0])
                page.mouse.down()
                for x, y in stroke[1:]:
                    page.mouse.move(float(x), float(y))
                page.mouse.up()
            name = f"{i:03d}-{color}-{shape}.png"
            page.locator("#c").screenshot(path=str(out / name))
            rows.append({"file": name, "color": color, "shape": shape, "how": d["how"]})
        browser.close()
    with (out / "labels.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "color", "shape", "how"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-pair", type=int, default=2, help="drawings of each of the 36 colour x shape pairs")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if not 1 <= args.per_pair <= 20:
        ap.error("--per-pair must be in [1, 20]")
    n = draw_all(args.out, args.per_pair, args.seed)
    print(f"wrote {n} drawings and labels.csv to {args.out}")


if __name__ == "__main__":
    main()
