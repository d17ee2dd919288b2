"""The streaming reader, the window cutter, the Timeline result and `predict --timeline`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf.audio.io import AudioDecodeError, load_audio, stream_audio
from audioclf.inference.timeline import (
    Event,
    Timeline,
    WindowCutter,
    count_windows,
    frame_edges,
    ranked,
    split_blocks,
)


def _signal(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.1).astype(np.float32)


# --- the window cutter ----------------------------------------------------------------------


def _reference_windows(audio: np.ndarray, n: int, hop: int) -> list[tuple[int, np.ndarray]]:
    """The placement rule written out directly: grid windows, then one end-aligned window."""
    if audio.size < n:
        return [(0, np.pad(audio, (0, n - audio.size)))]
    starts = list(range(0, audio.size - n + 1, hop))
    if starts[-1] + n < audio.size:
        starts.append(audio.size - n)
    return [(s, audio[s : s + n]) for s in starts]


@pytest.mark.parametrize("length", [1, 99, 100, 101, 150, 399, 400, 1234])
@pytest.mark.parametrize("hop", [50, 100, 130])
@pytest.mark.parametrize("block", [1, 7, 100, 5000])
def test_cutter_gives_the_same_windows_for_any_block_size(length: int, hop: int, block: int) -> None:
    audio = _signal(length)
    got = list(WindowCutter(100, hop).cut(split_blocks(audio, block)))
    want = _reference_windows(audio, 100, hop)
    assert [s for s, _ in got] == [s for s, _ in want]
    for (_, a), (_, b) in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("length", [1, 99, 100, 101, 150, 199, 200, 399, 400, 1234])
@pytest.mark.parametrize("hop", [1, 50, 100, 130])
def test_count_windows_counts_what_the_cutter_cuts(length: int, hop: int) -> None:
    assert count_windows(length, 100, hop) == len(_reference_windows(_signal(length), 100, hop))
    with pytest.raises(ValueError, match="at least one sample"):
        count_windows(length, 100, 0)


def test_ranking_is_stable_for_ties() -> None:
    assert ranked([0.2, 0.5, 0.2, 0.5], 3) == [1, 3, 0]
    assert ranked(np.array([0.1, 0.9]), 0) == [1], "at least one"


def test_cutter_keeps_at_most_a_window_and_a_block() -> None:
    cutter = WindowCutter(100, 50)
    for block in split_blocks(_signal(10_000), 30):
        cutter.push(block)
        assert cutter._buffer.size <= 100 + 30
    assert cutter.total == 10_000


def test_cutter_rejects_empty_audio_and_bad_sizes() -> None:
    with pytest.raises(ValueError, match="no audio"):
        WindowCutter(10, 5).finish()
    with pytest.raises(ValueError, match="at least one sample"):
        WindowCutter(0, 5)


# --- streaming reads --------------------------------------------------------------------------


def test_stream_resamples_block_wise_like_a_whole_file_load(tmp_path: Path) -> None:
    stereo = np.stack([_signal(44100 * 3 + 17, 1), _signal(44100 * 3 + 17, 2)], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 44100, subtype="FLOAT")
    blocks = list(stream_audio(path, 16000, block_seconds=0.25))
    # streamed: many blocks, none much larger than a quarter second at the output rate (the
    # last one also carries the resampler's flushed delay line)
    assert len(blocks) > 10
    assert max(b.size for b in blocks) <= 0.25 * 16000 + 1024
    whole, _ = load_audio(path, 16000)
    np.testing.assert_allclose(np.concatenate(blocks), whole, rtol=0, atol=1e-6)


def test_stream_at_the_native_rate_is_the_file(tmp_path: Path) -> None:
    x = _signal(16000 * 2 + 3)
    path = tmp_path / "mono.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(np.concatenate(list(stream_audio(path, 16000, 0.1))), x)


def test_stream_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "not_audio.wav"
    bad.write_bytes(b"this is not a RIFF file at all" * 10)
    with pytest.raises(AudioDecodeError, match="not_audio.wav"):
        list(stream_audio(bad, 16000))
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        list(stream_audio(tmp_path / "missing.wav", 16000))


# --- the Timeline ------------------------------------------------------------------------------


def _timeline(scores: list[list[float]], multi_label: bool, hop: float = 0.5) -> Timeline:
    s = np.asarray(scores, dtype=np.float32)
    starts = np.arange(len(s)) * hop
    duration = float(starts[-1] + 1.0)
    return Timeline(starts, np.minimum(starts + 1.0, duration), s, ["a", "b", "c"], multi_label,
                    duration, window=1.0, hop=hop)


def test_single_label_events_follow_the_argmax_class() -> None:
    tl = _timeline(
        [[0.8, 0.1, 0.1], [0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]],
        multi_label=False,
    )
    events = tl.events(threshold=0.5)
    # frames: centres 0.5, 1.0, 1.5, 2.0, 2.5; each speaks for the midpoints around it
    assert events == [
        Event("a", 0.0, 1.25, pytest.approx(0.9)),
        Event("b", 1.25, 1.75, pytest.approx(0.7)),
        Event("a", 2.25, 3.0, pytest.approx(0.6)),
    ]
    # durations 1.25 s, 0.5 s, 0.75 s
    assert tl.events(threshold=0.5, min_duration=0.6) == [events[0], events[2]]
    assert tl.events(threshold=0.5, min_duration=1.0) == events[:1]
    assert len(tl.events(threshold=0.5, top_k=1)) == 1
    np.testing.assert_allclose(tl.clip_scores, np.asarray(tl.scores).mean(0))  # single-label: mean


def test_multi_label_events_overlap_and_clip_scores_are_max() -> None:
    tl = _timeline([[0.9, 0.9, 0.0], [0.9, 0.1, 0.0], [0.1, 0.8, 0.0]], multi_label=True)
    events = {(e.label, e.start, e.end) for e in tl.events(threshold=0.5)}
    assert events == {("a", 0.0, 1.25), ("b", 0.0, 0.75), ("b", 1.25, 2.0)}
    np.testing.assert_allclose(tl.clip_scores, [0.9, 0.9, 0.0])  # multi-label: max


def test_timeline_writes_csv_and_json(tmp_path: Path) -> None:
    tl = _timeline([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]], multi_label=False)
    rows = list(csv.reader(tl.save(tmp_path / "t.csv").open()))
    assert rows[0] == ["start", "end", "a", "b", "c"]
    assert len(rows) == 3 and float(rows[2][3]) == pytest.approx(0.7)
    doc = json.loads(tl.save(tmp_path / "t.json", threshold=0.6).read_text())
    assert doc["label_names"] == ["a", "b", "c"] and len(doc["frames"]) == 2
    assert [e["label"] for e in doc["events"]] == ["a", "b"]
    with pytest.raises(ValueError, match=r"t\.txt.*\.csv or \.json"):
        tl.save(tmp_path / "t.txt")


def test_timeline_save_to_a_directory_says_so(tmp_path: Path) -> None:
    tl = _timeline([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]], multi_label=False)
    folder = tmp_path / "out.csv"
    folder.mkdir()
    for target in (tmp_path, folder):
        with pytest.raises(ValueError, match="is a directory"):
            tl.save(target)
    with pytest.raises(ValueError, match="is a directory"):
        tl.to_json(folder)


def test_times_and_edges_follow_the_windows() -> None:
    tl = _timeline([[0.8, 0.1, 0.1]] * 4, multi_label=False)
    # the centres are those of the windows clipped to the audio
    np.testing.assert_array_equal(tl.times, (tl.starts + np.minimum(tl.starts + tl.window, tl.duration)) / 2)
    np.testing.assert_allclose(tl.edges, [0.0, 0.75, 1.25, 1.75, 2.5])
    np.testing.assert_array_equal(tl.edges, frame_edges(tl.times, tl.duration))


def test_timeline_checks_its_shapes() -> None:
    with pytest.raises(ValueError, match="shapes disagree"):
        Timeline(np.zeros(2), np.ones(2), np.zeros((3, 2), np.float32), ["a", "b"], False, 1.0, 1.0, 0.5)


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_predict_timeline_writes_frames_and_prints_events(
    lite_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from audioclf.cli import main

    wav = tmp_path / "long.wav"
    sf.write(wav, _signal(22050 * 4), 22050)
    out = tmp_path / "long.csv"
    rc = main(["predict", str(lite_checkpoint), str(wav), "--timeline", "--hop", "0.25",
               "--out", str(out), "--threshold", "0"])
    assert rc == 0
    rows = list(csv.reader(out.open()))
    assert len(rows) == 1 + 13  # 4 s, 1 s windows every 0.25 s
    printed = capsys.readouterr().out
    assert "events" in printed and " - " in printed  # start - end of at least one event
    out_json = tmp_path / "long.json"
    assert main(["predict", str(lite_checkpoint), str(wav), "--timeline", "--out", str(out_json)]) == 0
    assert len(json.loads(out_json.read_text())["frames"]) == 7
