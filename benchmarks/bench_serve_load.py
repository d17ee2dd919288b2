"""A bounded load test of ``audioclf serve`` on 127.0.0.1: latency, errors by status, memory.

    python benchmarks/bench_serve_load.py [--requests 500] [--clients 8] [--malformed 0.1]

Builds a ``cnn_lite`` bundle with random weights (latency and memory do not depend on the
weights), starts a real ``audioclf serve`` process on a free port, and sends ``--requests``
requests from ``--clients`` concurrent clients: mostly ``POST /predict`` of 1-10 s WAV
files, one in ten a ``POST /timeline``, and a ``--malformed`` share of bad requests drawn
in turn from: random bytes as the file, an empty body, a non-multipart body, an upload
over the size limit, ``hop=inf`` and a FLAC that would decode to 230 M samples. It stops
by itself after the last request, then prints p50/p95/p99 latency of the good and the bad
requests, the count of answers by status, and the server's peak RSS (VmHWM) before and
after the load. A good request answered with anything but 200, or a bad one with a 5xx,
is a failure (exit 1).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_timeline import write_random_bundle  # noqa: E402 - the same random cnn_lite bundle


def wav(seconds: float, rate: int, seed: int) -> bytes:
    import soundfile as sf

    x = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def flac_bomb() -> bytes:
    """600 s of silence at 384 kHz: about 840 kB that would decode to 230 M samples."""
    import soundfile as sf

    buf = io.BytesIO()
    block = np.zeros(384_000 * 10, np.float32)
    with sf.SoundFile(buf, "w", 384_000, 1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(60):
            f.write(block)
    return buf.getvalue()


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--malformed", type=float, default=0.1, help="share of bad requests (default 0.1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import httpx

    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="audioclf-load-"))
    ckpt = tmp / "random.ckpt"
    write_random_bundle(ckpt)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "audioclf.cli", "serve", str(ckpt), "--port", str(port),
                             "--max-upload-mb", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("audioclf serve did not start")
            try:
                httpx.get(url + "/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        rss_idle = peak_rss_mib(proc.pid)

        clips = [wav(rng.uniform(1, 10), 16000, seed=i) for i in range(16)]
        bomb = flac_bomb()
        bad_kinds = ["random-bytes", "empty-body", "not-multipart", "too-large", "hop-inf", "decode-bomb"]
        plan = []
        for i in range(args.requests):
            if rng.random() < args.malformed:
                plan.append(("bad", bad_kinds[len([p for p in plan if p[0] == "bad"]) % len(bad_kinds)]))
            else:
                plan.append(("good", "timeline" if i % 10 == 9 else "predict"))
        lock = threading.Lock()
        results: list[tuple[str, str, int, float]] = []

        def send(item: tuple[str, str], client: httpx.Client) -> None:
            kind, what = item
            clip = rng.choice(clips)
            t0 = time.perf_counter()
            if what == "predict":
                r = client.post("/predict", files={"file": ("a.wav", clip)})
            elif what == "timeline":
                r = client.post("/timeline", params={"hop": 0.25}, files={"file": ("a.wav", clip)})
            elif what == "random-bytes":
                r = client.post("/predict", files={"file": ("x.wav", os.urandom(4096))})
            elif what == "empty-body":
                r = client.post("/predict", content=b"", headers={"content-type": "multipart/form-data; boundary=x"})
            elif what == "not-multipart":
                r = client.post("/predict", content=clip, headers={"content-type": "audio/wav"})
            elif what == "too-large":
                r = client.post("/predict", files={"file": ("big.wav", bytes(3 * 2**20))})
            elif what == "hop-inf":
                r = client.post("/timeline", params={"hop": "inf"}, files={"file": ("a.wav", clip)})
            else:
                r = client.post("/predict", files={"file": ("bomb.flac", bomb)})
            with lock:
                results.append((kind, what, r.status_code, time.perf_counter() - t0))

        local = threading.local()

        def worker(item: tuple[str, str]) -> None:
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=url, timeout=120)
            try:
                send(item, local.client)
            except httpx.TransportError as err:
                with lock:
                    results.append((item[0], item[1], -1, float("nan")))
                print(f"transport error on {item}: {err}", file=sys.stderr)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(worker, plan))
        wall = time.perf_counter() - t0
        rss_peak = peak_rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    good = [r[3] for r in results if r[0] == "good"]
    bad = [r[3] for r in results if r[0] == "bad"]
    by_status = Counter(r[2] for r in results)
    bad_by_kind = {k: dict(Counter(r[2] for r in results if r[1] == k)) for k in bad_kinds}
    failures = [r for r in results if (r[0] == "good" and r[2] != 200) or (r[0] == "bad" and not 400 <= r[2] < 500)]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "requests": len(results), "clients": args.clients, "wall_s": round(wall, 1),
        "throughput_rps": round(len(results) / wall, 1),
        "good": {"count": len(good), "p50_ms": round(1e3 * percentile(good, 50), 1),
                 "p95_ms": round(1e3 * percentile(good, 95), 1), "p99_ms": round(1e3 * percentile(good, 99), 1)},
        "malformed": {"count": len(bad), "p50_ms": round(1e3 * percentile(bad, 50), 1),
                      "p99_ms": round(1e3 * percentile(bad, 99), 1), "status_by_kind": bad_by_kind},
        "status_counts": {str(k): v for k, v in sorted(by_status.items())},
        "server_peak_rss_mib": {"idle": round(rss_idle), "after_load": round(rss_peak)},
        "failures": len(failures),
    }
    print(json.dumps(report, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
