"""The built-in synthetic dataset: twelve kinds of sound event, generated deterministically.

Each clip holds one event of its class at a random onset, duration, pitch and loudness
over background noise at a random SNR, so a model has something real (but small and
offline) to learn. Clip ``i`` of class ``c`` is always the same audio for a given seed.
Splits are per class: the first 70 % of clips train, the next 15 % validate, the rest test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from audioclf.data.catalog.registry import (
    DatasetInfo,
    DatasetSource,
    Item,
    Option,
    register_dataset,
)
from audioclf.errors import ConfigError

Event = Callable[[np.random.Generator, np.ndarray, int], np.ndarray]
"""event(rng, t, sample_rate) -> signal: ``t`` is the event's time axis in seconds."""


def _tone(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    f = rng.uniform(300, 3000)
    return np.sin(2 * np.pi * f * t)


def _chirp(up: bool) -> Event:
    def event(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
        lo, hi = rng.uniform(200, 600), rng.uniform(2000, 6000)
        f0, f1 = (lo, hi) if up else (hi, lo)
        dur = max(t[-1], 1e-3)
        # exponential sweep: phase = 2*pi*f0*d/ln(k) * (k^(t/d) - 1)
        k = f1 / f0
        return np.sin(2 * np.pi * f0 * dur / np.log(k) * (k ** (t / dur) - 1))

    return event


def _noise_burst(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    return rng.standard_normal(t.size) * 0.5


def _click_train(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    rate = rng.uniform(8, 40)
    x = np.zeros(t.size)
    x[(np.arange(0, t[-1], 1 / rate) * sr).astype(int)] = 1.0
    return np.convolve(x, np.hanning(16), mode="same")


def _am_tone(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    f, m = rng.uniform(400, 2500), rng.uniform(4, 16)
    return (0.5 + 0.5 * np.sin(2 * np.pi * m * t)) * np.sin(2 * np.pi * f * t)


def _fm_tone(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    f, m, depth = rng.uniform(500, 2500), rng.uniform(5, 12), rng.uniform(0.05, 0.15)
    return np.sin(2 * np.pi * f * t + depth * f / m * np.sin(2 * np.pi * m * t))


def _buzz(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    f = rng.uniform(80, 250)
    return sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, 12) if f * h < sr / 2)


def _rumble(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    # low-passed noise: moving average over a few ms
    width = int(sr / rng.uniform(150, 400))
    return np.convolve(rng.standard_normal(t.size), np.ones(width) / np.sqrt(width), mode="same")


def _double_beep(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    f = rng.uniform(800, 3000)
    dur = max(t[-1], 1e-3)
    gate = ((t < 0.3 * dur) | ((t > 0.55 * dur) & (t < 0.85 * dur))).astype(float)
    return gate * np.sin(2 * np.pi * f * t)


def _rain(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    # random (Poisson) clicks, unlike the periodic click train
    x = np.zeros(t.size)
    n = rng.poisson(rng.uniform(60, 150) * max(t[-1], 1e-3))
    x[rng.integers(0, t.size, n)] = rng.uniform(0.3, 1.0, n)
    return np.convolve(x, np.hanning(8), mode="same")


def _siren(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    fc, dev, rate = rng.uniform(700, 1500), rng.uniform(200, 500), rng.uniform(0.8, 3)
    inst = fc + dev * np.sin(2 * np.pi * rate * t)
    return np.sin(2 * np.pi * np.cumsum(inst) / sr)


EVENTS: dict[str, Event] = {
    "tone": _tone,
    "chirp_up": _chirp(up=True),
    "chirp_down": _chirp(up=False),
    "noise_burst": _noise_burst,
    "click_train": _click_train,
    "am_tone": _am_tone,
    "fm_tone": _fm_tone,
    "buzz": _buzz,
    "rumble": _rumble,
    "double_beep": _double_beep,
    "rain": _rain,
    "siren": _siren,
}


def _shaped(white: np.ndarray, sample_rate: int, slope_db_per_octave: float) -> np.ndarray:
    """``white`` noise with its power falling by ``slope`` dB per octave, at the same RMS."""
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(white.size, 1 / sample_rate)
    f[0] = f[1] if f.size > 1 else 1.0
    spec *= (f / f[-1]) ** (-slope_db_per_octave / (20 * np.log10(2)))
    out = np.fft.irfft(spec, white.size)
    return out * np.sqrt(np.mean(white**2) / (np.mean(out**2) + 1e-20))


def _hum(white: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mains hum (50 Hz and its harmonics) with a little white noise, at the same RMS."""
    t = np.arange(white.size) / sample_rate
    hum = sum(np.sin(2 * np.pi * 50 * h * t + h) / h for h in range(1, 8))
    out = hum + 0.3 * white
    return out * np.sqrt(np.mean(white**2) / (np.mean(out**2) + 1e-20))


# Background noise kinds: white noise -> the background of a clip (same RMS).
NOISES: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "white": lambda w, sr: w,
    "pink": lambda w, sr: _shaped(w, sr, 3.0),
    "brown": lambda w, sr: _shaped(w, sr, 6.0),
    "hum": _hum,
}

# With ``conditions``, fold f records under condition (f - 1) % len(CONDITIONS): its own
# pitch factor and background noise, as a speaker or a microphone would bring its own.
CONDITIONS: tuple[tuple[float, str], ...] = ((1.0, "white"), (0.75, "pink"), (1.33, "brown"), (0.87, "hum"), (1.15, "pink"))


def synthesize(
    label: str, seed: int, sample_rate: int = 16000, seconds: float = 1.0, *, pitch: float = 1.0, noise: str = "white"
) -> np.ndarray:
    """One clip of class ``label``: float32 ``(round(seconds * sample_rate),)`` in [-1, 1].

    ``pitch`` scales every frequency of the event (0.75: a fourth lower); ``noise`` is the
    kind of background (see ``NOISES``). The defaults give the original clips.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    dur = rng.uniform(0.4, 0.9) * seconds
    m = max(int(dur * sample_rate), 16)
    onset = rng.integers(0, n - m + 1)
    # pitch: make the event pitch times as long, then read it pitch times as fast, so it
    # keeps its duration and every frequency is scaled (pitch 1 reads it as made)
    made = m if pitch == 1.0 else int(np.ceil(m * pitch)) + 1
    t = np.arange(made) / sample_rate
    event = EVENTS[label](rng, t, sample_rate)
    if pitch != 1.0:
        event = np.interp(np.arange(m) * pitch, np.arange(made), event)
    event = event / (np.abs(event).max() + 1e-9)
    fade = min(m // 8, int(0.01 * sample_rate))
    env = np.ones(m)
    env[:fade] = np.linspace(0, 1, fade)
    env[m - fade :] = np.linspace(1, 0, fade)
    clip = np.zeros(n)
    clip[onset : onset + m] = event * env
    level = 10 ** (rng.uniform(-24, -3) / 20)
    clip *= level
    snr_db = rng.uniform(6, 30)
    sig_rms = np.sqrt(np.mean((clip[onset : onset + m]) ** 2)) + 1e-12
    clip += NOISES[noise](rng.standard_normal(n), sample_rate) * sig_rms / 10 ** (snr_db / 20)
    return np.clip(clip, -1, 1).astype(np.float32)


def synthesize_scene(
    events: Sequence[tuple[str, float]], seconds: float = 10.0, seed: int = 0, sample_rate: int = 16000,
    event_seconds: float = 1.0,
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """A longer recording with several events over quiet background noise, for the
    timeline and the playhead: ``events`` are ``(label, onset seconds)``; each is a
    ``synthesize`` clip of ``event_seconds`` placed at its onset. Returns the audio
    ``(round(seconds * sample_rate),)`` float32 and ``(label, start, end)`` of each event
    slot (the sound itself fills 40-90 % of its slot, as in the dataset's clips)."""
    n = int(round(seconds * sample_rate))
    rng = np.random.default_rng(seed)
    scene = rng.standard_normal(n) * 10 ** (-50 / 20)  # -50 dBFS background
    placed = []
    for i, (label, onset) in enumerate(events):
        clip = synthesize(label, seed * 1000 + i, sample_rate, event_seconds)
        start = int(round(onset * sample_rate))
        if start < 0 or start + clip.size > n:
            raise ValueError(f"event {label!r} at {onset:g} s does not fit in a {seconds:g} s scene")
        scene[start : start + clip.size] += clip
        placed.append((label, start / sample_rate, (start + clip.size) / sample_rate))
    return np.clip(scene, -1, 1).astype(np.float32), placed


@register_dataset
class Synthetic(DatasetSource):
    info = DatasetInfo(
        name="synthetic",
        title="audioclf synthetic sound events (built in, offline)",
        task="single_label",
        classes=len(EVENTS),
        clips="12 x clips_per_class (default 960)",
        protocol="splits train/validation/test = 70/15/15 % per class, or k folds (-o folds=k)",
        license="CC0 (generated)",
        sample_rate=16000,
    )
    options = {
        "clips_per_class": Option(80, "clips generated per class", int),
        "seconds": Option(1.0, "clip length in seconds", (int, float)),
        "seed": Option(0, "generator seed: same seed, same audio", int),
        "folds": Option(0, "k > 0: assign clips to folds 1..k (k-fold protocol) instead of splits", int),
        "conditions": Option(False, "with folds: each fold has its own pitch factor and background noise, so a "
                             "test fold's condition is never seen in training (held-out condition CV)", bool),
    }

    def label_names(self) -> list[str]:
        return list(EVENTS)

    def items(self) -> list[Item]:
        per = int(self.opts["clips_per_class"])
        if per < 3:
            raise ConfigError("dataset 'synthetic': clips_per_class must be at least 3 (one per split)")
        # at least one validation and one test clip per class, the rest as close to 70/15/15
        n_val = n_test = max(1, int(round(per * 0.15)))
        n_train = per - n_val - n_test
        k = int(self.opts["folds"])
        if k < 0 or (k and per < k):
            raise ConfigError(f"dataset 'synthetic': folds must be 0 or between 1 and clips_per_class ({per}), got {k}")
        if self.opts["conditions"] and k < 2:
            raise ConfigError("dataset 'synthetic': conditions=true needs folds=k with k >= 2 (one condition per fold)")
        items = []
        for c, label in enumerate(EVENTS):
            for i in range(per):
                if k:  # every fold gets the same number of clips of every class
                    fold, split = i % k + 1, ""
                else:
                    fold, split = -1, "train" if i < n_train else "validation" if i < n_train + n_val else "test"
                items.append(Item(clip_id=f"{label}-{i:04d}", target=c, fold=fold, split=split, meta={"label": label, "index": i}))
        return items

    def load(self, item: Item, sample_rate: int) -> tuple[np.ndarray, int]:
        # one seed per (dataset seed, class, index): clips do not depend on generation order
        seed = np.random.SeedSequence([int(self.opts["seed"]), item.target, item.meta["index"]]).generate_state(1)[0]
        pitch, noise = 1.0, "white"
        if self.opts["conditions"]:
            pitch, noise = CONDITIONS[(item.fold - 1) % len(CONDITIONS)]
        return synthesize(item.meta["label"], int(seed), sample_rate, float(self.opts["seconds"]), pitch=pitch, noise=noise), sample_rate

    def store_name(self) -> str:
        return "synthetic.h5"

    def dataset_version(self) -> str:
        return "1"
