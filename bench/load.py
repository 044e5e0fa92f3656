"""A classroom at once: N students clicking the tabs' main actions, measured from outside the app.

    python bench/load.py                                       # 40 clients for 5 minutes: the soak
    python bench/load.py --clients 4 --seconds 20              # a short run
    python bench/load.py --actions vit_patches blip_caption    # some actions only

Starts `python app.py --tier bundled` on loopback with temporary folders of its own, calls every action once (the
warm-up), then runs --clients gradio_client clients for --warm-room seconds (the room's warm-up: every session and
worker thread the room needs comes into being) and --seconds more (the soak). Each student clicks one of the actions
below, waits
for the answer, thinks 3-5 s (--think) and clicks again; every --burst-every seconds all of them send the same request
within one second, as a room does when the lecturer says "now click Caption" (identical requests at once are what
broke Gradio's image cache; see app.atomic_image_cache). Half the students download every returned file and check
that it opens whole. Each upload is sent anew with its request (a browser would send it once), so this is a little
harder on the server than a real room.

It prints, per action: requests, failures by kind, p50 and p95 of the time a student waits (click to answer,
downloads included; the warm-up room's requests count too); the server's RSS after the first warm-up (one client),
after the room's warm-up, at its peak and at the end; whether a fresh client is still
served afterwards; and what the requests left in the server's temporary folders after a clean stop (SIGTERM).

Targets (40 clients, 3-5 s think time, bundled tier, a 5-minute soak): no failure, p95 <= 3 s for every action that
is not generative, RSS growth over the soak (from the end of the room's warm-up to the end) <= 5 %, no file left
behind. The growth from the one-client warm-up is printed beside it: most of it is the first minute's new sessions and
threads, each thread with its own malloc arena, which a leak test should not count and a host should plan for.
"""

from __future__ import annotations

import argparse
import os
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import REPO, answers_200, child_env, free_port, stop

sys.path.insert(0, str(REPO))

# The students' clients run on the server's cores here (on their own laptops in a room), so what they spend is taken
# from the server: gradio_client opens a new HTTP client for every request and download, and each one loaded the
# system's CA certificates again (~25 ms of CPU, for a plain-http address). One TLS context serves every client: it
# goes as `ssl_verify` to each of gradio_client's httpx calls, and httpx takes a context as it is.
TLS = ssl.create_default_context()
TARGET_P95_S = 3.0
TARGET_GROWTH = 0.05
START_TIMEOUT_S = 180.0
IMAGES = (".png", ".webp", ".jpg", ".jpeg", ".gif")
QUESTIONS = ("what color is the circle?", "how many objects are there?", "what shape is the red object?",
             "is there a blue square?")
PROMPTS = ("a red circle", "a blue star", "a green square and a yellow triangle", "a purple hexagon")


class Inputs:
    """What students send: Shapes scenes (with their captions) and one sample photo, as gradio_client files."""

    def __init__(self, folder: Path, n: int = 8) -> None:
        from gradio_client import handle_file
        from PIL import Image

        from mmcore import shapes

        self.files, self.captions = [], []
        for i in range(n):
            scene = shapes.sample_scene(shapes.split_seed("test", i))
            path = folder / f"scene-{i}.png"
            Image.fromarray(shapes.render(scene, 256)).save(path)
            self.files.append(handle_file(str(path)))
            self.captions.append(shapes.caption(scene))
        self.files.append(handle_file(str(REPO / "assets" / "images" / "chelsea.jpg")))

    def image(self, rng: random.Random) -> dict:
        return rng.choice(self.files)

    def gallery(self, rng: random.Random, n: int = 4) -> tuple[list[dict], str]:
        """(gallery, its captions one per line) for the CLIP matrix."""
        picks = rng.sample(range(len(self.captions)), n)
        return [{"image": self.files[i], "caption": None} for i in picks], "\n".join(self.captions[i] for i in picks)


@dataclass(frozen=True)
class Action:
    api_name: str
    inputs: Callable[[random.Random, Inputs, str], dict]  # (rng, inputs, tier) -> keyword arguments
    generative: bool = False  # streams a generation: held to no latency target


