"""Trainer pieces that a user sees: the epoch bar's count, the warnings kept out of sight."""

from __future__ import annotations

import inspect
import warnings
from types import SimpleNamespace

import pytest

from audioclf.training.trainer import _EpochBar, _known_warnings_silenced


@pytest.mark.parametrize(("epoch", "max_epochs", "text"), [(0, 2, "Epoch 1/2"), (1, 2, "Epoch 2/2"), (11, 12, "Epoch 12/12")])
def test_epoch_bar_counts_from_one_to_max_epochs(epoch: int, max_epochs: int, text: str) -> None:
    bar = _EpochBar()
    bar._trainer = SimpleNamespace(max_epochs=max_epochs)
    assert bar._get_train_description(epoch).strip() == text


def test_logging_interval_warning_is_silenced_during_the_fit_only() -> None:
    from lightning.fabric.utilities.rank_zero import rank_zero_warn
    from lightning.fabric.utilities.warnings import PossibleUserWarning
    from lightning.pytorch.loops import fit_loop

    # the text the filter matches is the one Lightning still emits
    assert "is smaller than the logging interval" in inspect.getsource(fit_loop)
    message = ("The number of training batches (3) is smaller than the logging interval Trainer(log_every_n_steps=10). "
               "Set a lower value for log_every_n_steps if you want to see logs for the training epoch.")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _known_warnings_silenced():
            rank_zero_warn(message, category=PossibleUserWarning)
            rank_zero_warn("another possible mistake", category=PossibleUserWarning)  # not silenced
        rank_zero_warn(message, category=PossibleUserWarning)  # outside the fit: shown again
    assert [str(w.message)[:26] for w in caught] == ["another possible mistake", "The number of training bat"]


def test_a_tiny_run_trains_without_the_warning(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from audioclf.config import load_config
    from audioclf.data.catalog import create_source
    from audioclf.data.prepare import prepare_dataset
    from audioclf.training.trainer import train

    store = tmp_path / "s.h5"
    prepare_dataset(create_source("synthetic", clips_per_class=3, seconds=1.0), store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(load_config(None, [f"data.store={store}", "trainer.max_epochs=1", f"output_dir={tmp_path}",
                                 "trainer.progress_bar=false", "model.settings={channels: [4, 8]}"]))
    assert not [w for w in caught if "logging interval" in str(w.message)]
