"""The catalogue, the one cache, device/dtype choice, and tier resolution against a fake hub (never the network)."""

import dataclasses
import threading
import time

import pytest
import torch
from conftest import FakeHub

import mmcore.clip
import mmcore.vit
from mmcore import models, settings


def _cfg(**kw) -> settings.Settings:
    return dataclasses.replace(settings.Settings(), **kw)


# ------------------------------------------------------------------------------------------------------- settings

def test_settings_from_env_defaults_and_overrides():
    assert settings.from_env({}) == settings.Settings()
    cfg = settings.from_env({"MMLAB_TIER": "Bundled", "MMLAB_DEVICE": "cpu", "MMLAB_MAX_UPLOAD_MB": "5",
                             "HF_HUB_OFFLINE": "1", "MMLAB_PROBE_TIMEOUT": "0.5"})
    assert (cfg.tier, cfg.device, cfg.max_upload_mb, cfg.hub_offline, cfg.probe_timeout) == (
        "bundled", "cpu", 5, True, 0.5)
    assert not cfg.compile and settings.from_env({"MMLAB_COMPILE": "1"}).compile
    assert not settings.from_env({"MMLAB_COMPILE": "off"}).compile


@pytest.mark.parametrize("env, match", [
    ({"MMLAB_TIER": "huge"}, "MMLAB_TIER must be one of"),
    ({"MMLAB_DEVICE": "tpu"}, "MMLAB_DEVICE must be"),
    ({"MMLAB_MAX_UPLOAD_MB": "lots"}, "MMLAB_MAX_UPLOAD_MB must be an integer"),
    ({"MMLAB_QUEUE_SIZE": "0"}, r"MMLAB_QUEUE_SIZE must be in \[1, 1000\]"),
    ({"MMLAB_PROBE_TIMEOUT": "60"}, "MMLAB_PROBE_TIMEOUT must be in"),
    ({"MMLAB_COMPILE": "max-autotune"}, "MMLAB_COMPILE must be 0 or 1"),
])
def test_settings_reject_bad_values(env, match):
    with pytest.raises(ValueError, match=match):
        settings.from_env(env)


# ------------------------------------------------------------------------------------------------------ catalogue

def _spec(family="toy", tier="bundled", loader=None, source="models/none", **kw):
    return models.ModelSpec(family=family, tier=tier, name=f"{family}-{tier}", source=source,
                            loader=loader or (lambda *a: object()), size_mb=1.0, licence="MIT", **kw)


def test_catalogue_lists_both_tiers_of_each_family():
    for family in ("vit", "clip"):
        bundled, pretrained = models.get_spec(family, "bundled"), models.get_spec(family, "pretrained")
        assert bundled.loader is pretrained.loader, "one code path for both tiers"
        assert bundled.path.startswith(str(models.ASSETS)) and not pretrained.path.startswith("/")
        assert pretrained.size_mb > 100 and pretrained.licence and pretrained.cache_files
    assert {"vit", "clip"} <= set(models.families())


def test_register_rejects_conflicts_and_bad_tiers(monkeypatch):
    monkeypatch.setattr(models, "_CATALOGUE", {})
    spec = models.register(_spec())
    assert models.register(spec) is spec  # the same spec twice is fine (modules re-imported)
    with pytest.raises(ValueError, match="already registered"):
        models.register(dataclasses.replace(spec, name="other"))
    with pytest.raises(ValueError, match="tier must be one of"):
        models.register(_spec(tier="medium"))
    with pytest.raises(KeyError, match="no model registered for toy/pretrained"):
        models.get_spec("toy", "pretrained")


# -------------------------------------------------------------------------------------------------- tier resolution

def test_offline_falls_back_to_bundled_within_two_seconds():
    hub = FakeHub(reachable=True, delay=30.0)  # a hub that would hang: the probe timeout must cut it short
    t0 = time.perf_counter()
    res = models.resolve_tier("vit", "auto", hub=hub, cfg=_cfg(probe_timeout=1.5))
    assert time.perf_counter() - t0 <= 2.0
    assert res.tier == "bundled" and "unreachable" in res.reason and res.seconds <= 2.0


