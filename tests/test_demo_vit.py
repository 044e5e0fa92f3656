"""ViT tab handlers, called as plain functions on a tiny model standing in for the pretrained tier."""

import inspect
from types import SimpleNamespace

import gradio as gr
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


@pytest.fixture
def built():
    """The tab's Blocks, built with the catalogue as shipped (ask for it before `scene`, which swaps the catalogue)."""
    with gr.Blocks() as demo:
        tab.build()
    return demo


def test_new_scene_is_deterministic_and_names_the_largest_shape():
    (a, truth_a), (b, truth_b) = tab.new_scene(5), tab.new_scene(5)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert truth_a == truth_b and "largest object is a **" in truth_a


@pytest.mark.parametrize("patch_size, input_size, n", [(16, 224, 196), (32, 224, 49), (8, 64, 64), (14, 224, 256)])
def test_patches_readout(scene, patch_size, input_size, n):
    grid, readout, sequence = tab.patches(scene, patch_size, input_size, TIER)
    assert f"**{n} patches**" in readout
    assert grid.size[0] >= 448 and sequence.size[1] > 40


def test_every_offered_pair_cuts(scene):
    """Whatever P and input size the tab offers, the cut works: no pair fails after the click."""
    for p in tab.V.PATCH_SIZES:
        for size in tab.V.input_sizes(p):
            grid, readout, _ = tab.patches(scene, p, size, TIER)
            assert f"**{(size // p) ** 2} patches**" in readout


@pytest.mark.parametrize("patch_size, input_size, kept", [(14, 224, 224), (14, 64, 112), (32, 112, 128),
                                                          (8, 384, 384)])
def test_a_new_patch_size_offers_only_sizes_it_divides(patch_size, input_size, kept):
    dropdown = tab.fit_input_size(patch_size, input_size)
    assert dropdown.value == kept
    assert all(size % patch_size == 0 for _, size in dropdown.choices)


def test_a_new_patch_size_fits_the_input_size_and_cuts_in_one_request(built, scene):
    dropdown, grid, readout, sequence = tab.patches_for_size(scene, 14, 64, TIER)
    assert dropdown.value == 112 and "**64 patches**" in readout  # (112 / 14)² at the fitted size
    assert np.array_equal(np.asarray(grid), np.asarray(tab.patches(scene, 14, 112, TIER)[0]))
    demo = built
    size = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "vit-patch-size")
    events = [fn for fn in demo.fns.values() if (size._id, "input") in fn.targets]
    assert len(events) == 1 and events[0].outputs[0].label == "input size (px)" and len(events[0].outputs) == 4


def test_patches_readout_keeps_the_grid_and_the_model_apart(scene):
    _, readout, _ = tab.patches(scene, 16, 224, TIER)
    chosen, model = readout.split("**Model in use**")
    assert "16²·3 = **768**" in chosen and "32" not in chosen.split("grid)")[1].split("token")[0]
    assert "trained at 32 px with P = 8" in model and "4 × 4 = 16 patches" in model


def test_numbers_put_the_lecture_beside_the_model(tiny_pretrained):
    table = tab.numbers(TIER)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:4]] for line in table.splitlines()
            if line.startswith("| ") and line.count("|") == 4}
    assert rows["input H × W"] == ["224 × 224 px", "32 × 32 px"]
    assert rows["grid, N = HW / P²"] == ["14 × 14 = 196", "4 × 4 = 16"]
    assert rows["width D"] == ["768", "32"]
    assert rows["tokens T = N + CLS, sequence"] == ["1 × 197 × 768", "1 × 17 × 32"]
    assert rows["MLP D → 4D → D"] == ["768 → 3072 → 768", "32 → 64 → 32"]


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
    assert ["block 0 · Q = LN(z) W_Q", "1 × 17 × 32"] in rows and ["block 0 · MLP fc1 (D → 4D)", "1 × 17 × 64"] in rows
    assert rows[-1] == ["head (logits)", "1 × 5"]
    assert chain.count("→") == len(rows) - 9  # the outer stages only: block 0's 8 inner rows are in the table


