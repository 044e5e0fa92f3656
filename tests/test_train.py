"""The trainers run end to end on a toy budget and write what the bundled tier's loader reads."""

import json
import sys

import pytest
import torch

import mmcore.blip as B
import mmcore.blip2 as B2
import mmcore.clip as C
import mmcore.diffusion as D
import mmcore.vit as V

LOADERS = {"vit": V.load_vit, "clip": C.load_clip, "vae": D.load_vae, "blip": B.load_caption, "blip2": B2.load}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(LOADERS))
def test_trainer_writes_loadable_weights_and_a_card(family, tmp_path, monkeypatch):
    from importlib import import_module

    out = tmp_path / family
    monkeypatch.setattr(sys, "argv", ["train", "--steps", "2", "--batch-size", "8", "--train-scenes", "64",
                                      "--eval-scenes", "32", "--out", str(out)])
    import_module(f"mmcore.train.{family}").main()
    torch.set_num_threads(2)
    assert not [p for p in out.iterdir() if p.suffix in (".bin", ".pt", ".pth")]
    metrics = json.loads((out / "metrics.json").read_text())
    card = (out / "MODEL_CARD.md").read_text()
    assert "--steps 2" in card and "Seed**: 0" in card
    bundle = LOADERS[family](str(out), torch.device("cpu"), torch.float32)
    assert all(p.dtype == torch.float32 for p in bundle.model.parameters())
    assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if "acc" in k or "r1" in k)
    if family == "blip":  # the caption folder, and the VQA and ITM models beside it, sharing one image encoder
        vqa = B.load_vqa(str(tmp_path / "blip-vqa"), torch.device("cpu"), torch.float32)
        itm = B.load_itm(str(tmp_path / "blip-itm"), torch.device("cpu"), torch.float32)
        torch.testing.assert_close(vqa.model.vision_model.state_dict(), bundle.model.vision_model.state_dict())
        torch.testing.assert_close(itm.model.text_encoder.state_dict(), vqa.model.text_encoder.state_dict())
        assert "caption_accuracy_classic" in metrics and (out / "tokenizer.json").exists()
        assert 0.0 <= metrics["itm_binding_accuracy_classic"] <= 1.0
    if family == "blip2":  # the image encoder starts from the bundled BLIP's
        assert "caption_accuracy_composition_classic" in metrics and bundle.k == B2.NUM_QUERIES
        assert "blip-shapes-caption" in card
    if family == "vae":
        assert metrics["scaling_factor"] == pytest.approx(bundle.scaling_factor, rel=1e-6)
        assert metrics["val_psnr_db"] > 0


@pytest.mark.slow
def test_the_ldm_trainer_writes_a_pipeline_diffusers_loads_as_is(tmp_path, monkeypatch):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from mmcore import ldm
    from mmcore.train import ldm as trainer

    out = tmp_path / "ldm"
    monkeypatch.setattr(sys, "argv", ["train", "--steps", "2", "--batch-size", "8", "--train-scenes", "64",
                                      "--preview-steps", "20", "--out", str(out)])
    trainer.main()
    torch.set_num_threads(2)
    assert not [p for p in out.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    assert not [p for p in out.rglob("*.json") if "_name_or_path" in p.read_text()]  # no training-machine paths
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True)  # as a user would, no arguments
    assert isinstance(pipe.scheduler, DDIMScheduler) and pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.text_encoder.dtype == pipe.unet.dtype == torch.float32
    image = pipe("a red circle", num_inference_steps=2, height=32, width=32, output_type="np").images
    assert image.shape == (1, 32, 32, 3)
    bundle = ldm.load_ldm(str(out), torch.device("cpu"), torch.float32)
    assert isinstance(bundle.preview, ldm.LatentPreview)
    card = (out / "MODEL_CARD.md").read_text()
    assert "--steps 2" in card and trainer.FINISH_SECTION in card and card.count("## ") >= 3


