"""The trainers run end to end on a toy budget and write what the bundled tier's loader reads."""

import json
import sys

import pytest
import torch

import mmcore.clip as C
import mmcore.vit as V


@pytest.mark.slow
@pytest.mark.parametrize("family", ["vit", "clip"])
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
    loader = V.load_vit if family == "vit" else C.load_clip
    bundle = loader(str(out), torch.device("cpu"), torch.float32)
    assert all(p.dtype == torch.float32 for p in bundle.model.parameters())
    assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if "acc" in k or "r1" in k)
