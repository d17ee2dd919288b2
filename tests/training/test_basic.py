"""The foundation's training path: task losses, metrics, run directory, bundle, evaluate."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from audioclf.config import load_config
from audioclf.data.catalog import create_source
from audioclf.data.prepare import prepare_dataset
from audioclf.data.store import StoreHeader, StoreWriter
from audioclf.inference.evaluate import evaluate_checkpoint
from audioclf.metrics import compute_metrics, d_prime
from audioclf.models import create_model
from audioclf.models.bundle import load_bundle_model
from audioclf.training.task import ClassificationTask, parameter_groups
from audioclf.training.trainer import train

SMALL = ["model.settings={channels: [8, 16]}", "trainer.progress_bar=false", "data.batch_size=16"]


@pytest.fixture(scope="module")
def syn_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("syn") / "s.h5"
    prepare_dataset(create_source("synthetic", clips_per_class=10, seconds=1.0), path)
    return path


@pytest.fixture(scope="module")
def multi_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Multi-label clips: a mixture of up to three of four tones; labels = tones present."""
    path = tmp_path_factory.mktemp("ml") / "m.h5"
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    freqs = [300, 900, 2000, 4500]
    with StoreWriter(path, StoreHeader(16000, ["a", "b", "c", "d"], task="multi_label")) as w:
        for i in range(100):
            on = [c for c in range(4) if rng.random() < 0.4] or [int(rng.integers(4))]
            x = sum(np.sin(2 * np.pi * freqs[c] * t) for c in on) * 0.2 + rng.normal(0, 0.01, t.size)
            w.add(x, on, clip_id=str(i), split=["train", "train", "validation", "test"][i % 4])
    return path


def test_losses() -> None:
    model = create_model("cnn_lite", 3, channels=(4,))
    task = ClassificationTask(model, model_name="cnn_lite", model_settings={}, label_names=["a", "b", "c"], multi_label=False, clip_samples=16000)
    # by hand: logsumexp(2, 0, -1) = log(e^2 + 1 + e^-1) = 2.1698460
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    assert task.loss_fn(logits, torch.tensor([0])).item() == pytest.approx(2.1698460 - 2.0, abs=1e-6)
    # soft targets (mixed batches) go through the same CE: 0.5 (L - 2) + 0.5 (L - 0)
    soft = torch.tensor([[0.5, 0.5, 0.0]])
    assert task.loss_fn(logits, soft).item() == pytest.approx(1.1698460, abs=1e-6)
    ml = ClassificationTask(model, model_name="cnn_lite", model_settings={}, label_names=["a", "b", "c"], multi_label=True, clip_samples=16000)
    # BCE: mean of log(1 + e^-2), log(1 + e^0), log(1 + e^1) (targets 1, 0, 1)
    hot = torch.tensor([[1.0, 0.0, 1.0]])
    assert ml.loss_fn(logits, hot).item() == pytest.approx((0.1269280 + 0.6931472 + 1.3132617) / 3, abs=1e-6)
    with pytest.raises(ValueError, match="cannot train a multi-label"):
        ClassificationTask(model, model_name="x", model_settings={}, label_names=["a"], multi_label=True, clip_samples=1, task=load_config(None, ["task.loss=ce"]).task)


def test_no_weight_decay_on_biases_and_norms() -> None:
    model = create_model("cnn_lite", 3, channels=(4,))
    groups = parameter_groups(model, 0.05, {"head.": 10.0})
    by_id = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_id[id(named["head.weight"])]["lr_scale"] == 10.0
    assert by_id[id(named["head.bias"])]["weight_decay"] == 0.0
    assert by_id[id(named["bn0.weight"])]["weight_decay"] == 0.0
    assert by_id[id(named["features.0.0.weight"])]["weight_decay"] == 0.05
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_metrics_against_hand_computed_values() -> None:
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    m = compute_metrics(scores, torch.tensor([0, 1, 1, 1]), multi_label=False, per_class=True)
    assert m["accuracy"] == pytest.approx(0.75)
    # class 0: P=1/2, R=1 -> F1 2/3; class 1: P=1, R=2/3 -> F1 0.8
    assert m["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert m["confusion_matrix"] == [[1, 0], [1, 2]]
    ml = compute_metrics(torch.tensor([[0.9, 0.2], [0.1, 0.8], [0.8, 0.3]]), torch.tensor([[1, 0], [0, 1], [0, 1]]), multi_label=True)
    # class 0 AP: positives ranked 1st of 3 -> 1.0 ; class 1 AP: ranks 1 and 2 -> 1.0
    assert ml["mAP"] == pytest.approx(1.0)
    assert ml["mean_auc"] == pytest.approx((1.0 + 1.0) / 2)
    assert d_prime(0.5) == pytest.approx(0.0, abs=1e-6)
    # ESPnet's mean_acc: top-scored class == lowest-index positive label
    scores = torch.tensor([[0.1, 0.9, 0.2], [0.8, 0.1, 0.3], [0.2, 0.3, 0.9]])
    targets = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1]])
    ml = compute_metrics(scores, targets, multi_label=True)
    assert ml["mean_acc"] == pytest.approx(1 / 3)  # only clip 2: clip 1's first label is 0, clip 3's is 1
    assert ml["precision_at_1"] == pytest.approx(1.0)  # every top class is one of the clip's labels


def test_train_writes_run_directory_and_bundle(syn_store: Path, tmp_path: Path) -> None:
    config = load_config(None, [f"data.store={syn_store}", f"output_dir={tmp_path}", "name=t", "trainer.max_epochs=2", *SMALL])
    res = train(config)
    d = res.run_dir
    assert d.parent == tmp_path and d.name.startswith("t-")
    saved = yaml.safe_load((d / "config.yaml").read_text())
    assert saved["trainer"]["max_epochs"] == 2 and saved["model"]["settings"] == {"channels": [8, 16]}
    assert (d / "checkpoints" / "best.ckpt").exists() and (d / "checkpoints" / "last.ckpt").exists()
    header = (d / "metrics.csv").read_text().splitlines()[0]
    assert "val/accuracy" in header and "train/loss_epoch" in header
    assert set(res.test_metrics) >= {"accuracy", "f1_macro", "clips"} and res.test_metrics["clips"] == 24
    model, info = load_bundle_model(res.best_checkpoint)
    assert info["label_names"][:2] == ["tone", "chirp_up"] and info["sample_rate"] == 16000
    assert info["clip_samples"] == 16000 and info["task"] == "single_label" and info["model"] == "cnn_lite"
    assert not model.training
    m = evaluate_checkpoint(res.best_checkpoint, syn_store, split="test")
    assert m["accuracy"] == pytest.approx(res.test_metrics["accuracy"])


def test_multi_label_training_reports_map(multi_store: Path, tmp_path: Path) -> None:
    config = load_config(None, [f"data.store={multi_store}", f"output_dir={tmp_path}", "trainer.max_epochs=8", "optim.lr=0.01", *SMALL])
    res = train(config)
    assert {"mAP", "mean_auc", "d_prime", "mean_acc", "precision_at_1"} <= set(res.test_metrics)
    assert res.test_metrics["mAP"] > 0.6  # four tones are easy; chance is about 0.4


def test_sample_rate_mismatch_is_explained(syn_store: Path, tmp_path: Path) -> None:
    config = load_config(None, [f"data.store={syn_store}", f"output_dir={tmp_path}", "model.settings={sample_rate: 8000}"])
    with pytest.raises(ValueError, match="16000 Hz but model 'cnn_lite' expects 8000 Hz"):
        train(config)
    with pytest.raises(ValueError, match="data.store is not set"):
        train(load_config(None, []))
