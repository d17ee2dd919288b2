"""``evaluate`` writes its figures next to what it evaluated: in the checkpoint's run
directory, or beside a checkpoint that is not in one, never in a directory above it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from audioclf.cli import main
from audioclf.inference.evaluate import default_evaluation_path
from audioclf.models import create_model
from tests.training.helpers import make_store


def bundle(path: Path, num_classes: int = 3) -> Path:
    """An audioclf bundle of an untrained cnn_lite (what evaluate needs, nothing more)."""
    model = create_model("cnn_lite", num_classes, channels=[8, 16])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "audioclf": {
        "bundle_version": 1, "model": "cnn_lite", "model_settings": {"channels": [8, 16]}, "num_classes": num_classes,
        "label_names": [f"class{i}" for i in range(num_classes)], "task": "single_label", "sample_rate": 16000,
        "clip_samples": 16000, "weights": "model", "config": {}}}, path)
    return path


def test_default_paths(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r-1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("name: r\n")
    assert default_evaluation_path(run / "checkpoints" / "best.ckpt") == run / "evaluation.json"
    loose = tmp_path / "a" / "b" / "model.ckpt"
    assert default_evaluation_path(loose) == tmp_path / "a" / "b" / "model.evaluation.json"
    # a directory named checkpoints that is not in a run: beside the file too
    other = tmp_path / "x" / "checkpoints" / "m.ckpt"
    assert default_evaluation_path(other) == other.with_name("m.evaluation.json")


def test_evaluate_of_a_loose_checkpoint_writes_beside_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "s.h5")
    ckpt = bundle(tmp_path / "deep" / "er" / "model.ckpt")
    assert main(["evaluate", str(ckpt), str(store)]) == 0
    written = tmp_path / "deep" / "er" / "model.evaluation.json"
    assert json.loads(written.read_text())["clips"] == 3
    assert not (tmp_path / "evaluation.json").exists() and not (tmp_path / "deep" / "evaluation.json").exists()
