"""Time `audioclf demo` end to end and report its held-out accuracy.

    python benchmarks/bench_demo.py [--repeats N]

Runs the demo in a fresh temporary directory (so the synthetic set is generated and
packed each time, as on a first run) and prints wall time per stage and test accuracy.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
import warnings

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    from audioclf.demo import run_demo

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            t0 = time.time()
            res = run_demo(d, ["trainer.progress_bar=false"])
            total = time.time() - t0
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in res.seconds.items())
        print(
            f"run {r + 1}: total {total:.1f} s ({stages}); test accuracy {res.test_metrics['accuracy']:.4f}, "
            f"macro-F1 {res.test_metrics['f1_macro']:.4f} on {res.test_metrics['clips']} clips; "
            f"example scene: {len(res.detected)} events found "
            f"({', '.join(f'{e.label} {e.start:.2f}-{e.end:.2f} s' for e in sorted(res.detected, key=lambda e: e.start))})"
        )


if __name__ == "__main__":
    main()
