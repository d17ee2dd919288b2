"""Frame-wise scores over long audio: streaming reads, sliding windows, events.

A recording of any length is cut into windows of the model's clip length (or another
``window``) every ``hop`` seconds; each window gets class probabilities, and the
``Timeline`` holds them frame by frame. Files are *streamed* (:func:`audioclf.audio.io.stream_audio`): read in blocks with
soundfile and resampled block by block with soxr's ``ResampleStream``, so memory holds
one block plus one window whatever the file's length. Arrays already in memory go through
the same window cutter, so both paths produce the same windows and the same scores.

Window placement (same as :meth:`Classifier.windows`): windows start at ``0, hop, 2*hop,
...`` while they fit; when the last of them stops short of the end, one more window is
aligned to the end of the audio so the tail is scored without padding. Audio shorter than
one window gives a single zero-padded window.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audioclf.errors import AudioError, ConfigError

log = logging.getLogger(__name__)


# --- windows ------------------------------------------------------------------------------


class WindowCutter:
    """Cuts a stream of sample blocks into windows of ``window`` samples every ``hop``.

    ``push(block)`` returns the windows completed by that block as ``(start, samples)``
    pairs; ``finish()`` returns the tail window (aligned to the end) or, for audio shorter
    than a window, the zero-padded whole. It keeps at most one window plus one block.
    """

    def __init__(self, window: int, hop: int) -> None:
        if window < 1 or hop < 1:
            raise ConfigError(f"window and hop must be at least one sample, got window={window}, hop={hop}")
        self.window = window
        self.hop = hop
        self._buffer = np.zeros(0, dtype=np.float32)
        self._offset = 0  # stream position of _buffer[0]
        self._next = 0  # start of the next window on the hop grid
        self._last_end = 0  # end of the last window handed out
        self.total = 0  # samples seen so far

    def push(self, block: np.ndarray) -> list[tuple[int, np.ndarray]]:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        self._buffer = np.concatenate([self._buffer, block]) if self._buffer.size else block
        self.total += block.size
        out = []
        while self._next + self.window <= self.total:
            i = self._next - self._offset
            out.append((self._next, self._buffer[i : i + self.window].copy()))
            self._last_end = self._next + self.window
            self._next += self.hop
        # keep what a later window may need: from the next grid start, and the last full
        # window's worth for the end-aligned tail window
        keep_from = min(self._next, max(0, self.total - self.window))
        drop = keep_from - self._offset
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._offset = keep_from
        return out

    def finish(self) -> list[tuple[int, np.ndarray]]:
        if self.total == 0:
            raise AudioError("no audio samples to cut into windows")
        if self.total < self.window:
            return [(0, np.pad(self._buffer, (0, self.window - self.total)))]
        if self._last_end < self.total:
            i = self.total - self.window - self._offset
            return [(self.total - self.window, self._buffer[i : i + self.window].copy())]
        return []

    def cut(self, blocks: Iterable[np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
        """Every window of ``blocks``, in order."""
        for b in blocks:
            yield from self.push(b)
        yield from self.finish()


def split_blocks(audio: np.ndarray, block: int) -> Iterator[np.ndarray]:
    """An in-memory signal as consecutive views of ``block`` samples (no copies)."""
    for i in range(0, audio.size, block):
        yield audio[i : i + block]


def count_windows(total: int, window: int, hop: int) -> int:
    """How many windows :class:`WindowCutter` cuts from ``total`` samples (without cutting them)."""
    if window < 1 or hop < 1:
        raise ConfigError(f"window and hop must be at least one sample, got window={window}, hop={hop}")
    if total <= window:
        return 1
    grid = (total - window) // hop + 1
    return grid + (1 if (grid - 1) * hop + window < total else 0)


def ranked(scores: np.ndarray | Iterable[float], k: int) -> list[int]:
    """Indices of the ``k`` (at least one) highest ``scores``, best first; ties keep index order."""
    return [int(i) for i in np.argsort(-np.asarray(scores), kind="stable")[: max(1, k)]]


def frame_edges(times: Iterable[float] | np.ndarray, duration: float) -> np.ndarray:
    """Boundaries ``(frames + 1,)`` of frames centred at ``times`` (seconds): midway
    between neighbouring centres, the first at 0 and the last at ``duration``."""
    t = np.asarray(times, dtype=np.float64)
    if t.size == 0:
        raise ValueError("a timeline needs at least one frame")
    mid = (t[1:] + t[:-1]) / 2
    return np.concatenate([[0.0], mid, [max(float(duration), float(t[-1]))]])


def _file_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory: give the path of a file to write")
    return path


# --- the result ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A stretch of audio where one class scores above the threshold."""

    label: str
    start: float  # seconds
    end: float
    peak: float  # highest frame score inside the event

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "start": round(self.start, 4), "end": round(self.end, 4),
                "peak": round(self.peak, 6)}


