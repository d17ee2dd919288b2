"""Label-preserving waveform augmentations, on the CPU, in DataLoader workers.

One clip at a time: numpy float32 ``(samples,)`` in, the same shape out
(:func:`build_waveform_augment`, config ``data.augment``). Each has its own probability
``p``. Most are thin adapters over `audiomentations`; the few it lacks (``segment_gain``,
``split_stretch``, the synthetic ``reverb``) are written here. Spectrogram masking and
batch mixing run on the accelerator during training: :mod:`audioclf.training.spec_augment`
and :mod:`audioclf.training.mixing`.

Seeding
-------
A :class:`WaveformAugment` holds no random state of its own: each call takes the
``numpy.random.Generator`` of the clip (``ClipDataset`` derives it from (seed, epoch,
clip), so an epoch draws the same augmentations whatever the number of workers, and a
resumed run draws what an uninterrupted one would). Everything random in the call comes
from that generator: the coin flips for ``p``, the parameters of the transforms written
here, and, for the audiomentations transforms (which read Python's ``random`` and numpy's
global RNG, the library offers no generator argument), a seed that is put into both
global RNGs for the duration of the transform and taken out again afterwards. That
temporary re-seeding is not thread-safe; DataLoader workers are processes.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import fftconvolve

from audioclf.errors import ConfigError
from audioclf.registry import Registry, check_probability, validate_options

__all__ = [
    "WAVEFORM_AUGMENTS",
    "WaveformAugment",
    "WaveformTransform",
    "build_waveform_augment",
    "list_waveform_augments",
    "register_waveform_augment",
]

log = logging.getLogger(__name__)

# A waveform transform maps (samples,) float32 and a generator to (samples,) float32.
WaveformTransform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


# name -> builder(sample_rate, **options) -> WaveformTransform. The order of
# registration is the order of application (see WaveformAugment).
WAVEFORM_AUGMENTS: Registry[Callable[..., WaveformTransform]] = Registry("waveform augmentation")


def register_waveform_augment(
    name: str,
) -> Callable[[Callable[..., WaveformTransform]], Callable[..., WaveformTransform]]:
    """Register ``builder(sample_rate, *, option=default, ...)`` under ``name``.

    The builder's keyword-only parameters are the options a config may set (besides
    ``p``); those without a default are required.
    """

    return WAVEFORM_AUGMENTS.register(name)


def list_waveform_augments() -> list[str]:
    """Registered waveform augmentation names, in the order they are applied."""
    return WAVEFORM_AUGMENTS.names()


@contextlib.contextmanager
def _global_rngs_seeded(seed: int) -> Iterator[None]:
    """Seed Python's and numpy's global RNGs for the block, then put their states back."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class _Audiomentation:
    """Adapter: an audiomentations transform (built with p=1) as a WaveformTransform.

    audiomentations draws from the global RNGs; they are seeded from ``rng`` for the
    call so the result depends on ``rng`` only.
    """

    def __init__(self, transform: Any, sample_rate: int) -> None:
        self.transform = transform
        self.sample_rate = sample_rate

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        with _global_rngs_seeded(int(rng.integers(2**32))):
            return self.transform(samples, sample_rate=self.sample_rate)

    def __repr__(self) -> str:
        return f"_Audiomentation({self.transform.__class__.__name__})"


def _audio_folder(name: str, path: str | Path | list) -> list[str]:
    """Check that ``path`` (a file, a folder, or a list of them) exists; ValueError if not."""
    paths = path if isinstance(path, list | tuple) else [path]
    for p in paths:
        if not Path(p).exists():
            raise ConfigError(f"waveform augmentation {name!r}: path {str(p)!r} does not exist")
    return [str(p) for p in paths]


@register_waveform_augment("time_stretch")
def _time_stretch(
    sample_rate: int, *, min_rate: float = 0.8, max_rate: float = 1.25
) -> WaveformTransform:
    """Change tempo, not pitch, by a rate in [min_rate, max_rate]; cropped/zero-padded."""
    import audiomentations as am

    return _Audiomentation(
        am.TimeStretch(min_rate=min_rate, max_rate=max_rate, leave_length_unchanged=True, p=1.0),
        sample_rate,
    )


