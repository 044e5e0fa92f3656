"""ViT tab handlers, called as plain functions on a tiny model standing in for the pretrained tier."""

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from demos import vit as tab

TIER = "pretrained"  # the tiny random-init model of the tiny_pretrained fixture


@pytest.fixture
def scene(tiny_pretrained):
    image, truth = tab.new_scene(seed=11)
    return image


def test_new_scene_is_deterministic_and_names_the_largest_shape():
    (a, truth_a), (b, truth_b) = tab.new_scene(5), tab.new_scene(5)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert truth_a == truth_b and "largest object is a **" in truth_a


@pytest.mark.parametrize("patch_size, input_size, n", [(16, 224, 196), (32, 224, 49), (8, 64, 64), (14, 224, 256)])
def test_patches_readout(scene, patch_size, input_size, n):
    grid, readout, sequence = tab.patches(scene, patch_size, input_size, TIER)
    assert f"**{n} patches**" in readout
    assert grid.size[0] >= 448 and sequence.size[1] > 40


@pytest.mark.parametrize("patch_size, input_size, match", [
    (16, 100, "multiple of patch_size"), (15, 224, "patch_size must be one of"), (16, 9999, "input size must be in"),
    (16, float("nan"), "input size must be a whole number")])
def test_patches_bad_input(scene, patch_size, input_size, match):
    with pytest.raises(ValueError, match=match):
        tab.patches(scene, patch_size, input_size, TIER)


def test_no_image_and_bad_files_give_messages(tiny_pretrained, tmp_path):
    with pytest.raises(ValueError, match="No image yet"):
        tab.trace(None, TIER)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError):
        tab.attention(str(bad), 0, "mean", 0.0, TIER)
    with pytest.raises(ValueError, match="at least 16 pixels"):
        tab.trace(Image.new("RGB", (4, 4)), TIER)


def test_trace_comes_from_the_real_forward_pass(scene):
    rows, chain = tab.trace(scene, TIER)
    assert rows[0] == ["input", "1 × 3 × 32 × 32"]
    assert ["conv (patch projection)", "1 × 32 × 4 × 4"] in rows
    assert rows[-1] == ["head (logits)", "1 × 5"]
    assert "→" in chain


def test_attention_outputs(scene):
    one, roll, distance, top5, note = tab.attention(scene, 1, "2", 0.5, TIER)
    assert one.size == roll.size == (448, 448)
    assert isinstance(distance, go.Figure) and isinstance(top5, go.Figure)
    assert len(top5.data[0].x) == 5 and abs(sum(top5.data[0].x) - 1) < 1  # probabilities of 5 of 5 classes
    assert "Layer 1, head 2" in note
    with pytest.raises(ValueError, match="layer must be in"):
        tab.attention(scene, 7, "mean", 0.0, TIER)
    with pytest.raises(ValueError, match="head must be in"):
        tab.attention(scene, 0, "9", 0.0, TIER)
    with pytest.raises(ValueError, match="discard ratio"):
        tab.attention(scene, 0, "mean", 1.0, TIER)


def test_positions_and_clicked_patch(tiny_pretrained):
    mosaic, note = tab.positions(TIER)
    assert mosaic.size[0] > 100 and "4 × 4 patches" in note
    fig = tab.position_map(5, TIER)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (4, 4) and z[1, 1] == pytest.approx(1.0, abs=1e-5)  # patch 5 = row 1, col 1
    with pytest.raises(ValueError, match="patch index must be in"):
        tab.position_map(16, TIER)


def test_sinusoid_and_layernorm(scene):
    fig = tab.sinusoid(16, 10)
    pe = np.asarray(fig.data[0].z)
    assert pe.shape == (10, 16) and pe[1, 0] == pytest.approx(np.sin(1.0))
    with pytest.raises(ValueError, match="even"):
        tab.sinusoid(15, 10)
    ln = tab.layernorm(scene, 0, TIER)
    hat_var = [t for t in ln.data if t.name.startswith("x̂")][1].y
    np.testing.assert_allclose(hat_var, 1.0, atol=1e-3)


