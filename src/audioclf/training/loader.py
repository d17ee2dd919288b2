"""The training loader, resumable mid-epoch.

A run killed mid-epoch and resumed must continue with the batches it had not trained on,
in the order it would have seen them. Lightning saves a stateful loader's ``state_dict`` in
every checkpoint; these pieces make that state mean "epoch e, b batches done" and act on it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Sampler

log = logging.getLogger(__name__)


class _SkippingSampler(Sampler[Any]):
    """Wraps the training batch sampler: forwards ``set_epoch``/``state_dict``, and can
    leave out the first ``n`` batches of its next pass that draws a batch (a run resumed
    mid-epoch continues with the batches it had not trained on yet)."""

    def __init__(self, base: Sampler[Any]) -> None:
        self.base = base
        self.skip = 0

    @property
    def epoch(self) -> int:
        return int(getattr(self.base, "epoch", 0))

    @property
    def sampler(self) -> Any:
        """The index sampler inside: Lightning sets the epoch on ``batch_sampler.sampler``."""
        return getattr(self.base, "sampler", self.base)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self) -> Iterator[Any]:
        # A generator, so the skip is taken by the first pass that draws a batch, not by
        # the first call of iter(): torch's multi-worker loader iterator calls iter() on
        # its batch sampler twice as it starts (in _BaseDataLoaderIter.__init__ and again
        # in _reset) and draws only from the second. Were the skip taken at iter(), the
        # discarded first pass would take it and a run resumed mid-epoch with workers would
        # train again on the batches it had already trained on.
        skip, self.skip = self.skip, 0
        it = iter(self.base)
        for _ in range(skip):
            next(it, None)
        yield from it

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict() if hasattr(self.base, "state_dict") else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and hasattr(self.base, "load_state_dict"):
            self.base.load_state_dict(state)


class TrainLoader(DataLoader):
    """The training loader, resumable mid-epoch: Lightning saves its ``state_dict`` in
    every checkpoint and hands it back on resume before the first batch is drawn.

    The state is the epoch and how many batches of it were trained on (kept up to date by
    :class:`_LoaderProgress`, which also restores it); loading it sets the epoch on the
    batch sampler and the dataset (before any worker starts) and skips the batches already
    trained on. Batches come from a ``batch_sampler`` (a :class:`_SkippingSampler` around
    :class:`~audioclf.data.sampling.ShardBatchSampler`); under DDP every rank holds the
    same state (same epoch, same number of batches done), so rank 0's checkpoint resumes
    them all.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches_done = 0
        self.batches_per_epoch = 0

    def state_dict(self) -> dict[str, Any]:
        sampler = self.batch_sampler
        return {
            "epoch": int(getattr(sampler, "epoch", 0)),
            "batches_done": int(self.batches_done),
            "batches_per_epoch": int(self.batches_per_epoch),
            "sampler": sampler.state_dict() if hasattr(sampler, "state_dict") else {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        sampler = self.batch_sampler
        if state.get("sampler") and hasattr(sampler, "load_state_dict"):
            sampler.load_state_dict(state["sampler"])
        if done >= int(state.get("batches_per_epoch") or len(self)):
            epoch, done = epoch + 1, 0  # an epoch-end checkpoint: the next epoch starts afresh
        for obj in (sampler, self.dataset):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        if isinstance(sampler, _SkippingSampler):
            sampler.skip = done
        self.batches_done = done
        self.batches_per_epoch = int(state.get("batches_per_epoch") or 0)
        if done:
            log.info("resuming mid-epoch: epoch %d continues after %d batches", epoch, done)


class _LoaderProgress(L.Callback):
    """Keeps :class:`TrainLoader`'s count of trained batches current for its state, and
    gives the loader its saved state back on resume.

    Lightning would restore a stateful loader itself, but it builds the loader early when
    the scheduler asks for the number of steps and then skips its own restore; so it is
    done here, when the checkpoint is read, which is before any batch is drawn.
    """

    def __init__(self, loader: TrainLoader) -> None:
        self.loader = loader

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader")
        if states:
            self.loader.load_state_dict(states[0])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # on_train_start, not on_train_epoch_start: Lightning skips the latter for the epoch
        # a run resumes in, and checkpoints of that epoch must still record its length
        self.loader.batches_per_epoch = int(trainer.num_training_batches)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.loader.batches_done = batch_idx + 1