def test_projection_shows_the_models_filters_and_both_shapes(tiny_pretrained):
    picture, note = tab.projection(TIER)
    assert picture.mode == "RGB" and picture.size[0] > 200
    assert "768 × 768" in note and "32 × 192" in note and "1 × 16 × 32" in note


def test_attention_outputs(scene):
    one, roll, distance, top5, note = tab.attention(scene, 1, "2", 0.5, TIER)
    assert one.size == roll.size == (448, 448)
    assert isinstance(distance, go.Figure) and isinstance(top5, go.Figure)
    assert len(top5.data[0].x) == 5 and sum(top5.data[0].x) == pytest.approx(1.0, abs=1e-5)  # all 5 classes
    assert "Layer 1, head 2" in note and "What to notice" in note
    assert "1 × 197 × 768 → 12 heads of 1 × 197 × 64" in note and "1 × 17 × 32 → 4 heads of 1 × 17 × 8" in note
    lines = [t for t in distance.data if t.mode == "lines"]
    assert [t.y[0] for t in lines] == pytest.approx([tab.V.uniform_attention_distance(4, 8), 8])
    assert "uniform attention" in lines[0].name and "local" in lines[1].name
    with pytest.raises(ValueError, match="layer must be in"):
        tab.attention(scene, 7, "mean", 0.0, TIER)
    with pytest.raises(ValueError, match="head must be in"):
        tab.attention(scene, 0, "9", 0.0, TIER)
    with pytest.raises(ValueError, match="discard ratio"):
        tab.attention(scene, 0, "mean", 1.0, TIER)


def test_attention_runs_the_model_once_and_the_controls_reuse_its_pass(scene, monkeypatch):
    calls = []
    forward = tab.V.forward
    monkeypatch.setattr(tab.V, "forward", lambda *a: calls.append(1) or forward(*a))
    monkeypatch.setattr(tab.V, "predict", lambda *a, **k: pytest.fail("a second forward pass"))
    monkeypatch.setattr(tab, "_passes", type(tab._passes)())
    tab.attention(scene, 0, "mean", 0.0, TIER)
    assert len(calls) == 1
    # a layer, a discard ratio, a head fusion moved on the same image: no pass of their own, the same pictures
    kept = tab.rollouts(scene, 1, "mean", 0.5, tab.PREDICTED, "max", TIER)
    tab.attention_layer(scene, 1, "0", 0.0, TIER), tab.fused_rollout(scene, tab.PREDICTED, "min", 0.2, TIER)
    assert len(calls) == 1
    tab._passes.clear()
    fresh = tab.rollouts(scene, 1, "mean", 0.5, tab.PREDICTED, "max", TIER)
    assert len(calls) == 2 and kept[1:] == fresh[1:] and kept[0].tobytes() == fresh[0].tobytes()
    assert kept[2].tobytes() == fresh[2].tobytes()
    # another model (the bundled tier) or another image makes a pass of its own
    tab.attention_layer(scene, 1, "mean", 0.0, "bundled")
    assert len(calls) == 3 and tab._forward(scene, "bundled").d != tab._forward(scene, TIER).d and len(calls) == 3
    others = [tab.new_scene(seed=20 + k)[0] for k in range(tab.PASSES_KEPT)]
    for other in others:
        tab.attention_layer(other, 1, "mean", 0.0, TIER)
    assert len(calls) == 3 + tab.PASSES_KEPT
    tab.attention_layer(others[-1], 0, "mean", 0.0, TIER)  # kept
    tab.attention_layer(scene, 0, "mean", 0.0, TIER)  # the oldest, let go for the newer ones
    assert len(calls) == 4 + tab.PASSES_KEPT


