"""Figures of a run and of a prediction, drawn with matplotlib into PNG bytes.

Figures are built on ``matplotlib.figure.Figure`` directly, never through ``pyplot``:
no global figure registry, no GUI backend, safe in a server thread. Every ``plot_*``
function returns a ``Figure``; ``figure_png`` and ``save_figure`` turn it into a file.

    fig = plot_training_curves(read_history("runs/demo-.../metrics.csv"))
    save_figure(fig, "curves.png")
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audioclf.errors import AudioError, DataError
from audioclf.reporting.runs import History

if TYPE_CHECKING:
    from audioclf.inference.timeline import Timeline

log = logging.getLogger(__name__)

# The per-epoch series drawn in the "quality" panel of the training curves, in order of
# preference; a run shows the ones it logged (single-label runs log accuracy/F1,
# multi-label runs mAP/AUC, as in the PANNs mAP curve).
QUALITY_SERIES: dict[str, str] = {
    "val/accuracy": "val accuracy",
    "val/f1_macro": "val macro F1",
    "val/balanced_accuracy": "val balanced accuracy",
    "val/mAP": "val mAP",
    "val/mean_auc": "val mean AUC",
    "train/accuracy": "train accuracy",
    "train/mAP": "train mAP",
}
LOSS_SERIES: dict[str, str] = {"train/loss_epoch": "train loss", "train/loss": "train loss", "val/loss": "val loss"}
GAP_SERIES = "val/overfit_gap_pct"


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """PNG bytes of a figure (Agg renderer)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # attach the Agg canvas: savefig then needs no pyplot backend
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(figure_png(fig, dpi))
    log.debug("wrote %s", path)
    return path


# --- training ------------------------------------------------------------------------


def _draw_series(ax: Any, history: History, names: Mapping[str, str]) -> int:
    drawn = 0
    seen_labels: set[str] = set()
    for key, label in names.items():
        points = history.get(key)
        if not points or label in seen_labels:  # train/loss and train/loss_epoch are one curve
            continue
        seen_labels.add(label)
        epochs = [e + 1 for e, _ in points]  # Lightning counts from 0, people from 1
        ax.plot(epochs, [v for _, v in points], marker="o" if len(points) < 30 else None, markersize=3, label=label)
        drawn += 1
    return drawn


def plot_training_curves(history: History, title: str | None = None) -> Any:
    """Loss per epoch (train and validation), the validation quality metrics per epoch
    (accuracy/F1, or mAP/AUC like the PANNs training curve) and, when logged, the
    overfitting gap in percent. Raises ``ValueError`` when the history has no epoch series.
    """
    panels = [
        ("loss", LOSS_SERIES, "loss", "Loss per epoch"),
        ("quality", QUALITY_SERIES, "score", "Validation quality per epoch"),
        ("gap", {GAP_SERIES: "overfit gap (val vs train loss, %)"}, "%", "Overfitting gap"),
    ]
    present = [p for p in panels if any(history.has(k) for k in p[1])]
    if not present:
        raise DataError("no per-epoch loss or validation metrics to plot (is metrics.csv from a finished epoch?)")
    # sized for the report's ~1000 px column: 10-11 pt text stays readable when scaled down
    fig = _figure(4.6 * len(present), 3.8)
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    for ax, (kind, names, ylabel, panel_title) in zip(axes, present, strict=True):
        _draw_series(ax, history, names)
        ax.set_title(panel_title, fontsize=12)
        ax.set_xlabel("epoch", fontsize=11)
        ax.set_ylabel(ylabel, fontsize=11)
        ax.tick_params(labelsize=10)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if kind == "quality":
            ax.set_ylim(bottom=0)
        if kind == "gap":
            ax.axhline(0, color="0.5", linewidth=0.8)
        ax.legend(fontsize=10)
    if title:
        fig.suptitle(title)
    return fig


# --- evaluation ------------------------------------------------------------------------


