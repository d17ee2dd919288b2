"""The classification head: dropout on the embedding, then a linear layer.

A subclass of ``nn.Linear`` rather than a ``Sequential``: dropout has no state, so the
head's state-dict keys stay ``<name>.weight`` and ``<name>.bias``, the names published
checkpoints and earlier audioclf bundles use.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClassifierHead"]


class ClassifierHead(nn.Linear):
    """``(batch, in_features)`` embedding -> dropout(``dropout``) -> logits ``(batch, out_features)``."""

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.0) -> None:
        super().__init__(in_features, out_features)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.dropout(x))
