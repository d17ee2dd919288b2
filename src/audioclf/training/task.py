"""``ClassificationTask``: the one LightningModule for single- and multi-label training.

It owns what happens to a batch on the device, in the order of ``training_step``:
label mixing of waveforms, the model's frontend, spectrogram mixing and masking, the
model's features and head, the loss; then optional EMA weights, the metrics, and the
optimiser/scheduler. The training loop
(precision, accumulation, clipping, devices, checkpointing) is Lightning's.
Its checkpoints are audioclf bundles: the extra ``"audioclf"`` entry holds everything
inference needs to rebuild the model without the config or the store. They also hold
what an exact resume needs beyond Lightning's own state: the mixer's and the global
random generators' states (the training loader's position is saved by Lightning, see
``loader.TrainLoader``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import types
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import WeightAveraging
from torch import nn
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from audioclf.config import OptimConfig, TaskConfig
from audioclf.errors import ConfigError, TrainingError
from audioclf.models.bundle import EMA_MODEL_PREFIX, TASK_MODEL_PREFIX, bundle_info, write_bundle
from audioclf.training.metrics import build_metrics, metric_values, monitor_metric

log = logging.getLogger(__name__)


class EmaAverage:
    """``multi_avg_fn`` for :class:`torch.optim.swa_utils.AveragedModel` with a decay that
    may change during training (a per-epoch decay spread over a number of steps known only
    once the data loader exists). ``ema = decay * ema + (1 - decay) * current``; integer
    buffers (batch-norm step counters) are copied, as averaging a count means nothing."""

    def __init__(self, decay: float) -> None:
        self.decay = float(decay)

    def __call__(self, ema: list[torch.Tensor], current: list[torch.Tensor], num_averaged: Any) -> None:
        if ema[0].is_floating_point() or ema[0].is_complex():
            torch._foreach_lerp_(ema, current, 1.0 - self.decay)
        else:
            for e, c in zip(ema, current, strict=True):
                e.copy_(c)


class EmaWeightAveraging(WeightAveraging):
    """Lightning's weight averaging with :class:`EmaAverage`: updated after every optimiser
    step, ``decay`` per step or per epoch (``unit``; spread over the epoch's steps)."""

    def __init__(self, decay: float, unit: str = "step") -> None:
        self.average = EmaAverage(decay)
        self.base_decay, self.unit = float(decay), unit
        super().__init__(use_buffers=True, multi_avg_fn=self.average)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # the average lives where training runs (this rank's device): Lightning calls setup
        # before it moves the module there, and would otherwise keep the copy on the CPU
        # (a copy of every weight to the host and a CPU update after each step)
        self._device = trainer.strategy.root_device
        super().setup(trainer, pl_module, stage)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # also runs when a run resumes mid-epoch, where Lightning skips on_train_epoch_start
        if self.unit != "epoch":
            return
        batches = trainer.num_training_batches
        if not math.isfinite(batches) or batches <= 0:
            raise ConfigError("task.ema_unit=epoch needs a training loader of known length")
        steps = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
        self.average.decay = self.base_decay ** (1.0 / steps)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # testing a checkpoint tests its state_dict (the averaged weights); the parent would
        # load the raw weights back into the module
        if trainer.state.fn == "fit":
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


class ClassificationTask(L.LightningModule):
    """Wraps ``model`` (waveform ``(B, S)`` -> logits ``(B, C)``) for training.

    Batches are ``(waveform (B, S), target)`` with target int64 ``(B,)`` (single-label) or
    float ``(B, C)`` multi-hot (multi-label).

    ``monitor``/``monitor_mode``: the metric that picks checkpoints and drives the
    ReduceLROnPlateau scheduler (default: validation accuracy or mAP, maximised).
    ``activation_checkpointing`` recomputes the model's main blocks in the backward pass
    instead of keeping their activations (see :func:`enable_activation_checkpointing`).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        model_name: str,
        model_settings: dict[str, Any],
        label_names: list[str],
        multi_label: bool,
        clip_samples: int,
        task: TaskConfig | None = None,
        optim: OptimConfig | None = None,
        config: dict[str, Any] | None = None,
        monitor: str | None = None,
        monitor_mode: str = "max",
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.model_name = model_name
        self.model_settings = dict(model_settings)
        self.label_names = list(label_names)
        self.multi_label = multi_label
        self.clip_samples = clip_samples
        self.task_cfg = task or TaskConfig()
        self.optim_cfg = optim or OptimConfig()
        self.config = config or {}
        self.monitor = monitor or monitor_metric(multi_label)
        self.monitor_mode = monitor_mode
        self.loss_kind = self.task_cfg.loss if self.task_cfg.loss != "auto" else ("bce" if multi_label else "ce")
        if multi_label and self.loss_kind == "ce":
            raise ConfigError("task.loss=ce cannot train a multi-label dataset; use bce")
        self.mixer = self._build_mixer()
        self.spec_augment = self._build_spec_augment()
        # EMA: Lightning's weight-averaging callback (configure_callbacks), which swaps the
        # averaged weights in for validation and writes them as the checkpoint's state_dict
        self.ema: EmaWeightAveraging | None = (
            EmaWeightAveraging(self.task_cfg.ema_decay, self.task_cfg.ema_unit) if self.task_cfg.ema_decay else None
        )
        # after the EMA copy, so the copy keeps the plain forward (it is never trained)
        self.checkpointed_blocks: list[str] = enable_activation_checkpointing(model) if activation_checkpointing else []
        # torchmetrics objects (submodules, so they follow the model to its device; their
        # states are not in the state dict): under DDP computed on all ranks' predictions
        self.val_metrics = build_metrics(len(self.label_names), multi_label)
        self.test_metrics = build_metrics(len(self.label_names), multi_label)
        self.val_loss = _mean_metric()
        self._train_loss_sum = 0.0
        self._train_batches = 0
        self._finite_since: torch.Tensor | None = None
        self.last_val_metrics: dict[str, Any] = {}
        self.last_test_metrics: dict[str, Any] = {}

    # -- set-up -----------------------------------------------------------------------
    def _build_mixer(self) -> Any:
        mix = self.task_cfg.mix
        if not mix.methods:
            return None
        from audioclf.training.mixing import BatchMixer

        seed = int(self.config.get("seed", 0)) if self.config else 0
        return BatchMixer(dict(mix.methods), alpha=mix.alpha, mix_ratio=mix.mix_ratio, epoch_mix=mix.epoch_mix, seed=seed)

    def _build_spec_augment(self) -> nn.Module | None:
        """Spectrogram-domain work needs a frontend that makes a spectrogram: masks
        (``task.spec_augment``) and mixing methods defined on spectrograms (freqmix)."""
        spec = self.task_cfg.spec_augment
        needs_spec_mix = self.mixer is not None and self.mixer.needs_spectrogram
        if (spec or needs_spec_mix) and isinstance(getattr(self.model, "frontend", None), nn.Identity):
            what = "task.spec_augment" if spec else "task.mix methods on spectrograms (freqmix)"
            raise ConfigError(f"{what} need a spectrogram model; {self.model_name} reads the waveform (no frontend)")
        if not spec:
            return None
        from audioclf.training.spec_augment import build_spec_augment

        return build_spec_augment(dict(spec))

    # -- forward and loss ---------------------------------------------------------------
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.model(waveform)

    def _soft_targets(self, target: torch.Tensor) -> torch.Tensor:
        if self.multi_label:
            return target.float()
        return F.one_hot(target, len(self.label_names)).float()

    def loss_fn(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``target``: class indices ``(B,)`` or soft/multi-hot ``(B, C)``."""
        logits = logits.float()
        if self.loss_kind == "bce":
            soft = target.float() if target.ndim == 2 else self._soft_targets(target)
            if self.task_cfg.label_smoothing:
                soft = soft * (1 - self.task_cfg.label_smoothing) + 0.5 * self.task_cfg.label_smoothing
            return F.binary_cross_entropy_with_logits(logits, soft)
        # cross-entropy takes class indices or probabilities (mixed targets)
        return F.cross_entropy(logits, target, label_smoothing=self.task_cfg.label_smoothing)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """waveform mixing -> frontend -> spectrogram mixing and masking -> features ->
        head -> loss. Mixing turns the targets into soft ``(B, C)`` ones."""
        wave, target = batch
        model = self.model
        mix_spectrogram = self.mixer is not None and self.mixer.needs_spectrogram
        if self.mixer is not None and not mix_spectrogram:
            wave, target = self.mixer(wave, self._soft_targets(target), epoch=self.current_epoch)
        spec = model.frontend(wave)
        if mix_spectrogram:
            spec, target = self.mixer.mix_spectrogram(spec, self._soft_targets(target), self.current_epoch)
        if self.spec_augment is not None:
            spec = self.spec_augment(spec)
        logits = model.head(model.forward_features(spec))
        loss = self.loss_fn(logits, target)
        self._check_finite_loss(loss.detach(), batch_idx)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=wave.shape[0])
        # a tensor sum: float() here would wait for the device on every step
        self._train_loss_sum = self._train_loss_sum + loss.detach()
        self._train_batches += 1
        return loss

    def _check_finite_loss(self, loss: torch.Tensor, batch_idx: int) -> None:
        """A non-finite loss would make every weight NaN, and Lightning would go on training
        (and checkpointing) a model that predicts nothing. Reading the flag waits for the
        device, so on an accelerator the flags of ``trainer.log_every_n_steps`` steps are
        gathered on the device and read together (the step is then named as a range); on
        the CPU, where reading costs nothing, every step is checked before its backward
        pass. Checkpoints are guarded either way (:meth:`_check_finite_weights`)."""
        finite = torch.isfinite(loss)
        self._finite_since = finite if self._finite_since is None else self._finite_since & finite
        every = self._finite_check_every(loss.device)
        last_batch = self._trainer is not None and batch_idx + 1 >= self.trainer.num_training_batches
        if (self.global_step + 1) % every and not last_batch:
            return
        ok, self._finite_since = bool(self._finite_since), None
        if not ok:
            if every == 1:
                what = (f"training loss is {float(loss)} at step {self.global_step} (epoch {self.current_epoch}, "
                        f"batch {batch_idx})")
            else:
                what = (f"training loss became non-finite by step {self.global_step} (epoch {self.current_epoch}, "
                        f"batch {batch_idx}; checked every {every} steps)")
            raise TrainingError(f"{what}; {self._likely_cause()}")

    def _finite_check_every(self, device: torch.device) -> int:
        """Steps between reads of the finite-loss flag: 1 on the CPU, else the logging interval."""
        if device.type == "cpu" or self._trainer is None:
            return 1
        return max(1, int(self.trainer.log_every_n_steps or 1))

    def _likely_cause(self) -> str:
        lr = self.optim_cfg.lr
        return (f"the likely cause is a learning rate too high for this model (optim.lr={lr:g}): lower it, "
                "or set trainer.gradient_clip_val; otherwise extreme values in the data (audioclf verify STORE) "
                "or fp16 overflow (trainer.precision=32). Checkpoints written before this step are kept")

    def _check_finite_weights(self) -> None:
        """No checkpoint of non-finite weights: the update of the last step can overflow
        even when its loss was finite."""
        for name, p in self.eval_model().named_parameters():
            if not bool(torch.isfinite(p.detach()).all()):
                raise TrainingError(f"weight {name} became non-finite by step {self.global_step} "
                                    f"(epoch {self.current_epoch}); {self._likely_cause()}")

    def configure_callbacks(self) -> list[L.Callback]:
        return [self.ema] if self.ema is not None else []

    def on_train_epoch_start(self) -> None:
        self._train_loss_sum, self._train_batches = 0.0, 0
        # Lightning sets the sampler's epoch itself; the dataset's crops need it too
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    # -- validation ---------------------------------------------------------------------
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated: with EMA, the callback has swapped its averaged
        weights into ``model`` for validation, and a tested checkpoint holds them."""
        return self.model

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        wave, target = batch
        logits = self.eval_model()(wave).float()
        # the clip-weighted mean over all ranks' clips (a mean of per-rank means would not
        # be, with shards of unequal size)
        self.val_loss.update(self.loss_fn(logits, target).detach(), weight=wave.shape[0])
        self.val_metrics.update(logits.detach(), target.detach())

    def on_validation_epoch_end(self) -> None:
        # every rank computes (each compute gathers all ranks' states), so every rank logs
        # the same figures and checkpoint selection agrees across ranks
        if self.trainer.sanity_checking:
            self.val_metrics.reset()
            self.val_loss.reset()
            return
        val_loss = float(self.val_loss.compute())
        self.val_loss.reset()
        try:
            metrics = metric_values(self.val_metrics)
        except ValueError as err:  # e.g. no positives in a tiny validation set
            log.warning("validation metrics skipped: %s", err)
            metrics = None
        self.val_metrics.reset()
        self._log_global("val/loss", val_loss, prog_bar=True)
        if metrics is None:
            return
        self.last_val_metrics = metrics
        for k, v in metrics.items():
            if isinstance(v, float) and not math.isnan(v):
                self._log_global(f"val/{k}", v, prog_bar=k in ("accuracy", "mAP"))
        # seed 003's overfitting gap: how much worse validation loss is than training loss
        if self._train_batches:
            # every rank ran the same number of batches: the mean of per-rank means is the mean
            train_loss = float(self.trainer.strategy.reduce(
                torch.as_tensor(float(self._train_loss_sum) / self._train_batches, device=self.device), reduce_op="mean"
            ))
            if train_loss > 0:
                self._log_global("val/overfit_gap_pct", 100.0 * (val_loss - train_loss) / train_loss)

    def _log_global(self, name: str, value: float, prog_bar: bool = False) -> None:
        """Log a figure that is already the same on every rank. ``sync_dist`` with ``max``
        keeps it exact (a mean of equal floats need not be) and tells Lightning it is
        global, so checkpoint callbacks on every rank see the same value."""
        self.log(name, value, prog_bar=prog_bar, sync_dist=True, reduce_fx="max")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        wave, target = batch
        self.test_metrics.update(self.eval_model()(wave).float().detach(), target.detach())

    def on_test_epoch_end(self) -> None:
        # not logged (metrics.csv holds the training history); train() writes metrics.json
        self.last_test_metrics = metric_values(self.test_metrics)
        self.test_metrics.reset()

    # -- optimisation -------------------------------------------------------------------
    def _steps(self) -> tuple[int, int]:
        """(optimiser steps in the whole run, optimiser steps per epoch)."""
        trainer = self.trainer
        total = max(1, int(trainer.estimated_stepping_batches))
        batches = trainer.num_training_batches
        if math.isfinite(batches) and batches > 0:
            per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
        else:
            per_epoch = max(1, total // max(1, trainer.max_epochs or 1))
        return total, per_epoch

    def _use_fused_optimizer(self, groups: list[dict[str, Any]]) -> bool | None:
        """``optim.fused``, or by default: fused where torch has the kernel for every
        parameter (plain floating-point tensors on the CPU or a CUDA device). torch's own
        default on the CPU is the per-parameter loop, which took 80 % of EAT-S's optimiser
        time for the same update (benchmarks/RESULTS.md). Sharded (FSDP/DTensor)
        parameters keep torch's default."""
        if self.optim_cfg.fused is not None:
            return self.optim_cfg.fused
        params = [p for g in groups for p in g["params"]]
        plain = all(type(p) is nn.Parameter and type(p.data) is torch.Tensor and p.is_floating_point()
                    and p.device.type in ("cpu", "cuda") for p in params)
        return True if plain else None

    def configure_optimizers(self) -> Any:
        cfg = self.optim_cfg
        groups = parameter_groups(self.model, cfg.weight_decay, cfg.layer_lr)
        if not groups:
            raise ConfigError("no trainable parameters: model.freeze covers the whole model")
        for g in groups:
            g["lr"] = cfg.lr * g.pop("lr_scale")
        fused = self._use_fused_optimizer(groups)
        adam_kw = {"betas": tuple(cfg.betas), "amsgrad": cfg.amsgrad, "fused": fused}
        optimizers: dict[str, Callable[[], torch.optim.Optimizer]] = {
            "adamw": lambda: torch.optim.AdamW(groups, lr=cfg.lr, **adam_kw),
            "adam": lambda: torch.optim.Adam(groups, lr=cfg.lr, **adam_kw),
            "sgd": lambda: torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                                           fused=fused),
        }
        opt = optimizers[cfg.name]()
        if cfg.scheduler == "none":
            return opt
        if cfg.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=self.monitor_mode, factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": self.monitor, "interval": "epoch"}}
        total, per_epoch = self._steps()
        if cfg.warmup_fraction is not None:
            warmup = int(round(cfg.warmup_fraction * total))
        else:
            warmup = int(round(cfg.warmup_epochs * per_epoch))
        warmup = min(warmup, total)
        builders = {"onecycle": _onecycle, "cosine": _warmup_cosine}
        sched = builders[cfg.scheduler](opt, cfg, total, warmup)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- the checkpoint bundle ----------------------------------------------------------
    def bundle_info(self) -> dict[str, Any]:
        """What this run's checkpoints hold for inference (see :mod:`audioclf.models.bundle`)."""
        return bundle_info(
            model_name=self.model_name, model_settings=self.model_settings, label_names=self.label_names,
            multi_label=self.multi_label, sample_rate=int(self.model.sample_rate), clip_samples=self.clip_samples,
            ema=self.ema is not None, config=self.config,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._check_finite_weights()  # raised before the file is written
        write_bundle(checkpoint, self.bundle_info())
        if self.mixer is not None:
            # so a resumed run draws the same mixing decisions as an uninterrupted one
            checkpoint["mixer_rng"] = self.mixer.rng.bit_generator.state
        # Dropout, SpecAugment masks and the loader's worker seeds draw from the global
        # generators; restoring them makes a resumed run continue exactly as it would have.
        checkpoint["rng_states"] = _global_rng_states()
        if self.trainer.world_size > 1:
            # Every rank has its own generator states (and mixer), and only rank 0 writes the
            # file: keep them all, each rank takes its own back on resume. Every rank runs
            # this hook (Lightning builds the checkpoint on all ranks), so the gather meets.
            mine = {"rng_states": checkpoint["rng_states"], "mixer_rng": checkpoint.get("mixer_rng")}
            checkpoint["per_rank"] = _all_gather_objects(mine)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        _upgrade_ema_layout(checkpoint)
        per_rank = checkpoint.get("per_rank")
        if per_rank and self._trainer is not None and len(per_rank) == self.trainer.world_size:
            checkpoint = {**checkpoint, **{k: v for k, v in per_rank[self.trainer.global_rank].items() if v is not None}}
        if self.mixer is not None and "mixer_rng" in checkpoint:
            self.mixer.rng.bit_generator.state = checkpoint["mixer_rng"]
        if "rng_states" in checkpoint:
            _set_global_rng_states(checkpoint["rng_states"])


def _upgrade_ema_layout(checkpoint: dict[str, Any]) -> None:
    """A checkpoint of bundle version 1 kept the EMA copy as the task's ``ema_model``
    (``ema_model.module.*``, ``ema_model.n_averaged``) beside the trained ``model.*``; put it
    in the layout Lightning's weight averaging reads (``state_dict``: the average,
    ``current_model_state``: the trained weights), in place, so such a run resumes. Runs
    before Lightning loads the state dict into the task."""
    sd = checkpoint.get("state_dict", {})
    if not any(k.startswith(EMA_MODEL_PREFIX) for k in sd):
        return
    current = {k: v for k, v in sd.items() if not k.startswith("ema_model.")}
    average = {TASK_MODEL_PREFIX + k[len(EMA_MODEL_PREFIX):]: v for k, v in sd.items() if k.startswith(EMA_MODEL_PREFIX)}
    checkpoint["current_model_state"] = current
    checkpoint["state_dict"] = {**current, **average}
    checkpoint["averaging_state"] = {k[len("ema_model."):]: v for k, v in sd.items()
                                     if k.startswith("ema_model.") and not k.startswith(EMA_MODEL_PREFIX)}


def _all_gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (plain Python data)."""
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _mean_metric() -> nn.Module:
    from torchmetrics import MeanMetric

    # a non-finite loss stays visible in val/loss (the default would drop it with a warning)
    return MeanMetric(nan_strategy="disable")


# --- schedulers ---------------------------------------------------------------------------


def _onecycle(opt: torch.optim.Optimizer, cfg: OptimConfig, total: int, warmup: int) -> Any:
    """PyTorch's one-cycle schedule (EAT's): up to each group's lr over ``warmup`` steps
    (30 % when no warm-up is set), then annealed to ``lr / (25 * 1e4)``; Adam's beta1 and
    SGD's momentum cycle inversely."""
    # OneCycleLR divides by (pct_start * steps - 1): keep a few steps in each phase, which
    # only matters for the very short runs of smoke tests
    steps = max(total, 5)
    pct = warmup / total if warmup else 0.3
    pct = min(max(pct, 2.0 / steps), 1.0 - 2.0 / steps)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=steps, pct_start=pct)


