"""``audioclf push``: a run written in audioclf's Hub format (``--dir``) and uploaded to the
local Hub stand-in, then read back with the same outputs as the run's checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from audioclf.cli import main
from audioclf.inference import Classifier
from audioclf.models.hub import hub_download, load_model_dir
from tests.models.test_hub import lite


@pytest.fixture
def run_dir(tmp_path):
    """A run directory as training leaves it: config.yaml, checkpoints/best.ckpt (an audioclf
    bundle), metrics.json."""
    model, info = lite(0)
    run = tmp_path / "runs" / "esc-lite-20261202-0100"
    (run / "checkpoints").mkdir(parents=True)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"audioclf": info, "state_dict": state}, run / "checkpoints" / "best.ckpt")
    (run / "config.yaml").write_text(yaml.safe_dump(info["config"]))
    (run / "metrics.json").write_text(json.dumps({"checkpoint": "best.ckpt", "split": "test", "accuracy": 0.875, "clips": 8}))
    return run


def test_push_dir_writes_locally_then_push_uploads_it(hub, run_dir, tmp_path, capsys):
    out = tmp_path / "esc-lite"
    assert main(["push", str(run_dir), "me/esc-lite", "--dir", str(out), "--license", "cc-by-nc-4.0"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (out / "README.md").read_text()
    assert "| accuracy | 0.8750 |" in card and yaml.safe_load(card.split("---\n")[1])["license"] == "cc-by-nc-4.0" and "hf:me/esc-lite" in card
    assert hub.requests == []  # --dir uploads nothing
    assert "audioclf push" in capsys.readouterr().out

    assert main(["push", str(out), "me/esc-lite", "--private"]) == 0
    repo = hub.repos[("model", "me/esc-lite")]
    assert repo.private
    assert hub.files("me/esc-lite")["model.safetensors"] == (out / "model.safetensors").read_bytes()
    assert hub.validated and "library_name: audioclf" in hub.validated[-1]  # the card's front matter was checked

    # what comes back from the Hub scores audio exactly as the run's checkpoint does
    ref = Classifier.from_checkpoint(run_dir / "checkpoints" / "best.ckpt")
    back = Classifier(*load_model_dir(hub_download("hf:me/esc-lite")))
    audio = np.random.default_rng(3).uniform(-0.5, 0.5, 40000).astype(np.float32)
    assert np.array_equal(back.scores(audio, sample_rate=ref.sample_rate), ref.scores(audio, sample_rate=ref.sample_rate))
    assert back.label_names == ref.label_names


def test_push_a_run_straight_to_a_branch(hub, run_dir):
    assert main(["push", str(run_dir / "checkpoints" / "best.ckpt"), "me/esc-lite", "--revision", "v1"]) == 0
    files = hub.files("me/esc-lite", "v1")
    assert {"model.safetensors", "config.json", "README.md"} <= set(files)
    assert "| accuracy | 0.8750 |" in files["README.md"].decode()  # a checkpoint in a run brings its metrics
    assert "model.safetensors" not in hub.files("me/esc-lite", "main")


def test_push_errors_exit_2(hub, run_dir, tmp_path, capsys):
    def err() -> str:
        return " ".join(capsys.readouterr().err.split())  # rich wraps long lines

    assert main(["push", str(run_dir), "not-a-repo-id", "--dir", str(tmp_path / "o")]) == 2
    assert "'not-a-repo-id': not a Hub repository id" in err()
    assert not (tmp_path / "o").exists()  # checked before anything is written
    assert main(["push", str(tmp_path / "nowhere"), "me/x"]) == 2
    assert "nowhere" in err()
    out = tmp_path / "d"
    assert main(["push", str(run_dir), "me/x", "--dir", str(out)]) == 0
    assert main(["push", str(out), "me/x", "--dir", str(tmp_path / "again")]) == 2
    assert "already a Hub-format directory" in err()
    assert ("model", "me/x") not in hub.repos


def test_push_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["push", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--dir" in text and "--private" in text


def test_the_card_names_the_hub_dataset_the_run_was_trained_on(hub, run_dir, tmp_path):
    from audioclf.data.catalog import create_source
    from audioclf.data.prepare import prepare_dataset
    from tests.data.catalog.test_hf import pets

    hub.commit("org/pets", pets(tmp_path), repo_type="dataset")
    store = tmp_path / "pets.h5"
    prepare_dataset(create_source("hf", "org/pets"), store, sample_rate=8000)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["data"]["store"] = str(store)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["push", str(run_dir), "me/pets", "--dir", str(tmp_path / "out")]) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert yaml.safe_load(card.split("---\n")[1])["datasets"] == ["org/pets"]
    assert "On the test split of org/pets." in card and "- dataset: org/pets" in card


def test_push_sends_the_token_and_says_how_to_log_in_without_one(hub, run_dir, monkeypatch, capsys):
    hub.token = "hf_test_token"
    assert main(["push", str(run_dir), "me/locked"]) == 2
    assert "set HF_TOKEN" in " ".join(capsys.readouterr().err.split())
    assert ("model", "me/locked") not in hub.repos
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    assert main(["push", str(run_dir), "me/locked"]) == 0
    assert "model.safetensors" in hub.files("me/locked")
