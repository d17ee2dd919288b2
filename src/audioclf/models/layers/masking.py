"""SpecAugment masks (Park et al., arXiv:1904.08779, without time warping).

The one SpecAugment of audioclf: ``task.spec_augment`` builds it on the frontend's output
(filled with the example's mean), and PANNs use it inside their model with their published
setting (two time stripes below 64 frames, two frequency stripes below 8 bins, filled with
zeros).
"""

from __future__ import annotations

import torch
from torch import nn

from audioclf.errors import ConfigError

__all__ = ["FILLS", "SpecAugment", "as_btf", "band_mask"]

FILLS = ("mean", "zero")


def band_mask(
    batch: int,
    size: int,
    max_width: int,
    count: int,
    device: torch.device,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``count`` bands per example, of width uniform in [0, max_width) and start uniform
    over the positions where the band fits. Returns bool ``(batch, size)``, True = masked."""
    max_width = min(max_width, size + 1)  # a band cannot be wider than the axis
    gen_device = generator.device if generator is not None else device
    widths = torch.randint(0, max_width, (batch, count), device=gen_device, generator=generator)
    starts = (
        torch.rand((batch, count), device=gen_device, generator=generator) * (size - widths + 1)
    ).floor()
    widths, starts = widths.to(device), starts.to(device).long()
    pos = torch.arange(size, device=device).view(1, 1, size)
    inside = (pos >= starts.unsqueeze(-1)) & (pos < (starts + widths).unsqueeze(-1))
    return inside.any(dim=1)


class SpecAugment(nn.Module):
    """SpecAugment-style time and frequency masking (Park et al. 2019, without warping).

    Each example is augmented with probability ``p``; an augmented example gets
    ``time_masks`` time masks of width uniform in [0, time_mask_width) frames and
    ``freq_masks`` frequency masks of width uniform in [0, freq_mask_width) bins.
    ``fill`` is what masked cells become: ``"mean"`` (the default), the example's mean
    over time and frequency before masking (on a log-mel 0 is not silence, and the mean
    leaves the input's statistics nearly unchanged); or ``"zero"``, as PANNs publish it
    (their log-mel is batch-normalised first, so 0 is its mean level).

    Input ``(B, T, F)`` or ``(B, 1, T, F)``; output of the same shape. Identity in eval.
    """

    def __init__(
        self,
        time_mask_width: int,
        time_masks: int,
        freq_mask_width: int,
        freq_masks: int,
        p: float = 1.0,
        fill: str = "mean",
    ) -> None:
        super().__init__()
        if fill not in FILLS:
            raise ConfigError(f"SpecAugment: fill must be one of {', '.join(FILLS)}, got {fill!r}")
        self.fill = fill
        for label, value in [
            ("time_mask_width", time_mask_width),
            ("time_masks", time_masks),
            ("freq_mask_width", freq_mask_width),
            ("freq_masks", freq_masks),
        ]:
            if int(value) < 0:
                raise ConfigError(f"SpecAugment: {label} must be >= 0, got {value}")
        self.time_mask_width, self.time_masks = int(time_mask_width), int(time_masks)
        self.freq_mask_width, self.freq_masks = int(freq_mask_width), int(freq_masks)
        if not 0.0 <= float(p) <= 1.0:
            raise ConfigError(f"SpecAugment: p must be in [0, 1], got {p}")
        self.p = float(p)

    def extra_repr(self) -> str:
        return (
            f"time_mask_width={self.time_mask_width}, time_masks={self.time_masks}, "
            f"freq_mask_width={self.freq_mask_width}, freq_masks={self.freq_masks}, p={self.p}, fill={self.fill}"
        )

    def mask(self, spec: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample the mask for ``spec`` ``(B, T, F)``: bool ``(B, T, F)``, True = masked."""
        b, t, f = spec.shape
        mask = torch.zeros((b, t, f), dtype=torch.bool, device=spec.device)
        if self.time_masks and self.time_mask_width > 1:
            mask |= band_mask(
                b, t, self.time_mask_width, self.time_masks, spec.device, generator
            ).unsqueeze(2)
        if self.freq_masks and self.freq_mask_width > 1:
            mask |= band_mask(
                b, f, self.freq_mask_width, self.freq_masks, spec.device, generator
            ).unsqueeze(1)
        gen_device = generator.device if generator is not None else spec.device
        chosen = torch.rand(b, device=gen_device, generator=generator) < self.p
        return mask & chosen.to(spec.device).view(b, 1, 1)

    def forward(self, spec: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, T, F)`` or ``(B, 1, T, F)`` -> same shape."""
        if not self.training or self.p == 0.0:
            return spec
        x = as_btf(spec, "SpecAugment")
        mask = self.mask(x, generator)
        if self.fill == "zero":
            return x.masked_fill(mask, 0.0).view_as(spec)
        fill = x.mean(dim=(1, 2), keepdim=True)
        return torch.where(mask, fill, x).view_as(spec)


def as_btf(spec: torch.Tensor, who: str) -> torch.Tensor:
    """View ``(B, T, F)`` or ``(B, 1, T, F)`` as ``(B, T, F)``."""
    if spec.dim() == 4 and spec.shape[1] == 1:
        return spec[:, 0]
    if spec.dim() == 3:
        return spec
    raise ValueError(f"{who} expects (B, T, F) or (B, 1, T, F), got {tuple(spec.shape)}")
