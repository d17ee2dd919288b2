"""DropBlock for 2-D feature maps (Ghiasi, Lin and Le, 2018, arXiv:1810.12890).

Dropout drops single units, but neighbouring units of a convolutional feature
map are strongly correlated, so the information a dropped unit carried leaks
through its neighbours. DropBlock drops contiguous ``block_size`` rectangles
instead, which removes a whole region of the (time, frequency) plane and forces
the network to look elsewhere.

Following Algorithm 1 of the paper:

1. ``gamma`` (the rate of block centres) is chosen so that the expected
   fraction of dropped units is ``drop_prob``::

       gamma = drop_prob / (bt * bf) * (T * F) / ((T - bt + 1) * (F - bf + 1))

2. Block seeds are drawn from Bernoulli(gamma) only where a whole block fits
   inside the map, and each seed is grown into a ``bt x bf`` block.
3. The kept units are rescaled by ``count(mask) / count_ones(mask)`` so the
   expected activation is unchanged (as inverted dropout does).

Blocks are drawn independently for every example and channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audioclf.errors import ConfigError

__all__ = ["DropBlock2d", "RandomDropBlock"]


class DropBlock2d(nn.Module):
    """Drop contiguous ``block_size`` blocks of a ``(B, C, T, F)`` feature map.

    Args:
        drop_prob: expected fraction of units dropped, in ``[0, 1)``. ``0``
            makes the layer an identity.
        block_size: ``(time, frequency)`` size of a dropped block, or one int
            for a square block. A block larger than the map is clipped to it.

    The layer is an identity in eval mode. Shapes: input ``(B, C, T, F)``,
    output ``(B, C, T, F)``.
    """

    def __init__(self, drop_prob: float, block_size: tuple[int, int] | int) -> None:
        super().__init__()
        if not 0.0 <= float(drop_prob) < 1.0:
            raise ConfigError(f"DropBlock2d: drop_prob must be in [0, 1), got {drop_prob!r}")
        if isinstance(block_size, int):
            block_size = (block_size, block_size)
        block_size = tuple(int(b) for b in block_size)
        if len(block_size) != 2 or min(block_size) < 1:
            raise ConfigError(
                f"DropBlock2d: block_size must be two positive ints (time, freq), got {block_size!r}"
            )
        self.drop_prob = float(drop_prob)
        self.block_size: tuple[int, int] = block_size  # type: ignore[assignment]

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}"

    def block_mask(self, x: torch.Tensor) -> torch.Tensor:
        """Sample a keep-mask for ``x``: ``(B, C, T, F)`` of 0 (dropped) / 1 (kept).

        Exposed separately so that tests and callers can inspect the blocks.
        """
        if x.dim() != 4:
            raise ValueError(f"DropBlock2d expects (B, C, T, F), got shape {tuple(x.shape)}")
        b, c, t, f = x.shape
        # A block cannot be bigger than the map it is dropped from.
        bt, bf = min(self.block_size[0], t), min(self.block_size[1], f)
        valid_t, valid_f = t - bt + 1, f - bf + 1
        gamma = self.drop_prob / (bt * bf) * (t * f) / (valid_t * valid_f)
        # Seeds only where the whole block fits, so every block has full size.
        seeds = torch.bernoulli(
            torch.full((b, c, valid_t, valid_f), min(gamma, 1.0), device=x.device, dtype=x.dtype)
        )
        # Zero-padding by (block - 1) on both sides then a stride-1 max-pool of
        # the block size grows a seed at (i, j) into rows i..i+bt-1 and columns
        # j..j+bf-1, and brings the map back to (T, F).
        dropped = F.max_pool2d(
            F.pad(seeds, (bf - 1, bf - 1, bt - 1, bt - 1)),
            kernel_size=(bt, bf),
            stride=1,
        )
        return 1.0 - dropped

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, F)`` -> ``(B, C, T, F)``; identity in eval or when drop_prob == 0."""
        if not self.training or self.drop_prob == 0.0:
            return x
        mask = self.block_mask(x)
        kept = mask.sum()
        # Renormalise so the expected activation is unchanged; if (very rarely)
        # everything was dropped, return zeros instead of dividing by zero.
        scale = mask.numel() / kept.clamp_min(1.0)
        return x * mask * scale


class RandomDropBlock(nn.Module):
    """:class:`DropBlock2d` applied to each example with probability ``p`` (training only).

    The one per-example DropBlock: the block-spec networks use it between blocks and
    ``task.spec_augment.dropblock`` on the log-mel. Dropped cells are 0 and kept cells
    are rescaled, as in the paper, so it suits zero-mean (normalised) inputs. Only the
    chosen examples go through DropBlock, so its renormalisation is computed over them
    alone. ``(B, T, F)`` or ``(B, C, T, F)`` in, the same shape out.
    """

    def __init__(self, p: float, drop_prob: float, block_size: tuple[int, int] | int) -> None:
        super().__init__()
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"RandomDropBlock: p must be in [0, 1], got {p}")
        self.p = p
        self.dropblock = DropBlock2d(drop_prob, block_size)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        y = x.unsqueeze(1) if x.dim() == 3 else x
        chosen = torch.rand(y.shape[0], device=y.device) < self.p
        if not bool(chosen.any()):
            return x
        out = y.clone()
        out[chosen] = self.dropblock(y[chosen])
        return out.view_as(x)
