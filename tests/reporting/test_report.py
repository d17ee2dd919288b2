from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audioclf.cli import main
from audioclf.inference import Classifier
from audioclf.inference.evaluate import evaluate_model
from audioclf.reporting import build_report, write_report
from tests.reporting.support import TinyRun


def embedded_payload(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="acp-data">(.*?)</script>', page, re.S)
    assert m, "the player's data is embedded in the page"
    return json.loads(m.group(1))


def assert_self_contained(page: str) -> None:
    """Nothing is loaded from elsewhere: no http(s)/protocol-relative src or href, no
    external stylesheet or script, no CSS url() pointing out of the file."""
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    outside = [r for r in refs if not r.startswith(("data:", "#"))]
    assert not outside, f"references out of the file: {outside[:3]}"
    assert not re.search(r"<link[^>]+stylesheet", page)
    assert not re.search(r"url\((?!data:)", page)
    assert not re.search(r"<script[^>]+src=", page)


def _copy_without_store(run: TinyRun, dest: Path) -> Path:
    """The run, with its config naming a store that is gone (a run copied elsewhere)."""
    shutil.copytree(run.run_dir, dest)
    config = dest / "config.yaml"
    config.write_text(config.read_text().replace(str(run.store), str(dest / "gone.h5")))
    return dest


def test_report_of_a_run_shows_its_metrics_and_curves(run: TinyRun, tmp_path: Path) -> None:
    copy = _copy_without_store(run, tmp_path / "run")
    report = build_report(copy)
    page = report.html
    test_metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert f"{test_metrics['accuracy']:.4f}" in page, "test accuracy from metrics.json"
    assert "last validation epoch" in page and "val/overfit_gap_pct" in page
    assert "cnn_lite" in page and "single_label" in page
    assert set(report.figures) == {"training_curves"}
    img = f'src="data:image/png;base64,{base64.b64encode(report.figures["training_curves"]).decode()}"'
    assert img in page
    assert "audioclf evaluate CHECKPOINT STORE" in page, "says how to get per-class figures"
    assert "config.yaml" in page
    assert_self_contained(page)


def test_report_with_audio_and_store(run: TinyRun, recording: Path) -> None:
    report = build_report(run.run_dir, recording, store=run.store, rows=4)  # the default evaluation
    page = report.html
    assert set(report.figures) == {"training_curves", "timeline", "confusion_matrix", "per_class_f1"}
    # per-class table: every class with its support in the test split (one clip each here)
    assert page.count("<td>siren</td>") == 1 and "support" in page
    # the audio is inside the page, byte for byte
    audio = re.search(r'<audio id="acp-audio"[^>]*src="data:audio/wav;base64,([^"]+)"', page)
    assert audio and base64.b64decode(audio.group(1)) == recording.read_bytes()
    # the player data are the classifier's own timeline
    payload = embedded_payload(page)
    direct = Classifier.from_checkpoint(run.checkpoint).predict_timeline(recording)
    np.testing.assert_allclose(payload["scores"], direct.scores, atol=1e-4)
    assert payload["label_names"] == direct.label_names
    assert payload["spectrogram"].startswith("data:image/png;base64,")
    assert "AudioclfPlayer.mount" in page and "{rows: 4}" in page
    assert_self_contained(page)


def test_report_reads_and_builds_the_checkpoint_once(
    run: TinyRun, recording: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import audioclf.models
    import audioclf.models.bundle as bundle
    import audioclf.models.pretrained as pretrained

    reads: list[str] = []
    builds: list[str] = []
    read, create = bundle.read_checkpoint_file, bundle.create_model

    def counted_read(path: str | Path) -> object:
        reads.append(str(path))
        return read(path)

    def counted_create(name: str, *args: object, **kwargs: object) -> object:
        builds.append(name)
        return create(name, *args, **kwargs)

    for module in (bundle, pretrained):  # the two places a model source is read and built
        monkeypatch.setattr(module, "read_checkpoint_file", counted_read)
        monkeypatch.setattr(module, "create_model", counted_create)
    monkeypatch.setattr(audioclf.models, "create_model", counted_create)
    report = build_report(run.run_dir, recording, store=run.store, rows=4, evaluate=evaluate_model)
    assert {"timeline", "confusion_matrix"} <= set(report.figures)
    assert len(reads) == 1 and len(builds) == 1, (reads, builds)


def test_report_out_must_not_be_a_directory(run: TinyRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        write_report(run.run_dir, tmp_path)
    assert main(["report", str(run.run_dir), "--out", str(tmp_path)]) == 2
    assert "is a directory" in " ".join(capsys.readouterr().err.split())  # the console wraps lines
    assert list(tmp_path.iterdir()) == []


def test_write_report_defaults_to_the_run_directory(run: TinyRun, tmp_path: Path) -> None:
    copy = tmp_path / run.run_dir.name
    shutil.copytree(run.run_dir, copy)
    path = write_report(copy / "checkpoints" / "best.ckpt", plots_dir=tmp_path / "figs")
    assert path == copy / "report.html" and path.stat().st_size > 10_000
    assert (tmp_path / "figs" / "training_curves.png").read_bytes().startswith(b"\x89PNG")


def test_report_of_a_lone_checkpoint(run: TinyRun, tmp_path: Path) -> None:
    lone = tmp_path / "model.ckpt"
    shutil.copy(run.checkpoint, lone)
    page = build_report(lone).html
    assert "no metrics found" in page and "model.ckpt" in page


def test_report_uses_evaluation_json_from_audioclf_evaluate(run: TinyRun, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run.run_dir, copy)
    figs = tmp_path / "eval-plots"
    code = main(["evaluate", str(copy / "checkpoints" / "best.ckpt"), str(run.store), "--plots", str(figs)])
    assert code == 0
    ev = json.loads((copy / "evaluation.json").read_text())
    assert ev["checkpoint"].endswith("best.ckpt") and ev["store"] == str(run.store) and ev["split"] == "test"
    assert len(ev["confusion_matrix"]) == 12 and set(ev["per_class"]["siren"]) == {"precision", "recall", "f1", "support"}
    assert sum(map(sum, ev["confusion_matrix"])) == ev["clips"]
    assert sorted(p.name for p in figs.iterdir()) == ["confusion_matrix.png", "per_class_f1.png"]
    report = build_report(copy)
    assert "confusion_matrix" in report.figures and "Per class (test)" in report.html


def test_report_cli(run: TinyRun, recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(run.run_dir), str(recording), "--out", str(out), "--plots", str(tmp_path / "p"), "--rows", "3"]) == 0
    assert "acp-data" in out.read_text()
    assert (tmp_path / "p" / "timeline.png").is_file()


def test_report_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing-run")]) == 2
    assert "missing-run" in capsys.readouterr().err


def test_report_audio_errors_name_the_file(run: TinyRun, tmp_path: Path) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    with pytest.raises(ValueError, match=r"notes\.wav.*not a readable audio file"):
        build_report(run.run_dir, bad)


def test_report_of_a_multi_label_evaluation_shows_per_class_ap(run: TinyRun, tmp_path: Path) -> None:
    import torch

    from audioclf.metrics import compute_metrics

    copy = tmp_path / "run"
    shutil.copytree(run.run_dir, copy)
    g = torch.Generator().manual_seed(0)
    names = [f"tag{i}" for i in range(5)]
    metrics = compute_metrics(torch.rand(30, 5, generator=g), (torch.rand(30, 5, generator=g) > 0.5).long(), True,
                              names, per_class=True)
    (copy / "evaluation.json").write_text(json.dumps({"checkpoint": "x", "split": "eval", **metrics}))
    report = build_report(copy)
    assert "per_class_ap" in report.figures and "confusion_matrix" not in report.figures
    assert f"{metrics['mAP']:.4f}" in report.html and "<td>tag3</td>" in report.html


def test_report_evaluates_on_the_store_named_in_the_runs_config(run: TinyRun) -> None:
    # no evaluation.json, no --store: the store in config.yaml gives the per-class figures
    assert not (run.run_dir / "evaluation.json").exists()
    report = build_report(run.run_dir)
    assert {"confusion_matrix", "per_class_f1"} <= set(report.figures)
    assert "Per class (test)" in report.html and "<td>siren</td>" in report.html


def test_a_report_that_scores_the_runs_store_imports_no_training_module(run: TinyRun) -> None:
    # the auto-store path evaluates the checkpoint; it must not reach the training package
    # (Lightning) by any route, lazy imports included
    code = (
        "import sys\nfrom audioclf.reporting import build_report\n"
        f"report = build_report({str(run.run_dir)!r})\n"
        "print('FIGURES', sorted(report.figures))\n"
        "print('TRAINING', sorted(m for m in sys.modules if m.startswith('audioclf.training') or m == 'lightning'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'confusion_matrix'" in out and "TRAINING []" in out, out


def test_one_metrics_table_per_split(run: TinyRun) -> None:
    page = build_report(run.run_dir).html  # metrics.json (test) and an evaluation of test
    assert page.count("<h3>test split</h3>") == 1
    assert "test (metrics.json)" not in page and "evaluation (test)" not in page
    assert f"evaluation of the checkpoint on {run.store.name}" in page
    # an evaluation of another split is a table of its own
    from audioclf.reporting.report import split_tables

    tables = split_tables({"split": "test", "accuracy": 0.5}, {"split": "validation", "accuracy": 0.7})
    assert [(t[0], t[2]["accuracy"]) for t in tables] == [("test", 0.5), ("validation", 0.7)]


def test_weights_are_labelled_in_words() -> None:
    from audioclf.reporting.report import weights_label

    assert weights_label({"weights": "model"}) == "raw: the optimiser's weights (no EMA)"
    ema = {"weights": "ema", "config": {"task": {"ema_decay": 0.999, "ema_unit": "step"}}}
    assert weights_label(ema) == "EMA: exponential moving average of the training weights (decay 0.999 per step)"


def test_an_existing_report_is_never_replaced_without_force(run: TinyRun, recording: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy_without_store(run, tmp_path / "run")
    rich = write_report(copy, None, recording)  # the richer one: with the audio player
    assert rich == copy / "report.html"
    before = rich.read_bytes()
    capsys.readouterr()
    assert main(["report", str(copy)]) == 0  # no audio this time: a poorer report
    said = " ".join(capsys.readouterr().out.split())
    assert rich.read_bytes() == before, "the richer report was overwritten"
    assert (copy / "report-2.html").is_file() and "pass --force to replace it" in said
    assert "report-2.html" in said
    # an explicit --out that exists is refused, and names the flag
    assert main(["report", str(copy), "--out", str(rich)]) == 2
    assert "pass --force" in capsys.readouterr().err and rich.read_bytes() == before
    # --force replaces it
    assert main(["report", str(copy), "--force"]) == 0
    assert rich.read_bytes() != before and "acp-data" not in rich.read_text()
    assert not (copy / "report-3.html").exists()


def test_spectrogram_frequency_ticks_sit_where_the_mel_scale_puts_them() -> None:
    from audioclf.reporting.plots import Spectrogram

    # Slaney's mel scale is linear below 1 kHz (mel = 3 f / 200): over 0-1000 Hz with 9
    # bands (centres at 1.5, 3, ..., 13.5 mel), 500 Hz = 7.5 mel is the centre of band 4 of
    # 0-8, the middle of the image; 1 kHz = 15 mel lies half a band above the top band's centre
    spec = Spectrogram(np.zeros((9, 4)), 0.01, 0.04, fmin=0.0, fmax=1000.0)
    ticks = dict((label, pos) for pos, label in spec.frequency_ticks())
    assert ticks["500 Hz"] == pytest.approx(0.5)
    assert ticks["200 Hz"] == pytest.approx((200 * 3 / 200 / 1.5 - 1 + 0.5) / 9, abs=1e-4)  # 4 decimals
    assert "1 kHz" not in ticks  # 1 kHz would be at (10 - 1 + 0.5) / 9 > 1: off the image
    assert "100 Hz" in ticks and "50 Hz" not in ticks  # 50 Hz (at 0.0) is within 0.08 of 100 Hz (0.056)
    assert Spectrogram(np.zeros((9, 4)), 0.01, 0.04).frequency_ticks() == []  # range unknown


def test_player_payload_carries_the_spectrogram_axis(run: TinyRun, recording: Path) -> None:
    payload = embedded_payload(build_report(run.run_dir, recording).html)
    axis = payload["spectrogram_axis"]
    labels = [label for _, label in axis["ticks"]]
    # 16 kHz audio: bands up to 8 kHz, whose top band is centred below it, so 4 kHz is the last tick
    assert labels == ["200 Hz", "500 Hz", "1 kHz", "2 kHz", "4 kHz"]  # 50 and 100 Hz: too close below 200
    positions = [p for p, _ in axis["ticks"]]
    assert positions == sorted(positions) and positions[0] >= 0 and positions[-1] <= 1
    assert axis["db"][0] < axis["db"][1] and len(axis["colours"]) == 9


def test_an_evaluation_of_the_runs_test_fold_is_the_test_table() -> None:
    from audioclf.reporting.report import split_tables

    # a k-fold run: metrics.json says "test", the evaluation of its test fold says "fold 3"
    tables = split_tables({"split": "test", "accuracy": 0.5}, {"split": "fold 3", "accuracy": 0.5, "store": "/d/esc50.h5"},
                          evaluation_is_test=True)
    assert [(t[0], t[1]) for t in tables] == [("test", "evaluation of the checkpoint on esc50.h5, fold 3 (the run's test clips)")]


def test_overfit_gap_curve_is_explained_beside_the_losses(run: TinyRun, tmp_path: Path) -> None:
    page = build_report(run.run_dir).html
    curves = page[page.index('<section id="curves">'):]
    curves = curves[: curves.index("</section>")]
    note = curves[curves.index('id="overfit-gap-note"'):]
    assert "validation loss &minus; mean training loss" in note  # what it measures
    for misleads in ("augmentation, mixing, label smoothing", "it is a ratio", "loss is not accuracy",
                     "only as honest as the split"):
        assert misleads in note
    # a run that logged no gap gets no note
    bare = tmp_path / "run"
    shutil.copytree(run.run_dir, bare)
    lines = (bare / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    col = header.index("val/overfit_gap_pct")
    kept = [",".join(c for i, c in enumerate(line.split(",")) if i != col) for line in lines]
    (bare / "metrics.csv").write_text("\n".join(kept) + "\n")
    assert 'id="overfit-gap-note"' not in build_report(bare).html
