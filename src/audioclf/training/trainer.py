"""Build and run training from a ``Config``: store -> loaders -> task -> Lightning Trainer.

``train(config)`` creates ``runs/<name>-<time>/`` with the resolved ``config.yaml``,
``checkpoints/best.ckpt`` and ``last.ckpt`` (audioclf bundles), ``metrics.csv`` (per-epoch
figures from Lightning's CSV logger) and, when the store has a test split or fold,
``metrics.json`` with the best checkpoint's test figures.

Resuming (``trainer.resume=<run dir or checkpoint>``) continues in the same run directory
from the checkpoint's step with the optimiser, scheduler, EMA weights, sampler position,
mixer and global random states restored, so a run resumed from an epoch-end checkpoint
ends with the same weights as one that never stopped.

Several processes (``trainer.devices``, ``trainer.num_nodes``, ``trainer.strategy=ddp``,
or a ``torchrun``/``srun`` launch) each run ``train``: they share out the data through
the samplers of :mod:`audioclf.data.sampling`, compute the metrics on all predictions
(:mod:`audioclf.training.metrics`), and only rank 0 writes the run directory
(:mod:`audioclf.training.distributed`). See docs/scaling.md.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from audioclf.config import Config, flatten_config, save_config
from audioclf.data.dataset import ClipDataset, default_num_workers, protocol_indices
from audioclf.data.sampling import (
    BalancedSampler,
    EpochShuffleSampler,
    ShardBatchSampler,
    ShardSampler,
)
from audioclf.data.store import Store
from audioclf.errors import CheckpointError, ConfigError
from audioclf.models import create_model
from audioclf.training.distributed import (
    check_strategy,
    launch_rank_is_zero,
    pending_run_dir,
    shared_run_dir_callback,
)
from audioclf.training.loader import TrainLoader, _LoaderProgress, _SkippingSampler
from audioclf.training.metrics import monitor_metric
from audioclf.training.plugins import build_loggers, import_callbacks
from audioclf.training.task import ClassificationTask

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    val_metrics: dict[str, Any] = field(default_factory=dict)
    test_metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    global_step: int = 0
    epochs: int = 0
    rank: int = 0  # global rank of the process that returned this (only rank 0 writes)


def make_run_dir(config: Config, root: str | Path | None = None) -> Path:
    base = Path(root or config.output_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = base / f"{config.name}-{stamp}"
    n = 1
    while run_dir.exists():  # two runs in the same second
        n += 1
        run_dir = base / f"{config.name}-{stamp}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir


# --- the model ----------------------------------------------------------------------------


def build_model(config: Config, store: Store, load_pretrained: bool = True) -> torch.nn.Module:
    """The model named in the config, for the store's classes, checked against its rate,
    with ``model.pretrained`` weights loaded (a head of another class count replaced) and
    ``model.freeze`` applied."""
    m = config.model
    model = create_model(m.name, store.num_classes, **m.settings)
    if int(model.sample_rate) != store.sample_rate:
        raise ConfigError(
            f"store {store.path} is at {store.sample_rate} Hz but model {m.name!r} expects {model.sample_rate} Hz: "
            f"prepare the data with --sample-rate {model.sample_rate}, or set model.settings.sample_rate={store.sample_rate} "
            f"if the model accepts it"
        )
    if m.pretrained and load_pretrained:
        load_initial_weights(model, m.pretrained, name=m.name)
    freeze_parameters(model, m.freeze)
    return model


def resolve_pretrained(spec: str) -> Path:
    """``model.pretrained`` -> the file or directory to load.

    A glob (``runs/us8k-pretrain-*``) picks the newest match (run directories sort by
    time stamp); an audioclf run directory means its best checkpoint (else its last).
    Anything else is taken as given (a published file, a Hugging Face directory).
    """
    path = Path(spec)
    if glob.has_magic(spec):
        # files, or run directories (a CV directory of the same name holds no checkpoints/)
        matches = sorted(m for m in glob.glob(spec) if Path(m).is_file() or (Path(m) / "checkpoints").is_dir())
        if not matches:
            raise FileNotFoundError(f"model.pretrained: nothing matches {spec!r} (train the pretraining recipe first?)")
        path = Path(matches[-1])
        log.info("model.pretrained: %s matches %d run(s); using the newest, %s", spec, len(matches), path)
    if path.is_dir() and (path / "checkpoints").is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        raise FileNotFoundError(f"model.pretrained: run directory {path} has no checkpoints/best.ckpt or last.ckpt")
    if not path.exists():
        raise FileNotFoundError(f"model.pretrained: not found: {path}")
    return path


def load_initial_weights(model: torch.nn.Module, spec: str, name: str | None = None) -> Path | str:
    """Start ``model`` from ``spec`` (see :func:`resolve_pretrained`) through the one loading
    path of ``create_model(..., pretrained=...)``: an audioclf checkpoint gives the weights it
    evaluates (the EMA copy when the run kept one), a published one goes through the model's
    own importer, and a head for another class count stays freshly initialised (logged).

    A catalog name (``panns-cnn14``) or Hub id (``hf:ORG/REPO``) is resolved first
    (downloaded once, see :mod:`audioclf.models.pretrained`, as model ``name``), and its
    weights are loaded the same way."""
    from audioclf.models.checkpoints import load_pretrained, load_state_into
    from audioclf.models.pretrained import is_model_source_name, resolve_model

    if is_model_source_name(spec):
        source_model, _ = resolve_model(spec, model=name)
        load_state_into(model, source_model.state_dict(), source=f"model.pretrained={spec}")
        log.info("model.pretrained: loaded %s", spec)
        return spec
    path = resolve_pretrained(spec)
    load_pretrained(model, path)
    log.info("model.pretrained: loaded %s", path)
    return path


def freeze_parameters(model: torch.nn.Module, prefixes: list[str]) -> int:
    """Set ``requires_grad=False`` on parameters under the given name prefixes; returns the count."""
    if not prefixes:
        return 0
    names = [n for n, _ in model.named_parameters()]
    for p in prefixes:
        if not any(n.startswith(p) for n in names):
            raise ConfigError(f"model.freeze: no parameter starts with {p!r}")
    count = 0
    for n, p in model.named_parameters():
        if n.startswith(tuple(prefixes)):
            p.requires_grad_(False)
            count += p.numel()
    log.info("froze %d parameters under %s", count, prefixes)
    return count


# --- data ---------------------------------------------------------------------------------


def loader_options(config: Config) -> dict[str, Any]:
    """DataLoader settings from ``data`` and the accelerator: ``num_workers`` (``auto``: from
    the machine's cores), workers kept alive across epochs (no re-fork and store re-open per
    epoch), ``prefetch_factor`` batches ahead per worker, and pinned host memory when batches
    go to a GPU (so the copy can overlap compute)."""
    d = config.data
    workers = default_num_workers() if d.num_workers == "auto" else int(d.num_workers)
    accel = config.trainer.accelerator
    on_gpu = accel in ("gpu", "cuda") or (accel == "auto" and torch.cuda.is_available())
    kw: dict[str, Any] = {"num_workers": workers, "pin_memory": on_gpu, "persistent_workers": workers > 0}
    if workers > 0:
        kw["prefetch_factor"] = d.prefetch_factor
    return kw


def build_loaders(config: Config, store: Store, clip_samples: int) -> dict[str, DataLoader | None]:
    d = config.data
    roles = protocol_indices(
        store,
        train_split=d.train_split,
        val_split=d.val_split,
        test_split=d.test_split,
        fold=d.fold,
        val_fold=d.val_fold,
        val_fraction=d.val_fraction,
        seed=config.seed,
    )
    if roles["train"].size == 0:
        raise ConfigError(f"no training clips in {store.path} for this protocol (data.train_split / data.fold)")
    from audioclf.data.splits import coverage_warnings

    for message in coverage_warnings(store.targets, store.label_names, roles, where=str(store.path)):
        log.warning(message)
    augment = None
    if d.augment:
        from audioclf.data.augment import build_waveform_augment

        augment = build_waveform_augment(dict(d.augment), store.sample_rate)
    loader_kw = loader_options(config)
    train_ds = ClipDataset(store, roles["train"], clip_samples, train=True, augment=augment, seed=config.seed)
    # Distributed-aware samplers of our own (Trainer(use_distributed_sampler=False)): every
    # rank draws the same epoch order and takes its share of it, training batches laid out
    # so every rank runs the same number of steps, evaluation shards without padding.
    sampler: EpochShuffleSampler | BalancedSampler
    if d.sampler == "balanced":
        sampler = BalancedSampler(store.target_matrix()[roles["train"]], seed=config.seed)
    else:
        sampler = EpochShuffleSampler(len(train_ds), seed=config.seed)
    # Own generators, so that making an iterator (which draws worker seeds) never draws
    # from torch's global generator: training randomness then does not depend on how
    # often validation ran, and a resumed run draws what an uninterrupted one would.
    def generator() -> torch.Generator:
        return torch.Generator().manual_seed(config.seed)

    loaders: dict[str, DataLoader | None] = {
        "train": TrainLoader(
            train_ds, batch_sampler=_SkippingSampler(ShardBatchSampler(sampler, d.batch_size)), generator=generator(),
            **loader_kw,
        )
    }
    eval_bs = d.eval_batch_size or d.batch_size
    for role in ("val", "test"):
        idx = roles[role]
        # the test loader runs once: workers kept alive for it would only hold memory
        kw = loader_kw if role == "val" else {**loader_kw, "persistent_workers": False}
        loaders[role] = (
            DataLoader(ClipDataset(store, idx, clip_samples), batch_size=eval_bs, sampler=ShardSampler(idx.size),
                       generator=generator(), **kw)
            if idx.size
            else None
        )
    log.info("clips: train %d, val %d, test %d", roles["train"].size, roles["val"].size, roles["test"].size)
    return loaders


# --- training -----------------------------------------------------------------------------


def _check_precision(config: Config) -> None:
    """fp16 autocast is a GPU feature; say so before Lightning fails obscurely."""
    t = config.trainer
    on_cpu = t.accelerator == "cpu" or (t.accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and t.precision == "16-mixed":
        raise ConfigError("trainer.precision=16-mixed needs a GPU; on the CPU use bf16-mixed (or 32)")


def _checkpoint_callbacks(config: Config, ckpt_dir: Path, monitor: str | None, mode: str) -> list[L.Callback]:
    """``best.ckpt`` (by the monitored validation metric; without validation, the latest)
    and ``last.ckpt`` at every epoch end and, with ``checkpoint_every_n_steps``, also every
    N optimiser steps. ``last.ckpt`` has writers of its own because Lightning's
    ``save_last`` only writes when a best checkpoint was written in the same step."""

    def writer(cls: type[L.pytorch.callbacks.ModelCheckpoint], name: str, monitor: str | None, **kw: Any) -> L.Callback:
        return cls(
            dirpath=ckpt_dir, filename=name, monitor=monitor, mode=mode, save_top_k=1,
            auto_insert_metric_name=False, enable_version_counter=False, **kw,
        )

    cbs = [writer(L.pytorch.callbacks.ModelCheckpoint, "best", monitor), writer(_LastCheckpoint, "last", None)]
    if config.trainer.checkpoint_every_n_steps:
        cbs.append(writer(_LastCheckpoint, "last", None, every_n_train_steps=config.trainer.checkpoint_every_n_steps))
    return cbs


class _LastCheckpoint(L.pytorch.callbacks.ModelCheckpoint):
    """Writes ``last.ckpt``. A class of its own so that its state key (which Lightning
    derives from the class name and the monitor) differs from the best-checkpoint writer's
    when neither monitors a metric."""


def speed_up_model(model: torch.nn.Module, *, compile: bool = False,
                   channels_last: bool | Literal["auto"] = False) -> torch.nn.Module:
    """In place, parameter names unchanged (checkpoints stay loadable everywhere):
    ``channels_last`` stores 4-D convolution weights NHWC, so 2-D CNNs run their
    convolutions channels-last (GPUs' tensor cores and oneDNN prefer it; 1-D models are not
    affected); ``"auto"`` does so where the model says it prefers it (a measured property:
    oneDNN's NHWC kernels make cnn_lite 1.3x faster and vgg_like or blocknet slower on a
    CPU; docs/training.md). ``compile`` routes ``model(...)`` through ``torch.compile`` (the
    first steps pay the compilation; on the CPU it needs a C++ compiler)."""
    if channels_last == "auto":
        channels_last = bool(getattr(model, "prefers_channels_last", False))
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile:
        if not torch.cuda.is_available():
            log.warning("trainer.compile on the CPU: with torch %s the compiled backward pass gave gradients that "
                        "differ from eager ones below the head (tests/training/test_speed_options.py); compare "
                        "a short run with and without it before relying on it", torch.__version__)
        model.compile()  # nn.Module.compile: the module keeps its state_dict keys
    return model


class _EpochBar(L.pytorch.callbacks.RichProgressBar):
    """Lightning's rich bar counting epochs from 1 to max_epochs ("Epoch 2/2" on the last
    of two), not from 0 to max_epochs - 1."""

    def _get_train_description(self, current_epoch: int) -> str:
        text = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
            text += f"/{self.trainer.max_epochs}"
        return f"{text:{len(self.validation_description)}}"  # padded like Lightning's, to avoid flicker


@contextmanager
def _known_warnings_silenced() -> Iterator[None]:
    """Silence the Lightning warnings audioclf knows to be harmless here, for the fit only.

    "smaller than the logging interval": an epoch with fewer batches than
    log_every_n_steps logs no per-step row, but train/loss is also logged per epoch, so
    metrics.csv, the curves and the report lose nothing.
    """
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than the logging interval",
                                category=PossibleUserWarning)
        yield


def train(
    config: Config, run_dir: str | Path | None = None, callbacks: list[L.Callback] | None = None, *, test: bool = True
) -> RunResult:
    """Train as configured; returns where everything went and the final figures.

    Everything is built here from the config and nothing else: calling ``train`` twice
    with the same config gives two independent runs from the same initial weights.
    ``test=False`` never reads the test split or fold (hyperparameter search).
    """
    t0 = time.time()
    if not config.data.store:
        raise ConfigError("data.store is not set: point it at a prepared store (audioclf prepare ...)")
    if config.recipe == "auto":
        raise ConfigError("recipe=auto is resolved when the config is loaded: load it with "
                         "audioclf.training.defaults.load_train_config")
    _check_precision(config)
    check_strategy(config.trainer.strategy)
    if config.trainer.strategy.startswith("fsdp") and config.task.ema_decay:
        raise ConfigError("task.ema_decay keeps a full copy of the weights, which FSDP shards: set task.ema_decay=null "
                         "with trainer.strategy=fsdp")
    resume_dir, ckpt_path, resume_step = resume_target(config.trainer.resume)
    store = Store(config.data.store)
    L.seed_everything(config.seed, workers=True, verbose=False)
    # a resumed run takes its weights from the checkpoint: model.pretrained is not needed
    model = build_model(config, store, load_pretrained=ckpt_path is None)
    clip_samples = int(round(config.data.clip_seconds * store.sample_rate)) if config.data.clip_seconds else int(model.clip_samples)
    loaders = build_loaders(config, store, clip_samples)
    if not test:
        loaders["test"] = None
    t = config.trainer
    has_val = loaders["val"] is not None
    monitor = monitor_metric(store.multi_label) if has_val else None
    if t.early_stopping_patience and not has_val:
        raise ConfigError("trainer.early_stopping_patience needs a validation set (data.val_split, data.val_fold or data.val_fraction)")
    if config.optim.scheduler == "plateau" and not has_val:
        raise ConfigError("optim.scheduler=plateau follows a validation metric: set a validation split, or use cosine/onecycle")
    # Only now, with the config checked, does the run directory appear (or change), and
    # only in rank 0: the other ranks learn its name when the process group is up.
    writer = launch_rank_is_zero()
    if writer:
        run_dir = Path(run_dir) if run_dir else resume_dir or make_run_dir(config)
        run_dir.mkdir(parents=True, exist_ok=True)
        if ckpt_path:
            _warn_if_config_changed(config, run_dir)
        save_config(config, run_dir / "config.yaml")
    else:
        run_dir = Path(run_dir) if run_dir else resume_dir or pending_run_dir(config.output_dir, config.name)
    shared_dir = shared_run_dir_callback(run_dir)
    task = ClassificationTask(
        model,
        model_name=config.model.name,
        model_settings=config.model.settings,
        label_names=store.label_names,
        multi_label=store.multi_label,
        clip_samples=clip_samples,
        task=config.task,
        optim=config.optim,
        config=config.to_dict(),
        monitor=monitor,
        monitor_mode="max",
        activation_checkpointing=t.activation_checkpointing,
    )
    speed_up_model(model, compile=t.compile, channels_last=t.channels_last)
    ckpt_dir = run_dir / "checkpoints"
    checkpoint_cbs = _checkpoint_callbacks(config, ckpt_dir, monitor, "max")
    cbs: list[L.Callback] = [shared_dir, *checkpoint_cbs, _LoaderProgress(loaders["train"]), *(callbacks or []),
                             *import_callbacks(t.callbacks)]
    if t.progress_bar:
        cbs.append(_EpochBar())
    if t.early_stopping_patience:
        cbs.append(L.pytorch.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=t.early_stopping_patience))
    trainer = L.Trainer(
        default_root_dir=run_dir,
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        # our samplers split the data across ranks themselves (data/sampling.py):
        # Lightning's DistributedSampler would pad the evaluation shards with repeats
        use_distributed_sampler=False,
        sync_batchnorm=t.sync_batchnorm,
        precision=t.precision,
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val,
        gradient_clip_algorithm=t.gradient_clip_algorithm,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
        logger=build_loggers(t.loggers, run_dir, config.name),
        callbacks=cbs,
        num_sanity_val_steps=0,
    )
    earlier_metrics: list[dict[str, str]] = []
    if ckpt_path and writer:
        log.info("resuming %s from %s", run_dir, ckpt_path)
        # Lightning's CSV logger starts metrics.csv afresh: keep the rows logged before the
        # checkpoint's step and put them back in front of the new ones afterwards
        earlier_metrics = [r for r in _read_csv(run_dir / "metrics.csv") if _row_step(r) < resume_step]
    with _known_warnings_silenced():
        _fit(trainer, task, loaders, ckpt_path)
    run_dir = shared_dir.run_dir  # rank 0's, on every rank
    if earlier_metrics and trainer.is_global_zero:
        _write_csv(run_dir / "metrics.csv", earlier_metrics + _read_csv(run_dir / "metrics.csv"))
    best_cb = checkpoint_cbs[0]
    best = Path(best_cb.best_model_path) if best_cb.best_model_path else None
    last = run_dir / "checkpoints" / "last.ckpt"
    result = RunResult(
        run_dir, best, last if last.exists() else None, dict(task.last_val_metrics),
        global_step=int(trainer.global_step), epochs=int(trainer.current_epoch), rank=int(trainer.global_rank),
    )
    if loaders["test"] is not None and best is not None:
        # The best checkpoint scored by every rank on its shard of the test set, the
        # metrics computed once on all predictions (torchmetrics gathers them); on the
        # device it trained on: AudioSet's eval set is 20k clips.
        _test(trainer, task, loaders["test"], str(best))
        result.test_metrics = dict(task.last_test_metrics)
        if trainer.is_global_zero:
            (run_dir / "metrics.json").write_text(
                json.dumps({"checkpoint": str(best), "split": "test", **result.test_metrics}, indent=2)
            )
    result.seconds = time.time() - t0
    return result


def _fit(trainer: L.Trainer, task: ClassificationTask, loaders: dict[str, DataLoader | None], ckpt_path: str | None) -> None:
    """``trainer.fit`` with a resumed checkpoint read as data, and Ctrl-C kept a
    ``KeyboardInterrupt``: Lightning catches it, shuts down and calls ``exit(1)``; the
    run directory (``last.ckpt`` of the last finished epoch or step) stays resumable."""
    from audioclf.models.checkpoints import safe_globals

    try:
        with torch.serialization.safe_globals(safe_globals()):
            trainer.fit(
                task, train_dataloaders=loaders["train"], val_dataloaders=loaders["val"], ckpt_path=ckpt_path,
                weights_only=True,
            )
    except SystemExit as err:
        if trainer.interrupted:
            raise KeyboardInterrupt from err
        raise


def _test(trainer: L.Trainer, task: ClassificationTask, loader: DataLoader, ckpt_path: str) -> None:
    """``trainer.test`` of ``ckpt_path`` (read as data); figures land in ``task.last_test_metrics``."""
    from audioclf.models.checkpoints import safe_globals

    with torch.serialization.safe_globals(safe_globals()):
        trainer.test(task, dataloaders=loader, ckpt_path=ckpt_path, weights_only=True, verbose=False)


def resume_target(resume: str | None) -> tuple[Path | None, str | None, int]:
    """``trainer.resume`` (a run directory or a checkpoint in one) -> (run dir, checkpoint,
    its global step).

    A resumed run continues in its own run directory, from ``checkpoints/last.ckpt``
    unless a specific checkpoint is named. The file is checked here, before any work, so a
    wrong one is an error that names it rather than a failure inside Lightning.
    """
    if resume is None:
        return None, None, 0
    from audioclf.models.checkpoints import read_checkpoint_file

    path = Path(resume)
    ckpt = path / "checkpoints" / "last.ckpt" if path.is_dir() else path
    if not ckpt.is_file():
        raise FileNotFoundError(f"trainer.resume: checkpoint not found: {ckpt}")
    obj = read_checkpoint_file(ckpt)
    if not isinstance(obj, dict) or "audioclf" not in obj or "global_step" not in obj:
        raise CheckpointError(f"trainer.resume: {ckpt} is not a training checkpoint of an audioclf run (last.ckpt or best.ckpt)")
    return ckpt.parent.parent, str(ckpt), int(obj["global_step"])


def load_resume_config(run: str | Path, overrides: list[str] | None = None) -> Config:
    """The config to resume ``run`` (a run directory or a checkpoint in one): the run's own
    saved ``config.yaml``, with ``trainer.resume`` pointing at it and ``overrides`` applied
    (e.g. ``trainer.max_epochs=...`` to train longer)."""
    from audioclf.config import load_config

    run_dir, ckpt, _ = resume_target(str(run))
    assert run_dir is not None and ckpt is not None
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise FileNotFoundError(f"{run_dir} has no config.yaml: not an audioclf run directory")
    return load_config(saved, [*(overrides or []), f"trainer.resume={ckpt}"])


def _warn_if_config_changed(config: Config, run_dir: Path) -> None:
    """A resumed run should be the same experiment: name what differs from its saved config."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    import yaml

    before = flatten_config(yaml.safe_load(saved.read_text()) or {})
    now = flatten_config(config.to_dict())
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k) and k != "trainer.resume")
    if changed:
        log.warning("resuming %s with settings that differ from its config.yaml: %s", run_dir, ", ".join(changed))


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _row_step(row: dict[str, str]) -> float:
    try:
        return float(row.get("step") or "inf")
    except ValueError:
        return float("inf")


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    """Rows with possibly different keys -> one CSV with the union of the columns."""
    columns: dict[str, None] = {}
    for r in rows:
        columns.update(dict.fromkeys(r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), restval="")
        w.writeheader()
        w.writerows(rows)
