"""The Shapes world: determinism, masks that agree with captions, disjoint splits, the composition split."""

import dataclasses

import numpy as np
import pytest

from mmcore import shapes


def test_same_seed_same_scene_and_pixels():
    a, b = shapes.sample_scene(123), shapes.sample_scene(123)
    assert a == b
    np.testing.assert_array_equal(shapes.render(a, 48), shapes.render(b, 48))
    assert shapes.sample_scene(124) != a


def test_render_is_antialiased_rgb():
    img = shapes.render(shapes.sample_scene(7), 64)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    # edges blend object and background: more distinct colours than objects + background
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > len(shapes.sample_scene(7).objects) + 1


@pytest.mark.parametrize("seed", range(40))
def test_masks_agree_with_objects_and_captions(seed):
    scene = shapes.sample_scene(seed)
    img = shapes.render(scene, 64).astype(int)
    masks = shapes.render_masks(scene, 64)
    assert masks.shape == (len(scene.objects), 64, 64)
    assert not (masks.sum(0) > 1).any(), "objects never overlap"
    for obj, mask in zip(scene.objects, masks):
        assert mask.sum() > 10
        mean = img[mask].mean(0)  # the object's pixels carry its named colour
        assert np.abs(mean - np.array(shapes.COLORS[obj.color])).max() < 40
        cx, cy = np.argwhere(mask)[:, 1].mean() / 64, np.argwhere(mask)[:, 0].mean() / 64
        assert abs(cx - obj.x) < 0.08 and abs(cy - obj.y) < 0.08
    caption = shapes.caption(scene)
    for obj in scene.objects:
        assert obj.phrase() in caption
    assert all(c for c in shapes.captions(scene))


def test_relations_in_captions_hold_geometrically():
    checked = 0
    for seed in range(300):
        scene = shapes.sample_scene(seed)
        if len({o.phrase() for o in scene.objects}) < len(scene.objects):
            continue  # "a blue star to the left of a blue star" is true but cannot tell which is which
        for cap in shapes.captions(scene):
            for word, test in (("to the left of", lambda a, b: a.x < b.x), ("above", lambda a, b: a.y < b.y)):
                if word in cap:
                    a, b = sorted(scene.objects, key=lambda o: cap.index(o.phrase()))
                    assert test(a, b), cap
                    checked += 1
    assert checked > 20


def test_questions_answers_are_true():
    for seed in range(100):
        scene = shapes.sample_scene(seed)
        for q, a in shapes.questions(scene):
            if q == "how many objects are there?":
                assert a == shapes.NUMBERS[len(scene.objects)]
            elif q.startswith("what color is the "):
                shape = q.removeprefix("what color is the ").removesuffix("?")
                assert [o.color for o in scene.objects if o.shape == shape] == [a]
            elif q.startswith("is there "):
                words = q.removesuffix("?").split()
                color, shape = words[-2], words[-1]
                assert (a == "yes") == any(o.color == color and o.shape == shape for o in scene.objects)
        kinds = {q.split()[0] for q, _ in shapes.questions(scene)}
        assert {"how", "is"} <= kinds


def test_splits_are_disjoint_seed_ranges():
    seeds = {split: {shapes.split_seed(split, i) for i in (0, 1, 10**6, shapes.SPLIT_SIZE - 1)}
             for split in shapes.SPLITS}
    names = list(seeds)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not seeds[a] & seeds[b]
    with pytest.raises(ValueError, match="split must be one of"):
        shapes.split_seed("holdout", 0)
    with pytest.raises(ValueError, match="index must be"):
        shapes.split_seed("train", -1)


def test_composition_split_holds_out_colour_shape_pairs():
    for i in range(200):
        train = shapes.sample_scene(shapes.split_seed("train", i))
        assert not {(o.color, o.shape) for o in train.objects} & shapes.HELD_OUT_PAIRS
        comp = shapes.sample_scene(shapes.split_seed("composition", i))
        assert {(o.color, o.shape) for o in comp.objects} & shapes.HELD_OUT_PAIRS
    # every word still appears in training: each colour and each shape is held out in one pair only
    assert {c for c, _ in shapes.HELD_OUT_PAIRS} == set(shapes.COLORS)
    assert {s for _, s in shapes.HELD_OUT_PAIRS} == set(shapes.SHAPES)


