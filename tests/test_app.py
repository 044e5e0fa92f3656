"""The app composes without launching, and its HTTP API reads like a table of contents."""

import gradio as gr
import pytest


@pytest.fixture(scope="module")
def demo():
    import app

    return app.build()


def test_app_builds_with_every_tab(demo):
    assert isinstance(demo, gr.Blocks)
    tabs = [b for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert [t.label for t in tabs] == ["ViT", "CLIP", "BLIP", "Latent diffusion", "1 · Forward process",
                                       "2 · Reverse process from a prompt", "3 · 2-D playground"]


def test_every_public_event_is_named_after_its_tab(demo):
    names = [fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"]
    assert names, "no public API"
    assert all(n.split("_")[0] in ("vit", "clip", "blip", "blip2", "diffusion") for n in names), names
    for expected in ("vit_patches", "vit_trace", "vit_attention", "vit_positions", "vit_layernorm", "vit_sinusoid",
                     "vit_draw", "clip_matrix", "clip_temperature", "clip_editable", "clip_zero_shot",
                     "clip_word_order", "diffusion_forward", "diffusion_curves", "diffusion_chain", "diffusion_strip",
                     "diffusion_latent", "diffusion_scene", "blip_scene", "blip_caption", "blip_attention",
                     "blip_lens", "blip_vqa", "blip_match", "blip_swap", "blip_pipeline", "diffusion_generate",
                     "diffusion_details", "diffusion_guidance", "diffusion_compare", "diffusion_clip_score",
                     "diffusion_tokens", "diffusion_playground_train", "diffusion_playground_paths", "blip2_read",
                     "blip2_maps", "blip2_ablate"):
        assert expected in names


def test_image_inputs_are_decoded_by_our_loader(demo):
    images = [b for b in demo.blocks.values() if isinstance(b, gr.Image) and b.interactive is not False]
    assert images and all(b.type == "filepath" for b in images if b.sources)
