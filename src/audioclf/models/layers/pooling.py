"""Global pooling heads: collapse a ``(B, C, T, F)`` feature map to a clip vector.

Modes combine average and max pooling, as compared in the PANNs paper (Kong et al.,
arXiv:1912.10211): ``avg``, ``max``, their sum ``sum`` and their product ``mul``.
Average pooling credits sounds that last; max pooling credits short events; the sum
keeps both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
from torch import nn

from audioclf.errors import ConfigError

__all__ = ["POOLING_MODES", "GlobalPool", "freq_mean_time_mean_max"]

# mode -> how to merge the mean and the max over the pooled dimensions
POOLING_MODES: Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = (
    MappingProxyType(
        {
            "avg": lambda mean, peak: mean,
            "max": lambda mean, peak: peak,
            "sum": lambda mean, peak: mean + peak,
            "mul": lambda mean, peak: mean * peak,
        }
    )
)


class GlobalPool(nn.Module):
    """Pool ``(B, C, T, F)`` over time (and frequency unless ``flat``).

    * ``flat=False``: pool over time and frequency -> ``(B, C)``.
    * ``flat=True``: keep frequency, flattening channels and bins into one feature axis,
      and pool over time only -> ``(B, C * F)``; useful when the map has few bins left
      and where a sound sits in frequency matters.
    """

    def __init__(self, mode: str = "avg", flat: bool = False) -> None:
        super().__init__()
        if mode not in POOLING_MODES:
            raise ConfigError(
                f"unknown pooling mode {mode!r}; allowed: {', '.join(sorted(POOLING_MODES))}"
            )
        self.mode = mode
        self.flat = flat

    def output_dim(self, channels: int, freq: int) -> int:
        return channels * freq if self.flat else channels

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, flat={self.flat}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"GlobalPool expects (B, C, T, F), got shape {tuple(x.shape)}")
        if self.flat:
            # (B, C, T, F) -> (B, C*F, T): each (channel, bin) pair becomes one feature
            x = x.permute(0, 1, 3, 2).flatten(1, 2)
            dims: tuple[int, ...] = (2,)
        else:
            dims = (2, 3)
        merge = POOLING_MODES[self.mode]
        return merge(x.mean(dim=dims), x.amax(dim=dims))


def freq_mean_time_mean_max(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, F)`` -> ``(B, C)``: mean over frequency, then mean plus max over time.

    The clip pooling of PANNs. Unlike ``GlobalPool("sum")``, which takes the mean and the
    max over time and frequency together, the max here picks the peak frame of the
    frequency-averaged map.
    """
    x = x.mean(dim=3)  # over frequency
    return x.mean(dim=2) + x.amax(dim=2)  # over time: average plus peak
