"""Ctrl-C on a real ``audioclf`` process: one line "interrupted", exit 130, no tracebacks
from it or its worker processes, and what was done stays resumable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.training.helpers import make_store


def ctrl_c(argv: list[str], ready: Callable[[], bool], timeout: float = 120.0) -> tuple[int, str]:
    """Run ``audioclf ARGV``, and once ``ready()`` holds, send SIGINT to its whole process
    group (what a terminal does on Ctrl-C, workers included). Returns (exit code, stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "audioclf.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=env)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"finished before it could be interrupted: {proc.communicate()}")
            assert time.monotonic() < deadline, "never became ready"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err


def test_ctrl_c_on_prepare_with_workers_is_quiet_and_resumable(tmp_path: Path) -> None:
    store = tmp_path / "syn.h5"
    partial = tmp_path / "syn.h5.partial"
    argv = ["prepare", "synthetic", "--out", str(store), "--workers", "2", "-o", "clips_per_class=400", "-o", "seconds=2"]
    code, err = ctrl_c(argv, lambda: partial.exists() and partial.stat().st_size > 200_000)
    assert code == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err and "AssertionError" not in err and "KeyboardInterrupt" not in err, err
    assert partial.exists() and not store.exists()
    # the next run resumes from the partial store
    from audioclf.data.catalog import create_source
    from audioclf.data.prepare import prepare_dataset

    report = prepare_dataset(create_source("synthetic", clips_per_class=400, seconds=2.0), store, workers=2)
    assert report.resumed_clips > 0 and report.clips == 400 * len(create_source("synthetic").label_names())


def test_ctrl_c_on_train_exits_130_and_the_run_resumes(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.h5", classes=3, clips_per_class=6)
    runs = tmp_path / "runs"
    argv = ["train", f"data.store={store}", f"output_dir={runs}", "name=r", "trainer.max_epochs=1000",
            "trainer.progress_bar=false", "model.settings={channels: [8, 16]}"]
    code, err = ctrl_c(argv, lambda: any(runs.glob("r-*/checkpoints/last.ckpt")))
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err, err
    run = next(runs.glob("r-*"))
    from audioclf.cli import main

    assert main(["resume", str(run), "trainer.max_epochs=2"]) == 0


def test_ctrl_c_on_serve_exits_130(tmp_path: Path) -> None:
    import socket

    import httpx

    from tests.inference.test_evaluate import bundle

    ckpt = bundle(tmp_path / "m.ckpt")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    code, err = ctrl_c(["serve", str(ckpt), "--port", str(port)], up)
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err, err
