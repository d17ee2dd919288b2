"""The service's limits against a real ``audioclf serve`` process on 127.0.0.1: a FLAC
that would decode to 230 M samples is refused from its header (memory stays flat), a
long /timeline cannot starve a 1-s /predict, slow clients are closed, and every bad
parameter is a 4xx."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.reporting.support import tiny_run

REQUEST_TIMEOUT = 3.0


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    audio_dir: Path

    def peak_rss_mb(self) -> float:
        """The server's peak resident memory so far (VmHWM), MiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    run = tiny_run(tmp_path_factory.getbasetemp())
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "audioclf.cli", "serve", str(run.checkpoint), "--port", str(port),
         "--request-timeout", str(REQUEST_TIMEOUT), "--max-batch", "16"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, "audioclf serve exited"
        assert time.monotonic() < deadline, "audioclf serve did not start"
        try:
            httpx.get(url + "/health", timeout=2)
            break
        except httpx.TransportError:
            time.sleep(0.2)
    try:
        yield Server(url, proc, tmp_path_factory.mktemp("limits-audio"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wav(seconds: float, rate: int = 16000, seed: int = 0) -> bytes:
    x = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_decoded_sample_bomb_is_refused_from_the_header(server: Server) -> None:
    # 600 s of silence at 384 kHz: ~840 kB of FLAC that decodes to 230 M samples (0.9 GB as float32)
    path = server.audio_dir / "bomb.flac"
    block = np.zeros(384_000 * 10, np.float32)
    with sf.SoundFile(path, "w", 384_000, 1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(60):
            f.write(block)
    assert path.stat().st_size < 2**20
    before = server.peak_rss_mb()
    with httpx.Client(base_url=server.url, timeout=60) as c:
        answers = [c.post("/predict", files={"file": ("bomb.flac", path.read_bytes())}) for _ in range(3)]
    for r in answers:
        assert r.status_code == 422, r.text
        assert "230400000 samples" in r.json()["detail"] and "at most 57600000" in r.json()["detail"]
    assert server.peak_rss_mb() - before < 150, (before, server.peak_rss_mb())


@pytest.mark.parametrize("hop", ["inf", "-inf", "nan", "0", "-1", "abc", "0.001"])
def test_every_bad_hop_is_a_4xx(server: Server, hop: str) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.post("/timeline", params={"hop": hop}, files={"file": ("a.wav", wav(2.0))})
    assert r.status_code == 422, r.text


@pytest.mark.parametrize(("path", "params"), [("/predict", {"top_k": "0"}), ("/predict", {"top_k": "nan"}),
                                              ("/timeline", {"max_classes": "0"}), ("/timeline", {"spectrogram": "maybe"})])
def test_other_bad_parameters_are_4xx(server: Server, path: str, params: dict[str, str]) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.post(path, params=params, files={"file": ("a.wav", wav(1.0))})
    assert r.status_code == 422, r.text


def test_a_long_timeline_does_not_starve_predict(server: Server) -> None:
    long = wav(600.0, seed=1)  # 10 minutes: 2,000 windows at hop 0.3 s
    short = wav(1.0, seed=2)
    done: dict[str, float] = {}

    def timeline() -> None:
        with httpx.Client(base_url=server.url, timeout=300) as c:
            r = c.post("/timeline", params={"hop": 0.3}, files={"file": ("long.wav", long)})
        assert r.status_code == 200, r.text
        done["timeline"] = time.monotonic()

    with httpx.Client(base_url=server.url, timeout=300) as c:
        before = c.get("/health").json()["batching"]["windows"]
        thread = threading.Thread(target=timeline)
        thread.start()
        # wait until the timeline is being scored: its windows show in the counters
        deadline = time.monotonic() + 120
        while c.get("/health").json()["batching"]["windows"] < before + 64:
            assert time.monotonic() < deadline and thread.is_alive(), "the timeline never started scoring"
            time.sleep(0.05)
        latencies = []
        for _ in range(3):
            t0 = time.monotonic()
            r = c.post("/predict", files={"file": ("short.wav", short)})
            latencies.append(time.monotonic() - t0)
            assert r.status_code == 200, r.text
        answered = time.monotonic()
    thread.join(timeout=300)
    # the predicts were answered while the timeline was still running, each within a bound
    # far below the timeline's own time (one chunk of 16 windows ahead of it at most)
    assert done["timeline"] > answered, "the timeline finished first: the test did not overlap them"
    assert max(latencies) < 5.0, latencies  # generous: the machine may be shared; typically 0.05-0.15 s


def test_a_client_that_never_finishes_its_headers_is_closed(server: Server) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        s.settimeout(REQUEST_TIMEOUT + 10)
        t0 = time.monotonic()
        assert s.recv(1024) == b""  # closed by the server
        assert time.monotonic() - t0 < REQUEST_TIMEOUT + 5


def test_a_body_that_trickles_gets_408_and_is_closed(server: Server) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  b"Content-Length: 100000\r\n\r\n--b\r\n")
        s.settimeout(REQUEST_TIMEOUT + 10)
        t0 = time.monotonic()
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 408"), data[:200]
        assert time.monotonic() - t0 < REQUEST_TIMEOUT + 5
    with httpx.Client(base_url=server.url, timeout=60) as c:  # and the service keeps serving
        assert c.post("/predict", files={"file": ("a.wav", wav(1.0))}).status_code == 200


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from audioclf.cli import main
    from tests.inference.test_evaluate import bundle

    ckpt = bundle(tmp_path / "m.ckpt")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", str(ckpt), "--port", str(port)]) == 2
    assert f"could not serve on 127.0.0.1:{port}" in capsys.readouterr().err
