"""What a config adds to Lightning's Trainer: loggers by name, callbacks by import path.

::

    trainer:
      loggers: [csv, tensorboard]              # csv is always on (metrics.csv, reports)
      callbacks: ["mypkg.callbacks:PrintEpoch"]  # classes built with no arguments

The optional loggers need their package (``pip install 'audioclf[tensorboard]'``, ``[wandb]``,
``[mlflow]``); a missing one is a :class:`~audioclf.errors.ConfigError` naming it. Callback
classes are imported with :mod:`importlib` (no ``eval``) and must be Lightning callbacks.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audioclf.errors import ConfigError
from audioclf.registry import Registry

__all__ = ["LOGGERS", "build_loggers", "import_callbacks"]

# name -> builder(run_dir, run_name) -> Lightning logger; (the package it needs) as metadata
LOGGERS: Registry[Callable[[Path, str], Any]] = Registry("logger")


def _require(name: str, package: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise ConfigError(f"trainer.loggers: {name} needs the {package!r} package: pip install 'audioclf[{name}]'")


@LOGGERS.register("csv")
def _csv(run_dir: Path, run_name: str) -> Any:
    from lightning.pytorch.loggers import CSVLogger

    # <run>/metrics.csv: the file reports and `audioclf runs` read
    return CSVLogger(save_dir=str(run_dir), name="", version="")


@LOGGERS.register("tensorboard")
def _tensorboard(run_dir: Path, run_name: str) -> Any:
    from lightning.pytorch.loggers import TensorBoardLogger

    if importlib.util.find_spec("tensorboard") is None:
        _require("tensorboard", "tensorboardX")  # Lightning takes either
    return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")


@LOGGERS.register("wandb")
def _wandb(run_dir: Path, run_name: str) -> Any:
    _require("wandb", "wandb")
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(name=run_name, save_dir=str(run_dir), project="audioclf")


@LOGGERS.register("mlflow")
def _mlflow(run_dir: Path, run_name: str) -> Any:
    _require("mlflow", "mlflow")
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(experiment_name="audioclf", run_name=run_name, tracking_uri=(run_dir / "mlruns").resolve().as_uri())


def build_loggers(names: list[str], run_dir: str | Path, run_name: str) -> list[Any]:
    """The Lightning loggers of ``trainer.loggers``, CSV first (and always): Lightning's
    ``log_dir`` is the first logger's, and ``metrics.csv`` must be in the run directory."""
    LOGGERS.check_names(names)
    ordered = ["csv", *[n for n in dict.fromkeys(names) if n != "csv"]]
    return [LOGGERS.get(n)(Path(run_dir), run_name) for n in ordered]


def import_callbacks(paths: list[str]) -> list[Any]:
    """Instances of the callback classes named ``"package.module:Class"``."""
    from lightning.pytorch.callbacks import Callback

    out = []
    for path in paths:
        module_name, sep, attr = path.partition(":")
        if not sep or not module_name or not attr:
            raise ConfigError(f"trainer.callbacks: {path!r} is not of the form 'package.module:Class'")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            raise ConfigError(f"trainer.callbacks: cannot import {module_name!r} for {path!r} ({err})") from err
        target = module
        for part in attr.split("."):
            if not hasattr(target, part):
                raise ConfigError(f"trainer.callbacks: {module_name!r} has no {attr!r}")
            target = getattr(target, part)
        if not (isinstance(target, type) and issubclass(target, Callback)):
            raise ConfigError(f"trainer.callbacks: {path!r} is not a Lightning Callback class")
        out.append(target())
    return out
