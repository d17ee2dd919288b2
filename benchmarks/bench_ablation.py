"""Ablation of the default recipe: bare defaults, each ingredient alone, all together.

    python benchmarks/bench_ablation.py [--folds 3] [--epochs 8] [--clips-per-class 24]
    python benchmarks/bench_ablation.py --store my.h5 --folds 3   # a store with folds of your own
    python benchmarks/bench_ablation.py ... --write-results       # also update benchmarks/RESULTS.md

Protocol: fold-held-out cross-validation through `audioclf cv`'s code path (a fresh model
per test fold, checkpoint chosen on 10 % of the training folds). Without --store the data
is the built-in synthetic set with `-o conditions=true`: every fold is recorded under its
own condition (a pitch factor between 0.75 and 1.33 and a background noise of its own:
white, pink, brown, mains hum), so each test fold's condition is never seen in training
(the offline analogue of issue 13's held-out speaker). The default recipe is the one
`audioclf train` would choose for the store (`configs/defaults/`); its ingredients are
those of `audioclf.training.defaults.INGREDIENTS`. Runs are interleaved fold by fold (every
variant on fold 1, then on fold 2, ...) so that a change in the machine's load falls on all
variants alike. Prints the per-fold accuracy of each variant, the mean ± std, and the
mean difference to the bare defaults with its per-fold spread.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
MARK = ("<!-- bench_ablation:start -->", "<!-- bench_ablation:end -->")


def variants(store: str, recipe: dict[str, Any], base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Variant name -> raw config: bare, each ingredient of ``recipe`` alone, all."""
    from audioclf.training.defaults import INGREDIENTS, merge

    out = {"defaults (recipe: none)": merge(base, {"recipe": "none"})}
    parts: dict[str, dict[str, Any]] = {}
    for name, (keys, _) in INGREDIENTS.items():
        part: dict[str, Any] = {}
        for key in keys:
            section, _, leaf = key.partition(".")
            if leaf in recipe.get(section, {}):
                part.setdefault(section, {})[leaf] = recipe[section][leaf]
        if part:
            parts[name] = part
            out[f"+ {name}"] = merge(base, part)
    # The two augmentations together, without the recipe's other ingredients: the candidate
    # trim when label smoothing, warm-up or EMA cost more than they give.
    if "waveform augmentation" in parts and "SpecAugment" in parts:
        pair = merge(base, merge(parts["waveform augmentation"], parts["SpecAugment"]))
        if pair != merge(base, recipe):
            out["+ waveform augmentation + SpecAugment"] = pair
    out["all (default recipe)"] = merge(base, recipe)
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", help="a store with folds (default: build the synthetic held-out-condition set)")
    p.add_argument("--folds", type=int, default=3, help="synthetic: folds to build; test folds to run (the first N)")
    p.add_argument("--test-folds", type=int, help="run only the first N test folds of the store (default: all "
                   "--folds); with --workdir, finished runs are read back")
    p.add_argument("--epochs", type=int, default=8, help="epochs per run (default 8)")
    p.add_argument("--clips-per-class", type=int, default=24, help="synthetic: clips per class (default 24)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workdir", help="keep stores and runs here (default: a temporary directory); "
                   "a second run with the same workdir skips the finished folds")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a dotted config override for every variant (e.g. data.num_workers=0)")
    p.add_argument("--write-results", action="store_true", help="write the table into benchmarks/RESULTS.md")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    import lightning  # noqa: F401  (it sets its loggers' levels on import: quiet them after)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("audioclf").setLevel(logging.WARNING)
    import torch

    from audioclf.config import apply_overrides, validate_config
    from audioclf.data.catalog import create_source
    from audioclf.data.prepare import prepare_dataset
    from audioclf.data.store import Store
    from audioclf.training.cv import cross_validate
    from audioclf.training.defaults import StoreFacts, choose_store_kind, read_default_recipe

    tmp = None if a.workdir else tempfile.TemporaryDirectory()
    work = Path(a.workdir or tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if a.store:
        store = Path(a.store)
        data = f"store {store}"
    else:
        store = work / f"synthetic-conditions-{a.folds}x{a.clips_per_class}.h5"
        if not store.exists():
            src = create_source("synthetic", clips_per_class=a.clips_per_class, folds=a.folds, conditions=True)
            prepare_dataset(src, store, workers=2)
        data = (f"synthetic set, 12 classes x {a.clips_per_class} clips of 1 s, {a.folds} folds, each fold its own "
                "condition (`-o conditions=true`)")
    s = Store(store)
    folds = s.fold_ids()[: a.folds][: a.test_folds]
    s.close()
    if len(folds) < 2:
        raise SystemExit(f"{store}: needs at least 2 folds, found {folds}")
    kind = choose_store_kind(StoreFacts.of(store)).name
    recipe = read_default_recipe(kind)
    base = {
        "name": "ablation", "output_dir": str(work / "runs"), "data": {"store": str(store), "batch_size": a.batch_size},
        "trainer": {"max_epochs": a.epochs, "progress_bar": False},
    }
    base = apply_overrides(base, a.set)
    runs = {name: validate_config(raw, source=name) for name, raw in variants(str(store), recipe, base).items()}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"data: {data}; default recipe: {kind}; {len(runs)} variants x {len(folds)} folds x {a.epochs} epochs")
    acc: dict[str, dict[int, float]] = {name: {} for name in runs}
    for k in folds:  # interleaved: every variant on this fold, then the next fold
        for name, config in runs.items():
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            t = time.time()
            res = cross_validate(config, folds=[k], cv_dir=work / "cv" / slug)
            acc[name][k] = float(res.folds[-1].test_metrics["accuracy"])
            print(f"fold {k}  {name:<28} accuracy {acc[name][k]:.4f}  ({time.time() - t:.0f} s)", flush=True)
    seconds = time.time() - t0
    bare = acc["defaults (recipe: none)"]
    header = ["variant", *(f"fold {k}" for k in folds), "mean ± std", "Δ vs defaults (mean ± std over folds)"]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for name, per in acc.items():
        m, sd = mean_std([per[k] for k in folds])
        dm, dsd = mean_std([per[k] - bare[k] for k in folds])
        delta = "–" if per is bare else f"{100 * dm:+.1f} ± {100 * dsd:.1f} pts"
        lines.append(f"| {name} | " + " | ".join(f"{100 * per[k]:.1f} %" for k in folds)
                     + f" | {100 * m:.1f} ± {100 * sd:.1f} % | {delta} |")
    table = "\n".join(lines)
    print(table)
    print(f"total: {seconds / 60:.1f} min")
    if a.write_results:
        write_results(table, data, kind, folds, a.epochs, seconds)
    if tmp is not None:
        tmp.cleanup()


def write_results(table: str, data: str, kind: str, folds: list[int], epochs: int, seconds: float) -> None:
    text = RESULTS.read_text()
    block = (
        f"{MARK[0]}\n"
        f"Machine: 2-core shared CPU (other jobs running beside it). Date: 2026-12-02.\n"
        f"`cnn_lite`, {data}; test folds {', '.join(map(str, folds))}, a fresh model per fold, {epochs} epochs, "
        f"batch 32, checkpoint chosen on 10 % of the training folds; default recipe `{kind}` "
        f"(configs/defaults/{kind}.yaml), its ingredients switched on one at a time. "
        f"{len(folds)} folds x all variants in {seconds / 60:.1f} min.\n\n{table}\n{MARK[1]}"
    )
    if MARK[0] in text:
        text = re.sub(re.escape(MARK[0]) + r".*?" + re.escape(MARK[1]), lambda _: block, text, flags=re.S)
    else:
        anchor = "## Test suite"
        section = f"## Default-recipe ablation, held-out condition (bench_ablation.py)\n\n{block}\n\n"
        text = text.replace(anchor, section + anchor) if anchor in text else text + "\n" + section
    RESULTS.write_text(text)
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
