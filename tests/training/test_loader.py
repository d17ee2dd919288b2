"""The training loader given a mid-epoch state continues with the batches not trained on
yet, in the training process and with worker processes, and the next epoch is whole."""

from __future__ import annotations

import pytest
from torch.utils.data import Dataset

from audioclf.data.sampling import EpochShuffleSampler, ShardBatchSampler
from audioclf.training.loader import TrainLoader, _SkippingSampler

CLIPS, BATCH = 12, 3  # 4 batches an epoch


class _Positions(Dataset):
    """Item ``i`` is ``i``: a batch shows which positions it holds."""

    def __len__(self) -> int:
        return CLIPS

    def __getitem__(self, i: int) -> int:
        return i


def _loader(workers: int) -> TrainLoader:
    batches = _SkippingSampler(ShardBatchSampler(EpochShuffleSampler(CLIPS, seed=5), BATCH))
    return TrainLoader(_Positions(), batch_sampler=batches, num_workers=workers, persistent_workers=workers > 0)


def _epoch(loader: TrainLoader) -> list[list[int]]:
    return [b.tolist() for b in loader]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_restored_loader_skips_the_batches_trained_on(workers: int) -> None:
    whole = _loader(0)
    whole.batch_sampler.set_epoch(1)
    epoch1 = _epoch(whole)
    whole.batch_sampler.set_epoch(2)
    epoch2 = _epoch(whole)
    assert len(epoch1) == 4 and sorted(i for b in epoch1 for i in b) == list(range(CLIPS))

    loader = _loader(workers)
    # what a checkpoint taken after the first batch of epoch 1 holds
    loader.load_state_dict({"epoch": 1, "batches_done": 1, "batches_per_epoch": 4, "sampler": {"epoch": 1, "seed": 5}})
    assert _epoch(loader) == epoch1[1:]
    loader.batch_sampler.set_epoch(2)  # as Lightning does at the next epoch's start
    assert _epoch(loader) == epoch2  # whole, with the workers kept from the resumed epoch


@pytest.mark.parametrize("workers", [0, 1])
def test_an_epoch_end_state_starts_the_next_epoch_whole(workers: int) -> None:
    whole = _loader(0)
    whole.batch_sampler.set_epoch(3)
    loader = _loader(workers)
    loader.load_state_dict({"epoch": 2, "batches_done": 4, "batches_per_epoch": 4, "sampler": {"epoch": 2, "seed": 5}})
    assert loader.batch_sampler.epoch == 3
    assert _epoch(loader) == _epoch(whole)
