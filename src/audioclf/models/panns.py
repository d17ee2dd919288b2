"""PANNs: CNN6, CNN10 and CNN14 (Kong et al., "PANNs: Large-Scale Pretrained Audio Neural
Networks for Audio Pattern Recognition", arXiv:1912.10211).

Log-mel CNNs trained on AudioSet. A waveform becomes a log-mel spectrogram (Hann window,
power STFT, Slaney mel filters, dB), each mel bin is normalised by a batch norm (``bn0``),
and a VGG-like stack of convolution blocks with 2x2 average pooling follows. The feature map
is averaged over frequency, then max- and mean-pooled over time (the two summed), passed
through ``fc1`` + ReLU (the clip embedding) and a linear AudioSet head ``fc_audioset``.

* CNN14: six blocks of two 3x3 conv-BN-ReLU layers, 64 ... 2048 channels (the last block
  does not pool); 2048-d embedding; about 80.8 M parameters with 527 classes.
* CNN10: four such blocks, 64 ... 512 channels; 512-d embedding.
* CNN6: four blocks of one 5x5 conv-BN-ReLU layer, 64 ... 512 channels; 512-d embedding.

The published models take 10 s at 32 kHz (1024-point window, hop 320, 64 mel bins from 50
to 14000 Hz). The 16 kHz models of the paper are the same networks with other frontend
settings, so they are overrides, not classes::

    create_model("cnn14", 527, sample_rate=16000, n_fft=512, hop_length=160, fmax=8000)

In training mode the log-mel gets the paper's SpecAugment (two time stripes up to 64
frames wide, two frequency stripes up to 8 bins wide, zeroed), and dropout follows every
block (0.2) and the pooled features (0.5). ``forward`` returns logits; the published code
returns ``sigmoid(logits)``.

Module and parameter names follow the published code, so its checkpoints
(``Cnn14_mAP=0.431.pth``, ``{"model": state_dict}``) load by key; only the frontend lives
under ``frontend.*`` and its three published entries are renamed by ``remap_checkpoint``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from audioclf.errors import CheckpointError, ConfigError
from audioclf.models.layers.head import ClassifierHead
from audioclf.models.layers.inputs import LogMelModel
from audioclf.models.layers.masking import SpecAugment
from audioclf.models.layers.pooling import freq_mean_time_mean_max
from audioclf.models.registry import register_model

log = logging.getLogger(__name__)


# --- blocks ---------------------------------------------------------------------------------


def _init_conv_or_linear(layer: nn.Module) -> None:
    # the published initialisation: Xavier-uniform weights, zero biases
    nn.init.xavier_uniform_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


class ConvBlock(nn.Module):
    """Two 3x3 conv-BN-ReLU layers, average pooling, dropout (CNN10, CNN14).

    ``(B, cin, T, F)`` -> ``(B, cout, T // pool, F // pool)``. Attribute names
    (``conv1, conv2, bn1, bn2``) are the published ones.
    """

    def __init__(self, cin: int, cout: int, pool: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)
        # floor pooling, as published: an odd trailing frame is dropped
        self.pool = nn.AvgPool2d(pool) if pool > 1 else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        _init_conv_or_linear(self.conv1)
        _init_conv_or_linear(self.conv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.dropout(self.pool(x))


class ConvBlock5x5(nn.Module):
    """One 5x5 conv-BN-ReLU layer, average pooling, dropout (CNN6).

    ``(B, cin, T, F)`` -> ``(B, cout, T // pool, F // pool)``.
    """

    def __init__(self, cin: int, cout: int, pool: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.pool = nn.AvgPool2d(pool) if pool > 1 else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        _init_conv_or_linear(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.dropout(self.pool(x))


# --- the model ------------------------------------------------------------------------------


class PANNsCNN(LogMelModel):
    """Log-mel -> ``bn0`` -> [SpecAugment] -> conv blocks -> freq mean -> time max+mean ->
    ``fc1`` + ReLU (embedding) -> ``fc_audioset`` (logits).

    ``forward``: waveform ``(batch, samples)`` at ``sample_rate`` -> logits
    ``(batch, num_classes)``. Any length of at least ``prod(pools)`` frames works; the
    models were trained on ``clip_seconds`` clips.

    ``freeze_backbone=True`` is linear probing: only ``fc_audioset`` trains, and the frozen
    part stays in eval mode even under ``model.train()``, so its batch-norm statistics keep
    the loaded values and its dropout is off (the embedding is a fixed function of the
    input). SpecAugment, being data augmentation, still follows ``model.train()``.
    """

    head_prefixes = ("fc_audioset.",)
    # published checkpoint key -> this model's key; every other key is shared
    published_frontend_keys = (
        ("spectrogram_extractor.stft.conv_real.weight", "frontend.stft_real"),
        ("spectrogram_extractor.stft.conv_imag.weight", "frontend.stft_imag"),
        ("logmel_extractor.melW", "frontend.mel_fb"),
    )
    # children that keep training when the backbone is frozen
    _head_children = ("fc_audioset", "spec_augmenter")

    def __init__(
        self,
        num_classes: int,
        block: type[nn.Module] = ConvBlock,
        channels: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048),
        pools: tuple[int, ...] = (2, 2, 2, 2, 2, 1),
        embed_dim: int | None = None,
        sample_rate: int = 32000,
        clip_seconds: float = 10.0,
        n_fft: int = 1024,
        hop_length: int = 320,
        n_mels: int = 64,
        fmin: float = 50.0,
        fmax: float | None = 14000.0,
        block_dropout: float = 0.2,
        pool_dropout: float = 0.5,
        head_dropout: float = 0.0,
        spec_augment: bool = True,
        freeze_backbone: bool = False,
    ) -> None:
        if len(channels) != len(pools):
            raise ConfigError(f"channels {channels} and pools {pools} must have one entry per block")
        # the frontend, and one batch norm per mel bin (``bn0``, applied with mel bins as channels)
        super().__init__(
            num_classes, sample_rate, clip_seconds, n_fft, hop_length, n_mels, fmin, fmax
        )
        self.num_blocks = len(channels)
        self.min_frames = math.prod(pools)
        self.freeze_backbone = freeze_backbone
        embed_dim = embed_dim or channels[-1]

        # the published SpecAugment: stripes filled with zeros (the level bn0 normalises to)
        self.spec_augmenter = (
            SpecAugment(time_mask_width=64, time_masks=2, freq_mask_width=8, freq_masks=2, fill="zero")
            if spec_augment
            else nn.Identity()
        )
        cin = 1
        for i, (cout, pool) in enumerate(zip(channels, pools, strict=True), start=1):
            # published names conv_block1..N, so checkpoints load by key
            self.add_module(f"conv_block{i}", block(cin, cout, pool=pool, dropout=block_dropout))
            cin = cout
        self.pool_dropout = nn.Dropout(pool_dropout)
        self.fc1 = nn.Linear(cin, embed_dim)
        # The published AudioSet head sees the embedding without dropout; the published
        # transfer models put p=0.5 there. 0.0 keeps the AudioSet recipe.
        self.fc_audioset = ClassifierHead(embed_dim, num_classes, head_dropout)
        _init_conv_or_linear(self.fc1)
        _init_conv_or_linear(self.fc_audioset)

        if freeze_backbone:
            for name, p in self.named_parameters():
                p.requires_grad_(name.startswith(self.head_prefixes))

    def train(self, mode: bool = True) -> PANNsCNN:
        super().train(mode)
        if self.freeze_backbone and mode:
            for name, child in self.named_children():
                if name not in self._head_children:
                    child.eval()
        return self

    @property
    def head(self) -> nn.Module:
        """The classifier, ``fc_audioset`` (the published name)."""
        return self.fc_audioset

    def check_input(self, waveform: torch.Tensor) -> None:
        if waveform.dim() != 2:
            raise ValueError(f"expected a waveform batch (batch, samples), got {tuple(waveform.shape)}")

    def forward_features(self, spec: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, frames, n_mels)`` -> clip embedding ``(batch, embed_dim)``
        (``fc1`` + ReLU). ``forward`` returns logits (no sigmoid)."""
        x = self.normalize_bins(spec)  # (B, 1, T, n_mels)
        frames = x.shape[2]
        if frames < self.min_frames:
            raise ConfigError(
                f"the input gives {frames} frames; the pooling needs at least {self.min_frames}"
            )
        x = self.spec_augmenter(x)
        for i in range(1, self.num_blocks + 1):
            x = getattr(self, f"conv_block{i}")(x)  # (B, C, T', F')
        x = self.pool_dropout(freq_mean_time_mean_max(x))
        return torch.relu(self.fc1(x))

    # --- checkpoint import ----------------------------------------------------------------

    def remap_checkpoint(self, obj: Any) -> dict[str, torch.Tensor] | None:
        """A published PANNs checkpoint (``{"model": state_dict}``, or that state dict bare)
        in this model's key space; None for anything else (e.g. audioclf checkpoints).

        The published layout is recognised by its frontend entries
        (``spectrogram_extractor.*``, ``logmel_extractor.*``), which become the
        ``frontend`` buffers: the checkpoint's STFT kernels and mel matrix are used, not the
        constructed ones. Other keys pass through unchanged.
        """
        if not isinstance(obj, Mapping):
            return None
        state = obj.get("model", obj)
        if not isinstance(state, Mapping):
            return None
        published = ("spectrogram_extractor.", "logmel_extractor.")
        if not any(isinstance(k, str) and k.startswith(published) for k in state):
            return None
        rename = dict(self.published_frontend_keys)
        absent = [k for k in rename if k not in state]
        if absent:
            raise CheckpointError(
                f"published PANNs checkpoint lacks frontend entries: {', '.join(absent)}"
            )
        return {rename.get(k, k): v for k, v in state.items()}


# --- variants -------------------------------------------------------------------------------

@register_model(family="panns", paper="arXiv:1912.10211", sample_rate=32000, clip_seconds=10.0)
def cnn6(num_classes: int, **kwargs: Any) -> PANNsCNN:
    """PANNs CNN6: four 5x5 conv blocks, 512-d embedding (~4.8 M params)."""
    return PANNsCNN(
        num_classes, block=ConvBlock5x5, channels=(64, 128, 256, 512), pools=(2, 2, 2, 2), **kwargs
    )


@register_model(family="panns", paper="arXiv:1912.10211", sample_rate=32000, clip_seconds=10.0)
def cnn10(num_classes: int, **kwargs: Any) -> PANNsCNN:
    """PANNs CNN10: four double 3x3 conv blocks, 512-d embedding (~5.2 M params)."""
    return PANNsCNN(
        num_classes, block=ConvBlock, channels=(64, 128, 256, 512), pools=(2, 2, 2, 2), **kwargs
    )


@register_model(family="panns", paper="arXiv:1912.10211", sample_rate=32000, clip_seconds=10.0)
def cnn14(num_classes: int, **kwargs: Any) -> PANNsCNN:
    """PANNs CNN14: six double 3x3 conv blocks, 2048-d embedding (~80.8 M params)."""
    return PANNsCNN(
        num_classes,
        block=ConvBlock,
        channels=(64, 128, 256, 512, 1024, 2048),
        pools=(2, 2, 2, 2, 2, 1),
        **kwargs,
    )
