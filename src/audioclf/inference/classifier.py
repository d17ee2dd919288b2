"""``Classifier``: a trained model ready to label audio files and arrays.

    clf = Classifier.from_checkpoint("runs/demo-.../checkpoints/best.ckpt")
    clf.predict("dog.wav", top_k=3)   # [Prediction("dog_bark", 0.93), ...]

    clf = Classifier.from_pretrained("panns-cnn14")   # published weights, AudioSet names
    clf.embed("dog.wav")                              # (2048,) clip embedding

Audio is decoded and resampled to the model's rate; a clip longer than the model's clip
length is scored in windows (half-overlapping) whose scores are averaged, a shorter one
is zero-padded, exactly as in training.

For long recordings, ``predict_timeline`` streams the file and returns frame-wise scores
(a :class:`~audioclf.inference.timeline.Timeline`) with events and CSV/JSON output:

    tl = clf.predict_timeline("field_recording.flac", hop=0.5)
    tl.events(threshold=0.6)          # [Event("dog_bark", 12.25, 14.0, 0.91), ...]
    tl.to_csv("field_recording.csv")
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audioclf.audio.io import check_samples, load_audio, resample, stream_audio
from audioclf.errors import AudioError, CheckpointError, ConfigError
from audioclf.inference.timeline import Timeline, WindowCutter, ranked, split_blocks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(self.score, 6)}


class Classifier:
    """A model plus what it needs to be used: labels, rate, clip length, task."""

    def __init__(self, model: torch.nn.Module, info: dict[str, Any], device: str | torch.device = "cpu") -> None:
        self.model = model.to(device).eval()
        self.info = info
        self.device = torch.device(device)
        self.label_names: list[str] = list(info["label_names"])
        self.sample_rate: int = int(info["sample_rate"])
        self.clip_samples: int = int(info["clip_samples"])
        self.multi_label: bool = info["task"] == "multi_label"

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", *, runtime: str = "torch", **runtime_options: Any
    ) -> Classifier:
        """``runtime``: ``torch`` (default), ``compile`` (``torch.compile``; the first call
        compiles), ``onnx`` (exported on the fly, run by ONNX
        Runtime on the CPU) or ``onnx-int8`` (also statically quantised; needs
        ``calibration=<store or clips>``); see :mod:`audioclf.inference.onnx_runtime`."""
        from audioclf.models.bundle import load_bundle_model

        model, info = load_bundle_model(path, device)
        return cls._with_runtime(model, info, device, runtime, runtime_options)

    @classmethod
    def _with_runtime(
        cls, model: torch.nn.Module, info: dict[str, Any], device: str | torch.device, runtime: str,
        options: dict[str, Any],
    ) -> Classifier:
        if runtime in ("torch", "compile"):
            if options:
                raise ConfigError(f"runtime={runtime!r} takes no options (got {', '.join(options)})")
            if runtime == "compile":
                model.compile()  # in place: weights, names and device unchanged
            return cls(model, info, device)
        from audioclf.inference.onnx_runtime import onnx_module

        if torch.device(device).type != "cpu":
            raise ConfigError(f"runtime={runtime!r} runs on the CPU; use runtime='torch' for device {device}")
        return cls(onnx_module(model.cpu(), info, runtime, **options), {**info, "runtime": runtime})

    @classmethod
    def from_onnx(cls, path: str | Path, *, threads: int | None = None) -> Classifier:
        """A file written by ``audioclf export`` (float or ``--quantize int8``), run by ONNX
        Runtime; labels, rate and clip length come from the file's metadata."""
        from audioclf.inference.onnx_runtime import OnnxModule, info_from_onnx

        return cls(OnnxModule(path, threads=threads), info_from_onnx(path))

    def save_pretrained(
        self, directory: str | Path, *, metrics: dict[str, Any] | None = None, card: dict[str, Any] | None = None
    ) -> Path:
        """Write this classifier in audioclf's Hub format (``model.safetensors``, ``config.json``,
        model card ``README.md``) to ``directory``; see :func:`audioclf.models.hub.save_pretrained`."""
        from audioclf.models.hub import save_pretrained

        return save_pretrained(self.model, self.info, directory, metrics=metrics, card=card)

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        model: str | None = None,
        offline: bool = False,
        device: str | torch.device = "cpu",
        *,
        runtime: str = "torch",
        **runtime_options: Any,
    ) -> Classifier:
        """Any model source: an audioclf checkpoint, a published file (architecture recognised,
        or named by ``model``), a catalog name (``panns-cnn14``), a Hugging Face directory or
        ``hf:ORG/REPO[@REV]``. See :func:`audioclf.models.pretrained.resolve_model`.
        ``runtime`` as for :meth:`from_checkpoint`."""
        from audioclf.models.pretrained import resolve_model

        net, info = resolve_model(source, model=model, offline=offline, device=device)
        return cls._with_runtime(net, info, device, runtime, runtime_options)

    @property
    def has_head(self) -> bool:
        """False for a pre-trained encoder published without a classifier (embeddings only)."""
        return bool(self.info.get("head", True))

    def _require_head(self) -> None:
        if not self.has_head:
            raise CheckpointError(
                f"{self.info.get('source', 'this model')}: a pre-trained encoder without a classifier head; "
                "use it for embeddings (`audioclf embed`) or fine-tune it (model.pretrained=...)"
            )

    # -- embeddings -------------------------------------------------------------------
    @torch.no_grad()
    def embed_batch(self, waveforms: np.ndarray | torch.Tensor) -> np.ndarray:
        """The model's documented clip embedding of ``(batch, clip_samples)`` clips at the
        model rate -> ``(batch, dim)``."""
        x = torch.as_tensor(np.asarray(waveforms, dtype=np.float32)).to(self.device)
        return self.model.embed(x).float().cpu().numpy()

    def embed(self, audio: str | Path | np.ndarray, sample_rate: int | None = None, batch_size: int = 16) -> np.ndarray:
        """Clip embedding ``(dim,)`` of a file or an array: the embeddings of its windows
        (as for :meth:`scores`) averaged."""
        windows = self.windows(self.load_waveform(audio, sample_rate))
        parts = [self.embed_batch(windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)]
        return np.concatenate(parts).mean(0)

    # -- scores -----------------------------------------------------------------------
    def _to_probs(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid() if self.multi_label else logits.softmax(-1)

    @torch.no_grad()
    def scores_batch(self, waveforms: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class probabilities for a batch of clips ``(batch, clip_samples)`` at the model rate."""
        self._require_head()
        x = torch.as_tensor(np.asarray(waveforms, dtype=np.float32)).to(self.device)
        return self._to_probs(self.model(x).float()).cpu().numpy()

    def score_windows(self, windows: np.ndarray | Iterable[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Class probabilities ``(windows, classes)`` of clips at the model rate, ``batch_size``
        of them per forward pass. ``windows`` is a ``(windows, clip_samples)`` array or an
        iterable of ``(clip_samples,)`` windows, consumed one batch at a time."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(windows, np.ndarray):
            batches: Iterable[np.ndarray] = (windows[i : i + batch_size] for i in range(0, len(windows), batch_size))
        else:
            batches = _stacked(windows, batch_size)
        parts = [self.scores_batch(b) for b in batches]
        if not parts:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        return np.concatenate(parts)

    def windows(self, audio: np.ndarray) -> np.ndarray:
        """``(samples,)`` -> ``(windows, clip_samples)``: padded to one clip, or half-overlapping
        windows covering the whole signal (the last one aligned to the end)."""
        n = self.clip_samples
        cutter = WindowCutter(n, n // 2)
        return np.stack([w for _, w in cutter.cut([np.asarray(audio, dtype=np.float32)])])

    def scores(self, audio: str | Path | np.ndarray, sample_rate: int | None = None, batch_size: int = 16) -> np.ndarray:
        """Clip-level class probabilities ``(classes,)`` of a file or an array.

        A file is streamed in blocks (memory bounded by a block, whatever its length); an
        array is taken at ``sample_rate`` (default: the model's) and resampled if needed.
        Non-finite or absurdly loud audio raises ``AudioDecodeError`` naming it.
        """
        if isinstance(audio, (str, Path)):
            # streamed, as predict_timeline does: a 2-hour file never sits in memory whole.
            # The same half-overlapping windows as :meth:`windows`, the last aligned to the end.
            n = self.clip_samples
            cutter = WindowCutter(n, n // 2)
            streamed = (w for _, w in cutter.cut(stream_audio(audio, self.sample_rate)))
            return self.score_windows(streamed, batch_size).mean(0)
        return self.score_windows(self.windows(self.load_waveform(audio, sample_rate)), batch_size).mean(0)

    def predict(
        self, audio: str | Path | np.ndarray, top_k: int = 5, sample_rate: int | None = None
    ) -> list[Prediction]:
        """Ranked ``Prediction(label, score)``, best first, ``top_k`` of them."""
        s = self.scores(audio, sample_rate)
        return [Prediction(self.label_names[i], float(s[i])) for i in ranked(s, top_k)]

    # -- long audio ------------------------------------------------------------------
    def predict_timeline(
        self,
        audio: str | Path | np.ndarray,
        window: float | None = None,
        hop: float | None = None,
        batch_size: int = 16,
        sample_rate: int | None = None,
        *,
        block_seconds: float = 10.0,
    ) -> Timeline:
        """Frame-wise scores of a recording of any length, one frame per sliding window.

        ``window`` (seconds, default the model's clip length) and ``hop`` (seconds, default
        half the window) place the windows; ``batch_size`` windows go through the model at
        a time. A file is streamed in ``block_seconds`` blocks and resampled block-wise, so
        memory stays bounded however long it is; an array (at ``sample_rate``, default the
        model's) is scored in memory through the same window cutter, so both give the same
        scores. Models with a fixed input length only accept their own clip length as
        ``window``.
        """
        win = self.clip_samples if window is None else int(round(window * self.sample_rate))
        step = win // 2 if hop is None else int(round(hop * self.sample_rate))
        if win < 1 or step < 1:
            raise ConfigError(f"window and hop must be positive and at least one sample, got window={window}, hop={hop}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(audio, (str, Path)):
            if sample_rate is not None:
                raise ConfigError("sample_rate applies to arrays; a file's own rate is read from its header")
            blocks: Iterable[np.ndarray] = stream_audio(audio, self.sample_rate, block_seconds)
        else:
            wave = self.load_waveform(audio, sample_rate)
            blocks = split_blocks(wave, max(1, int(round(block_seconds * self.sample_rate))))
        cutter = WindowCutter(win, step)
        starts: list[int] = []

        def waves() -> Iterator[np.ndarray]:
            for start, w in cutter.cut(blocks):
                starts.append(start)
                yield w

        scores = self.score_windows(waves(), batch_size)
        log.debug("timeline: %d samples, %d windows of %d samples", cutter.total, len(starts), win)
        return Timeline.from_windows(starts, scores, rate=float(self.sample_rate), window=win, hop=step, total=cutter.total,
                                     label_names=self.label_names, multi_label=self.multi_label)

    # -- audio -------------------------------------------------------------------------
    def load_waveform(self, audio: str | Path | np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        """Mono float32 ``(samples,)`` at the model's rate: a file decoded and resampled, or
        an array (``(samples,)``, or 2-D multi-channel, averaged) taken at ``sample_rate``
        (default: the model's) and resampled if needed. Empty or 3-D arrays raise ``ValueError``."""
        if isinstance(audio, (str, Path)):
            wave, _ = load_audio(audio, self.sample_rate)
            return wave
        wave = np.asarray(audio, dtype=np.float32)
        if wave.ndim == 2:  # (channels, samples) or (samples, channels): average the short axis
            wave = wave.mean(axis=int(np.argmin(wave.shape)))
        if wave.ndim != 1 or wave.size == 0:
            raise AudioError(f"audio array must be non-empty mono (samples,) or 2-D multi-channel, got shape {np.shape(audio)}")
        check_samples(wave, "audio array")
        sr = sample_rate or self.sample_rate
        return resample(wave, sr, self.sample_rate) if sr != self.sample_rate else wave


def _stacked(windows: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Windows grouped into ``(batch, samples)`` arrays of ``batch_size`` (the last may be smaller)."""
    batch: list[np.ndarray] = []
    for w in windows:
        batch.append(w)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)
