"""Evaluate a checkpoint bundle (or a loaded model) on a store split or fold: the model's
scores for every clip, scored by :func:`audioclf.metrics.compute_metrics`. Used by
``audioclf evaluate``, the report of a run and the demo; imports no training module."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from audioclf.data.dataset import ClipDataset
from audioclf.data.store import Store
from audioclf.errors import DataError
from audioclf.metrics import compute_metrics
from audioclf.models.bundle import load_bundle_model

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_loader(model: nn.Module, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(clips, classes)`` and targets for every batch of ``loader``."""
    device = next(model.parameters()).device
    model.eval()
    scores, targets = [], []
    for wave, target in loader:
        scores.append(model(wave.to(device)).float().cpu())
        targets.append(target)
    return torch.cat(scores), torch.cat(targets)


def evaluate_loader(
    model: nn.Module, loader: DataLoader, *, multi_label: bool, label_names: list[str], per_class: bool = False
) -> dict[str, Any]:
    scores, targets = predict_loader(model, loader)
    metrics = compute_metrics(scores, targets, multi_label, label_names, per_class=per_class)
    metrics["clips"] = int(targets.shape[0])
    return metrics


def default_evaluation_path(checkpoint: str | Path) -> Path:
    """Where ``audioclf evaluate`` writes its figures without ``--output``: the run
    directory of a checkpoint in ``<run>/checkpoints/`` (``<run>/evaluation.json``), else
    beside the checkpoint (``<name>.evaluation.json``), never in a directory above it."""
    path = Path(checkpoint)
    run = path.parent.parent
    if path.parent.name == "checkpoints" and (run / "config.yaml").is_file():
        return run / "evaluation.json"
    return path.with_name(f"{path.stem}.evaluation.json")


def evaluate_checkpoint(
    checkpoint: str | Path,
    store_path: str | Path,
    *,
    split: str | None = "test",
    fold: int | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    per_class: bool = False,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Metrics of ``checkpoint`` on the clips of ``split`` (or ``fold``) of a store, with
    the model on ``device``."""
    model, info = load_bundle_model(checkpoint, device)
    return evaluate_model(model, info, store_path, split=split, fold=fold, batch_size=batch_size,
                          num_workers=num_workers, per_class=per_class)


def evaluate_model(
    model: nn.Module,
    info: dict[str, Any],
    store_path: str | Path,
    *,
    split: str | None = "test",
    fold: int | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    per_class: bool = False,
) -> dict[str, Any]:
    """Metrics of a loaded bundle model (``load_bundle_model``: the model and its bundle
    ``info``) on the clips of ``split`` (or ``fold``) of a store."""
    store = Store(store_path)
    if store.label_names != info["label_names"]:
        raise DataError(
            f"{store_path}: its labels differ from the checkpoint's ({store.num_classes} vs {info['num_classes']} classes); "
            "evaluate on a store of the same dataset"
        )
    if store.sample_rate != info["sample_rate"]:
        raise DataError(f"{store_path}: store is at {store.sample_rate} Hz, checkpoint expects {info['sample_rate']} Hz")
    idx = store.indices(folds=[fold]) if fold is not None else store.indices(split=split)
    loader = DataLoader(ClipDataset(store, idx, int(info["clip_samples"])), batch_size=batch_size, num_workers=num_workers)
    metrics = evaluate_loader(model, loader, multi_label=store.multi_label, label_names=store.label_names, per_class=per_class)
    metrics["split"] = f"fold {fold}" if fold is not None else split
    return metrics
