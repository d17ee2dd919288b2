"""Activations by name, so that model specs and configs can pick one with a string.

Every entry is a factory ``fn(channels) -> nn.Module``. Plain activations ignore
``channels``; gated ones (``swiglu``) need it to size their projections. All of them keep
the shape of their input, so a spec can swap one for another without touching widths.

``swiglu`` is the SwiGLU unit of Shazeer, "GLU Variants Improve Transformer"
(arXiv:2002.05202): ``Swish(x W) * (x V)``, with ``W`` and ``V`` learned projections of
the channel dimension (a 1x1 convolution on feature maps).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn

from audioclf.errors import ConfigError

__all__ = ["ACTIVATIONS", "SwiGLU", "create_activation", "list_activations"]


class SwiGLU(nn.Module):
    """SwiGLU over the channel dimension ``dim``: ``silu(x W + b) * (x V + c)``.

    Both projections map ``channels -> channels`` and are held as one linear layer of
    ``2 * channels`` outputs. Works on ``(B, C)``, ``(B, C, T)`` and ``(B, C, T, F)``
    (``dim=1``); the output has the input's shape.
    """

    def __init__(self, channels: int, dim: int = 1) -> None:
        super().__init__()
        self.channels = channels
        self.dim = dim
        self.proj = nn.Linear(channels, 2 * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[self.dim] != self.channels:
            raise ValueError(
                f"SwiGLU built for {self.channels} channels got {x.shape[self.dim]} "
                f"(input shape {tuple(x.shape)}, channel dim {self.dim})"
            )
        # nn.Linear acts on the last dimension: move the channels there and back.
        h = self.proj(x.movedim(self.dim, -1))
        gate, value = h.chunk(2, dim=-1)
        return (F.silu(gate) * value).movedim(-1, self.dim)


# Read-only: no caller can add to or change the module-level table by accident.
ACTIVATIONS: Mapping[str, Callable[[int], nn.Module]] = MappingProxyType(
    {
        "gelu": lambda channels: nn.GELU(),
        "relu": lambda channels: nn.ReLU(),
        # 0.01: PyTorch's (and the block-spec seed's) default slope
        "lrelu": lambda channels: nn.LeakyReLU(0.01),
        "silu": lambda channels: nn.SiLU(),
        "swiglu": lambda channels: SwiGLU(channels),
    }
)


def list_activations() -> list[str]:
    """Names accepted by :func:`create_activation`, sorted."""
    return sorted(ACTIVATIONS)


def create_activation(name: str, channels: int) -> nn.Module:
    """The activation ``name`` for inputs with ``channels`` channels (dim 1)."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; allowed: {', '.join(list_activations())}")
    return ACTIVATIONS[name](channels)
