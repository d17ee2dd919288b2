"""CPU inference through ONNX Runtime, in float32 or statically quantised int8.

    clf = Classifier.from_checkpoint("best.ckpt", runtime="onnx")        # exported on the fly
    clf = Classifier.from_checkpoint("best.ckpt", runtime="onnx-int8",   # + int8, calibrated
                                     calibration="data/esc50.h5")
    clf = Classifier.from_onnx("best.onnx")                              # a file `audioclf export` wrote

The exported graph maps a waveform batch ``(batch, clip_samples)`` to logits, frontend
included (see :mod:`audioclf.inference.export`), so ONNX Runtime replaces PyTorch for the
whole forward pass while the :class:`~audioclf.inference.classifier.Classifier` around it
(decoding, windows, timelines) stays the same.

int8 is *static* quantisation (``onnxruntime.quantization.quantize_static``): activation
ranges are calibrated on real clips from the training store, and the convolutions (with the pooling and adds between
them) run in int8 (QDQ format, per-channel weights; see ``INT8_OPS`` for why linear layers
stay float). Dynamic quantisation would quantise only the matmuls and leave the
convolutions, where CNNs spend their time, in float.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audioclf.errors import CheckpointError, ConfigError, DataError, MissingDependencyError

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "compile", "onnx", "onnx-int8")
# What int8 covers: the convolutions (where CNNs and EAT's encoder spend their time) and the
# pooling/adds between them, so consecutive ops stay in int8. Gemm/MatMul stay float: with
# per-channel weights, quantising cnn_lite's linear head alone moved its logits by up to 0.8
# and changed the top-1 class of 15 % of clips (convolutions only: 0.02 and none).
INT8_OPS = ("Conv", "AveragePool", "MaxPool", "Add")


def _ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise MissingDependencyError("the ONNX runtime needs onnxruntime: pip install 'audioclf[export]'") from err
    return ort


class OnnxModule(nn.Module):
    """An exported ONNX file run by ONNX Runtime, behind the model interface the
    Classifier uses: ``forward(waveform (batch, clip_samples)) -> logits (batch, classes)``.

    It has no parameters and no embedding (the export ends at the logits); ``threads``
    sets ONNX Runtime's intra-op threads (default: its own choice, all cores).
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        super().__init__()
        ort = _ort()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.path = Path(path)
        # read into memory: the file may be a temporary one removed after loading
        self.session = ort.InferenceSession(self.path.read_bytes(), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(waveform.detach().cpu().numpy(), dtype=np.float32)
        (logits,) = self.session.run(None, {self.input_name: x})
        return torch.from_numpy(logits)

    def embed(self, waveform: torch.Tensor) -> torch.Tensor:
        raise ConfigError(f"{self.path.name}: an ONNX export ends at the logits; embed with runtime='torch'")


# --- int8 ---------------------------------------------------------------------------------------


def calibration_clips(store: str | Path, clip_samples: int, count: int = 64, *, split: str | None = "train",
                      seed: int = 0) -> np.ndarray:
    """``count`` clips ``(count, clip_samples)`` float32 from ``store`` for int8 calibration:
    drawn at random (a fixed seed) from its ``split`` (all clips when the store has no such
    split), each from its start, zero-padded as in evaluation."""
    from audioclf.data.dataset import ClipDataset
    from audioclf.data.store import Store

    s = Store(store)
    idx = s.indices(split=split) if split is not None and split in s.split_names() else np.arange(len(s))
    if idx.size == 0:
        raise DataError(f"{store}: no clips to calibrate int8 quantisation on")
    pick = np.sort(np.random.default_rng(seed).permutation(idx)[: min(count, idx.size)])
    ds = ClipDataset(s, pick, clip_samples)
    return np.stack([ds[i][0].numpy() for i in range(len(ds))])


class _Batches:
    """onnxruntime's CalibrationDataReader protocol (``get_next`` -> feed dict or None)
    over calibration clips, ``batch`` at a time."""

    def __init__(self, input_name: str, clips: np.ndarray, batch: int = 8) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = (
            {input_name: np.ascontiguousarray(clips[i : i + batch], dtype=np.float32)} for i in range(0, len(clips), batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_int8(src: str | Path, dest: str | Path, calibration: np.ndarray) -> Path:
    """Write a statically quantised int8 copy of the ONNX file ``src`` to ``dest``,
    activation ranges calibrated on ``calibration`` ``(clips, clip_samples)`` (min-max over
    the clips), weights per output channel; the metadata of ``src`` is kept.

    The log-mel frontend (STFT as a convolution, mel matmul, log) is left in float: its
    values span many decades, which one int8 scale cannot hold.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dest = Path(src), Path(dest)
    if len(calibration) == 0:
        raise ConfigError("int8 quantisation needs calibration clips")
    proto = onnx.load(str(src))
    input_name = proto.graph.input[0].name
    exclude = _frontend_nodes(proto)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(dest), _Batches(input_name, calibration),
            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude, op_types_to_quantize=list(INT8_OPS),
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    out = onnx.load(str(dest))
    props = {p.key: p.value for p in proto.metadata_props}
    props["quantization"] = "int8-static"
    onnx.helper.set_model_props(out, props)
    onnx.save(out, str(dest))
    log.info("int8: wrote %s (calibrated on %d clips, %d frontend nodes kept in float)", dest, len(calibration), len(exclude))
    return dest


def _frontend_nodes(proto: Any) -> list[str]:
    """Names of the graph's frontend nodes: everything the exporter scoped under the
    model's ``frontend`` submodule (node names carry the module path)."""
    return [n.name for n in proto.graph.node if "frontend" in n.name.split("/")[1:3] or n.name.startswith("/frontend/")]


# --- from a model to a runtime -------------------------------------------------------------------


def onnx_module(model: nn.Module, info: Mapping[str, Any], runtime: str = "onnx", *,
                calibration: str | Path | np.ndarray | None = None, calibration_clips_count: int = 64,
                threads: int | None = None) -> OnnxModule:
    """``model`` exported (and checked against PyTorch) to a temporary ONNX file, run by ONNX
    Runtime; ``runtime="onnx-int8"`` also quantises it, calibrated on ``calibration`` (a store
    path, whose training clips are used, or an array of clips at the model rate)."""
    from audioclf.inference.export import export_model

    if runtime not in ("onnx", "onnx-int8"):
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_model(model, path, "onnx", info=info)
        if runtime == "onnx-int8":
            if calibration is None:
                raise ConfigError("runtime='onnx-int8' needs calibration clips: pass calibration=<store path or array>")
            clips = (calibration_clips(calibration, int(info["clip_samples"]), calibration_clips_count)
                     if isinstance(calibration, (str, Path)) else np.asarray(calibration, np.float32))
            path = quantize_int8(path, Path(tmp) / "model.int8.onnx", clips)
        return OnnxModule(path, threads=threads)


def info_from_onnx(path: str | Path) -> dict[str, Any]:
    """The Classifier's ``info`` (labels, rate, clip length, task) from an exported file's
    metadata (``metadata_props``, written by :func:`audioclf.inference.export.export_model`)."""
    from audioclf.inference.export import read_export_metadata

    meta = read_export_metadata(path)
    missing = [k for k in ("label_names", "sample_rate", "clip_samples", "task") if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: not an audioclf ONNX export (metadata lacks {', '.join(missing)})")
    if meta.get("input") != "waveform":
        raise CheckpointError(f"{path}: exported with frontend='separate'; the ONNX runtime needs a waveform-input export")
    return {**meta, "num_classes": len(meta["label_names"]), "runtime": "onnx"}


def agreement(reference: np.ndarray, other: np.ndarray, k: int = 5) -> dict[str, float]:
    """How far ``other`` logits ``(clips, classes)`` follow ``reference``: the share of clips
    with the same top-1 class, and the mean overlap of the top-``k`` sets (k capped at the
    class count)."""
    k = min(k, reference.shape[1])
    top_r = np.argsort(-reference, 1)[:, :k]
    top_o = np.argsort(-other, 1)[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(top_r, top_o, strict=True)]
    return {"top1_agreement": float((top_r[:, 0] == top_o[:, 0]).mean()), f"top{k}_overlap": float(np.mean(overlap))}


def quantize_export(onnx_path: str | Path, store: str | Path, out: str | Path | None = None, *,
                    clips: int = 64, check_clips: int = 64) -> tuple[Path, dict[str, float]]:
    """The int8 copy of an exported ONNX file (``<stem>.int8.onnx`` unless ``out``), calibrated
    on ``clips`` training clips of ``store``, then compared with the float file on
    ``check_clips`` other clips of the store (its test split when it has one): returns the
    path and the agreement figures (also written into the file's sidecar JSON)."""
    import json

    onnx_path = Path(onnx_path)
    info = info_from_onnx(onnx_path)
    dest = Path(out) if out is not None else onnx_path.with_name(f"{onnx_path.stem}.int8.onnx")
    n = int(info["clip_samples"])
    quantize_int8(onnx_path, dest, calibration_clips(store, n, clips, split="train"))
    probe = calibration_clips(store, n, check_clips, split="test", seed=1)
    ref = OnnxModule(onnx_path)(torch.from_numpy(probe)).numpy()
    got = OnnxModule(dest)(torch.from_numpy(probe)).numpy()
    figures = {**agreement(ref, got), "max_abs_diff": float(np.abs(ref - got).max()), "clips": len(probe)}
    sidecar = onnx_path.with_name(onnx_path.name + ".json")
    meta = json.loads(sidecar.read_text()) if sidecar.is_file() else dict(info)
    meta.update(quantization="int8-static", calibration_store=str(store), calibration_clips=clips, int8_vs_float=figures)
    dest.with_name(dest.name + ".json").write_text(json.dumps(meta, indent=2))
    return dest, figures
