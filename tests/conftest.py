"""Shared fixtures: tiny random-init models saved to a temporary folder and loaded back through the catalogue's own
loaders, standing in for the pretrained tier (no test touches the network)."""

from __future__ import annotations

import dataclasses
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
import torch

from mmcore import models


@pytest.fixture(autouse=True)
def no_shared_answers():
    """Each test computes its own answers: none is shared from an earlier test's identical request (a test may
    change a model, a file or a setting between two identical calls)."""
    from demos import common

    common.ANSWERS.clear()
    yield
    common.ANSWERS.clear()


@pytest.fixture(autouse=True)
def validated_figures(monkeypatch):
    """The figures a click builds from plain dicts, unvalidated (common.figure), are built validated as well in every
    test, so that a misspelt or misplaced property fails the test that draws it."""
    import plotly.graph_objects as go

    from demos import common

    build = common.figure

    def figure(data: list[dict], layout: dict) -> go.Figure:
        go.Figure({"data": data, "layout": layout})  # raises ValueError on a property Plotly does not know
        return build(data, layout)

    monkeypatch.setattr(common, "figure", figure)


class FakeHub:
    """A hub that answers from a set of cached families, and is reachable or not."""

    def __init__(self, cached: set[str] = frozenset(), reachable: bool = False, delay: float = 0.0) -> None:
        self.cached, self._reachable, self.delay, self.probes = set(cached), reachable, delay, 0

    def is_cached(self, spec: models.ModelSpec) -> bool:
        return spec.family in self.cached

    def reachable(self, timeout: float) -> bool:
        import time

        self.probes += 1
        time.sleep(min(self.delay, timeout))
        return self._reachable and self.delay <= timeout


def _save_tiny_vit(folder) -> None:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, num_labels=5, id2label={i: f"class {i}" for i in range(5)},
                    label2id={f"class {i}": i for i in range(5)})
    ViTForImageClassification(cfg).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


def _save_tiny_clip(folder) -> None:
    import open_clip
    from safetensors.torch import save_file

    from mmcore import clip

    torch.manual_seed(0)
    cfg = {"model_cfg": {"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2,
                                                         "head_width": 16},
                         "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2,
                                      "layers": 1}},
           "preprocess_cfg": {"size": 32}}
    model = open_clip.CLIP(**cfg["model_cfg"])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / clip.WEIGHTS_FILE))
    (folder / clip.CONFIG_FILE).write_text(json.dumps(cfg))


def _save_tiny_vae(folder) -> None:
    """Stable Diffusion's layout: the VAE sits in the repo's vae/ subfolder."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                  layers_per_block=1, sample_size=16).save_pretrained(folder / "vae")


def _save_tiny_taesd(folder) -> None:
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                    num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1),
                    latent_channels=4).save_pretrained(folder)


TINY_BLIP_VISION = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, initializer_range=0.3)  # wide init: peaked, varied attention
TINY_BLIP_TEXT = dict(hidden_size=32, encoder_hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, max_position_embeddings=48, initializer_range=0.3)


def _tiny_blip_saver(kind: str):
    """A tiny random-init BLIP of one kind, with its processor, as Salesforce's checkpoints are laid out."""

    def save(folder) -> None:
        import transformers

        from mmcore import blip

        tokenizer = blip.build_tokenizer(folder)
        torch.manual_seed(0)
        cls = getattr(transformers, blip._CLASSES[kind])
        cls(blip.bundled_config(len(tokenizer), TINY_BLIP_VISION, TINY_BLIP_TEXT)).save_pretrained(folder)
        blip.make_processor(tokenizer, TINY_BLIP_VISION["image_size"]).save_pretrained(folder)

    return save


TINY_QFORMER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                    cross_attention_frequency=1, encoder_hidden_size=32, initializer_range=0.3)
TINY_OPT = dict(hidden_size=32, word_embed_proj_dim=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                max_position_embeddings=48, init_std=0.3)
TINY_QUERIES = 4


def _save_tiny_blip2(folder) -> None:
    """A tiny random-init BLIP-2 (4 queries over 16 patches, a 2-layer OPT), laid out as Salesforce's checkpoints."""
    from transformers import Blip2ForConditionalGeneration

    from mmcore import blip2

    tokenizer = blip2.build_tokenizer(folder)
    torch.manual_seed(0)
    config = blip2.bundled_config(len(tokenizer), TINY_QUERIES, TINY_BLIP_VISION, TINY_QFORMER, TINY_OPT)
    model = Blip2ForConditionalGeneration(config)
    torch.nn.init.normal_(model.query_tokens, std=1.0)  # distinct queries (transformers starts them at zero)
    model.save_pretrained(folder)
    blip2.make_processor(tokenizer, TINY_BLIP_VISION["image_size"], TINY_QUERIES).save_pretrained(folder)


def _save_tiny_ldm(folder) -> None:
    """A tiny Stable-Diffusion-layout pipeline: epsilon-prediction like SD 1.5, its text encoder converted from a tiny
    open_clip text tower, CLIP's real BPE tokenizer."""
    import open_clip
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from mmcore import ldm

    torch.manual_seed(0)
    text = open_clip.CLIP(embed_dim=16, vision_cfg={"image_size": 32, "patch_size": 8, "width": 32, "layers": 1,
                                                    "head_width": 16},
                          text_cfg={"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1})
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
                                cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4)
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1, sample_size=16)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    ldm.assemble(unet, vae, ldm.text_encoder_from_open_clip(text), ldm.clip_tokenizer(16), scheduler
                 ).save_pretrained(folder)


SAVERS = {"vit": _save_tiny_vit, "clip": _save_tiny_clip, "vae": _save_tiny_vae, "taesd": _save_tiny_taesd,
          **{f"blip-{kind}": _tiny_blip_saver(kind) for kind in ("caption", "vqa", "itm")},
          "blip2": _save_tiny_blip2, "ldm": _save_tiny_ldm, "ldm-sd15": _save_tiny_ldm}


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, str]:
    """family -> folder holding a tiny random-init model in the pretrained tier's format."""
    import mmcore.blip
    import mmcore.blip2
    import mmcore.clip
    import mmcore.diffusion
    import mmcore.ldm
    import mmcore.vit  # noqa: F401

    out = {}
    for family, save in SAVERS.items():
        folder = tmp_path_factory.mktemp(f"tiny-{family}")
        save(folder)
        out[family] = str(folder)
    return out


@pytest.fixture
def tiny_pretrained(tiny_dirs, monkeypatch):
    """Point every pretrained spec at its tiny folder and make the hub report it cached; a fresh model cache. A tiny
    model runs anywhere, so none of them needs CUDA."""

    for family, folder in tiny_dirs.items():
        spec = models.get_spec(family, "pretrained")
        monkeypatch.setitem(models._CATALOGUE, (family, "pretrained"),
                            dataclasses.replace(spec, source=folder, needs_cuda=False))
    hub = FakeHub(cached=set(tiny_dirs))
    real = models.resolve_tier
    monkeypatch.setattr(models, "resolve_tier", lambda family, requested=None, **kw: real(family, requested, hub=hub))
    monkeypatch.setattr(models, "CACHE", models.ModelCache())
    return tiny_dirs
