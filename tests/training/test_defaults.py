"""Default recipes: chosen by what the store is, logged with their off switches, and
always under what the user sets; ``recipe: none`` is today's bare training."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from audioclf.cli import main
from audioclf.config import Config, ConfigError
from audioclf.training.defaults import defaults_dir, list_default_recipes, load_train_config
from audioclf.training.trainer import train
from tests.training.helpers import make_store

ROOT = Path(__file__).resolve().parents[2]


def _recipe(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / "defaults" / f"{name}.yaml").read_text())


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("stores")
    return {
        "short_clips": make_store(d / "words.h5", classes=3, seconds=1.0, clips_per_class=6),
        "scenes": make_store(d / "scenes.h5", classes=2, seconds=4.0, clips_per_class=6),
        "multi_label": make_store(d / "tags.h5", classes=4, seconds=1.0, clips_per_class=6, multi_label=True),
    }


@pytest.mark.parametrize("kind", ["short_clips", "scenes", "multi_label"])
def test_default_recipe_chosen_by_store_and_logged(kind: str, stores: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="audioclf"):
        config, choice = load_train_config(None, [f"data.store={stores[kind]}"])
    assert choice is not None and choice.name == kind
    assert config.recipe == kind  # the saved config.yaml says which recipe it was laid on
    expected = _recipe(kind)
    assert config.data.augment == expected["data"]["augment"]
    assert config.task.spec_augment == expected["task"]["spec_augment"]
    text = caplog.text
    assert f"default recipe: {kind}" in text
    offs = ["data.augment={}", "task.spec_augment={}", "recipe=none"]
    if kind == "short_clips":
        # trimmed to the two augmentations by the converged ablation (benchmarks/RESULTS.md):
        # label smoothing, warm-up and EMA on top of them cost 5 points there
        assert config.task.label_smoothing == 0 and config.task.ema_decay is None and config.optim.warmup_epochs == 0
        assert "label smoothing" not in text and "EMA" not in text
    else:
        assert config.task.label_smoothing == expected["task"]["label_smoothing"] > 0
        assert config.task.ema_decay == expected["task"]["ema_decay"]
        assert config.optim.warmup_epochs == 1.0 and config.optim.scheduler == "cosine"
        offs += ["task.label_smoothing=0", "optim.warmup_epochs=0", "task.ema_decay=null"]
    for off in offs:
        assert off in text, f"the log does not say how to turn off with {off}"


def test_scene_store_gets_its_clip_length(stores: dict[str, Path]) -> None:
    config, _ = load_train_config(None, [f"data.store={stores['scenes']}"])
    assert config.data.clip_seconds == 4.0  # the store's clips, not cnn_lite's 1 s
    assert config.task.mix.methods == {"mixup": 1.0}


def test_recipe_none_is_bare_training(stores: dict[str, Path]) -> None:
    store = str(stores["short_clips"])
    config, choice = load_train_config(None, [f"data.store={store}", "recipe=none"])
    assert choice is None
    assert config.to_dict() == Config(data={"store": store}).to_dict()
    # as a key of a recipe file too
    recipe = stores["short_clips"].parent / "bare.yaml"
    recipe.write_text(f"recipe: none\ndata:\n  store: {store}\n")
    assert load_train_config(recipe)[0].to_dict() == Config(data={"store": store}).to_dict()


def test_recipe_file_builds_on_nothing_unless_it_names_a_default(stores: dict[str, Path]) -> None:
    store = str(stores["short_clips"])
    plain = stores["short_clips"].parent / "plain.yaml"
    plain.write_text(f"data:\n  store: {store}\n  batch_size: 8\n")
    config, choice = load_train_config(plain)
    assert choice is None and config.data.augment == {} and config.task.ema_decay is None
    named = stores["short_clips"].parent / "named.yaml"
    named.write_text(f"recipe: scenes\ndata:\n  store: {store}\n  batch_size: 8\n")
    config, choice = load_train_config(named)
    assert choice is not None and choice.name == "scenes" and config.data.batch_size == 8
    assert config.data.augment == _recipe("scenes")["data"]["augment"]


def test_user_overrides_win_over_the_default_recipe(stores: dict[str, Path]) -> None:
    config, _ = load_train_config(None, [
        f"data.store={stores['short_clips']}", "data.augment.pitch_shift.p=0", "task.label_smoothing=0.2",
        "data.clip_seconds=0.5", "task.ema_decay=null", "optim.warmup_epochs=0",
    ])
    augment = _recipe("short_clips")["data"]["augment"]
    assert config.data.augment["pitch_shift"] == {**augment["pitch_shift"], "p": 0}  # one switched off, options kept
    assert {k: v for k, v in config.data.augment.items() if k != "pitch_shift"} == {
        k: v for k, v in augment.items() if k != "pitch_shift"}
    assert config.task.label_smoothing == 0.2 and config.data.clip_seconds == 0.5
    assert config.task.ema_decay is None and config.optim.warmup_epochs == 0
    assert config.task.spec_augment  # what was not overridden stays on
    config, _ = load_train_config(None, [f"data.store={stores['short_clips']}", "data.augment={}"])
    assert config.data.augment == {}


def test_store_rate_fitted_for_the_default_model_only(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s22.h5", classes=2, sample_rate=22050, seconds=1.0)
    config, choice = load_train_config(None, [f"data.store={store}"])
    assert config.model.settings == {"sample_rate": 22050}
    assert choice is not None and "model.settings.sample_rate" in choice.filled
    config, _ = load_train_config(None, [f"data.store={store}", "model.name=vgg_like"])
    assert config.model.settings == {}


def test_unknown_default_recipe_names_the_key(stores: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="recipe: unknown value 'speech'"):
        load_train_config(None, [f"data.store={stores['short_clips']}", "recipe=speech"])


def test_defaults_found_in_the_package() -> None:
    # the package's defaults/ is what an installed audioclf reads: it must hold every kind,
    # with the same text as configs/defaults/
    for name in list_default_recipes():
        packaged = defaults_dir() / f"{name}.yaml"
        assert packaged.is_file(), f"{packaged} missing"
        assert packaged.read_text() == (ROOT / "configs" / "defaults" / f"{name}.yaml").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"defaults/*.yaml"' in pyproject, "the default recipes must be package data"


@pytest.mark.parametrize("name", ["short_clips", "scenes", "multi_label"])
def test_default_recipe_header_states_its_evidence(name: str) -> None:
    text = (ROOT / "configs" / "defaults" / f"{name}.yaml").read_text().lower()
    assert "evidence:" in text and "issue 13" in text and "configs/" in text and "bench_ablation" in text


@pytest.mark.parametrize("kind", ["short_clips", "scenes", "multi_label"])
def test_default_recipe_trains(kind: str, stores: dict[str, Path], tmp_path: Path) -> None:
    config, _ = load_train_config(None, [
        f"data.store={stores[kind]}", f"output_dir={tmp_path}", "data.batch_size=4", "trainer.max_epochs=2",
        "trainer.progress_bar=false", "trainer.log_every_n_steps=1",
    ])
    res = train(config)
    assert res.epochs == 2 and res.best_checkpoint is not None
    saved = yaml.safe_load((res.run_dir / "config.yaml").read_text())
    assert saved["recipe"] == kind and saved["data"]["augment"] == _recipe(kind)["data"]["augment"]


def test_cli_train_prints_the_choice(stores: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", f"data.store={stores['short_clips']}", f"output_dir={tmp_path}", "trainer.max_epochs=1",
                 "trainer.progress_bar=false", "data.batch_size=4"]) == 0
    err = capsys.readouterr().err
    assert "default recipe: short_clips" in err and "turn off with" in err


@pytest.mark.parametrize("text", [b"data:\n  store: \"\xff\xfe\"\n", b"a: &x [*x]\n"], ids=["non-utf8", "recursive-alias"])
def test_train_reads_recipes_as_strictly_as_load_config(tmp_path: Path, text: bytes,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # `train` and `cv` load recipes through load_train_config: a damaged file must be the
    # same one-line error naming it (exit 2), never a traceback
    recipe = tmp_path / "bad.yaml"
    recipe.write_bytes(text)
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_train_config(recipe)
    assert main(["train", str(recipe)]) == 2
    assert "bad.yaml" in capsys.readouterr().err
