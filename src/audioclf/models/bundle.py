"""The audioclf checkpoint bundle: read it, rebuild its model (weights as data, never code).

A bundle is a Lightning checkpoint written by a training run with one extra entry,
``"audioclf"``: what inference needs to use the weights without the run's config (model
name and settings, label names, task, sample rate, clip length, which weights to take).
The task holds the model under ``model.`` and its EMA copy under ``ema_model.module.``
(see :mod:`audioclf.models.checkpoints`); ``info["weights"]`` says which was evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audioclf.models.checkpoints import (
    EMA_MODEL_PREFIX,
    TASK_MODEL_PREFIX,
    extract_state_dict,
    load_state_into,
    read_checkpoint_file,
)
from audioclf.models.registry import create_model

__all__ = [
    "EMA_MODEL_PREFIX",
    "TASK_MODEL_PREFIX",
    "is_bundle",
    "load_bundle_model",
    "model_from_bundle",
    "read_bundle",
]


def is_bundle(obj: Any) -> bool:
    """Whether a checkpoint object is an audioclf bundle."""
    return isinstance(obj, Mapping) and "audioclf" in obj and "state_dict" in obj


def read_bundle(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(checkpoint object, its ``audioclf`` bundle info); errors if not an audioclf checkpoint."""
    obj = read_checkpoint_file(path)
    if not isinstance(obj, dict) or "audioclf" not in obj:
        raise ValueError(f"{path}: not an audioclf checkpoint (no 'audioclf' bundle entry); published checkpoints "
                         "are used through a model source (`audioclf predict FILE ... --model NAME`, "
                         "audioclf.models.pretrained.resolve_model) or model.pretrained in a recipe")
    return obj, obj["audioclf"]


def model_from_bundle(obj: Mapping[str, Any], source: str = "checkpoint") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of an already-read bundle object, weights loaded, in eval mode."""
    info = obj["audioclf"]
    model = create_model(info["model"], info["num_classes"], **info.get("model_settings", {}))
    state = extract_state_dict(obj)  # the EMA weights when the run kept them
    load_state_into(model, state, source=source)
    return model.eval(), info


def load_bundle_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint bundle, weights loaded, in eval mode."""
    obj, _ = read_bundle(path)
    model, info = model_from_bundle(obj, source=str(path))
    return model.to(device).eval(), info
