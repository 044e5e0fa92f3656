"""The BLIP tab's BLIP-2 section, its handlers called as plain functions on the tiny random-init stand-in."""

import re

import numpy as np
import pytest
from conftest import TINY_QUERIES
from PIL import Image

from demos import blip as blip_tab
from demos import blip2 as tab
from demos import common
from mmcore import blip2 as B2
from mmcore import models, shapes


@pytest.fixture(autouse=True)
def every_token(monkeypatch):
    """Streams send every token on its own here; demos.common.Pace has its own tests."""
    monkeypatch.setattr(common, "STREAM_EVERY_S", 0.0)


@pytest.fixture
def scene(tiny_pretrained):
    image, _, _, _, seed, _ = blip_tab.new_scene(seed=7)
    return image, seed


def test_read_shows_the_stages_the_maps_and_the_prompt_then_streams_the_caption(scene, monkeypatch):
    image, seed = scene
    outs = list(tab.read(image, seed, "mean", "mean", "pretrained"))
    shapes_md, sheet, report, fig, chips, _, _, _ = outs[0]
    assert "16 patches (+1 [CLS]) × 32" in shapes_md and f"{TINY_QUERIES} queries × 32" in shapes_md
    assert isinstance(sheet, Image.Image) and sheet.width == 4 * 156 - 6
    assert fig.data[0].z.shape == (TINY_QUERIES, 32)
    scene = blip_tab.scene_of(seed)
    names = [f"{o.color} {o.shape}" for o in scene.objects]
    bundle = models.load("blip2", "pretrained")
    hits = B2.query_objects(B2.read(bundle, image), scene)
    for q, h in enumerate(hits):  # each query's line names the object its own attention argmax falls on
        assert f"- **q{q}** → {names[h] if h >= 0 else 'background'}" in report
    assert report.count("- **q") == TINY_QUERIES
    streamed = outs[1:-1]
    assert len(streamed) >= 1 and all("blip-cursor" in o[4] for o in streamed)
    *_, chips, rows, state, note = outs[-1]
    assert "blip-cursor" not in chips and len(rows) == len(state["ids"]) == len(streamed)
    assert state["k"] == TINY_QUERIES and "truth:" in note
    monkeypatch.setattr(common, "STREAM_EVERY_S", 3600.0)  # paced: the maps, then the finished caption
    paced = list(tab.read(image, seed, "mean", "mean", "pretrained"))
    run = lambda html: re.sub(r'data-run="\d+"', "", html)  # noqa: E731 -- each run has its own id
    assert len(paced) == 2 and run(paced[-1][4]) == run(chips) and paced[-1][6] == state


def test_a_photo_has_no_ground_truth_to_report(tiny_pretrained):
    photo = Image.new("RGB", (80, 60), (200, 30, 30))
    outs = list(tab.read(photo, -1, "mean", "mean", "pretrained"))
    assert "Draw a Shapes scene" in outs[0][2] and "truth:" not in outs[-1][-1]


def test_choosing_a_layer_and_head_redraws_only_the_maps(scene):
    image, seed = scene
    a, _ = tab.maps(image, seed, "1", "2", [], "pretrained")
    b, report = tab.maps(image, seed, "2", "4", ["q1"], "pretrained")
    assert a.size == b.size and not np.array_equal(np.asarray(a), np.asarray(b))
    assert "layer 2" in report and "head 4" in report
    with pytest.raises(ValueError, match="this Q-Former has 2"):
        tab.maps(image, seed, "3", "mean", [], "pretrained")


def test_ablation_regenerates_beside_the_original(scene):
    image, seed = scene
    *_, state, _ = list(tab.read(image, seed, "mean", "mean", "pretrained"))[-1]
    outs = list(tab.ablate(image, state, [f"q{i}" for i in range(TINY_QUERIES)], "pretrained"))
    chips, rows, md = outs[-1]
    assert rows and len(rows[0]) == len(tab.COMPARE_COLUMNS)
    assert f"{TINY_QUERIES} of {TINY_QUERIES} queries" in md
    bundle = models.load("blip2", "pretrained")
    p_full = np.prod(B2.token_probs(bundle, B2.read(bundle, image), state["ids"]))
    assert f"**{p_full:.3f}**" in md  # the original caption's probability, as teacher forcing gives it


@pytest.mark.parametrize("state, off, message", [({}, ["q0"], "Run BLIP-2"), ({"ids": [5]}, [], "at least one"),
                                                 ({"ids": [5]}, ["q9"], "q0 to q3"),
                                                 ({"ids": [5]}, ["x"], "named q0")])
def test_bad_ablations_get_a_message(scene, state, off, message):
    image, _ = scene
    with pytest.raises(ValueError, match=message):
        list(tab.ablate(image, state, off, "pretrained"))


def test_the_report_says_plainly_whether_queries_specialise():
    scene = shapes.sample_scene(shapes.split_seed("test", 7), min_objects=2)
    owner = B2.patch_objects(scene, 8)
    first = [int(np.nonzero(owner == i)[0][0]) for i in range(len(scene.objects))]
    background = int(np.nonzero(owner < 0)[0][0])

    def reading(patches):
        maps = np.full((1, 1, len(patches), 64), 1e-3)
        for q, p in enumerate(patches):
            maps[0, 0, q, p] = 1.0
        return B2.Reading(None, None, None, maps / maps.sum(-1, keepdims=True), np.zeros((1, 1, len(patches))))

    assert "split the objects" in tab.query_report(reading([*first, background]), scene, None, None)
    assert "do not specialise" in tab.query_report(reading([first[0]] * 3 + [background]), scene, None, None)
    assert "background" in tab.query_report(reading([background] * 4), scene, None, None).split("\n")[0]
