import numpy as np
import pytest

from audioclf.data.sampling import BalancedSampler


def _imbalanced() -> np.ndarray:
    # class 0 on 900 clips, class 1 on 90, class 2 on 10; clip 999 has classes 1 and 2
    t = np.zeros((1000, 3), np.uint8)
    t[:900, 0] = 1
    t[900:990, 1] = 1
    t[990:, 2] = 1
    t[999, 1] = 1
    return t


def test_classes_are_drawn_equally_often() -> None:
    t = _imbalanced()
    drawn = list(BalancedSampler(t, num_samples=3000, seed=0))
    per_class = t[drawn].sum(0)
    assert per_class.min() / per_class.max() > 0.9  # uniform sampling would give 90:9:1
    assert set(drawn) >= set(range(990, 1000))  # every rare clip is visited


def test_epochs_differ_and_are_reproducible() -> None:
    s = BalancedSampler(_imbalanced(), num_samples=100, seed=3)
    a = list(s)
    s.set_epoch(1)
    b = list(s)
    s.set_epoch(0)
    assert a != b and list(s) == a
    state = s.state_dict()
    s2 = BalancedSampler(_imbalanced(), num_samples=100)
    s2.load_state_dict(state)
    assert list(s2) == a


def test_ranks_split_one_stream() -> None:
    t = _imbalanced()
    full = list(BalancedSampler(t, num_samples=101, seed=0))
    parts = [list(BalancedSampler(t, num_samples=101, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert parts[0] == full[0::2] and parts[1] == full[1::2]
    assert len(parts[0]) == 51 and len(parts[1]) == 50


def test_bad_targets() -> None:
    with pytest.raises(ValueError, match="matrix"):
        BalancedSampler(np.zeros(5))
    with pytest.raises(ValueError, match="no class"):
        BalancedSampler(np.zeros((5, 2)))


# --- distributed-aware sampling ---------------------------------------------------------

from audioclf.data.sampling import (  # noqa: E402
    EpochShuffleSampler,
    ShardBatchSampler,
    ShardSampler,
    shard_batches,
)


def test_shard_batches_hand_example() -> None:
    # 9 items, 2 ranks, batches of 2: the last step would hold one item (rank 0's lone
    # clip, nothing for rank 1), so each rank's share of it joins its previous batch
    assert shard_batches(9, 2, 0, 2) == [[0, 2], [4, 6, 8]]
    assert shard_batches(9, 2, 1, 2) == [[1, 3], [5, 7]]
    # one process: batches of 4, a lone last clip merged into the batch before it
    assert shard_batches(9, 4, 0, 1) == [[0, 1, 2, 3], [4, 5, 6, 7, 8]]
    assert shard_batches(10, 4, 0, 1) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="too few"):
        shard_batches(3, 4, 0, 2)


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("n", [6, 7, 11, 12, 13, 25, 31])
@pytest.mark.parametrize("batch_size", [2, 3, 4])
def test_shard_batches_cover_once_with_equal_step_counts(world: int, n: int, batch_size: int) -> None:
    per_rank = [shard_batches(n, batch_size, r, world) for r in range(world)]
    flat = [i for batches in per_rank for b in batches for i in b]
    assert sorted(flat) == list(range(n))  # every position exactly once, across ranks
    assert len({len(b) for b in per_rank}) == 1  # the same number of steps on every rank
    assert min(len(b) for batches in per_rank for b in batches) >= 2  # no lone clip
    assert max(len(b) for batches in per_rank for b in batches) <= batch_size + 2


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("n", [10, 11, 13])
def test_shuffle_sampler_ranks_partition_one_permutation(world: int, n: int) -> None:
    samplers = [EpochShuffleSampler(n, seed=5, rank=r, world_size=world) for r in range(world)]
    for epoch in (0, 3):
        for s in samplers:
            s.set_epoch(epoch)
        parts = [list(s) for s in samplers]
        assert sorted(i for p in parts for i in p) == list(range(n))  # each clip once an epoch
        assert [len(p) for p in parts] == [len(s) for s in samplers]
        assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
        # the same permutation on every rank: rank r holds items r, r + W, ... of it
        whole = list(EpochShuffleSampler(n, seed=5, rank=0, world_size=1).order()) if epoch == 0 else None
        if whole is not None:
            assert all(parts[r] == whole[r::world] for r in range(world))
    a = list(samplers[0])
    samplers[0].set_epoch(4)
    assert list(samplers[0]) != a


@pytest.mark.parametrize("world", [2, 3])
def test_balanced_sampler_splits_the_draw_across_ranks(world: int) -> None:
    t = _imbalanced()
    full = list(BalancedSampler(t, num_samples=301, seed=1))
    parts = [list(BalancedSampler(t, num_samples=301, seed=1, rank=r, world_size=world)) for r in range(world)]
    assert sum(len(p) for p in parts) == 301
    # disjoint positions of one shared draw: interleaving the parts gives the draw back
    rebuilt = [None] * 301
    for r, p in enumerate(parts):
        rebuilt[r::world] = p
    assert rebuilt == full


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("n", [7, 12])
def test_shard_batch_sampler_covers_the_epoch(world: int, n: int) -> None:
    bs = [ShardBatchSampler(EpochShuffleSampler(n, seed=2, rank=r, world_size=world), 2) for r in range(world)]
    for epoch in (0, 1):
        for b in bs:
            b.set_epoch(epoch)
        batches = [list(b) for b in bs]
        assert [len(x) for x in batches] == [len(b) for b in bs] and len({len(b) for b in bs}) == 1
        assert sorted(i for x in batches for batch in x for i in batch) == list(range(n))
    assert bs[0].epoch == 1 and bs[0].state_dict() == {"epoch": 1, "seed": 2}


@pytest.mark.parametrize("world", [2, 3])
def test_shard_sampler_splits_without_padding(world: int) -> None:
    parts = [list(ShardSampler(11, rank=r, world_size=world)) for r in range(world)]
    assert sorted(i for p in parts for i in p) == list(range(11))  # no clip twice
    assert parts[0] == list(range(0, 11, world))
    assert list(ShardSampler(4)) == [0, 1, 2, 3]  # no process group: the whole set
    with pytest.raises(ValueError, match="rank"):
        ShardSampler(4, rank=2, world_size=2)
