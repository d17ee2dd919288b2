"""trainer.loggers and trainer.callbacks: what audioclf hands to Lightning."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import lightning as L
import pytest

from audioclf.config import load_config
from audioclf.errors import ConfigError
from audioclf.training.plugins import build_loggers, import_callbacks


class Marker(L.Callback):
    """A callback found by import path in the tests below."""


def test_csv_is_always_first_and_writes_into_the_run_directory(tmp_path: Path) -> None:
    for names in ([], ["csv"], ["csv", "csv"]):
        (csv,) = build_loggers(names, tmp_path, "run")
        assert type(csv).__name__ == "CSVLogger"
        # <run>/metrics.csv: name and version empty, so no lightning_logs/version_0 below it
        assert Path(csv.log_dir) == tmp_path and csv.name == "" and csv.version == ""


def test_a_missing_optional_logger_names_its_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("wandb", "mlflow", "tensorboard", "tensorboardX") else real(name, *a))
    for name, extra in (("wandb", "wandb"), ("mlflow", "mlflow"), ("tensorboard", "tensorboard")):
        with pytest.raises(ConfigError, match=rf"trainer.loggers: {name} needs .*pip install 'audioclf\[{extra}\]'"):
            build_loggers(["csv", name], tmp_path, "run")


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None,
                    reason="tensorboard not installed")
def test_tensorboard_logger_goes_beside_metrics_csv(tmp_path: Path) -> None:
    csv, tb = build_loggers(["tensorboard"], tmp_path, "run")
    assert Path(tb.log_dir) == tmp_path / "tensorboard"


def test_unknown_logger_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="trainer.loggers"):
        load_config(None, ["trainer.loggers=[csv, neptune]"])
    with pytest.raises(ConfigError, match="unknown logger 'tensorbord'; did you mean 'tensorboard'"):
        build_loggers(["tensorbord"], Path("."), "run")


def test_callbacks_by_import_path() -> None:
    (cb,) = import_callbacks(["tests.training.test_plugins:Marker"])
    assert type(cb) is Marker
    config = load_config(None, ["trainer.callbacks=['tests.training.test_plugins:Marker']"])
    assert config.trainer.callbacks == ["tests.training.test_plugins:Marker"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tests.training.test_plugins.Marker", "not of the form 'package.module:Class'"),
        ("no_such_package.x:Y", "cannot import 'no_such_package.x'"),
        ("tests.training.test_plugins:Nope", "has no 'Nope'"),
        ("tests.training.test_plugins:build_loggers", "is not a Lightning Callback class"),
    ],
)
def test_bad_callback_paths_are_config_errors(path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        import_callbacks([path])
