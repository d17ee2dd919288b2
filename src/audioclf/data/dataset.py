"""``ClipDataset``: fixed-length training/evaluation examples drawn from a store.

Every dataset goes through this one class: crop or zero-pad to the model's clip length,
apply label-preserving waveform augmentations (in the DataLoader worker, on the CPU), and
return a target in the form the loss wants. Randomness comes from a generator seeded by
(seed, epoch, clip), so an epoch is the same whatever the number of workers and a resumed
run sees the same crops as an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from audioclf.data.store import Store

log = logging.getLogger(__name__)

# what ``augment`` is: a WaveformAugment (audioclf.data.augment) or any callable of that form
AugmentFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class ClipDataset(Dataset):
    """Items ``(waveform, target)``: waveform float32 ``(clip_samples,)``; target int64 class
    index (single-label) or float32 multi-hot ``(num_classes,)`` (multi-label).

    ``train=True`` takes a random crop from longer clips and applies ``augment``;
    otherwise the crop starts at 0. Shorter clips are zero-padded at the end.
    """

    def __init__(
        self,
        store: Store,
        indices: Sequence[int] | np.ndarray,
        clip_samples: int,
        *,
        train: bool = False,
        augment: AugmentFn | None = None,
        seed: int = 0,
    ) -> None:
        if clip_samples <= 0:
            raise ValueError(f"clip_samples must be positive, got {clip_samples}")
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.clip_samples = clip_samples
        self.train = train
        self.augment = augment
        self.seed = seed
        # in shared memory: persistent DataLoader workers hold their own copy of the
        # dataset, and must still see the epoch the main process sets (their crops and
        # augmentations are drawn from it)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.indices)

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(i)])

    def _augment_rng(self, i: int) -> np.random.Generator:
        """The augmentations' generator for item ``i``: its own stream, derived from the
        item's. The two steps are those of earlier versions (which went through numpy's
        global generator), so a config draws the augmentations it drew before."""
        seed = int(self._rng(i).integers(0, 2**31 - 1))
        return np.random.default_rng(np.random.RandomState(seed).randint(0, 2**31 - 1))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = int(self.indices[i])
        length = int(self.store.lengths[idx])
        n = self.clip_samples
        start = 0
        if length > n and self.train:
            start = int(self._rng(i).integers(0, length - n + 1))
        audio = self.store.read_audio(idx, start, n)
        if audio.size < n:
            audio = np.pad(audio, (0, n - audio.size))
        if self.train and self.augment is not None:
            audio = self.augment(audio, self._augment_rng(i))
            if audio.size != n:  # a transform must never change the length
                audio = np.pad(audio[:n], (0, max(0, n - audio.size)))
        target = self.store.targets[idx]
        if self.store.multi_label:
            t = torch.as_tensor(target, dtype=torch.float32)
        else:
            t = torch.as_tensor(int(target), dtype=torch.long)
        return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), t


def default_num_workers(cpus: int | None = None) -> int:
    """DataLoader workers for this machine (``data.num_workers=auto``): one core stays with
    the training process, at most 8 workers (beyond that the store's reads, not decoding,
    limit), and none on a single core (a worker there only adds copies)."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(int(cpus) - 1, 8))


def protocol_indices(
    store: Store,
    *,
    train_split: str | list[str] | None = "train",
    val_split: str | list[str] | None = "validation",
    test_split: str | list[str] | None = "test",
    fold: int | None = None,
    val_fold: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """The clips of each role (``train``, ``val``, ``test``) under the dataset's protocol.

    k-fold (``fold`` set): test on ``fold``; validate on ``val_fold`` if given, else on a
    stratified ``val_fraction`` of the training folds; train on the rest. Checkpoints are
    therefore never chosen on the test fold. Otherwise: the named splits (a role whose
    split is ``None`` is empty); a store with the training split but no validation split
    (and no other split that could be meant) validates on a stratified ``val_fraction`` of
    the training split, and says so in the log.
    """
    if fold is not None:
        test = store.indices(folds=[fold])
        if val_fold is not None:
            val = store.indices(folds=[val_fold])
            train = store.indices(exclude_folds=[fold, val_fold])
        else:
            pool = store.indices(exclude_folds=[fold])
            pool = pool[store.folds[pool] >= 0]  # clips without a fold belong to no protocol
            train, val = stratified_split(store, pool, val_fraction, seed)
        train = train[store.folds[train] >= 0]
        return {"train": train, "val": val, "test": test}
    roles = {"train": train_split, "val": val_split, "test": test_split}
    if val_split is not None and _carve_validation(store, train_split, val_split, test_split):
        train = store.indices(split=train_split)
        test = store.indices(split=test_split) if test_split is not None else np.zeros(0, np.int64)
        if val_fraction <= 0:
            log.info("%s has no %s split and data.val_fraction is 0: training without validation", store.path, val_split)
            return {"train": train, "val": np.zeros(0, np.int64), "test": test}
        train, val = stratified_split(store, train, val_fraction, seed)
        log.info(
            "%s has no %r split: validating on a stratified %g%% of %r (%d clips; data.val_fraction=%g), training on the other %d",
            store.path, val_split, 100 * val_fraction, train_split, len(val), val_fraction, len(train),
        )
        return {"train": train, "val": val, "test": test}
    return {
        role: store.indices(split=split) if split is not None else np.zeros(0, np.int64)
        for role, split in roles.items()
    }


def _names(split: str | list[str] | None) -> list[str]:
    return [] if split is None else [split] if isinstance(split, str) else list(split)


def _carve_validation(
    store: Store, train_split: str | list[str] | None, val_split: str | list[str], test_split: str | list[str] | None
) -> bool:
    """True when the validation split is to come out of the training split: the store has
    the training split but none of the validation split's names, and no other split that
    could be meant instead (train/test-only datasets, e.g. from the Hub or save_to_disk)."""
    have = set(store.split_names())
    wanted = set(_names(val_split))
    if not wanted or wanted & have or not _names(train_split) or not set(_names(train_split)) <= have:
        return False
    return have <= set(_names(train_split)) | set(_names(test_split))  # else: a typo, or a split to name


def stratified_split(store: Store, pool: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``pool`` into (rest, held-out) with about ``fraction`` of each class held out."""
    if fraction <= 0:
        return pool, np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    # multi-label: stratify on the first positive class, which is good enough for a val split
    keys = store.targets[pool] if not store.multi_label else store.targets[pool].argmax(1)
    held = []
    for c in np.unique(keys):
        members = pool[keys == c]
        k = int(round(len(members) * fraction))
        held.append(rng.permutation(members)[:k])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    return np.setdiff1d(pool, held_out), held_out
