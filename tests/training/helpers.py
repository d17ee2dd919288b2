"""Tiny stores for training tests: a few short clips per class, tones a model can learn.

Class ``c`` is a sine at its own frequency (plus a little noise), so a small model gets
above chance in an epoch or two; multi-label clips hold the tones of their labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np

from audioclf.data.store import StoreHeader, StoreWriter

SPLITS = ("train", "validation", "test")


def make_store(
    path: Path,
    *,
    classes: int = 3,
    used: int | None = None,
    sample_rate: int = 16000,
    seconds: float = 1.0,
    clips_per_class: int = 6,
    multi_label: bool = False,
    folds: int | None = None,
    splits: Sequence[str | Sequence[str] | None] = SPLITS,
    seed: int = 0,
) -> Path:
    """Write a store at ``path`` and return it.

    ``classes``: the label count of the store (its head size); only the first ``used`` of
    them (default: all) get clips, so a store can have AudioSet's 527 labels and a dozen
    clips. ``folds``: clip ``i`` of each class goes to fold ``i % folds + 1`` (the k-fold
    protocol). Otherwise ``splits`` names the (train, validation, test) splits (a list
    spreads clips over several names, ``None`` leaves a role out); clips of each class go
    to them in a 4:1:1 pattern.
    """
    rng = np.random.default_rng(seed)
    used = classes if used is None else min(used, classes)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    freqs = np.geomspace(200.0, min(6000.0, 0.4 * sample_rate), used)
    names = [f"class{c}" for c in range(classes)]
    header = StoreHeader(sample_rate, names, task="multi_label" if multi_label else "single_label", dataset="tiny")
    pattern: list[str] = []
    for role, count in zip(splits, (4, 1, 1), strict=True):
        if role is None:
            continue
        options = [role] if isinstance(role, str) else list(role)
        pattern += [options[k % len(options)] for k in range(count)]
    with StoreWriter(path, header) as w:
        for c in range(used):
            for i in range(clips_per_class):
                labels = [c]
                if multi_label and used > 1 and rng.random() < 0.5:
                    labels.append(int((c + 1 + rng.integers(used - 1)) % used))
                x = sum(np.sin(2 * np.pi * freqs[k] * t + rng.uniform(0, 6.3)) for k in labels) * 0.3
                x = x + rng.normal(0, 0.02, n)
                kw = {"fold": i % folds + 1} if folds else {"split": pattern[i % len(pattern)]}
                w.add(x.astype(np.float32), labels if multi_label else c, clip_id=f"{c}-{i}", **kw)
    return path


class Kill(L.Callback):
    """Stops the run like a crash would: an exception when ``step`` is reached."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("killed")