def _matrix(r: random.Random, x: Inputs, tier: str) -> dict:
    gallery, texts = x.gallery(r)
    return dict(gallery=gallery, texts=texts, tier=tier)


ACTIONS = (
    Action("vit_patches", lambda r, x, t: dict(image=x.image(r), patch_size=r.choice([8, 16, 32]), tier=t)),
    Action("vit_attention", lambda r, x, t: dict(image=x.image(r), layer=r.randrange(4), tier=t)),
    Action("clip_matrix", _matrix),
    Action("clip_zero_shot", lambda r, x, t: dict(image=x.image(r), tier=t)),
    Action("blip_caption", lambda r, x, t: dict(image=x.image(r), prompt="", tier=t)),
    Action("blip_vqa", lambda r, x, t: dict(image=x.image(r), question=r.choice(QUESTIONS), tier=t)),
    Action("blip_match", lambda r, x, t: dict(image=x.image(r), tier=t)),
    Action("blip2_read", lambda r, x, t: dict(image=x.image(r), tier="bundled")),
    Action("diffusion_forward", lambda r, x, t: dict(image=x.image(r), t=r.randrange(1, 1000))),
    Action("diffusion_latent", lambda r, x, t: dict(image=x.image(r), t=r.randrange(1, 1000), tier=t)),
    Action("diffusion_generate", lambda r, x, t: dict(prompt=r.choice(PROMPTS), seed=r.randrange(4), tier=t),
           generative=True),
    Action("diffusion_playground_train", lambda r, x, t: dict(source=r.choice(["spiral", "rings"]), sketch=None,
                                                              seed=r.randrange(4)), generative=True),
)


@dataclass
class Sample:
    action: str
    seconds: float
    failure: str | None  # None: served and (when downloaded) every file whole
    burst: bool


