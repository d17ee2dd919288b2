"""Label-mixing batch augmentation: ``task.mix`` (mixup, cutmix, timemix, freqmix).

Runs on the accelerator on a whole training batch and mixes the targets with the same
weights as the inputs: on waveforms ``(B, S)`` before the frontend, or, for methods defined
on spectrograms only (freqmix), on the frontend's output ``(B, T, F)``; see
:meth:`audioclf.training.task.ClassificationTask.training_step`. The mixer owns its random
generator, saved in checkpoints so a resumed run mixes as an uninterrupted one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from audioclf.errors import ConfigError
from audioclf.models.layers.masking import as_btf
from audioclf.registry import Registry, check_probability

__all__ = ["MIX_METHODS", "BatchMixer", "MixResult", "list_mix_methods", "register_mix_method"]

log = logging.getLogger(__name__)


@dataclass
class MixResult:
    """What :meth:`BatchMixer.mix` did.

    ``inputs`` and ``targets`` are the mixed batch. When a method ran, ``method`` names
    it, ``partner[i]`` is the index of the clip mixed into clip ``i`` and ``weights[i]``
    the weight of clip ``i``'s own target, so
    ``targets = weights * y + (1 - weights) * y[partner]``. Otherwise those are None.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    method: str | None = None
    weights: torch.Tensor | None = None
    partner: torch.Tensor | None = None


@dataclass(frozen=True)
class _MixMethod:
    """fn(x, partner, lam, rng) -> (mixed x, own-clip weights (B,)); x is (B, S) or
    (B, T, F). ``domains`` says on which inputs the method is defined."""

    fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    domains: frozenset[str]


MIX_METHODS: Registry[_MixMethod] = Registry("mix method")


def register_mix_method(
    name: str, domains: tuple[str, ...] = ("waveform", "spectrogram")
) -> Callable[[Callable], Callable]:
    """Register a batch-mixing method under ``name`` for the given input domains."""

    def wrap(fn: Callable) -> Callable:
        MIX_METHODS.add(name, _MixMethod(fn, frozenset(domains)))
        return fn

    return wrap


def list_mix_methods() -> list[str]:
    """Registered mix method names."""
    return MIX_METHODS.names()


def _segment_mask(
    starts: np.ndarray, lengths: np.ndarray, size: int, device: torch.device
) -> torch.Tensor:
    """Bool ``(B, size)``: True inside ``[starts[i], starts[i] + lengths[i])``."""
    pos = torch.arange(size, device=device).unsqueeze(0)
    start = torch.as_tensor(starts, device=device).unsqueeze(1)
    end = start + torch.as_tensor(lengths, device=device).unsqueeze(1)
    return (pos >= start) & (pos < end)


def _paste(x: torch.Tensor, partner: torch.Tensor, mask: torch.Tensor, axis: int) -> torch.Tensor:
    """Where ``mask`` (B, size of ``axis``) is True, take the partner clip's values."""
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[axis] = x.shape[axis]
    return torch.where(mask.view(shape), x[partner], x)


@register_mix_method("mixup")
def _mixup(
    x: torch.Tensor, partner: torch.Tensor, lam: np.ndarray, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018): ``lam * x + (1 - lam) * x[partner]``."""
    w = torch.as_tensor(lam, device=x.device, dtype=torch.float32)
    wx = w.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return wx * x + (1 - wx) * x[partner], w


@register_mix_method("cutmix")
def _cutmix(
    x: torch.Tensor, partner: torch.Tensor, lam: np.ndarray, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix along time: a segment of ``round((1 - lam) * N)`` samples (or frames) at a
    random position is replaced by the partner's samples at the same position; the
    partner's weight is the fraction of samples it supplied."""
    n = x.shape[1]
    lengths = np.round((1 - lam) * n).astype(np.int64)
    starts = (rng.random(len(lam)) * (n - lengths + 1)).astype(np.int64)
    mask = _segment_mask(starts, lengths, n, x.device)
    return _paste(x, partner, mask, axis=1), torch.as_tensor(
        1 - lengths / n, device=x.device, dtype=torch.float32
    )


