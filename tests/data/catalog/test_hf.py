"""Datasets saved with the Hugging Face ``datasets`` library (save_to_disk layout): an
UrbanSound8K copy in the danavery/urbansound8K column layout keeps its folds; a
DatasetDict with ClassLabel labels keeps its splits."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pytest
import soundfile as sf

from audioclf.audio.io import resample
from audioclf.data.catalog import create_source
from audioclf.data.download import DatasetLayoutError
from audioclf.data.prepare import prepare_dataset
from audioclf.data.store import Store
from tests.data.catalog.fakes import US8K_CLASSES, tone, wav_bytes


def audio_dataset(columns: dict, features: dict):
    # built as a plain {bytes, path} struct, then cast to Audio: encoding through the Audio
    # feature would need an extra audio backend, and the saved layout is the same
    feats = datasets.Features({"audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}, **features})
    return datasets.Dataset.from_dict(columns, features=feats).cast_column("audio", datasets.Audio())


@pytest.fixture(scope="module")
def hf_us8k(us8k_tar, tmp_path_factory):
    """danavery/urbansound8K's columns: audio, slice_file_name, fsID, start, end, salience,
    fold, classID, class; one split, "train"."""
    _, fake = us8k_tar
    names = sorted(fake.clips)
    V = datasets.Value
    ds = audio_dataset(
        {
            "audio": [{"bytes": fake.clips[n]["bytes"], "path": f"{n}.wav"} for n in names],
            "slice_file_name": [f"{n}.wav" for n in names],
            "fsID": [int(n.split("-")[0]) for n in names],
            "start": [0.0] * len(names),
            "end": [0.05] * len(names),
            "salience": [1] * len(names),
            "fold": [fake.clips[n]["fold"] for n in names],
            "classID": [US8K_CLASSES.index(fake.clips[n]["label"]) for n in names],
            "class": [fake.clips[n]["label"] for n in names],
        },
        {"slice_file_name": V("string"), "fsID": V("int64"), "start": V("float64"), "end": V("float64"),
         "salience": V("int64"), "fold": V("int64"), "classID": V("int64"), "class": V("string")},
    )  # fmt: skip
    path = tmp_path_factory.mktemp("hf") / "urbansound8K"
    datasets.DatasetDict(train=ds).save_to_disk(str(path))
    return path, fake


def test_import_keeps_folds_labels_and_audio(hf_us8k, tmp_path):
    path, fake = hf_us8k
    src = create_source("hf", path)
    assert src.store_name() == "urbansound8K.h5"
    report = prepare_dataset(src, tmp_path / "hf.h5", sample_rate=16000, workers=2)
    assert report.skipped == []
    store = Store(tmp_path / "hf.h5")
    assert store.label_names == US8K_CLASSES  # integer classID named by the "class" column
    assert store.fold_ids() == list(range(1, 11))
    assert store.split_names() == []  # one split beside a fold column: a k-fold dataset
    assert sorted(store.clip_ids) == sorted(fake.clips)  # ids from slice_file_name
    for i, cid in enumerate(store.clip_ids):
        clip = fake.clips[cid]
        assert store.folds[i] == clip["fold"]
        assert store.label_names[store.targets[i]] == clip["label"]
        audio, rate = sf.read(io.BytesIO(clip["bytes"]), dtype="float32", always_2d=True)
        np.testing.assert_allclose(store.read_audio(i), resample(audio.mean(axis=1), rate, 16000), atol=1.5 / 32767)


def test_dataset_dict_with_class_labels_keeps_its_splits(tmp_path):
    labels = datasets.ClassLabel(names=["bird", "cat", "dog"])
    parts = {}
    for split, n in (("train", 4), ("validation", 2), ("test", 2)):
        parts[split] = audio_dataset(
            {"audio": [{"bytes": wav_bytes(tone(400, 10 * n + i), 8000, "PCM_24"), "path": None} for i in range(n)],
             "label": [i % 3 for i in range(n)]},
            {"label": labels},
        )  # fmt: skip
    path = tmp_path / "saved"
    datasets.DatasetDict(parts).save_to_disk(str(path))
    src = create_source("hf", path, dataset_name="pets")
    report = prepare_dataset(src, tmp_path / src.store_name(), sample_rate=8000)
    store = Store(tmp_path / "pets.h5")
    assert store.label_names == ["bird", "cat", "dog"]
    assert report.per_split == {"train": 4, "validation": 2, "test": 2}
    assert store.fold_ids() == []
    assert list(store.clip_ids[:2]) == ["train/0", "train/1"]  # no id column: split/row
    assert store.targets.tolist() == [0, 1, 2, 0, 0, 1, 0, 1]


def test_folds_counted_from_zero_are_stored_1_based(tmp_path):
    ds = audio_dataset(
        {"audio": [{"bytes": wav_bytes(tone(400, i), 8000), "path": f"c{i}.wav"} for i in range(4)],
         "fold": [0, 1, 0, 1], "category": ["a", "b", "b", "a"]},
        {"fold": datasets.Value("int64"), "category": datasets.Value("string")},
    )  # fmt: skip
    ds.save_to_disk(str(tmp_path / "single"))  # a Dataset, not a DatasetDict: state.json layout
    src = create_source("hf", tmp_path / "single")
    items = src.items()
    assert [it.fold for it in items] == [1, 2, 1, 2]
    assert src.label_names() == ["a", "b"]  # text labels: their sorted values
    assert [it.target for it in items] == [0, 1, 1, 0]
    assert [it.clip_id for it in items] == ["c0", "c1", "c2", "c3"]  # from the audio path column


def test_a_directory_without_audio_data_is_refused(hf_cache, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "data.csv").write_text("a,b\n")
    with pytest.raises(DatasetLayoutError, match="could not load directory .*audiofolder.*save_to_disk.*holds: data.csv"):
        create_source("hf", tmp_path / "empty").items()
    (tmp_path / "table").mkdir()
    (tmp_path / "table" / "data.csv").write_text("a,label\n1,dog\n")
    with pytest.raises(DatasetLayoutError, match="no audio column 'audio'; columns: \\['a', 'label'\\]"):
        create_source("hf", tmp_path / "table").items()
    with pytest.raises(DatasetLayoutError, match="neither a directory nor a Hub dataset id"):
        create_source("hf", tmp_path / "no such dir").items()


def test_without_the_datasets_package_the_error_says_how_to_install_it(monkeypatch, hf_us8k):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(ImportError, match="pip install datasets"):
        create_source("hf", hf_us8k[0]).items()


# -- by Hub id, and from parquet / audiofolder directories, through datasets.load_dataset -------


def store_contents(path):
    s = Store(path)
    return {
        cid: (s.label_names[s.targets[i]], int(s.folds[i]), s.read_audio(i).tobytes())
        for i, cid in enumerate(s.clip_ids)
    }


def test_a_hub_dataset_by_id_keeps_folds_labels_and_audio_streamed_or_not(hub, hf_us8k, tmp_path):
    path, fake = hf_us8k
    datasets.load_from_disk(str(path))["train"].to_parquet(str(tmp_path / "train.parquet"))
    hub.commit("danavery/urbansound8K", {"data/train-00000-of-00001.parquet": tmp_path / "train.parquet"}, repo_type="dataset")

    src = create_source("hf", "danavery/urbansound8K")
    assert src.hub_id == "danavery/urbansound8K" and src.store_name() == "urbansound8K.h5"
    report = prepare_dataset(src, tmp_path / "hub.h5", sample_rate=16000, workers=2)
    assert report.skipped == []
    assert hub.count("GET", r"^/datasets/danavery/urbansound8K/resolve/[0-9a-f]{40}/data/train-00000-of-00001.parquet$") >= 1
    store = Store(tmp_path / "hub.h5")
    assert store.label_names == US8K_CLASSES
    assert store.fold_ids() == list(range(1, 11)) and store.split_names() == []
    assert sorted(store.clip_ids) == sorted(fake.clips)
    for i, cid in enumerate(store.clip_ids):
        assert store.folds[i] == fake.clips[cid]["fold"]
        assert store.label_names[store.targets[i]] == fake.clips[cid]["label"]
    assert store.header.provenance["hf_dataset"]["hub_id"] == "danavery/urbansound8K"
    # the same clips, read from the saved copy
    prepare_dataset(create_source("hf", path), tmp_path / "disk.h5", sample_rate=16000)
    assert store_contents(tmp_path / "hub.h5") == store_contents(tmp_path / "disk.h5")

    streamed = create_source("hf", "hf:danavery/urbansound8K", streaming=True)
    prepare_dataset(streamed, tmp_path / "stream.h5", sample_rate=16000, workers=2)
    assert store_contents(tmp_path / "stream.h5") == store_contents(tmp_path / "hub.h5")
    spill = streamed._spill
    assert spill is not None and spill.is_file()
    del streamed
    import gc

    gc.collect()
    assert not spill.exists()  # the temporary file goes with its source


def pets(tmp_path, names=("bird", "cat", "dog"), sizes=(("train", 4), ("test", 2)), seed=0):
    """parquet files of a two-split dataset with ClassLabel labels, one per split."""
    labels = datasets.ClassLabel(names=list(names))
    files = {}
    for split, n in sizes:
        ds = audio_dataset(
            {"audio": [{"bytes": wav_bytes(tone(400, seed + 10 * n + i), 8000), "path": f"{split}{i}.wav"} for i in range(n)],
             "label": [(i + seed) % 3 for i in range(n)]},
            {"label": labels},
        )  # fmt: skip
        out = tmp_path / f"{split}-{seed}.parquet"
        ds.to_parquet(str(out))
        files[f"data/{split}-00000-of-00001.parquet"] = out
    return files


def test_hub_splits_config_revision_and_errors(hub, tmp_path):
    hub.commit("org/pets", pets(tmp_path, seed=0), repo_type="dataset")
    hub.tag("org/pets", "v1", repo_type="dataset")
    hub.commit("org/pets", pets(tmp_path, seed=1), repo_type="dataset")

    src = create_source("hf", "org/pets")
    assert {it.split for it in src.items()} == {"train", "test"}
    assert [it.target for it in src.items()][:4] == [1, 2, 0, 1]  # main: the second commit
    old = create_source("hf", "org/pets@v1")
    assert [it.target for it in old.items()][:4] == [0, 1, 2, 0]
    assert [it.target for it in create_source("hf", "org/pets", revision="v1").items()][:4] == [0, 1, 2, 0]

    before = hub.count("GET", r"/data/train-")
    only = create_source("hf", "org/pets", split="test")
    assert [it.split for it in only.items()] == ["test", "test"]  # one split: no fold column, keeps its name
    assert hub.count("GET", r"/data/train-") == before  # the other split is not downloaded
    report = prepare_dataset(only, tmp_path / "t.h5", sample_rate=8000)
    assert report.per_split == {"test": 2}

    with pytest.raises(DatasetLayoutError, match="could not load Hub dataset 'org/nothing'.*no local directory"):
        create_source("hf", "org/nothing").items()
    with pytest.raises(DatasetLayoutError, match="could not load Hub dataset 'org/pets'"):
        create_source("hf", "org/pets", split="validation").items()
    with pytest.raises(ValueError, match="split or splits, not both"):
        create_source("hf", "org/pets", split="a", splits="b")
    with pytest.raises(ValueError, match="revision 'v1' in the id and revision='main' differ"):
        create_source("hf", "org/pets@v1", revision="main").items()


def test_a_local_parquet_directory(hub, tmp_path):
    d = tmp_path / "pets"
    for name, file in pets(tmp_path).items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        file.rename(d / name)
    src = create_source("hf", d)
    assert src.hub_id is None
    report = prepare_dataset(src, tmp_path / src.store_name(), sample_rate=8000)
    assert report.per_split == {"train": 4, "test": 2}
    store = Store(tmp_path / "pets.h5")
    assert store.label_names == ["bird", "cat", "dog"]
    assert sorted(store.clip_ids) == ["test0", "test1", "train0", "train1", "train2", "train3"]
    with pytest.raises(ValueError, match="revision= applies to Hub ids"):
        create_source("hf", d, revision="v1").items()
    assert hub.requests == []  # a local directory never asks the Hub


def test_an_audiofolder_with_folds_from_metadata_and_one_with_split_and_class_folders(hub, tmp_path):
    flat = tmp_path / "clips"
    flat.mkdir()
    rows = ["file_name,fold,category"]
    for i in range(6):
        sf.write(flat / f"c{i}.wav", tone(300, i), 8000)
        rows.append(f"c{i}.wav,{i % 3 + 1},{'dog' if i % 2 else 'rain'}")
    (flat / "metadata.csv").write_text("\n".join(rows) + "\n")
    src = create_source("hf", flat)
    items = src.items()
    assert [it.fold for it in items] == [1, 2, 3, 1, 2, 3]
    assert src.label_names() == ["dog", "rain"] and [it.target for it in items] == [1, 0, 1, 0, 1, 0]
    assert [it.clip_id for it in items] == [f"c{i}" for i in range(6)]
    assert {it.split for it in items} == {""}  # one split beside a fold column: k-fold
    prepare_dataset(src, tmp_path / "flat.h5", sample_rate=8000)
    store = Store(tmp_path / "flat.h5")
    np.testing.assert_allclose(store.read_audio(list(store.clip_ids).index("c4")), tone(300, 4), atol=1.5 / 32767)

    tree = tmp_path / "tree"
    for split, label, i in (("train", "bird", 0), ("train", "cat", 1), ("train", "bird", 2), ("test", "cat", 3), ("test", "bird", 4)):
        (tree / split / label).mkdir(parents=True, exist_ok=True)
        sf.write(tree / split / label / f"{label}{i}.wav", tone(300, i), 8000)
    report = prepare_dataset(create_source("hf", tree), tmp_path / "tree.h5", sample_rate=8000)
    assert report.per_split == {"train": 3, "test": 2}
    store = Store(tmp_path / "tree.h5")
    assert store.label_names == ["bird", "cat"]
    assert {cid: store.label_names[t] for cid, t in zip(store.clip_ids, store.targets, strict=True)} == {
        "bird0": "bird", "cat1": "cat", "bird2": "bird", "cat3": "cat", "bird4": "bird"
    }  # fmt: skip


def test_prepare_hf_by_hub_id_from_the_command_line(hub, tmp_path, monkeypatch):
    from audioclf.cli import main

    hub.commit("org/pets", pets(tmp_path), repo_type="dataset")
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", "hf", "org/pets", "-o", "split=train", "--sample-rate", "8000"]) == 0
    store = Store(tmp_path / "pets.h5")  # in the working directory, named after the repository
    assert len(store) == 4 and store.split_names() == ["train"]
    assert main(["prepare", "hf", "org/nothing", "--out", str(tmp_path / "x.h5")]) == 2
    assert main(["prepare", "hf", "org/pets", "--root", "org/pets"]) == 2  # one of the two


def test_a_hub_dataset_of_audio_files_read_whole_or_streamed(hub, tmp_path):
    files = {f"train/c{i}.wav": wav_bytes(tone(300, i), 8000) for i in range(4)}
    files["train/metadata.csv"] = "file_name,fold,label\n" + "".join(f"c{i}.wav,{i % 2 + 1},{'ab'[i % 2]}\n" for i in range(4))
    hub.commit("org/clips", files, repo_type="dataset")
    for streaming in (False, True):
        src = create_source("hf", "org/clips", streaming=streaming, dataset_name=f"clips-{streaming}")
        prepare_dataset(src, tmp_path / src.store_name(), sample_rate=8000)
        store = Store(tmp_path / src.store_name())
        assert store.label_names == ["a", "b"] and store.fold_ids() == [1, 2]
        for i, cid in enumerate(store.clip_ids):
            n = int(cid[1:])
            assert store.folds[i] == n % 2 + 1 and store.label_names[store.targets[i]] == "ab"[n % 2]
            np.testing.assert_allclose(store.read_audio(i), tone(300, n), atol=1.5 / 32767)


def test_a_hub_dataset_offline_comes_from_the_cache(hub, tmp_path, monkeypatch):
    import datasets.config
    from huggingface_hub import constants

    hub.commit("org/pets", pets(tmp_path), repo_type="dataset")
    online = [(it.clip_id, it.target, it.split) for it in create_source("hf", "org/pets").items()]
    n = len(hub.requests)
    # HF_HUB_OFFLINE=1, as a process started with it sees it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    offline = create_source("hf", "org/pets")
    assert [(it.clip_id, it.target, it.split) for it in offline.items()] == online
    prepare_dataset(offline, tmp_path / "pets.h5", sample_rate=8000)
    assert len(Store(tmp_path / "pets.h5")) == 6
    assert len(hub.requests) == n  # nothing asked of the Hub
    with pytest.raises(DatasetLayoutError, match="could not load Hub dataset 'org/other'") as err:
        create_source("hf", "org/other").items()
    assert "OfflineModeIsEnabled" in str(err.value)


def test_a_hub_dataset_configuration_is_picked_by_config(hub, tmp_path):
    small = pets(tmp_path, names=("bird", "cat", "dog"), sizes=(("train", 3),), seed=0)
    large = pets(tmp_path, names=("car", "horn", "siren"), sizes=(("train", 5),), seed=7)
    card = (
        "---\nconfigs:\n"
        "- config_name: animals\n  data_files:\n  - split: train\n    path: animals/*.parquet\n"
        "- config_name: traffic\n  data_files:\n  - split: train\n    path: traffic/*.parquet\n"
        "---\n# two configurations\n"
    )
    hub.commit("org/sounds", {"README.md": card, "animals/train.parquet": next(iter(small.values())),
                              "traffic/train.parquet": next(iter(large.values()))}, repo_type="dataset")  # fmt: skip
    animals = create_source("hf", "org/sounds", config="animals")
    assert animals.label_names() == ["bird", "cat", "dog"] and len(animals.items()) == 3
    traffic = create_source("hf", "org/sounds", config="traffic")
    assert traffic.label_names() == ["car", "horn", "siren"] and len(traffic.items()) == 5
    assert traffic.provenance()["hf_dataset"]["config"] == "traffic"
    with pytest.raises(DatasetLayoutError, match="could not load Hub dataset 'org/sounds'.*weather"):
        create_source("hf", "org/sounds", config="weather").items()
