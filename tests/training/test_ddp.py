"""A real 2-process DDP training on the CPU (gloo), through Lightning's own ``ddp``
launcher, ``audioclf resume`` and ``torchrun``: each epoch's batches across the ranks are
exactly the training set; validation and test figures equal those of a single-process
evaluation of the best checkpoint (shards of unequal size: 5 clips over 2 ranks); one run
directory, one best checkpoint, one ``metrics.json``; a DDP run killed mid-epoch and
resumed, its clips loaded in the training process or by worker processes, ends with the
weights of the uninterrupted one; ``audioclf cv`` runs under ``torchrun``."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from audioclf.inference.evaluate import evaluate_checkpoint
from tests.training.ddp_driver import KILLED_WORKERS
from tests.training.helpers import make_store

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[2] / "src"
DRIVER = Path(__file__).with_name("ddp_driver.py")
# 5 classes x 7 clips: 25 training clips, 5 validation and 5 test clips (3 + 2 per rank)
TRAIN_CLIPS = 25
KILL_AT = 4  # epoch 1 (3 steps an epoch: 25 clips, 2 ranks, batches of 4), second batch


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(SRC.parent), env.get("PYTHONPATH", "")])
    env["DDP_KILL_AT"] = str(KILL_AT)
    # nothing left over from a launcher that started this test run
    for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID"):
        env.pop(k, None)
    return env


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd[:4]} failed:\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}"
    return res


@pytest.fixture(scope="module")
def launch(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("ddp")
    store = make_store(work / "single.h5", classes=5, clips_per_class=7)
    ml_store = make_store(work / "multi.h5", classes=5, clips_per_class=7, multi_label=True)
    _run([sys.executable, str(DRIVER), str(work), str(store), str(ml_store)], cwd=work)
    return {"work": work, "store": store, "ml_store": ml_store, **json.loads((work / "results.json").read_text())}


def _val_row(run_dir: Path, epoch: int) -> dict[str, str]:
    with (run_dir / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/loss") and int(r["epoch"]) == epoch]
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_rank_zero_writes_one_run_directory(launch: dict, kind: str) -> None:
    runs = list((launch["work"] / kind).iterdir())
    assert len(runs) == 1 and runs[0].resolve() == Path(launch[kind]["run_dir"]).resolve()
    run = runs[0]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert sorted(p.name for p in run.iterdir() if p.is_file()) == ["config.yaml", "metrics.csv", "metrics.json"]
    assert json.loads((run / "metrics.json").read_text())["clips"] == 5


def test_each_epoch_trains_every_clip_once_across_ranks(launch: dict) -> None:
    records = [json.loads((launch["work"] / "record" / f"rank{r}.json").read_text()) for r in range(2)]
    assert records[0].keys() == records[1].keys() == {"0", "1"}
    epochs = []
    for epoch in ("0", "1"):
        batches = [records[r][epoch]["batches"] for r in range(2)]
        seen = [i for rank in batches for b in rank for i in b]
        assert sorted(seen) == list(range(TRAIN_CLIPS))  # each clip once, none left out
        assert len(batches[0]) == len(batches[1])  # the same number of steps on both ranks
        for r in range(2):  # and what each rank trained on is what its sampler laid out
            assert records[r][epoch]["trained"] == [len(b) for b in batches[r]]
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # a new order every epoch


@pytest.mark.parametrize(("kind", "figures"), [("single", ("accuracy", "f1_macro", "balanced_accuracy")),
                                               ("multi", ("mAP", "mean_auc", "precision_at_1"))])
def test_metrics_are_those_of_all_predictions(launch: dict, kind: str, figures: tuple[str, ...]) -> None:
    run, best = Path(launch[kind]["run_dir"]), Path(launch[kind]["best"])
    store = launch["store" if kind == "single" else "ml_store"]
    # the test figures: every rank scored its shard (3 and 2 clips), gathered, computed once
    reported = json.loads((run / "metrics.json").read_text())
    alone = evaluate_checkpoint(best, store, split="test")
    assert reported["clips"] == alone["clips"] == 5
    for k in figures:
        assert reported[k] == pytest.approx(alone[k], abs=1e-6), k
    # the validation figures of the epoch the best checkpoint was taken at
    epoch = int(torch.load(best, map_location="cpu", weights_only=False)["epoch"])
    row = _val_row(run, epoch)
    alone = evaluate_checkpoint(best, store, split="validation")
    for k in figures:
        assert float(row[f"val/{k}"]) == pytest.approx(alone[k], abs=1e-6), k


@pytest.mark.parametrize("workers", KILLED_WORKERS)
def test_resumed_ddp_run_ends_with_the_weights_of_an_uninterrupted_one(launch: dict, workers: int) -> None:
    # the uninterrupted run loaded its clips with one worker per rank; the killed one with
    # ``workers`` (a run is the same whatever the worker count)
    parent = launch["work"] / f"killed-w{workers}"
    killed = next(parent.iterdir())
    step = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
    assert step == KILL_AT  # it did stop mid-run (mid-epoch: 3 steps an epoch)
    _run([sys.executable, "-m", "audioclf.cli", "resume", str(killed)], cwd=launch["work"])
    assert list(parent.iterdir()) == [killed]  # resumed in place, no new directory
    resumed = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    straight = torch.load(Path(launch["single"]["run_dir"]) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["global_step"] == straight["global_step"] == 6
    assert resumed["state_dict"].keys() == straight["state_dict"].keys()
    for k, v in straight["state_dict"].items():
        # the same operations on the same numbers in the same order: bit for bit
        assert torch.equal(resumed["state_dict"][k], v), k


def test_cv_under_torchrun(tmp_path: Path) -> None:
    store = make_store(tmp_path / "folds.h5", classes=3, clips_per_class=8, folds=2)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("recipe: none\nname: cvddp\nmodel:\n  settings: {channels: [8, 16]}\n")
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    _run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "audioclf.cli", "cv", str(recipe),
          f"data.store={store}", f"output_dir={tmp_path / 'runs'}", "trainer.max_epochs=1", "data.batch_size=4",
          "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "trainer.progress_bar=false"],
         cwd=tmp_path)
    [cv_dir] = list((tmp_path / "runs").iterdir())  # one CV directory, made by rank 0 only
    assert sorted(p.name for p in cv_dir.iterdir() if p.is_dir()) == ["fold-01", "fold-02"]
    table = json.loads((cv_dir / "cv_results.json").read_text())
    assert [f["fold"] for f in table["folds"]] == [1, 2]
    for fold in table["folds"]:
        assert fold["test"]["clips"] == 12  # each fold's test clips once, over both ranks
