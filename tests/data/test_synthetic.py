from pathlib import Path

import numpy as np
import pytest

from audioclf.data.catalog import create_source, list_datasets
from audioclf.data.catalog.synthetic import EVENTS, synthesize
from audioclf.data.prepare import prepare_dataset
from audioclf.data.store import Store
from audioclf.errors import ConfigError


def test_generator_is_deterministic_and_varied() -> None:
    a = synthesize("siren", seed=5)
    assert a.dtype == np.float32 and a.shape == (16000,) and np.abs(a).max() <= 1
    np.testing.assert_array_equal(a, synthesize("siren", seed=5))
    assert not np.array_equal(a, synthesize("siren", seed=6))
    assert synthesize("tone", seed=1, sample_rate=8000, seconds=0.5).shape == (4000,)


def _features(label: str) -> np.ndarray:
    """Mean log spectrum in 40 bands, plus the slope of the spectral centroid over the
    event's frames (which tells rising from falling sweeps), averaged over 8 clips."""
    feats = []
    for k in range(8):
        x = synthesize(label, seed=k)
        frames = x[: 15872].reshape(62, 256)
        mag = np.abs(np.fft.rfft(frames * np.hanning(256), axis=1))[:, :120]
        energy = mag.sum(1)
        loud = energy > np.median(energy)
        centroid = (mag * np.arange(120)).sum(1) / (energy + 1e-9)
        slope = np.polyfit(np.flatnonzero(loud), centroid[loud], 1)[0] if loud.sum() > 2 else 0.0
        bands = np.log(np.abs(np.fft.rfft(x))[:8000].reshape(40, -1).mean(1) + 1e-9)
        feats.append(np.concatenate([bands, [10 * slope]]))
    return np.mean(feats, axis=0)


def test_classes_are_distinct() -> None:
    """Every pair of classes differs in its average spectrum or in its pitch movement."""
    assert len(EVENTS) >= 10
    feats = {label: _features(label) for label in EVENTS}
    names = list(feats)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.abs(feats[a] - feats[b]).max() > 0.3, (a, b)


def test_prepare_synthetic_store(tmp_path: Path) -> None:
    assert {"synthetic", "folder"} <= set(list_datasets())
    src = create_source("synthetic", clips_per_class=10, seconds=0.5)
    report = prepare_dataset(src, tmp_path / "syn.h5", workers=2)
    s = Store(tmp_path / "syn.h5")
    assert len(s) == report.clips == 10 * len(EVENTS)
    assert report.per_split == {"train": 6 * len(EVENTS), "validation": 2 * len(EVENTS), "test": 2 * len(EVENTS)}
    assert (s.lengths == 8000).all()
    # same seed -> same store, whatever the number of workers
    prepare_dataset(create_source("synthetic", clips_per_class=10, seconds=0.5), tmp_path / "one.h5", workers=1)
    np.testing.assert_array_equal(Store(tmp_path / "one.h5").read_audio(33), s.read_audio(33))
    assert (tmp_path / "syn.prepare_report.json").exists()


def test_fold_variant(tmp_path: Path) -> None:
    items = create_source("synthetic", clips_per_class=10, folds=5).items()
    assert {it.fold for it in items} == {1, 2, 3, 4, 5} and {it.split for it in items} == {""}
    per_fold_class = {(it.fold, it.target) for it in items}
    assert len(per_fold_class) == 5 * len(EVENTS)  # every class in every fold
    with pytest.raises(ValueError, match="folds must be 0 or between 1 and clips_per_class"):
        create_source("synthetic", clips_per_class=3, folds=5).items()


def test_unknown_option_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['clips'\]; allowed: clips_per_class, conditions, folds, seconds, seed"):
        create_source("synthetic", clips=3)
    with pytest.raises(ValueError, match="must be of type int"):
        create_source("synthetic", clips_per_class="many")
    # even the smallest set has a clip of each class in every split
    items = create_source("synthetic", clips_per_class=3).items()
    assert {it.split for it in items} == {"train", "validation", "test"}
    with pytest.raises(ConfigError, match="unknown dataset"):
        create_source("nope")


