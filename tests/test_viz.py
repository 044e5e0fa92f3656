import numpy as np
import pytest
from PIL import Image

from mmcore import viz


def _overlay_per_pixel(image: Image.Image, heat: np.ndarray, alpha: float, side: int) -> np.ndarray:
    """The overlay's formula written out pixel by pixel: every cell blown up first, then blended."""
    base = np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64)
    h = (heat - heat.min()) / (heat.max() - heat.min() or 1.0)
    cells = Image.fromarray((h * 255).round().astype(np.uint8)).resize((side, side), Image.Resampling.NEAREST)
    weight = alpha * (np.asarray(cells, dtype=np.float64) / 255)[..., None] ** 0.7
    colour = np.asarray(Image.fromarray(viz.colormap(h, 0.0, 1.0)).resize((side, side), Image.Resampling.NEAREST))
    return (base * (0.55 + 0.45 * weight / alpha) * (1 - weight) + colour * weight).round().clip(0, 255)


@pytest.mark.parametrize("grid, side", [(14, 448), (8, 448), (7, 300), (5, 256), (3, 448)])
def test_overlay_matches_the_formula_pixel_by_pixel(grid, side):
    rng = np.random.default_rng(grid)
    image = Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))
    heat = rng.random((grid, grid))
    out = np.asarray(viz.overlay(image, heat, 0.75, side), dtype=np.float64)
    want = _overlay_per_pixel(image, heat, 0.75, side)
    assert out.shape == (side, side, 3)
    diff = np.abs(out - want)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-2  # float32 rounding: one level, rarely


def test_overlay_puts_each_cell_where_the_model_saw_it():
    """The hottest cell is painted in viridis yellow at its own place (a transposed or flipped map fails)."""
    image = Image.new("RGB", (224, 224), (0, 0, 0))
    heat = np.zeros((4, 4))
    heat[0, 3] = 1.0  # top right
    out = np.asarray(viz.overlay(image, heat, 0.75, 400), dtype=np.float64)
    top_right, bottom_left = out[:100, 300:].mean((0, 1)), out[300:, :100].mean((0, 1))
    np.testing.assert_allclose(top_right, 0.75 * viz.colormap(np.array([[1.0]]), 0, 1)[0, 0], atol=1)
    assert top_right.sum() > 300 and bottom_left.sum() < top_right.sum() / 3


def test_overlays_of_one_picture_share_its_enlargement_and_nothing_else():
    """The enlarged picture is kept for the next map over it (a palette picture as its RGB); each map is its own."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    first, second = rng.random((8, 8)), rng.random((8, 8))
    a, b = viz.overlay(image, first), viz.overlay(image, second)
    assert np.abs(np.asarray(b, dtype=np.float64) - _overlay_per_pixel(image, second, 0.75, 448)).max() <= 1
    np.testing.assert_array_equal(np.asarray(a), np.asarray(viz.overlay(image, first)))
    palette = image.convert("P")
    np.testing.assert_array_equal(np.asarray(viz.overlay(palette, first)),
                                  np.asarray(viz.overlay(palette.convert("RGB"), first)))