@dataclass
class Timeline:
    """Frame-wise class probabilities of one recording.

    One frame per window: ``starts``/``ends`` ``(frames,)`` in seconds (ends clipped to the
    audio's duration), ``scores`` ``(frames, classes)`` float32 probabilities (softmax for
    single-label models, sigmoid for multi-label ones).
    """

    starts: np.ndarray
    ends: np.ndarray
    scores: np.ndarray
    label_names: list[str]
    multi_label: bool
    duration: float  # seconds of audio scored
    window: float  # seconds
    hop: float  # seconds

    @classmethod
    def from_windows(
        cls, starts: list[int] | np.ndarray, scores: np.ndarray, *, rate: float, window: int, hop: int, total: int,
        label_names: list[str], multi_label: bool,
    ) -> Timeline:
        """The timeline of windows cut by :class:`WindowCutter` (``window``/``hop`` samples,
        ``total`` samples seen): ``starts`` in samples and their ``scores`` ``(frames, classes)``."""
        start_s = np.asarray(starts, dtype=np.float64) / rate
        duration = total / rate
        return cls(
            starts=start_s, ends=np.minimum(start_s + window / rate, duration),
            scores=np.asarray(scores).astype(np.float32, copy=False), label_names=list(label_names),
            multi_label=multi_label, duration=duration, window=window / rate, hop=hop / rate,
        )

    def __post_init__(self) -> None:
        frames = len(self.starts)
        if self.scores.shape != (frames, len(self.label_names)) or len(self.ends) != frames:
            raise ValueError(
                f"timeline shapes disagree: {frames} starts, {len(self.ends)} ends, scores "
                f"{self.scores.shape}, {len(self.label_names)} labels"
            )

    @property
    def times(self) -> np.ndarray:
        """Window centres ``(frames,)`` in seconds."""
        return (self.starts + self.ends) / 2

    @property
    def edges(self) -> np.ndarray:
        """Frame boundaries ``(frames + 1,)`` in seconds: the stretch of time each frame
        speaks for runs from the midpoint between its centre and the previous one to the
        midpoint with the next (the first from 0, the last to the end). Overlapping windows
        would otherwise stretch every event by a window."""
        return frame_edges(self.times, self.duration)

    @property
    def clip_scores(self) -> np.ndarray:
        """Recording-level scores ``(classes,)``.

        Single-label: the mean of the frames (the class that dominates the recording).
        Multi-label: the max over frames (a class is present if it is present anywhere).
        """
        return self.scores.max(axis=0) if self.multi_label else self.scores.mean(axis=0)

    def top_labels(self, k: int = 5) -> list[tuple[str, float]]:
        s = self.clip_scores
        return [(self.label_names[i], float(s[i])) for i in ranked(s, k)]

    def events(self, threshold: float = 0.5, min_duration: float = 0.0, top_k: int | None = None) -> list[Event]:
        """Consecutive frames where a class scores at least ``threshold``, merged into events.

        Single-label: each frame counts for its argmax class only. Multi-label: every class
        is followed on its own, so events of different classes may overlap. Events shorter
        than ``min_duration`` seconds are dropped. Sorted by peak score, best first; at most
        ``top_k`` of them when given.
        """
        edges = self.edges
        lo, hi = edges[:-1], edges[1:]
        frames = len(self.starts)
        if self.multi_label:
            active = self.scores >= threshold  # (frames, classes)
        else:
            best = self.scores.argmax(axis=1)
            active = np.zeros_like(self.scores, dtype=bool)
            active[np.arange(frames), best] = self.scores[np.arange(frames), best] >= threshold
        found: list[Event] = []
        for c in np.flatnonzero(active.any(axis=0)):
            on = np.concatenate([[False], active[:, c], [False]]).astype(np.int8)
            edges = np.flatnonzero(np.diff(on))  # run starts and (exclusive) ends, paired
            for a, b in zip(edges[::2], edges[1::2], strict=True):
                ev = Event(self.label_names[c], float(lo[a]), float(hi[b - 1]),
                           float(self.scores[a:b, c].max()))
                if ev.duration >= min_duration:
                    found.append(ev)
        found.sort(key=lambda e: (-e.peak, e.start))
        return found if top_k is None else found[:top_k]

    # -- writing ---------------------------------------------------------------------
    def to_csv(self, path: str | Path) -> Path:
        """One row per frame: ``start,end,<label>...`` (seconds, probabilities)."""
        path = _file_path(path)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["start", "end", *self.label_names])
            for s, e, row in zip(self.starts, self.ends, self.scores, strict=True):
                w.writerow([f"{s:.4f}", f"{e:.4f}", *(f"{v:.6f}" for v in row)])
        return path

    def to_dict(self, threshold: float = 0.5, min_duration: float = 0.0) -> dict[str, Any]:
        return {
            "duration": self.duration,
            "window": self.window,
            "hop": self.hop,
            "task": "multi_label" if self.multi_label else "single_label",
            "label_names": self.label_names,
            "clip_scores": {k: round(float(v), 6) for k, v in zip(self.label_names, self.clip_scores, strict=True)},
            "events": [e.to_dict() for e in self.events(threshold, min_duration)],
            "event_threshold": threshold,
            "frames": [
                {"start": round(float(s), 4), "end": round(float(e), 4), "scores": [round(float(v), 6) for v in row]}
                for s, e, row in zip(self.starts, self.ends, self.scores, strict=True)
            ],
        }

    def to_json(self, path: str | Path, threshold: float = 0.5, min_duration: float = 0.0) -> Path:
        """Frames, clip scores and the events at ``threshold``, as one JSON document."""
        path = _file_path(path)
        path.write_text(json.dumps(self.to_dict(threshold, min_duration), indent=1))
        return path

    def save(self, path: str | Path, threshold: float = 0.5, min_duration: float = 0.0) -> Path:
        """Write CSV or JSON, chosen by the suffix of ``path``."""
        _file_path(path)
        writers = {
            ".csv": lambda: self.to_csv(path),
            ".json": lambda: self.to_json(path, threshold, min_duration),
        }
        suffix = Path(path).suffix.lower()
        if suffix not in writers:
            raise ConfigError(
                f"{path}: a timeline is written as {' or '.join(writers)}, not {suffix or 'no suffix'!r}"
            )
        return writers[suffix]()
