"""Stratified hashed splits and the coverage warnings."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf.data.catalog import create_source
from audioclf.data.dataset import protocol_indices
from audioclf.data.prepare import prepare_dataset
from audioclf.data.splits import coverage_warnings, split_quota, stratified_hash_splits
from audioclf.data.store import Store, StoreHeader, StoreWriter
from audioclf.errors import StoreError


def _tree(root: Path, counts: dict[str, int]) -> Path:
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            sf.write(root / label / f"{label}_{i:02d}.wav", np.full(800, 0.1 * (i + 1) / n, np.float32), 8000)
    return root


def _by_class(items) -> dict[str, Counter]:  # type: ignore[no-untyped-def]
    out: dict[str, Counter] = {}
    for it in items:
        out.setdefault(it.clip_id.split("/")[0], Counter())[it.split] += 1
    return out


@pytest.mark.parametrize(("n", "expected"), [(1, (0, 0)), (2, (0, 0)), (3, (1, 1)), (10, (1, 1)), (30, (3, 3)), (25, (2, 2))])
def test_split_quota(n: int, expected: tuple[int, int]) -> None:
    assert split_quota(n, 0.1, 0.1) == expected


def test_thirty_files_in_three_classes_split_in_every_class(tmp_path: Path) -> None:
    # the case: a 30-file folder got 26/2/2 with a class absent from test
    source = create_source("folder", _tree(tmp_path / "audio", {"cat": 10, "dog": 10, "owl": 10}))
    per_class = _by_class(source.items())
    assert per_class == {c: Counter(train=8, validation=1, test=1) for c in ("cat", "dog", "owl")}


def test_small_classes_still_reach_every_split(tmp_path: Path) -> None:
    source = create_source("folder", _tree(tmp_path / "audio", {"big": 30, "small": 3, "tiny": 2}))
    per_class = _by_class(source.items())
    assert per_class["big"] == Counter(train=24, validation=3, test=3)
    assert per_class["small"] == Counter(train=1, validation=1, test=1)
    assert per_class["tiny"] == Counter(train=2)  # two files: both train (and a warning at prepare, below)


def test_split_is_stable_when_files_are_added(tmp_path: Path) -> None:
    root = _tree(tmp_path / "audio", {"cat": 20, "dog": 20})
    before = {it.clip_id: it.split for it in create_source("folder", root).items()}
    sf.write(root / "cat" / "new.wav", np.zeros(800, np.float32), 8000)
    after = {it.clip_id: it.split for it in create_source("folder", root).items()}
    moved = [k for k in before if before[k] != after[k]]
    assert not [k for k in moved if k.startswith("dog/")]  # other classes never change
    assert len(moved) <= 2
    # a move only steps one split towards train: test -> validation or validation -> train
    assert all((before[k], after[k]) in {("test", "validation"), ("validation", "train")} for k in moved)


def test_hash_split_does_not_depend_on_order() -> None:
    keys = [f"a/{i}.wav" for i in range(12)]
    splits = stratified_hash_splits(keys, [0] * 12, 0.25, 0.25)
    shuffled = stratified_hash_splits(keys[::-1], [0] * 12, 0.25, 0.25)[::-1]
    assert splits == shuffled and Counter(splits) == Counter(train=6, validation=3, test=3)


def test_coverage_warnings_name_missing_classes_and_small_splits() -> None:
    targets = np.array([0, 1, 2, 0, 1, 2, 0])
    groups = {"train": np.arange(6), "test": np.array([6]), "validation": np.zeros(0, int)}
    msgs = coverage_warnings(targets, ["a", "b", "c"], groups, where="x.h5")
    assert msgs == [
        "x.h5: split 'test' has no clip of 2 of the 3 classes: b, c (its figures for those classes mean nothing)",
        "x.h5: split 'test' holds 1 clips, fewer than the 3 classes",
    ]
    multi = np.array([[1, 0], [1, 1], [1, 0]])
    assert coverage_warnings(multi, ["a", "b"], {"test": np.array([0, 2])}) == [
        "split 'test' has no clip of 1 of the 2 classes: b (its figures for those classes mean nothing)"
    ]


def test_prepare_warns_about_a_class_missing_from_a_split(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = create_source("folder", _tree(tmp_path / "audio", {"cat": 10, "dog": 10, "tiny": 2}))
    with caplog.at_level(logging.WARNING, logger="audioclf"):
        prepare_dataset(source, tmp_path / "f.h5", workers=1)
    text = caplog.text
    assert "split 'test' has no clip of 1 of the 3 classes: tiny" in text
    assert "split 'validation' has no clip of 1 of the 3 classes: tiny" in text
    assert "split 'test' holds 2 clips, fewer than the 3 classes" in text


# --- the validation carve-out ---------------------------------------------------------------


def _train_test_store(path: Path, splits: tuple[str, ...] = ("train", "test")) -> Store:
    h = StoreHeader(sample_rate=100, label_names=["a", "b", "c"], dataset="hub")
    with StoreWriter(path, h) as w:
        for i in range(90):  # 30 per class; train 60 (20 per class), the rest test
            w.add(np.full(100, 0.1, np.float32), i % 3, clip_id=str(i), split=splits[0] if i < 60 else splits[1])
    return Store(path)


def test_store_without_validation_split_validates_on_a_stratified_share_of_train(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = _train_test_store(tmp_path / "s.h5")
    with caplog.at_level(logging.INFO, logger="audioclf"):
        roles = protocol_indices(store, val_fraction=0.1)
    assert "has no 'validation' split: validating on a stratified 10% of 'train' (6 clips" in caplog.text
    assert len(roles["val"]) == 6 and len(roles["train"]) == 54 and len(roles["test"]) == 30
    assert Counter(store.targets[roles["val"]].tolist()) == {0: 2, 1: 2, 2: 2}  # stratified
    assert not set(roles["val"]) & set(roles["train"]) and (roles["val"] < 60).all()  # out of train only
    assert protocol_indices(store, val_fraction=0.1)["val"].tolist() == roles["val"].tolist()  # stable
    assert protocol_indices(store, val_fraction=0.0)["val"].size == 0


def test_an_unknown_split_that_could_be_meant_is_still_an_error(tmp_path: Path) -> None:
    # the store has a "valid" split: not carving, but the error lists it
    h = StoreHeader(sample_rate=100, label_names=["a"], dataset="t")
    with StoreWriter(tmp_path / "v.h5", h) as w:
        for i, split in enumerate(["train", "valid", "test"]):
            w.add(np.zeros(10, np.float32), 0, clip_id=str(i), split=split)
    with pytest.raises(StoreError, match=r"no clips in split\(s\) \['validation'\]; splits here: \['test', 'train', 'valid'\]"):
        protocol_indices(Store(tmp_path / "v.h5"))


def test_training_on_a_train_test_store_runs_with_the_carved_validation(tmp_path: Path) -> None:
    from audioclf.config import load_config
    from audioclf.data.catalog import create_source as source
    from audioclf.training.trainer import build_loaders

    prepare_dataset(source("synthetic", clips_per_class=10, seconds=0.5), tmp_path / "syn.h5", workers=1)
    full = Store(tmp_path / "syn.h5")
    h = StoreHeader(sample_rate=full.sample_rate, label_names=full.label_names, dataset="hub")
    with StoreWriter(tmp_path / "tt.h5", h) as w:
        for i in range(len(full)):
            w.add(full.read_audio(i), int(full.targets[i]), clip_id=str(i), split="test" if full.splits[i] == "test" else "train")
    config = load_config(None, [f"data.store={tmp_path / 'tt.h5'}"])
    loaders = build_loaders(config, Store(tmp_path / "tt.h5"), 8000)
    assert loaders["val"] is not None and len(loaders["val"].dataset) > 0
