"""Bad input, end to end: the app runs on a free port and a gradio_client sends it broken images, bad text and bad
parameter values. Each must come back as our sentence (gradio_client raises AppError with it), never a stack trace or
Gradio's generic "upstream app has raised an exception", and the very next good request must succeed."""

from __future__ import annotations

import io
import json
import socket
import time
import urllib.request

import pytest
from PIL import Image

pytestmark = pytest.mark.slow

IMAGE_ENDPOINTS = {  # api_name -> the keyword arguments besides the image
    "vit_patches": {"tier": "bundled"},
    "vit_attention": {"tier": "bundled"},
    "clip_zero_shot": {"tier": "bundled"},
    "clip_word_order": {},
    "blip_caption": {"tier": "bundled", "prompt": ""},
    "blip_vqa": {"tier": "bundled", "question": "what color is the circle?"},
    "diffusion_forward": {},
    "diffusion_latent": {"tier": "bundled"},
}


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _corpus() -> dict[str, tuple[bytes, str]]:
    """file name -> (bytes, words the answer must contain)."""
    photo = io.BytesIO()
    Image.new("RGB", (300, 200), "orange").save(photo, format="JPEG")
    return {
        "notes.png": (b"These are lecture notes, not a picture.\n" * 20, "not an image Pillow can read"),
        "truncated.png": (_png(Image.new("RGB", (300, 300), "red"))[:200], "truncated or corrupted"),
        "truncated.jpg": (photo.getvalue()[:400], "Could not read the upload: Truncated File Read"),
        "bomb.png": (_png(Image.new("1", (20_000, 20_000))), "decompression bomb"),  # 48 kB, 400 M pixels
        "huge.png": (_png(Image.new("1", (9_000, 9_000))), "more than the limit of 40,000,000"),
        "sliver.png": (_png(Image.new("RGB", (4_000, 20))), "aspect ratio above 20:1"),
        "empty.png": (b"", "The upload is empty (0 bytes)"),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, client, good image): the app on a free port, every model of the banner loaded (or failed) first."""
    from gradio_client import Client, handle_file

    import app
    from demos import common
    from mmcore import models

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.serve(port=port, block=False)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and any(
            models.CACHE.status(f, common.resolve(f, None).tier) in ("loading", "not loaded") for f in app.FAMILIES):
        time.sleep(0.5)
    url = f"http://127.0.0.1:{port}"
    scene, _ = common.random_scene(3)
    path = tmp_path_factory.mktemp("good") / "scene.png"
    scene.save(path)
    yield url, Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads"))), \
        handle_file(str(path))
    demo.close()


def _refused(client, api_name: str, **kwargs) -> str:
    """The message of the AppError that the call must raise, checked to be a sentence of ours."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        client.predict(api_name=f"/{api_name}", **kwargs)
    message = str(err.value)
    assert "upstream" not in message.lower() and "Traceback" not in message and "/tmp" not in message, message
    return message


def _served(client, api_name: str, **kwargs) -> None:
    result = client.predict(api_name=f"/{api_name}", **kwargs)
    assert result is not None and all(r is not None for r in (result if isinstance(result, tuple) else [result]))


def test_a_bad_image_corpus_gets_sentences_and_the_next_click_works(server, tmp_path):
    from gradio_client import handle_file

    _, client, good = server
    for name, (data, words) in _corpus().items():
        (tmp_path / name).write_bytes(data)
        for api_name, kwargs in IMAGE_ENDPOINTS.items():
            message = _refused(client, api_name, image=handle_file(str(tmp_path / name)), **kwargs)
            assert words in message, (name, api_name, message)
            _served(client, api_name, image=good, **kwargs)


@pytest.mark.parametrize("api_name, kwargs, words", [
    ("blip_vqa", {"question": ""}, "Please type a question"),
    ("blip_vqa", {"question": "why " * 25_000}, "please keep it under 300"),
    ("blip_match", {"captions": ""}, "enter at least one text"),
    ("blip_match", {"captions": "<script>alert('hi')</script> 🙂🙂 " * 500}, "each text may have at most 300"),
    ("clip_zero_shot", {"labels": ""}, "enter at least one label"),
    ("clip_zero_shot", {"labels": "circle, " * 5_000}, "at most 36 labels"),
    ("diffusion_generate", {"prompt": "a red circle " * 10_000, "num_inference_steps": 2}, "at most 500 are accepted"),
    ("diffusion_generate", {"num_inference_steps": 10**6}, "greater than maximum value 50"),
    ("diffusion_generate", {"num_inference_steps": -3}, "less than minimum value 1"),
    ("diffusion_generate", {"guidance_scale": "lots"}, "must be a number in"),
    ("vit_patches", {"patch_size": 7}, "not in the list of choices"),
    ("vit_attention", {"layer": 1e9}, "greater than maximum value"),
    ("vit_patches", {"tier": "enormous"}, "not in the list of choices"),
    ("diffusion_forward", {"T": 10**9}, "greater than maximum value 2000"),
    ("diffusion_curves", {"beta_start": "abc"}, "β_start must be a number in [1e-08, 0.999], got 'abc'"),
])
def test_bad_text_and_parameters_get_sentences_and_the_next_click_works(server, api_name, kwargs, words):
    _, client, good = server
    base = {"tier": "bundled"} if api_name not in ("diffusion_forward", "diffusion_curves") else {}
    if api_name not in ("diffusion_generate", "diffusion_curves"):
        base["image"] = good
    base.update({"blip_vqa": {"question": "what color is the circle?"}, "blip_match": {"captions": "a red circle"},
                 "diffusion_generate": {"num_inference_steps": 2}}.get(api_name, {}))
    assert words in _refused(client, api_name, **{**base, **kwargs})
    _served(client, api_name, **base)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_numbers_json_cannot_carry_are_refused_in_words(server, value):
    """gradio_client will not send NaN or ∞, but a raw request can: the handler's own check answers."""
    url, client, _ = server
    body = f'{{"data": ["linear", {value}, 0.02, 1000]}}'.encode()
    request = urllib.request.Request(f"{url}/gradio_api/call/diffusion_curves", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        event = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{url}/gradio_api/call/diffusion_curves/{event}", timeout=30) as r:
        stream = r.read().decode()
    assert "event: error" in stream
    error = json.loads(stream.split("data: ", 1)[1])["error"]
    assert error and ("must be a finite number" in error or "maximum value" in error or "minimum value" in error)
    _served(client, "diffusion_curves")


def test_cuda_out_of_memory_in_a_handler_is_a_message_and_the_server_keeps_serving(server, monkeypatch):
    import torch

    import mmcore.vit
    from demos import vit

    _, client, good = server
    forward, calls = mmcore.vit.forward, []
    monkeypatch.setattr(vit, "_passes", type(vit._passes)())  # no forward pass kept from an earlier call

    def out_of_memory_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return forward(*args, **kwargs)

    monkeypatch.setattr(mmcore.vit, "forward", out_of_memory_once)
    message = _refused(client, "vit_attention", image=good, tier="bundled")
    assert "ran out of memory" in message and "try again" in message
    _served(client, "clip_zero_shot", image=good, tier="bundled")
    _served(client, "vit_attention", image=good, tier="bundled")  # a failed pass is not kept: this one runs
    assert len(calls) == 2
