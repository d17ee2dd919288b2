"""Pretrain then fine-tune: model.pretrained takes another run (its directory, a checkpoint,
or a glob of run directories), the backbone starts from its weights (the EMA ones when it
kept an EMA), the head is new for the new class count; model.freeze and optim.layer_lr."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pytest
import torch

from audioclf.config import load_config
from audioclf.models import create_model
from audioclf.training.trainer import resolve_pretrained, train
from tests.training.helpers import make_store

BASE = ["model.settings={channels: [8, 16]}", "trainer.progress_bar=false", "data.batch_size=4", "seed=5"]


class Start(L.Callback):
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.weights = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
        self.groups = [(g["lr"], {id(p) for p in g["params"]}) for g in trainer.optimizers[0].param_groups]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.final = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory: pytest.TempPathFactory):
    """A 3-class run with an EMA, standing in for the UrbanSound8K pretraining."""
    tmp = tmp_path_factory.mktemp("pre")
    store = make_store(tmp / "a.h5", classes=3)
    config = load_config(None, [f"data.store={store}", f"output_dir={tmp / 'runs'}", "name=pre", "trainer.max_epochs=2",
                                "task.ema_decay=0.5", *BASE])
    return train(config)


@pytest.fixture(scope="module")
def other_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another dataset: 5 classes, other tones."""
    return make_store(tmp_path_factory.mktemp("ft") / "b.h5", classes=5, seed=9)


def _ema_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    sd = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]  # the average (weight averaging)
    return {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}


def test_fine_tune_starts_from_the_pretrained_backbone_with_a_new_head(pretrained_run, other_store, tmp_path, caplog) -> None:
    start = Start()
    config = load_config(None, [f"data.store={other_store}", f"output_dir={tmp_path}", f"model.pretrained={pretrained_run.run_dir}",
                                "trainer.max_epochs=1", *BASE])
    with caplog.at_level(logging.INFO, logger="audioclf"):
        res = train(config, callbacks=[start])
    assert "head replaced" in caplog.text
    pre = _ema_weights(pretrained_run.best_checkpoint)  # the weights the pretraining run exports
    for k, v in start.weights.items():
        if k.startswith("head."):
            continue
        torch.testing.assert_close(v, pre[k], rtol=0, atol=0, msg=k)
    # the head is new: 5 classes, initialised as a fresh model's head from the same seed
    assert start.weights["head.weight"].shape[0] == 5 and pre["head.weight"].shape[0] == 3
    L.seed_everything(5, verbose=False)
    fresh = create_model("cnn_lite", 5, channels=[8, 16]).state_dict()
    torch.testing.assert_close(start.weights["head.weight"], fresh["head.weight"])
    assert not torch.equal(start.weights["features.0.0.weight"], fresh["features.0.0.weight"])
    assert res.test_metrics["clips"] > 0


def test_pretrained_as_checkpoint_or_newest_run_of_a_glob(pretrained_run, tmp_path) -> None:
    run_dir = pretrained_run.run_dir
    assert resolve_pretrained(str(run_dir)) == run_dir / "checkpoints" / "best.ckpt"
    assert resolve_pretrained(str(run_dir / "checkpoints" / "last.ckpt")) == run_dir / "checkpoints" / "last.ckpt"
    # a later run of the same name: the glob takes the newest; other names do not match
    newer = run_dir.parent / f"{run_dir.name}-9"
    (newer / "checkpoints").mkdir(parents=True)
    (newer / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run_dir.parent / "unrelated").mkdir()
    (run_dir.parent / f"pre-cv-{run_dir.name[4:]}").mkdir()  # sorts last, but is no run directory
    assert resolve_pretrained(str(run_dir.parent / "pre-*")) == newer / "checkpoints" / "last.ckpt"
    with pytest.raises(FileNotFoundError, match="nothing matches"):
        resolve_pretrained(str(tmp_path / "nothing-*"))
    with pytest.raises(FileNotFoundError, match="model.pretrained: not found"):
        resolve_pretrained(str(tmp_path / "missing.ckpt"))


def test_freeze_and_layer_rates(pretrained_run, other_store, tmp_path) -> None:
    start = Start()
    config = load_config(None, [
        f"data.store={other_store}", f"output_dir={tmp_path}", f"model.pretrained={pretrained_run.best_checkpoint}",
        "trainer.max_epochs=1", "model.freeze=[features.0.]", "optim.lr=0.01", "optim.layer_lr={features.: 0.1}", *BASE,
    ])
    train(config, callbacks=[start])
    for k in ("features.0.0.weight", "features.0.1.weight"):
        torch.testing.assert_close(start.final[k], start.weights[k], rtol=0, atol=0, msg=f"frozen {k} moved")
    assert not torch.equal(start.final["features.2.0.weight"], start.weights["features.2.0.weight"])
    lrs = sorted({round(lr, 10) for lr, _ in start.groups})
    assert lrs == [0.001, 0.01], "backbone at a tenth of the head's rate"
