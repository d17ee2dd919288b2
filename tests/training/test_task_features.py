"""Training features from config: optimiser groups, schedulers, EMA (evaluated, saved, and
used by Classifier), gradient accumulation, clipping, mixed precision, early stopping."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from audioclf.config import load_config
from audioclf.inference import Classifier
from audioclf.models import create_model
from audioclf.models.bundle import load_bundle_model
from audioclf.training.task import ClassificationTask, parameter_groups
from audioclf.training.trainer import train
from tests.training.helpers import make_store

BASE = ["model.settings={channels: [8, 16]}", "trainer.progress_bar=false", "data.batch_size=4", "trainer.max_epochs=1"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 4 classes x 4 training clips -> 4 batches of 4 per epoch
    return make_store(tmp_path_factory.mktemp("feat") / "s.h5", classes=4, clips_per_class=6)


def _run(store: Path, out: Path, *overrides: str, callbacks: list[L.Callback] | None = None):
    config = load_config(None, [f"data.store={store}", f"output_dir={out}", *BASE, *overrides])
    return train(config, callbacks=callbacks)


class LrLog(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


# --- optimiser ----------------------------------------------------------------------------


def test_parameter_groups_decay_layer_rates_and_frozen() -> None:
    model = create_model("cnn_lite", 3, channels=(4, 8))
    model.features[0][0].weight.requires_grad_(False)
    groups = parameter_groups(model, 0.05, {"features.": 0.1, "features.2.": 0.5})
    by_id = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    for name, p in named.items():
        if not p.requires_grad:
            assert id(p) not in by_id, f"frozen {name} must not be optimised"
            continue
        g = by_id[id(p)]
        # biases and norm weights (1-d) never decay; the longest prefix sets the rate
        assert g["weight_decay"] == (0.05 if p.ndim >= 2 else 0.0), name
        want = 0.5 if name.startswith("features.2.") else 0.1 if name.startswith("features.") else 1.0
        assert g["lr_scale"] == want, name
    with pytest.raises(ValueError, match="optim.layer_lr: no parameter name starts with 'nope.'"):
        parameter_groups(model, 0.0, {"nope.": 2.0})


@pytest.mark.parametrize(("name", "cls"), [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)])
def test_optimiser_from_config(name: str, cls: type) -> None:
    cfg = load_config(None, [f"optim.name={name}", "optim.betas=[0.8, 0.9]", "optim.amsgrad=true", "optim.scheduler=none",
                             "optim.lr=0.01", "optim.layer_lr={head.: 3.0}"])
    model = create_model("cnn_lite", 3, channels=(4,))
    task = ClassificationTask(model, model_name="cnn_lite", model_settings={}, label_names=list("abc"), multi_label=False,
                              clip_samples=16000, optim=cfg.optim)
    opt = task.configure_optimizers()
    assert type(opt) is cls
    if name != "sgd":
        assert opt.defaults["betas"] == (0.8, 0.9) and opt.defaults["amsgrad"] is True
    head = {id(model.head.weight), id(model.head.bias)}
    for g in opt.param_groups:
        is_head = {id(p) for p in g["params"]} <= head
        assert g["lr"] == pytest.approx(0.03 if is_head else 0.01)


@pytest.mark.parametrize(("name", "setting", "want"), [
    ("adamw", None, True), ("sgd", None, True), ("adamw", False, False), ("adam", True, True),
])
def test_optimiser_is_fused_by_default_and_on_request(name: str, setting: bool | None, want: bool) -> None:
    over = [f"optim.name={name}", "optim.scheduler=none"] + ([f"optim.fused={str(setting).lower()}"] if setting is not None else [])
    cfg = load_config(None, over)
    model = create_model("cnn_lite", 3, channels=(4,))
    task = ClassificationTask(model, model_name="cnn_lite", model_settings={}, label_names=list("abc"), multi_label=False,
                              clip_samples=16000, optim=cfg.optim)
    assert bool(task.configure_optimizers().defaults["fused"]) is want


def test_fused_step_is_torchs_update() -> None:
    # the fused kernel against torch's per-parameter loop: three steps of AdamW with weight
    # decay and amsgrad over the same gradients give the same weights
    cfg = load_config(None, ["optim.scheduler=none", "optim.amsgrad=true", "optim.weight_decay=0.1", "optim.lr=0.01"])
    torch.manual_seed(0)
    model = create_model("cnn_lite", 3, channels=(4,))
    plain = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
    start = [p.detach().clone() for p in plain]
    task = ClassificationTask(model, model_name="cnn_lite", model_settings={}, label_names=list("abc"), multi_label=False,
                              clip_samples=16000, optim=cfg.optim)
    fused = task.configure_optimizers()
    groups = [{"params": [plain[i] for i, p in enumerate(model.parameters()) for q in g["params"] if q is p],
               "weight_decay": g["weight_decay"]} for g in fused.param_groups]
    loop = torch.optim.AdamW(groups, lr=0.01, amsgrad=True, foreach=False)
    for step in range(3):
        for i, (p, q) in enumerate(zip(model.parameters(), plain, strict=True)):
            p.grad = torch.full_like(p, 0.1 * (i + 1) * (-1) ** step)
            q.grad = p.grad.clone()
        fused.step()
        loop.step()
    assert fused.defaults["fused"]
    for p, q, p0 in zip(model.parameters(), plain, start, strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), atol=1e-7, rtol=1e-6)
        assert not torch.equal(p.detach(), p0)  # the weights really moved


# --- schedulers ---------------------------------------------------------------------------


def test_cosine_with_warmup(store: Path, tmp_path: Path) -> None:
    log = LrLog()
    _run(store, tmp_path, "trainer.max_epochs=3", "optim.lr=0.01", "optim.min_lr=0.001", "optim.warmup_epochs=1", callbacks=[log])
    lrs = log.lrs  # 12 steps, the first 4 warming up
    assert len(lrs) == 12
    assert lrs[:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])
    assert lrs[4] == pytest.approx(0.01), "the decay starts from the peak"
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:], strict=False)), "cosine decay after warm-up"
    assert lrs[-1] > 0.001 and lrs[-1] == pytest.approx(0.001 + 0.009 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))


def test_onecycle(store: Path, tmp_path: Path) -> None:
    log = LrLog()
    _run(store, tmp_path, "trainer.max_epochs=5", "optim.lr=0.01", "optim.scheduler=onecycle", "optim.warmup_fraction=0.25",
         callbacks=[log])
    lrs = np.array(log.lrs)  # 20 steps, peak after a quarter
    assert len(lrs) == 20 and int(lrs.argmax()) == 4 and lrs.max() == pytest.approx(0.01)
    assert lrs[0] == pytest.approx(0.01 / 25) and lrs[-1] < 0.01 / 25


def test_plateau_follows_the_validation_metric(store: Path, tmp_path: Path) -> None:
    log = LrLog()
    # an EMA that hardly moves keeps validation accuracy flat: after the first epoch sets
    # the best score, the rate halves at the end of every epoch
    _run(store, tmp_path, "trainer.max_epochs=4", "optim.lr=1e-6", "optim.scheduler=plateau", "optim.plateau_patience=0",
         "task.ema_decay=0.999999", callbacks=[log])
    per_epoch = [log.lrs[i] for i in range(0, 16, 4)]
    assert per_epoch == pytest.approx([1e-6, 1e-6, 5e-7, 2.5e-7])
    with pytest.raises(ValueError, match="scheduler=plateau follows a validation metric"):
        _run(store, tmp_path, "optim.scheduler=plateau", "data.val_split=null")


# --- EMA --------------------------------------------------------------------------------


def test_ema_weights_are_evaluated_saved_and_used_by_classifier(store: Path, tmp_path: Path) -> None:
    res = _run(store, tmp_path, "trainer.max_epochs=2", "task.ema_decay=0.7", "optim.lr=0.01")
    ckpt = torch.load(res.best_checkpoint, map_location="cpu", weights_only=False)
    assert ckpt["audioclf"]["weights"] == "ema"
    # Lightning's weight averaging: state_dict holds the average, current_model_state the trained weights
    ema = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    raw = {k[len("model."):]: v for k, v in ckpt["current_model_state"].items() if k.startswith("model.")}
    assert ema.keys() == raw.keys()
    assert any(not torch.equal(ema[k], raw[k]) for k in ema), "EMA differs from the raw weights"
    model, _ = load_bundle_model(res.best_checkpoint)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ema[k], rtol=0, atol=0, msg=k)
    # Classifier predicts with the EMA weights, not the raw ones
    clf = Classifier.from_checkpoint(res.best_checkpoint)
    wave = np.random.default_rng(0).normal(0, 0.1, (2, 16000)).astype(np.float32)
    raw_model = create_model("cnn_lite", 4, channels=[8, 16]).eval()
    raw_model.load_state_dict(raw)
    ema_model = create_model("cnn_lite", 4, channels=[8, 16]).eval()
    ema_model.load_state_dict(ema)
    with torch.no_grad():
        x = torch.from_numpy(wave)
        np.testing.assert_allclose(clf.scores_batch(wave), ema_model(x).softmax(-1).numpy(), rtol=1e-5, atol=1e-6)
        assert not np.allclose(clf.scores_batch(wave), raw_model(x).softmax(-1).numpy(), atol=1e-4)


class ValidatedWeights(L.Callback):
    """The model's weights as the last validation batch saw them."""

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self.weights = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}


