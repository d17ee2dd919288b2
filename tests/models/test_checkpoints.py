"""Checkpoints are data: a file whose unpickling would run code is refused by every path
that loads one (the CLI verbs, the Python API, ``model.pretrained``, ``resume``), and
nothing in it runs; audioclf's own bundles (numpy random states included) still load."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from audioclf.cli import main
from audioclf.errors import AudioclfError, CheckpointError
from audioclf.models import create_model
from audioclf.models.checkpoints import read_checkpoint_file
from tests.training.helpers import make_store


class Payload:
    """Creates ``marker`` when unpickled (the classic ``__reduce__`` code-execution trick)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, (f"touch {self.marker}",))


def evil_bundle(path: Path, marker: Path, num_classes: int = 3) -> Path:
    """A file laid out like a real audioclf training checkpoint (a cnn_lite bundle a resume
    accepts), with the payload as one more entry."""
    model = create_model("cnn_lite", num_classes, channels=[8, 16])
    torch.save(
        {
            "epoch": 0,
            "global_step": 4,
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "audioclf": {
                "bundle_version": 1, "model": "cnn_lite", "model_settings": {"channels": [8, 16]},
                "num_classes": num_classes, "label_names": [f"class{i}" for i in range(num_classes)],
                "task": "single_label", "sample_rate": 16000, "clip_samples": 16000, "weights": "model",
                "config": {},
            },
            "extra": Payload(marker),
        },
        path,
    )
    return path


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = evil_bundle(run / "checkpoints" / "last.ckpt", marker)
    return ckpt, marker


def test_the_payload_really_runs_when_unpickled_unsafely(tmp_path: Path) -> None:
    # the control: without weights_only the file does run code, so the tests below can fail
    marker = tmp_path / "control"
    ckpt = evil_bundle(tmp_path / "c.ckpt", marker)
    torch.load(ckpt, weights_only=False)
    assert marker.exists()


def test_refused_with_the_file_and_the_type_named(evil: tuple[Path, Path]) -> None:
    ckpt, marker = evil
    with pytest.raises(CheckpointError) as info:
        read_checkpoint_file(ckpt)
    assert str(ckpt) in str(info.value)
    assert "system" in str(info.value)  # posix.system, the global it would have called
    assert isinstance(info.value, AudioclfError)
    assert not marker.exists()


def _wav(tmp_path: Path) -> Path:
    import soundfile as sf

    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(16000, dtype=np.float32), 16000)
    return path


@pytest.mark.parametrize("verb", ["predict", "evaluate", "report", "export", "serve", "resume"])
def test_every_cli_verb_refuses_it(verb: str, evil: tuple[Path, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, marker = evil
    store = make_store(tmp_path / "s.h5")
    (ckpt.parent.parent / "config.yaml").write_text(f"data:\n  store: {store}\n")
    argv = {
        "predict": ["predict", str(ckpt), str(_wav(tmp_path))],
        "evaluate": ["evaluate", str(ckpt), str(store)],
        "report": ["report", str(ckpt), "--out", str(tmp_path / "r.html")],
        "export": ["export", str(ckpt), "--out", str(tmp_path / "m.onnx")],
        "serve": ["serve", str(ckpt), "--port", "0"],
        "resume": ["resume", str(ckpt.parent.parent)],
    }[verb]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "last.ckpt" in err
    assert not marker.exists()


def test_python_api_and_pretrained_refuse_it(evil: tuple[Path, Path], tmp_path: Path) -> None:
    from audioclf.config import load_config
    from audioclf.inference import Classifier
    from audioclf.training.trainer import train

    ckpt, marker = evil
    with pytest.raises(CheckpointError):
        Classifier.from_checkpoint(ckpt)
    with pytest.raises(CheckpointError):
        create_model("cnn_lite", 3, pretrained=str(ckpt))
    store = make_store(tmp_path / "s.h5")
    with pytest.raises(CheckpointError):
        train(load_config(None, [f"data.store={store}", f"model.pretrained={ckpt}", f"output_dir={tmp_path / 'runs'}",
                                 "model.settings={channels: [8, 16]}", "trainer.progress_bar=false"]))
    assert not marker.exists()


def test_numpy_random_states_of_older_checkpoints_still_load(tmp_path: Path) -> None:
    # earlier bundles kept np.random.get_state() (a uint32 array) and numpy scalars
    state = np.random.RandomState(5).get_state()
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "rng": state, "pos": np.int64(7), "f": np.arange(3.0)}, path)
    obj = read_checkpoint_file(path)
    assert np.array_equal(obj["rng"][1], state[1]) and obj["pos"] == 7
    assert np.array_equal(obj["f"], [0.0, 1.0, 2.0])


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.ckpt"
    torch.save({"a": np.array([{"x": 1}], dtype=object)}, path)
    with pytest.raises(CheckpointError, match="obj.ckpt"):
        read_checkpoint_file(path)


def test_damaged_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cut.ckpt"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(CheckpointError, match="cut.ckpt"):
        read_checkpoint_file(path)
