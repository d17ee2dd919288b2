"""Decode any audio file to float32 mono at a requested sample rate.

soundfile (libsndfile) decodes WAV (16/24/32-bit PCM, float, odd header chunks), FLAC,
OGG/Vorbis/Opus and, with libsndfile >= 1.1, MP3; soxr resamples. Every failure names
the file and the reason, because a training run that dies on clip 6,112 of 8,732 with a
bare "Error opening" is a day lost.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from audioclf.errors import AudioError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au")


# The largest |sample| accepted: 60 dB above full scale, room for any float recording
# that clipped in its mixing, and far below values that overflow a model to NaN.
MAX_ABS_SAMPLE = 1000.0


class AudioDecodeError(AudioError):
    """A file could not be decoded; the message names the file and the reason."""


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: str | Path) -> AudioInfo:
    """Header facts of a file, without decoding it."""
    path = Path(path)
    _check_exists(path)
    try:
        i = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioDecodeError(f"{path}: not a readable audio file ({_reason(err)})") from err
    return AudioInfo(str(path), i.samplerate, i.channels, i.frames, i.format, i.subtype)


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    *,
    start: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode ``path`` to float32 mono ``(samples,)``; resample when ``sample_rate`` is given.

    ``start``/``duration`` (seconds) read only part of the file. Returns ``(audio, rate)``:
    without ``sample_rate`` the file's own rate. Multi-channel audio is averaged to mono.
    """
    path = Path(path)
    _check_exists(path)
    if path.suffix.lower() == ".wav":
        _check_wav_complete(path)
    return _decode(str(path), path, sample_rate, start, duration)


def decode_bytes(data: bytes, sample_rate: int | None = None, name: str = "<bytes>") -> tuple[np.ndarray, int]:
    """``load_audio`` for an encoded file held in memory; ``name`` says where it came from."""
    if not data:
        raise AudioDecodeError(f"{name}: the audio holds no bytes")
    return _decode(io.BytesIO(data), name, sample_rate, 0.0, None)


def stream_audio(path: str | Path, sample_rate: int, block_seconds: float = 10.0) -> Iterator[np.ndarray]:
    """Yield a file as float32 mono blocks ``(samples,)`` at ``sample_rate``.

    Reads ``block_seconds`` of the file at a time and resamples with a soxr stream (HQ, the
    quality of :func:`load_audio`), whose output equals resampling the whole file at once,
    so memory holds one block whatever the file's length. Errors name the file, as in
    :func:`load_audio`.
    """
    path = Path(path)
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    info = audio_info(path)  # existence, readability, header facts
    if path.suffix.lower() == ".wav":
        _check_wav_complete(path)
    block = max(1, int(round(block_seconds * info.sample_rate)))
    stream = None
    if info.sample_rate != sample_rate:
        stream = soxr.ResampleStream(info.sample_rate, sample_rate, 1, dtype="float32", quality="HQ")
    read = 0
    try:
        with sf.SoundFile(str(path)) as f:
            while True:
                data = f.read(frames=block, dtype="float32", always_2d=True)
                read += data.shape[0]
                last = data.shape[0] < block
                mono = _mono(data, path)
                if stream is not None:
                    mono = stream.resample_chunk(np.ascontiguousarray(mono), last=last)
                if mono.size:
                    yield np.ascontiguousarray(mono, dtype=np.float32)
                if last:
                    break
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioDecodeError(f"{path}: not a readable audio file ({_reason(err)})") from err
    _check_complete(path, read, info.frames)


def _decode(
    source: Any, name: str | Path, sample_rate: int | None, start: float, duration: float | None
) -> tuple[np.ndarray, int]:
    """Read ``source`` (a path or a file object) whole or in part; checks and errors name ``name``."""
    try:
        with sf.SoundFile(source) as f:
            native = f.samplerate
            first = int(round(start * native))
            if first:
                f.seek(min(first, f.frames))
            count = -1 if duration is None else int(round(duration * native))
            data = f.read(frames=count, dtype="float32", always_2d=True)
            expected = f.frames - first if duration is None else min(count, f.frames - first)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioDecodeError(f"{name}: not a readable audio file ({_reason(err)})") from err
    _check_complete(name, data.shape[0], expected)
    mono = _mono(data, name)
    if sample_rate is not None and sample_rate != native:
        mono = resample(mono, native, sample_rate)
        native = sample_rate
    return np.ascontiguousarray(mono, dtype=np.float32), native


def _mono(data: np.ndarray, name: str | Path) -> np.ndarray:
    """``(frames, channels)`` -> finite mono ``(frames,)`` of a sane level."""
    check_samples(data, name)  # before averaging: inf - inf would hide as NaN elsewhere
    return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]


def check_samples(audio: np.ndarray, name: str | Path) -> None:
    """Raise ``AudioDecodeError`` naming ``name`` if ``audio`` holds NaN or infinite samples,
    or a peak above ``MAX_ABS_SAMPLE``. Integer formats decode to [-1, 1]; a float file may
    go a little beyond full scale, but samples of 1e29 are a damaged or hostile file whose
    scores would all be NaN."""
    if audio.size == 0:
        return
    if not np.all(np.isfinite(audio)):
        raise AudioDecodeError(f"{name}: the audio contains NaN or infinite samples")
    peak = float(np.max(np.abs(audio)))
    if peak > MAX_ABS_SAMPLE:
        raise AudioDecodeError(
            f"{name}: samples reach {peak:.3g}, far beyond full scale (1.0; audioclf accepts up to "
            f"{MAX_ABS_SAMPLE:g}): a damaged file, or not audio"
        )


def _check_complete(name: str | Path, read: int, expected: int) -> None:
    if read == 0:
        raise AudioDecodeError(f"{name}: the file holds no audio samples")
    if expected > 0 and read < expected:
        # libsndfile returns what it could read from a file cut short
        raise AudioDecodeError(f"{name}: truncated file: header promises {expected} frames, only {read} could be read")


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """High-quality resampling with soxr; ``audio`` is ``(samples,)`` float32."""
    if orig_rate == target_rate:
        return audio
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {target_rate}")
    return soxr.resample(audio, orig_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def save_audio(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write ``(samples,)`` or ``(samples, channels)`` float audio; format from the suffix."""
    sf.write(str(path), audio, sample_rate, subtype=subtype)


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioDecodeError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"{path}: the file is empty (0 bytes)")


def _check_wav_complete(path: Path) -> None:
    """libsndfile quietly shortens a WAV cut off mid-data to what is there; compare the
    ``data`` chunk's declared size with the bytes present to say so instead."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return  # RF64/W64 and friends: trust libsndfile
        order = "little" if head[:4] == b"RIFF" else "big"
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk = fh.read(8)
            n = int.from_bytes(chunk[4:8], order)
            if chunk[:4] == b"data":
                present = size - pos - 8
                # 0 and 0xFFFFFFFF are written by streaming encoders that never went back
                if 0 < n < 0xFFFFFFFF and present < n:
                    raise AudioDecodeError(
                        f"{path}: truncated file: data chunk declares {n} bytes, only {present} are present"
                    )
                return
            pos += 8 + n + (n & 1)  # chunks are padded to even sizes


def _reason(err: Exception) -> str:
    msg = str(err)
    # libsndfile messages repeat the path; keep the reason only
    if ":" in msg and str(msg).startswith("Error opening"):
        msg = msg.split(":", 1)[1].strip()
    return msg or type(err).__name__
