"""Every number in one table: handler time of each tab's main actions, start-up against the import floor, memory with
all bundled models loaded, and the classroom load test.

    python bench/run_all.py                                    # all of it: 40 clients for 5 minutes at the end
    python bench/run_all.py --repeats 5 --startup-runs 1 --load-clients 4 --load-seconds 20   # a short run
    python bench/run_all.py --browser                          # also click -> rendered in Chromium

1. Handlers: each action of bench/load.py is called in this process, as Gradio would call it (the values a student
   would send, the controls' defaults for the rest), once to load its model, then --repeats times: p50 and p95.
2. Start-up: bench/startup.py's interleaved runs of `python app.py` to HTTP 200 against `import gradio, torch`.
3. Memory: the server's RSS once every action has been called once (every bundled model loaded), and its peak under
   the load test.
4. Load: bench/load.py with --load-clients, --load-seconds and --load-warm-room.
5. With --browser: bench/browser_latency.py, as it prints.
"""

from __future__ import annotations

import argparse
import inspect
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import load
import startup

sys.path.insert(0, str(startup.REPO))


def _plain(value):
    """A gradio_client value as the handler receives it: a file -> its path, a gallery item -> (path, caption)."""
    if isinstance(value, dict) and "image" in value:
        return _plain(value["image"]), value.get("caption")
    if isinstance(value, dict) and "path" in value:
        return value["path"]
    return [_plain(v) for v in value] if isinstance(value, list) else value


def handler_times(repeats: int, tier: str = "bundled") -> list[tuple[str, float, float, bool]]:
    """(action, p50 ms, p95 ms, generative) of each load-test action's handler, called directly."""
    import app
    from demos import common

    common.ANSWERS.ttl_s = 0  # every call computes: identical calls in a row would otherwise share one answer
    demo = app.build()
    by_name = {fn.api_name: fn for fn in demo.fns.values()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-handlers-") as folder:
        inputs = load.Inputs(Path(folder))
        for action in load.ACTIONS:
            fn = by_name[action.api_name]
            names = [p for p in inspect.signature(fn.fn).parameters if p != "progress"]
            kwargs = {k: _plain(v) for k, v in action.inputs(random.Random(0), inputs, tier).items()}
            args = [kwargs.get(name, block.value) for name, block in zip(names, fn.inputs)]

            def call(fn=fn, args=args):
                out = fn.fn(*args)
                return list(out) if inspect.isgenerator(out) else out

            try:
                call()  # loads the model
            except Exception as exc:
                print(f"  {action.api_name}: {type(exc).__name__}: {str(exc)[:100]}", file=sys.stderr)
                continue
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                call()
                times.append((time.perf_counter() - t0) * 1000)
            rows.append((action.api_name, statistics.median(times), load._p95(times), action.generative))
    return rows


def startup_times(runs: int) -> tuple[float, float]:
    """(median seconds of `python app.py` to HTTP 200, median seconds of `import gradio, torch`), interleaved."""
    floors, apps = [], []
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        env = startup.child_env(folder)
        startup.time_floor(env)  # warms the page cache
        for i in range(runs):
            floors.append(startup.time_floor(env))
            apps.append(startup.time_app(startup.free_port(7900 + i), env).seconds)
    return statistics.median(apps), statistics.median(floors)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20, help="timed calls of each handler (default 20)")
    ap.add_argument("--startup-runs", type=int, default=3, help="start-up runs (default 3)")
    ap.add_argument("--load-clients", type=int, default=40)
    ap.add_argument("--load-seconds", type=float, default=300)
    ap.add_argument("--load-warm-room", type=float, default=60, help="the room's warm-up before the soak (default 60)")
    ap.add_argument("--browser", action="store_true", help="also run bench/browser_latency.py")
    args = ap.parse_args()

    print(f"machine: {os.cpu_count()} CPUs, bundled tier", flush=True)
    handlers = handler_times(args.repeats)
    app_s, floor_s = startup_times(args.startup_runs)
    result = load.run(args.load_clients, args.load_seconds, warm_room=args.load_warm_room)

    ratio = app_s / floor_s
    print(f"\n{'what':<44} {'p50':>10} {'p95':>10}  note")
    print("-" * 90)
    for name, p50, p95, generative in handlers:
        print(f"{'handler: ' + name:<44} {p50:>7.1f} ms {p95:>7.1f} ms  {'generative' if generative else ''}")
    print(f"{'start-up to HTTP 200 (median)':<44} {app_s:>8.2f} s {'':>10}  import floor {floor_s:.2f} s: "
          f"{ratio:.2f}× (target ≤ {startup.TARGET_RATIO}×) {'PASS' if ratio <= startup.TARGET_RATIO else 'FAIL'}")
    print(f"{'server RSS, every bundled model loaded':<44} {result.rss_warm_mb:>7,.0f} MB {'':>10}  "
          f"peak under load {result.rss_peak_mb:,.0f} MB")
    print(f"{'load test':<44} {'':>10} {'':>10}  {result.summary()}")
    print("\n" + result.report())
    if args.browser:
        print("\nclick -> rendered, headless Chromium:", flush=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name("browser_latency.py"))], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