def test_hub_offline_flag_never_probes():
    hub = FakeHub(reachable=True)
    res = models.resolve_tier("clip", "pretrained", hub=hub, cfg=_cfg(hub_offline=True))
    assert res.tier == "bundled" and "HF_HUB_OFFLINE" in res.reason and hub.probes == 0


def test_cached_pretrained_wins_and_reachable_hub_means_download():
    assert models.resolve_tier("vit", "auto", hub=FakeHub(cached={"vit"}), cfg=_cfg()).tier == "pretrained"
    res = models.resolve_tier("vit", "auto", hub=FakeHub(reachable=True), cfg=_cfg())
    assert res.tier == "pretrained" and res.download and "346 MB" in res.reason
    res = models.resolve_tier("vit", "bundled", hub=FakeHub(cached={"vit"}), cfg=_cfg())
    assert res.tier == "bundled" and not res.download
    with pytest.raises(ValueError, match="tier must be one of"):
        models.resolve_tier("vit", "best", hub=FakeHub(), cfg=_cfg())


def test_real_probe_is_bounded_for_an_unroutable_endpoint():
    # 192.0.2.0/24 is TEST-NET-1: never routed. Nothing is sent anywhere; the connect attempt just times out.
    hub = models.HuggingFaceHub("https://192.0.2.1")
    t0 = time.perf_counter()
    assert hub.reachable(0.3) is False
    assert time.perf_counter() - t0 < 1.0


# --------------------------------------------------------------------------------------------------- device, dtype

def test_device_and_dtype_choice():
    spec = _spec()
    assert models.pick_dtype(torch.device("cpu"), spec) == torch.float32
    assert models.pick_dtype(torch.device("cuda"), spec) == torch.float16
    assert models.pick_dtype(torch.device("cuda"), dataclasses.replace(spec, fp16=False)) == torch.float32
    assert models.pick_device(_cfg(device="cpu")).type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            models.pick_device(_cfg(device="cuda"))


# -------------------------------------------------------------------------------------------------------- the cache

