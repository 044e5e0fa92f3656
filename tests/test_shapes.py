"""The Shapes world: determinism, masks that agree with captions, disjoint splits, the composition split."""

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
