"""Samplers, distributed-aware: epoch shuffle, PANNs-style balanced, evaluation shards,
and the batch layout that gives every process the same number of batches.

AudioSet's classes range from a million clips (Speech, Music) to a few dozen; sampling
clips uniformly trains the rare classes almost never. The balanced sampler visits the
classes in turn (a shuffled round-robin over classes) and draws, for each class, the
next clip from that class's own shuffled queue, so each class is seen equally often.

Under DDP every process draws the same epoch order from ``(seed, epoch)`` and takes every
``world_size``-th item of it (rank ``r`` takes items ``r, r + W, ...``), so the ranks see
disjoint parts that together are exactly the epoch: each clip once, no padding. Training
needs one more thing: every rank must run the same number of optimiser steps (a rank
with one batch more would wait forever for the others' gradients), and no batch may hold
a single clip (batch norm cannot train on it). :class:`ShardBatchSampler` lays the
rank's share out in batches so that both hold (see :func:`shard_batches`).

``rank``/``world_size`` left ``None`` are read from ``torch.distributed`` when the
sampler is used (Lightning initialises the process group before the first batch).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from audioclf.errors import DataError


def dist_rank_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the given values, else the initialised process group's,
    else ``(0, 1)``."""
    if rank is not None and world_size is not None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        return int(rank), int(world_size)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _Sharded:
    """``rank``/``world_size`` given, or read from ``torch.distributed`` when used."""

    _rank: int | None
    _world_size: int | None

    @property
    def rank(self) -> int:
        return dist_rank_world(self._rank, self._world_size)[0]

    @property
    def world_size(self) -> int:
        return dist_rank_world(self._rank, self._world_size)[1]

    def _init_shard(self, rank: int | None, world_size: int | None) -> None:
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither (read from torch.distributed)")
        if rank is not None:
            dist_rank_world(rank, world_size)  # checks the pair
        self._rank, self._world_size = rank, world_size


def _share(n: int, rank: int, world_size: int) -> int:
    """How many of ``n`` items rank ``rank`` takes when it takes every ``world_size``-th."""
    return len(range(rank, n, world_size))


