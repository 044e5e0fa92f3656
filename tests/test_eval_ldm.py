"""The strict judges of bench/eval_ldm.py: they accept real renders, and reject wrong targets, blank images, blotches
and the mean-colour trick. CPU only, no network, no diffusion pipeline (only the committed ViT is loaded)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from bench import eval_ldm as E
from mmcore import shapes

BG = (240, 240, 240)


def render(shape: str = "circle", color: str = "red", angle: float = 0.0, x: float = 0.5, y: float = 0.5,
           size: str = "large") -> np.ndarray:
    """One object of the classic Shapes world at the pipeline's 32 px: (32, 32, 3) uint8."""
    return shapes.render(shapes.Scene((shapes.Obj(shape, color, size, x, y, angle),), BG, 0), E.SIZE)


def two_colour_circle(left: str, right: str, cut: int = 16) -> np.ndarray:
    """A large circle whose columns < cut are `left` and the rest `right`."""
    out = render(color=right).copy()
    out[:, :cut] = render(color=left)[:, :cut]
    return out


@pytest.fixture(scope="module")
def vit():
    from mmcore import vit as V

    return V.load_vit(str(E.VIT_FOLDER), torch.device("cpu"), torch.float32)


# --- colour ---------------------------------------------------------------------------------------------------------

def test_colour_accepts_a_real_render_and_only_its_colour():
    image = render("circle", "red")
    assert E.judge_colour(image, "red").ok
    for other in shapes.COLOR_NAMES:
        if other != "red":
            assert not E.judge_colour(image, other).ok, other  # a zero share threshold would accept them all


@pytest.mark.parametrize("shape", shapes.SHAPES)
def test_colour_accepts_every_shape_in_its_colours(shape):
    for color in shapes.COLOR_NAMES:  # stars and triangles have the most anti-aliased rim
        assert E.judge_colour(render(shape, color, angle=10.0), color).ok, (shape, color)
        assert E.judge_colour(render(shape, color, angle=10.0), color).seen


def test_colour_rejects_blank_images():
    assert not E.judge_colour(np.full((32, 32, 3), 240, np.uint8), "red").ok
    assert "blank" in E.judge_colour(np.full((32, 32, 3), 240, np.uint8), "red").seen
    faint = render(color="red")  # a ghost of a circle: ink mixed 25% into the background stays below FG_DISTANCE
    faint = np.round(0.25 * faint + 0.75 * np.array(BG)).astype(np.uint8)
    assert not E.judge_colour(faint, "red").ok


def test_colour_rejects_the_mean_colour_trick():
    image = two_colour_circle("red", "yellow")  # half red, half yellow: the mean is orange
    fg = E.foreground(image)
    mean = image[fg].astype(float).mean(0)
    assert np.linalg.norm(mean - np.array(shapes.COLORS["orange"])) < E.COLOR_DISTANCE  # what fools a mean judge
    for color in ("orange", "red", "yellow"):
        assert not E.judge_colour(image, color).ok, color


def test_colour_needs_a_clear_majority_not_a_plurality():
    image = two_colour_circle("red", "green", cut=18)  # ~55% red, ~45% green: red is the plurality
    votes = E.palette_votes(image, E.foreground(image))
    assert votes["red"] > votes["green"]
    assert not E.judge_colour(image, "red").ok
    few = render(color="green").copy()  # a green circle with a few red pixels is not red
    few[14:17, 14:17] = shapes.COLORS["red"]
    assert E.judge_colour(few, "green").ok and not E.judge_colour(few, "red").ok


def test_colour_rejects_blotches():
    rng = np.random.default_rng(0)
    specks = np.full((32, 32, 3), 240, np.uint8)
    for y, x in rng.integers(1, 31, size=(40, 2)):  # red specks all over: right colour, no object
        specks[y, x] = shapes.COLORS["red"]
    assert not E.judge_colour(specks, "red").ok
    wash = np.full((32, 32, 3), 240, np.uint8)
    wash[2:30, 2:30] = shapes.COLORS["red"]  # a red square of 77% of the image
    assert "blotched" in E.judge_colour(wash, "red").seen
    assert not E.judge_colour(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "red").ok


