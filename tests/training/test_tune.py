"""`audioclf tune`: Optuna trials over a recipe's tune: section, scored on validation data
only, resumable after a kill, with the best config written as a recipe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from audioclf.cli import main
from audioclf.config import ConfigError, load_config
from audioclf.data.store import Store, StoreHeader, StoreWriter
from audioclf.training.tune import parse_search_space, tune
from tests.training.helpers import make_store

ROOT = Path(__file__).resolve().parents[2]

SEARCH = {
    "optim.lr": {"low": 1.0e-3, "high": 0.1, "log": True},
    "model.settings.dropout": {"low": 0.0, "high": 0.5},
    "task.label_smoothing": {"choices": [0.0, 0.1]},
}


def write_recipe(path: Path, store: Path, *, epochs: int = 2, extra: str = "", search: dict | None = None) -> Path:
    raw = {
        "name": "search",
        "output_dir": str(path.parent / "runs"),
        "data": {"store": str(store), "batch_size": 4},
        "model": {"settings": {"channels": [4, 8]}},
        "trainer": {"max_epochs": epochs, "progress_bar": False, "log_every_n_steps": 1},
        "tune": search or SEARCH,
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False) + extra)
    return path


def trial_summary(rows: list[dict]) -> list[tuple]:
    return [(r["number"], r["state"], r["value"], tuple(sorted(r["params"].items()))) for r in rows]


def test_three_tiny_trials_via_cli_and_best_recipe_trains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "s.h5", classes=3, seconds=0.5, clips_per_class=6)
    recipe = write_recipe(tmp_path / "r.yaml", store)
    assert main(["tune", str(recipe), "--trials", "3"]) == 0
    printed = capsys.readouterr().out
    tune_dir = tmp_path / "runs" / "search-tune"
    assert "best recipe:" in printed and str(tune_dir) in printed
    doc = json.loads((tune_dir / "trials.json").read_text())
    assert len(doc["trials"]) == 3 and doc["metric"] == "val/accuracy"
    for t in doc["trials"]:
        assert t["state"] in ("complete", "pruned")
        p = t["params"]
        assert 1e-3 <= p["optim.lr"] <= 0.1 and 0.0 <= p["model.settings.dropout"] <= 0.5
        assert p["task.label_smoothing"] in (0.0, 0.1)
        # each trial trained with its values
        saved = load_config(tune_dir / f"trial-{t['number']:04d}" / "config.yaml")
        assert saved.optim.lr == p["optim.lr"] and saved.model.settings["dropout"] == p["model.settings.dropout"]
    assert (tune_dir / "study.db").is_file()
    assert len((tune_dir / "trials.csv").read_text().splitlines()) == 4  # header + 3 trials
    page = (tune_dir / "report.html").read_text()
    assert 'id="tuning"' in page and 'alt="trials"' in page

    best = tune_dir / "best.yaml"
    assert "tune" not in yaml.safe_load(best.read_text())
    best_trial = doc["best"]
    assert main(["train", str(best), f"output_dir={tmp_path / 'best-runs'}", "trainer.max_epochs=1"]) == 0
    run = next((tmp_path / "best-runs").iterdir())
    config = load_config(run / "config.yaml")
    assert config.optim.lr == best_trial["params"]["optim.lr"]
    assert config.task.label_smoothing == best_trial["params"]["task.label_smoothing"]


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({"optim.lrr": {"low": 0.1, "high": 1.0}}, "tune.optim.lrr: 'lrr' is not a setting of optim"),
        ({"optim.lr": {"low": 0.1, "high": 0.01}}, "tune.optim.lr: low (0.1) must be below high"),
        ({"optim.lr": {"low": 0.0, "high": 0.1, "log": True}}, "tune.optim.lr: a log range needs low > 0"),
        ({"optim.lr": {"high": 0.1}}, "tune.optim.lr: a range needs both low and high"),
        ({"optim.lr": {"low": 0.1, "high": 1.0, "steps": 2}}, "tune.optim.lr: unknown option(s) steps"),
        ({"optim.scheduler": {"choices": []}}, "tune.optim.scheduler: choices must be a non-empty list"),
        ({"optim.scheduler": {"choices": ["cosine", "bogus"]}}, "tune.optim.scheduler: the value 'bogus'"),
        ({"data.test_split": {"choices": ["train", "test"]}}, "tune.data.test_split: defines the data or the protocol"),
        ({"optim": {"low": 0.1, "high": 1.0}}, "tune.optim: is a section"),
        ({"optim.lr": 0.1}, "tune.optim.lr: expected {low, high"),
    ],
)
def test_search_space_errors_name_the_key(search: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_search_space(search, {"data": {"store": "x.h5"}})
    assert message in str(err.value)


def test_search_space_kinds() -> None:
    params = parse_search_space(
        {"data.batch_size": {"low": 2, "high": 8, "step": 2}, "optim.lr": {"low": 1e-4, "high": 1e-2, "log": True},
         "data.augment.gain.p": {"choices": [0.0, 0.5]}}, {})
    assert [(p.key, p.kind) for p in params] == [("data.batch_size", "int"), ("optim.lr", "float"),
                                                 ("data.augment.gain.p", "choice")]


def poisoned_copy(src: Path, dest: Path, poison: str) -> Path:
    """``src`` with the clips of the test split (or test fold 1) given other labels and
    replaced by loud noise; every other clip is the same."""
    store = Store(src)
    rng = np.random.default_rng(7)
    header = StoreHeader(store.sample_rate, store.label_names, task=store.task, dataset="poisoned")
    with StoreWriter(dest, header) as w:
        for i in range(len(store)):
            clip = store[i]
            audio, target = clip.audio, int(clip.target)
            is_test = clip.split == "test" if poison == "split" else clip.fold == 1
            if is_test:
                audio = rng.uniform(-0.9, 0.9, audio.size).astype(np.float32)
                target = (target + 1 + int(rng.integers(store.num_classes - 1))) % store.num_classes
            kw = {"fold": clip.fold} if poison == "fold" else {"split": clip.split}
            w.add(audio, target, clip_id=clip.clip_id, **kw)
    store.close()
    return dest


@pytest.mark.parametrize("protocol", ["val", "cv"])
def test_poisoned_test_data_leaves_the_search_identical(protocol: str, tmp_path: Path) -> None:
    folds = 3 if protocol == "cv" else None
    clean = make_store(tmp_path / "clean.h5", classes=3, seconds=0.5, clips_per_class=6, folds=folds)
    poisoned = poisoned_copy(clean, tmp_path / "poisoned.h5", "fold" if folds else "split")
    a, b = Store(clean), Store(poisoned)
    test = a.indices(folds=[1]) if folds else a.indices(split="test")
    assert test.size and not np.array_equal(a.targets[test], b.targets[test]), "the poison changes the test labels"
    extra = "  fold: 1\n" if folds else ""
    results = []
    for name, store in (("clean", clean), ("poisoned", poisoned)):
        recipe = write_recipe(tmp_path / f"{name}.yaml", store, search={"optim.lr": SEARCH["optim.lr"]})
        if extra:  # a k-fold recipe: fold 1 is its test fold
            raw = yaml.safe_load(recipe.read_text())
            raw["data"]["fold"] = 1
            recipe.write_text(yaml.safe_dump(raw))
        res = tune(recipe, 2, name=name, protocol=protocol, cv_folds=2 if folds else None)
        results.append(trial_summary(res.trials))
        assert not (res.tune_dir / "trial-0000" / "metrics.json").exists(), "no trial scores the test data"
    assert results[0] == results[1]
    assert all(r[2] is not None for r in results[0])


def test_resume_after_sigkill_keeps_finished_trials(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.h5", classes=3, seconds=0.5, clips_per_class=6)
    recipe = write_recipe(tmp_path / "r.yaml", store, epochs=6)
    tune_dir = tmp_path / "runs" / "search-tune"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "audioclf.cli", "tune", str(recipe), "--trials", "3", "--no-prune"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 240
        # kill while trial 1 trains: trial 0 is finished and trial 1 has its run directory
        while time.time() < deadline and proc.poll() is None:
            if (tune_dir / "trial-0001" / "config.yaml").is_file() and (tune_dir / "trials.json").is_file():
                break
            time.sleep(0.1)
        assert proc.poll() is None, f"the search ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = json.loads((tune_dir / "trials.json").read_text())["trials"]
    finished = [r for r in before if r["state"] == "complete"]
    assert len(finished) == 1 and finished[0]["number"] == 0
    # the same command again continues the search
    res = tune(recipe, 3, protocol="val", prune=False)
    rows = res.trials
    assert trial_summary(rows)[0] == trial_summary(finished)[0], "the finished trial is kept as it was"
    states = [r["state"] for r in rows]
    assert states.count("complete") == 3
    cut = next(r for r in rows if r["number"] == 1)
    assert cut["state"] == "fail"
    rerun = next(r for r in rows if r["number"] == 2)
    assert rerun["params"] == cut["params"], "the cut-off trial runs again with its values"
    # --resume DIR continues too, with the recipe saved there
    res = tune(None, 4, resume=tune_dir, prune=False)
    assert [r["state"] for r in res.trials].count("complete") == 4
    assert trial_summary(res.trials)[: len(rows)] == trial_summary(rows)
    values = [tuple(sorted(r["params"].items())) for r in res.trials if r["state"] == "complete"]
    assert len(set(values)) == len(values), "a continued search does not repeat the values it already tried"


def test_continuing_with_another_recipe_is_refused(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.h5", classes=3, seconds=0.5, clips_per_class=6)
    recipe = write_recipe(tmp_path / "r.yaml", store, epochs=1)
    tune(recipe, 1)
    with pytest.raises(ValueError, match="holds a search of another recipe"):
        tune(recipe, 2, ["optim.weight_decay=0.5"])


def test_recipe_without_tune_section(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.h5", classes=3, seconds=0.5, clips_per_class=6)
    recipe = tmp_path / "plain.yaml"
    recipe.write_text(f"data:\n  store: {store}\n")
    with pytest.raises(ConfigError, match="no tune: section"):
        tune(recipe, 1)


def test_pruner_stops_a_trial_after_its_first_epoch_report(tmp_path: Path) -> None:
    import optuna

    from audioclf.training.tune import score_trial

    store = make_store(tmp_path / "s.h5", classes=3, seconds=0.5, clips_per_class=6)
    config = load_config(None, [f"data.store={store}", "trainer.max_epochs=4", "trainer.progress_bar=false",
                                "model.settings={channels: [4, 8]}", "data.batch_size=4"])
    # accuracy never reaches 2: this pruner stops every trial at its first report
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        score_trial(config, trial, tmp_path / "trial")
    assert list(trial.storage.get_trial(trial._trial_id).intermediate_values) == [0]  # epoch 0 only
    # the same run without pruning reports every epoch
    trial = study.ask()
    score = score_trial(config, trial, tmp_path / "trial2", prune=False)
    assert list(trial.storage.get_trial(trial._trial_id).intermediate_values) == [0, 1, 2, 3]
    assert 0.0 <= score <= 1.0
