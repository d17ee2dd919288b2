"""Block-spec network: a residual log-mel CNN written as a list of blocks (data, not code).

The network is described in a config as a list of one-key mappings, read top to bottom on a
``(batch, channels, time, freq)`` log-mel map. Block kinds:

=================================  ===========================================================
``res: [c1, c2]``                  residual block: two convolutions (``c1`` then ``c2``
                                   filters) plus a convolutional shortcut (see below)
``max_pool: [k, s]``               max pooling over time only (kernel ``k``, stride ``s``)
``activation: name``               an activation from :mod:`audioclf.models.layers.activations`
                                   (``gelu``, ``relu``, ``lrelu``, ``silu``, ``swiglu``)
``drop: [p, dp, t, f]``            DropBlock (Ghiasi et al., arXiv:1810.12890) of
                                   ``t x f`` blocks dropping a fraction ``dp``, applied to each
                                   example with probability ``p`` (training only)
``dropout: rate``                  Dropout2d on feature maps (whole channels), Dropout on
                                   pooled vectors
``pooling: {mode, flat}``          global pooling: ``mode`` avg | max | sum | mul;
                                   ``flat: false`` -> ``(B, C)``, ``flat: true`` pools over
                                   time only and keeps ``(B, C * F)``
``fc: n``                          linear layer to ``n`` features (after ``pooling``)
=================================  ===========================================================

Rules: exactly one ``pooling`` block; ``res``, ``max_pool``, ``drop`` and ``pooling`` come
before it, ``fc`` after it. The final linear layer to ``num_classes`` (``head``) is always
added after the last block; ``embed`` returns its input.

``res_block`` sets every residual block: ``activation``, ``batch_first`` (batch norm before
the activation when true, after it when false), ``kernel_size`` and ``kernel_size_res``
(``[time, freq]``). The block is pre-activation (He et al., arXiv:1603.05027):
``x -> norm/act -> conv1 -> norm/act -> conv2``, plus ``conv_res`` applied to the first
norm/act output. An even kernel size is dilated by 2 so that it has a centre and "same"
padding stays symmetric.

This follows the configurable network of the "Deep Learning Survey for Audio Data" project
(seed 001); differences: ``swiglu`` is the learned SwiGLU of arXiv:2002.05202 and keeps the
shape (the seed split the frequency axis in two), ``pooling`` without ``flat`` pools over
time and frequency, and the log-mel is normalised per bin (``bn0``) before the blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from audioclf.errors import ConfigError
from audioclf.models.layers.activations import ACTIVATIONS, create_activation, list_activations
from audioclf.models.layers.dropblock import RandomDropBlock
from audioclf.models.layers.inputs import LogMelModel
from audioclf.models.layers.pooling import POOLING_MODES, GlobalPool
from audioclf.models.registry import register_model


class SpecError(ConfigError):
    """A block spec that cannot be built; the message names the block and the option."""


# --- blocks -------------------------------------------------------------------------------


def _dilated_same(kernel: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Dilation and padding that keep the map size: even kernels are dilated by 2, which
    gives them an odd span (2k - 1) and hence a centre tap."""
    dilation = tuple(1 if k % 2 else 2 for k in kernel)
    padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
    return dilation, padding  # type: ignore[return-value]