def test_positions_and_clicked_patch(tiny_pretrained):
    mosaic, note = tab.positions(TIER)
    assert mosaic.size[0] > 100 and "4 × 4 patches" in note
    rel = tab.V.similarity_by_relation(tab.V.position_similarity(
        tab.V.patch_position_embeddings(tab._bundle(TIER).model)), 4)
    assert f"neighbours {rel['neighbours']:.2f}" in note, "the text reports what the picture shows"
    fig = tab.position_map(5, TIER)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (4, 4) and z[1, 1] == pytest.approx(1.0, abs=1e-5)  # patch 5 = row 1, col 1
    with pytest.raises(ValueError, match="patch index must be in"):
        tab.position_map(16, TIER)


@pytest.mark.parametrize("row, col", [(0, 2), (2, 0), (3, 1), (1, 3)])
def test_a_click_on_the_mosaic_picks_that_tile(tiny_pretrained, row, col):
    """The mosaic of a 4 x 4 grid: 4 x 4 tiles of 4 x 4 cells, 1-cell gaps, cells of 440 // 19 = 23 px."""
    tile = 23 * 5
    click = SimpleNamespace(index=(col * tile + tile // 3, row * tile + tile // 3))  # (x, y), as Gradio sends it
    index, fig = tab.patch_from_click(TIER, click)
    assert index == 4 * row + col
    assert fig.layout.title.text.startswith(f"Patch {index} (row {row}, column {col})")


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
    bundle = tab._bundle(TIER)
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


def test_a_layer_head_or_discard_change_redraws_only_what_it_changes(scene):
    full = tab.attention(scene, 1, "2", 0.3, TIER)
    one, note = tab.attention_layer(scene, 1, "2", 0.3, TIER)
    roll, note2, fused, rel_note = tab.rollouts(scene, 1, "2", 0.3, "class 3", "max", TIER)
    assert np.array_equal(np.asarray(one), np.asarray(full[0])) and note == note2 == full[4]
    assert np.array_equal(np.asarray(roll), np.asarray(full[1]))
    _, fused_full, _, rel_full = tab.relevance(scene, "class 3", "max", 0.3, TIER)  # the relevance section's own
    assert np.abs(np.asarray(fused, int) - np.asarray(fused_full, int)).max() <= 1 and rel_note == rel_full
    assert not np.array_equal(np.asarray(tab.attention_layer(scene, 0, "2", 0.3, TIER)[0]), np.asarray(one))
    assert not np.array_equal(np.asarray(tab.rollouts(scene, 1, "2", 0.0, "class 3", "max", TIER)[0]),
                              np.asarray(roll))
    assert "Layer 0, head 2" in tab.attention_layer(scene, 0, "2", 0.3, TIER)[1] and "lowest 30%" in note
    with pytest.raises(ValueError, match="layer"):
        tab.attention_layer(scene, 99, "mean", 0.0, TIER)


def test_the_attention_controls_each_trigger_their_own_view():
    with gr.Blocks() as demo:
        tab.build()
    by_id = {b._id: b for b in demo.blocks.values()}
    fired = {}
    for fn in demo.fns.values():
        for block_id, event in fn.targets:
            label = getattr(by_id.get(block_id), "label", None)
            if event == "input" and label in ("layer", "head", "rollout discard ratio"):
                fired.setdefault(label, set()).add(fn.api_name)
    assert fired == {"layer": {"vit_attention_layer"}, "head": {"vit_attention_layer"},
                     "rollout discard ratio": {"vit_rollouts"}}
    api = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    assert api["vit_attention_layer"].outputs[0].elem_id == "vit-attn"
    assert [o.elem_id for o in api["vit_rollouts"].outputs[::2]] == ["vit-roll", "vit-rollout"]  # both rollouts


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_a_new_head_fusion_redraws_the_rollout_as_relevance_does(scene, fusion):
    """The fusion radio's own event (no backward pass) gives the very rollout and note of the full view."""
    other = "class 3"
    _, roll, _, note = tab.relevance(scene, other, fusion, 0.5, TIER)
    fused, fused_note = tab.fused_rollout(scene, other, fusion, 0.5, TIER)
    assert np.abs(np.asarray(fused, int) - np.asarray(roll, int)).max() <= 1 and fused_note == note
    _, _, _, predicted_note = tab.relevance(scene, tab.PREDICTED, fusion, 0.5, TIER)
    assert tab.fused_rollout(scene, tab.PREDICTED, fusion, 0.5, TIER)[1] == predicted_note
    with pytest.raises(ValueError, match="head_fusion must be one of"):
        tab.fused_rollout(scene, other, "median", 0.5, TIER)


def test_the_head_fusion_radio_redraws_only_the_rollout():
    with gr.Blocks() as demo:
        tab.build()
    fusion = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "vit-fusion")
    events = [fn for fn in demo.fns.values() if (fusion._id, "input") in fn.targets]
    assert [fn.api_name for fn in events] == ["vit_rollout_fusion"]
    rollout = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "vit-rollout")
    assert events[0].outputs[0]._id == rollout._id and len(events[0].outputs) == 2


