"""Startup benchmark: how long until `python app.py` answers HTTP 200, against the cost of its bare imports.

    python bench/startup.py [--runs 5] [--port-base 7900]

After one untimed import (to warm the page cache), for each run, interleaved so that both numbers see the same
machine load (and alternating which goes first, so neither always gets the warmer cache):

* floor: wall seconds of a fresh `python -c "import gradio, torch"` subprocess. The app cannot start faster than it
  can import its two heavy dependencies, so this is the floor any startup work sits on, and it moves with the
  machine's load just as the app does. Comparing against it (rather than against an absolute number of seconds)
  makes the result meaningful on a busy or slow machine.
* app: wall seconds from just before `Popen(python app.py --port P)` to the first HTTP 200 on `http://127.0.0.1:P/`.
  Models load in a background thread after the server is up, so the child's peak RSS (VmHWM from /proc) is read
  both at the first 200 and about 3 s later.

The script prints numbers only: per-run times, medians, the ratio median(app) / median(floor) against the target
(≤ 1.5×) and the median peak RSS. It exits 1 only when the app fails to start or does not answer within 120 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.5
START_TIMEOUT_S = 120.0
POLL_TIMEOUT_S = 0.5
POLL_EVERY_S = 0.05
RSS_SETTLE_S = 3.0
STOP_TIMEOUT_S = 10.0
TAIL_LINES = 40
# Bypass any http(s)_proxy from the environment: we only ever talk to 127.0.0.1.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class AppStartError(RuntimeError):
    """The app exited early or did not answer in time; the message carries its output's tail."""


@dataclass
class AppRun:
    seconds: float
    rss_at_200_kb: int | None
    rss_later_kb: int | None


def child_env(temp_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=temp_dir)
    return env


def free_port(preferred: int) -> int:
    """`preferred` if it can be bound on 127.0.0.1, else one the OS picks."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def vm_hwm_kb(pid: int) -> int | None:
    """Peak resident set size of `pid` in kB, or None if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def answers_200(url: str) -> bool:
    try:
        with OPENER.open(url, timeout=POLL_TIMEOUT_S) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def tail(log: IO[bytes], lines: int = TAIL_LINES) -> str:
    log.flush()
    log.seek(0)
    text = log.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole process group, wait, then SIGKILL it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def time_floor(env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gradio, torch"], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def time_app(port: int, env: dict[str, str]) -> AppRun:
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while True:
                if answers_200(url):
                    seconds = time.perf_counter() - t0
                    break
                if proc.poll() is not None:
                    raise AppStartError(f"app exited with code {proc.returncode} before answering:\n{tail(log)}")
                if time.perf_counter() - t0 > START_TIMEOUT_S:
                    raise AppStartError(f"app did not answer 200 within {START_TIMEOUT_S:.0f} s:\n{tail(log)}")
                time.sleep(POLL_EVERY_S)
            rss_at_200 = vm_hwm_kb(proc.pid)
            time.sleep(RSS_SETTLE_S)
            rss_later = vm_hwm_kb(proc.pid)
            if proc.poll() is not None:
                print(f"  warning: app exited (code {proc.returncode}) within {RSS_SETTLE_S:.0f} s of answering:\n"
                      f"{tail(log)}", file=sys.stderr)
        finally:
            stop(proc)
    return AppRun(seconds, rss_at_200, rss_later)


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def mb(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.0f}"


def median_kb(values: list[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return int(statistics.median(present)) if present else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="number of interleaved floor/app runs (default 5)")
    ap.add_argument("--port-base", type=int, default=7900, help="run i tries port PORT_BASE+i first (default 7900)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"python {platform.python_version()}, torch {version('torch')}, gradio {version('gradio')}")
    print(f"repo: {REPO}")
    print()

    floors: list[float] = []
    apps: list[AppRun] = []
    header = f"{'run':>3}  {'floor s':>8}  {'app s':>8}  {'ratio':>6}  {'RSS@200 MB':>10}  {'RSS+3s MB':>9}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as temp_dir:
        env = child_env(temp_dir)
        time_floor(env)  # untimed warm-up: the first import after a while pays for a cold page cache
        for i in range(args.runs):
            floor_first = i % 2 == 0
            if floor_first:
                floor = time_floor(env)
            try:
                app = time_app(free_port(args.port_base + i), env)
            except AppStartError as exc:
                print(f"\nrun {i + 1}: {exc}", file=sys.stderr)
                return 1
            if not floor_first:
                floor = time_floor(env)
            floors.append(floor)
            apps.append(app)
            print(f"{i + 1:>3}  {floor:>8.2f}  {app.seconds:>8.2f}  {app.seconds / floor:>5.2f}×  "
                  f"{mb(app.rss_at_200_kb):>10}  {mb(app.rss_later_kb):>9}", flush=True)

    med_floor = statistics.median(floors)
    med_app = statistics.median(a.seconds for a in apps)
    ratio = med_app / med_floor
    print("-" * len(header))
    print(f"{'med':>3}  {med_floor:>8.2f}  {med_app:>8.2f}  {ratio:>5.2f}×  "
          f"{mb(median_kb([a.rss_at_200_kb for a in apps])):>10}  {mb(median_kb([a.rss_later_kb for a in apps])):>9}")
    print()
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(f"startup ratio median(app)/median(floor) = {ratio:.2f}×  (target ≤ {TARGET_RATIO}×)  {verdict}")
    print(f"peak RSS 3 s after first 200 (median): {mb(median_kb([a.rss_later_kb for a in apps]))} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
