"""AST: Audio Spectrogram Transformer (Gong, Chung and Glass, 2021, arXiv:2104.01778).

AST is a DeiT-style ViT over a Kaldi filter bank: overlapping 16x16 patches (stride 10 in
time and frequency) of a fixed-length (frames x 128 mel) fbank, a class and a distillation
token, 12 pre-norm layers; the clip embedding is the mean of the two tokens' outputs and the
head is LayerNorm + Linear. The network itself is ``transformers.ASTForAudioClassification``
(so Hugging Face checkpoints load with their own code and key names); this module adds the
waveform frontend and the audioclf model contract.

Frontend, as AST's recipe and ``ASTFeatureExtractor`` compute it: Kaldi fbank with a Hanning
window on the waveform as it is (float in [-1, 1], not int16-scaled), zero-padded or cut to
``max_length`` frames, then ``(fbank - mean) / (2 * std)`` with the training set's statistics
(AudioSet: -4.2677393, 4.5689974).

``transformers`` is an optional dependency: it is imported only when a model is built.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audioclf.audio.frontends import FbankNormalize, KaldiFbank
from audioclf.errors import CheckpointError
from audioclf.models.registry import register_model

log = logging.getLogger(__name__)

AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
SPEECH_COMMANDS_MEAN = -6.845978
SPEECH_COMMANDS_STD = 5.5654526

# ASTConfig fields that must agree between a model and a checkpoint directory.
ARCHITECTURE_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "layer_norm_eps",
    "patch_size",
    "qkv_bias",
    "frequency_stride",
    "time_stride",
    "max_length",
    "num_mel_bins",
)


class PadOrCropFrames(nn.Module):
    """``(B, frames, bins)`` -> ``(B, length, bins)``: zero-pad at the end or cut.

    AST's position embedding fixes the number of frames; padding happens before
    normalisation, as in the reference recipe (padded frames become ``-mean / (2 std)``).
    """

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length = length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        missing = self.length - x.shape[1]
        if missing > 0:
            return nn.functional.pad(x, (0, 0, 0, missing))
        return x[:, : self.length]

    def extra_repr(self) -> str:
        return f"length={self.length}"


class AST(nn.Module):
    """Kaldi-fbank frontend + ``transformers.ASTForAudioClassification``.

    ``forward(waveform (B, samples))`` at 16 kHz -> logits ``(B, num_classes)``. Any length
    of at least one 25 ms frame is accepted; the fbank is padded or cut to ``max_length``
    frames (10 ms each), so ``clip_samples`` is ``max_length * 160``.
    """

    head_prefixes = ("ast.classifier.",)

    def __init__(
        self,
        num_classes: int,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        max_length: int = 1024,
        num_mel_bins: int = 128,
        patch_size: int = 16,
        frequency_stride: int = 10,
        time_stride: int = 10,
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        fbank_mean: float = AUDIOSET_MEAN,
        fbank_std: float = AUDIOSET_STD,
    ) -> None:
        super().__init__()
        from transformers import ASTConfig, ASTForAudioClassification

        self.num_classes = num_classes
        self.sample_rate = 16000
        self.clip_samples = max_length * 160  # one 10 ms frame per 160 samples
        self.config = ASTConfig(
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            max_length=max_length,
            num_mel_bins=num_mel_bins,
            patch_size=patch_size,
            frequency_stride=frequency_stride,
            time_stride=time_stride,
            hidden_dropout_prob=hidden_dropout_prob,
            attention_probs_dropout_prob=attention_probs_dropout_prob,
            num_labels=num_classes,
        )
        self.frontend = nn.Sequential(
            OrderedDict(
                fbank=KaldiFbank(
                    self.sample_rate, n_mels=num_mel_bins, window="hanning", waveform_scale=1.0
                ),
                crop=PadOrCropFrames(max_length),
                norm=FbankNormalize(fbank_mean, fbank_std),
            )
        )
        self.ast = ASTForAudioClassification(self.config)

    def forward_features(self, fbank: torch.Tensor) -> torch.Tensor:
        """Normalised fbank ``(B, max_length, num_mel_bins)`` -> pooled tokens ``(B, hidden)``."""
        return self.ast.audio_spectrogram_transformer(input_values=fbank).pooler_output

    @property
    def head(self) -> nn.Module:
        """The classifier (layer norm + linear), ``ast.classifier`` as in transformers."""
        return self.ast.classifier

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` -> clip embedding ``(B, hidden)``: mean of class and distillation
        token outputs."""
        return self.forward_features(self.frontend(waveform))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` at 16 kHz -> logits ``(B, num_classes)``."""
        return self.head(self.forward_features(self.frontend(waveform)))

    # -- checkpoint import ---------------------------------------------------------------

    def load_pretrained_dir(self, path: str | Path) -> None:
        """Load a Hugging Face AST directory (``config.json`` + weights) into this model.

        The directory's architecture must equal this model's (a clear error names the
        settings that differ); a head for another class count is replaced, with a log
        message. A ``preprocessor_config.json`` whose normalisation differs from this
        model's frontend is an error too: the weights only work with the features they
        were trained on.
        """
        from transformers import ASTConfig, ASTForAudioClassification

        from audioclf.models.checkpoints import load_state_into

        path = Path(path)
        theirs = ASTConfig.from_pretrained(path)
        differ = [
            f"{key}: checkpoint {getattr(theirs, key)!r} vs model {getattr(self.config, key)!r}"
            for key in ARCHITECTURE_KEYS
            if getattr(theirs, key) != getattr(self.config, key)
        ]
        if differ:
            raise CheckpointError(
                f"{path}: AST checkpoint was made for another architecture ({'; '.join(differ)}); "
                "build the model with matching settings"
            )
        self._check_preprocessor(path)

        source, info = ASTForAudioClassification.from_pretrained(path, output_loading_info=True)
        state = {f"ast.{k}": v for k, v in source.state_dict().items()}
        # A directory holding only the encoder (ASTModel) gets a random head from
        # from_pretrained: drop it, so ours stays and is reported as replaced.
        fresh = {f"ast.{k}" for k in info.get("missing_keys", ())}
        state = {k: v for k, v in state.items() if k not in fresh}
        load_state_into(self, state, source=str(path))

    def _check_preprocessor(self, path: Path) -> None:
        file = path / "preprocessor_config.json"
        if not file.exists():
            return
        prep = json.loads(file.read_text())
        ours = {
            "sampling_rate": self.sample_rate,
            "num_mel_bins": self.config.num_mel_bins,
            "max_length": self.config.max_length,
            "mean": self.frontend.norm.mean,
            "std": self.frontend.norm.std,
        }
        differ = [
            f"{key}: checkpoint {prep[key]!r} vs model {value!r}"
            for key, value in ours.items()
            if key in prep
            and abs(float(prep[key]) - float(value)) > 1e-6 * max(1.0, abs(float(value)))
        ]
        if prep.get("do_normalize") is False:
            differ.append("do_normalize: checkpoint False vs model True")
        if differ:
            raise CheckpointError(
                f"{path}: the checkpoint's features differ from this model's frontend "
                f"({'; '.join(differ)}); "
                "pass matching settings (fbank_mean, fbank_std, max_length)"
            )


# --- registered variants --------------------------------------------------------------------


@register_model(
    family="ast",
    paper="arXiv:2104.01778",
    sample_rate=16000,
    clip_seconds=10.24,
    requires=("transformers",),
)
def ast(num_classes: int, **overrides: Any) -> AST:
    """AST base (ViT-B, 87M), AudioSet setup: 1024 frames (10.24 s), AudioSet fbank statistics.

    Loads Hugging Face AST directories such as ``MIT/ast-finetuned-audioset-10-10-0.4593``;
    ``overrides`` set any :class:`AST` argument (e.g. a small encoder for tests).
    """
    return AST(num_classes, **overrides)


@register_model(
    family="ast",
    paper="arXiv:2104.01778",
    sample_rate=16000,
    clip_seconds=1.28,
    requires=("transformers",),
)
def ast_speech_commands(num_classes: int, **overrides: Any) -> AST:
    """AST base for 1 s keywords: 128 frames (1.28 s), Speech Commands fbank statistics.

    The setup of ``MIT/ast-finetuned-speech-commands-v2``.
    """
    settings: dict[str, Any] = {
        "max_length": 128,
        "fbank_mean": SPEECH_COMMANDS_MEAN,
        "fbank_std": SPEECH_COMMANDS_STD,
    }
    settings.update(overrides)
    return AST(num_classes, **settings)