@register_mix_method("timemix")
def _timemix(
    x: torch.Tensor, partner: torch.Tensor, lam: np.ndarray, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Splice in time: the first ``round(lam * N)`` samples (or frames) of the clip, then
    the rest of the partner from the same point on. Unlike cutmix the cut is a single
    point, so each clip keeps one contiguous part at its own time; weights are the
    fraction of samples from each clip."""
    n = x.shape[1]
    cut = np.round(lam * n).astype(np.int64)
    mask = _segment_mask(cut, n - cut, n, x.device)
    return _paste(x, partner, mask, axis=1), torch.as_tensor(
        cut / n, device=x.device, dtype=torch.float32
    )


@register_mix_method("freqmix", domains=("spectrogram",))
def _freqmix(
    x: torch.Tensor, partner: torch.Tensor, lam: np.ndarray, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix along frequency: a band of ``round((1 - lam) * F)`` bins at a random position
    comes from the partner; weights are the fraction of bins from each clip."""
    f = x.shape[2]
    widths = np.round((1 - lam) * f).astype(np.int64)
    starts = (rng.random(len(lam)) * (f - widths + 1)).astype(np.int64)
    mask = _segment_mask(starts, widths, f, x.device)
    return _paste(x, partner, mask, axis=2), torch.as_tensor(
        1 - widths / f, device=x.device, dtype=torch.float32
    )


class BatchMixer:
    """Label-mixing batch augmentation (mixup, cutmix, timemix, freqmix).

    Args:
        methods: method name -> relative weight, e.g. ``{"mixup": 1, "cutmix": 1}``; one
            method is drawn per batch with these weights. Names: :func:`list_mix_methods`.
        alpha: mixing weights ``lam`` are drawn per example from Beta(alpha, alpha).
        mix_ratio: probability that a batch is mixed at all.
        epoch_mix: batches of epochs before this one are never mixed.
        seed: seed of the mixer's own numpy generator (all its random draws are a few
            scalars per example, drawn on the CPU), so runs are reproducible.

    Mixed targets are ``w * y + (1 - w) * y[partner]`` with ``w`` the share of the
    clip's own content (``lam`` for mixup; the fraction of samples, frames or bins for
    the cut methods), so they are convex combinations and one-hot rows stay summing
    to 1. ``freqmix`` needs a spectrogram: when it is among the methods
    (:attr:`needs_spectrogram`), mix with :meth:`mix_spectrogram` after the frontend; the
    waveform path leaves it out of the draw.
    """

    def __init__(
        self,
        methods: Mapping[str, float],
        alpha: float = 1.0,
        mix_ratio: float = 1.0,
        epoch_mix: int = 0,
        seed: int | None = None,
    ) -> None:
        MIX_METHODS.check_names(methods)
        if any(float(w) < 0 for w in methods.values()):
            raise ConfigError(f"BatchMixer: method weights must be >= 0, got {dict(methods)}")
        if alpha <= 0:
            raise ConfigError(f"BatchMixer: alpha must be > 0, got {alpha}")
        self.methods = {name: float(w) for name, w in methods.items() if float(w) > 0}
        self.alpha = float(alpha)
        self.mix_ratio = check_probability("BatchMixer", "mix_ratio", mix_ratio)
        self.epoch_mix = int(epoch_mix)
        self.rng = np.random.default_rng(seed)
        self._warned_waveform = False

    @property
    def needs_spectrogram(self) -> bool:
        """True when a method (freqmix) is defined on spectrograms only."""
        return any("waveform" not in MIX_METHODS.get(m).domains for m in self.methods)

    def __repr__(self) -> str:
        return (
            f"BatchMixer(methods={self.methods}, alpha={self.alpha}, "
            f"mix_ratio={self.mix_ratio}, epoch_mix={self.epoch_mix})"
        )

    def mix(
        self, inputs: torch.Tensor, targets: torch.Tensor, epoch: int, domain: str
    ) -> MixResult:
        """Mix a batch; ``inputs`` ``(B, S)`` for ``domain="waveform"`` or ``(B, T, F)``
        for ``"spectrogram"``, ``targets`` ``(B, C)`` float. See :class:`MixResult`."""
        if targets.dim() != 2 or targets.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"BatchMixer expects targets (B, C) matching inputs {tuple(inputs.shape)}, "
                f"got {tuple(targets.shape)}"
            )
        names = [m for m in self.methods if domain in MIX_METHODS.get(m).domains]
        if domain == "waveform" and len(names) < len(self.methods) and not self._warned_waveform:
            log.warning(
                "BatchMixer: %s need a spectrogram and are skipped on waveforms; "
                "use mix_spectrogram to include them",
                sorted(set(self.methods) - set(names)),
            )
            self._warned_waveform = True
        # Draw the batch-level decision first and always, so that the stream of random
        # numbers does not depend on epoch_mix.
        mix_now = self.rng.random() < self.mix_ratio
        if epoch < self.epoch_mix or not mix_now or not names:
            return MixResult(inputs, targets)
        weights = np.array([self.methods[m] for m in names])
        name = names[int(self.rng.choice(len(names), p=weights / weights.sum()))]
        b = inputs.shape[0]
        lam = self.rng.beta(self.alpha, self.alpha, size=b)
        partner = torch.as_tensor(self.rng.permutation(b), device=inputs.device)
        mixed, w = MIX_METHODS.get(name).fn(inputs, partner, lam, self.rng)
        wt = w.to(targets.dtype).unsqueeze(1)
        mixed_targets = wt * targets + (1 - wt) * targets[partner]
        return MixResult(mixed, mixed_targets, name, w, partner)

    def __call__(
        self, waveforms: torch.Tensor, targets: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, S)`` waveforms, ``(B, C)`` targets -> mixed ``(B, S)``, ``(B, C)``."""
        if waveforms.dim() != 2:
            raise ValueError(f"BatchMixer expects waveforms (B, S), got {tuple(waveforms.shape)}")
        result = self.mix(waveforms, targets, epoch, "waveform")
        return result.inputs, result.targets

    def mix_spectrogram(
        self, spec: torch.Tensor, targets: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, F)`` (or ``(B, 1, T, F)``) spectrograms, ``(B, C)`` targets -> mixed,
        same shapes. All methods are available here, freqmix included."""
        x = as_btf(spec, "BatchMixer.mix_spectrogram")
        result = self.mix(x, targets, epoch, "spectrogram")
        return result.inputs.view_as(spec), result.targets