@dataclass
class LoadResult:
    """Everything the run measured; `report()` prints it."""

    clients: int
    seconds: float
    samples: list[Sample]
    generative: set[str]
    excluded: dict[str, str]  # action -> why it was left out (it failed at warm-up)
    rss_warm_mb: float  # after every action was called once, by one client
    rss_room_mb: float  # after the room's warm-up: the soak's baseline
    rss_peak_mb: float
    rss_end_mb: float
    rss_minutes: list[float]  # server RSS at the end of each minute of the run, MB
    cpu_server_s: float  # CPU seconds the server used during the run
    cpu_clients_s: float  # CPU seconds this process (the students) used during the run
    fresh: str  # "served in 0.4 s" or the failure
    fresh_ok: bool
    left_behind: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    server_errors: str = ""  # the end of the server's log when something failed

    warm_room_s: float = 0.0

    @property
    def growth(self) -> float:
        """RSS growth over the soak: from the end of the room's warm-up to the end (the target)."""
        return self.rss_end_mb / self.rss_room_mb - 1

    @property
    def growth_from_one_client(self) -> float:
        """RSS growth from the one-client warm-up to the end: the room's sessions and threads included."""
        return self.rss_end_mb / self.rss_warm_mb - 1

    def failures(self) -> int:
        return sum(s.failure is not None for s in self.samples)

    def worst_p95(self) -> float:
        """The largest p95 among the non-generative actions, in seconds."""
        return max((_p95([s.seconds for s in self.samples if s.action == a and s.failure is None])
                    for a in {s.action for s in self.samples} - self.generative), default=0.0)

    def passed(self) -> bool:
        return (not self.excluded and self.failures() == 0 and self.worst_p95() <= TARGET_P95_S
                and self.growth <= TARGET_GROWTH and self.fresh_ok and not self.left_behind and not self.partial)

    def report(self) -> str:
        lines = [f"{self.clients} clients for {self.warm_room_s:.0f} s (warm-up) + {self.seconds:.0f} s (soak), "
                 f"{len(self.samples)} requests "
                 f"({sum(s.burst for s in self.samples)} in bursts)", "",
                 f"{'action':<28} {'requests':>8} {'failed':>6} {'p50 s':>7} {'p95 s':>7} {'max s':>7}  target",
                 "-" * 80]
        for action in sorted({s.action for s in self.samples}):
            mine = [s for s in self.samples if s.action == action]
            ok = [s.seconds for s in mine if s.failure is None] or [float("nan")]
            failed = [s.failure for s in mine if s.failure is not None]
            p95 = _p95(ok)
            target = "generative" if action in self.generative else (
                f"p95 ≤ {TARGET_P95_S:g} s {'PASS' if p95 <= TARGET_P95_S and not failed else 'FAIL'}")
            lines.append(f"{action:<28} {len(mine):>8} {len(failed):>6} {statistics.median(ok):>7.2f} {p95:>7.2f} "
                         f"{max(ok):>7.2f}  {target}")
            lines += [f"{'':<30}{n} × {kind}" for kind, n in Counter(failed).most_common()]
        lines += [f"{action:<28} excluded: failed at warm-up ({why})" for action, why in self.excluded.items()]
        verdict = "PASS" if self.growth <= TARGET_GROWTH else "FAIL"
        per = max(1, len(self.samples))
        lines += ["", f"server RSS: {self.rss_warm_mb:,.0f} MB after one client's warm-up, {self.rss_room_mb:,.0f} MB "
                      f"after the room's, {self.rss_peak_mb:,.0f} MB at peak, {self.rss_end_mb:,.0f} MB at the end: "
                      f"growth over the soak {self.growth:+.1%} (target ≤ {TARGET_GROWTH:.0%}) {verdict}; "
                      f"from one client's warm-up {self.growth_from_one_client:+.1%}",
                  "server RSS at the end of each minute: " + ", ".join(f"{m:,.0f}" for m in self.rss_minutes)
                  + " MB",
                  f"CPU per request: server {1000 * self.cpu_server_s / per:.0f} ms, the students' clients "
                  f"{1000 * self.cpu_clients_s / per:.0f} ms ({os.cpu_count()} CPUs, shared by both)",
                  f"a fresh client afterwards: {self.fresh} {'PASS' if self.fresh_ok else 'FAIL'}",
                  f"files the requests left after a clean stop: {len(self.left_behind)}, partial or staging files: "
                  f"{len(self.partial)} {'PASS' if not self.left_behind and not self.partial else 'FAIL'}"]
        lines += [f"  left: {p}" for p in (self.left_behind + self.partial)[:10]]
        if self.server_errors:
            lines += ["", "the server's log ends:", self.server_errors]
        lines.append(f"overall: {'PASS' if self.passed() else 'FAIL'}")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line for bench/run_all.py."""
        return (f"{self.clients} clients × {self.warm_room_s:.0f} + {self.seconds:.0f} s: {len(self.samples)} "
                f"requests, {self.failures()} failed"
                f"{f', {len(self.excluded)} actions excluded' if self.excluded else ''}; worst non-generative p95 "
                f"{self.worst_p95():.2f} s; RSS {self.growth:+.1%} over the soak "
                f"({self.growth_from_one_client:+.1%} from one client's warm-up); "
                f"{len(self.left_behind) + len(self.partial)} files left; {'PASS' if self.passed() else 'FAIL'}")


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def rss_mb(pid: int) -> float:
    """Resident set size of `pid` now, in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds `pid` has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _files(*folders: Path) -> set[Path]:
    return {p for folder in folders for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def check_files(result, folder: Path) -> None:
    """Raise ValueError unless every file of `result` under `folder` is non-empty and, if an image, whole."""
    from PIL import Image

    values = list(result) if isinstance(result, (tuple, list)) else [result]
    for value in values:
        if isinstance(value, (tuple, list, dict)):
            check_files(list(value.values()) if isinstance(value, dict) else value, folder)
        elif isinstance(value, str) and value.startswith(str(folder)):
            path = Path(value)
            if not path.is_file() or path.stat().st_size == 0:
                raise ValueError(f"empty or missing file {path.name}")
            if path.suffix.lower() in IMAGES:
                with Image.open(path) as im:
                    im.load()  # raises on a truncated file


def failure_kind(exc: BaseException) -> str:
    """A short name for a failure, to count them by kind."""
    text = str(exc).split("\n")[0][:70]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Server:
    """`python app.py` on loopback with temporary folders of its own."""

    def __init__(self, folder: Path, tier: str) -> None:
        self.gradio_tmp, self.tmp = folder / "gradio", folder / "tmp"
        self.gradio_tmp.mkdir()
        self.tmp.mkdir()
        self.port = free_port(7990)
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**child_env(str(self.gradio_tmp)), "TMPDIR": str(self.tmp), "MMLAB_TIER": tier}
        self.log = open(folder / "server.log", "wb")  # noqa: SIM115 (open while the server runs)
        self.proc = subprocess.Popen([sys.executable, "app.py", "--port", str(self.port)], cwd=REPO, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers_200(self.url + "/"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start; see {folder / 'server.log'}")
            time.sleep(0.2)

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def files(self) -> set[Path]:
        return _files(self.gradio_tmp, self.tmp)

    def stop(self) -> None:
        stop(self.proc)
        self.log.close()


def _call(client, action: Action, kwargs: dict, folder: Path | None, timeout: float) -> str | None:
    """Send one request and wait for its answer; the failure's kind, or None."""
    try:
        result = client.submit(api_name=f"/{action.api_name}", **kwargs).result(timeout=timeout)
        if folder is not None:
            check_files(result, folder)
    except Exception as exc:
        return failure_kind(exc)
    return None


def warm_up(url: str, actions: tuple[Action, ...], inputs: Inputs, tier: str, folder: Path,
            timeout: float = 180.0) -> dict[str, str]:
    """Call every action until it answers (models load in the background): {action: why} for those that fail."""
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=str(folder), ssl_verify=TLS)
    failed, rng = {}, random.Random(0)
    for action in actions:
        deadline = time.monotonic() + timeout
        while (why := _call(client, action, action.inputs(rng, inputs, tier), folder, timeout)) is not None:
            if "still loading" not in why or time.monotonic() > deadline:
                failed[action.api_name] = why
                break
            time.sleep(1)
    client.close()
    return failed


def run(clients: int = 40, seconds: float = 300, think: tuple[float, float] = (3.0, 5.0), burst_every: float = 30,
        tier: str = "bundled", actions: tuple[Action, ...] = ACTIONS, timeout: float = 120.0,
        warm_room: float = 60.0) -> LoadResult:
    """Start the app, warm it up (each action once, then the room for `warm_room` seconds), run the room for
    `seconds` more, stop the app cleanly; what was measured."""
    from gradio_client import Client

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        folder = Path(tmp)
        (folder / "inputs").mkdir()
        inputs = Inputs(folder / "inputs")
        server = Server(folder, tier)
        try:
            initial = server.files()  # the app's own: the pictures its page opens with
            excluded = warm_up(server.url, actions, inputs, tier, folder / "warm-up")
            live = tuple(a for a in actions if a.api_name not in excluded)
            rss_warm, cpu0, mine0 = server.rss_mb(), cpu_seconds(server.proc.pid), time.process_time()
            room = [Client(server.url, verbose=False, ssl_verify=TLS,
                           download_files=str(folder / f"s{i}") if i % 2 == 0 else False)
                    for i in range(clients)]
            samples, peak, minutes, lock = [], [rss_warm], [], threading.Lock()
            start = time.monotonic()
            end = start + warm_room + seconds
            room_rss = []  # the soak's baseline, read once the room's warm-up is over

            def student(i: int) -> None:
                rng, client = random.Random(i + 1), room[i]
                download = folder / f"s{i}" if i % 2 == 0 else None
                next_burst, k = start + burst_every, 0
                time.sleep(rng.uniform(0, think[1]))  # students do not all start at the same instant
                while time.monotonic() < end:
                    wake = time.monotonic() + rng.uniform(*think)
                    burst = burst_every > 0 and next_burst <= wake
                    if burst:  # everyone, the same request, within one second
                        time.sleep(max(0.0, next_burst - time.monotonic()) + rng.uniform(0, 1))
                        k, next_burst = k + 1, next_burst + burst_every
                        same = random.Random(10_000 + k)
                        action = live[k % len(live)]
                        kwargs = action.inputs(same, inputs, tier)
                    else:
                        time.sleep(max(0.0, wake - time.monotonic()))
                        action = rng.choice(live)
                        kwargs = action.inputs(rng, inputs, tier)
                    if time.monotonic() >= end:
                        break
                    t0 = time.monotonic()
                    failure = _call(client, action, kwargs, download, timeout)
                    with lock:
                        samples.append(Sample(action.api_name, time.monotonic() - t0, failure, burst))

            def monitor() -> None:
                while any(t.is_alive() for t in threads):
                    peak.append(server.rss_mb())
                    if not room_rss and time.monotonic() - start >= warm_room:
                        room_rss.append(peak[-1])
                    if time.monotonic() - start >= 60 * (len(minutes) + 1):
                        minutes.append(peak[-1])
                    time.sleep(1.0)

            threads = [threading.Thread(target=student, args=(i,), daemon=True) for i in range(clients)]
            for t in threads:
                t.start()
            watcher = threading.Thread(target=monitor, daemon=True)
            watcher.start()
            for t in threads:
                t.join()
            watcher.join()
            cpu_server, cpu_clients = cpu_seconds(server.proc.pid) - cpu0, time.process_time() - mine0
            for client in room:
                client.close()
            fresh_client = Client(server.url, verbose=False, download_files=str(folder / "fresh"),
                                  ssl_verify=TLS)
            t0 = time.monotonic()
            failure = _call(fresh_client, live[0], live[0].inputs(random.Random(0), inputs, tier), folder / "fresh",
                            timeout)
            fresh = failure or f"{live[0].api_name} served in {time.monotonic() - t0:.2f} s"
            fresh_client.close()
            rss_end = server.rss_mb()
            minutes.append(rss_end)
        finally:
            server.stop()
        after = server.files()
        log = (folder / "server.log").read_text(errors="replace").splitlines()
        errors = "\n".join(log[-40:]) if excluded or failure or any(s.failure for s in samples) else ""
    return LoadResult(clients, seconds, samples, {a.api_name for a in actions if a.generative}, excluded, rss_warm,
                      (room_rss or [rss_warm])[0], max(peak), rss_end, minutes, cpu_server, cpu_clients, fresh,
                      failure is None, warm_room_s=warm_room,
                      left_behind=sorted(str(p.relative_to(folder)) for p in after - initial),
                      partial=sorted(str(p.relative_to(folder)) for p in after if p.name.startswith(("tmp", "."))),
                      server_errors=errors)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=40, help="students clicking at once (default 40)")
    ap.add_argument("--seconds", type=float, default=300, help="length of the soak (default 300)")
    ap.add_argument("--warm-room", type=float, default=60, help="seconds the room runs before the soak, its RSS "
                                                                  "the soak's baseline (default 60)")
    ap.add_argument("--think", type=float, nargs=2, default=(3.0, 5.0), metavar=("MIN", "MAX"),
                    help="seconds a student waits between an answer and the next click (default 3 5)")
    ap.add_argument("--burst-every", type=float, default=30, help="seconds between bursts of identical requests "
                                                                  "(default 30; 0: none)")
    ap.add_argument("--tier", default="bundled", choices=("bundled", "auto", "pretrained"))
    ap.add_argument("--actions", nargs="+", choices=[a.api_name for a in ACTIONS], help="default: all")
    ap.add_argument("--timeout", type=float, default=120, help="seconds before a request counts as failed")
    args = ap.parse_args()
    if args.clients < 1 or args.seconds <= 0 or args.warm_room < 0 or not 0 <= args.think[0] <= args.think[1]:
        ap.error("--clients must be >= 1, --seconds > 0, --warm-room >= 0 and 0 <= MIN <= MAX")
    actions = tuple(a for a in ACTIONS if not args.actions or a.api_name in args.actions)
    print(f"machine: {os.cpu_count()} CPUs; {args.clients} clients, {args.seconds:g} s, think {args.think[0]:g}-"
          f"{args.think[1]:g} s, a burst every {args.burst_every:g} s, tier {args.tier}, {args.warm_room:g} s of "
          "room warm-up before the soak", flush=True)
    result = run(args.clients, args.seconds, tuple(args.think), args.burst_every, args.tier, actions, args.timeout,
                 args.warm_room)
    print(result.report())
    return 0 if result.passed() else 1


if __name__ == "__main__":
    sys.exit(main())