@pytest.mark.parametrize("class_name, fusion, discard, match", [
    ("zebra", "mean", 0.0, r"class must be 'predicted' or one of the model's 5 labels \('class 0'"),
    (None, "median", 0.0, "head_fusion must be one of mean, max, min"),
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


def test_sync_fits_the_controls_to_the_model(tiny_pretrained):
    table, layer, head, ln_layer, classes, index = tab.sync_controls(TIER)
    assert "4 × 4 = 16" in table and layer.maximum == ln_layer.maximum == 1
    assert head.choices == [(c, c) for c in ("mean", "0", "1", "2", "3")]
    assert [c for c, _ in classes.choices] == [tab.PREDICTED] + [f"class {i}" for i in range(5)]
    assert index.value == 0 and index.maximum == 15


def test_all_views_runs_every_view_in_stages_and_reports_a_failure_last():
    calls = []

    def view(name: str, n_out: int):
        def fn(image, x):
            calls.append(name)
            if x == "bad":
                raise ValueError(f"{name} failed")
            return tuple(f"{name}{k}:{image.size[0]}{x}" for k in range(n_out)) if n_out > 1 else f"{name}:{x}"
        return fn

    run = tab._all_views([[(view("a", 2), 1, 2), (view("b", 1), 1, 1)], [(view("c", 1), 1, 1)]])
    assert list(inspect.signature(run).parameters)[:2] == ["image", "drawn"]
    assert len(inspect.signature(run).parameters) == 5  # the image, what is drawn, then each view's one control
    image = Image.new("RGB", (32, 32), "red")
    key = tab.common.digest(image)
    first, second = run(image, None, 1, 2, 3)
    skip = gr.skip()
    assert first == (key, "a0:321", "a1:321", "b:2", skip) and second == (skip, skip, skip, skip, "c:3")
    stream = run(image, None, 1, "bad", 3)  # b fails: a and c are still drawn, then b's error is raised, with the
    assert next(stream) == (key, "a0:321", "a1:321", skip, skip)  # digest forgotten, so that the image draws again
    assert next(stream) == (skip, skip, skip, skip, "c:3") and next(stream) == (None, skip, skip, skip, skip)
    with pytest.raises(ValueError, match="b failed"):
        next(stream)
    calls.clear()
    assert list(run(None, None, 1, 2, 3)) == [(skip,) * 5] and calls == []  # a cleared image
    assert list(run(image, key, 1, 2, 3)) == [(skip,) * 5] and calls == []  # the image the views already show
    other = Image.new("RGB", (32, 32), "blue")
    assert next(run(other, key, 1, 2, 3))[0] == tab.common.digest(other) and calls == ["a", "b"]


def test_a_new_scene_brings_its_views_in_the_same_request(built):
    """The 🎲 button sends the scene, its ground truth and every view of it from one request, the top of the page
    first; the image's change event that follows (its value changed) finds them drawn and leaves them as they are."""
    demo = built
    api = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    scene, image = api["vit_scene"], api["vit_patches"].inputs[0]
    changed = next(fn for fn in demo.fns.values() if (image._id, "change") in fn.targets)
    assert [o._id for o in scene.outputs][2:] == [o._id for o in changed.outputs]  # after the image and the truth
    assert [c._id for c in scene.inputs][1:] == [c._id for c in changed.inputs][1:]  # the seed instead of the image
    values = [5, None] + [TIER if c.label == "Model tier" else c.value for c in changed.inputs[2:]]
    top, *later = list(scene.fn(*values))
    picture, truth, key = top[:3]
    assert np.array_equal(np.asarray(picture), np.asarray(tab.new_scene(5)[0])) and "Ground truth" in truth
    assert key == tab.common.digest(tab.common.user_image(picture))
    skip = gr.skip()
    assert len(later) == 3 and all(out[:3] == (skip, skip, skip) for out in later)  # the views that follow
    assert all(v != skip for v in top[3:6]) and all(v != skip for v in later[-1][-4:])  # the cut first, relevance last
    echo = list(changed.fn(picture, key, *values[2:]))  # the change event: the same picture, already drawn
    assert echo == [(skip,) * len(changed.outputs)]
    for fn in (scene, changed):  # the progress shows on the image: no spinner over the views it streams in
        assert [block._id for block in fn.show_progress_on] == [image._id]


def test_a_new_image_redraws_every_view_that_reads_it_in_one_request(built, scene):
    demo = built
    api = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    image = api["vit_patches"].inputs[0]
    changed = [fn for fn in demo.fns.values() if (image._id, "change") in fn.targets]
    assert len(changed) == 1 and changed[0].trigger_mode == "always_last"
    event = changed[0]
    views = ["vit_patches", "vit_layernorm", "vit_attention", "vit_trace", "vit_logit_lens", "vit_relevance"]
    assert [o._id for o in event.outputs][1:] == [o._id for name in views for o in api[name].outputs]
    assert [c._id for c in event.inputs][2:] == [c._id for name in views for c in api[name].inputs[1:]]
    assert event.inputs[0] is image and event.inputs[1] is event.outputs[0]  # the digest of what the views show
    values = [scene, None] + [TIER if c.label == "Model tier" else c.value for c in event.inputs[2:]]
    (key, *cut), *later = list(event.fn(*values))  # from the top of the page down
    assert key == tab.common.digest(tab.common.user_image(scene)) and all(out[0] == gr.skip() for out in later)
    stages = [cut, *(out[1:] for out in later)]
    ends = np.cumsum([len(api[name].outputs) for name in views])  # where each view's outputs end
    skip = gr.skip()
    spans = [(0, ends[0]), (ends[0], ends[2]), (ends[2], ends[4]), (ends[4], ends[5])]  # 1; 4-5; 6-7; relevance
    assert len(stages) == len(spans)
    for stage, (start, end) in zip(stages, spans):
        assert all(v != skip for v in stage[start:end]), "the stage's own views"
        assert all(v == skip for v in stage[:start] + stage[end:]), "the others left as they are"
    lens = stages[2][[o._id for o in event.outputs][1:].index(api["vit_logit_lens"].outputs[0]._id)]
    np.testing.assert_allclose(np.asarray(lens.data[0].z), np.asarray(tab.logit_lens(scene, TIER)[0].data[0].z))


def test_every_view_with_the_image_is_wired_to_its_changes():
    """Each view that reads the image redraws on a new one; each control redraws its view live, on `.input`."""
    with gr.Blocks() as demo:
        tab.build()
    listeners = {}
    for fn in demo.fns.values():
        for block_id, event in fn.targets:
            listeners.setdefault(event, set()).add(demo.blocks[block_id].label if block_id in demo.blocks else None)
    assert "Image" in listeners["change"]
    assert {"patch size P", "input size (px)", "layer", "head", "rollout discard ratio", "block",
            "class (relevance)", "head fusion (rollout)", "d (sinusoidal)", "positions"} <= listeners["input"]
    assert "release" not in listeners
    live = [fn for fn in demo.fns.values() if any(event == "input" for _, event in fn.targets)]
    assert all(fn.trigger_mode == "always_last" for fn in live if fn.queue)
