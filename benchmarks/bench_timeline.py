"""Memory and speed of `Classifier.predict_timeline` on a long file.

    python benchmarks/bench_timeline.py [--minutes 10] [--rate 44100] [--hop 0.5] [--batch-size 16]

Writes a synthetic recording (16-bit PCM WAV, ``--rate`` Hz, written block by block),
builds a ``cnn_lite`` checkpoint bundle with random weights (speed and memory do not
depend on the weights), then, each in a fresh process so peak figures do not mix:

* ``stream``: ``predict_timeline(path)``, the file read and resampled block by block;
* ``in-memory``: ``load_audio(path)`` then ``predict_timeline(array)``, for contrast;
* ``predict`` / ``predict-in-memory``: the clip-level ``predict(path)`` (streamed the same
  way) against ``predict(load_audio(path))`` (``--modes predict,predict-in-memory``).

For each it prints the peak RSS increase over the process's state just before the call
(``resource.getrusage`` high-water mark; the model is loaded and warmed up first), the
peak of traced Python/numpy allocations during a second call (``tracemalloc``), both
against the file size, and the real-time factor (audio seconds per wall second, from the
fastest of ``--repeats`` untraced calls: on a shared machine the slowest can be 10x slower).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np


def write_recording(path: Path, minutes: float, rate: int, seed: int = 0) -> None:
    """Background noise with a tone burst every 7 s, written a minute at a time."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    total = int(minutes * 60 * rate)
    with sf.SoundFile(str(path), "w", rate, 1, subtype="PCM_16") as f:
        for start in range(0, total, 60 * rate):
            n = min(60 * rate, total - start)
            t = (start + np.arange(n)) / rate
            x = 0.05 * rng.standard_normal(n)
            burst = (t % 7.0) < 1.5
            x[burst] += 0.4 * np.sin(2 * np.pi * 1000 * t[burst])
            f.write(x.astype(np.float32))


def write_random_bundle(path: Path) -> None:
    """A cnn_lite checkpoint bundle with random weights and the synthetic set's 12 labels."""
    import torch

    from audioclf.models import create_model

    torch.manual_seed(0)
    model = create_model("cnn_lite", 12)
    info = {
        "model": "cnn_lite", "model_settings": {}, "num_classes": 12,
        "label_names": [f"class_{i}" for i in range(12)], "task": "single_label",
        "sample_rate": model.sample_rate, "clip_samples": model.clip_samples, "weights": "model",
    }
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "audioclf": info}, path)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(
    mode: str, checkpoint: str, audio: str, hop: float, batch_size: int, block_seconds: float, repeats: int
) -> dict:
    """One mode in this process: RSS high-water increase, tracemalloc peak, wall time."""
    from audioclf.audio.io import load_audio
    from audioclf.inference import Classifier

    clf = Classifier.from_checkpoint(checkpoint)
    # warm-up with at least one full batch, so the model's own working memory for a batch
    # is in the baseline and the increase measured is what the long input adds
    warm = np.zeros(int(clf.clip_samples * (batch_size + 2) * hop), np.float32)
    clf.predict_timeline(warm, hop=hop, batch_size=batch_size)

    def run() -> object:
        if mode == "stream":
            return clf.predict_timeline(audio, hop=hop, batch_size=batch_size, block_seconds=block_seconds)
        if mode == "predict":  # clip-level predict of a file: streamed too
            return clf.predict(audio)
        if mode == "predict-in-memory":
            return clf.predict(load_audio(audio, clf.sample_rate)[0])
        wave, _ = load_audio(audio, clf.sample_rate)
        return clf.predict_timeline(wave, hop=hop, batch_size=batch_size)

    before = peak_rss_mib()
    walls = []
    for _ in range(repeats):  # best of a few: the CPU may be shared with other work
        t0 = time.perf_counter()
        tl = run()
        walls.append(time.perf_counter() - t0)
    rss_increase = peak_rss_mib() - before
    wall = min(walls)

    tracemalloc.start()
    run()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if mode.startswith("predict"):  # half-overlapping clip windows, no Timeline object
        from audioclf.audio.io import audio_info
        from audioclf.inference.timeline import count_windows

        duration = audio_info(audio).duration
        n = clf.clip_samples
        frames = count_windows(int(duration * clf.sample_rate), n, n // 2)
    else:
        frames, duration = len(tl.starts), tl.duration
    return {
        "mode": mode, "frames": frames, "duration_s": duration, "wall_s": wall,
        "rtf": duration / wall, "slowest_wall_s": max(walls), "rss_increase_mib": rss_increase, "traced_peak_mib": traced_peak / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=44100, help="file sample rate (cnn_lite runs at 16 kHz)")
    parser.add_argument("--hop", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block-seconds", type=float, default=10.0, help="read size when streaming")
    parser.add_argument("--modes", default="stream,in-memory")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per mode; the fastest is reported")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "CHECKPOINT", "AUDIO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    if args.child:
        mode, ckpt, audio = args.child
        print(json.dumps(measure(mode, ckpt, audio, args.hop, args.batch_size, args.block_seconds, args.repeats)))
        return

    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as d:
        audio, ckpt = Path(d) / "long.wav", Path(d) / "random_cnn_lite.ckpt"
        t0 = time.perf_counter()
        write_recording(audio, args.minutes, args.rate)
        write_random_bundle(ckpt)
        size = audio.stat().st_size / 2**20
        decoded = args.minutes * 60 * args.rate * 4 / 2**20
        print(f"file: {args.minutes:g} min, {args.rate} Hz mono 16-bit WAV, {size:.1f} MiB on disk "
              f"({decoded:.1f} MiB as float32); written in {time.perf_counter() - t0:.1f} s")
        print(f"model: cnn_lite (random weights), 1 s windows every {args.hop:g} s, batch {args.batch_size}, "
              f"streamed in {args.block_seconds:g} s blocks")
        for mode in args.modes.split(","):
            cmd = [sys.executable, __file__, "--hop", str(args.hop), "--batch-size", str(args.batch_size),
                   "--block-seconds", str(args.block_seconds), "--repeats", str(args.repeats),
                   "--child", mode, str(ckpt), str(audio)]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            print(
                f"{mode:>9}: {res['frames']} windows over {res['duration_s']:.0f} s in {res['wall_s']:.1f} s "
                f"(slowest of {args.repeats}: {res['slowest_wall_s']:.1f} s) -> real-time factor {res['rtf']:.0f}x; "
                f"peak RSS +{res['rss_increase_mib']:.1f} MiB, "
                f"traced peak {res['traced_peak_mib']:.1f} MiB (file {size:.1f} MiB)"
            )


if __name__ == "__main__":
    main()
