"""Timing helpers for the bench scripts: warm up, repeat, report the median (p50) and the spread."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def p50(fn: Callable[[], object], repeats: int = 20, warmup: int = 2, sync: Callable[[], None] | None = None
        ) -> tuple[float, float, float]:
    """Run `fn` warmup + repeats times; returns (median, min, max) in milliseconds of the timed repeats."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times), max(times)


def row(name: str, stats: tuple[float, float, float], target_ms: float | None = None) -> str:
    med, lo, hi = stats
    verdict = "" if target_ms is None else f"  target ≤ {target_ms:g} ms: {'PASS' if med <= target_ms else 'FAIL'}"
    return f"{name:<58} p50 {med:8.1f} ms   (min {lo:.1f}, max {hi:.1f}){verdict}"
