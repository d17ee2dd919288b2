"""The data behind the audio player of the report and of the service's page.

Both pages run the same script (``assets/player.js``) on the same JSON document, made
here by :func:`timeline_payload`::

    {"duration": s, "label_names": [...], "times": [...], "edges": [...],
     "scores": [[...], ...],            # (frames, classes)
     "clip_scores": [...], "top": [{"label", "score"}, ...],
     "window": s, "hop": s, "spectrogram": "data:image/png;base64,..." or null,
     "spectrogram_axis": {"ticks": [[position, "1 kHz"], ...], "db": [lo, hi],
                          "colours": [css colour, ...]} or null}

``edges`` are the frame boundaries in seconds (``frames + 1``): frame ``i`` is drawn from
``edges[i]`` to ``edges[i + 1]``, so the page needs no knowledge of window placement.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audioclf.reporting.plots import (
    SPECTROGRAM_CMAP,
    Spectrogram,
    display_spectrogram,
    spectrogram_png,
    top_classes,
)

if TYPE_CHECKING:
    from audioclf.inference.classifier import Classifier
    from audioclf.inference.timeline import Timeline

log = logging.getLogger(__name__)

# Containers browsers play natively, by suffix; anything else is re-encoded to WAV for
# the page (the browser cannot play AIFF or AU, for example).
BROWSER_AUDIO_TYPES: dict[str, str] = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".flac": "audio/flac",
}


def read_asset(name: str) -> str:
    """Text of a file in ``audioclf/reporting/assets/`` (the player script, the style)."""
    try:
        return resources.files("audioclf.reporting").joinpath("assets", name).read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"audioclf/reporting/assets/{name} is missing from the installed package (package data not installed?)"
        ) from err


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def audio_data_uri(path: str | Path, wave: np.ndarray | None = None, sample_rate: int | None = None) -> str:
    """The file as a data URI a browser can play: its own bytes when the format plays in
    browsers, else ``wave`` (mono float, at ``sample_rate``) encoded as 16-bit WAV."""
    path = Path(path)
    mime = BROWSER_AUDIO_TYPES.get(path.suffix.lower())
    if mime is not None:
        return data_uri(path.read_bytes(), mime)
    if wave is None or sample_rate is None:
        raise ValueError(f"{path}: browsers do not play {path.suffix or 'this'} files; pass the decoded wave to re-encode it")
    return data_uri(wav_bytes(wave, sample_rate), "audio/wav")


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wave, dtype=np.float32), -1, 1), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def script_json(data: Any) -> str:
    """JSON safe inside an inline ``<script>`` element: ``</`` cannot end the element."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


@dataclass(frozen=True)
class AudioView:
    """What the player shows for one recording."""

    timeline: Timeline
    spectrogram: Spectrogram | None  # None when not asked for
    wave: np.ndarray  # mono, at the model's rate
    sample_rate: int


def analyse_audio(
    classifier: Classifier,
    audio: str | Path | np.ndarray,
    sample_rate: int | None = None,
    hop: float | None = None,
    *,
    spectrogram: bool = True,
) -> AudioView:
    """Decode (a file) or take (an array at ``sample_rate``) a recording, score it frame by
    frame with ``classifier.predict_timeline`` and, with ``spectrogram``, compute its
    display spectrogram, both at the model's rate so they cover the same seconds."""
    wave = classifier.load_waveform(audio, sample_rate)
    timeline = classifier.predict_timeline(wave, hop=hop)
    spec = display_spectrogram(wave, classifier.sample_rate) if spectrogram else None
    return AudioView(timeline, spec, wave, classifier.sample_rate)


def _rounded(a: np.ndarray, decimals: int) -> list[Any]:
    return np.round(np.asarray(a, dtype=np.float64), decimals).tolist()


def timeline_payload(
    timeline: Timeline,
    spectrogram: Spectrogram | None = None,
    *,
    max_classes: int | None = None,
    top_k: int = 5,
    decimals: int = 4,
) -> dict[str, Any]:
    """The player's JSON document for a timeline (see the module docstring).

    ``max_classes`` keeps only the classes with the highest frame scores (for a compact
    page with hundreds of classes); ``top_k`` ranked clip-level labels go in ``top``.
    """
    from audioclf.inference.timeline import ranked

    scores = np.asarray(timeline.scores)
    names = list(timeline.label_names)
    keep = list(range(len(names))) if max_classes is None or max_classes >= len(names) else sorted(top_classes(scores, names, max_classes))
    clip = np.asarray(timeline.clip_scores)
    order = ranked(clip, top_k)
    return {
        "duration": float(timeline.duration),
        "window": float(timeline.window),
        "hop": float(timeline.hop),
        "label_names": [names[i] for i in keep],
        "times": _rounded(timeline.times, 4),
        "edges": _rounded(timeline.edges, 4),
        "scores": _rounded(scores[:, keep], decimals),
        "clip_scores": _rounded(clip[keep], decimals),
        "top": [{"label": names[i], "score": round(float(clip[i]), 6)} for i in order],
        "spectrogram": data_uri(spectrogram_png(spectrogram), "image/png") if spectrogram is not None else None,
        "spectrogram_axis": spectrogram_axis(spectrogram) if spectrogram is not None else None,
    }


def spectrogram_axis(spectrogram: Spectrogram, steps: int = 9) -> dict[str, Any]:
    """What the player needs to label the spectrogram image: frequency ticks (position
    0 = bottom edge, 1 = top; label), the dB range of its colours and the colour map as
    ``steps`` CSS colours from the lowest level to the highest."""
    from matplotlib import colormaps

    lo, hi = spectrogram.db_range
    rgba = colormaps[SPECTROGRAM_CMAP](np.linspace(0.0, 1.0, steps))
    return {
        "ticks": [[pos, label] for pos, label in spectrogram.frequency_ticks()],
        "db": [round(lo, 1), round(hi, 1)],
        "colours": [f"rgb({int(r * 255)},{int(g * 255)},{int(b * 255)})" for r, g, b, _ in rgba],
    }
