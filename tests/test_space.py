"""The hosted Space: README's YAML header, the CPU-basic preset, `spaces.GPU` on model handlers, and `python app.py`
run the way a Space runs it (PORT, GRADIO_SERVER_NAME)."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import FakeHub

from mmcore import models, settings

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


def _header() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "README.md must open with a YAML block between --- lines"
    return yaml.safe_load(match.group(1))


def test_readme_header_is_a_valid_space_config_listing_every_pretrained_model():
    import mmcore.blip
    import mmcore.blip2
    import mmcore.clip
    import mmcore.diffusion
    import mmcore.ldm
    import mmcore.vit  # noqa: F401  (each registers its catalogue entries)

    header = _header()
    assert header["sdk"] == "gradio" and (ROOT / header["app_file"]).is_file()
    pinned = re.search(r"^gradio==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE).group(1)
    assert str(header["sdk_version"]) == pinned, "the Space must run the Gradio the app is tested with"
    assert isinstance(header["python_version"], str) and re.fullmatch(r"3\.\d+(\.\d+)?", header["python_version"])
    assert {header["colorFrom"], header["colorTo"]} <= COLOURS
    assert isinstance(header["short_description"], str) and len(header["short_description"]) <= 60
    pretrained = {models.get_spec(f, "pretrained").source for f in models.families()
                  if (f, "pretrained") in models._CATALOGUE}
    assert len(pretrained) >= 9
    assert sorted(header["models"]) == sorted(pretrained)


# --------------------------------------------------------------------------------------------------------- settings

def test_the_space_variables_set_host_and_port():
    assert (settings.from_env({}).host, settings.from_env({}).port) == ("127.0.0.1", 7860)
    cfg = settings.from_env({"GRADIO_SERVER_NAME": "0.0.0.0", "PORT": "7861", "GRADIO_SERVER_PORT": "9000"})
    assert (cfg.host, cfg.port) == ("0.0.0.0", 7861)
    assert settings.from_env({"GRADIO_SERVER_PORT": "9000"}).port == 9000
    with pytest.raises(ValueError, match="PORT must be an integer"):
        settings.from_env({"PORT": "eighty"})


def test_the_cpu_basic_preset_serves_bundled_models_and_a_cached_sd_turbo_at_4_steps(monkeypatch):
    from demos import denoise

    cfg = settings.from_env({"MMLAB_PRESET": "cpu-basic"})
    assert (cfg.tier, cfg.tier_for("vit"), cfg.tier_for("ldm"), cfg.tier_for("taesd"), cfg.downloads) == (
        "bundled", "bundled", "auto", "auto", False)
    assert settings.from_env({"MMLAB_PRESET": "cpu-basic", "MMLAB_TIER": "auto"}).tier_for("vit") == "auto"
    with pytest.raises(ValueError, match="MMLAB_PRESET must be one of cpu-basic"):
        settings.from_env({"MMLAB_PRESET": "gpu-huge"})
    cfg = dataclasses.replace(cfg, device="cpu")
    monkeypatch.setattr(settings, "get", lambda: cfg)
    hub = FakeHub(cached={"vit", "ldm"}, reachable=True)
    real = models.resolve_tier
    monkeypatch.setattr(models, "resolve_tier", lambda family, requested=None, **kw: real(family, requested, hub=hub))
    assert models.resolve_tier("vit").tier == "bundled", "cached, but the preset keeps the bundled model"
    scheduler, steps, guidance, size, note = denoise.defaults("ldm", None)
    assert (steps, size) == (4, 512) and "stabilityai/sd-turbo" in note
    assert denoise.defaults("ldm-sd15", None)[1:4] == (20, 3.0, 32)  # bundled: Stable Diffusion 1.5 is too slow
    hub.cached = set()
    res = models.resolve_tier("ldm")
    assert (res.tier, res.download) == ("bundled", False) and "cpu-basic preset never downloads" in res.reason
    assert hub.probes == 0


# ----------------------------------------------------------------------------------------------------- spaces.GPU

def _fake_spaces(calls: list) -> types.ModuleType:
    def gpu(fn):
        def run(*args, **kwargs):
            calls.append(fn.__name__)
            return fn(*args, **kwargs)
        return run

    return types.SimpleNamespace(GPU=gpu)


def test_model_handlers_run_under_spaces_gpu_when_it_is_installed(monkeypatch):
    from demos import common

    def caption(image, tier=None):
        return f"caption of {image}"

    def stream(prompt, tier=None):
        yield from prompt.split()

    def draw(seed):
        return seed + 1

    calls = []
    monkeypatch.setitem(sys.modules, "spaces", _fake_spaces(calls))
    assert common.show_errors(caption)("a cat", "bundled") == "caption of a cat"
    assert list(common.show_errors(stream)("a red circle", "bundled")) == ["a", "red", "circle"]
    assert common.show_errors(draw)(1) == 2
    assert common.show_errors(draw, on_device=True)(2) == 3
    assert calls == ["caption", "stream", "draw"]
    assert common.show_errors(caption).on_device and not common.show_errors(draw).on_device


def test_without_spaces_nothing_changes(monkeypatch):
    from demos import common

    def caption(image, tier=None):
        return image

    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError
    assert common.gpu(caption) is caption
    assert common.show_errors(caption)("x", "bundled") == "x"


# -------------------------------------------------------------------------------------------------- run as a Space

def _listening(port: int) -> list[str]:
    """Local addresses (hex ip:port, as /proc/net/tcp writes them) that listen on `port`."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return [r[1] for r in rows if r[1].endswith(f":{port:04X}") and r[3] == "0A"]


@pytest.mark.slow
def test_the_app_serves_where_a_space_tells_it(tmp_path):
    """`python app.py` with no flags, PORT and GRADIO_SERVER_NAME set as Spaces set them, the cpu-basic preset."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PORT": str(port), "GRADIO_SERVER_NAME": "0.0.0.0", "MMLAB_PRESET": "cpu-basic",
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    env.pop("MMLAB_TIER", None)
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()[-3000:]
            time.sleep(0.3)
        assert _listening(port) == [f"00000000:{port:04X}"], "not bound to 0.0.0.0"
        client = Client(f"http://127.0.0.1:{port}", verbose=False, download_files=str(tmp_path / "downloads"))
        api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        default = {name: {p["parameter_name"]: p["parameter_default"] for p in api[name]["parameters"]}["tier"]
                   for name in ("/vit_patches", "/clip_matrix", "/diffusion_generate")}
        assert default == {"/vit_patches": "bundled", "/clip_matrix": "bundled", "/diffusion_generate": "auto"}
        image = handle_file(str(ROOT / "assets" / "images" / "chelsea.jpg"))
        while True:
            try:
                assert "196 patches" in client.predict(image=image, api_name="/vit_patches")[1]
                break
            except AppError as err:  # the models load in the background after start-up
                assert "still loading" in str(err) and time.monotonic() < deadline, err
                time.sleep(1)
        client.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
