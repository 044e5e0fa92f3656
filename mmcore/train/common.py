"""What every bundled-model trainer shares: seeding, a timed loop log, and the model card."""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import platform
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from mmcore import shapes


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a torch generator for data order."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


class Clock:
    """Wall-clock minutes since construction, for time budgets and the model card."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def minutes(self) -> float:
        return (time.perf_counter() - self.start) / 60


def write_model_card(out: Path, *, title: str, summary: str, command: str, seed: int, minutes: float,
                     metrics: dict[str, float], config: dict, data: str, device: torch.device | None = None) -> None:
    """MODEL_CARD.md (for people) and metrics.json (for scripts) next to the weights."""
    if device is not None and device.type == "cuda":
        where = f"one {torch.cuda.get_device_name(device)} GPU, scenes rendered by {RENDER_WORKERS} CPU process(es)"
    else:
        where = f"{torch.get_num_threads()} CPU thread(s)"
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items())
    params = config.pop("parameters", None)
    text = f"""# {title}

{summary}

- **Tier**: bundled. Trained by this project on the Shapes world only: it knows coloured shapes on plain
  backgrounds, nothing else. Real photos belong to the pretrained tier.
- **Training command**: `{command}`
- **Seed**: {seed}
- **Training time**: {minutes:.1f} minutes on {where}
  ({platform.processor() or platform.machine()}, torch {torch.__version__}, Python {sys.version.split()[0]})
- **Parameters**: {params if params is not None else "see config"}
- **Weights**: fp16 safetensors (no pickle)
- **Data**: {data}
- **Licence**: MIT, like the code that trained it.

## Held-out metrics

| metric | value |
|---|---|
{rows}

## Config

```json
{json.dumps(config, indent=2)}
```
"""
    (out / "MODEL_CARD.md").write_text(text)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def replace_section(card: Path, heading: str, body: str) -> None:
    """Put `heading` + `body` at the end of a markdown model card, replacing an earlier section of that heading (up to
    the next "## ") and keeping every other section."""
    text = card.read_text() if card.is_file() else ""
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + len(heading))
        text = text[:start].rstrip("\n") + ("\n\n" + text[end + 1:] if end >= 0 else "")
    card.write_text(text.rstrip("\n") + "\n\n" + heading + "\n\n" + body.strip("\n") + "\n")


def arguments(doc: str, *, steps: int, lr: float, eval_scenes: int, out: Path, batch_size: int = 128,
              train_scenes: int = 40_000, world: str = "wide", extra: list | None = None) -> argparse.Namespace:
    """The command line every trainer shares; the defaults are the ones the committed weights were trained with."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--batch-size", type=int, default=batch_size)
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--train-scenes", type=int, default=train_scenes)
    ap.add_argument("--eval-scenes", type=int, default=eval_scenes)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--world", default=world,
                    help=f"the Shapes world to train on: wide, classic, or both (half of each) ({world})")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (the machine has 2; other trainers share it)")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from these saved weights (a bundled model folder) rather than a random init")
    ap.add_argument("--out", type=Path, default=out)
    ap.add_argument("--device", default="cpu", help="where the model trains: cpu (default) or cuda")
    ap.add_argument("--workers", type=int, default=1, help="processes that render the scenes (the same scenes)")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop the loop after this many minutes and keep the best checkpoint so far")
    for flag, kwargs in extra or []:  # a trainer's own options
        ap.add_argument(flag, **kwargs)
    args = ap.parse_args()
    if args.world not in (*shapes.WORLDS, "both"):
        ap.error(f"--world must be wide, classic or both, got {args.world!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here")
    args.device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    global RENDER_WORKERS
    RENDER_WORKERS = max(1, args.workers)
    return args


RENDER_WORKERS = 1  # set by --workers; rendering is the same scene for scene whatever the count
PARALLEL_MIN = 2000  # fewer scenes than this render in this process: starting workers would cost more


def _render(split: str, start: int, n: int, size: int, scene_kwargs: dict) -> tuple[np.ndarray, list[shapes.Scene]]:
    """shapes.batch in chunks over RENDER_WORKERS processes; each scene depends on its seed alone."""
    if RENDER_WORKERS == 1 or n < PARALLEL_MIN:
        return shapes.batch(split, start, n, size, **scene_kwargs)
    chunk = math.ceil(n / RENDER_WORKERS)
    jobs = [(split, a, min(chunk, start + n - a), size, scene_kwargs) for a in range(start, start + n, chunk)]
    with ProcessPoolExecutor(RENDER_WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_batch_kw, jobs))
    return np.concatenate([p[0] for p in parts]), [sc for p in parts for sc in p[1]]


def _batch_kw(job: tuple) -> tuple[np.ndarray, list[shapes.Scene]]:
    split, start, n, size, scene_kwargs = job
    return shapes.batch(split, start, n, size, **scene_kwargs)


def warmup_cosine(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first 5% of steps, then a cosine decay to zero."""
    warmup = max(1, steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))


def world_batch(split: str, n: int, size: int, world: str, **scene_kwargs) -> tuple[np.ndarray, list[shapes.Scene]]:
    """Scenes 0..n-1 of `split` rendered in `world`; "both" renders the first half in the classic world and the second
    half (the next seeds) in the wide one."""
    if world != "both":
        return _render(split, 0, n, size, dict(world=world, **scene_kwargs))
    half = n // 2
    a, sa = _render(split, 0, half, size, dict(world="classic", **scene_kwargs))
    b, sb = _render(split, half, n - half, size, dict(world="wide", **scene_kwargs))
    return np.concatenate([a, b]), sa + sb


def world_words(world: str) -> str:
    """How a model card names the world a model trained on."""
    return "classic and wide Shapes worlds (half each)" if world == "both" else f"{world} Shapes world"


def normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (B, 3, S, S) -> float in [-1, 1], as both bundled processors do (mean 0.5, std 0.5)."""
    return x.float().div(127.5).sub(1.0)


def log(step: int, clock: Clock, **values: float) -> None:
    parts = " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
    print(f"step {step:6d} | {clock.minutes:5.1f} min | {parts}", flush=True)