def test_world_size_and_one_large():
    assert len(shapes.SHAPES) >= 5 and len(shapes.COLORS) >= 6 and len(shapes.SIZES) == 2
    for seed in range(50):
        scene = shapes.sample_scene(seed, one_large=True)
        assert 1 <= len(scene.objects) <= 3
        assert sum(o.size == "large" for o in scene.objects) == 1
        assert shapes.largest(scene).size == "large"


@pytest.mark.parametrize("world", shapes.WORLDS)
def test_render_averages_only_the_blocks_under_objects_yet_equals_the_whole_canvas_downsampled(world):
    """render() box-filters only the blocks an object can touch: the pixels must be those of the whole canvas
    downsampled, for outlines and wobbly contours too, at sizes that are not multiples of 8, and at the edges."""
    from PIL import Image, ImageDraw

    for i in range(250):  # the effects (blur, noise, JPEG) come after, on the whole image: here, none
        scene = dataclasses.replace(shapes.sample_scene(shapes.split_seed("train", i), world=world), blur=0.0,
                                    noise=0.0, jpeg=0)
        for size in (37, 64):
            canvas = Image.new("RGB", (4 * size, 4 * size), scene.background)
            for obj in scene.objects:
                shapes._draw(ImageDraw.Draw(canvas), obj, 4 * size, obj.fill)
            whole = np.asarray(canvas.resize((size, size), Image.Resampling.BOX))
            np.testing.assert_array_equal(shapes.render(scene, size), whole, err_msg=f"scene {i}, {size} px")


def test_bad_render_size():
    with pytest.raises(ValueError, match="size must be in"):
        shapes.render(shapes.sample_scene(0), 4)


def test_contact_sheet_cli(tmp_path, monkeypatch):
    out = tmp_path / "sheet.png"
    monkeypatch.setattr("sys.argv", ["shapes", "--n", "6", "--out", str(out)])
    shapes.main()
    from PIL import Image

    sheet = Image.open(out)
    assert sheet.width > 3 * 128 and sheet.height > 128


# ------------------------------------------------------------------------------------------------------- wide world

def test_classic_world_is_unchanged():
    """The wide world must not move a single classic scene: these values were drawn before it existed."""
    import hashlib

    h = hashlib.md5()
    for i in range(200):
        h.update(shapes.render(shapes.sample_scene(i), 64).tobytes())
        objs = shapes.sample_scene(i, one_large=True).objects
        h.update(repr([(o.shape, o.color, o.size, o.x, o.y, o.angle) for o in objs]).encode())
    assert h.hexdigest() == "b1ba79fad0c45ae02d620d6682563f96"
    assert shapes.sample_scene(5) == shapes.sample_scene(5, world="classic")
    assert shapes.sample_scene(5).world == "classic" and shapes.sample_scene(5, world="wide").world == "wide"


def test_wide_world_is_deterministic_and_varied():
    a, b = shapes.sample_scene(77, world="wide"), shapes.sample_scene(77, world="wide")
    assert a == b
    np.testing.assert_array_equal(shapes.render(a, 64), shapes.render(b, 64))
    scenes = [shapes.sample_scene(i, world="wide") for i in range(400)]
    objs = [o for s in scenes for o in s.objects]
    angles = [o.angle % 360 for o in objs if o.shape != "circle"]
    assert max(angles) - min(angles) > 300, "any rotation"
    radii = [o.radius for o in objs]
    assert min(radii) < 0.1 and max(radii) > 0.35, "from small to nearly filling the frame"
    assert any(o.outline for o in objs) and any(not o.outline for o in objs)
    assert any(o.wobble for o in objs) and any(o.rgb and o.rgb != shapes.COLORS[o.color] for o in objs)
    backgrounds = np.array([s.background for s in scenes])
    assert backgrounds.mean(1).min() < 60 and backgrounds.mean(1).max() > 230, "dark and white backgrounds"
    assert (np.ptp(backgrounds, axis=1) > 40).any(), "coloured backgrounds"
    assert {s.jpeg for s in scenes if s.jpeg} <= set(range(30, 96)) and any(s.jpeg for s in scenes)
    assert any(s.blur for s in scenes) and any(s.noise for s in scenes)
    assert sum(s.jpeg == 0 and s.blur == 0 and s.noise == 0 for s in scenes) > 40, "some scenes stay clean"