def _warmup_cosine(opt: torch.optim.Optimizer, cfg: OptimConfig, total: int, warmup: int) -> Any:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_lr`` at the last step."""
    floor = cfg.min_lr / cfg.lr

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


# --- random generator state ---------------------------------------------------------------


def _global_rng_states() -> dict[str, Any]:
    """Plain tensors, lists and numbers only, so the checkpoint loads with ``weights_only``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_global_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


# --- optimiser groups ---------------------------------------------------------------------


def parameter_groups(
    model: nn.Module, weight_decay: float, layer_lr: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """Split trainable parameters into optimiser groups.

    Biases and normalisation weights (every tensor with fewer than 2 dims) get no weight
    decay: decaying them only shifts activations. ``layer_lr`` maps a parameter-name
    prefix to a learning-rate multiplier (longest matching prefix wins), for layer-wise
    rates when fine-tuning.
    """
    layer_lr = layer_lr or {}
    names = [n for n, _ in model.named_parameters()]
    for prefix in layer_lr:
        if not any(n.startswith(prefix) for n in names):
            raise ConfigError(f"optim.layer_lr: no parameter name starts with {prefix!r}")
    buckets: dict[tuple[float, bool], list[torch.Tensor]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        prefixes = [k for k in layer_lr if name.startswith(k)]
        scale = layer_lr[max(prefixes, key=len)] if prefixes else 1.0
        decay = p.ndim >= 2
        buckets.setdefault((scale, decay), []).append(p)
    return [
        {"params": ps, "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale}
        for (scale, decay), ps in buckets.items()
    ]


# --- activation checkpointing -------------------------------------------------------------

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def main_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's main blocks: the outermost modules that hold parameters and submodules
    and either repeat (their class occurs more than once) or are items of a
    ``Sequential``/``ModuleList`` (a stack of layers). Plain containers are looked into,
    not taken; the frontend (and anything holding it) never is a block: it has no
    activations worth recomputing. Works on any model without it naming its blocks."""
    counts = Counter(type(m) for m in model.modules())
    frontend = getattr(model, "frontend", None)
    blocks: list[tuple[str, nn.Module]] = []

    def holds_frontend(m: nn.Module) -> bool:
        return frontend is not None and any(sub is frontend for sub in m.modules())

    def visit(module: nn.Module, prefix: str) -> None:
        in_stack = isinstance(module, (nn.Sequential, nn.ModuleList))
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            if child is frontend:
                continue
            is_block = (
                type(child) not in _CONTAINERS  # a Sequential subclass (conv-bn-relu) is a block
                and any(True for _ in child.children())
                and any(True for _ in child.parameters())
                and (counts[type(child)] > 1 or in_stack)
                and not holds_frontend(child)
            )
            if is_block:
                blocks.append((path, child))
            else:
                visit(child, f"{path}.")

    visit(model, "")
    return blocks


@contextlib.contextmanager
def _buffers_restored(module: nn.Module) -> Iterator[None]:
    """Keep buffer updates made inside the block out of the model: the recomputation in
    the backward pass must not count a batch twice in batch-norm running statistics."""
    saved = [(b, b.detach().clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)


def enable_activation_checkpointing(model: nn.Module) -> list[str]:
    """Recompute each of :func:`main_blocks` in the backward pass instead of storing its
    activations (``torch.utils.checkpoint``, non-reentrant). Memory drops to about one
    block's activations plus the block inputs, for about one more forward pass of compute.

    The blocks' ``forward`` is replaced on the instance, so parameter names (and
    checkpoints) do not change, and a deep copy of the model stays correct. Only training
    forwards with gradients are checkpointed; evaluation runs the plain forward. Torch's
    generator state is replayed in the recomputation, so dropout draws the same masks.
    Returns the names of the wrapped blocks.
    """
    blocks = main_blocks(model)
    for _name, block in blocks:
        block.forward = types.MethodType(_checkpointed_forward, block)
    if blocks:
        log.info("activation checkpointing over %d blocks (%s ...)", len(blocks), ", ".join(n for n, _ in blocks[:3]))
    else:
        log.warning("activation checkpointing: found no repeated blocks in %s; nothing is checkpointed", type(model).__name__)
    return [n for n, _ in blocks]


def _checkpointed_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """Instance ``forward`` of a checkpointed block: the class's own forward, recomputed."""
    plain = type(self).forward.__get__(self)
    if self.training and torch.is_grad_enabled():
        return torch_checkpoint(
            plain, *args, use_reentrant=False, context_fn=functools.partial(_recompute_contexts, self), **kwargs
        )
    return plain(*args, **kwargs)


def _recompute_contexts(block: nn.Module) -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
    # (context of the first forward, context of the recomputation)
    return contextlib.nullcontext(), _buffers_restored(block)
