"""Small log-mel CNN baselines that train in minutes on a CPU.

``cnn_lite`` is audioclf's own demo model: four conv blocks over a log-mel spectrogram,
global pooling and a linear head (about 0.1 M parameters). The seed-003 baselines
(Piczak's ESC-50 CNN, a VGG-like CNN, a CRNN, the simple 3-conv CNN) follow it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from audioclf.errors import ConfigError
from audioclf.models.layers.head import ClassifierHead
from audioclf.models.layers.inputs import LogMelModel
from audioclf.models.layers.pooling import freq_mean_time_mean_max
from audioclf.models.registry import register_model


class ConvBNReLU(nn.Sequential):
    """3x3 conv -> batch norm -> ReLU, on ``(batch, channels, time, freq)``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class LiteCNN(LogMelModel):
    """Log-mel -> per-bin batch norm -> conv blocks with 2x2 average pooling -> mean+max
    pooling over time -> dropout -> linear.

    ``forward``: waveform ``(batch, samples)`` -> logits ``(batch, num_classes)``.
    """

    head_prefixes = ("head.",)
    # trainer.channels_last=auto turns NHWC on for it: a training step ran 1.3x faster so
    # on a 2-core AVX2 CPU (benchmarks/bench_speed_options.py)
    prefers_channels_last = True

    def __init__(
        self,
        num_classes: int,
        sample_rate: int = 16000,
        clip_seconds: float = 1.0,
        n_fft: int = 512,
        hop_length: int = 160,
        n_mels: int = 64,
        fmin: float = 20.0,
        fmax: float | None = None,
        channels: tuple[int, ...] = (16, 32, 64, 128),
        dropout: float = 0.2,
    ) -> None:
        super().__init__(
            num_classes, sample_rate, clip_seconds, n_fft, hop_length, n_mels, fmin, fmax
        )
        blocks: list[nn.Module] = []
        cin = 1
        for cout in channels:
            blocks += [ConvBNReLU(cin, cout), nn.AvgPool2d(2, ceil_mode=True)]
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.head = ClassifierHead(cin, num_classes, dropout)

    def forward_features(self, spec: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, frames, n_mels)`` -> clip embedding ``(batch, channels[-1])``."""
        x = self.features(self.normalize_bins(spec))  # (B, C, T', F')
        return freq_mean_time_mean_max(x)


@register_model(family="baselines", sample_rate=16000, clip_seconds=1.0)
def cnn_lite(num_classes: int, **kwargs) -> LiteCNN:
    """Four-block log-mel CNN (~0.1 M params); the fast CPU demo model."""
    return LiteCNN(num_classes, **kwargs)


# --- seed-003 baselines ---------------------------------------------------------------------
#
# Each model owns its log-mel frontend (audioclf's LogMel: power STFT, Slaney mel filters,
# dB) and works on (batch, 1, time, freq) maps. Two of them (piczak_cnn, simple_cnn) end in
# dense layers over the flattened map, so their input length is fixed by ``clip_seconds``
# and other lengths are rejected with a clear error; vgg_like and crnn pool globally and
# take any length.


def standardize(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-example zero mean, unit variance over all but the batch dim (no parameters)."""
    dims = tuple(range(1, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True)
    return (x - mean) / (std + eps)


def time_deltas(x: torch.Tensor, width: int = 9) -> torch.Tensor:
    """First-order regression deltas along time of ``(B, T, F)``, edges repeated.

    ``d_t = sum_n n * (x_{t+n} - x_{t-n}) / (2 * sum_n n^2)`` for ``n = 1..width // 2``,
    the usual speech-recognition delta (librosa's default width is 9).
    """
    half = width // 2
    padded = torch.cat([x[:, :1].expand(-1, half, -1), x, x[:, -1:].expand(-1, half, -1)], dim=1)
    steps = x.shape[1]
    num = sum(
        n * (padded[:, half + n : half + n + steps] - padded[:, half - n : half - n + steps])
        for n in range(1, half + 1)
    )
    return num / (2 * sum(n * n for n in range(1, half + 1)))


# why piczak_cnn and simple_cnn take one clip length only (LogMelModel.check_input)
_DENSE_SIZED = "its dense layers are sized for that clip"


def _flat_size(
    features: Callable[[torch.Tensor], torch.Tensor], channels: int, frames: int, bins: int
) -> int:
    """Number of features ``features`` outputs for one ``(channels, frames, bins)`` map.

    A dry run rather than hand arithmetic, so the size follows any change of the layers;
    the layers it is used on have no batch norm, so it changes no state.
    """
    with torch.no_grad():
        return features(torch.zeros(1, channels, frames, bins)).numel()


class PiczakCNN(LogMelModel):
    """Piczak's ESC-50 CNN ("Environmental sound classification with convolutional neural
    networks", MLSP 2015, doi:10.1109/MLSP.2015.7324337).

    Input: log-mel (60 bands, 1024-sample window, 512 hop at 22.05 kHz) and its deltas as
    two channels. conv 80 filters spanning 57 bands x 6 frames, ReLU, max pool 4 bands x 3
    frames with stride 1 x 3; conv 80 filters 1 x 3, ReLU, max pool 1 x 3 stride 1 x 3; two
    5000-unit ReLU dense layers with dropout 0.5; linear output.

    Adapted to the audioclf pipeline: Piczak cut clips into 41- or 101-frame segments and
    voted over the segment predictions; here the model sees a whole ``clip_seconds`` clip
    and the first dense layer is sized for it (use a 2.35 s clip, 101 frames, and sliding
    windows at inference for the segment recipe). The log-mel is audioclf's own frontend,
    standardised per clip instead of the paper's dataset-level scaling.
    ``forward``: ``(batch, clip_samples)`` -> logits ``(batch, num_classes)``.
    """

    head_prefixes = ("head.",)
    fixed_length = _DENSE_SIZED

    def __init__(
        self,
        num_classes: int,
        sample_rate: int = 22050,
        clip_seconds: float = 5.0,
        n_fft: int = 1024,
        hop_length: int = 512,
        n_mels: int = 60,
        fmin: float = 0.0,
        fmax: float | None = None,
        filters: int = 80,
        hidden: int = 5000,
        dropout: float = 0.5,
        deltas: bool = True,
    ) -> None:
        band_span = 57  # the first conv covers 57 of the 60 bands (slight frequency invariance)
        if n_mels < band_span + 3:
            raise ConfigError(f"piczak_cnn needs n_mels >= {band_span + 3}, got {n_mels}")
        # no bn0: the log-mel is standardised per clip
        super().__init__(
            num_classes, sample_rate, clip_seconds, n_fft, hop_length, n_mels, fmin, fmax, bn0=False
        )
        self.deltas = deltas
        in_ch = 2 if deltas else 1
        # kernels are (time, freq): the paper's 57x6 and 4x3 are (freq, time)
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, filters, (6, band_span)),
            nn.ReLU(inplace=True),
            nn.MaxPool2d((3, 4), stride=(3, 1)),
            nn.Conv2d(filters, filters, (3, 1)),
            nn.ReLU(inplace=True),
            nn.MaxPool2d((3, 1), stride=(3, 1)),
        )
        frames = self.frontend.num_frames(self.clip_samples)
        if frames < 17:
            raise ConfigError(f"piczak_cnn needs clips of at least 17 frames, got {frames}")
        flat = _flat_size(self.features, in_ch, frames, n_mels)
        self.dense = nn.Sequential(
            nn.Linear(flat, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
        )
        self.head = ClassifierHead(hidden, num_classes, dropout)

    def forward_features(self, spec: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, frames, n_mels)`` of a ``clip_samples`` clip -> second dense
        layer's output ``(batch, hidden)``."""
        x = standardize(spec)  # (B, T, F)
        x = torch.stack([x, time_deltas(x)], dim=1) if self.deltas else x.unsqueeze(1)
        return self.dense(self.features(x).flatten(1))


class VGGLike(LogMelModel):
    """VGG-style log-mel CNN (after Simonyan and Zisserman, arXiv:1409.1556): stages of 3x3
    conv-BN-ReLU layers, 2x2 max pooling after each stage, mean over frequency, mean + max
    over time, dropout, linear. ``stages`` lists ``(channels, convs)`` per stage.

    ``forward``: ``(batch, samples)`` -> logits ``(batch, num_classes)``; any length with at
    least ``2 ** len(stages)`` frames.
    """

    head_prefixes = ("head.",)

    def __init__(
        self,
        num_classes: int,
        sample_rate: int = 22050,
        clip_seconds: float = 5.0,
        n_fft: int = 1024,
        hop_length: int = 320,
        n_mels: int = 64,
        fmin: float = 20.0,
        fmax: float | None = None,
        stages: Sequence[Sequence[int]] = ((32, 2), (64, 2), (128, 2), (256, 2)),
        dropout: float = 0.3,
    ) -> None:
        super().__init__(
            num_classes, sample_rate, clip_seconds, n_fft, hop_length, n_mels, fmin, fmax
        )
        layers: list[nn.Module] = []
        cin = 1
        for i, stage in enumerate(stages):
            if len(stage) != 2 or min(stage) < 1:
                raise ConfigError(
                    f"vgg_like: stages[{i}] must be [channels, convs] >= 1, got {list(stage)}"
                )
            cout, convs = stage
            for _ in range(convs):
                layers.append(ConvBNReLU(cin, cout))
                cin = cout
            layers.append(nn.MaxPool2d(2))
        if n_mels < 2 ** len(stages):
            raise ConfigError(
                f"vgg_like: {len(stages)} stages halve the bins; need n_mels >= {2 ** len(stages)}"
            )
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(cin, num_classes, dropout)

    def forward_features(self, spec: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, frames, n_mels)`` -> ``(batch, channels of the last stage)``."""
        return freq_mean_time_mean_max(self.features(self.normalize_bins(spec)))


class CRNN(LogMelModel):
    """Convolutional recurrent network (after Cakir et al., arXiv:1702.06286): conv-BN-ReLU
    blocks with 2x2 max pooling, then the map is read as a sequence over time (channels x
    remaining bins per step) by a bidirectional GRU; its outputs are pooled (mean + max over
    time) into the clip embedding, then dropout and a linear layer.

    ``forward``: ``(batch, samples)`` -> logits ``(batch, num_classes)``; any length.
    """

    head_prefixes = ("head.",)

    def __init__(
        self,
        num_classes: int,
        sample_rate: int = 22050,
        clip_seconds: float = 5.0,
        n_fft: int = 1024,
        hop_length: int = 320,
        n_mels: int = 64,
        fmin: float = 20.0,
        fmax: float | None = None,
        channels: Sequence[int] = (32, 64, 128),
        hidden: int = 128,
        gru_layers: int = 1,
        dropout: float = 0.3,
    ) -> None:
        if n_mels < 2 ** len(channels):
            raise ConfigError(
                f"crnn: {len(channels)} blocks halve the bins; need n_mels >= {2 ** len(channels)}"
            )
        super().__init__(
            num_classes, sample_rate, clip_seconds, n_fft, hop_length, n_mels, fmin, fmax
        )
        layers: list[nn.Module] = []
        cin = 1
        for cout in channels:
            layers += [ConvBNReLU(cin, cout), nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        bins = n_mels // 2 ** len(channels)
        self.gru = nn.GRU(
            cin * bins, hidden, num_layers=gru_layers, batch_first=True, bidirectional=True
        )
        self.head = ClassifierHead(2 * hidden, num_classes, dropout)

    def forward_features(self, spec: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, frames, n_mels)`` -> pooled GRU states ``(batch, 2 * hidden)``."""
        x = self.features(self.normalize_bins(spec))  # (B, C, T', F')
        x = x.permute(0, 2, 1, 3).flatten(2)  # (B, T', C * F'): one vector per time step
        x, _ = self.gru(x)  # (B, T', 2 * hidden)
        return x.mean(dim=1) + x.amax(dim=1)


class SimpleCNN(LogMelModel):
    """The seed-003 SimpleCNN: conv 1->16->32->64 (3x3, padding 1), ReLU and 2x2 max pooling
    after each, flatten, fc1 (128, ReLU), dropout 0.3, fc2.

    fc1's input size is computed from the clip length rather than hard-coded. The defaults
    (22.05 kHz, 4 s UrbanSound8K clips, 512 hop, 64 bands) give the seed's 10752 inputs and
    1,400,970 parameters for 10 classes. The log-mel is standardised per clip (no parameters).
    ``forward``: ``(batch, clip_samples)`` -> logits ``(batch, num_classes)``.
    """

    head_prefixes = ("fc2.",)
    fixed_length = _DENSE_SIZED

    def __init__(
        self,
        num_classes: int,
        sample_rate: int = 22050,
        clip_seconds: float = 4.0,
        n_fft: int = 1024,
        hop_length: int = 512,
        n_mels: int = 64,
        fmin: float = 0.0,
        fmax: float | None = None,
        hidden: int = 128,
        dropout: float = 0.3,
        normalize: bool = True,
    ) -> None:
        # no bn0, as in the seed: ``normalize`` standardises each clip instead
        super().__init__(
            num_classes, sample_rate, clip_seconds, n_fft, hop_length, n_mels, fmin, fmax, bn0=False
        )
        self.normalize = normalize
        frames = self.frontend.num_frames(self.clip_samples)
        if min(frames, n_mels) < 8:
            raise ConfigError(
                f"simple_cnn pools 3 times by 2: needs >= 8 frames and bands, got {frames} x {n_mels}"
            )
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(_flat_size(self._convs, 1, frames, n_mels), hidden)
        self.fc2 = ClassifierHead(hidden, num_classes, dropout)

    @property
    def head(self) -> nn.Module:
        """The classifier, ``fc2`` (the seed's name, kept for its checkpoints)."""
        return self.fc2

    def _convs(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.conv1, self.conv2, self.conv3):
            x = self.pool(torch.relu(conv(x)))
        return x

    def forward_features(self, spec: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, frames, n_mels)`` of a ``clip_samples`` clip -> fc1 output ``(batch, hidden)``."""
        x = standardize(spec) if self.normalize else spec
        return torch.relu(self.fc1(self._convs(x.unsqueeze(1)).flatten(1)))


@register_model(family="baselines", sample_rate=22050, clip_seconds=5.0)
def piczak_cnn(num_classes: int, **kwargs) -> PiczakCNN:
    """Piczak's 2015 ESC-50 CNN: 2 convs (80 filters), two 5000-unit dense layers."""
    return PiczakCNN(num_classes, **kwargs)


@register_model(family="baselines", sample_rate=22050, clip_seconds=5.0)
def vgg_like(num_classes: int, **kwargs) -> VGGLike:
    """VGG-style log-mel CNN: 4 stages of two 3x3 conv-BN-ReLU, global pooling."""
    return VGGLike(num_classes, **kwargs)


@register_model(family="baselines", sample_rate=22050, clip_seconds=5.0)
def crnn(num_classes: int, **kwargs) -> CRNN:
    """Conv blocks + bidirectional GRU over time + linear."""
    return CRNN(num_classes, **kwargs)


@register_model(family="baselines", sample_rate=22050, clip_seconds=4.0)
def simple_cnn(num_classes: int, **kwargs) -> SimpleCNN:
    """The seed-003 SimpleCNN: 3 convs with 2x2 pooling, fc 128, fc out (1.4 M params)."""
    return SimpleCNN(num_classes, **kwargs)
