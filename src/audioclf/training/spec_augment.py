"""Spectrogram-domain augmentation of a training batch: ``task.spec_augment``.

Runs on the accelerator, in training only, on the frontend's output ``(B, T, F)``
(log-mel or fbank), between the frontend and the model's ``forward_features``; see
:meth:`audioclf.training.task.ClassificationTask.training_step`. The masks themselves are
model layers (:mod:`audioclf.models.layers.masking`, :mod:`audioclf.models.layers.dropblock`),
shared with the models that publish their own (PANNs).

Config::

    task:
      spec_augment:
        time_masking: {p: 0.5, width: 40, num: 2}
        freq_masking: {p: 0.5, width: 8, num: 2, fill: mean}
        dropblock: {p: 0.3, drop_prob: 0.1, block_size: [5, 5]}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from audioclf.errors import ConfigError
from audioclf.models.layers.dropblock import RandomDropBlock
from audioclf.models.layers.masking import SpecAugment
from audioclf.registry import Registry, check_probability, validate_options

__all__ = ["SPEC_AUGMENTS", "build_spec_augment", "list_spec_augments", "register_spec_augment"]

# name -> builder(p, *, option=default, ...) -> nn.Module. Registry order = application order.
SPEC_AUGMENTS: Registry[Callable[..., nn.Module]] = Registry("spectrogram augmentation")


def register_spec_augment(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder(p, *, option=default, ...) -> nn.Module`` under ``name``."""
    return SPEC_AUGMENTS.register(name)


def list_spec_augments() -> list[str]:
    """Registered spectrogram augmentation names, in the order they are applied."""
    return SPEC_AUGMENTS.names()


@register_spec_augment("time_masking")
def _time_masking(p: float, *, width: int = 40, num: int = 2, fill: str = "mean") -> nn.Module:
    return SpecAugment(time_mask_width=width, time_masks=num, freq_mask_width=0, freq_masks=0, p=p, fill=fill)


@register_spec_augment("freq_masking")
def _freq_masking(p: float, *, width: int = 8, num: int = 2, fill: str = "mean") -> nn.Module:
    return SpecAugment(time_mask_width=0, time_masks=0, freq_mask_width=width, freq_masks=num, p=p, fill=fill)


@register_spec_augment("dropblock")
def _dropblock(
    p: float, *, drop_prob: float = 0.1, block_size: tuple[int, int] | list[int] | int = (5, 5)
) -> nn.Module:
    if isinstance(block_size, list):
        block_size = tuple(block_size)
    return RandomDropBlock(p, drop_prob, block_size)


def build_spec_augment(spec: Mapping[str, Mapping[str, Any] | None] | None) -> nn.Module | None:
    """Build the spectrogram augmentation described by ``spec``, or None if none is enabled.

    ``spec`` maps a registered name to options (see the module docstring); ``p`` (default
    1.0) is the probability per example, ``p=0`` disables an entry. The parts run in
    registry order (time masking, frequency masking, DropBlock). Unknown names or options
    raise :class:`~audioclf.errors.ConfigError` listing the allowed ones.

    The result is an ``nn.Module`` on ``(B, T, F)`` or ``(B, 1, T, F)`` returning the same
    shape; it is an identity in eval mode.
    """
    if not spec:
        return None
    SPEC_AUGMENTS.check_names(spec)
    parts: list[nn.Module] = []
    for name, builder in SPEC_AUGMENTS.items():
        if name not in spec:
            continue
        options = validate_options("spectrogram augmentation", name, builder, dict(spec[name] or {}), extra=("p",))
        p = check_probability("spectrogram augmentation", name, options.pop("p", 1.0))
        if p > 0.0:
            try:
                parts.append(builder(p, **options))
            except ValueError as err:
                raise ConfigError(f"task.spec_augment.{name}: {err}") from err
    return nn.Sequential(*parts) if parts else None