def test_a_vit_becomes_blips_image_encoder_exactly(tmp_path):
    """The BLIP trainer can start its image encoder from the bundled ViT: same sizes, renamed weights, and query, key,
    value fused in that order into BLIP's qkv. The two encoders then compute the same tokens."""
    from transformers import BlipVisionConfig, BlipVisionModel, ViTConfig, ViTForImageClassification

    from mmcore.train.blip import vit_to_blip_vision

    torch.manual_seed(0)
    sizes = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64)
    ViTForImageClassification(ViTConfig(**sizes, num_labels=6)).save_pretrained(tmp_path)
    vit = ViTForImageClassification.from_pretrained(tmp_path, dtype=torch.float32)
    blip = BlipVisionModel(BlipVisionConfig(**sizes, layer_norm_eps=vit.config.layer_norm_eps))
    blip.load_state_dict(vit_to_blip_vision(tmp_path), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(blip(pixel_values=x).last_hidden_state, vit.vit(pixel_values=x).last_hidden_state,
                                   atol=1e-5, rtol=1e-4)


def test_world_both_renders_half_of_each_world_on_their_own_seeds():
    from mmcore import shapes
    from mmcore.train.common import world_batch, world_words

    images, scenes = world_batch("train", 6, 32, "both", one_large=True)
    assert images.shape == (6, 32, 32, 3)
    classic = [shapes.sample_scene(shapes.split_seed("train", i), one_large=True, world="classic") for i in range(3)]
    wide = [shapes.sample_scene(shapes.split_seed("train", i), one_large=True, world="wide") for i in range(3, 6)]
    assert scenes == classic + wide
    assert [s.objects for s in world_batch("val", 4, 32, "wide")[1]] == \
        [shapes.sample_scene(shapes.split_seed("val", i), world="wide").objects for i in range(4)]
    assert world_words("both") == "classic and wide Shapes worlds (half each)"
    assert world_words("wide") == "wide Shapes world"


def test_blip_split_holds_each_scenes_colour_swapped_caption(tmp_path):
    from mmcore import shapes
    from mmcore.train import blip as TB

    tokenizer = B.build_tokenizer(tmp_path)
    split = TB.make_split("test", 40, 32, tokenizer, "classic")
    swaps = [shapes.swapped_caption(s) for s in split["scenes"]]
    assert split["has_swap"].tolist() == [w is not None for w in swaps] and 0 < sum(split["has_swap"]) < 40
    for i, w in enumerate(swaps):
        text = tokenizer.decode(split["swapped"][i], skip_special_tokens=True)
        assert text == (w if w else tokenizer.decode(split["false"][i], skip_special_tokens=True))


@pytest.mark.slow
def test_a_locked_text_tower_is_left_bit_for_bit(tmp_path, monkeypatch):
    """The latent-diffusion model's prompt encoder is a copy of the bundled CLIP's text tower: retraining the CLIP with
    --lock-text moves the image tower only."""
    from safetensors.torch import load_file

    from mmcore.train import clip as TC

    first, second = tmp_path / "a", tmp_path / "b"
    for out, extra in ((first, []), (second, ["--init", str(first), "--lock-text", "--lr", "1e-2"])):
        monkeypatch.setattr(sys, "argv", ["train", "--steps", "3", "--batch-size", "8", "--train-scenes", "32",
                                          "--eval-scenes", "32", "--world", "classic", "--out", str(out), *extra])
        TC.main()
    torch.set_num_threads(2)
    a, b = load_file(first / "open_clip_model.safetensors"), load_file(second / "open_clip_model.safetensors")
    text = [k for k in a if not k.startswith("visual.") and k != "logit_scale"]
    assert len(text) > 10 and all(torch.equal(a[k], b[k]) for k in text)
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("visual."))
    assert "text tower was locked" in (second / "MODEL_CARD.md").read_text()


@pytest.mark.slow
def test_render_workers_draw_the_very_same_scenes(monkeypatch):
    from mmcore.train import common

    serial = common.world_batch("train", 7, 32, "both", one_large=True)
    monkeypatch.setattr(common, "RENDER_WORKERS", 2)
    monkeypatch.setattr(common, "PARALLEL_MIN", 1)
    parallel = common.world_batch("train", 7, 32, "both", one_large=True)
    assert parallel[1] == serial[1]
    assert (parallel[0] == serial[0]).all()


def test_dihedral_turns_each_image_by_its_own_draw():
    from mmcore.train.vit import dihedral

    x = torch.arange(12 * 3 * 4 * 4, dtype=torch.uint8).reshape(12, 3, 4, 4)
    out = dihedral(x, torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)  # the same draws, applied one image at a time
    k = torch.randint(4, (12,), generator=gen)
    flip = torch.rand(12, generator=gen) < 0.5
    expected = torch.stack([torch.rot90(xi.flip(-1) if f else xi, int(ki), dims=(-2, -1))
                            for xi, ki, f in zip(x, k, flip)])
    assert torch.equal(out, expected)
    assert len(set(k.tolist())) > 2 and flip.any() and not flip.all()  # the draws exercise every branch


@pytest.mark.slow
def test_max_minutes_stops_the_loop_and_keeps_the_best_checkpoint(tmp_path, monkeypatch):
    from mmcore.train import vit as TV

    out = tmp_path / "vit"
    monkeypatch.setattr(sys, "argv", ["train", "--steps", "50", "--batch-size", "8", "--train-scenes", "32",
                                      "--eval-scenes", "16", "--max-minutes", "0", "--out", str(out)])
    TV.main()
    torch.set_num_threads(2)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps_trained"] == 1
    assert "1 CPU thread(s)" in (out / "MODEL_CARD.md").read_text()


def test_a_model_card_names_the_gpu_it_trained_on(tmp_path, monkeypatch):
    from mmcore.train import common

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    monkeypatch.setattr(common, "RENDER_WORKERS", 7)
    common.write_model_card(tmp_path, title="t", summary="s", command="c", seed=0, minutes=4.4, metrics={},
                            config={}, data="d", device=torch.device("cuda"))
    assert "4.4 minutes on one Some GPU GPU, scenes rendered by 7 CPU process(es)" in \
        (tmp_path / "MODEL_CARD.md").read_text()
