"""Loading weights into a built model: audioclf checkpoints and published checkpoints.

Published checkpoints keep their own key names (tests/data/golden/ pins them). A model whose
key space differs from its published one defines ``remap_checkpoint(obj) -> state_dict``;
otherwise the state dict is taken from the usual containers (``{"model": ...}`` as in
PANNs and BEATs, ``{"state_dict": ...}`` as written by Lightning/audioclf).
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audioclf.errors import CheckpointError

log = logging.getLogger(__name__)


def read_checkpoint_file(path: str | Path) -> Any:
    """Load a checkpoint file's object on the CPU, as data: nothing in the file runs.

    ``torch.load(weights_only=True)`` unpickles tensors, plain containers and numbers only
    (published PANNs/BEATs/EAT files and audioclf bundles need no more), plus the few numpy
    types that older checkpoints used for random-generator states (:func:`safe_globals`).
    A file that needs any other object unpickled (which could run code) is refused with a
    ``CheckpointError`` naming the file and the type.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        offending = _GLOBAL_RE.search(str(err))
        if offending is None:  # not a refused type: a damaged or foreign file
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_reason(err)})") from None
        raise CheckpointError(
            f"{path}: refused: loading it would unpickle {offending.group(1)!r}, which could run code; "
            "audioclf reads checkpoints as data only (tensors, numbers, plain containers). "
            "Convert it where you trust its source (torch.load(weights_only=False) -> state dict -> torch.save)"
        ) from None
    except Exception as err:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from err


def safe_globals() -> list[Any]:
    """The non-torch types a checkpoint may hold: numpy arrays and their dtypes, which
    rebuild plain arrays and run nothing (older audioclf checkpoints kept numpy random
    states as arrays)."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed np.core
    types: list[Any] = [np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        # numeric dtypes only: no object, string or structured arrays
        numeric = ("Bool", "Int", "UInt", "Float", "Complex")
        types += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType") and n.startswith(numeric)]
    return types


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def _reason(err: Exception) -> str:
    """The line of torch's long weights-only message that says what was wrong."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ln.endswith("WeightsUnpickler error:") and i + 1 < len(lines):
            return lines[i + 1]
    return lines[-1] if lines else type(err).__name__


def extract_state_dict(obj: Any, model: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Find the model weights inside a checkpoint object, in the model's key space."""
    if model is not None and hasattr(model, "remap_checkpoint"):
        remapped = model.remap_checkpoint(obj)
        if remapped is not None:
            return dict(remapped)
    if isinstance(obj, Mapping):
        from audioclf.models.bundle import (  # (bundle imports this module)
            bundle_state_dict,
            is_bundle,
        )

        if is_bundle(obj):
            return bundle_state_dict(obj)
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                return dict(obj[key])
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    raise CheckpointError("checkpoint holds no state dict (expected keys 'model' or 'state_dict')")


def load_state_into(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> list[str]:
    """Copy ``state`` into ``model``, replacing a head of another size.

    Entries under ``model.head_prefixes`` whose shape differs from the model's are skipped
    (the freshly initialised head is kept) and named in a log message. Any other missing,
    unexpected or mis-shaped key is an error: a silently half-loaded model is worse than none.
    Returns the list of skipped head keys.
    """
    own = model.state_dict()
    head_prefixes = tuple(getattr(model, "head_prefixes", ()))
    skipped: list[str] = []
    filtered: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k in own and own[k].shape != v.shape and k.startswith(head_prefixes):
            skipped.append(k)
            continue
        filtered[k] = v
    missing = [k for k in own if k not in filtered and k not in skipped]
    # Missing head keys are fine when the checkpoint has no head at all (e.g. an encoder).
    missing_non_head = [k for k in missing if not k.startswith(head_prefixes)]
    unexpected = [k for k in filtered if k not in own]
    bad_shape = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in filtered.items()
        if k in own and own[k].shape != v.shape
    ]
    problems = []
    if missing_non_head:
        problems.append(f"missing keys: {_short(missing_non_head)}")
    if unexpected:
        problems.append(f"unexpected keys: {_short(unexpected)}")
    if bad_shape:
        problems.append(f"shape mismatch: {_short(bad_shape)}")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(filtered, strict=False)
    if skipped or missing:
        log.info(
            "%s: head replaced (%s kept freshly initialised for %d classes)",
            source,
            ", ".join(skipped or missing),
            getattr(model, "num_classes", -1),
        )
    return skipped or [k for k in missing if k.startswith(head_prefixes)]


def load_pretrained(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a published or audioclf checkpoint into ``model`` (in place) and return it.

    A directory is handed to the model's ``load_pretrained_dir`` (Hugging Face AST layout).
    """
    path = Path(path)
    if path.is_dir():
        loader = getattr(model, "load_pretrained_dir", None)
        if loader is None:
            raise CheckpointError(f"{path} is a directory, but {type(model).__name__} loads files only")
        loader(path)
        return model
    obj = read_checkpoint_file(path)
    state = extract_state_dict(obj, model)
    load_state_into(model, state, source=str(path))
    return model


def _short(items: list[str], n: int = 6) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
