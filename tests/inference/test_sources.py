"""Every entry point that takes a model takes a model source: a published file through
``predict --timeline``, ``export``, ``report`` and ``serve`` (the catalog and Hub routes share
the resolver tested in tests/models/test_pretrained.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audioclf.cli import main
from audioclf.inference import Classifier
from audioclf.models import create_model
from tests.golden import rule_value


@pytest.fixture(scope="module")
def lite_file(tmp_path_factory) -> Path:
    """A bare state dict of cnn_lite (3 classes): a published file whose architecture must
    be named with --model."""
    state = {k: rule_value(k, list(v.shape)) if v.is_floating_point() else v
             for k, v in create_model("cnn_lite", 3).state_dict().items()}
    path = tmp_path_factory.mktemp("sources") / "lite.pt"
    torch.save(state, path)
    return path


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "long.wav"
    sf.write(path, (0.1 * rng.standard_normal(16000 * 4)).astype(np.float32), 16000)
    return path


def test_predict_timeline_with_a_published_file(lite_file, recording, tmp_path, capsys):
    out = tmp_path / "tl.json"
    capsys.readouterr()
    assert main(["predict", str(lite_file), str(recording), "--model", "cnn_lite", "--timeline", "--hop", "0.5",
                 "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)[str(recording)]
    assert report["frames"] == 7 and {t["label"] for t in report["top"]} <= {"class_0", "class_1", "class_2"}
    direct = Classifier.from_pretrained(lite_file, model="cnn_lite").predict_timeline(recording, hop=0.5)
    assert json.loads(out.read_text())["label_names"] == direct.label_names


def test_export_a_published_file(lite_file, tmp_path, capsys):
    out = tmp_path / "lite.onnx"
    assert main(["export", str(lite_file), "--model", "cnn_lite", "--out", str(out)]) == 0
    assert out.is_file()
    sidecar = json.loads((tmp_path / "lite.onnx.json").read_text())
    assert sidecar["label_names"] == ["class_0", "class_1", "class_2"]


def test_report_of_a_published_file_with_audio(lite_file, recording, tmp_path):
    out = tmp_path / "r.html"
    assert main(["report", str(lite_file), str(recording), "--model", "cnn_lite", "--out", str(out)]) == 0
    page = out.read_text()
    assert "class_0" in page and "AudioclfPlayer.mount" in page


def test_serve_loads_a_model_source(lite_file, monkeypatch):
    import uvicorn

    from audioclf import serve as serve_mod

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    serve_mod.serve(str(lite_file), port=0, model="cnn_lite")
    assert seen["port"] == 0 and seen["app"].title
    from fastapi.testclient import TestClient

    with TestClient(seen["app"]) as client:
        wav = Path(lite_file).with_name("one.wav")
        sf.write(wav, np.zeros(16000, np.float32), 16000)
        r = client.post("/predict", files={"file": ("one.wav", wav.read_bytes(), "audio/wav")})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["label"].startswith("class_")


def test_from_pretrained_reads_an_audioclf_bundle_like_from_checkpoint(lite_checkpoint, recording):
    a = Classifier.from_checkpoint(lite_checkpoint)
    b = Classifier.from_pretrained(lite_checkpoint)
    assert a.info == b.info
    np.testing.assert_array_equal(a.scores(recording), b.scores(recording))
    with pytest.raises(ValueError, match="not --model cnn14"):
        Classifier.from_pretrained(lite_checkpoint, model="cnn14")
