"""ESC-50 through the real path: download from a local server, verify, extract, decode,
resample, pack; folds, labels and the ESC-10 subset."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import soundfile as sf

from audioclf.audio.io import resample
from audioclf.data.catalog import create_source
from audioclf.data.download import ChecksumError, DatasetLayoutError, record_path
from audioclf.data.prepare import prepare_dataset
from audioclf.data.store import Store
from audioclf.errors import DataError
from tests.data.catalog.fakes import ESC10, ESC_CLASSES, csv_text, serve, tone, wav_bytes


def test_download_verify_prepare(esc50_zip, http_server, tmp_path, monkeypatch):
    archive, fake = esc50_zip
    url = serve(http_server, archive)
    # the connection drops after 40 kB: the download resumes with a Range request
    http_server.cut_after["ESC-50-master.zip"] = 40_000
    monkeypatch.setattr("audioclf.data.download.time.sleep", lambda s: None)
    root = tmp_path / "esc"
    src = create_source("esc50", root, url=url)
    report = prepare_dataset(src, root / src.store_name(), sample_rate=16000, workers=2)

    store = Store(root / "esc50.h5")
    assert store.label_names == ESC_CLASSES
    assert len(store) == report.clips == len(fake.clips) == 30
    assert store.fold_ids() == [1, 2, 3, 4, 5]
    for i, cid in enumerate(store.clip_ids):
        clip = fake.clips[cid]
        assert store.folds[i] == clip["fold"]
        assert store.label_names[store.targets[i]] == clip["label"]
        # decoded and resampled 44.1 kHz -> 16 kHz, nothing else done to it
        src_audio, rate = sf.read(io.BytesIO(clip["bytes"]), dtype="float32")
        expected = resample(src_audio, rate, 16000)
        np.testing.assert_allclose(store.read_audio(i), expected, atol=1.5 / 32767)
    assert report.per_fold == {str(k): 6 for k in range(1, 6)}
    assert report.source_sample_rates == {"44100": 30}
    assert [r["range"] for r in http_server.gets("ESC-50-master.zip")] == [None, "bytes=40000-"]
    # the archive is kept, its checksum recorded, and extraction marked done
    assert (root / "ESC-50-master.zip").exists()
    assert json.loads(record_path(root / "ESC-50-master.zip").read_text())["url"] == url
    assert (root / ".ESC-50-master.zip.extracted").exists()


def test_esc10_subset_reindexes_its_classes(esc50_zip, http_server, tmp_path):
    archive, fake = esc50_zip
    root = tmp_path / "esc"
    src = create_source("esc50", root, url=serve(http_server, archive), esc10=True)
    prepare_dataset(src, root / src.store_name(), sample_rate=8000)
    store = Store(root / "esc10.h5")
    # ESC-10 classes in the order of their ESC-50 targets (0, 1, 4, 5 here) -> 0..3
    assert store.label_names == [c for c in ESC_CLASSES if c in ESC10]
    assert len(store) == 5 * len(ESC10)
    for i, cid in enumerate(store.clip_ids):
        assert store.label_names[store.targets[i]] == fake.clips[cid]["label"]
    assert sorted(set(store.targets.tolist())) == [0, 1, 2, 3]


def test_unpacked_files_are_found_without_downloading(esc50_zip, http_server, tmp_path):
    archive, _ = esc50_zip
    root = tmp_path / "esc"
    first = create_source("esc50", root, url=serve(http_server, archive))
    first.fetch()
    n_requests = len(http_server.requests)
    # another run, pointed at a URL that does not exist: the unpacked files suffice
    again = create_source("esc50", root, url=http_server.url("gone.zip"))
    prepare_dataset(again, tmp_path / "again.h5", sample_rate=8000)
    assert len(http_server.requests) == n_requests
    assert len(Store(tmp_path / "again.h5")) == 30
    # ... also when ROOT is the unpacked repository itself
    inner = create_source("esc50", root / "ESC-50-master", url=http_server.url("gone.zip"))
    assert len(inner.items()) == 30


def test_checksum_mismatch_stops_before_extraction(esc50_zip, http_server, tmp_path):
    archive, _ = esc50_zip
    root = tmp_path / "esc"
    src = create_source("esc50", root, url=serve(http_server, archive), checksum="sha256:" + "ab" * 32)
    with pytest.raises(ChecksumError, match="expected abab"):
        prepare_dataset(src, root / "esc50.h5")
    assert not (root / "ESC-50-master").exists()
    assert (root / "ESC-50-master.zip.corrupt").exists()
    assert not (root / "esc50.h5").exists()


def _rewritten_zip(src_zip, dest, rename=None, drop=(), replace=None):
    with zipfile.ZipFile(src_zip) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = (replace or {}).get(info.filename, zin.read(info))
            zout.writestr(rename(info.filename) if rename else info.filename, data)
    return dest


def test_archive_in_the_wrong_layout_says_what_was_expected(esc50_zip, http_server, tmp_path):
    archive, _ = esc50_zip
    wrong = _rewritten_zip(archive, tmp_path / "ESC-50-master.zip", rename=lambda n: n.replace("ESC-50-master/", "ESC-50-main/"))
    src = create_source("esc50", tmp_path / "esc", url=serve(http_server, wrong))
    with pytest.raises(DatasetLayoutError, match=r"ESC-50-master/meta/esc50\.csv.*ESC-50-main/"):
        prepare_dataset(src, tmp_path / "esc" / "esc50.h5")


def test_missing_metadata_file_says_what_was_expected(esc50_zip, http_server, tmp_path):
    archive, _ = esc50_zip
    no_meta = _rewritten_zip(archive, tmp_path / "ESC-50-master.zip", drop={"ESC-50-master/meta/esc50.csv"})
    src = create_source("esc50", tmp_path / "esc", url=serve(http_server, no_meta))
    with pytest.raises(DatasetLayoutError, match=r"meta/esc50\.csv"):
        prepare_dataset(src, tmp_path / "esc" / "esc50.h5")


def test_metadata_with_missing_columns_names_them(esc50_zip, http_server, tmp_path):
    archive, _ = esc50_zip
    bad_csv = csv_text(["filename", "fold", "target", "category"], [["1-100-A-0.wav", 1, 0, "dog"]])
    bad = _rewritten_zip(archive, tmp_path / "ESC-50-master.zip", replace={"ESC-50-master/meta/esc50.csv": bad_csv.encode()})
    src = create_source("esc50", tmp_path / "esc", url=serve(http_server, bad))
    with pytest.raises(DatasetLayoutError, match="missing esc10, src_file, take"):
        prepare_dataset(src, tmp_path / "esc" / "esc50.h5")


@pytest.mark.parametrize("name", ["/SECRET", "../../SECRET", "sub/../../../SECRET"])
def test_csv_names_outside_the_dataset_are_refused(http_server, tmp_path, name):
    # an archive whose CSV names a private file of this machine must not pack it
    secret = tmp_path / "SECRET"
    secret.write_bytes(b"private")
    if name.startswith("/"):
        name = str(secret)
    archive = tmp_path / "ESC-50-master.zip"
    rows = [["1-100-A-0.wav", 1, 0, "dog", True, 100, "A"], [name, 1, 0, "dog", True, 101, "A"]]
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ESC-50-master/audio/1-100-A-0.wav", wav_bytes(tone(2205, seed=0), 44100))
        header = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
        zf.writestr("ESC-50-master/meta/esc50.csv", csv_text(header, rows))
    root = tmp_path / "esc"
    src = create_source("esc50", root, url=serve(http_server, archive))
    with pytest.raises(DataError, match=r"not a relative file name inside"):
        prepare_dataset(src, root / src.store_name(), sample_rate=8000)
    assert not (root / "esc50.h5").exists()
