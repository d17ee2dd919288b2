"""k-fold cross-validation on a dataset's official folds (ESC-50: 5, UrbanSound8K: 10).

For each test fold ``k`` one run is trained with ``data.fold=k``, through the same
:func:`audioclf.training.trainer.train` as any single run, so each fold gets a FRESH
model: built and initialised from the config's seed (every fold starts from the same
initial weights), with a new optimiser, scheduler, task and Lightning Trainer. Nothing
trained on one fold is visible to the next; a model that carries its weights from fold to
fold has seen every later test fold in training (seed 003's log is that mistake: its
accuracy climbs fold after fold, from 0.71 to 0.995, because the model is never reset).

Checkpoints are chosen on a validation share of the *training* folds
(``data.val_fraction``, stratified by class), never on the test fold. Each fold's best
checkpoint is then scored once on its test fold.

The CV directory ``runs/<name>-cv-<time>/`` holds the config, one sub-run per fold
(``fold-01/`` ..., each a normal run directory) and the table ``cv_results.csv`` /
``cv_results.json`` (per-fold figures, mean and sample standard deviation). It is
rewritten after every fold, and running the CV again on the same directory skips the
folds that already have test figures.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L

from audioclf.config import Config, save_config, validate_config
from audioclf.data.store import Store
from audioclf.errors import ConfigError, DataError
from audioclf.training.distributed import launch_rank_is_zero, pending_run_dir
from audioclf.training.trainer import make_run_dir, train

log = logging.getLogger(__name__)

# The figures the CV table reports, in this order: single-label, multi-label.
CV_METRICS = {False: ("accuracy", "f1_macro", "balanced_accuracy"), True: ("mAP", "mean_auc", "d_prime")}


@dataclass
class FoldResult:
    fold: int
    run_dir: Path
    best_checkpoint: Path | None
    test_metrics: dict[str, Any]
    epochs: int = 0
    seconds: float = 0.0


@dataclass
class CVResult:
    cv_dir: Path
    metric_names: tuple[str, ...]
    folds: list[FoldResult] = field(default_factory=list)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)

    @property
    def table_csv(self) -> Path:
        return self.cv_dir / "cv_results.csv"

    @property
    def table_json(self) -> Path:
        return self.cv_dir / "cv_results.json"


def fold_config(config: Config, fold: int) -> Config:
    """The config of one fold's run: test on ``fold``, everything else as given."""
    raw = config.to_dict()
    raw["name"] = f"{config.name}-fold{fold:02d}"
    raw["data"]["fold"] = fold
    raw["data"]["val_fold"] = None
    raw["trainer"]["resume"] = None
    return validate_config(raw, source=f"cv fold {fold}")


def cross_validate(
    config: Config,
    folds: list[int] | None = None,
    cv_dir: str | Path | None = None,
    callbacks_for: Callable[[int], list[L.Callback]] | None = None,
) -> CVResult:
    """Train and test one fresh model per fold; returns per-fold and summary figures.

    ``folds``: the test folds to run (default: every fold of the store). ``cv_dir``: an
    existing CV directory to complete (finished folds are read back, not retrained).
    ``callbacks_for(fold)``: extra Lightning callbacks for that fold's run (tests use it
    to look inside).
    """
    if not config.data.store:
        raise ConfigError("data.store is not set: point it at a prepared store with folds (audioclf prepare ...)")
    if config.data.val_fold is not None:
        raise ConfigError(
            "data.val_fold fixes one validation fold for every run, so one run would test on it: leave it unset; "
            "cv validates each run on data.val_fraction of its training folds"
        )
    if config.trainer.resume:
        raise ConfigError("trainer.resume continues one run; to complete a cross-validation, give its CV directory instead")
    store = Store(config.data.store)
    available = store.fold_ids()
    multi_label = store.multi_label
    store.close()
    if len(available) < 2:
        raise DataError(f"{config.data.store}: cross-validation needs a store with at least 2 folds, found {available or 'none'}")
    folds = list(dict.fromkeys(folds or available))  # each fold once, in the order given
    unknown = sorted(set(folds) - set(available))
    if unknown:
        raise ConfigError(f"folds {unknown} are not in {config.data.store} (its folds: {available})")
    if config.data.val_fraction <= 0:
        log.warning("data.val_fraction=0: no validation set, each fold keeps its last checkpoint")

    # Under DDP every rank runs this; only rank 0 makes and writes the CV directory. The
    # others use a name of their own that is never created: each fold's run learns its
    # real directory from rank 0 (see training.distributed), and as a new CV directory
    # has no finished folds, every rank trains the same folds.
    writer = launch_rank_is_zero()
    if cv_dir is None:
        cv_name = f"{config.name}-cv"
        cv_dir = make_run_dir(config.model_copy(update={"name": cv_name})) if writer else pending_run_dir(config.output_dir, cv_name)
    cv_dir = Path(cv_dir)
    _check_same_recipe(config, cv_dir)
    if writer:
        cv_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, cv_dir / "config.yaml")
    result = CVResult(cv_dir, CV_METRICS[multi_label])
    for k in folds:
        sub = cv_dir / f"fold-{k:02d}"
        done = _finished_fold(sub, k)
        if done is not None:
            log.info("fold %d: already done in %s", k, sub)
            result.folds.append(done)
        else:
            log.info("fold %d of %s: training a fresh model (test fold %d)", folds.index(k) + 1, len(folds), k)
            run = train(fold_config(config, k), run_dir=sub, callbacks=callbacks_for(k) if callbacks_for else None)
            if not run.test_metrics:
                raise RuntimeError(f"fold {k}: the run produced no test figures (no best checkpoint in {sub})")
            result.folds.append(FoldResult(k, run.run_dir, run.best_checkpoint, run.test_metrics, run.epochs, run.seconds))
        summarise(result)
        if writer:
            write_tables(result)
        figures = ", ".join(f"{m} {result.folds[-1].test_metrics.get(m, float('nan')):.4f}" for m in result.metric_names[:2])
        log.info("fold %d: %s", k, figures)
    return result