class BalancedSampler(_Sharded, Sampler[int]):
    """Yields positions ``0..len(targets)-1``, classes visited equally often.

    ``targets``: ``(clips, classes)`` 0/1 matrix of the clips in the dataset, in dataset
    order. ``num_samples`` per epoch defaults to the number of clips: the draw of the
    epoch, all ranks together. With several processes (DDP), each rank takes every
    ``world_size``-th draw of one shared sequence, so the ranks split the epoch's draw
    between them without duplicates. ``set_epoch`` reseeds;
    ``state_dict``/``load_state_dict`` save where the stream is for resume.
    """

    def __init__(
        self,
        targets: np.ndarray,
        num_samples: int | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        targets = np.asarray(targets)
        if targets.ndim != 2:
            raise ValueError(f"targets must be a (clips, classes) matrix, got shape {targets.shape}")
        self.class_members = [np.flatnonzero(targets[:, c]) for c in range(targets.shape[1])]
        self.classes = np.array([c for c, m in enumerate(self.class_members) if m.size])
        if self.classes.size == 0:
            raise DataError("balanced sampler: no class has any clip")
        self.num_samples = num_samples or targets.shape[0]
        self.seed = seed
        self._init_shard(rank, world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return _share(self.num_samples, self.rank, self.world_size)

    def _stream(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        queues = {int(c): iter(()) for c in self.classes}
        while True:
            for c in rng.permutation(self.classes):
                c = int(c)
                try:
                    yield int(next(queues[c]))
                except StopIteration:
                    queues[c] = iter(rng.permutation(self.class_members[c]))
                    yield int(next(queues[c]))

    def order(self) -> np.ndarray:
        """The epoch's whole draw (every rank's), ``(num_samples,)`` positions."""
        stream = self._stream()
        return np.fromiter((next(stream) for _ in range(self.num_samples)), dtype=np.int64, count=self.num_samples)

    def __iter__(self) -> Iterator[int]:
        rank, world = dist_rank_world(self._rank, self._world_size)
        return iter(self.order()[rank::world].tolist())

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.seed = int(state["seed"])


class EpochShuffleSampler(_Sharded, Sampler[int]):
    """A new permutation of ``0..n-1`` every epoch, drawn from ``(seed, epoch)`` only.

    Unlike ``shuffle=True`` (which draws from torch's global generator, whose state depends
    on everything that ran before), the order of epoch ``e`` is the same whether the run
    got there directly or was resumed, and the same on every rank: rank ``r`` of ``W``
    yields items ``r, r + W, ...`` of it, so across ranks each clip comes once an epoch.
    """

    def __init__(self, n: int, seed: int = 0, rank: int | None = None, world_size: int | None = None) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self._init_shard(rank, world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return _share(self.n, self.rank, self.world_size)

    def order(self) -> np.ndarray:
        """The epoch's whole permutation (every rank's), ``(n,)``."""
        return np.random.default_rng([self.seed, self.epoch, 0x5EED]).permutation(self.n)

    def __iter__(self) -> Iterator[int]:
        rank, world = dist_rank_world(self._rank, self._world_size)
        return iter(self.order()[rank::world].tolist())

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.seed = int(state["seed"])


class ShardSampler(_Sharded, Sampler[int]):
    """Evaluation order: positions ``rank, rank + W, ...`` of ``0..n-1``, in order.

    No padding: when ``n`` does not divide by the number of ranks the shards differ by one
    clip, and no clip is evaluated twice (Lightning's ``DistributedSampler`` repeats clips
    to even the shards out, and those repeats would count twice in the metrics).
    """

    def __init__(self, n: int, rank: int | None = None, world_size: int | None = None) -> None:
        self.n = int(n)
        self._init_shard(rank, world_size)

    def __len__(self) -> int:
        return _share(self.n, self.rank, self.world_size)

    def __iter__(self) -> Iterator[int]:
        rank, world = dist_rank_world(self._rank, self._world_size)
        return iter(range(rank, self.n, world))


def shard_batches(n: int, batch_size: int, rank: int, world_size: int) -> list[list[int]]:
    """Rank ``rank``'s batches of an epoch order of ``n`` items, as positions into it.

    The rank takes items ``rank, rank + W, ...`` (so the ranks' batches together hold each
    position exactly once) and cuts them into batches of ``batch_size``. Read globally,
    every ``W * batch_size`` consecutive items of the order form one step of all ranks.
    Every rank gets the same number of batches and none gets a batch of fewer than two
    items: when the last step has fewer than ``2 * W`` items (some rank would get one clip,
    or none), each rank's share of it goes into its previous batch instead (a batch of up
    to ``batch_size + 2``). With one process this merges a lone last clip into the batch
    before it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if n < 2 * world_size:
        raise DataError(
            f"{n} training clips are too few for {world_size} process(es): every process needs a batch of at least 2"
        )
    stream = list(range(rank, n, world_size))
    steps = shard_batch_count(n, batch_size, world_size)
    batches = [stream[b * batch_size : (b + 1) * batch_size] for b in range(steps - 1)]
    batches.append(stream[(steps - 1) * batch_size :])
    return batches


def shard_batch_count(n: int, batch_size: int, world_size: int) -> int:
    """The number of batches :func:`shard_batches` gives every rank."""
    steps = -(-n // (world_size * batch_size))  # ceil
    tail = n - (steps - 1) * world_size * batch_size  # items in the last step, all ranks
    return steps - 1 if tail < 2 * world_size and steps > 1 else steps


class ShardBatchSampler(_Sharded, Sampler[list[int]]):
    """Training batches: this rank's share of ``sampler``'s epoch order (its ``order()``,
    the same on every rank), laid out by :func:`shard_batches`, so every rank runs the
    same number of steps and each clip of the order is trained on exactly once.

    Forwards ``set_epoch``, ``epoch`` and ``state_dict``/``load_state_dict`` to the
    sampler; its rank and world size are the sampler's.
    """

    def __init__(self, sampler: EpochShuffleSampler | BalancedSampler, batch_size: int) -> None:
        self.sampler = sampler
        self.batch_size = int(batch_size)

    @property
    def rank(self) -> int:
        return self.sampler.rank

    @property
    def world_size(self) -> int:
        return self.sampler.world_size

    @property
    def epoch(self) -> int:
        return int(self.sampler.epoch)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def _n(self) -> int:
        return int(getattr(self.sampler, "num_samples", None) or self.sampler.n)

    def __len__(self) -> int:
        return shard_batch_count(self._n(), self.batch_size, self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = self.rank, self.world_size
        order = self.sampler.order()
        for batch in shard_batches(len(order), self.batch_size, rank, world):
            yield order[batch].tolist()

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)
