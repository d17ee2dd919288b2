"""Find and read what a training run left behind: checkpoint, config, metrics.

A run directory (see ``training/trainer.py``) holds ``config.yaml``,
``checkpoints/best.ckpt`` and ``last.ckpt``, ``metrics.csv`` (Lightning's CSV logger:
one row per logging call, so an epoch's training and validation figures sit on
different, sparse rows), ``metrics.json`` (test figures of the best checkpoint) and,
after ``audioclf evaluate``, ``evaluation.json`` (with per-class numbers).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audioclf.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")


@dataclass(frozen=True)
class RunFiles:
    """Where the pieces of one run are; any of them may be missing (``None``)."""

    run_dir: Path | None
    checkpoint: Path | None
    config: Path | None
    metrics_csv: Path | None
    metrics_json: Path | None
    evaluation_json: Path | None

    @property
    def name(self) -> str:
        if self.run_dir is not None:
            return self.run_dir.name
        return self.checkpoint.stem if self.checkpoint else "run"


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def locate_run(path: str | Path) -> RunFiles:
    """A run directory or a checkpoint file -> the files of its run.

    A checkpoint inside ``<run>/checkpoints/`` brings its run's metrics along; a
    checkpoint elsewhere is reported on its own. A run directory is reported with its
    best checkpoint (else the last one).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"not found: {path} (expected a run directory or a checkpoint file)")
    if path.is_dir():
        run_dir: Path | None = path
        ckpt_dir = path / "checkpoints"
        checkpoint = _existing(ckpt_dir / "best.ckpt") or _existing(ckpt_dir / "last.ckpt")
        # a tune directory (trials.json) is reported with its search
        if checkpoint is None and not (path / "metrics.csv").is_file() and not (path / "trials.json").is_file():
            raise FileNotFoundError(
                f"{path}: not a run directory (no checkpoints/best.ckpt, checkpoints/last.ckpt or metrics.csv)"
            )
    else:
        if path.suffix not in CHECKPOINT_SUFFIXES:
            raise ConfigError(f"{path}: expected a run directory or a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})")
        checkpoint = path
        parent = path.parent
        run_dir = parent.parent if parent.name == "checkpoints" else None
    if run_dir is None:
        return RunFiles(None, checkpoint, None, None, None, None)
    return RunFiles(
        run_dir=run_dir,
        checkpoint=checkpoint,
        config=_existing(run_dir / "config.yaml"),
        metrics_csv=_existing(run_dir / "metrics.csv"),
        metrics_json=_existing(run_dir / "metrics.json"),
        evaluation_json=_existing(run_dir / "evaluation.json"),
    )


@dataclass
class History:
    """Per-epoch figures of a run: ``series[name]`` is a list of ``(epoch, value)``.

    Names are the logger's (``train/loss_epoch``, ``val/loss``, ``val/accuracy``,
    ``val/mAP``, ``val/overfit_gap_pct``...); step-level columns (``*_step``) are left out
    because the curves are drawn per epoch.
    """

    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def get(self, name: str) -> list[tuple[int, float]]:
        return self.series.get(name, [])

    def has(self, name: str) -> bool:
        return bool(self.series.get(name))

    def last(self) -> dict[str, float]:
        """The latest value of every series (the last epoch that logged it)."""
        return {name: points[-1][1] for name, points in self.series.items() if points}

    @property
    def epochs(self) -> int:
        return 1 + max((p[-1][0] for p in self.series.values() if p), default=-1)


def read_history(path: str | Path) -> History:
    """Merge the sparse rows of a Lightning ``metrics.csv`` into per-epoch series.

    Several rows of one epoch may carry the same column (e.g. a validation loop run
    twice); the last value wins, as it is the one the epoch ended with.
    """
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "epoch" not in reader.fieldnames:
            raise DataError(f"{path}: not a training metrics file (expected a CSV with an 'epoch' column)")
        per_epoch: dict[str, dict[int, float]] = {}
        for line, row in enumerate(reader, start=2):
            try:
                epoch = int(float(row["epoch"]))
            except (TypeError, ValueError):
                log.warning("%s line %d: unreadable epoch %r, row skipped", path, line, row.get("epoch"))
                continue
            for name, text in row.items():
                if name in ("epoch", "step") or name is None or name.endswith("_step") or text in (None, ""):
                    continue
                try:
                    value = float(text)
                except ValueError:
                    continue
                if math.isfinite(value):
                    per_epoch.setdefault(name, {})[epoch] = value
    return History({name: sorted(values.items()) for name, values in per_epoch.items()})


def read_json(path: str | Path) -> dict[str, Any]:
    """The JSON object in a run's file (``metrics.json``, ``evaluation.json``, ``trials.json``);
    :class:`DataError` naming the file when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