class NormAct(nn.Module):
    """Batch norm and activation, in the order ``batch_first`` asks for.

    Submodules are named, not numbered, so the order does not change the state-dict keys.
    """

    def __init__(self, channels: int, activation: str, batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.norm = nn.BatchNorm2d(channels)
        self.act = create_activation(activation, channels)

    def extra_repr(self) -> str:
        return f"batch_first={self.batch_first}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_first:
            return self.act(self.norm(x))
        return self.norm(self.act(x))


class ResBlock2d(nn.Module):
    """Pre-activation residual block: ``(B, c_in, T, F) -> (B, c_out, T, F)``."""

    def __init__(
        self,
        c_in: int,
        c_mid: int,
        c_out: int,
        kernel_size: Sequence[int] = (3, 3),
        kernel_size_res: Sequence[int] = (1, 1),
        activation: str = "gelu",
        batch_first: bool = True,
    ) -> None:
        super().__init__()
        dil, pad = _dilated_same(kernel_size)
        dil_res, pad_res = _dilated_same(kernel_size_res)
        self.pre = NormAct(c_in, activation, batch_first)
        self.conv1 = nn.Conv2d(c_in, c_mid, tuple(kernel_size), padding=pad, dilation=dil)
        self.mid = NormAct(c_mid, activation, batch_first)
        self.conv2 = nn.Conv2d(c_mid, c_out, tuple(kernel_size), padding=pad, dilation=dil)
        # a convolution, not the identity: the block may change the channel count
        self.conv_res = nn.Conv2d(
            c_in, c_out, tuple(kernel_size_res), padding=pad_res, dilation=dil_res
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pre(x)
        return self.conv2(self.mid(self.conv1(h))) + self.conv_res(h)


# --- spec parsing: one builder per block kind ------------------------------------------------


@dataclass
class _Trace:
    """Shape of the features between blocks (batch excluded), tracked while building."""

    channels: int
    frames: int
    bins: int
    pooled_by: int | None = None  # index of the pooling block, once pooled
    dim: int = 0  # feature size once pooled


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int_list(value: Any, n: int, what: str) -> list[int]:
    if not (
        isinstance(value, (list, tuple)) and len(value) == n and all(_is_int(v) for v in value)
    ):
        raise SpecError(f"expected {what}, got {value!r}")
    if min(value) < 1:
        raise SpecError(f"expected {what} with values >= 1, got {value!r}")
    return list(value)


def _reject_unknown(given: Mapping[Any, Any], allowed: Collection[str], where: str = "") -> None:
    """Raise a SpecError naming the first (sorted) key of ``given`` not in ``allowed``."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise SpecError(
            f"{where}unknown option {unknown[0]!r}; allowed options: {', '.join(sorted(allowed))}"
        )


def _fraction(value: Any, name: str, upper_inclusive: bool) -> float:
    ok = _is_number(value) and (0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0)
    if not ok:
        interval = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise SpecError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def _need_map(tr: _Trace) -> None:
    if tr.pooled_by is not None:
        raise SpecError(
            f"needs a (channels, time, freq) feature map, but blocks[{tr.pooled_by}] 'pooling' "
            "already pooled it; move this block before the pooling block"
        )


def _build_res(value: Any, tr: _Trace, res_cfg: Mapping[str, Any]) -> nn.Module:
    c_mid, c_out = _int_list(value, 2, "[int, int]")
    _need_map(tr)
    block = ResBlock2d(tr.channels, c_mid, c_out, **res_cfg)
    tr.channels = c_out
    return block


def _build_max_pool(value: Any, tr: _Trace, res_cfg: Mapping[str, Any]) -> nn.Module:
    kernel, stride = _int_list(value, 2, "[kernel, stride]")
    _need_map(tr)
    if kernel > tr.frames:
        raise SpecError(
            f"kernel {kernel} is longer than the {tr.frames} frames left at this point; "
            "use a smaller kernel or a longer clip"
        )
    tr.frames = (tr.frames - kernel) // stride + 1
    return nn.MaxPool2d((kernel, 1), (stride, 1))


def _build_activation(value: Any, tr: _Trace, res_cfg: Mapping[str, Any]) -> nn.Module:
    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise SpecError(f"unknown activation {value!r}; allowed: {', '.join(list_activations())}")
    return create_activation(value, tr.dim if tr.pooled_by is not None else tr.channels)


def _build_drop(value: Any, tr: _Trace, res_cfg: Mapping[str, Any]) -> nn.Module:
    if not (isinstance(value, (list, tuple)) and len(value) == 4):
        raise SpecError(f"expected [p, dp, t, f], got {value!r}")
    p = _fraction(value[0], "p (probability of applying it)", upper_inclusive=True)
    dp = _fraction(value[1], "dp (fraction of units dropped)", upper_inclusive=False)
    t, f = _int_list(list(value[2:]), 2, "block size [t, f] as ints")
    _need_map(tr)
    return RandomDropBlock(p, dp, (t, f))


def _build_dropout(value: Any, tr: _Trace, res_cfg: Mapping[str, Any]) -> nn.Module:
    rate = _fraction(value, "rate", upper_inclusive=False)
    # On maps, drop whole channels (neighbouring bins are correlated); on vectors, units.
    return nn.Dropout(rate) if tr.pooled_by is not None else nn.Dropout2d(rate)


def _build_fc(value: Any, tr: _Trace, res_cfg: Mapping[str, Any]) -> nn.Module:
    if not _is_int(value) or value < 1:
        raise SpecError(f"expected a positive int (out_features), got {value!r}")
    if tr.pooled_by is None:
        raise SpecError("needs pooled features; put a 'pooling' block before it")
    layer = nn.Linear(tr.dim, value)
    tr.dim = value
    return layer


_POOLING_OPTIONS = ("flat", "mode")


def _build_pooling(value: Any, tr: _Trace, res_cfg: Mapping[str, Any]) -> nn.Module:
    if not isinstance(value, Mapping):
        raise SpecError(f"expected a mapping {{mode: ..., flat: ...}}, got {value!r}")
    _reject_unknown(value, _POOLING_OPTIONS)
    mode = value.get("mode", "avg")
    if not isinstance(mode, str) or mode not in POOLING_MODES:
        raise SpecError(f"unknown mode {mode!r}; allowed modes: {', '.join(sorted(POOLING_MODES))}")
    flat = value.get("flat", False)
    if not isinstance(flat, bool):
        raise SpecError(f"'flat' must be true or false, got {flat!r}")
    _need_map(tr)
    pool = GlobalPool(mode, flat)
    tr.dim = pool.output_dim(tr.channels, tr.bins)
    return pool


# kind -> builder(value, trace, res_block settings) -> module; the builder updates the trace.
_BUILDERS: Mapping[str, Callable[[Any, _Trace, Mapping[str, Any]], nn.Module]] = MappingProxyType(
    {
        "activation": _build_activation,
        "drop": _build_drop,
        "dropout": _build_dropout,
        "fc": _build_fc,
        "max_pool": _build_max_pool,
        "pooling": _build_pooling,
        "res": _build_res,
    }
)

DEFAULT_RES_BLOCK: Mapping[str, Any] = MappingProxyType(
    {"activation": "gelu", "batch_first": True, "kernel_size": [3, 3], "kernel_size_res": [1, 1]}
)


def default_blocks() -> list[dict[str, Any]]:
    """The default spec (a fresh list each call): three residual stages with time pooling
    and DropBlock, sum pooling, one hidden layer (0.32 M parameters for 50 classes)."""
    return [
        {"res": [32, 32]},
        {"max_pool": [2, 2]},
        {"drop": [0.5, 0.1, 8, 4]},
        {"res": [64, 64]},
        {"max_pool": [2, 2]},
        {"drop": [0.5, 0.1, 4, 2]},
        {"res": [128, 128]},
        {"max_pool": [2, 2]},
        {"dropout": 0.1},
        {"pooling": {"mode": "sum", "flat": False}},
        {"fc": 128},
        {"activation": "gelu"},
        {"dropout": 0.2},
    ]


def parse_res_block(res_block: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``res_block`` settings over the defaults; returns ResBlock2d keyword arguments."""
    if res_block is None:
        res_block = {}
    if not isinstance(res_block, Mapping):
        raise SpecError(f"res_block: expected a mapping, got {res_block!r}")
    _reject_unknown(res_block, DEFAULT_RES_BLOCK, where="res_block: ")
    cfg = {**DEFAULT_RES_BLOCK, **res_block}
    if not isinstance(cfg["activation"], str) or cfg["activation"] not in ACTIVATIONS:
        raise SpecError(
            f"res_block 'activation': unknown activation {cfg['activation']!r}; "
            f"allowed: {', '.join(list_activations())}"
        )
    if not isinstance(cfg["batch_first"], bool):
        raise SpecError(
            f"res_block 'batch_first': must be true or false, got {cfg['batch_first']!r}"
        )
    for key in ("kernel_size", "kernel_size_res"):
        try:
            cfg[key] = tuple(_int_list(cfg[key], 2, "[int, int]"))
        except SpecError as err:
            raise SpecError(f"res_block {key!r}: {err}") from None
    return cfg


def build_blocks(
    blocks: Sequence[Mapping[str, Any]],
    res_block: Mapping[str, Any] | None,
    n_mels: int,
    frames: int,
) -> tuple[nn.Sequential, int]:
    """Build ``blocks`` for a ``(B, 1, frames, n_mels)`` input.

    Returns the layers and the size of the pooled features they output. Raises
    :class:`SpecError` naming ``blocks[i]``, the kind and the bad option.
    """
    res_cfg = parse_res_block(res_block)
    if isinstance(blocks, (str, bytes, Mapping)) or not isinstance(blocks, Sequence):
        raise SpecError(f"blocks: expected a list of blocks, got {blocks!r}")
    tr = _Trace(channels=1, frames=frames, bins=n_mels)
    layers: list[nn.Module] = []
    for i, entry in enumerate(blocks):
        if not (isinstance(entry, Mapping) and len(entry) == 1):
            raise SpecError(
                f"blocks[{i}]: expected a mapping with one key (the block kind), got {entry!r}"
            )
        ((kind, value),) = entry.items()
        if kind not in _BUILDERS:
            raise SpecError(
                f"blocks[{i}]: unknown block kind {kind!r}; allowed kinds: {', '.join(sorted(_BUILDERS))}"
            )
        try:
            layers.append(_BUILDERS[kind](value, tr, res_cfg))
        except SpecError as err:
            raise SpecError(f"blocks[{i}] {kind!r}: {err}") from None
        if kind == "pooling":
            tr.pooled_by = i
    if tr.pooled_by is None:
        raise SpecError(
            "blocks: the spec has no 'pooling' block; add one (e.g. {pooling: {mode: avg}}) "
            "so that the classifier gets a vector per clip"
        )
    return nn.Sequential(*layers), tr.dim


# --- the model ----------------------------------------------------------------------------


class BlockNet(LogMelModel):
    """Log-mel -> per-bin batch norm -> spec blocks -> linear head.

    ``forward``: waveform ``(batch, samples)`` -> logits ``(batch, num_classes)``. Clips of
    any length at least as long as the pooling needs are accepted (global pooling);
    ``clip_samples`` is the length the spec was checked against.
    """

    head_prefixes = ("head.",)

    def __init__(
        self,
        num_classes: int,
        blocks: Sequence[Mapping[str, Any]] | None = None,
        res_block: Mapping[str, Any] | None = None,
        sample_rate: int = 22050,
        clip_seconds: float = 5.0,
        n_fft: int = 1024,
        hop_length: int = 320,
        n_mels: int = 64,
        fmin: float = 20.0,
        fmax: float | None = None,
    ) -> None:
        super().__init__(
            num_classes, sample_rate, clip_seconds, n_fft, hop_length, n_mels, fmin, fmax
        )
        spec = default_blocks() if blocks is None else blocks
        self.blocks, dim = build_blocks(
            spec, res_block, n_mels, self.frontend.num_frames(self.clip_samples)
        )
        self.head = nn.Linear(dim, num_classes)
        self.embed_dim = dim

    def forward_features(self, spec: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, frames, n_mels)`` -> features ``(batch, embed_dim)`` (the head's input)."""
        return self.blocks(self.normalize_bins(spec))


# --- registered variants ------------------------------------------------------------------


@register_model(family="blocks", sample_rate=22050, clip_seconds=5.0)
def blocknet(num_classes: int, **overrides: Any) -> BlockNet:
    """Residual log-mel CNN built from a block list (blocks=[...], res_block={...})."""
    return BlockNet(num_classes, **overrides)
