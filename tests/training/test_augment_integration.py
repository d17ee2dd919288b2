"""Augmentations configured in a recipe reach training, and only training.

Each family is switched on from config and trained for an epoch; a spy looks at what the
model and the loss actually received: augmented waveforms, masked spectrograms, mixed
(soft) targets with the configured loss, and untouched validation batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch

from audioclf.config import load_config
from audioclf.data.augment import list_waveform_augments
from audioclf.data.dataset import ClipDataset
from audioclf.data.store import Store
from audioclf.training.mixing import list_mix_methods
from audioclf.training.spec_augment import list_spec_augments
from audioclf.training.task import ClassificationTask
from audioclf.training.trainer import train
from tests.training.helpers import make_store

BASE = ["model.settings={channels: [8, 16]}", "trainer.progress_bar=false", "data.batch_size=4"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("aug") / "s.h5", classes=4, clips_per_class=6)


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("noise")
    sf.write(d / "hum.wav", (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 16000)
    return d


class Spy(L.Callback):
    """Records the waveforms, frontend outputs and loss targets of training and validation."""

    def __init__(self) -> None:
        self.waves: dict[str, list[torch.Tensor]] = {"train": [], "val": []}
        self.spec_changed: dict[str, list[bool]] = {"train": [], "val": []}
        self.targets: dict[str, list[tuple[int, torch.Tensor]]] = {"train": [], "val": []}

    def on_train_start(self, trainer: L.Trainer, task: ClassificationTask) -> None:
        # the frontend's own output, and what forward_features receives after the task's
        # spectrogram mixing and masking
        model, seen = task.model, {}
        model.frontend.register_forward_hook(lambda m, i, out: seen.__setitem__("spec", out.detach().clone()))
        forward_features = model.forward_features

        def spying(spec: torch.Tensor, *args: Any) -> torch.Tensor:
            role = "train" if task.training else "val"
            self.spec_changed[role].append(not torch.equal(seen["spec"], spec))
            return forward_features(spec, *args)

        model.forward_features = spying
        loss_fn = task.loss_fn

        def recording_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            self.targets["train" if task.training else "val"].append((task.current_epoch, target.detach().clone()))
            return loss_fn(logits, target)

        task.loss_fn = recording_loss

    def on_train_batch_start(self, trainer, task, batch, batch_idx) -> None:
        self.waves["train"].append(batch[0].clone())

    def on_validation_batch_start(self, trainer, task, batch, batch_idx, dataloader_idx=0) -> None:
        self.waves["val"].append(batch[0].clone())


def _run(store: Path, out: Path, *overrides: str) -> tuple[Spy, Any]:
    spy = Spy()
    config = load_config(None, [f"data.store={store}", f"output_dir={out}", *BASE, *overrides])
    return spy, train(config, callbacks=[spy])


def _raw_clips(store: Path, split: str) -> torch.Tensor:
    s = Store(store)
    ds = ClipDataset(s, s.indices(split=split), 16000)
    return torch.stack([ds[i][0] for i in range(len(ds))])


def _is_raw(wave: torch.Tensor, raw: torch.Tensor) -> bool:
    return bool((raw - wave).abs().amax(dim=1).min() < 1e-7)


def test_waveform_augmentations_reach_training_only(store: Path, noise_dir: Path, tmp_path: Path) -> None:
    names = list_waveform_augments()
    spec = {n: {"p": 1.0} for n in names}
    spec["background_noise"]["path"] = str(noise_dir)
    augment = "{" + ", ".join(f"{n}: {{{', '.join(f'{k}: {v}' for k, v in o.items())}}}" for n, o in spec.items()) + "}"
    spy, res = _run(store, tmp_path, f"data.augment={augment}", "trainer.max_epochs=1")
    assert res.global_step == 4
    train_raw, val_raw = _raw_clips(store, "train"), _raw_clips(store, "validation")
    for batch in spy.waves["train"]:
        assert batch.shape[1] == 16000, "augmentations keep the clip length"
        assert torch.isfinite(batch).all()
        assert not any(_is_raw(w, train_raw) for w in batch), "every training clip is augmented (p=1)"
    assert all(_is_raw(w, val_raw) for b in spy.waves["val"] for w in b), "validation clips are never augmented"


@pytest.mark.parametrize("name", list_spec_augments())
def test_spectrogram_augmentation_reaches_training_only(store: Path, tmp_path: Path, name: str) -> None:
    spy, res = _run(store, tmp_path, f"task.spec_augment={{{name}: {{p: 1.0}}}}", "trainer.max_epochs=1")
    assert spy.spec_changed["train"] and all(spy.spec_changed["train"])
    assert spy.spec_changed["val"] and not any(spy.spec_changed["val"])


@pytest.mark.parametrize(
    ("method", "loss"),
    [(m, loss) for m in list_mix_methods() for loss in ("ce", "bce")],
)
def test_mixing_gives_soft_targets_to_the_configured_loss(store: Path, tmp_path: Path, method: str, loss: str) -> None:
    spy, res = _run(
        store, tmp_path, f"task.mix.methods={{{method}: 1.0}}", f"task.loss={loss}", "task.mix.epoch_mix=1",
        "trainer.max_epochs=2",
    )
    assert res.global_step == 8 and np.isfinite(res.val_metrics["accuracy"])
    by_epoch = {0: [], 1: []}
    for epoch, target in spy.targets["train"]:
        assert target.shape == (4, 4) and target.dtype == torch.float32
        torch.testing.assert_close(target.sum(1), torch.ones(4))
        by_epoch[epoch].append(target)
    one_hot = lambda t: bool(((t == 0) | (t == 1)).all())  # noqa: E731
    assert all(one_hot(t) for t in by_epoch[0]), "no mixing before task.mix.epoch_mix"
    assert any(not one_hot(t) for t in by_epoch[1]), "mixed (soft) targets from epoch_mix on"
    assert all(t.dtype == torch.int64 and t.ndim == 1 for _, t in spy.targets["val"]), "validation is not mixed"
    if method == "freqmix":  # a spectrogram method: mixes after the frontend
        assert any(spy.spec_changed["train"]) and not any(spy.spec_changed["val"])


def test_soft_target_losses() -> None:
    from audioclf.models import create_model

    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]])
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6]])
    model = create_model("cnn_lite", 3, channels=(4,))
    common: dict[str, Any] = dict(model_name="cnn_lite", model_settings={}, label_names=list("abc"), multi_label=False, clip_samples=16000)
    ce = ClassificationTask(model, **common, task=load_config(None, ["task.loss=ce", "task.label_smoothing=0.1"]).task)
    # by hand: targets smoothed to 0.9 t + 0.1 / 3, then sum_c t_c (logsumexp(row) - logit_c),
    # averaged over the two rows
    assert ce.loss_fn(logits, soft).item() == pytest.approx(1.6518284, abs=1e-6)
    bce = ClassificationTask(model, **common, task=load_config(None, ["task.loss=bce"]).task)
    # mean over the six cells of t log(1 + e^-x) + (1 - t) log(1 + e^x)
    assert bce.loss_fn(logits, soft).item() == pytest.approx(0.8746006, abs=1e-6)
    # unmixed single-label batches under BCE: one-hot targets (classes 0 and 2)
    assert bce.loss_fn(logits, torch.tensor([0, 2])).item() == pytest.approx(0.9246006, abs=1e-6)
