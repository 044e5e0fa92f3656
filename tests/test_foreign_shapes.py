"""The foreign test set: independent of the Shapes renderer, every colour x shape pair, labels that hold."""

import colorsys
from pathlib import Path

import numpy as np
import pytest

from bench import foreign_shapes as F


def test_independent_of_the_training_renderer():
    source = Path(F.__file__).read_text()
    assert "from mmcore" not in source and "import mmcore" not in source and "ImageDraw.Draw(img" not in source
    assert F.SHAPES == ("circle", "square", "triangle", "diamond", "star", "hexagon")


def test_every_pair_reproducibly():
    a, b = F.foreign_set(72), F.foreign_set(72)
    assert {(d.color, d.shape) for d in a} == {(c, s) for c in F.COLORS for s in F.SHAPES}
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x.image), np.asarray(y.image))
    assert len({d.image.size for d in a}) > 1, "several canvas sizes"
    assert {d.style.split(" on ")[0] for d in a} == set(F.STYLES)
    with pytest.raises(ValueError, match="n must be in"):
        F.foreign_set(0)


@pytest.mark.parametrize("index", range(0, 72, 5))
def test_the_drawn_ink_has_the_labelled_hue(index):
    d = F.foreign_set(72)[index]
    px = np.asarray(d.image).reshape(-1, 3).astype(float) / 255
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in px])
    ink = hsv[(hsv[:, 1] > 0.45) & (hsv[:, 2] > 0.25)]  # saturated pixels: the shape, not the paper
    assert len(ink) > 30
    hue = np.median(ink[:, 0])
    expect = {"red": 0.0, "orange": 0.07, "yellow": 0.14, "green": 0.33, "blue": 0.62, "purple": 0.78}
    gap = {c: min(abs(hue - h), 1 - abs(hue - h)) for c, h in expect.items()}
    assert min(gap, key=gap.get) == d.color


def test_coverage_rasteriser_is_exact_for_a_square():
    square = np.array([[2.0, 2.0], [6.0, 2.0], [6.0, 6.0], [2.0, 6.0]])
    cov = F._coverage(square, 8, None, ss=4)
    assert cov.sum() == pytest.approx(16.0) and cov[3, 3] == 1 and cov[0, 0] == 0
    ring = F._coverage(square, 8, 1.0, ss=4)
    assert ring[4, 4] == 0 and ring[2, 4] > 0, "a stroke follows the outline and leaves the inside empty"


# ------------------------------------------------------------------ the drawings made with the mouse (assets/drawings)

from bench import mouse_drawings as M  # noqa: E402


def test_committed_drawings_cover_every_pair_with_the_labelled_hue():
    drawings = F.load_drawings()
    assert {(d.color, d.shape) for d in drawings} == {(c, s) for c in F.COLORS for s in F.SHAPES}
    expect = {"red": 0.0, "orange": 0.07, "yellow": 0.14, "green": 0.33, "blue": 0.65, "purple": 0.8}
    for d in drawings[::7]:
        px = np.asarray(d.image.resize((64, 64))).reshape(-1, 3).astype(float) / 255
        hsv = np.array([colorsys.rgb_to_hsv(*p) for p in px])
        hue = np.median(hsv[(hsv[:, 1] > 0.45) & (hsv[:, 2] > 0.25), 0])
        gap = {c: min(abs(hue - h), 1 - abs(hue - h)) for c, h in expect.items()}
        assert min(gap, key=gap.get) == d.color, d.style
        assert d.style.startswith("mouse, ")


def test_mouse_drawings_share_no_code_with_the_training_renderer():
    source = Path(M.__file__).read_text()
    assert "mmcore" not in source.replace("mmcore/shapes.py", "")


@pytest.mark.parametrize("shape", F.SHAPES)
def test_colouring_in_stays_inside_the_outline(shape):
    rng = np.random.default_rng(0)
    corners = M.outline(shape, rng) * 80 + 128
    strokes = M.scribble(corners, 8.0, rng)
    points = np.concatenate(strokes)
    assert len(points) >= 6
    inside = F._inside(points[:, 0], points[:, 1], corners)
    assert inside.all(), f"{(~inside).sum()} scribble points outside the {shape}"
    ys = np.unique(points[:, 1])
    assert ys.max() - ys.min() > 80, "the scribble covers the shape from top to bottom"


def test_hand_path_follows_the_outline_closely():
    rng = np.random.default_rng(1)
    corners = M.outline("square", rng) * 80 + 128
    path = M.hand_path(corners, rng)
    d = F._edge_distance(path[:, 0], path[:, 1], corners)
    assert d.max() < 8 and d.mean() > 0.1, "a wobble of a few pixels, never straight on the line nor far off it"
    assert len(path) > 4 * 80 * 1.4 / 3 * 0.8
