"""EAT: the raw-waveform network of "End-to-End Audio Strikes Back: Boosting Augmentations
Towards An Efficient Audio Classification Network" (Gazneli, Zimerman, Ridnik, Sharir, Noy;
Alibaba DAMO Academy, arXiv:2204.11479). Not to be confused with the later self-supervised
"EAT: Efficient Audio Transformer", which is a different model.

The network reads the waveform itself, with no spectrogram:

* ``start``: a 7-tap convolution lifting the signal to ``nf`` channels.
* ``down``: one stage per downsampling factor ``f`` (4 4 4 4 for 22.05 kHz clips, 4 4 4 for
  16 kHz Speech Commands). Each stage doubles the channels with an ``f + 1``-tap
  convolution, then subsamples by ``f`` through a fixed triangular low-pass filter
  (anti-aliased downsampling, "Making Convolutional Networks Shift-Invariant Again",
  Zhang 2019), so that striding does not fold high frequencies into the features. Every
  other stage adds a residual block.
* ``down2``: two more stages of three residual blocks with dilations 1, 3, 9 (growing the
  receptive field cheaply) followed by a factor-2 downsample.
* ``project``: a 1x1 convolution to ``embed_dim``; each remaining time step is a token.
* ``tf``: a post-norm transformer encoder over a class token plus the tokens, with a
  learned positional embedding of fixed length; the class token's output feeds ``tf.fc``.

The residual block (``ResBlock1dTF``) sums three paths: a depthwise temporal convolution
(``block_t``), a pointwise channel mix (``block_f``) and a 1x1 shortcut.

Sizes (paper, Table 1): EAT-S (``eat_s``) ``nf=16, embed_dim=128, dim_feedforward=512``,
4 layers, 8 heads; EAT-M (``eat_m``) ``nf=32, embed_dim=256, dim_feedforward=2048``,
6 layers, 16 heads. The total stride is ``prod(factors) * 4``; the clip length
(``seq_len`` samples, 114688 at 22.05 kHz for ESC-50) fixes the number of tokens.

Module and parameter names follow the published code, so its checkpoints (``best_model.pt``:
a plain state dict; ``chkpnt.pt``: ``{"model_dict": ...}``; either possibly saved from
``DataParallel`` with a ``module.`` prefix) load directly with
``create_model("eat_s", ..., pretrained=path)``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audioclf.errors import ConfigError
from audioclf.models.layers.inputs import require_clip_length
from audioclf.models.registry import register_model

log = logging.getLogger(__name__)

# LeakyReLU slope used throughout the convolutional encoder (as published).
_SLOPE = 0.2


# --- blocks -------------------------------------------------------------------------------


class ResBlock1dTF(nn.Module):
    """Residual block on ``(B, C, L)``: depthwise temporal conv + pointwise conv + 1x1 shortcut.

    ``block_t`` sees ``kernel_size`` taps spaced ``dilation`` apart in each channel
    separately (time); ``block_f`` mixes channels at each step (the "frequency" axis of a
    learned filter bank). Length and channels are kept.
    """

    def __init__(self, dim: int, dilation: int = 1, kernel_size: int = 15) -> None:
        super().__init__()
        self.block_t = nn.Sequential(
            # reflection keeps the edges free of the artificial silence zero padding adds
            nn.ReflectionPad1d(dilation * (kernel_size // 2)),
            nn.Conv1d(dim, dim, kernel_size, dilation=dilation, groups=dim, bias=False),
            nn.BatchNorm1d(dim),
            nn.LeakyReLU(_SLOPE, inplace=True),
        )
        self.block_f = nn.Sequential(
            nn.Conv1d(dim, dim, 1, bias=False),
            nn.BatchNorm1d(dim),
            nn.LeakyReLU(_SLOPE, inplace=True),
        )
        self.shortcut = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block_f(x) + self.block_t(x)


def triangle_filter(size: int) -> torch.Tensor:
    """Normalised triangular low-pass taps of odd length ``size``: ``(size,)``.

    For ``size = 2 * f + 1`` the taps are ``1, 2, ..., f + 1, ..., 2, 1`` divided by their
    sum, the kernel the published EAT uses to subsample by ``f``.
    """
    half = torch.arange(1, size // 2 + 2, dtype=torch.float32)
    taps = torch.cat([half, half.flip(0)[1:]])
    return taps / taps.sum()


class AADownsample(nn.Module):
    """Anti-aliased subsampling by ``stride``: depthwise low-pass filter, then keep every
    ``stride``-th sample. ``(B, C, L) -> (B, C, ceil(L / stride))`` for ``filt_size = 2 * stride + 1``.

    The filter is a constant (``filt``, ``(C, 1, filt_size)``) stored as a buffer because
    published checkpoints carry it.
    """

    def __init__(self, channels: int, stride: int = 2, filt_size: int = 3) -> None:
        super().__init__()
        self.stride = stride
        self.filt_size = filt_size
        self.register_buffer("filt", triangle_filter(filt_size).repeat(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.filt_size // 2
        x = F.pad(x, (pad, pad), mode="reflect")
        return F.conv1d(x, self.filt, stride=self.stride, groups=x.shape[1])


class Down(nn.Module):
    """Double the channels with a ``factor + 1``-tap conv, then subsample by ``factor``."""

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        taps = factor + 1
        self.down = nn.Sequential(
            nn.ReflectionPad1d(taps // 2),
            nn.Conv1d(channels, 2 * channels, taps, bias=False),
            nn.BatchNorm1d(2 * channels),
            nn.LeakyReLU(_SLOPE, inplace=True),
            AADownsample(2 * channels, stride=factor, filt_size=2 * factor + 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(x)


class TokenAggregator(nn.Module):
    """Class token + learned positions + transformer encoder + linear classifier.

    Input ``(B, embed_dim, tokens)``; :meth:`encode` returns the class token's output
    ``(B, embed_dim)`` (after the encoder's final LayerNorm), ``forward`` the logits.
    """

    def __init__(
        self,
        num_tokens: int,
        num_classes: int,
        embed_dim: int,
        n_layers: int,
        nhead: int,
        dim_feedforward: int,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model=embed_dim,
            nhead=nhead,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
        )
        self.transformer_enc = nn.TransformerEncoder(
            layer, num_layers=n_layers, norm=nn.LayerNorm(embed_dim), enable_nested_tensor=False
        )
        # Zero-initialised as published: the encoder starts position-agnostic and learns
        # positions (and the class token) from data.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens + 1, embed_dim))
        self.fc = nn.Linear(embed_dim, num_classes)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, embed_dim, tokens)`` -> class-token output ``(B, embed_dim)``."""
        x = x.transpose(1, 2)  # (B, tokens, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        return self.transformer_enc(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.encode(x))


# --- the model ----------------------------------------------------------------------------


class EAT(nn.Module):
    """EAT (arXiv:2204.11479): waveform ``(batch, seq_len)`` -> logits ``(batch, num_classes)``.

    Inputs must be exactly ``clip_samples`` (= ``seq_len``) long: the positional embedding
    has one entry per token, so other lengths are rejected with a clear error rather than
    silently broadcast or truncated.
    """

    head_prefixes = ("tf.fc.",)

    def __init__(
        self,
        num_classes: int,
        nf: int = 16,
        embed_dim: int = 128,
        n_layers: int = 4,
        nhead: int = 8,
        dim_feedforward: int = 512,
        factors: Sequence[int] = (4, 4, 4, 4),
        seq_len: int = 114688,
        sample_rate: int = 22050,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        factors = tuple(int(f) for f in factors)
        if not factors or min(factors) < 2:
            raise ConfigError(
                f"EAT: factors must be a non-empty list of ints >= 2, got {list(factors)}"
            )
        if embed_dim % nhead:
            raise ConfigError(f"EAT: embed_dim ({embed_dim}) must be divisible by nhead ({nhead})")
        self.sample_rate = int(sample_rate)
        self.clip_samples = int(seq_len)
        self.num_classes = num_classes
        self.factors = factors
        self.num_tokens = self._check_clip(self.clip_samples)
        # a raw-waveform model: no spectrogram between the input and forward_features
        self.frontend = nn.Identity()

        self.start = nn.Sequential(
            nn.ReflectionPad1d(3),
            nn.Conv1d(1, nf, 7, bias=False),
            nn.BatchNorm1d(nf),
            nn.LeakyReLU(_SLOPE, inplace=True),
        )
        down: list[nn.Module] = []
        channels = nf
        for i, f in enumerate(factors):
            down.append(Down(channels, f))
            channels *= 2
            if i % 2 == 0:
                down.append(ResBlock1dTF(channels, dilation=1, kernel_size=15))
        self.down = nn.Sequential(*down)
        # Two further factor-2 stages at low rate, where dilated blocks are cheap.
        down2: list[nn.Module] = []
        for _ in range(2):
            down2 += [ResBlock1dTF(channels, dilation=3**j, kernel_size=15) for j in range(3)]
            down2.append(Down(channels, 2))
            channels *= 2
        self.down2 = nn.Sequential(*down2)
        self.project = nn.Conv1d(channels, embed_dim, 1)
        self.tf = TokenAggregator(
            self.num_tokens, num_classes, embed_dim, n_layers, nhead, dim_feedforward, dropout
        )
        self.apply(_init_weights)

    def _length_steps(self) -> list[tuple[int, int]]:
        """``(reflection pad, subsampling factor)`` of each layer that pads or subsamples,
        in order; mirrors the layout built in ``__init__``."""
        steps: list[tuple[int, int]] = []
        for i, f in enumerate(self.factors):
            steps.append((f, f))  # Down: the (2f+1)-tap filter pads f, then keeps every f-th
            if i % 2 == 0:
                steps.append((7, 1))  # ResBlock1dTF, 15 taps
        for _ in range(2):
            steps += [(7, 1), (21, 1), (63, 1), (2, 2)]  # dilations 1, 3, 9, then Down(2)
        return steps

    def _tokens_for(self, samples: int) -> int | None:
        """Tokens left from ``samples`` input samples, or None when a reflection pad would
        be wider than its input (PyTorch needs pad < length)."""
        length = samples
        for pad, factor in self._length_steps():
            if length <= pad:
                return None
            length = -(-length // factor)  # reflect-padded, strided filter: ceil(L / f)
        return length

    def _check_clip(self, samples: int) -> int:
        tokens = self._tokens_for(samples)
        if tokens is None:
            # smallest valid length (validity is monotone in the length): bisect
            lo, hi = 1, 1 << 40
            while lo < hi:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if self._tokens_for(mid) is not None else (mid + 1, hi)
            raise ConfigError(
                f"EAT: seq_len {samples} is too short for factors {list(self.factors)}: the "
                f"dilated residual blocks need at least {lo} samples"
            )
        return tokens

    @property
    def head(self) -> nn.Module:
        """The classifier, ``tf.fc`` (the published name)."""
        return self.tf.fc

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, clip_samples)`` -> token features ``(B, embed_dim, num_tokens)``."""
        require_clip_length(
            self, waveform, "its positional embedding has a fixed length", setting="seq_len"
        )
        x = self.start(waveform.unsqueeze(1))
        x = self.down2(self.down(x))
        return self.project(x)

    def forward_features(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, clip_samples)`` (the frontend is the identity: EAT reads the waveform) ->
        class-token embedding ``(B, embed_dim)``."""
        return self.tf.encode(self.features(waveform))

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, clip_samples)`` -> class-token embedding ``(B, embed_dim)``: the head's input."""
        return self.forward_features(self.frontend(waveform))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, clip_samples)`` -> logits ``(B, num_classes)``."""
        return self.head(self.forward_features(self.frontend(waveform)))

    # --- checkpoint import ---------------------------------------------------------------

    def remap_checkpoint(self, obj: Any) -> dict[str, torch.Tensor] | None:
        """Accept the published EAT files: a plain state dict (``best_model.pt``) or a
        training checkpoint ``{"model_dict": ...}`` (``chkpnt.pt``), either with the
        ``module.`` prefix ``DataParallel`` adds. Anything else goes to the generic loader.

        A positional embedding made for another clip length (e.g. 10 s AudioSet weights
        into a 5 s ESC-50 model) is resized by nearest-neighbour interpolation over the
        positions, as the published fine-tuning recipe does.
        """
        if not isinstance(obj, Mapping):
            return None
        if "model_dict" in obj and isinstance(obj["model_dict"], Mapping):
            state = dict(obj["model_dict"])
        elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            state = dict(obj)
        else:
            return None
        if state and all(k.startswith("module.") for k in state):
            state = {k[len("module.") :]: v for k, v in state.items()}
        pos, own = state.get("tf.pos_embed"), self.tf.pos_embed
        if (
            isinstance(pos, torch.Tensor)
            and pos.dim() == 3
            and pos.shape[2] == own.shape[2]
            and pos.shape[1] != own.shape[1]
        ):
            log.info(
                "EAT checkpoint: positional embedding resized from %d to %d positions "
                "(clip of %d samples)",
                pos.shape[1],
                own.shape[1],
                self.clip_samples,
            )
            resized = F.interpolate(pos.transpose(1, 2), size=own.shape[1], mode="nearest")
            state["tf.pos_embed"] = resized.transpose(1, 2).contiguous()
        return state


def _init_weights(m: nn.Module) -> None:
    # The published initialisation: small normal conv weights, zero biases, unit norms.
    if isinstance(m, nn.Conv1d):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm1d, nn.LayerNorm)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear) and m.bias is not None:
        nn.init.zeros_(m.bias)


# --- registered variants ------------------------------------------------------------------

_PAPER = "Gazneli et al. 2022, End-to-End Audio Strikes Back (arXiv:2204.11479)"


@register_model(family="eat", paper=_PAPER, sample_rate=22050, clip_seconds=114688 / 22050)
def eat_s(num_classes: int, **overrides: Any) -> EAT:
    """EAT-S raw-waveform CNN + transformer (5.18 M params for 50 classes); arXiv:2204.11479."""
    cfg: dict[str, Any] = dict(nf=16, embed_dim=128, dim_feedforward=512, n_layers=4, nhead=8)
    return EAT(num_classes, **{**cfg, **overrides})


@register_model(family="eat", paper=_PAPER, sample_rate=22050, clip_seconds=114688 / 22050)
def eat_m(num_classes: int, **overrides: Any) -> EAT:
    """EAT-M raw-waveform CNN + transformer (25.5 M params for 527 classes); arXiv:2204.11479."""
    cfg: dict[str, Any] = dict(nf=32, embed_dim=256, dim_feedforward=2048, n_layers=6, nhead=16)
    return EAT(num_classes, **{**cfg, **overrides})
