"""Classifier: clip predictions and `predict_timeline` over long audio (streamed or in memory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf.audio.io import load_audio
from audioclf.inference import Classifier


@pytest.fixture(scope="module")
def clf(lite_checkpoint: Path) -> Classifier:
    return Classifier.from_checkpoint(lite_checkpoint)


def _audio(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Noise with a tone burst in the middle: something for the model to react to."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.05 * rng.standard_normal(t.size)
    mid = (t > seconds / 3) & (t < 2 * seconds / 3)
    x[mid] += 0.5 * np.sin(2 * np.pi * 880 * t[mid])
    return x.astype(np.float32)


def test_predict_ranks_labels(clf: Classifier) -> None:
    preds = clf.predict(_audio(1.0, clf.sample_rate), top_k=3)
    assert len(preds) == 3 and all(p.label in clf.label_names for p in preds)
    assert preds[0].score >= preds[1].score >= preds[2].score


def test_windows_cover_the_signal(clf: Classifier) -> None:
    n = clf.clip_samples
    assert clf.windows(np.ones(n // 3, np.float32)).shape == (1, n)  # padded
    w = clf.windows(np.arange(int(2.3 * n), dtype=np.float32))
    assert w.shape == (4, n)  # starts 0, n/2, n, and the tail at 1.3 n
    assert w[-1, -1] == int(2.3 * n) - 1


def test_load_waveform_takes_files_and_arrays(clf: Classifier, tmp_path: Path) -> None:
    mono = _audio(1.5, 8000)
    path = tmp_path / "a.wav"
    sf.write(path, mono, 8000, subtype="FLOAT")
    from_file = clf.load_waveform(path)
    assert from_file.dtype == np.float32 and from_file.shape == (int(1.5 * clf.sample_rate),)
    np.testing.assert_allclose(clf.load_waveform(mono, 8000), from_file, atol=1e-5)
    np.testing.assert_array_equal(clf.load_waveform(np.stack([mono, mono]), 8000), clf.load_waveform(mono, 8000))
    with pytest.raises(ValueError, match="non-empty mono"):
        clf.load_waveform(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="non-empty mono"):
        clf.load_waveform(np.zeros((2, 2, 8), np.float32))


def test_score_windows_batches_arrays_and_streams_alike(clf: Classifier) -> None:
    win = clf.windows(_audio(3.3, clf.sample_rate))
    whole = clf.scores_batch(win)
    np.testing.assert_allclose(clf.score_windows(win, batch_size=2), whole, atol=1e-5)
    np.testing.assert_allclose(clf.score_windows(iter(list(win)), batch_size=4), whole, atol=1e-5)
    assert clf.score_windows(iter([]), batch_size=4).shape == (0, len(clf.label_names))
    with pytest.raises(ValueError, match="batch_size"):
        clf.score_windows(win, batch_size=0)


def test_streamed_file_and_in_memory_array_give_the_same_scores(clf: Classifier, tmp_path: Path) -> None:
    # 44.1 kHz stereo: the streamed path reads 0.3 s blocks and resamples them one by one
    mono = _audio(7.3, 44100)
    path = tmp_path / "long.wav"
    sf.write(path, np.stack([mono, mono * 0.5], axis=1), 44100, subtype="FLOAT")
    streamed = clf.predict_timeline(path, hop=0.25, batch_size=5, block_seconds=0.3)
    wave, _ = load_audio(path, clf.sample_rate)
    in_memory = clf.predict_timeline(wave, hop=0.25, batch_size=5)
    np.testing.assert_array_equal(streamed.starts, in_memory.starts)
    np.testing.assert_allclose(streamed.scores, in_memory.scores, rtol=0, atol=1e-6)
    assert streamed.duration == pytest.approx(in_memory.duration)
    # an array at the file's own rate is resampled in memory the same way
    at_44k = clf.predict_timeline(np.stack([mono, mono * 0.5]), sample_rate=44100, hop=0.25, batch_size=5)
    np.testing.assert_allclose(at_44k.scores, in_memory.scores, rtol=0, atol=1e-6)


def test_timeline_frames_are_the_model_scores_of_each_window(clf: Classifier) -> None:
    rate, n = clf.sample_rate, clf.clip_samples
    wave = _audio(3.3, rate)
    tl = clf.predict_timeline(wave, hop=0.5, batch_size=3)
    # 1 s windows every 0.5 s fit up to 2.0 s; one more is aligned to the end (2.3 s)
    np.testing.assert_allclose(tl.starts, [0.0, 0.5, 1.0, 1.5, 2.0, 2.3])
    np.testing.assert_allclose(tl.ends, tl.starts + 1.0)
    assert tl.scores.dtype == np.float32 and tl.scores.shape == (6, len(clf.label_names))
    assert tl.duration == pytest.approx(3.3) and tl.window == 1.0 and tl.hop == 0.5
    for i, s in enumerate(tl.starts):
        a = int(round(s * rate))
        np.testing.assert_allclose(tl.scores[i], clf.scores_batch(wave[None, a : a + n])[0], atol=1e-5)
    np.testing.assert_allclose(tl.scores.sum(1), 1.0, atol=1e-5)  # single-label: softmax
    np.testing.assert_allclose(tl.clip_scores, tl.scores.mean(0))
    # the batch size only groups the work
    np.testing.assert_allclose(clf.predict_timeline(wave, hop=0.5, batch_size=16).scores, tl.scores, atol=1e-5)


def test_timeline_of_short_audio_is_one_padded_window(clf: Classifier) -> None:
    tl = clf.predict_timeline(_audio(0.4, clf.sample_rate))
    assert len(tl.starts) == 1 and tl.ends[0] == pytest.approx(0.4) and tl.duration == pytest.approx(0.4)
    assert tl.hop == 0.5  # default: half the model's 1 s clip


def test_timeline_rejects_bad_settings(clf: Classifier, tmp_path: Path) -> None:
    wave = _audio(2.0, clf.sample_rate)
    with pytest.raises(ValueError, match="hop"):
        clf.predict_timeline(wave, hop=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        clf.predict_timeline(wave, batch_size=0)
    path = tmp_path / "a.wav"
    sf.write(path, wave, clf.sample_rate)
    with pytest.raises(ValueError, match="sample_rate applies to arrays"):
        clf.predict_timeline(path, sample_rate=8000)


# --- export: the destination is never the checkpoint -----------------------------------------
# (checked before the checkpoint is read, so a stand-in file will do)


@pytest.mark.parametrize("frontend", ["inside", "separate"])
def test_export_refuses_to_overwrite_the_checkpoint(tmp_path: Path, frontend: str) -> None:
    from audioclf.inference.export import export_checkpoint

    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"a checkpoint")
    with pytest.raises(ValueError, match=r"best\.pt.*overwrite the checkpoint.*best\.pt"):
        export_checkpoint(ckpt, format="torchscript", frontend=frontend)  # default out: best.pt
    (tmp_path / "sub").mkdir()
    for out in (ckpt, tmp_path / "sub" / ".." / "best.pt"):
        with pytest.raises(ValueError, match="overwrite the checkpoint"):
            export_checkpoint(ckpt, out, format="torchscript", frontend=frontend)
    link = tmp_path / "link.pt"
    link.symlink_to(ckpt)
    with pytest.raises(ValueError, match=r"link\.pt.*overwrite the checkpoint"):
        export_checkpoint(link, ckpt, format="torchscript", frontend=frontend)
    assert ckpt.read_bytes() == b"a checkpoint"


def test_export_refuses_a_frontend_file_on_the_checkpoint(tmp_path: Path) -> None:
    from audioclf.inference.export import export_checkpoint

    ckpt = tmp_path / "model.frontend.pt"
    ckpt.write_bytes(b"a checkpoint")
    with pytest.raises(ValueError, match=r"model\.frontend\.pt.*overwrite the checkpoint"):
        export_checkpoint(ckpt, tmp_path / "model.pt", format="torchscript", frontend="separate")


def test_predict_streams_a_file_with_the_scores_of_the_whole_signal(clf: Classifier, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    x = _audio(7.3, 22050, seed=4)  # another rate: resampled block by block
    path = tmp_path / "long.flac"
    sf.write(path, x, 22050)
    whole, _ = load_audio(path, clf.sample_rate)
    expected = clf.scores(whole)

    def no_whole_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("predict decoded the whole file")

    monkeypatch.setattr("audioclf.inference.classifier.load_audio", no_whole_load)
    np.testing.assert_allclose(clf.scores(path), expected, atol=1e-5)
    assert [p.label for p in clf.predict(path, top_k=3)] == [clf.label_names[i] for i in np.argsort(-expected)[:3]]


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e30])
def test_non_finite_or_absurd_arrays_are_refused(clf: Classifier, bad: float) -> None:
    from audioclf.audio.io import AudioDecodeError

    x = _audio(1.0, clf.sample_rate)
    x[10] = bad
    with pytest.raises(AudioDecodeError, match="audio array"):
        clf.predict(x)


def test_predict_cli_names_a_file_of_absurd_samples(lite_checkpoint: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from audioclf.cli import main

    x = _audio(1.0, 16000)
    x[5] = 5e29
    sf.write(tmp_path / "hostile.wav", x, 16000, subtype="FLOAT")
    assert main(["predict", str(lite_checkpoint), str(tmp_path / "hostile.wav")]) == 2
    err = capsys.readouterr().err
    assert "hostile.wav" in err and "5e+29" in err
