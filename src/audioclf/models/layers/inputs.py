"""Input stages shared by several model families.

* :class:`LogMelModel`: the base class of the log-mel CNNs (PANNs, the block-spec network,
  the baselines). It sets the model contract attributes (``frontend``, then each subclass's
  ``forward_features`` and ``head``; ``forward`` and ``embed`` are composed here) and owns
  the log-mel frontend and
  the per-bin batch norm, as the model's own ``frontend`` and ``bn0`` attributes: published
  PANNs checkpoints and audioclf checkpoints name them ``frontend.*`` and ``bn0.*``, so they
  are not wrapped in a submodule of their own (which would prefix their state-dict keys).
* :func:`require_clip_length`: the input check of models that take one clip length only.
"""

from __future__ import annotations

import torch
from torch import nn

from audioclf.audio.frontends import LogMel
from audioclf.errors import ConfigError

__all__ = ["LogMelModel", "require_clip_length"]


class LogMelModel(nn.Module):
    """Base of models that read a log-mel spectrogram of their waveform input.

    Sets ``sample_rate``, ``clip_samples`` (``clip_seconds`` at ``sample_rate``, rounded)
    and ``num_classes``; ``frontend``, a :class:`~audioclf.audio.frontends.LogMel` of the
    given settings (``fmax=None``: the Nyquist frequency); and, unless ``bn0=False``,
    ``bn0``, one batch norm per mel bin. Subclasses build their layers after calling this
    constructor, and argument checks that need no state can run before it.
    """

    def __init__(
        self,
        num_classes: int,
        sample_rate: int,
        clip_seconds: float,
        n_fft: int,
        hop_length: int,
        n_mels: int,
        fmin: float,
        fmax: float | None,
        *,
        bn0: bool = True,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.clip_samples = int(round(clip_seconds * sample_rate))
        self.num_classes = num_classes
        self.frontend = LogMel(sample_rate, n_fft, hop_length, n_mels, fmin, fmax)
        if bn0:
            # normalise each mel bin with running statistics: log-mel levels vary by dataset
            self.bn0 = nn.BatchNorm2d(n_mels)

    def normalize_bins(self, spec: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, frames, n_mels)`` -> map ``(batch, 1, frames, n_mels)``, each
        mel bin normalised by ``bn0`` (models built with ``bn0=True``; without it, as is)."""
        x = spec.unsqueeze(1)  # (B, 1, T, F)
        bn0 = getattr(self, "bn0", None)
        if bn0 is None:
            return x
        # the mel bins become the channels of bn0, then go back
        return bn0(x.transpose(1, 3)).transpose(1, 3)

    def mel_map(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` -> :meth:`normalize_bins` of the frontend's log-mel."""
        return self.normalize_bins(self.frontend(waveform))

    # The model contract (docs/architecture.md): frontend -> forward_features -> head.
    # Subclasses define ``forward_features`` and ``head``.
    def forward_features(self, spec: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, frames, n_mels)`` (the frontend's output) -> embedding ``(batch, embed_dim)``."""
        raise NotImplementedError

    # Set by models whose dense layers are sized for one clip length: why (the message of
    # the ValueError :meth:`check_input` raises for another length).
    fixed_length: str | None = None

    def check_input(self, waveform: torch.Tensor) -> None:
        """Raise a ValueError for a waveform batch the model cannot take (its message says
        what to change)."""
        if self.fixed_length is not None:
            require_clip_length(self, waveform, self.fixed_length, setting="clip_seconds")

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` -> clip embedding ``(batch, embed_dim)``: the head's input."""
        self.check_input(waveform)
        return self.forward_features(self.frontend(waveform))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` at ``sample_rate`` -> logits ``(batch, num_classes)``."""
        self.check_input(waveform)
        return self.head(self.forward_features(self.frontend(waveform)))


def require_clip_length(
    model: nn.Module, waveform: torch.Tensor, reason: str, setting: str
) -> None:
    """Raise a ValueError unless ``waveform`` is ``(batch, model.clip_samples)``.

    The message names the model (its class), the expected shape and duration, ``reason``
    (why the length is fixed) and the constructor ``setting`` that changes it.
    """
    if waveform.dim() != 2 or waveform.shape[1] != model.clip_samples:
        raise ConfigError(
            f"{type(model).__name__} takes waveforms of shape (batch, {model.clip_samples}) "
            f"({model.clip_samples / model.sample_rate:.2f} s at {model.sample_rate} Hz): "
            f"{reason}; got shape {tuple(waveform.shape)}. Crop or pad clips to "
            f"model.clip_samples, or build the model with {setting}=..."
        )
