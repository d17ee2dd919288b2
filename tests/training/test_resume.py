"""A killed run resumes from its last checkpoint's step, never from scratch, with the
optimiser, scheduler, EMA, sampler, mixer and random states it had; resumed from an
epoch-end (or a mid-epoch) checkpoint it ends with the weights of an uninterrupted run,
its clips loaded in the training process or by a worker process."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch

from audioclf.config import load_config
from audioclf.training.trainer import load_resume_config, train
from tests.training.helpers import Kill, make_store

# every stateful part switched on: EMA, mixing, waveform and spectrogram augmentation,
# a per-step schedule with warm-up
STATEFUL = [
    "model.settings={channels: [8, 16]}", "trainer.progress_bar=false", "trainer.log_every_n_steps=1",
    "data.batch_size=4", "trainer.max_epochs=3", "seed=3", "task.ema_decay=0.9", "task.mix.methods={mixup: 1.0}",
    "task.spec_augment={time_masking: {p: 1.0, width: 5}}", "data.augment={gain: {p: 0.5}}",
    "optim.warmup_epochs=1",
]


class AtStart(L.Callback):
    """Records, when training (re)starts, the state the run starts from."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        opt = trainer.optimizers[0]
        self.step = trainer.global_step
        self.epoch = trainer.current_epoch
        # keyed by parameter index, as in the checkpoint
        self.optim_state = {k: {n: t.clone() for n, t in v.items()} for k, v in opt.state_dict()["state"].items()}
        self.lr = [g["lr"] for g in opt.param_groups]
        self.sched_epoch = trainer.lr_scheduler_configs[0].scheduler.last_epoch
        # Lightning's weight averaging holds the EMA (an AveragedModel of the task)
        self.ema = {k: v.clone() for k, v in pl_module.ema._average_model.state_dict().items()}
        self.sampler_epoch = trainer.train_dataloader.batch_sampler.epoch

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if not hasattr(self, "first_batch"):
            self.first_batch = batch[0].clone()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 4 classes x 4 training clips: 4 batches (steps) per epoch
    return make_store(tmp_path_factory.mktemp("resume") / "s.h5", classes=4, clips_per_class=6)


def _config(store: Path, out: Path, name: str, *extra: str):
    return load_config(None, [f"data.store={store}", f"output_dir={out}", f"name={name}", *STATEFUL, *extra])


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    """Every tensor a run's checkpoint holds: the EMA (``state_dict``), the trained weights
    (``current_model_state``) and the averaging count."""
    obj = torch.load(ckpt, map_location="cpu", weights_only=False)
    return {**obj["state_dict"], **{f"current.{k}": v for k, v in obj.get("current_model_state", {}).items()},
            **{f"averaging.{k}": v for k, v in obj.get("averaging_state", {}).items()}}


@pytest.fixture(scope="module")
def straight(store: Path, tmp_path_factory: pytest.TempPathFactory):
    """The uninterrupted 3-epoch run every resumed run is compared with (clips loaded in
    the training process: a run is the same whatever the worker count)."""
    return train(_config(store, tmp_path_factory.mktemp("straight"), "straight", "data.num_workers=0"))


