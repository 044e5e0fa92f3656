"""The trainers run end to end on a toy budget and write what the bundled tier's loader reads."""

import json
import sys

import pytest
import torch

import mmcore.clip as C
import mmcore.diffusion as D
import mmcore.vit as V

LOADERS = {"vit": V.load_vit, "clip": C.load_clip, "vae": D.load_vae}


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
    if family == "vae":
        assert metrics["scaling_factor"] == pytest.approx(bundle.scaling_factor, rel=1e-6)
        assert metrics["val_psnr_db"] > 0
