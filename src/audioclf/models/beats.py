"""BEATs: Audio Pre-Training with Acoustic Tokenizers (Chen et al., 2022, arXiv:2212.09058).

BEATs is a ViT-style encoder over a Kaldi filter bank: 16x16 patches of the (frames x 128 mel)
fbank are embedded (512-d), layer-normed and projected to 768-d; a grouped convolution adds
positional information; 12 post-norm transformer layers follow, with DeepNet residual scaling
("deep norm") and a gated relative position bias (bucketed as in T5, the gate as in WavLM)
shared by all layers. The fine-tuned checkpoints add a linear ``predictor`` that classifies
every patch; the clip's logits are the mean over patches (the published model then applies a
sigmoid, which is left to the loss here).

Parameter names equal the keys of the published ``.pt`` files (``{"cfg": ..., "model": ...}``),
so those load as they are: the pre-trained-only files (no predictor: a fresh head is kept)
and the AS20K/AS2M fine-tuned ones (527-class predictor). The published iterations share this
architecture; ``remap_checkpoint`` checks each file's ``cfg`` against it.

Frontend: Kaldi fbank (128 mel, 25 ms / 10 ms at 16 kHz) of the waveform scaled to int16
range, normalised as ``(fbank - 15.41663) / (2 * 6.55582)``.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audioclf.audio.frontends import FbankNormalize, KaldiFbank
from audioclf.errors import CheckpointError, ConfigError
from audioclf.models.layers.head import ClassifierHead
from audioclf.models.registry import register_model

log = logging.getLogger(__name__)

# Filter-bank statistics BEATs normalises with (from the published preprocessing).
FBANK_MEAN = 15.41663
FBANK_STD = 6.55582


@dataclass
class BEATsConfig:
    """BEATs settings, named as in the ``cfg`` dict of the published checkpoints."""

    input_patch_size: int = 16
    embed_dim: int = 512  # patch embedding width
    conv_bias: bool = False  # bias in the patch embedding
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_norm_first: bool = False  # post-norm layers
    deep_norm: bool = True
    conv_pos: int = 128  # positional convolution: kernel size
    conv_pos_groups: int = 16
    relative_position_embedding: bool = True
    num_buckets: int = 320
    max_distance: int = 800
    gru_rel_pos: bool = True  # gated relative position bias
    # Training-only settings; the defaults are those of the published fine-tuning.
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.05
    dropout_input: float = 0.0
    layer_wise_gradient_decay_ratio: float = 0.6
    predictor_dropout: float = 0.0

    def __post_init__(self) -> None:
        # Every published BEATs checkpoint uses this layer form; others are not implemented.
        fixed = {
            "activation_fn": "gelu",
            "layer_norm_first": False,
            "relative_position_embedding": True,
            "gru_rel_pos": True,
        }
        for key, value in fixed.items():
            if getattr(self, key) != value:
                raise ConfigError(
                    f"BEATs: {key}={getattr(self, key)!r} is not supported (only {value!r})"
                )
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ConfigError(
                f"BEATs: encoder_embed_dim ({self.encoder_embed_dim}) must be divisible by "
                f"encoder_attention_heads ({self.encoder_attention_heads})"
            )


# Settings that decide the parameters or the function computed: a checkpoint must agree on them.
ARCHITECTURE_KEYS = (
    "input_patch_size",
    "embed_dim",
    "conv_bias",
    "encoder_layers",
    "encoder_embed_dim",
    "encoder_ffn_embed_dim",
    "encoder_attention_heads",
    "activation_fn",
    "layer_norm_first",
    "deep_norm",
    "conv_pos",
    "conv_pos_groups",
    "relative_position_embedding",
    "num_buckets",
    "max_distance",
    "gru_rel_pos",
)


# --- blocks ---------------------------------------------------------------------------------


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``scale`` (layer-wise gradient decay)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


class WeightNormConv1d(nn.Module):
    """Grouped 1-d convolution with weight normalisation over all but the kernel axis.

    ``weight = weight_g * weight_v / ||weight_v||`` with the norm taken per kernel position
    (``weight_g`` is ``(1, 1, kernel)``), the layout of ``torch.nn.utils.weight_norm(dim=2)``
    whose parameter names the checkpoints use. Output has the input's length: an even kernel
    with ``kernel // 2`` padding makes one extra step, which is dropped.
    """

    def __init__(self, channels: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        if channels % groups:
            raise ConfigError(f"channels ({channels}) must be divisible by groups ({groups})")
        self.kernel_size = kernel_size
        self.groups = groups
        # init as in wav2vec 2.0's positional convolution: std sqrt(4 / (kernel * channels))
        v = torch.randn(channels, channels // groups, kernel_size) * math.sqrt(
            4.0 / (kernel_size * channels)
        )
        self.weight_g = nn.Parameter(v.norm(dim=(0, 1), keepdim=True))
        self.weight_v = nn.Parameter(v)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, channels, time)`` -> same shape."""
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))
        y = F.conv1d(x, weight, self.bias, padding=self.kernel_size // 2, groups=self.groups)
        return y[..., : x.shape[-1]]


def relative_position_buckets(
    length: int, num_buckets: int, max_distance: int, device: torch.device
) -> torch.Tensor:
    """Bucket index of every (query, key) offset, ``(length, length)`` long.

    Bidirectional T5 bucketing: half the buckets for keys after the query; within each half,
    offsets below a quarter of ``num_buckets`` get their own bucket, larger ones share
    logarithmically wider buckets up to ``max_distance``, beyond which all share the last.
    """
    pos = torch.arange(length, device=device)
    offset = pos[None, :] - pos[:, None]  # key - query
    half = num_buckets // 2
    exact = half // 2
    buckets = (offset > 0).long() * half
    distance = offset.abs()
    # log-spaced buckets for distances >= exact; clamp(min=1) only avoids log(0) in the
    # branch torch.where discards
    log_ratio = torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    far = (exact + log_ratio * (half - exact)).long().clamp(max=half - 1)
    return buckets + torch.where(distance < exact, distance, far)


class GatedRelPosSelfAttention(nn.Module):
    """Multi-head self-attention with a gated relative position bias (WavLM/BEATs).

    The shared bias ``(heads, T, T)`` is scaled per query and head by a gate computed from
    the query itself: ``g = a * (b * grep_a - 1) + 2`` with ``a, b = sigmoid`` of two sums of
    ``grep_linear(q)``, so content decides how much position matters.
    """

    def __init__(self, dim: int, heads: int, num_buckets: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        # Replaced by layer 0's module in every other layer (see BEATsEncoder): one table,
        # stored under each layer's key in the checkpoints.
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)
        self.grep_linear = nn.Linear(self.head_dim, 8)
        self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))

    def forward(
        self,
        x: torch.Tensor,
        position_bias: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x (B, T, C)``, ``position_bias (heads, T, T)``, mask ``(B, T)`` True at padding."""
        b, t, c = x.shape

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        # gate from the unscaled query: 8 outputs summed in two groups of 4
        gates = torch.sigmoid(self.grep_linear(q).view(b, self.heads, t, 2, 4).sum(-1))
        gate_a, gate_b = gates[..., :1], gates[..., 1:]
        gate = gate_a * (gate_b * self.grep_a - 1.0) + 2.0  # (B, H, T, 1)
        bias = gate * position_bias  # (B, H, T, T)
        if key_padding_mask is not None:
            bias = bias.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, t, c))


class EncoderLayer(nn.Module):
    """Post-norm transformer layer with deep-norm residual scaling: ``LN(alpha * x + f(x))``."""

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        dim = cfg.encoder_embed_dim
        self.self_attn = GatedRelPosSelfAttention(
            dim, cfg.encoder_attention_heads, cfg.num_buckets, cfg.attention_dropout
        )
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.activation_dropout = nn.Dropout(cfg.activation_dropout)
        # DeepNet (arXiv:2203.00555): up-weighting the residual keeps deep post-norm stacks stable
        self.residual_scale = (2.0 * cfg.encoder_layers) ** 0.25 if cfg.deep_norm else 1.0

    def forward(
        self, x: torch.Tensor, position_bias: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, T, C)`` -> ``(B, T, C)``."""
        h = self.dropout(self.self_attn(x, position_bias, padding_mask))
        x = self.self_attn_layer_norm(x * self.residual_scale + h)
        h = self.dropout(self.fc2(self.activation_dropout(F.gelu(self.fc1(x)))))
        return self.final_layer_norm(x * self.residual_scale + h)


class BEATsEncoder(nn.Module):
    """Convolutional positions, layer norm, then the layers with one shared position bias."""

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        dim = cfg.encoder_embed_dim
        self.num_buckets = cfg.num_buckets
        self.max_distance = cfg.max_distance
        self.layerdrop = cfg.encoder_layerdrop
        self.gradient_decay = cfg.layer_wise_gradient_decay_ratio
        self.pos_conv = nn.Sequential(
            WeightNormConv1d(dim, cfg.conv_pos, cfg.conv_pos_groups), nn.GELU()
        )
        self.layer_norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        shared = self.layers[0].self_attn.relative_attention_bias
        for layer in self.layers[1:]:
            layer.self_attn.relative_attention_bias = shared
        self.dropout = nn.Dropout(cfg.dropout)
        self._init_deep_norm(cfg.encoder_layers if cfg.deep_norm else None)

    def _init_deep_norm(self, num_layers: int | None) -> None:
        # DeepNet init: Xavier-normal, value/output/FFN projections down-scaled by (8N)^-1/4.
        beta = (8.0 * num_layers) ** -0.25 if num_layers else 1.0
        for layer in self.layers:
            attn = layer.self_attn
            for linear, gain in (
                (attn.q_proj, 1.0),
                (attn.k_proj, 1.0),
                (attn.v_proj, beta),
                (attn.out_proj, beta),
                (layer.fc1, beta),
                (layer.fc2, beta),
            ):
                nn.init.xavier_normal_(linear.weight, gain=gain)
                nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, N, C)`` patch embeddings, mask ``(B, N)`` True at padding -> ``(B, N, C)``."""
        if padding_mask is not None:
            # padded steps must look like the convolution's own zero padding
            x = x.masked_fill(padding_mask[..., None], 0.0)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        x = self.dropout(self.layer_norm(x))
        buckets = relative_position_buckets(
            x.shape[1], self.num_buckets, self.max_distance, x.device
        )
        position_bias = self.layers[0].self_attn.relative_attention_bias(buckets).permute(2, 0, 1)
        for layer in self.layers:
            if self.training and self.gradient_decay != 1.0:
                x = _ScaleGrad.apply(x, self.gradient_decay)
            if self.training and self.layerdrop > 0 and torch.rand(()) < self.layerdrop:
                continue
            x = layer(x, position_bias, padding_mask)
        return x


# --- the model ------------------------------------------------------------------------------


class BEATs(nn.Module):
    """BEATs encoder with a per-patch linear predictor averaged over patches.

    ``forward(waveform (B, samples), padding_mask=None) -> logits (B, num_classes)``.
    ``padding_mask`` ``(B, samples)`` is True at padded samples, which must trail each clip
    (a right-padded variable-length batch).
    """

    head_prefixes = ("predictor.",)

    def __init__(
        self,
        num_classes: int,
        cfg: BEATsConfig | None = None,
        clip_seconds: float = 10.0,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        cfg = cfg or BEATsConfig()
        self.cfg = cfg
        self.num_classes = num_classes
        self.sample_rate = 16000
        self.clip_samples = int(round(clip_seconds * self.sample_rate))
        self.patch_size = cfg.input_patch_size
        self.freeze_encoder = freeze_encoder

        self.frontend = nn.Sequential(
            OrderedDict(
                fbank=KaldiFbank(
                    self.sample_rate, n_mels=128, window="povey", waveform_scale=2.0**15
                ),
                norm=FbankNormalize(FBANK_MEAN, FBANK_STD),
            )
        )
        p = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(
            1, cfg.embed_dim, kernel_size=p, stride=p, bias=cfg.conv_bias
        )
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.post_extract_proj = (
            nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
            if cfg.embed_dim != cfg.encoder_embed_dim
            else None
        )
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.encoder = BEATsEncoder(cfg)
        self.predictor = ClassifierHead(cfg.encoder_embed_dim, num_classes, cfg.predictor_dropout)

        if freeze_encoder:
            for name, param in self.named_parameters():
                if not name.startswith(self.head_prefixes):
                    param.requires_grad_(False)

    def train(self, mode: bool = True) -> BEATs:
        super().train(mode)
        if self.freeze_encoder:
            # a frozen encoder also keeps its eval behaviour (no layer drop, no dropout)
            for name, module in self.named_children():
                if name != "predictor":
                    module.train(False)
        return self

    # -- masks ---------------------------------------------------------------------------

    def frame_padding_mask(self, padding_mask: torch.Tensor) -> torch.Tensor:
        """Sample mask ``(B, samples)`` -> fbank frame mask ``(B, frames)``, True at padding.

        A frame is padding when it reaches past the clip's last real sample.
        """
        fbank = self.frontend.fbank
        lengths = (~padding_mask).sum(dim=1)
        valid = (
            torch.div(lengths - fbank.frame_length, fbank.frame_shift, rounding_mode="floor") + 1
        )
        frames = fbank.num_frames(padding_mask.shape[1])
        return torch.arange(frames, device=padding_mask.device)[None, :] >= valid[:, None]

    def patch_padding_mask(self, frame_mask: torch.Tensor, n_mels: int) -> torch.Tensor:
        """Frame mask ``(B, frames)`` -> patch mask ``(B, patches)``: a patch is padding when
        all its frames are. Patches are ordered time-major (``t * freq_patches + f``).

        (The reference code instead folds the frame mask linearly onto the patch sequence,
        ignoring the frequency axis of the patch grid; that only matters for padded batches.)
        """
        p = self.patch_size
        b, frames = frame_mask.shape
        time_patches = frames // p
        per_time = frame_mask[:, : time_patches * p].reshape(b, time_patches, p).all(dim=-1)
        # A clip shorter than one patch still keeps its first patch: a row with every key
        # masked would make attention NaN.
        per_time[:, 0] = False
        return per_time.repeat_interleave(n_mels // p, dim=1)

    # -- forward -------------------------------------------------------------------------

    @property
    def head(self) -> nn.Module:
        """The classifier, ``predictor`` (the published name), with its dropout."""
        return self.predictor

    def forward_tokens(
        self, fbank: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalised fbank ``(B, frames, 128)`` -> encoder output ``(B, patches, 768)``.

        ``patches = (frames // 16) * (128 // 16)``; trailing frames that do not fill a patch
        are dropped. ``frame_mask`` ``(B, frames)`` is True at padded frames.
        """
        if fbank.shape[1] < self.patch_size:
            raise ConfigError(
                f"BEATs needs at least {self.patch_size} fbank frames "
                f"({(self.patch_size - 1) * 160 + 400} samples at 16 kHz), got {fbank.shape[1]}"
            )
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            x = self.patch_embedding(fbank.unsqueeze(1))  # (B, C, T/16, F/16)
            x = x.flatten(2).transpose(1, 2)  # (B, N, C), time-major
            x = self.layer_norm(x)
            if self.post_extract_proj is not None:
                x = self.post_extract_proj(x)
            x = self.dropout_input(x)
            mask = (
                None if frame_mask is None else self.patch_padding_mask(frame_mask, fbank.shape[2])
            )
            return self.encoder(x, mask)

    def forward_features(
        self, fbank: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalised fbank ``(B, frames, 128)`` -> clip embedding ``(B, 768)``: the encoder
        output averaged over the (real) patches.

        The published model classifies each patch and averages the patch logits; the
        predictor being linear, classifying the average is the same function.
        """
        tokens = self.forward_tokens(fbank, frame_mask)
        patch_mask = (
            None if frame_mask is None else self.patch_padding_mask(frame_mask, fbank.shape[2])
        )
        return _masked_mean(tokens, patch_mask)

    def _features(self, waveform: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        fbank = self.frontend(waveform)
        frame_mask = None if padding_mask is None else self.frame_padding_mask(padding_mask)
        return self.forward_features(fbank, frame_mask)

    def embed(
        self, waveform: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, samples)`` -> clip embedding ``(B, 768)``: encoder output averaged over patches."""
        return self._features(waveform, padding_mask)

    def forward(
        self, waveform: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, samples)`` at 16 kHz -> logits ``(B, num_classes)``."""
        return self.head(self._features(waveform, padding_mask))

    # -- checkpoint import ---------------------------------------------------------------

    def remap_checkpoint(self, obj: Any) -> dict[str, torch.Tensor] | None:
        """The published layout ``{"cfg": {...}, "model": state_dict}`` -> state dict.

        Checks the file's ``cfg`` against this model's architecture first. Other objects
        (audioclf bundles, bare state dicts) return None for the generic loader.
        """
        if not (isinstance(obj, Mapping) and "cfg" in obj and "model" in obj):
            return None
        cfg = obj["cfg"] if isinstance(obj["cfg"], Mapping) else vars(obj["cfg"])
        own = asdict(self.cfg)
        differ = [
            f"{key}: checkpoint {cfg[key]!r} vs model {own[key]!r}"
            for key in ARCHITECTURE_KEYS
            if key in cfg and cfg[key] != own[key]
        ]
        if differ:
            raise CheckpointError(
                "BEATs checkpoint was made for another architecture (" + "; ".join(differ) + "); "
                "build the model with matching settings"
            )
        if cfg.get("finetuned_model") and cfg.get("predictor_class") not in (
            None,
            self.num_classes,
        ):
            log.info(
                "BEATs checkpoint has a %s-class predictor; the model has %d classes",
                cfg.get("predictor_class"),
                self.num_classes,
            )
        return dict(obj["model"])


def _masked_mean(x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over dim 1 of ``(B, N, C)``, skipping positions where ``padding_mask (B, N)`` is set."""
    if padding_mask is None:
        return x.mean(dim=1)
    keep = (~padding_mask).unsqueeze(-1).to(x.dtype)
    return (x * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)


# --- registered variants --------------------------------------------------------------------


@register_model(family="beats", paper="arXiv:2212.09058", sample_rate=16000, clip_seconds=10.0)
def beats_iter3_plus(
    num_classes: int, clip_seconds: float = 10.0, freeze_encoder: bool = False, **cfg: Any
) -> BEATs:
    """BEATs iter3+ (ViT-base, 90M), 16 kHz: loads the published BEATs .pt files.

    Pre-trained-only files (e.g. ``BEATs_iter3_plus_AS2M.pt``) and the AS20K/AS2M fine-tuned
    ones with a 527-class predictor.

    ``cfg`` overrides :class:`BEATsConfig` fields (e.g. a small encoder for tests).
    """
    known = {f.name for f in fields(BEATsConfig)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ConfigError(f"unknown BEATs settings {unknown}; known: {', '.join(sorted(known))}")
    return BEATs(
        num_classes, BEATsConfig(**cfg), clip_seconds=clip_seconds, freeze_encoder=freeze_encoder
    )
