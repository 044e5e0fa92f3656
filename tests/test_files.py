"""File access: only assets/ and the app's own outputs are served, uploads over the limit are refused before they are
written, no pickle is ever loaded and no remote code is ever trusted, and a clean stop leaves no file behind.

The server runs as `python app.py` in a child process with its own temporary folders, so that what it leaves behind
can be counted exactly."""

from __future__ import annotations

import ast
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "app.py", *(p for d in ("mmcore", "demos", "bench") for p in sorted((ROOT / d).rglob("*.py")))]
PICKLE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


# ------------------------------------------------------------------------------------------------ no pickle, anywhere

def unsafe_loads(source: str, name: str = "<source>") -> list[str]:
    """Every place in `source` that could unpickle or run downloaded code, as 'name:line: what'."""
    found = [f"{name}:{i}: trust_remote_code" for i, line in enumerate(source.splitlines(), 1)
             if "trust_remote_code" in line]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{name}:{node.lineno}: imports {m}" for m in modules if m.split(".")[0] in PICKLE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        kwargs = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if func.endswith(("torch.load", "torch.hub.load")) and kwargs.get("weights_only") != "True":
            found.append(f"{name}:{node.lineno}: {func} without weights_only=True")
        if func.endswith(".load") and kwargs.get("allow_pickle") == "True":
            found.append(f"{name}:{node.lineno}: {func} with allow_pickle=True")
        if kwargs.get("use_safetensors") == "False":
            found.append(f"{name}:{node.lineno}: {func} with use_safetensors=False")
    return found


def test_the_scan_finds_each_way_to_load_a_pickle():
    planted = ("import pickle\nfrom joblib import load\nimport torch\nimport numpy as np\n"
               "torch.load('w.pt')\ntorch.load('w.pt', weights_only=False)\ntorch.load('w.pt', weights_only=True)\n"
               "np.load('a.npy', allow_pickle=True)\nM.from_pretrained('x', use_safetensors=False)\n"
               "M.from_pretrained('x', trust_remote_code=True)\n")
    assert [f.split(": ", 1)[1] for f in unsafe_loads(planted)] == [
        "trust_remote_code", "imports pickle", "imports joblib", "torch.load without weights_only=True",
        "torch.load without weights_only=True", "np.load with allow_pickle=True",
        "M.from_pretrained with use_safetensors=False"]