class _SplitStretch:
    """Cut the clip at random points and resample each part by its own rate.

    A rate > 1 compresses a part (faster, higher), < 1 stretches it. Parts are
    resampled by linear interpolation, which is cheap and enough for an augmentation.
    The concatenation is cut, or zero-padded at the end, back to the input length.
    """

    def __init__(self, min_parts: int, max_parts: int, min_rate: float, max_rate: float) -> None:
        if not 1 <= min_parts <= max_parts:
            raise ConfigError(
                f"waveform augmentation 'split_stretch': need 1 <= min_parts <= max_parts, "
                f"got {min_parts}, {max_parts}"
            )
        if not 0 < min_rate <= max_rate:
            raise ConfigError(
                f"waveform augmentation 'split_stretch': need 0 < min_rate <= max_rate, "
                f"got {min_rate}, {max_rate}"
            )
        self.min_parts, self.max_parts = int(min_parts), int(max_parts)
        self.min_rate, self.max_rate = float(min_rate), float(max_rate)

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(samples)
        parts = int(min(rng.integers(self.min_parts, self.max_parts + 1), n))
        cuts = np.sort(rng.choice(np.arange(1, n), size=parts - 1, replace=False))
        pieces = []
        for piece in np.split(samples, cuts):
            rate = rng.uniform(self.min_rate, self.max_rate)
            new_len = max(1, round(len(piece) / rate))
            positions = np.linspace(0, len(piece) - 1, new_len)
            pieces.append(np.interp(positions, np.arange(len(piece)), piece))
        out = np.zeros(n, dtype=np.float32)
        joined = np.concatenate(pieces)[:n]
        out[: len(joined)] = joined
        return out


@register_waveform_augment("split_stretch")
def _split_stretch(
    sample_rate: int,
    *,
    min_parts: int = 2,
    max_parts: int = 4,
    min_rate: float = 0.8,
    max_rate: float = 1.25,
) -> WaveformTransform:
    return _SplitStretch(min_parts, max_parts, min_rate, max_rate)


@register_waveform_augment("pitch_shift")
def _pitch_shift(
    sample_rate: int, *, min_semitones: float = -4.0, max_semitones: float = 4.0
) -> WaveformTransform:
    import audiomentations as am

    return _Audiomentation(
        am.PitchShift(min_semitones=min_semitones, max_semitones=max_semitones, p=1.0),
        sample_rate,
    )


@register_waveform_augment("time_shift")
def _time_shift(
    sample_rate: int,
    *,
    min_shift: float = -0.5,
    max_shift: float = 0.5,
    rollover: bool = True,
    fade_duration: float = 0.0,
) -> WaveformTransform:
    """Shift by a fraction of the length in [min_shift, max_shift]; ``rollover=True`` is a
    cyclic shift, ``False`` fills the vacated part with zeros."""
    import audiomentations as am

    return _Audiomentation(
        am.Shift(
            min_shift=min_shift,
            max_shift=max_shift,
            shift_unit="fraction",
            rollover=rollover,
            fade_duration=fade_duration,
            p=1.0,
        ),
        sample_rate,
    )


class _SyntheticReverb:
    """Convolve with a synthetic room impulse response: a direct-path impulse followed by
    Gaussian noise under an exponential envelope that decays by 60 dB in ``rt60`` seconds,
    at a direct-to-reverberant energy ratio ``drr_db``. The output is rescaled to the
    input's RMS so reverberation does not change loudness."""

    def __init__(
        self,
        sample_rate: int,
        min_rt60: float,
        max_rt60: float,
        min_drr_db: float,
        max_drr_db: float,
    ) -> None:
        if not 0 < min_rt60 <= max_rt60:
            raise ConfigError(
                f"waveform augmentation 'reverb': need 0 < min_rt60 <= max_rt60, "
                f"got {min_rt60}, {max_rt60}"
            )
        if min_drr_db > max_drr_db:
            raise ConfigError("waveform augmentation 'reverb': min_drr_db > max_drr_db")
        self.sample_rate = sample_rate
        self.min_rt60, self.max_rt60 = float(min_rt60), float(max_rt60)
        self.min_drr_db, self.max_drr_db = float(min_drr_db), float(max_drr_db)

    def impulse_response(self, rng: np.random.Generator) -> np.ndarray:
        rt60 = rng.uniform(self.min_rt60, self.max_rt60)
        drr_db = rng.uniform(self.min_drr_db, self.max_drr_db)
        length = max(2, int(rt60 * self.sample_rate))
        t = np.arange(length) / self.sample_rate
        # ln(1000) = 6.908: amplitude falls to 1e-3 (-60 dB) at t = rt60.
        ir = rng.standard_normal(length) * np.exp(-6.908 * t / rt60)
        ir[0] = 0.0
        ir *= np.sqrt(10.0 ** (-drr_db / 10.0) / max(np.sum(ir**2), 1e-12))
        ir[0] = 1.0
        return ir

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        wet = fftconvolve(samples, self.impulse_response(rng))[: len(samples)]
        rms_in = np.sqrt(np.mean(samples.astype(np.float64) ** 2))
        rms_out = np.sqrt(np.mean(wet**2))
        if rms_out > 0:
            wet *= rms_in / rms_out
        return wet.astype(np.float32)