@pytest.mark.parametrize(
    ("kill_at", "extra", "resumes_at"),
    [
        (8, [], (8, 2)),  # killed at the start of epoch 3: resumes from the epoch-2 checkpoint
        (7, ["trainer.checkpoint_every_n_steps=2"], (6, 1)),  # killed mid-epoch 2: resumes after its 2nd batch
    ],
    ids=["epoch-end", "mid-epoch"],
)
# one worker process: torch's multi-worker loader iterator starts its batch sampler twice,
# and the batches already trained on must be skipped in the pass it draws from
@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "1-worker"])
def test_killed_run_resumes_to_the_same_weights(store, straight, tmp_path, kill_at, extra, resumes_at, workers) -> None:
    config = _config(store, tmp_path, "killed", *extra, f"data.num_workers={workers}")
    with pytest.raises(RuntimeError, match="killed"):
        train(config, callbacks=[Kill(kill_at)])
    run_dir = next(tmp_path.glob("killed-*"))
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == resumes_at[0]

    start = AtStart()
    resumed = train(load_resume_config(run_dir), callbacks=[start])
    # continued from the checkpoint's step, not from scratch ...
    assert (start.step, start.epoch) == resumes_at
    assert resumed.run_dir == run_dir and resumed.global_step == straight.global_step == 12
    # ... with the optimiser, scheduler, EMA and sampler state the checkpoint held
    saved_opt = ckpt["optimizer_states"][0]
    assert len(start.optim_state) == len(saved_opt["state"]) > 0
    for k, v in saved_opt["state"].items():
        torch.testing.assert_close(start.optim_state[k]["exp_avg"], v["exp_avg"])
    assert start.lr == [g["lr"] for g in saved_opt["param_groups"]]
    assert start.sched_epoch == ckpt["lr_schedulers"][0]["last_epoch"] == resumes_at[0]
    # the checkpoint's state_dict holds the average, its averaging_state the update count
    saved_ema = {**{f"module.{k}": v for k, v in ckpt["state_dict"].items()}, **ckpt["averaging_state"]}
    assert start.ema.keys() == saved_ema.keys() and int(saved_ema["n_averaged"]) == resumes_at[0]
    for k, v in start.ema.items():
        torch.testing.assert_close(v, saved_ema[k], rtol=0, atol=0)
    assert start.sampler_epoch == resumes_at[1]
    # and it ends exactly where the uninterrupted run ended (model and EMA weights): the
    # same operations on the same numbers in the same order, bit for bit
    a, b = _weights(straight.last_checkpoint), _weights(resumed.last_checkpoint)
    assert a.keys() == b.keys() and any(k.startswith("current.model.") for k in a)
    for k in a:
        assert torch.equal(b[k], a[k]), k
    # metrics.csv keeps the rows logged before the crash, once each
    with (run_dir / "metrics.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) == 12


def test_resumed_run_does_not_restart_from_scratch_even_with_a_fresh_process_state(store, straight, tmp_path) -> None:
    """A resume that silently started over would see the first batch of epoch 1 again."""
    with pytest.raises(RuntimeError):
        train(_config(store, tmp_path, "k"), callbacks=[Kill(4)])
    torch.manual_seed(12345)  # whatever the new process's generators hold
    start = AtStart()
    train(load_resume_config(next(tmp_path.glob("k-*"))), callbacks=[start])
    fresh = AtStart()
    train(_config(store, tmp_path, "fresh", "trainer.max_epochs=1"), callbacks=[fresh])
    assert start.step == 4 and start.epoch == 1
    assert not torch.equal(start.first_batch, fresh.first_batch)


def test_resume_config_comes_from_the_run(store, tmp_path) -> None:
    res = train(_config(store, tmp_path, "r", "trainer.max_epochs=1"))
    config = load_resume_config(res.run_dir, ["trainer.max_epochs=2"])
    assert config.trainer.resume == str(res.run_dir / "checkpoints" / "last.ckpt")
    assert config.trainer.max_epochs == 2 and config.task.ema_decay == 0.9 and config.name == "r"
    more = train(config)
    assert more.global_step == 8 and more.run_dir == res.run_dir
    with pytest.raises(FileNotFoundError, match="trainer.resume: checkpoint not found"):
        load_resume_config(tmp_path / "nowhere")


def test_resume_from_a_file_that_is_not_a_run_checkpoint_names_it(store, tmp_path) -> None:
    published = tmp_path / "Cnn14_mAP=0.431.pth"
    torch.save({"model": {}}, published)
    with pytest.raises(ValueError, match=r"Cnn14_mAP=0.431.pth is not a training checkpoint of an audioclf run"):
        train(_config(store, tmp_path, "r", f"trainer.resume={published}"))
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage.ckpt: not a readable PyTorch checkpoint"):
        train(_config(store, tmp_path, "r", f"trainer.resume={tmp_path / 'garbage.ckpt'}"))
    assert not any(tmp_path.glob("r-*"))  # refused before any run directory was made


def _as_bundle_version_1(ckpt: Path) -> None:
    """Rewrite a run's checkpoint in the layout audioclf wrote before Lightning's weight
    averaging (bundle version 1): the EMA copy as the task's ``ema_model`` beside ``model``."""
    obj = torch.load(ckpt, map_location="cpu", weights_only=False)
    average = {f"ema_model.module.{k[len('model.'):]}": v for k, v in obj.pop("state_dict").items()}
    obj["state_dict"] = {**obj.pop("current_model_state"), **average,
                         **{f"ema_model.{k}": v for k, v in obj.pop("averaging_state").items()}}
    obj["audioclf"]["bundle_version"] = 1
    obj["callbacks"] = {k: v for k, v in obj["callbacks"].items() if "WeightAveraging" not in k}
    torch.save(obj, ckpt)


def test_a_checkpoint_of_the_older_ema_layout_predicts_and_resumes(store, straight, tmp_path) -> None:
    import shutil

    from audioclf.models.bundle import load_bundle_model

    new, old = tmp_path / "new", tmp_path / "old"
    shutil.copytree(straight.run_dir, new)
    shutil.copytree(straight.run_dir, old)
    _as_bundle_version_1(old / "checkpoints" / "last.ckpt")
    assert any(k.startswith("ema_model.module.") for k in _weights(old / "checkpoints" / "last.ckpt"))
    # inference reads the EMA weights of either layout
    ema = {k[len("model."):]: v for k, v in _weights(new / "checkpoints" / "last.ckpt").items() if k.startswith("model.")}
    for run in (new, old):
        model, info = load_bundle_model(run / "checkpoints" / "last.ckpt")
        assert info["weights"] == "ema"
        for k, v in model.state_dict().items():
            torch.testing.assert_close(v, ema[k], rtol=0, atol=0, msg=k)
    # and a run of the older layout resumes to the same weights as one of the new
    a = train(load_resume_config(new, ["trainer.max_epochs=4"]), test=False)
    b = train(load_resume_config(old, ["trainer.max_epochs=4"]), test=False)
    assert a.global_step == b.global_step == 16
    wa, wb = _weights(a.last_checkpoint), _weights(b.last_checkpoint)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=0, msg=k)
