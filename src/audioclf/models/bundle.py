"""The audioclf checkpoint bundle: what it holds, writing it, reading it, rebuilding its
model (weights as data, never code).

A bundle is a Lightning checkpoint written by a training run with one extra entry,
``"audioclf"`` (:func:`bundle_info`): what inference needs to use the weights without the
run's config (model name and settings, label names, task, sample rate, clip length, which
weights to take). The training task holds the model as its ``model`` attribute, so its
weights are under :data:`TASK_MODEL_PREFIX` of the Lightning ``state_dict``. With EMA
(``info["weights"] == "ema"``), Lightning's weight averaging writes the average there and
the trained weights under ``current_model_state`` (bundle version 2); bundles of version 1
kept the EMA copy beside the model, under :data:`EMA_MODEL_PREFIX`, and still load. This
module is the one place
that knows that layout: training writes bundles through :func:`write_bundle`, everything
else reads them through :func:`read_bundle` and :func:`bundle_state_dict`, and neither
side imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audioclf.errors import CheckpointError
from audioclf.models.checkpoints import load_state_into, read_checkpoint_file
from audioclf.models.registry import create_model

__all__ = [
    "BUNDLE_KEY",
    "BUNDLE_VERSION",
    "EMA_MODEL_PREFIX",
    "TASK_MODEL_PREFIX",
    "bundle_info",
    "bundle_state_dict",
    "is_bundle",
    "load_bundle_model",
    "model_from_bundle",
    "read_bundle",
    "write_bundle",
]

BUNDLE_KEY = "audioclf"  # the checkpoint entry holding the bundle info
BUNDLE_VERSION = 2
# Where the training task's state dict holds the model (the task's attribute ``model``),
# and where bundles of version 1 held its EMA copy (``ema_model``, an AveragedModel that
# wraps it as ``module``); from version 2 the EMA is Lightning's weight averaging, whose
# average is the state dict itself.
TASK_MODEL_PREFIX = "model."
EMA_MODEL_PREFIX = "ema_model.module."


def bundle_info(
    *,
    model_name: str,
    model_settings: Mapping[str, Any],
    label_names: list[str],
    multi_label: bool,
    sample_rate: int,
    clip_samples: int,
    ema: bool,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a bundle holds besides the weights: plain data (``weights_only`` loads it)."""
    return {
        "bundle_version": BUNDLE_VERSION,
        "model": model_name,
        "model_settings": dict(model_settings),
        "num_classes": len(label_names),
        "label_names": list(label_names),
        "task": "multi_label" if multi_label else "single_label",
        "sample_rate": int(sample_rate),
        "clip_samples": int(clip_samples),
        "weights": "ema" if ema else "model",
        "config": dict(config or {}),
    }


def write_bundle(checkpoint: dict[str, Any], info: Mapping[str, Any]) -> None:
    """Make a Lightning checkpoint dict (``on_save_checkpoint``'s) an audioclf bundle."""
    checkpoint[BUNDLE_KEY] = dict(info)


def is_bundle(obj: Any) -> bool:
    """Whether a checkpoint object is an audioclf bundle."""
    return isinstance(obj, Mapping) and BUNDLE_KEY in obj and "state_dict" in obj


def bundle_state_dict(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The model weights of a bundle object, in the model's key space: the EMA copy when
    the run kept one (those were evaluated), else the trained model."""
    sd = obj["state_dict"]
    info = obj[BUNDLE_KEY]
    # version 1 kept the EMA copy beside the model; from version 2 the state_dict holds the
    # evaluated weights (Lightning's weight averaging writes the average there)
    old_ema = info.get("weights") == "ema" and int(info.get("bundle_version", 1)) < 2
    prefix = EMA_MODEL_PREFIX if old_ema else TASK_MODEL_PREFIX
    state = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError(f"bundle holds no weights under {prefix!r}")
    return state


def read_bundle(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(checkpoint object, its ``audioclf`` bundle info); errors if not an audioclf checkpoint."""
    obj = read_checkpoint_file(path)
    if not isinstance(obj, dict) or BUNDLE_KEY not in obj:
        raise CheckpointError(f"{path}: not an audioclf checkpoint (no 'audioclf' bundle entry); published checkpoints "
                         "are used through a model source (`audioclf predict FILE ... --model NAME`, "
                         "audioclf.models.pretrained.resolve_model) or model.pretrained in a recipe")
    return obj, obj[BUNDLE_KEY]


def model_from_bundle(obj: Mapping[str, Any], source: str = "checkpoint") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of an already-read bundle object, weights loaded, in eval mode."""
    info = obj[BUNDLE_KEY]
    model = create_model(info["model"], info["num_classes"], **info.get("model_settings", {}))
    state = bundle_state_dict(obj)
    load_state_into(model, state, source=source)
    return model.eval(), info


def load_bundle_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint bundle, weights loaded, in eval mode."""
    obj, _ = read_bundle(path)
    model, info = model_from_bundle(obj, source=str(path))
    return model.to(device).eval(), info
