"""Wall time of `audioclf predict CKPT one_second.wav` against `python -c "import torch"`.

    python benchmarks/bench_predict_startup.py [--rounds 5] [--src DIR]

Builds a tiny ``cnn_lite`` checkpoint bundle (random weights: start-up does not depend on
them) and a one-second WAV, then runs, interleaved (torch, predict, torch, predict, ...)
so both see the same machine load, each in a fresh interpreter:

* ``python -c "import torch"``: the floor any PyTorch command pays;
* ``python -m audioclf.cli predict CKPT one_second.wav``, with ``--src`` (default: this
  checkout's ``src``) first on ``PYTHONPATH``; point it at another checkout's ``src`` to
  measure that code (e.g. ``git archive main src | tar -x -C /tmp/main``).

Prints the median of each, the median of the per-round ratios predict / import torch, and
whether the predict process imported lightning or torchmetrics.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _make_inputs(workdir: Path, src: Path) -> tuple[Path, Path]:
    """The bundle and the WAV, written by a child process running the code under ``src``."""
    ckpt, wav = workdir / "tiny.ckpt", workdir / "one_second.wav"
    code = f"""
import numpy as np, soundfile as sf, torch
from audioclf.models import create_model
model = create_model("cnn_lite", 3, channels=(8, 16))
info = {{"bundle_version": 1, "model": "cnn_lite", "model_settings": {{"channels": [8, 16]}}, "num_classes": 3,
        "label_names": ["a", "b", "c"], "task": "single_label", "sample_rate": 16000, "clip_samples": 16000,
        "weights": "model", "config": {{}}}}
torch.save({{"state_dict": {{"model." + k: v for k, v in model.state_dict().items()}}, "audioclf": info}}, {str(ckpt)!r})
t = np.arange(16000) / 16000
sf.write({str(wav)!r}, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
"""
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(src))
    return ckpt, wav


def _env(src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src)
    return env


def _time(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - t0, run.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the audioclf sources to measure")
    args = ap.parse_args()
    env = _env(args.src)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, wav = _make_inputs(Path(tmp), args.src)
        probe = (f"import sys, runpy; sys.argv = ['audioclf', 'predict', {str(ckpt)!r}, {str(wav)!r}]\n"
                 "try:\n    runpy.run_module('audioclf.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
                 "print('HEAVY', sorted(m for m in ('lightning', 'torchmetrics') if m in sys.modules))")
        heavy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env).stdout
        heavy = heavy.split("HEAVY", 1)[1].strip() if "HEAVY" in heavy else "?"
        torch_s, predict_s = [], []
        _time([sys.executable, "-c", "import torch"], env)  # warm the file cache once
        for _ in range(args.rounds):
            torch_s.append(_time([sys.executable, "-c", "import torch"], env)[0])
            predict_s.append(_time([sys.executable, "-m", "audioclf.cli", "predict", str(ckpt), str(wav)], env)[0])
    ratios = [p / t for p, t in zip(predict_s, torch_s, strict=True)]
    print(f"src: {args.src}")
    print(f"import torch      median {statistics.median(torch_s):.2f} s  ({', '.join(f'{x:.2f}' for x in torch_s)})")
    print(f"audioclf predict  median {statistics.median(predict_s):.2f} s  ({', '.join(f'{x:.2f}' for x in predict_s)})")
    print(f"ratio predict / import torch: median {statistics.median(ratios):.2f} (per round {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"predict imported lightning/torchmetrics: {heavy}")


if __name__ == "__main__":
    main()
