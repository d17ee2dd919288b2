"""``audioclf benchmark``'s pieces on tiny inputs: they run, and their figures mean what they say."""

from __future__ import annotations

from pathlib import Path

import pytest

from audioclf import benchmark as b
from audioclf.data.store import Store


def test_folder_dataset_prepares_and_reads(tmp_path: Path) -> None:
    folder = b.make_folder_dataset(tmp_path / "f", clips=30, classes=3, seconds=0.25)
    assert sorted(p.name for p in folder.iterdir()) == ["class00", "class01", "class02"]
    fig = b.Figures()
    store = b.bench_prepare(folder, tmp_path / "f.h5", fig)
    s = Store(store)
    assert len(s) == 30 and s.num_classes == 3
    b.bench_store_reads(store, fig, workers=(0, 1), batch=4)
    rows = [r for r in fig.rows if r[0] == "store read"]
    assert [r[2] for r in rows] == ["0 worker(s), batch 4", "1 worker(s), batch 4"]
    assert all(r[3] > 0 and r[4] == "clips/s" for r in fig.rows)
    table = fig.markdown("t")
    assert table.startswith("### t") and table.count("\n| ") == len(fig.rows) + 2  # header, rule, rows


def test_training_comparison_runs_both_loops_on_the_same_batches(tmp_path: Path) -> None:
    store = b.make_store(tmp_path / "s.h5", clips=40, classes=4, samples=16000, sample_rate=16000)
    fig = b.Figures()
    b.bench_training(store, "cnn_lite", fig, epochs=1, batch=4, batches=2, overrides=["model.settings={channels: [4, 8]}"])
    bare = fig.get("training", "cnn_lite", "bare PyTorch loop, batch 4")
    ours = fig.get("training", "cnn_lite", "audioclf loop, batch 4")
    assert fig.get("training", "cnn_lite", "audioclf / bare") == pytest.approx(ours / bare)


def test_cli_benchmark_rejects_an_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    from audioclf.cli import main

    assert main(["benchmark", "--models", "cnn_lite,nope"]) == 2
    assert "nope" in capsys.readouterr().err
