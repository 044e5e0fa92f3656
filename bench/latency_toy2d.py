"""2-D diffusion playground: training time with the default config on one CPU thread (the tab's budget is 10 s), the
sampling and figure times, and for each preset how close the samples land to the data, against pure N(0, I) noise
and against a fresh draw of the shape itself (for scale: samples that hug the shape's centre line more tightly than
its own noise band, as DDPM's small-variance steps tend to, can score below it).

    python bench/latency_toy2d.py [--repeats 3] [--points 1000] [--samples 500]

Quality is the mean distance from each point to its nearest data point, in units of the data's standard deviation.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from timing import p50, row

from mmcore import toy2d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="training runs per timing (median reported)")
    ap.add_argument("--points", type=int, default=1000, help="points per data cloud")
    ap.add_argument("--samples", type=int, default=500, help="samples per reverse run")
    args = ap.parse_args()
    torch.set_num_threads(1)  # the tab's budget is set for one thread; more only adds overhead at this model size
    cfg = toy2d.Toy2DConfig()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread, {os.cpu_count()} cores on the machine")
    print(f"config: {cfg}")
    toy2d.make_scheduler(cfg)  # the first call imports diffusers (seconds), which no training run should be charged

    data = toy2d.make_points("spiral", args.points, seed=0)
    box = {}

    def train_once():
        box["model"], box["losses"] = toy2d.train_model(data, cfg, seed=0)

    print(row(f"train, default config ({cfg.steps} steps x {cfg.batch}), spiral",
              p50(train_once, repeats=args.repeats, warmup=0), target_ms=10_000))
    model = box["model"]
    print(row(f"sample_paths: {args.samples} points, T = {cfg.T} scheduler.step calls",
              p50(lambda: toy2d.sample_paths(model, n=args.samples), repeats=5, warmup=1), target_ms=1000))
    print(row(f"forward_paths: {args.samples} points, T = {cfg.T} chain steps",
              p50(lambda: toy2d.forward_paths(data, n=args.samples), repeats=5, warmup=1)))
    paths = toy2d.sample_paths(model, n=args.samples)
    ts = iter(range(10_000))
    print(row("paths_figure at a new t (figure + JSON)",
              p50(lambda: toy2d.paths_figure(data, paths, next(ts) % (cfg.T + 1)).to_json(), repeats=10, warmup=1),
              target_ms=100))
    kb = len(toy2d.paths_figure(data, paths, cfg.T // 2).to_json()) / 1024
    print(f"{'paths_figure JSON at t = T/2':<58} {kb:8.1f} kB")

    print()
    print(f"{'preset':<16} {'train s':>8} {'final loss':>10} {'samples':>8} {'noise':>8} {'fresh':>8} "
          f"{'noise/samples':>14}")
    for preset in toy2d.PRESETS:
        data = toy2d.make_points(preset, args.points, seed=0)
        start = time.perf_counter()
        model, losses = toy2d.train_model(data, cfg, seed=0)
        seconds = time.perf_counter() - start
        samples = toy2d.sample_paths(model, n=args.samples, seed=1)[0]
        noise = np.random.default_rng(1).standard_normal((args.samples, 2)).astype(np.float32)
        fresh = toy2d.make_points(preset, args.samples, seed=1)  # the shape's own spread, for scale
        q_s, q_n, q_d = (toy2d.sample_quality(x, data) for x in (samples, noise, fresh))
        print(f"{preset:<16} {seconds:8.2f} {losses[-1]:10.3f} {q_s:8.3f} {q_n:8.3f} {q_d:8.3f} {q_n / q_s:13.1f}x")


if __name__ == "__main__":
    main()
