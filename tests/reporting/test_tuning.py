"""The hyperparameter-search section of a tune directory's report."""

from __future__ import annotations

import json
from pathlib import Path

from audioclf.reporting import build_report
from audioclf.reporting.tuning import tuning_section
from tests.reporting.support import TinyRun

TRIALS = {
    "metric": "val/accuracy",
    "direction": "maximize",
    "params": ["optim.lr", "optim.scheduler"],
    "trials": [
        {"number": 0, "state": "complete", "value": 0.61, "steps": 3, "seconds": 4.0,
         "params": {"optim.lr": 0.001, "optim.scheduler": "cosine"}},
        {"number": 1, "state": "pruned", "value": 0.2, "steps": 1, "seconds": 1.0,
         "params": {"optim.lr": 0.09, "optim.scheduler": "plateau"}},
        {"number": 2, "state": "complete", "value": 0.775, "steps": 3, "seconds": 4.2,
         "params": {"optim.lr": 0.004, "optim.scheduler": "cosine"}},
        {"number": 3, "state": "fail", "value": None, "steps": 0, "seconds": None, "params": {"optim.lr": 0.02}},
    ],
    "best": {"number": 2, "state": "complete", "value": 0.775, "params": {"optim.lr": 0.004, "optim.scheduler": "cosine"}},
}


def test_tune_directory_report_has_the_trials_table_and_plot(tmp_path: Path) -> None:
    (tmp_path / "trials.json").write_text(json.dumps(TRIALS))
    (tmp_path / "best.yaml").write_text("optim:\n  lr: 0.004\n")
    report = build_report(tmp_path)
    page = report.html
    section = page[page.index('<section id="tuning">'):]
    section = section[: section.index("</section>")]
    assert "trial 2" in section and "0.7750" in section  # the best trial
    for state in ("complete", "pruned", "fail"):
        assert f"<td>{state}</td>" in section
    assert "plateau" in section and "0.0900" in section  # every trial's values
    assert "trials" in report.figures and 'alt="trials"' in section
    assert "best.yaml" in section and "lr: 0.004" in section
    assert "never read" in section


def test_run_directory_has_no_tuning_section(run: TinyRun) -> None:
    assert tuning_section(run.run_dir) == ""
    assert 'id="tuning"' not in build_report(run.run_dir).html