def _check_same_recipe(config: Config, cv_dir: Path) -> None:
    """Completing a CV directory with another recipe would average folds of two different
    experiments: refuse, naming the settings that differ."""
    saved = cv_dir / "config.yaml"
    if not saved.is_file():
        return
    from audioclf.config import flatten_config, load_config

    before, now = flatten_config(load_config(saved).to_dict()), flatten_config(config.to_dict())
    differ = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if differ:
        raise ConfigError(
            f"{cv_dir} holds a cross-validation of another config ({', '.join(differ[:8])} differ): "
            "complete it with its own config.yaml, or start a new CV directory"
        )


def _finished_fold(sub: Path, fold: int) -> FoldResult | None:
    """A fold whose run wrote its test figures (``metrics.json``) is not trained again."""
    path = sub / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    ckpt = metrics.pop("checkpoint", None)
    metrics.pop("split", None)
    return FoldResult(fold, sub, Path(ckpt) if ckpt else None, metrics)


def summarise(result: CVResult) -> None:
    """Mean and sample standard deviation (n - 1; 0 for one fold) of each CV figure."""
    result.mean.clear()
    result.std.clear()
    for m in result.metric_names:
        values = [float(f.test_metrics[m]) for f in result.folds if m in f.test_metrics]
        values = [v for v in values if not math.isnan(v)]
        if not values:
            continue
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
        result.mean[m] = mean
        result.std[m] = math.sqrt(var)


def write_tables(result: CVResult) -> None:
    """``cv_results.csv`` (one row per fold, then mean and std rows) and ``cv_results.json``."""
    names = list(result.metric_names)
    with result.table_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fold", *names, "clips", "epochs", "run_dir", "best_checkpoint"])
        for fr in result.folds:
            w.writerow([
                fr.fold, *(_fmt(fr.test_metrics.get(m)) for m in names), fr.test_metrics.get("clips", ""),
                fr.epochs or "", fr.run_dir.name, fr.best_checkpoint or "",
            ])
        w.writerow(["mean", *(_fmt(result.mean.get(m)) for m in names), "", "", "", ""])
        w.writerow(["std", *(_fmt(result.std.get(m)) for m in names), "", "", "", ""])
    doc = {
        "protocol": "one fresh model per test fold; checkpoint chosen on a validation share of the training folds",
        "metrics": names,
        "folds": [
            {"fold": fr.fold, "run_dir": str(fr.run_dir), "best_checkpoint": str(fr.best_checkpoint or ""),
             "epochs": fr.epochs, "seconds": round(fr.seconds, 1), "test": _plain(fr.test_metrics)}
            for fr in result.folds
        ],
        "mean": result.mean,
        "std": result.std,
        "std_kind": "sample (n - 1)",
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    result.table_json.write_text(json.dumps(doc, indent=2))


def _fmt(v: Any) -> str:
    return f"{v:.6f}" if isinstance(v, float) else ("" if v is None else str(v))


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """The scalar figures only (no per-class tables) for the JSON summary."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}