def test_validation_sees_the_ema_weights_and_training_goes_on_from_the_raw_ones(store: Path, tmp_path: Path) -> None:
    seen = ValidatedWeights()
    res = _run(store, tmp_path, "trainer.max_epochs=2", "task.ema_decay=0.7", "optim.lr=0.01", callbacks=[seen])
    # last.ckpt is written after the last validation: its average is what validation ran
    ckpt = torch.load(res.last_checkpoint, map_location="cpu", weights_only=False)
    ema = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    raw = {k[len("model."):]: v for k, v in ckpt["current_model_state"].items() if k.startswith("model.")}
    assert seen.weights.keys() == ema.keys()
    for k, v in seen.weights.items():
        torch.testing.assert_close(v, ema[k], rtol=0, atol=0, msg=k)
    assert any(not torch.equal(seen.weights[k], raw[k]) for k in raw), "validation did not run the raw weights"


class EmaSpy(L.Callback):
    def on_train_end(self, trainer, pl_module) -> None:
        self.n_averaged = int(pl_module.ema._average_model.n_averaged)
        self.decay = pl_module.ema.average.decay
        self.steps = trainer.global_step


def test_ema_once_per_optimiser_step_and_per_epoch_decay(store: Path, tmp_path: Path) -> None:
    spy = EmaSpy()
    # 4 batches per epoch, 2 per step: 2 steps per epoch
    _run(store, tmp_path, "trainer.max_epochs=2", "trainer.accumulate_grad_batches=2", "task.ema_decay=0.9",
         "task.ema_unit=epoch", callbacks=[spy])
    assert spy.steps == 4 and spy.n_averaged == 4
    assert spy.decay == pytest.approx(0.9 ** (1 / 2))


