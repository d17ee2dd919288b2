"""Samplers: the PANNs-style balanced sampler for multi-label data.

AudioSet's classes range from a million clips (Speech, Music) to a few dozen; sampling
clips uniformly trains the rare classes almost never. The balanced sampler visits the
classes in turn (a shuffled round-robin over classes) and draws, for each class, the
next clip from that class's own shuffled queue, so each class is seen equally often.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class BalancedSampler(Sampler[int]):
    """Yields positions ``0..len(targets)-1``, classes visited equally often.

    ``targets``: ``(clips, classes)`` 0/1 matrix of the clips in the dataset, in dataset
    order. ``num_samples`` per epoch defaults to the number of clips. With several
    processes (DDP), each rank takes every ``world_size``-th draw of one shared sequence,
    so the ranks see disjoint parts of the same balanced stream. ``set_epoch`` reseeds;
    ``state_dict``/``load_state_dict`` save where the stream is for resume.
    """

    def __init__(
        self,
        targets: np.ndarray,
        num_samples: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        targets = np.asarray(targets)
        if targets.ndim != 2:
            raise ValueError(f"targets must be a (clips, classes) matrix, got shape {targets.shape}")
        self.class_members = [np.flatnonzero(targets[:, c]) for c in range(targets.shape[1])]
        self.classes = np.array([c for c, m in enumerate(self.class_members) if m.size])
        if self.classes.size == 0:
            raise ValueError("balanced sampler: no class has any clip")
        self.num_samples = num_samples or targets.shape[0]
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.num_samples - self.rank + self.world_size - 1) // self.world_size

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

    def __iter__(self) -> Iterator[int]:
        stream = self._stream()
        for k in range(self.num_samples):
            pos = next(stream)
            if k % self.world_size == self.rank:
                yield pos

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.seed = int(state["seed"])


class EpochShuffleSampler(Sampler[int]):
    """A new permutation of ``0..n-1`` every epoch, drawn from ``(seed, epoch)`` only.

    Unlike ``shuffle=True`` (which draws from torch's global generator, whose state depends
    on everything that ran before), the order of epoch ``e`` is the same whether the run
    got there directly or was resumed.
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch, 0x5EED])
        return iter(rng.permutation(self.n).tolist())

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.seed = int(state["seed"])