@register_waveform_augment("reverb")
def _reverb(
    sample_rate: int,
    *,
    ir_path: str | list[str] | None = None,
    min_rt60: float = 0.2,
    max_rt60: float = 1.0,
    min_drr_db: float = 0.0,
    max_drr_db: float = 10.0,
) -> WaveformTransform:
    """Convolve with an impulse response: a random file from ``ir_path`` (files or
    folders, via audiomentations ApplyImpulseResponse), or, when ``ir_path`` is None, a
    synthetic exponential-decay room response (the rt60/drr options apply to it only)."""
    if ir_path is None:
        return _SyntheticReverb(sample_rate, min_rt60, max_rt60, min_drr_db, max_drr_db)
    import audiomentations as am

    paths = _audio_folder("reverb", ir_path)
    try:
        transform = am.ApplyImpulseResponse(ir_path=paths, leave_length_unchanged=True, p=1.0)
    except AssertionError as err:  # audiomentations asserts when it finds no audio files
        raise ConfigError(f"waveform augmentation 'reverb': no audio files in {paths}") from err
    return _Audiomentation(transform, sample_rate)


@register_waveform_augment("time_mask")
def _time_mask(
    sample_rate: int,
    *,
    min_part: float = 0.01,
    max_part: float = 0.2,
    fade_duration: float = 0.0,
) -> WaveformTransform:
    """Silence one segment whose length is a fraction in [min_part, max_part]."""
    import audiomentations as am

    return _Audiomentation(
        am.TimeMask(
            min_band_part=min_part, max_band_part=max_part, fade_duration=fade_duration, p=1.0
        ),
        sample_rate,
    )


class _SegmentGain:
    """Multiply one random segment (a fraction in [min_part, max_part] of the clip) by a
    gain in [min_db, max_db] dB."""

    def __init__(self, min_part: float, max_part: float, min_db: float, max_db: float) -> None:
        if not 0 <= min_part <= max_part <= 1:
            raise ConfigError(
                f"waveform augmentation 'segment_gain': need 0 <= min_part <= max_part <= 1, "
                f"got {min_part}, {max_part}"
            )
        if min_db > max_db:
            raise ConfigError("waveform augmentation 'segment_gain': min_db > max_db")
        self.min_part, self.max_part = float(min_part), float(max_part)
        self.min_db, self.max_db = float(min_db), float(max_db)

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(samples)
        length = round(rng.uniform(self.min_part, self.max_part) * n)
        start = int(rng.integers(0, n - length + 1))
        out = samples.copy()
        out[start : start + length] *= np.float32(
            10.0 ** (rng.uniform(self.min_db, self.max_db) / 20)
        )
        return out


@register_waveform_augment("segment_gain")
def _segment_gain(
    sample_rate: int,
    *,
    min_part: float = 0.1,
    max_part: float = 0.5,
    min_db: float = -12.0,
    max_db: float = 6.0,
) -> WaveformTransform:
    return _SegmentGain(min_part, max_part, min_db, max_db)


@register_waveform_augment("background_noise")
def _background_noise(
    sample_rate: int,
    *,
    path: str | list[str],
    min_snr_db: float = 3.0,
    max_snr_db: float = 30.0,
) -> WaveformTransform:
    """Mix a random excerpt of a random file from ``path`` (files or folders, e.g. Speech
    Commands' ``_background_noise_``) at an SNR in [min_snr_db, max_snr_db]."""
    import audiomentations as am

    paths = _audio_folder("background_noise", path)
    try:
        transform = am.AddBackgroundNoise(
            sounds_path=paths, min_snr_db=min_snr_db, max_snr_db=max_snr_db, p=1.0
        )
    except AssertionError as err:
        raise ConfigError(
            f"waveform augmentation 'background_noise': no audio files in {paths}"
        ) from err
    return _Audiomentation(transform, sample_rate)