# --- accumulation, clipping, precision, early stopping ----------------------------------------


class GradSpy(L.Callback):
    """Gradients as the optimiser used them (clipping is done by then)."""

    def __init__(self) -> None:
        self.max_abs: list[float] = []
        self.norms: list[float] = []

    def on_before_zero_grad(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad for p in pl_module.model.parameters() if p.grad is not None]
        if grads:
            self.max_abs.append(max(float(g.abs().max()) for g in grads))
            self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


def test_gradient_accumulation_steps(store: Path, tmp_path: Path) -> None:
    res = _run(store, tmp_path, "trainer.max_epochs=2", "trainer.accumulate_grad_batches=2")
    assert res.global_step == 4  # 8 batches, 2 per optimiser step


@pytest.mark.parametrize("algorithm", ["value", "norm"])
def test_gradient_clipping(store: Path, tmp_path: Path, algorithm: str) -> None:
    free, clipped = GradSpy(), GradSpy()
    _run(store, tmp_path, "optim.lr=0.05", callbacks=[free])
    _run(store, tmp_path, "optim.lr=0.05", "trainer.gradient_clip_val=0.001", f"trainer.gradient_clip_algorithm={algorithm}",
         callbacks=[clipped])
    if algorithm == "value":
        assert max(free.max_abs) > 0.001 and max(clipped.max_abs) <= 0.001 + 1e-9
    else:
        assert max(free.norms) > 0.001 and max(clipped.norms) <= 0.001 * (1 + 1e-4)


