from pathlib import Path

import numpy as np
import pytest

from audioclf.data.dataset import ClipDataset, protocol_indices
from audioclf.data.store import Store, StoreHeader, StoreWriter
from audioclf.errors import StoreError


@pytest.fixture
def store(tmp_path: Path) -> Store:
    h = StoreHeader(sample_rate=100, label_names=["a", "b"], dataset="t")
    with StoreWriter(tmp_path / "s.h5", h) as w:
        for i in range(50):
            n = 50 if i % 2 else 200  # short and long clips
            w.add(np.full(n, (i + 1) / 100, np.float32), i % 2, clip_id=str(i), fold=i % 5 + 1, split=["train", "validation", "test"][i % 3])
    return Store(tmp_path / "s.h5")


def test_crop_and_pad(store: Store) -> None:
    ds = ClipDataset(store, [0, 1], clip_samples=100)
    long_clip, _ = ds[0]
    short_clip, target = ds[1]
    assert long_clip.shape == short_clip.shape == (100,)
    assert int(target) == 1
    assert (short_clip[50:] == 0).all() and (short_clip[:50] > 0).all()  # zero-padded at the end


def test_training_crops_are_random_but_reproducible(store: Store) -> None:
    # clip 0 is constant, so look at where a ramp crop starts via a ramp clip
    h = StoreHeader(sample_rate=100, label_names=["a"], dataset="t")
    path = Path(store.path).with_name("ramp.h5")
    with StoreWriter(path, h) as w:
        w.add(np.linspace(0, 0.9, 1000, dtype=np.float32), 0, clip_id="r")
    ramp = Store(path)
    ds = ClipDataset(ramp, [0], 100, train=True, seed=1)
    starts = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        starts.append(float(ds[0][0][0]))
    assert len(set(starts)) > 1  # crops move between epochs
    ds.set_epoch(2)
    assert float(ds[0][0][0]) == starts[2]  # and are the same for the same epoch
    assert float(ClipDataset(ramp, [0], 100)[0][0][0]) == 0.0  # evaluation starts at 0


def test_augment_is_applied_in_training_only(store: Store) -> None:
    ds = ClipDataset(store, [0], 100, train=True, augment=lambda a, rng: -a)
    assert float(ds[0][0][0]) < 0
    assert float(ClipDataset(store, [0], 100, augment=lambda a, rng: -a)[0][0][0]) > 0


def test_kfold_protocol_never_validates_or_trains_on_test_fold(store: Store) -> None:
    roles = protocol_indices(store, fold=3, val_fraction=0.2, seed=0)
    test_fold = set(np.flatnonzero(store.folds == 3))
    assert set(roles["test"]) == test_fold
    assert not (set(roles["train"]) | set(roles["val"])) & test_fold
    assert not set(roles["train"]) & set(roles["val"])
    assert len(roles["train"]) + len(roles["val"]) == 40
    assert set(store.targets[roles["val"]]) == {0, 1}  # stratified
    held = protocol_indices(store, fold=3, val_fold=4)
    assert set(held["val"]) == set(np.flatnonzero(store.folds == 4))
    assert set(held["train"]) == set(np.flatnonzero(~np.isin(store.folds, [3, 4])))


def test_named_splits(store: Store) -> None:
    roles = protocol_indices(store, val_split=None)
    assert set(roles["train"]) == set(np.flatnonzero(store.splits == "train"))
    assert roles["val"].size == 0
    with pytest.raises(StoreError, match="no clips in split"):
        protocol_indices(store, train_split="nope")


def _ramp_store(path: Path) -> Store:
    h = StoreHeader(sample_rate=100, label_names=["a"], dataset="t")
    with StoreWriter(path, h) as w:
        for k in range(4):
            w.add(np.linspace(0, 0.9, 1000, dtype=np.float32) + k / 100, 0, clip_id=f"r{k}")
    return Store(path)


def test_persistent_workers_see_the_epoch_the_main_process_sets(tmp_path: Path) -> None:
    # workers kept alive across epochs hold their own copy of the dataset: they must still
    # draw each epoch's crops, the same ones as loading in the main process
    from torch.utils.data import DataLoader

    ds = ClipDataset(_ramp_store(tmp_path / "ramp.h5"), [0, 1, 2, 3], 100, train=True, seed=3)
    loader = DataLoader(ds, batch_size=2, num_workers=2, persistent_workers=True)
    seen, expected = [], []
    for epoch in range(3):
        ds.set_epoch(epoch)
        seen.append(np.concatenate([w[:, 0].numpy() for w, _ in loader]))
        expected.append(np.array([float(ds[i][0][0]) for i in range(4)]))
    np.testing.assert_array_equal(np.stack(seen), np.stack(expected))
    assert len({tuple(s) for s in seen}) == 3  # the crops really change with the epoch


def test_the_dataset_goes_to_spawned_workers(tmp_path: Path) -> None:
    # macOS and Windows start workers by spawning: the dataset travels pickled (the store
    # reopens its file in the worker) and persistent workers still follow the epoch
    import pickle

    from torch.utils.data import DataLoader

    ds = ClipDataset(_ramp_store(tmp_path / "ramp.h5"), [0, 1, 2, 3], 100, train=True, seed=3)
    ds.set_epoch(2)
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.epoch == 2 and all(np.array_equal(copy[i][0], ds[i][0]) for i in range(4))
    loader = DataLoader(ds, batch_size=4, num_workers=1, persistent_workers=True, multiprocessing_context="spawn")
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        [(waves, _)] = list(loader)
        np.testing.assert_array_equal(waves[:, 0].numpy(), [float(ds[i][0][0]) for i in range(4)])


def test_default_num_workers_leaves_a_core_to_training() -> None:
    from audioclf.data.dataset import default_num_workers

    assert default_num_workers(1) == 0
    assert default_num_workers(2) == 1
    assert default_num_workers(6) == 5
    assert default_num_workers(64) == 8
    assert 0 <= default_num_workers() <= 8

def test_augmentations_draw_from_the_dataset_generator_whatever_the_workers(store: Store) -> None:
    import torch
    from torch.utils.data import DataLoader

    from audioclf.data.augment import build_waveform_augment

    aug = build_waveform_augment({"noise": {"min_snr_db": 0, "max_snr_db": 30}}, store.sample_rate)
    ds = ClipDataset(store, list(range(8)), 100, train=True, augment=aug, seed=3)

    def epoch(workers: int) -> torch.Tensor:
        return torch.cat([w for w, _ in DataLoader(ds, batch_size=2, num_workers=workers)])

    state = np.random.get_state()[1].copy()
    alone = epoch(0)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # no global seeding
    assert torch.equal(alone, epoch(2))  # the same draws in worker processes
    assert not torch.equal(alone[0], alone[2])  # each clip its own noise
    ds.set_epoch(1)
    assert not torch.equal(alone, epoch(0))  # and each epoch
