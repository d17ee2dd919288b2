"""How long `audioclf models` takes: building every model (the old listing, now
`--build`) against shapes on the meta device with an empty cache (first listing) and with
the cache filled (every later listing); the first listing at the default 527 classes reads
the counts shipped with the package, so a 50-class listing with an empty cache measures the
meta-device path itself. Each mode runs in a fresh process, interleaved,
``--rounds`` times; the medians and their ratios are printed.

    python benchmarks/bench_models_listing.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def listing_seconds(extra: list[str], cache_dir: str) -> float:
    env = {**os.environ, "AUDIOCLF_CACHE": cache_dir}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "audioclf.cli", "models", "--json", *extra], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each mode (default 3)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"build": [], "first (shipped)": [], "meta, 50 classes": [], "meta, cached": []}
    with tempfile.TemporaryDirectory() as warm:
        listing_seconds([], warm)  # fill the cache used by the "cached" runs
        for _ in range(args.rounds):
            times["build"].append(listing_seconds(["--build"], warm))
            with tempfile.TemporaryDirectory() as cold:
                times["first (shipped)"].append(listing_seconds([], cold))
            with tempfile.TemporaryDirectory() as cold:
                times["meta, 50 classes"].append(listing_seconds(["--classes", "50"], cold))
            times["meta, cached"].append(listing_seconds([], warm))
    build = statistics.median(times["build"])
    for mode, values in times.items():
        med = statistics.median(values)
        print(f"{mode:<18} median {med:6.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})  "
              f"build / this: {build / med:5.1f}x")


if __name__ == "__main__":
    main()
