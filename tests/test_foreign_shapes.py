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
