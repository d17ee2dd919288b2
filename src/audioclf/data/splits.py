"""Splits that cannot silently fail: stratified hashed splits and coverage checks.

* :func:`stratified_hash_splits` gives each class its share of every split, choosing the
  clips by a stable hash of their key (path), so the split of a file depends only on its
  class's files, and adding a file moves at most two others of its class.
* :func:`coverage_warnings` names every class a split lacks, and every split smaller than
  the number of classes: a test split without some class scores that class as never right,
  and one with fewer clips than classes cannot hold them all.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

# a class with at least this many clips gets one in every split whose share is above 0
MIN_CLIPS_FOR_EVERY_SPLIT = 3


def hash_rank(key: str) -> int:
    """A stable, well-mixed rank for ``key`` (same on every machine and Python run)."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16)


def split_quota(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(validation, test) clip counts for a class of ``n`` clips: the rounded shares, at
    least one each when the class has :data:`MIN_CLIPS_FOR_EVERY_SPLIT` clips, and always
    leaving at least one for training."""
    n_test = round(n * test_fraction)
    n_val = round(n * val_fraction)
    if n >= MIN_CLIPS_FOR_EVERY_SPLIT:
        n_test = max(n_test, 1 if test_fraction > 0 else 0)
        n_val = max(n_val, 1 if val_fraction > 0 else 0)
    while n_test + n_val > max(n - 1, 0):  # keep a training clip: take from the larger share
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def stratified_hash_splits(
    keys: Sequence[str], classes: Sequence[int], val_fraction: float, test_fraction: float
) -> list[str]:
    """``"train"``/``"validation"``/``"test"`` for each key, stratified by ``classes``.

    Within each class the keys are ranked by :func:`hash_rank`; the first ``test`` quota
    go to test, the next ``validation`` quota to validation, the rest to train (quotas from
    :func:`split_quota`). Adding a file to a class moves at most one file of that class
    from test to validation and one from validation to train; other classes do not change.
    """
    if len(keys) != len(classes):
        raise ValueError(f"{len(keys)} keys but {len(classes)} classes")
    members: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(classes):
        members[int(c)].append(i)
    out = ["train"] * len(keys)
    for idx in members.values():
        idx.sort(key=lambda i: (hash_rank(keys[i]), keys[i]))
        n_val, n_test = split_quota(len(idx), val_fraction, test_fraction)
        for i in idx[:n_test]:
            out[i] = "test"
        for i in idx[n_test : n_test + n_val]:
            out[i] = "validation"
    return out


def coverage_warnings(
    targets: np.ndarray, label_names: Sequence[str], groups: Mapping[str, np.ndarray], where: str = ""
) -> list[str]:
    """Messages for the groups (split name -> clip indices) that miss a class or hold fewer
    clips than there are classes. ``targets``: ``(clips,)`` class ids or a ``(clips,
    classes)`` 0/1 matrix. Empty groups are skipped (a split not used is not a problem)."""
    prefix = f"{where}: " if where else ""
    n_classes = len(label_names)
    messages = []
    for name, idx in groups.items():
        idx = np.asarray(idx)
        if idx.size == 0:
            continue
        t = np.asarray(targets)[idx]
        present = t.any(axis=0) if t.ndim == 2 else np.isin(np.arange(n_classes), t)
        missing = [label_names[c] for c in np.flatnonzero(~present)]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            messages.append(
                f"{prefix}split {name!r} has no clip of {len(missing)} of the {n_classes} classes: {shown} "
                "(its figures for those classes mean nothing)"
            )
        if idx.size < n_classes:
            messages.append(f"{prefix}split {name!r} holds {idx.size} clips, fewer than the {n_classes} classes")
    return messages