def test_no_pickle_is_loaded_and_no_remote_code_is_trusted_anywhere():
    assert len(SOURCES) > 20
    found = [f for path in SOURCES for f in unsafe_loads(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert not found, "\n".join(found)


# ------------------------------------------------------------------------------------------------------ the server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _files(*folders: Path) -> set[Path]:
    return {p for folder in folders for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(port, process, its Gradio temp folder, its TMPDIR): `python app.py` with folders of its own."""
    base = tmp_path_factory.mktemp("server")
    gradio_tmp, tmp = base / "gradio", base / "tmp"
    gradio_tmp.mkdir()
    tmp.mkdir()
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "MMLAB_TIER": "bundled",
           "GRADIO_TEMP_DIR": str(gradio_tmp), "TMPDIR": str(tmp)}
    with open(base / "log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while _get(port, "/")[0] != 200:
        assert proc.poll() is None and time.monotonic() < deadline, (base / "log").read_text()[-3000:]
        time.sleep(0.3)
    yield port, proc, gradio_tmp, tmp
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _get(port: int, target: str) -> tuple[int, bytes]:
    """(status, body) of GET `target`, sent exactly as written (no client normalises its dots or escapes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


@pytest.mark.slow
def test_only_assets_are_served(server):
    port = server[0]
    assets, sample = ROOT / "assets", ROOT / "assets" / "images" / "chelsea.jpg"
    assert _get(port, f"/gradio_api/file={sample}")[0] == 200
    assert _get(port, "/gradio_api/file=assets/images/chelsea.jpg")[0] == 200
    refused = [
        "/etc/passwd", ROOT / "app.py", ROOT / "mmcore" / "models.py", ROOT / "README.md", ROOT / ".git" / "config",
        ROOT / "tests" / "conftest.py", "app.py", "mmcore/settings.py",  # relative to the server's folder
        f"{assets}/../app.py", f"{assets}/images/../../mmcore/models.py", "assets/../app.py",
        f"{assets}/%2e%2e/app.py", f"{assets}/..%2fapp.py", f"{assets}/%2e%2e%2fapp.py", "%2fetc%2fpasswd",
        f"{assets}/%252e%252e/app.py", f"{assets}/images/..%5c..%5capp.py", f"{assets}/../../../../../etc/passwd",
    ]
    for path in refused:
        status, body = _get(port, f"/gradio_api/file={path}")
        assert status in (403, 404), (path, status)
        assert b"import" not in body and b"root:" not in body


@pytest.mark.slow
def test_symlinks_out_of_served_folders_are_refused(server):
    port, _, gradio_tmp, _ = server
    (gradio_tmp / "notes.txt").write_text("served")  # the app's own temp folder is served...
    assert _get(port, f"/gradio_api/file={gradio_tmp / 'notes.txt'}") == (200, b"served")
    for target in (ROOT / "app.py", Path("/etc/passwd"), ROOT / ".git"):  # ...but nothing a link there points to
        link = gradio_tmp / f"link-to-{target.name}"
        link.symlink_to(target)
        assert _get(port, f"/gradio_api/file={link}")[0] in (403, 404), target
        assert _get(port, f"/gradio_api/file={link}/config")[0] in (403, 404), target
        link.unlink()
    (gradio_tmp / "notes.txt").unlink()


@pytest.mark.slow
def test_a_file_path_sent_to_the_api_is_never_read(server):
    """The API takes files the client uploaded, never a path on the server it names."""
    port = server[0]
    for path in ("/etc/passwd", str(ROOT / "app.py"), str(ROOT / "assets" / "images" / "chelsea.jpg")):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, 16, 224, "bundled"]}
        conn.request("POST", "/gradio_api/call/vit_patches", json.dumps(body), {"Content-Type": "application/json"})
        event = json.loads(conn.getresponse().read())["event_id"]
        conn.request("GET", f"/gradio_api/call/vit_patches/{event}")
        stream = conn.getresponse().read().decode()
        conn.close()
        assert stream.startswith("event: error") and "patches" not in stream, (path, stream[:300])


def _start_upload(port: int, announced: int, filename: str) -> socket.socket:
    """A connection to the upload route that has announced a multipart body of `announced` bytes and sent only its
    headers and the file part's own header; the caller sends (or withholds) the rest."""
    boundary = "lab-boundary"
    part = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(f"POST /gradio_api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {announced}\r\n"
              f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode() + part)
    return s


@pytest.mark.slow
def test_an_upload_over_the_limit_is_refused_before_it_is_written(server):
    """A 64 MB upload is announced and 12 MB sent: the server answers 413 without waiting for the rest, and keeps
    no part of it."""
    port, _, gradio_tmp, tmp = server
    before = _files(gradio_tmp, tmp)
    with _start_upload(port, 64 << 20, "big.png") as s:
        chunk = b"\x89PNG" + bytes(1 << 20)
        try:
            for _ in range(12):
                s.sendall(chunk)
        except OSError:
            pass  # the server may close the connection while we still send: it has refused already
        t0, answer = time.perf_counter(), b""
        while b"bytes." not in answer and (data := s.recv(4096)):  # the status line, then the sentence
            answer += data
    assert answer.startswith(b"HTTP/1.1 413") and b"maximum allowed size of 10485760 bytes." in answer, answer
    assert time.perf_counter() - t0 < 10
    assert _files(gradio_tmp, tmp) == before, "a partial upload was kept"


@pytest.mark.slow
def test_an_upload_abandoned_mid_body_leaves_nothing_behind(server):
    """A 4 MB upload (under the limit) is announced, 1 MB sent, and the connection closed: the partial file goes."""
    port, _, gradio_tmp, tmp = server
    before = _files(gradio_tmp, tmp)
    with _start_upload(port, 4 << 20, "half.png") as s:
        s.sendall(b"\x89PNG" + bytes(1 << 20))
        time.sleep(1.0)  # the server has written the first megabyte to a temporary file
    deadline = time.monotonic() + 10
    while _files(gradio_tmp, tmp) != before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _files(gradio_tmp, tmp) == before, "the partial upload was kept"


@pytest.mark.slow
def test_a_clean_stop_deletes_every_file_the_requests_made(server, tmp_path):
    """SIGTERM, as a Space or a terminal sends it, closes the server cleanly: uploads and outputs are deleted."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from PIL import Image

    port, proc, gradio_tmp, tmp = server
    before = _files(gradio_tmp, tmp)
    Image.new("RGB", (96, 64), "teal").save(tmp_path / "upload.png")
    client = Client(f"http://127.0.0.1:{port}", verbose=False, download_files=str(tmp_path / "downloads"))
    deadline = time.monotonic() + 120
    requests = [dict(image=handle_file(str(tmp_path / "upload.png")), tier="bundled", api_name="/vit_patches"),
                dict(prompt="a teal star", num_inference_steps=2, seed=7, tier="bundled",
                     api_name="/diffusion_generate")]  # a streamed final image: Gradio does not track its file
    for request in requests:
        while True:  # the models load in the background after start-up
            try:
                client.predict(**request)
                break
            except AppError as err:
                assert "still loading" in str(err) and time.monotonic() < deadline, err
                time.sleep(1)
    client.close()
    made = _files(gradio_tmp, tmp) - before
    assert any(p.name == "upload.png" for p in made) and len(made) >= 4, made
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert not made & _files(gradio_tmp, tmp), "files left behind"
    assert not [p for p in _files(gradio_tmp, tmp) if p.name.startswith(("tmp", "."))], "partial or staging files"
