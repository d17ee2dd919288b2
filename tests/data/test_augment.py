"""Waveform augmentations (CPU, numpy, label-preserving): data/augment.py."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf.data.augment import build_waveform_augment, list_waveform_augments

SR = 8000
N = 4000  # half a second keeps the pitch/time-stretch tests fast

def _tone(freq: float = 200.0, n: int = N, amp: float = 0.3) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)


def _snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    noise = noisy.astype(np.float64) - clean
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise**2))


def _dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[np.argmax(spectrum)])


@pytest.fixture
def noise_dir(tmp_path: Path) -> Path:
    """Two 'background noise' files: a 1 kHz tone, one at another sample rate."""
    folder = tmp_path / "_background_noise_"
    folder.mkdir()
    sf.write(folder / "a.wav", _tone(1000.0, n=2 * SR, amp=0.5), SR)
    tone_16k = 0.2 * np.sin(2 * np.pi * 1000.0 * np.arange(16000) / 16000)
    sf.write(folder / "b.wav", tone_16k.astype(np.float32), 16000)  # resampled on load
    return folder


@pytest.fixture
def ir_dir(tmp_path: Path) -> Path:
    """One impulse response: the direct sound plus a single echo at half amplitude."""
    folder = tmp_path / "irs"
    folder.mkdir()
    ir = np.zeros(200, dtype=np.float32)
    ir[0], ir[150] = 1.0, 0.5
    sf.write(folder / "echo.wav", ir, SR)
    return folder


def _options_for(name: str, noise_dir: Path, ir_dir: Path) -> dict:
    return {"background_noise": {"path": str(noise_dir)}, "reverb": {"ir_path": str(ir_dir)}}.get(
        name, {}
    )


# --- waveform augmentations ------------------------------------------------------------


@pytest.mark.parametrize("name", [*list_waveform_augments(), "reverb_synthetic"])
def test_every_waveform_augment_keeps_length_and_changes_the_clip(
    name: str, noise_dir: Path, ir_dir: Path
) -> None:
    options = {} if name == "reverb_synthetic" else _options_for(name, noise_dir, ir_dir)
    name = name.replace("_synthetic", "")
    aug = build_waveform_augment({name: {"p": 1.0, **options}}, SR)
    x = _tone() + np.random.default_rng(0).normal(0, 0.01, N).astype(np.float32)
    for n in (N, 1234):  # also an odd length
        y = aug(x[:n], rng=np.random.default_rng(1))
        assert y.shape == (n,)
        assert y.dtype == np.float32
        assert not np.allclose(y, x[:n])


def test_gaussian_noise_snr_is_within_the_configured_range() -> None:
    aug = build_waveform_augment({"noise": {"p": 1.0, "min_snr_db": 10, "max_snr_db": 20}}, SR)
    x = _tone()
    snrs = [_snr_db(x, aug(x, rng=np.random.default_rng(s))) for s in range(20)]
    assert all(9.8 < s < 20.2 for s in snrs), snrs
    assert max(snrs) - min(snrs) > 3  # drawn from the range, not fixed


def test_colored_noise_snr_is_within_the_configured_range() -> None:
    spec = {"colored_noise": {"min_snr_db": 5, "max_snr_db": 8}}
    aug = build_waveform_augment(spec, SR)
    x = _tone()
    snrs = [_snr_db(x, aug(x, rng=np.random.default_rng(s))) for s in range(10)]
    assert all(4.5 < s < 8.5 for s in snrs), snrs


def test_background_noise_comes_from_the_folder_at_the_configured_snr(noise_dir: Path) -> None:
    spec = {"background_noise": {"path": str(noise_dir), "min_snr_db": 0, "max_snr_db": 6}}
    aug = build_waveform_augment(spec, SR)
    x = _tone(200.0)
    for seed in range(6):
        y = aug(x, rng=np.random.default_rng(seed))
        assert -0.3 < _snr_db(x, y) < 6.3
        # What was added is the 1 kHz tone stored in the folder.
        assert _dominant_hz(y - x) == pytest.approx(1000.0, abs=5)


def test_reverb_convolves_with_an_impulse_response_from_the_folder(ir_dir: Path) -> None:
    aug = build_waveform_augment({"reverb": {"ir_path": str(ir_dir)}}, SR)
    click = np.zeros(N, dtype=np.float32)
    click[100] = 1.0
    y = aug(click, rng=np.random.default_rng(0))
    # audiomentations peak-normalises; the echo keeps its relative level and lag.
    assert y[250] / y[100] == pytest.approx(0.5, rel=1e-4)
    rest = np.delete(y, [100, 250])
    assert np.max(np.abs(rest)) < 1e-4 * abs(y[100])


def test_synthetic_reverb_adds_a_decaying_tail_at_equal_rms() -> None:
    spec = {"reverb": {"min_rt60": 0.2, "max_rt60": 0.2, "min_drr_db": 0, "max_drr_db": 0}}
    aug = build_waveform_augment(spec, SR)
    x = np.zeros(N, dtype=np.float32)
    x[:200] = _tone(n=200)
    y = aug(x, rng=np.random.default_rng(0))
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-3)
    tail_early = np.sqrt(np.mean(y[300:600] ** 2))
    tail_late = np.sqrt(np.mean(y[1200:1500] ** 2))
    assert tail_early > 10 * tail_late > 0


def test_time_shift_rollover_is_cyclic_and_plain_shift_zero_fills() -> None:
    x = np.linspace(0.1, 1.0, N, dtype=np.float32)
    cyclic = build_waveform_augment({"time_shift": {"min_shift": 0.25, "max_shift": 0.25}}, SR)
    np.testing.assert_allclose(cyclic(x, rng=np.random.default_rng(0)), np.roll(x, N // 4))
    plain = build_waveform_augment(
        {"time_shift": {"min_shift": 0.25, "max_shift": 0.25, "rollover": False}}, SR
    )
    y = plain(x, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(y[: N // 4], 0.0)
    np.testing.assert_allclose(y[N // 4 :], x[: N - N // 4])


def test_time_mask_silences_one_segment_of_the_configured_length() -> None:
    aug = build_waveform_augment({"time_mask": {"min_part": 0.1, "max_part": 0.2}}, SR)
    x = np.full(N, 0.5, dtype=np.float32)
    for seed in range(5):
        zeros = np.flatnonzero(aug(x, rng=np.random.default_rng(seed)) == 0)
        assert 0.1 * N - 1 <= len(zeros) <= 0.2 * N + 1
        assert zeros[-1] - zeros[0] + 1 == len(zeros)  # contiguous


def test_segment_gain_scales_one_segment_only() -> None:
    spec = {"segment_gain": {"min_part": 0.2, "max_part": 0.3, "min_db": -12, "max_db": -6}}
    aug = build_waveform_augment(spec, SR)
    x = np.full(N, 0.5, dtype=np.float32)
    ratio = aug(x, rng=np.random.default_rng(0)) / x
    changed = np.flatnonzero(~np.isclose(ratio, 1.0))
    assert 0.2 * N - 1 <= len(changed) <= 0.3 * N + 1
    assert changed[-1] - changed[0] + 1 == len(changed)
    gain_db = 20 * np.log10(ratio[changed])
    assert np.allclose(gain_db, gain_db[0]) and -12 <= gain_db[0] <= -6


def test_split_stretch_resamples_parts_and_keeps_the_length() -> None:
    x = _tone()
    same = build_waveform_augment({"split_stretch": {"min_rate": 1.0, "max_rate": 1.0}}, SR)
    np.testing.assert_allclose(same(x, rng=np.random.default_rng(0)), x, atol=1e-6)
    faster = build_waveform_augment({"split_stretch": {"min_rate": 2.0, "max_rate": 2.0}}, SR)
    y = faster(x, rng=np.random.default_rng(0))
    assert y.shape == (N,)
    # Every part is compressed to half, so the second half is the zero padding.
    assert np.count_nonzero(y[N // 2 + 4 :]) == 0
    assert np.count_nonzero(y[: N // 2 - 4]) > 0


def test_audiomentations_transforms_get_the_configured_settings() -> None:
    """audioclf's wiring, not audiomentations' DSP: the transform it builds, the settings it
    passes (p=1: audioclf flips the coin itself), and the sample rate it calls it with."""
    import audiomentations as am

    spec = {"pitch_shift": {"p": 0.7, "min_semitones": 12, "max_semitones": 12},
            "time_stretch": {"min_rate": 2.0, "max_rate": 2.5}}
    aug = build_waveform_augment(spec, SR)
    steps = {name: (p, t) for name, p, t in aug.steps}
    p, pitch = steps["pitch_shift"]
    assert p == 0.7 and isinstance(pitch.transform, am.PitchShift) and pitch.sample_rate == SR
    assert (pitch.transform.min_semitones, pitch.transform.max_semitones, pitch.transform.p) == (12, 12, 1.0)
    p, stretch = steps["time_stretch"]
    assert p == 1.0 and isinstance(stretch.transform, am.TimeStretch)
    assert (stretch.transform.min_rate, stretch.transform.max_rate) == (2.0, 2.5)
    assert stretch.transform.leave_length_unchanged  # clips keep their length
    # registry order is application order: the stretch comes first whatever the config order
    assert aug.names == ["time_stretch", "pitch_shift"]


def test_gain_and_polarity_inversion() -> None:
    x = _tone()
    gain = build_waveform_augment({"gain": {"min_db": 6, "max_db": 6}}, SR)
    np.testing.assert_allclose(gain(x, rng=np.random.default_rng(0)), x * 10 ** (6 / 20), rtol=1e-5)
    flip = build_waveform_augment({"polarity_inversion": {}}, SR)
    np.testing.assert_array_equal(flip(x, rng=np.random.default_rng(0)), -x)


def test_probability_p_is_honoured_and_p_zero_disables() -> None:
    aug = build_waveform_augment({"polarity_inversion": {"p": 0.5}}, SR)
    x = _tone()
    flipped = [aug(x, rng=np.random.default_rng(s))[100] < 0 for s in range(200)]
    assert x[100] > 0 and 0.35 < np.mean(flipped) < 0.65
    assert build_waveform_augment({"polarity_inversion": {"p": 0.0}}, SR) is None
    assert build_waveform_augment({}, SR) is None
    assert build_waveform_augment(None, SR) is None
    mixed = build_waveform_augment({"gain": {"p": 0}, "noise": {"p": 1}}, SR)
    assert mixed.names == ["noise"]


def test_unknown_names_and_options_raise_helpful_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'gian'.*known:.*gain"):
        build_waveform_augment({"gian": {"p": 0.5}}, SR)
    with pytest.raises(ValueError, match=r"'gain'.*'min_gain'.*allowed options: p, max_db, min_db"):
        build_waveform_augment({"gain": {"min_gain": -3}}, SR)
    with pytest.raises(ValueError, match=r"'background_noise'.*missing.*path"):
        build_waveform_augment({"background_noise": {"p": 0.5}}, SR)
    with pytest.raises(ValueError, match=r"'reverb'.*does not exist"):
        build_waveform_augment({"reverb": {"ir_path": str(tmp_path / "nope")}}, SR)
    with pytest.raises(ValueError, match=r"'background_noise'.*no audio files"):
        build_waveform_augment({"background_noise": {"path": str(tmp_path)}}, SR)
    with pytest.raises(ValueError, match=r"'noise'.*p must be in \[0, 1\]"):
        build_waveform_augment({"noise": {"p": 1.5}}, SR)


def _full_spec(noise_dir: Path) -> dict:
    return {
        "gain": {"p": 0.5},
        "time_shift": {"p": 0.5, "rollover": False},
        "segment_gain": {"p": 0.5},
        "noise": {"p": 0.5, "min_snr_db": 10, "max_snr_db": 30},
        "background_noise": {"p": 0.5, "path": str(noise_dir)},
        "reverb": {"p": 0.5},
    }


def test_picklable_and_deterministic_given_the_generator(noise_dir: Path) -> None:
    aug = build_waveform_augment(_full_spec(noise_dir), SR)
    clone = pickle.loads(pickle.dumps(aug))
    x = _tone()
    for s in range(3):
        np.testing.assert_array_equal(
            aug(x, rng=np.random.default_rng(s)), clone(x, rng=np.random.default_rng(s))
        )
    # every draw comes from the generator passed in: other seeds, other augmentations
    first = [aug(x, rng=np.random.default_rng(s)) for s in range(4)]
    assert not all(np.array_equal(first[0], f) for f in first[1:])
    # and the global generators are left as they were
    state = np.random.get_state()[1].copy()
    aug(x, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(np.random.get_state()[1], state)