@register_waveform_augment("colored_noise")
def _colored_noise(
    sample_rate: int,
    *,
    min_snr_db: float = 5.0,
    max_snr_db: float = 40.0,
    min_f_decay: float = -6.0,
    max_f_decay: float = 6.0,
) -> WaveformTransform:
    """Noise with power density ~ 1/f^decay (decay in dB/octave: 0 white, 3 pink, -3 blue)
    at an SNR in [min_snr_db, max_snr_db]."""
    import audiomentations as am

    return _Audiomentation(
        am.AddColorNoise(
            min_snr_db=min_snr_db,
            max_snr_db=max_snr_db,
            min_f_decay=min_f_decay,
            max_f_decay=max_f_decay,
            p=1.0,
        ),
        sample_rate,
    )


@register_waveform_augment("noise")
def _noise(
    sample_rate: int, *, min_snr_db: float = 5.0, max_snr_db: float = 40.0
) -> WaveformTransform:
    """White Gaussian noise at an SNR in [min_snr_db, max_snr_db] (relative to clip RMS)."""
    import audiomentations as am

    return _Audiomentation(
        am.AddGaussianSNR(min_snr_db=min_snr_db, max_snr_db=max_snr_db, p=1.0), sample_rate
    )


@register_waveform_augment("gain")
def _gain(sample_rate: int, *, min_db: float = -6.0, max_db: float = 6.0) -> WaveformTransform:
    import audiomentations as am

    return _Audiomentation(am.Gain(min_gain_db=min_db, max_gain_db=max_db, p=1.0), sample_rate)


@register_waveform_augment("polarity_inversion")
def _polarity_inversion(sample_rate: int) -> WaveformTransform:
    import audiomentations as am

    return _Audiomentation(am.PolarityInversion(p=1.0), sample_rate)


class WaveformAugment:
    """A chain of waveform augmentations, each applied with its own probability.

    Augmentations run in the registry order (:func:`list_waveform_augments`: warps,
    shifts, reverb, masks, noises, gain), whatever the order of the config, so that
    e.g. noise is added after reverberation and its SNR is the one configured.

    Call with numpy ``(samples,)`` and the ``numpy.random.Generator`` every random draw
    comes from (the dataset's, per clip); returns float32 ``(samples,)``. See the module
    docstring for how seeding works.
    """

    def __init__(self, steps: list[tuple[str, float, WaveformTransform]]) -> None:
        self.steps = steps

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.steps]

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"waveform augmentation expects (samples,), got {samples.shape}")
        n = len(samples)
        for name, p, transform in self.steps:
            # Flip the coin even when p == 1 so a config's p does not shift the draws of
            # the other augmentations.
            if rng.random() >= p:
                continue
            samples = np.asarray(transform(samples, rng), dtype=np.float32)
            if samples.shape != (n,):
                raise RuntimeError(
                    f"waveform augmentation {name!r} changed the shape from ({n},) "
                    f"to {samples.shape}"
                )
        return samples

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}(p={p})" for name, p, _ in self.steps)
        return f"WaveformAugment([{inner}])"


def build_waveform_augment(
    spec: Mapping[str, Mapping[str, Any] | None] | None, sample_rate: int
) -> WaveformAugment | None:
    """Build the label-preserving waveform augmentation described by ``spec``.

    ``spec`` maps a registered name to its options, e.g.
    ``{"gain": {"p": 0.5, "min_db": -6, "max_db": 6},
    "noise": {"p": 0.3, "min_snr_db": 10, "max_snr_db": 30}}``. Every entry takes ``p``
    (probability per clip, default 1.0; ``p=0`` disables it) plus the options of its
    builder in this module. Returns None when nothing is enabled. Unknown names or
    options raise ConfigError listing the allowed ones.

    The result maps numpy float32 ``(samples,)`` to float32 ``(samples,)`` at
    ``sample_rate``; it is picklable, for DataLoader workers.
    """
    if not spec:
        return None
    WAVEFORM_AUGMENTS.check_names(spec)
    steps: list[tuple[str, float, WaveformTransform]] = []
    for name, builder in WAVEFORM_AUGMENTS.items():  # registry order = application order
        if name not in spec:
            continue
        options = validate_options("waveform augmentation", name, builder, dict(spec[name] or {}), extra=("p",))
        p = check_probability("waveform augmentation", name, options.pop("p", 1.0))
        if p == 0.0:
            continue
        steps.append((name, p, builder(sample_rate, **options)))
    if not steps:
        return None
    log.debug("waveform augmentations: %s", [(n, p) for n, p, _ in steps])
    return WaveformAugment(steps)