def test_cache_loads_each_model_once_under_concurrency(monkeypatch):
    calls = []

    def slow_loader(source, device, dtype, local_only):
        calls.append(source)
        time.sleep(0.2)
        return object()

    monkeypatch.setattr(models, "_CATALOGUE", {})
    models.register(_spec(loader=slow_loader))
    cache = models.ModelCache(_cfg(device="cpu"))
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("toy", "bundled"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1
    assert cache.status("toy", "bundled") == "ready"


def test_loads_of_different_models_never_overlap(monkeypatch):
    """from_pretrained builds on a process-wide meta device: two at once break each other ("Cannot copy out of meta
    tensor"), as the start-up warm-up and a first click on another tab did."""
    active, overlaps = [], []

    def loader(source, device, dtype, local_only):
        active.append(source)
        overlaps.append(len(active))
        time.sleep(0.1)
        active.remove(source)
        return object()

    monkeypatch.setattr(models, "_CATALOGUE", {})
    for name in ("a", "b", "c"):
        models.register(_spec(family=name, source=f"models/{name}", loader=loader))
    cache = models.ModelCache(_cfg(device="cpu"))
    threads = [threading.Thread(target=cache.get, args=(name, "bundled")) for name in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(overlaps) == 3 and max(overlaps) == 1


def test_cache_reports_failures(monkeypatch):
    def broken(*args):
        raise FileNotFoundError("weights missing")

    monkeypatch.setattr(models, "_CATALOGUE", {})
    models.register(_spec(loader=broken))
    cache = models.ModelCache(_cfg(device="cpu"))
    with pytest.raises(models.ModelLoadError, match="toy-bundled could not be loaded: FileNotFoundError: weights"):
        cache.get("toy", "bundled")
    assert cache.status("toy", "bundled").startswith("failed: toy-bundled could not be loaded")


# ------------------------------------------------------------------------------ pretrained path, with tiny models

def test_tiny_pretrained_vit_loads_through_the_catalogue(tiny_pretrained):
    bundle = models.load("vit", "pretrained")
    assert bundle is models.load("vit", "pretrained")  # shared
    assert bundle.model.config._attn_implementation == "eager"
    assert bundle.pixel_values(_photo()).shape == (1, 3, 32, 32)


def test_tiny_pretrained_clip_loads_through_the_catalogue(tiny_pretrained):
    bundle = models.load("clip", "pretrained")
    feats = mmcore.clip.encode_texts(bundle, ["a red circle", "a blue square"])
    assert feats.shape == (2, 16)
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(2))


def test_clip_loader_refuses_a_folder_without_weights(tmp_path):
    (tmp_path / mmcore.clip.CONFIG_FILE).write_text("{}")
    with pytest.raises(FileNotFoundError, match="refusing to run untrained weights"):
        mmcore.clip.load_clip(str(tmp_path), torch.device("cpu"), torch.float32)


def _photo():
    from PIL import Image

    return Image.new("RGB", (50, 40), "orange")


def test_clip_embedding_cache_keys_name_device_and_dtype(tiny_dirs):
    a = mmcore.clip.load_clip(tiny_dirs["clip"], torch.device("cpu"), torch.float32)
    b = mmcore.clip.load_clip(tiny_dirs["clip"], torch.device("cpu"), torch.float64)
    assert a.model_id != b.model_id  # the same weights in another dtype must not share cached embeddings


def test_reachability_is_probed_once_per_endpoint():
    assert models.default_hub("https://192.0.2.7") is models.default_hub("https://192.0.2.7")
    assert models.default_hub("https://192.0.2.7") is not models.default_hub("https://192.0.2.8")


def test_two_entries_for_the_same_weights_share_one_load():
    """TAESD's offline stand-in is the bundled VAE: one load, one object, one status."""
    import mmcore.diffusion  # noqa: F401

    calls = []
    spec = models.get_spec("vae", "bundled")
    twin = dataclasses.replace(spec, loader=lambda *a: calls.append(a) or object())
    cache = models.ModelCache()
    saved = {k: models._CATALOGUE[k] for k in (("vae", "bundled"), ("taesd", "bundled"))}
    try:
        models._CATALOGUE[("vae", "bundled")] = twin
        models._CATALOGUE[("taesd", "bundled")] = dataclasses.replace(twin, family="taesd")
        assert cache.get("vae", "bundled") is cache.get("taesd", "bundled")
        assert len(calls) == 1 and cache.status("taesd", "bundled") == "ready"
    finally:
        models._CATALOGUE.update(saved)


# ---------------------------------------------------------------------------------------------- faults while serving

def test_settings_for_a_classroom():
    cfg = settings.from_env({})
    assert (cfg.queue_size, cfg.concurrency, cfg.device_concurrency) == (128, 2, 2)
    cfg = settings.from_env({"MMLAB_QUEUE_SIZE": "40", "MMLAB_DEVICE_CONCURRENCY": "1"})
    assert (cfg.queue_size, cfg.device_concurrency) == (40, 1)
    with pytest.raises(ValueError, match=r"MMLAB_DEVICE_CONCURRENCY must be in \[1, 16\]"):
        settings.from_env({"MMLAB_DEVICE_CONCURRENCY": "0"})


def test_a_model_still_loading_answers_in_seconds_instead_of_hanging(monkeypatch):
    """One request loads a slow model; others that need it, or need another model meanwhile, hear how long it has
    been loading after `wait` seconds, and get the model once it is there."""
    release = threading.Event()

    def slow(source, device, dtype, local_only):
        release.wait(10)
        return object()

    monkeypatch.setattr(models, "_CATALOGUE", {})
    models.register(_spec(family="big", source="models/big", loader=slow))
    models.register(_spec(family="small", source="models/small"))
    cache = models.ModelCache(_cfg(device="cpu"))
    loader = threading.Thread(target=cache.get, args=("big", "bundled"))
    loader.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    with pytest.raises(models.StillLoading, match=r"big-bundled is still loading \([01] s so far\)\. Please try again"):
        cache.get("big", "bundled", wait=0.2)
    with pytest.raises(models.StillLoading, match=r"small-bundled waits for big-bundled, still loading \(\d s "):
        cache.get("small", "bundled", wait=0.5)
    assert time.perf_counter() - t0 < 1.5
    assert cache.status("small", "bundled") == "not loaded"
    release.set()
    loader.join()
    assert cache.get("big", "bundled", wait=0.1) is cache.get("big", "bundled")
    assert cache.get("small", "bundled", wait=1.0) is not None


def _live_modules() -> int:
    """How many torch modules are alive, reachable or not (without collecting)."""
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance on some lazy torch objects warns
        return sum(isinstance(o, torch.nn.Module) for o in gc.get_objects())


def _corrupt_copy(tmp_path, family: str = "clip"):
    """A copy of a bundled model whose weight file lost its last kilobyte, registered in its place: (spec, file)."""
    import shutil

    spec = models.get_spec(family, "bundled")
    folder = tmp_path / family
    shutil.copytree(spec.path, folder)
    weights = next(folder.rglob("*.safetensors"))
    data = weights.read_bytes()
    weights.write_bytes(data[:-1000])
    return dataclasses.replace(spec, source=str(folder)), weights, data


def test_a_corrupt_bundled_weight_file_is_named_and_leaves_nothing_behind(tmp_path, monkeypatch):
    import gc

    spec, weights, data = _corrupt_copy(tmp_path)
    calls = []
    spec = dataclasses.replace(spec, loader=lambda *a: calls.append(1) or mmcore.clip.load_clip(*a))
    monkeypatch.setitem(models._CATALOGUE, ("clip", "bundled"), spec)
    cache = models.ModelCache(_cfg(device="cpu"))
    kept = []  # whoever catches the error may keep it (a log, a framework): it must not keep the model alive
    modules = _live_modules()
    gc.disable()  # only the cache's own clean-up may free the half-built model
    try:
        for _ in range(3):
            with pytest.raises(models.ModelLoadError) as err:
                cache.get("clip", "bundled")
            kept.append(err.value)
        alive = _live_modules() - modules
    finally:
        gc.enable()
    message = str(kept[0])
    assert f"{weights} is truncated: {len(data) - 1000:,} of {len(data):,} bytes" in message
    assert "Restore it from the repository" in message and "clip-shapes could not be loaded" in message
    assert alive <= 0, f"{alive} modules of the failed loads are still alive"
    assert len(calls) == 1, "the same damaged files are not loaded again on every click"
    weights.write_bytes(data)  # repaired: the next click loads it
    assert cache.get("clip", "bundled").model is not None and len(calls) == 2


def test_a_corrupt_cached_weight_file_is_named(tmp_path, monkeypatch):
    """A pretrained model's weights in the Hugging Face cache layout (models--org--name/snapshots/<rev>/...)."""
    import huggingface_hub.constants

    spec = models.get_spec("vit", "pretrained")
    repo = tmp_path / ("models--" + spec.source.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    (snapshot / "config.json").write_text("{}")
    (snapshot / "preprocessor_config.json").write_text('{"size": ')
    (snapshot / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))

    def loader(*args):
        raise RuntimeError("Error while deserializing header")

    monkeypatch.setitem(models._CATALOGUE, ("vit", "pretrained"), dataclasses.replace(spec, loader=loader))
    with pytest.raises(models.ModelLoadError) as err:
        models.ModelCache(_cfg(device="cpu")).get("vit", "pretrained")
    message = str(err.value)
    assert f"{snapshot / 'model.safetensors'} is truncated or not a safetensors file" in message
    assert f"{snapshot / 'preprocessor_config.json'} is unreadable" in message
    assert "config.json is" not in message.replace("preprocessor_config.json is", "")
    assert "Delete it from the Hugging Face cache" in message


def test_file_checks_accept_the_bundled_weights():
    import mmcore.blip
    import mmcore.diffusion
    import mmcore.ldm  # noqa: F401

    for family in ("vit", "clip", "blip-caption", "vae", "ldm"):
        spec = models.get_spec(family, "bundled")
        assert models._local_files(spec) and models.damaged_files(spec) == [], family