def test_bf16_mixed_precision_on_cpu(store: Path, tmp_path: Path) -> None:
    dtypes: list[torch.dtype] = []

    class HeadDtype(L.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            pl_module.model.head.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))

    res = _run(store, tmp_path, "trainer.precision=bf16-mixed", "trainer.accelerator=cpu", "task.ema_decay=0.9",
               callbacks=[HeadDtype()])
    assert torch.bfloat16 in dtypes, "the forward ran under bf16 autocast"
    assert math.isfinite(res.val_metrics["accuracy"])
    model, _ = load_bundle_model(res.best_checkpoint)
    assert all(p.dtype == torch.float32 for p in model.parameters()), "weights stay float32"
    with pytest.raises(ValueError, match="16-mixed needs a GPU; on the CPU use bf16-mixed"):
        _run(store, tmp_path, "trainer.precision=16-mixed", "trainer.accelerator=cpu")


def test_early_stopping_with_patience(store: Path, tmp_path: Path) -> None:
    # an EMA that hardly moves: the validation score is the same every epoch
    res = _run(store, tmp_path, "trainer.max_epochs=10", "trainer.early_stopping_patience=2", "optim.lr=1e-9",
               "optim.scheduler=none", "task.ema_decay=0.999999")
    assert res.epochs == 3, "stopped after 2 epochs without improvement"
    with pytest.raises(ValueError, match="early_stopping_patience needs a validation set"):
        _run(store, tmp_path, "trainer.early_stopping_patience=2", "data.val_split=null")


def test_non_finite_loss_stops_training_naming_the_step_and_the_learning_rate(store, tmp_path) -> None:
    from audioclf.errors import TrainingError

    with pytest.raises(TrainingError, match=r"training loss is nan at step \d+ .*optim\.lr=1e\+30") as info:
        _run(store, tmp_path / "runs", "optim.lr=1e30", "trainer.max_epochs=3", "optim.scheduler=none")
    assert "learning rate" in str(info.value)
    # whatever was checkpointed before the step holds finite weights only: never a NaN model as best
    for ckpt in (tmp_path / "runs").glob("*/checkpoints/*.ckpt"):
        weights = torch.load(ckpt, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point()), ckpt


def test_on_an_accelerator_the_finite_loss_flag_is_read_once_per_logging_interval(monkeypatch) -> None:
    # no per-step host sync: the flags of 3 steps are gathered and read at the third one
    from audioclf.errors import TrainingError

    model = create_model("cnn_lite", 3, channels=(4,))
    task = ClassificationTask(model, model_name="cnn_lite", model_settings={}, label_names=list("abc"), multi_label=False,
                              clip_samples=16000)
    monkeypatch.setattr(task, "_finite_check_every", lambda device: 3)
    reads = []
    real_bool = torch.Tensor.__bool__
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda t: reads.append(1) or real_bool(t))
    step = [0]
    monkeypatch.setattr(ClassificationTask, "global_step", property(lambda self: step[0]))
    task._check_finite_loss(torch.tensor(1.0), 0)  # step 0: gathered
    step[0] = 1
    task._check_finite_loss(torch.tensor(float("nan")), 1)  # step 1: gathered, not read yet
    assert reads == []
    step[0] = 2
    with pytest.raises(TrainingError, match=r"training loss became non-finite by step 2 .*checked every 3 steps"):
        task._check_finite_loss(torch.tensor(2.0), 2)  # step 2: read, and the NaN of step 1 is found
    assert len(reads) == 1


def test_weights_that_overflow_at_the_last_step_are_never_checkpointed(store, tmp_path) -> None:
    from audioclf.errors import TrainingError

    class Overflow(L.Callback):
        """Makes a weight infinite after the last step of the epoch, before its checkpoint."""

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if batch_idx == trainer.num_training_batches - 1:
                with torch.no_grad():
                    next(pl_module.model.parameters()).fill_(float("inf"))

    with pytest.raises(TrainingError, match="became non-finite"):
        _run(store, tmp_path / "runs", callbacks=[Overflow()])
    assert not list((tmp_path / "runs").glob("*/checkpoints/*.ckpt"))


def test_non_finite_loss_is_exit_2_from_the_cli(store, tmp_path, capsys) -> None:
    from audioclf.cli import main

    code = main(["train", f"data.store={store}", f"output_dir={tmp_path}", *BASE, "optim.lr=1e30", "trainer.max_epochs=3",
                 "optim.scheduler=none"])
    assert code == 2
    assert "optim.lr=1e+30" in capsys.readouterr().err