def plot_confusion_matrix(
    matrix: Sequence[Sequence[float]] | np.ndarray, label_names: Sequence[str], normalize: bool = True, title: str | None = None
) -> Any:
    """Rows: true class, columns: predicted class. ``normalize`` shows each row as
    fractions of that class's clips (recall on the diagonal); counts are written in the
    cells when there are few enough classes to read them."""
    m = np.asarray(matrix, dtype=np.float64)
    c = len(label_names)
    if m.shape != (c, c):
        raise ValueError(f"confusion matrix is {m.shape}, expected ({c}, {c}) for {c} label names")
    shown = m / np.maximum(m.sum(1, keepdims=True), 1) if normalize else m
    size = min(3.0 + 0.38 * c, 24.0)
    fig = _figure(size + 1.2, size)
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None, interpolation="nearest")
    ticks = np.arange(c)
    fontsize = 8 if c <= 30 else 5
    ax.set_xticks(ticks, [str(n) for n in label_names], rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, [str(n) for n in label_names], fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if c <= 20:
        for i in range(c):
            for j in range(c):
                if m[i, j]:
                    dark = shown[i, j] > 0.6 * (shown.max() or 1)
                    ax.text(j, i, f"{m[i, j]:g}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of true class" if normalize else "clips")
    ax.set_title(title or ("confusion matrix (rows normalised)" if normalize else "confusion matrix"))
    return fig


def plot_per_class_bars(
    values: Mapping[str, float | None], metric: str, title: str | None = None, max_classes: int = 60
) -> Any:
    """Horizontal bars of one per-class number (AP, F1...), best at the top. Classes
    without a value (no positives in the evaluated clips) are left out and counted in the
    title; with more than ``max_classes`` classes the best and worst halves are shown."""
    known = {k: float(v) for k, v in values.items() if v is not None and not math.isnan(float(v))}
    if not known:
        raise DataError(f"no per-class {metric} values to plot")
    ranked = sorted(known.items(), key=lambda kv: kv[1], reverse=True)
    note = []
    if len(ranked) > max_classes:
        half = max_classes // 2
        note.append(f"best {half} and worst {half} of {len(ranked)}")
        ranked = ranked[:half] + [("…", float("nan"))] + ranked[-half:]
    missing = len(values) - len(known)
    if missing:
        note.append(f"{missing} class(es) without a value left out")
    fig = _figure(6.5, 1.0 + 0.22 * len(ranked))
    ax = fig.subplots()
    names = [k for k, _ in ranked][::-1]
    vals = np.array([v for _, v in ranked][::-1])
    ax.barh(np.arange(len(names)), np.nan_to_num(vals), color="tab:blue")
    ax.set_yticks(np.arange(len(names)), names, fontsize=7 if len(names) > 30 else 9)
    ax.set_xlim(0, 1)
    ax.set_xlabel(metric)
    ax.grid(axis="x", alpha=0.3)
    mean = float(np.mean(list(known.values())))
    ax.axvline(mean, color="tab:red", linewidth=1, label=f"mean {mean:.3f}")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title((title or f"per-class {metric}") + (f"\n({'; '.join(note)})" if note else ""), fontsize=10)
    return fig


def plot_per_class_ap(per_class: Mapping[str, Mapping[str, Any]], title: str | None = None) -> Any:
    """Per-class average precision of a multi-label evaluation (``metrics['per_class']``)."""
    return plot_per_class_bars({k: v.get("ap") for k, v in per_class.items()}, "AP", title)


def plot_per_class_f1(per_class: Mapping[str, Mapping[str, Any]], title: str | None = None) -> Any:
    """Per-class F1 of a single-label evaluation (``metrics['per_class']``)."""
    return plot_per_class_bars({k: v.get("f1") for k, v in per_class.items()}, "F1", title)


def evaluation_figures(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The figures an evaluation's metrics support, by file stem: ``confusion_matrix``
    (single-label), ``per_class_f1`` or ``per_class_ap``."""
    figures: dict[str, Any] = {}
    per_class = metrics.get("per_class")
    if metrics.get("confusion_matrix") is not None and per_class:
        figures["confusion_matrix"] = plot_confusion_matrix(metrics["confusion_matrix"], list(per_class))
    if per_class:
        sample = next(iter(per_class.values()))
        if "ap" in sample:
            figures["per_class_ap"] = plot_per_class_ap(per_class)
        elif "f1" in sample:
            figures["per_class_f1"] = plot_per_class_f1(per_class)
    return figures


# --- audio ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Spectrogram:
    """A display log-mel spectrogram: ``db`` is ``(n_mels, columns)``, low frequencies
    first; column ``i`` is centred at ``i * hop_seconds``."""

    db: np.ndarray
    hop_seconds: float
    duration: float
    # the mel bands' range (Slaney mel scale, as in LogMel); 0, 0 when unknown
    fmin: float = 0.0
    fmax: float = 0.0

    @property
    def columns(self) -> int:
        return int(self.db.shape[1])

    @property
    def db_range(self) -> tuple[float, float]:
        """(lowest, highest) level in the image, dB: the ends of its colour scale."""
        lo, hi = float(self.db.min()), float(self.db.max())
        return lo, hi if hi > lo else lo + 1

    def frequency_ticks(
        self, candidates: Sequence[float] = (50, 100, 200, 500, 1000, 2000, 4000, 8000, 16000), min_gap: float = 0.08
    ) -> list[tuple[float, str]]:
        """(position, label) of frequency ticks, low to high: position 0 is the bottom edge
        of the image, 1 the top; labels like ``"500 Hz"``, ``"2 kHz"``. The mel scale
        crowds low frequencies together, so a tick closer than ``min_gap`` (of the height)
        to a higher one is left out. Empty when the range is unknown."""
        if not self.fmax > self.fmin:
            return []
        from audioclf.audio.frontends import hz_to_mel

        n = self.db.shape[0]
        lo, hi = (float(v) for v in hz_to_mel(np.array([self.fmin, self.fmax], dtype=np.float64)))
        step = (hi - lo) / (n + 1)  # band i is centred at lo + (i + 1) * step
        ticks = []
        for f in candidates:
            if not self.fmin < f <= self.fmax:
                continue
            row = (float(hz_to_mel(np.array([f], dtype=np.float64))[0]) - lo) / step - 1  # fractional band index
            pos = (row + 0.5) / n
            if 0.0 <= pos <= 1.0:
                ticks.append((round(pos, 4), f"{f / 1000:g} kHz" if f >= 1000 else f"{f:g} Hz"))
        kept: list[tuple[float, str]] = []
        for tick in reversed(ticks):  # from the top down: the kHz ticks, then what fits below
            if not kept or kept[-1][0] - tick[0] >= min_gap:
                kept.append(tick)
        return kept[::-1]


def display_spectrogram(
    wave: np.ndarray, sample_rate: int, n_mels: int = 80, max_columns: int = 4000, top_db: float = 80.0
) -> Spectrogram:
    """Log-mel spectrogram of ``wave`` ``(samples,)`` for display, with the toolkit's own
    ``LogMel`` frontend. The hop grows for long audio so the image stays at most
    ``max_columns`` wide (one column per pixel in the report)."""
    import torch

    from audioclf.audio.frontends import LogMel

    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise AudioError(f"display_spectrogram needs non-empty mono audio (samples,), got shape {wave.shape}")
    n_fft = 2 ** max(6, round(math.log2(0.032 * sample_rate)))  # ~32 ms windows
    hop = max(round(0.01 * sample_rate), math.ceil(wave.size / max_columns))
    if hop > n_fft:  # very long audio: widen the window so no samples fall between frames
        n_fft = 2 ** math.ceil(math.log2(hop))
    if wave.size <= n_fft // 2:  # reflect padding needs more samples than half a window
        wave = np.pad(wave, (0, n_fft // 2 + 1 - wave.size))
    frontend_fmin = min(20.0, sample_rate / 4)
    frontend = LogMel(sample_rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels, fmin=frontend_fmin,
                      fmax=sample_rate / 2, top_db=top_db)
    with torch.no_grad():
        db = frontend(torch.from_numpy(wave)[None])[0].numpy()  # (frames, n_mels)
    return Spectrogram(db.T.copy(), hop / sample_rate, wave.size / sample_rate, frontend_fmin, sample_rate / 2)


SPECTROGRAM_CMAP = "magma"


def spectrogram_png(spec: Spectrogram, cmap: str = SPECTROGRAM_CMAP) -> bytes:
    """The bare spectrogram as a PNG, one pixel per column and per mel band, no axes:
    x in the image is time, linearly, so a page can place a playhead over it."""
    from matplotlib.image import imsave

    buf = io.BytesIO()
    lo, hi = spec.db_range
    imsave(buf, spec.db, cmap=cmap, vmin=lo, vmax=hi, origin="lower", format="png")
    return buf.getvalue()


def frame_edges(times: Sequence[float] | np.ndarray, duration: float) -> np.ndarray:
    """Boundaries ``(frames + 1,)`` of timeline frames centred at ``times`` (seconds); the
    same as ``Timeline.edges`` (:func:`audioclf.inference.timeline.frame_edges`)."""
    from audioclf.inference.timeline import frame_edges as edges

    return edges(times, duration)


def top_classes(scores: np.ndarray, label_names: Sequence[str], k: int) -> list[int]:
    """Indices of the ``k`` classes with the highest frame score, best first."""
    peak = np.asarray(scores).max(axis=0)
    return [int(i) for i in np.argsort(-peak, kind="stable")[: max(1, min(k, len(label_names)))]]


def plot_timeline(spec: Spectrogram, timeline: Timeline, top_k: int = 6, title: str | None = None) -> Any:
    """The spectrogram with the frame-wise scores of the ``top_k`` classes of a
    ``Timeline`` (``Classifier.predict_timeline``) as heat strips under it, on one time
    axis; the classes are those with the highest frame score, best on top."""
    scores = np.asarray(timeline.scores, dtype=np.float64)
    names = list(timeline.label_names)
    chosen = top_classes(scores, names, top_k)
    edges = timeline.edges
    fig = _figure(10, 3.0 + 0.32 * len(chosen))
    spec_ax, strip_ax = fig.subplots(2, 1, sharex=True, height_ratios=[3, max(1.0, 0.32 * len(chosen))])
    image = spec_ax.imshow(
        spec.db, origin="lower", aspect="auto", cmap=SPECTROGRAM_CMAP, interpolation="nearest",
        extent=(0, spec.duration, 0, 1),
    )
    ticks = spec.frequency_ticks()
    if ticks:
        spec_ax.set_yticks([p for p, _ in ticks], [label for _, label in ticks], fontsize=8)
        spec_ax.set_ylabel("frequency (mel scale)")
    else:
        spec_ax.set_yticks([])
        spec_ax.set_ylabel("mel bands")
    fig.colorbar(image, ax=spec_ax, label="level (dB)", aspect=12)
    spec_ax.set_title(title or "spectrogram and prediction timeline")
    rows = scores[:, chosen].T  # (classes, frames)
    mesh = strip_ax.pcolormesh(edges, np.arange(len(chosen) + 1), rows, cmap="viridis", vmin=0, vmax=1)
    strip_ax.set_yticks(np.arange(len(chosen)) + 0.5, [names[i] for i in chosen], fontsize=8)
    strip_ax.invert_yaxis()  # best class on top, next to the spectrogram
    strip_ax.set_xlabel("time (s)")
    strip_ax.set_xlim(0, spec.duration)
    fig.colorbar(mesh, ax=strip_ax, label="score", aspect=8)
    return fig