def _sketch(draw_square: bool) -> dict:
    """What the Sketchpad sends: an RGBA composite, transparent where nothing was drawn."""
    rgba = np.zeros((256, 256, 4), np.uint8)
    if draw_square:
        rgba[80:180, 70:170] = (220, 40, 40, 255)
    return {"background": None, "layers": [rgba], "composite": rgba}


def test_drawing_is_classified_and_composited_on_white(tiny_pretrained):
    fig, note = tab.drawing(_sketch(True), TIER)
    bars = fig.data[0]
    assert len(bars.y) == 5 and abs(sum(bars.x) - 1) < 1e-4, "every class, probabilities summing to 1"
    assert f"says **{bars.y[-1]}**" in note, "the sentence names the top bar"
    img = tab._sketch_image(_sketch(True))
    assert img.getpixel((10, 10)) == (255, 255, 255) and img.getpixel((120, 130)) == (220, 40, 40)


def test_blank_drawing_asks_for_one_and_bad_drawing_is_refused(tiny_pretrained):
    fig, note = tab.drawing(_sketch(False), TIER)
    assert "Draw a shape" in note and len(fig.data[0].x) == 0
    assert tab.drawing(None, TIER)[1] == note
    with pytest.raises(ValueError, match="Draw a shape first"):
        tab.use_drawing(_sketch(False))
    with pytest.raises(ValueError, match="at least 8 × 8"):
        tab.drawing({"composite": np.zeros((4, 4, 4), np.uint8)}, TIER)
    image, truth = tab.use_drawing(_sketch(True))
    assert image.size == (256, 256) and "no ground truth" in truth


def _model_and_pixels(image):
    bundle, _ = tab._bundle(TIER)
    return bundle.model, bundle.pixel_values(image)


def test_relevance_beside_attention_and_rollout(scene):
    raw, roll, rel, note = tab.relevance(scene, tab.PREDICTED, "max", 0.0, TIER)
    assert raw.size == roll.size == rel.size == (448, 448)
    predicted = tab.V.predict(*_model_and_pixels(scene), top_k=1)[0][0]
    assert f"Relevance for **{predicted}** (the predicted class" in note and "**max**" in note
    assert "What to notice" in note
    other = next(f"class {i}" for i in range(5) if f"class {i}" != predicted)
    raw2, roll2, rel2, note2 = tab.relevance(scene, other, "max", 0.0, TIER)
    assert f"Relevance for **{other}** (the chosen class" in note2
    assert np.array_equal(np.asarray(raw), np.asarray(raw2)) and np.array_equal(np.asarray(roll), np.asarray(roll2))
    assert not np.array_equal(np.asarray(rel), np.asarray(rel2)), "only relevance depends on the class"
    _, roll_mean, _, _ = tab.relevance(scene, other, "mean", 0.0, TIER)
    assert not np.array_equal(np.asarray(roll), np.asarray(roll_mean)), "the head fusion changes the rollout"


@pytest.mark.parametrize("class_name, fusion, discard, match", [
    ("zebra", "mean", 0.0, r"class must be 'predicted' or one of the model's 5 labels \('class 0'"),
    (None, "median", 0.0, "head fusion must be one of mean, max, min"),
    (None, "mean", 1.0, "discard ratio must be in"),
])
def test_relevance_bad_input(scene, class_name, fusion, discard, match):
    with pytest.raises(ValueError, match=match):
        tab.relevance(scene, class_name, fusion, discard, TIER)


def test_logit_lens_rows_are_blocks_and_the_last_is_the_prediction(scene, monkeypatch):
    fig, note = tab.logit_lens(scene, TIER)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (2, 5) and list(fig.data[0].y) == ["block 0", "block 1"]
    top = tab.V.predict(*_model_and_pixels(scene), top_k=5)
    assert dict(zip(fig.layout.xaxis.ticktext, z[-1])) == pytest.approx(dict(top), abs=1e-5)
    assert f"prediction, **{top[0][0]}**" in note and "What to notice" in note
    monkeypatch.setattr(tab, "LENS_TOP_K", 3)  # a larger head than LENS_TOP_K shows only its final top classes
    fig, note = tab.logit_lens(scene, TIER)
    assert list(fig.layout.xaxis.ticktext) == [label for label, _ in top[:3]] and "final top 3 of 5 classes" in note
    with pytest.raises(ValueError, match="No image yet"):
        tab.logit_lens(None, TIER)