def test_resumed_sharded_prepare_refuses_shards_of_another_clip_list(tmp_path: Path) -> None:
    out = tmp_path / "shards"
    prepare_dataset(create_source("synthetic", clips_per_class=10, seconds=0.25), out, shard_size=12)
    assert len(Store(out)) == 120
    # same directory, another clip list: the kept first shard no longer matches its slice
    with pytest.raises(ValueError, match="part-00000.h5: this finished shard holds 2 clip"):
        prepare_dataset(create_source("synthetic", clips_per_class=12, seconds=0.25), out, shard_size=12)
    assert len(Store(out)) == 120  # the refused run left the finished store as it was
    # the same clip list resumes, keeping every shard
    report = prepare_dataset(create_source("synthetic", clips_per_class=10, seconds=0.25), out, shard_size=12)
    assert report.resumed_clips == 120 and len(Store(out)) == 120


def _centroid_hz(x: np.ndarray, sr: int = 16000) -> float:
    mag = np.abs(np.fft.rfft(x))
    f = np.fft.rfftfreq(x.size, 1 / sr)
    return float((mag * f).sum() / mag.sum())


def test_pitch_scales_the_event_and_keeps_its_timing() -> None:
    base = synthesize("tone", seed=3)
    np.testing.assert_array_equal(base, synthesize("tone", seed=3, pitch=1.0, noise="white"))  # defaults unchanged
    low = synthesize("tone", seed=3, pitch=0.75, noise="white")
    peak = lambda x: np.fft.rfftfreq(x.size, 1 / 16000)[np.abs(np.fft.rfft(x)).argmax()]  # noqa: E731
    assert peak(low) == pytest.approx(0.75 * peak(base), rel=0.02)
    # the event sits in the same 20 ms frames (frame peaks well above the noise's)
    loud = lambda x: set(np.flatnonzero(np.abs(x).reshape(50, -1).max(1) > 0.3))  # noqa: E731
    assert loud(low) == loud(base) and 10 < len(loud(base)) < 45


def test_noise_kinds_differ_in_colour() -> None:
    # the background alone: a clip of a quiet event far below the noise is mostly noise
    white, brown = (np.random.default_rng(0).standard_normal(16000) for _ in range(2))
    from audioclf.data.catalog.synthetic import NOISES

    brown = NOISES["brown"](white, 16000)
    assert np.sqrt(np.mean(brown**2)) == pytest.approx(np.sqrt(np.mean(white**2)), rel=1e-6)
    assert _centroid_hz(brown) < 0.5 * _centroid_hz(white)
    hum = NOISES["hum"](white, 16000)
    spectrum = np.abs(np.fft.rfft(hum))
    assert spectrum[50] > 20 * np.median(spectrum)  # 1 Hz bins: a peak at 50 Hz


def test_conditions_give_each_fold_its_own(tmp_path: Path) -> None:
    from audioclf.data.catalog.synthetic import CONDITIONS

    src = create_source("synthetic", clips_per_class=4, seconds=0.5, folds=4, conditions=True)
    prepare_dataset(src, tmp_path / "c.h5", workers=1)
    plain = create_source("synthetic", clips_per_class=4, seconds=0.5, folds=4)
    prepare_dataset(plain, tmp_path / "p.h5", workers=1)
    c, p = Store(tmp_path / "c.h5"), Store(tmp_path / "p.h5")
    assert c.fold_ids() == [1, 2, 3, 4]
    for i in range(len(c)):
        same = np.array_equal(c.read_audio(i), p.read_audio(i))
        # fold 1 records under the plain condition (pitch 1, white noise); the others do not
        assert same == (CONDITIONS[c.folds[i] - 1] == (1.0, "white")), (i, c.folds[i])
    with pytest.raises(ValueError, match="conditions=true needs folds"):
        create_source("synthetic", conditions=True).items()
