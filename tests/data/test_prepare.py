"""prepare_dataset: parallel decoding, interruption and resume, shards, the report."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from audioclf.data import store as store_module
from audioclf.data.catalog import create_source
from audioclf.data.prepare import PrepareInterrupted, prepare_dataset
from audioclf.data.store import Store, partial_path
from tests.data.catalog.fakes import assert_same_store, tone

CLIPS_PER_CLASS = 3  # 36 clips of 0.25 s: fast, yet several flushes and shards


def synthetic():
    return create_source("synthetic", clips_per_class=CLIPS_PER_CLASS, seconds=0.25)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The store an uninterrupted, single-process prepare writes."""
    out = tmp_path_factory.mktemp("ref") / "synthetic.h5"
    prepare_dataset(synthetic(), out, sample_rate=8000)
    return out


@pytest.fixture
def small_flushes(monkeypatch):
    # commit every 5 clips, so an interruption lands between commits as it would at scale
    monkeypatch.setattr(store_module, "_FLUSH_CLIPS", 5)


def test_stop_after_then_resume_gives_the_same_store(tmp_path, reference, small_flushes):
    out = tmp_path / "synthetic.h5"
    with pytest.raises(PrepareInterrupted):
        prepare_dataset(synthetic(), out, sample_rate=8000, stop_after=13)
    assert not out.exists() and partial_path(out).exists()  # never looks whole
    report = prepare_dataset(synthetic(), out, sample_rate=8000)
    assert report.resumed_clips == 13
    assert report.clips == 36
    assert_same_store(out, reference)


def test_resume_after_sigkill_gives_the_same_store(tmp_path, reference):
    out = tmp_path / "synthetic.h5"
    # A separate process killed with SIGKILL mid-run: no exception handler, no flush at
    # exit, the HDF5 file left open. It commits every 5 clips and dies at clip 12.
    script = textwrap.dedent(
        f"""
        import os, signal
        from audioclf.data import store
        from audioclf.data.catalog import create_source
        from audioclf.data.prepare import prepare_dataset
        store._FLUSH_CLIPS = 5
        def progress(desc, done, total):
            if desc == "decoding" and done == 12:
                os.kill(os.getpid(), signal.SIGKILL)
        src = create_source("synthetic", clips_per_class={CLIPS_PER_CLASS}, seconds=0.25)
        prepare_dataset(src, {str(out)!r}, sample_rate=8000, progress=progress)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert not out.exists() and partial_path(out).exists()
    report = prepare_dataset(synthetic(), out, sample_rate=8000)
    assert report.resumed_clips == 10  # the two commits before the kill survived
    assert_same_store(out, reference)


def test_parallel_workers_write_the_same_store(tmp_path, reference):
    out = tmp_path / "parallel.h5"
    prepare_dataset(synthetic(), out, sample_rate=8000, workers=2)
    assert_same_store(out, reference)


def test_sharded_prepare_resumes_shard_by_shard(tmp_path, reference, small_flushes):
    out = tmp_path / "shards"
    with pytest.raises(PrepareInterrupted):
        prepare_dataset(synthetic(), out, sample_rate=8000, shard_size=10, stop_after=14)
    assert sorted(p.name for p in out.iterdir()) == ["part-00000.h5", "part-00001.h5.partial"]
    report = prepare_dataset(synthetic(), out, sample_rate=8000, shard_size=10)
    assert report.resumed_clips == 14
    assert sorted(p.name for p in out.glob("*.h5")) == [f"part-0000{i}.h5" for i in range(4)]
    assert (out / "prepare_report.json").exists()
    assert_same_store(out, reference)


def test_finished_store_is_not_overwritten_unless_asked(tmp_path, reference):
    out = tmp_path / "s.h5"
    prepare_dataset(synthetic(), out, sample_rate=8000)
    with pytest.raises(FileExistsError, match="overwrite"):
        prepare_dataset(synthetic(), out, sample_rate=8000)
    prepare_dataset(synthetic(), out, sample_rate=8000, overwrite=True)
    assert_same_store(out, reference)


def test_report_counts_rates_durations_and_skipped_files(tmp_path):
    root = tmp_path / "files"
    (root / "dog").mkdir(parents=True)
    (root / "cat").mkdir()
    import soundfile as sf

    sf.write(root / "dog" / "a.wav", tone(8000, 1), 8000)  # 1 s at 8 kHz
    sf.write(root / "cat" / "c.wav", tone(11025, 2), 22050, subtype="PCM_24")  # 0.5 s
    (root / "dog" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    out = tmp_path / "own.h5"
    report = prepare_dataset(create_source("folder", root), out, sample_rate=16000, workers=2)
    written = json.loads((tmp_path / "own.prepare_report.json").read_text())
    assert written["clips"] == report.clips == 2
    assert [s["clip_id"] for s in written["skipped"]] == ["dog/broken.wav"]
    assert "broken.wav" in written["skipped"][0]["reason"]
    assert written["source_sample_rates"] == {"8000": 1, "22050": 1}
    assert written["per_class"] == {"cat": 1, "dog": 1}
    assert written["durations"]["min"] == pytest.approx(0.5, abs=1e-3)
    assert written["durations"]["max"] == pytest.approx(1.0, abs=1e-3)
    store = Store(out)
    assert sorted(store.clip_ids) == ["cat/c.wav", "dog/a.wav"]
    assert {int(n) for n in store.lengths} == {8000, 16000}
    assert np.abs(store.read_audio(0)).max() > 0.1


def test_every_clip_failing_stops_with_the_first_error(tmp_path):
    root = tmp_path / "files" / "dog"
    root.mkdir(parents=True)
    (root / "x.wav").write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="none of the 1 clips.*x.wav"):
        prepare_dataset(create_source("folder", tmp_path / "files"), tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists() and not partial_path(tmp_path / "o.h5").exists()



def test_prepare_records_checksums_that_verify(tmp_path: Path) -> None:
    from audioclf.data.catalog import create_source
    from audioclf.data.prepare import prepare_dataset
    from audioclf.data.store import verify_store

    prepare_dataset(create_source("synthetic", clips_per_class=3, seconds=0.5), tmp_path / "s.h5")
    report = verify_store(tmp_path / "s.h5")
    assert report.ok and report.checked == 1 and not report.notes
