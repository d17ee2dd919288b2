"""ONNX Runtime inference and static int8 quantisation against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audioclf.data.store import Store
from audioclf.inference.classifier import Classifier
from audioclf.inference.onnx_runtime import INT8_OPS, agreement, calibration_clips, onnx_module
from audioclf.models import create_model
from audioclf.models.bundle import load_bundle_model
from tests.training.helpers import make_store


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four tones, 18 clips each, 1 s at 16 kHz (cnn_lite's rate and length)."""
    return make_store(tmp_path_factory.mktemp("tones") / "s.h5", classes=4, clips_per_class=18)


@pytest.fixture(scope="module")
def trained(tones: Path) -> tuple[torch.nn.Module, dict, torch.Tensor]:
    """(model, info, clips): cnn_lite trained until it tells the tones apart with some margin
    (a bare loop, 100 AdamW steps), so that int8 has real decisions to keep."""
    s = Store(tones)
    x = torch.from_numpy(np.stack([s.read_audio(i) for i in range(len(s))]))
    y = torch.as_tensor(s.targets)
    torch.manual_seed(0)
    model = create_model("cnn_lite", 4, channels=[8, 16])
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        b = torch.randint(0, len(x), (16,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x[b]), y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() >= 0.75  # it did learn: the test below means something
    info = {"model": "cnn_lite", "label_names": s.label_names, "sample_rate": 16000, "clip_samples": x.shape[1],
            "task": "single_label"}
    return model, info, x


def _logits(model: torch.nn.Module, x: np.ndarray | torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(x)).numpy()


def test_onnx_runtime_matches_pytorch(lite_checkpoint: Path, tones: Path) -> None:
    model, info = load_bundle_model(lite_checkpoint)
    clips = calibration_clips(tones, int(info["clip_samples"]), 12, split="test")
    want = _logits(model, clips)
    clf = Classifier.from_checkpoint(lite_checkpoint, runtime="onnx")
    assert clf.info["runtime"] == "onnx" and type(clf.model).__name__ == "OnnxModule"
    got = _logits(clf.model, clips)
    assert np.abs(got - want).max() <= 1e-4 + 1e-4 * np.abs(want).max()
    # the whole Classifier path (windows, softmax) agrees too, on a clip longer than one window
    long = np.concatenate([clips[0], clips[1], clips[2][:5000]])
    np.testing.assert_allclose(clf.scores(long, 16000), Classifier.from_checkpoint(lite_checkpoint).scores(long, 16000),
                               atol=1e-5)


def test_int8_keeps_the_float_models_decisions(trained: tuple, tones: Path) -> None:
    model, info, x = trained
    int8 = onnx_module(model, info, "onnx-int8", calibration=tones, calibration_clips_count=32)
    fig = agreement(_logits(model, x), _logits(int8, x))
    # stated threshold: int8 picks the float model's class on at least 95 % of the 72 clips,
    # and the float model's top-2 classes stay its top-2 on average 90 % of the time
    assert fig["top1_agreement"] >= 0.95, fig
    assert fig["top4_overlap"] == 1.0
    assert agreement(_logits(model, x), _logits(int8, x), k=2)["top2_overlap"] >= 0.9


def test_int8_graph_really_computes_convolutions_in_int8(trained: tuple, tones: Path, tmp_path: Path) -> None:
    import onnx

    from audioclf.inference.export import export_model
    from audioclf.inference.onnx_runtime import quantize_int8

    model, info, x = trained
    export_model(model, tmp_path / "f.onnx", info=info)
    q = quantize_int8(tmp_path / "f.onnx", tmp_path / "q.onnx", calibration_clips(tones, x.shape[1], 8))
    proto = onnx.load(str(q))
    # every convolution of the body is fed by a DequantizeLinear of int8 weights; the
    # frontend (STFT convolution) is left in float
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    producers = {o: n for n in proto.graph.node for o in n.output}
    body = [c for c in convs if not c.name.startswith("/frontend/")]
    assert body and all(producers[c.input[1]].op_type == "DequantizeLinear" for c in body)
    assert all(producers.get(c.input[1]) is None or producers[c.input[1]].op_type != "DequantizeLinear"
               for c in convs if c.name.startswith("/frontend/"))
    assert {p.key: p.value for p in proto.metadata_props}["quantization"] == "int8-static"
    assert "Conv" in INT8_OPS


def test_cli_export_int8(lite_checkpoint: Path, tones: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from audioclf.cli import main

    out = tmp_path / "m.onnx"
    assert main(["export", str(lite_checkpoint), "--out", str(out), "--quantize", "int8", "--calibration", str(tones),
                 "--calibration-clips", "16"]) == 0
    assert "top-1 agreement" in capsys.readouterr().out
    meta = json.loads((tmp_path / "m.int8.onnx.json").read_text())
    assert meta["quantization"] == "int8-static" and meta["calibration_clips"] == 16
    assert 0.0 <= meta["int8_vs_float"]["top1_agreement"] <= 1.0
    clf = Classifier.from_onnx(tmp_path / "m.int8.onnx")
    assert clf.label_names == load_bundle_model(lite_checkpoint)[1]["label_names"]
    assert clf.scores(np.zeros(16000, np.float32), 16000).shape == (len(clf.label_names),)


def test_cli_int8_needs_a_calibration_store(lite_checkpoint: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from audioclf.cli import main

    assert main(["export", str(lite_checkpoint), "--out", str(tmp_path / "x.onnx"), "--quantize", "int8"]) == 2
    assert "--calibration" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_runtime_errors_name_the_problem(lite_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="calibration"):
        Classifier.from_checkpoint(lite_checkpoint, runtime="onnx-int8")
    with pytest.raises(ValueError, match="runtime must be one of"):
        Classifier.from_checkpoint(lite_checkpoint, runtime="tensorrt")


def test_agreement_figures() -> None:
    ref = np.array([[3.0, 2, 1, 0, -1, -2], [0, 1, 2, 3, 4, 5]])
    other = np.array([[3.0, 2, 1, 0, -1, -2], [5, 4, 3, 2, 1, 0]])
    assert agreement(ref, other, k=2) == {"top1_agreement": 0.5, "top2_overlap": 0.5}