def test_components_are_4_connected_and_largest_first():
    mask = np.zeros((6, 6), bool)
    mask[0, 0] = mask[1, 1] = True  # touching at a corner only: two components
    mask[3:6, 3:6] = True
    parts = E.components(mask)
    assert [int(p.sum()) for p in parts] == [9, 1, 1]
    assert [int(p.sum()) for p in E.components(mask, connectivity=8)] == [9, 2]


def test_bad_targets_are_named():
    with pytest.raises(ValueError, match="color"):
        E.judge_colour(render(), "pink")


# --- shape ----------------------------------------------------------------------------------------------------------

def test_shape_accepts_real_renders_and_rejects_wrong_targets(vit):
    images = [render(s, c, angle=a) for s, c, a in zip(shapes.SHAPES, shapes.COLOR_NAMES, (0, 5, -8, 10, 0, 12))]
    assert all(v.ok for v in E.judge_shape(vit, images, list(shapes.SHAPES)))
    wrong = [shapes.SHAPES[(i + k) % 6] for i in range(6) for k in range(1, 6)]
    verdicts = E.judge_shape(vit, [im for im in images for _ in range(5)], wrong)
    assert not any(v.ok for v in verdicts)


def test_shape_needs_confidence_not_only_the_argmax(vit):
    # blends of two shapes in the same place: find one the ViT names with p < SHAPE_CONFIDENCE
    blends = [np.round(w * render(a) + (1 - w) * render(b)).astype(np.uint8)
              for a, b in itertools.combinations(shapes.SHAPES, 2) for w in np.linspace(0.3, 0.7, 9)]
    probs = E.shape_probabilities(vit, blends)
    unsure = [(im, p) for im, p in zip(blends, probs) if p.max() < E.SHAPE_CONFIDENCE]
    assert unsure, "no ambiguous blend found: the test would prove nothing"
    labels = vit.model.config.id2label
    for image, p in unsure:
        assert E.object_problem(image) is None
        assert not E.judge_shape(vit, [image], [labels[int(p.argmax())]])[0].ok


def test_shape_rejects_blank_and_noise(vit):
    blank = np.full((32, 32, 3), 240, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for shape in shapes.SHAPES:  # the ViT names some shape for anything; the judge must not pass it
        assert not any(v.ok for v in E.judge_shape(vit, [blank, noise], [shape, shape]))


# --- two objects ----------------------------------------------------------------------------------------------------

def test_pair_accepts_a_real_scene_and_rejects_swapped_colours(vit):
    scene = shapes.Scene((shapes.Obj("square", "blue", "large", 0.32, 0.35, 5.0),
                          shapes.Obj("star", "orange", "small", 0.75, 0.72)), BG, 0)
    image = shapes.render(scene, E.SIZE)
    assert E.judge_pair(vit, image, [("orange", "star"), ("blue", "square")]).ok
    assert not E.judge_pair(vit, image, [("blue", "star"), ("orange", "square")]).ok
    assert not E.judge_pair(vit, image, [("blue", "square"), ("orange", "circle")]).ok
    assert not E.judge_pair(vit, render("square", "blue"), [("blue", "square"), ("orange", "star")]).ok


def test_blob_colour_rejects_a_two_colour_blob():
    image = two_colour_circle("red", "green")
    assert E.blob_colour(image, E.foreground(image)) == "mixed"
    assert E.blob_colour(render(color="purple"), E.foreground(render(color="purple"))) == "purple"


# --- the model card -------------------------------------------------------------------------------------------------

def test_write_card_replaces_its_section_and_keeps_the_rest(tmp_path):
    (tmp_path / "MODEL_CARD.md").write_text("# title\n\nintro\n\n## Held-out metrics\n\n| a | 1 |\n")
    (tmp_path / "metrics.json").write_text(json.dumps({"steps_trained": 500}))
    E.write_card(tmp_path, {"single_object_both_judges": 0.1}, f"{E.SECTION}\n\nfirst\n")
    E.write_card(tmp_path, {"single_object_both_judges": 0.2}, f"{E.SECTION}\n\nsecond\n")
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert card.startswith("# title\n\nintro\n\n## Held-out metrics\n\n| a | 1 |\n")
    assert card.count(E.SECTION) == 1 and "second" in card and "first" not in card
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"steps_trained": 500,
                                                                     "single_object_both_judges": 0.2}