@pytest.mark.parametrize("seed", range(60))
def test_wide_masks_and_colours_are_exact(seed):
    import colorsys
    from dataclasses import replace

    scene = shapes.sample_scene(shapes.split_seed("val", seed), world="wide")
    clean = replace(scene, blur=0.0, noise=0.0, jpeg=0)  # the shapes as drawn, before blur, noise and JPEG
    img = shapes.render(clean, 128).astype(float)
    masks = shapes.render_masks(scene, 128)
    assert masks.shape == (len(scene.objects), 128, 128)
    assert not (masks.sum(0) > 1).any(), "objects never overlap"
    hues = {c: colorsys.rgb_to_hsv(*(v / 255 for v in rgb))[0] for c, rgb in shapes.COLORS.items()}
    for obj, mask in zip(scene.objects, masks):
        assert mask.sum() > 20
        cy, cx = np.argwhere(mask).mean(0) / 128
        assert abs(cx - obj.x) < 0.1 and abs(cy - obj.y) < 0.1, "the mask sits where the object is"
        near = np.abs(img[mask] - np.array(obj.fill)).max(1)  # an outline's interior shows the background
        assert np.quantile(near, 0.05 if obj.outline else 0.5) < 30, f"{obj.color} {obj.shape} drawn in its shade"
        hue = colorsys.rgb_to_hsv(*(v / 255 for v in obj.fill))[0]
        gap = {c: min(abs(hue - h), 1 - abs(hue - h)) for c, h in hues.items()}
        assert min(gap, key=gap.get) == obj.color, "a shade's hue stays nearest to its own name's"
    background = shapes.render(scene, 128).astype(float)[~masks.any(0)]
    assert np.abs(np.median(background, 0) - np.array(scene.background)).max() < 25


def test_wide_one_large_has_a_clear_largest_and_splits_hold():
    for i in range(150):
        scene = shapes.sample_scene(shapes.split_seed("train", i), one_large=True, world="wide")
        radii = sorted((o.radius for o in scene.objects), reverse=True)
        assert len(radii) == 1 or radii[1] <= 0.62 * radii[0] + 1e-9
        assert shapes.largest(scene).radius == radii[0]
        assert not {(o.color, o.shape) for o in scene.objects} & shapes.HELD_OUT_PAIRS
        comp = shapes.sample_scene(shapes.split_seed("composition", i), world="wide")
        assert {(o.color, o.shape) for o in comp.objects} & shapes.HELD_OUT_PAIRS
    with pytest.raises(ValueError, match="world must be one of"):
        shapes.sample_scene(0, world="painted")


def test_outline_mask_is_the_enclosed_region():
    obj = shapes.Obj("square", "blue", "large", 0.5, 0.5, r=0.3, outline=0.2, rgb=(40, 80, 220))
    scene = shapes.Scene((obj,), (255, 255, 255), seed=-1, world="wide")
    img, mask = shapes.render(scene, 64), shapes.render_masks(scene, 64)[0]
    assert mask[32, 32], "the centre of an outlined square belongs to it"
    assert (img[32, 32] > 240).all(), "but is not painted"
    filled = shapes.render(shapes.Scene((shapes._replace(obj, outline=0.0),), (255, 255, 255), -1, "wide"), 64)
    assert (filled[32, 32] < 240).any()


def test_swapped_caption_swaps_two_colours():
    scene = shapes.Scene((shapes.Obj("circle", "red", "large", 0.25, 0.5), shapes.Obj("square", "blue", "large", 0.75,
                                                                                     0.5)), (250, 250, 250), -1)
    assert shapes.caption(scene) == "a red circle and a blue square"
    assert shapes.swapped_caption(scene) == "a blue circle and a red square"
    same = shapes.Scene((shapes.Obj("circle", "red", "small", 0.25, 0.5), shapes.Obj("square", "red", "small", 0.75,
                                                                                     0.5)), (250, 250, 250), -1)
    assert shapes.swapped_caption(same) is None
    for i in range(50):
        scene = shapes.sample_scene(i, min_objects=2, max_objects=3, world="wide")
        swapped = shapes.swapped_caption(scene)
        if swapped:
            assert swapped != shapes.caption(scene)
            assert sorted(swapped.replace(",", "").split()) == sorted(shapes.caption(scene).replace(",", "").split())
