"""Export a trained model to ONNX or TorchScript, checked against PyTorch before it is kept.

    export_checkpoint("runs/x/checkpoints/best.ckpt", "model.onnx")            # frontend inside
    export_checkpoint("best.ckpt", "model.onnx", frontend="separate")           # + model.frontend.onnx
    export_checkpoint("best.ckpt", "model.pt", format="torchscript")

What is written
  * ``frontend="inside"`` (default): one file mapping a waveform batch ``(batch,
    clip_samples)`` float32 at the model's sample rate to logits ``(batch, classes)``. The
    log-mel frontend is a strided convolution plus a matmul, so it exports as ordinary ops.
  * ``frontend="separate"``: the model body, mapping features ``(batch, frames, bins)`` to
    logits, plus ``<stem>.frontend<suffix>`` mapping the waveform to those features. Run the
    frontend file first and feed its output to the body (e.g. to compute features elsewhere,
    or to swap in another runtime's feature code).
  * a sidecar ``<file>.json`` (``model.onnx.json``) with what a runtime needs: label names, sample rate, clip
    length, task and output activation (softmax for single-label, sigmoid for multi-label),
    input/output names and the measured parity. ONNX files carry the same facts as
    ``metadata_props``; TorchScript files as the extra file ``audioclf.json``.

The batch axis is dynamic; the clip length is fixed (the model's ``clip_samples``).
Exported files are written under a temporary name, run on synthetic audio (a batch size
other than the traced one) and compared with the PyTorch model; only a file that agrees
is renamed into place. A model that cannot be exported raises :class:`ExportError`
naming the model and the format, and leaves nothing behind.

ONNX goes through the TorchScript-based exporter (``torch.onnx.export(dynamo=False)``):
the dynamo-based one needs ``onnxscript``, which audioclf does not depend on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from audioclf.errors import AudioclfError, CheckpointError, ConfigError, MissingDependencyError

log = logging.getLogger(__name__)

MIN_OPSET = 17  # LayerNormalization and the reflect Pad the frontends need are there
METADATA_FILE = "audioclf.json"  # TorchScript extra file holding the metadata
FRONTEND_MODES = ("inside", "separate")


class ExportError(AudioclfError, ValueError):
    """A model could not be exported, or its exported file disagrees with PyTorch."""


@dataclass(frozen=True)
class ExportResult:
    """Where an export went and how closely it matched PyTorch."""

    model_path: Path
    metadata_path: Path
    frontend_path: Path | None
    format: str
    frontend: str
    max_abs_diff: float | None  # exported vs PyTorch logits on synthetic audio; None if not verified
    seconds: float

    @property
    def paths(self) -> list[Path]:
        return [p for p in (self.frontend_path, self.model_path, self.metadata_path) if p is not None]


# --- formats --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exporter:
    """One export format: how to write a module to a file and how to run that file."""

    suffix: str
    # write(module, example (batch, ...), path, input name, output name, metadata, opset)
    write: Callable[[nn.Module, torch.Tensor, Path, str, str, dict[str, str], int], None]
    # run(path, input array, input name) -> output array
    run: Callable[[Path, np.ndarray, str], np.ndarray]
    # read(path) -> metadata strings written with the file
    read_metadata: Callable[[Path], dict[str, str]]


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Tracing warns about every Python-level shape check (our models have many, all on
    the fixed clip length) and about its own deprecation; the parity check after export is
    what tells a good trace from a bad one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*Constant folding.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        # GRUs traced at batch 2 are said to risk other batch sizes: the parity check runs
        # batch 1, so a real problem would not pass unnoticed
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*GRU.*")
        yield


def _write_onnx(
    module: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str,
    metadata: dict[str, str], opset: int,
) -> None:
    try:
        import onnx
    except ImportError as err:
        raise MissingDependencyError("ONNX export needs the onnx package: pip install 'audioclf[export]'") from err
    # traced with autograd on: under no_grad, nn.TransformerEncoder switches to a fused
    # inference kernel (aten::_transformer_encoder_layer_fwd) that has no ONNX mapping
    with _quiet_tracing():
        torch.onnx.export(
            module, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _run_onnx(path: Path, x: np.ndarray, input_name: str) -> np.ndarray:
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise MissingDependencyError(
            "checking an ONNX export needs onnxruntime: pip install 'audioclf[export]' (or skip the check: --no-verify, verify=False in Python)"
        ) from err
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {input_name: x.astype(np.float32)})[0]


def _read_onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def _write_torchscript(
    module: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str,
    metadata: dict[str, str], opset: int,
) -> None:
    with _quiet_tracing():  # autograd on, as for ONNX: portable ops, not fused kernels
        # not frozen: freezing folds batch norms into convolutions, which changes the
        # numbers slightly and drops the parameters a user may want to fine-tune
        traced = torch.jit.trace(module, (example,), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={METADATA_FILE: json.dumps(metadata)})


def _run_torchscript(path: Path, x: np.ndarray, input_name: str) -> np.ndarray:
    with _quiet_tracing():
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(torch.from_numpy(x.astype(np.float32))).numpy()


def _read_torchscript_metadata(path: Path) -> dict[str, str]:
    extra = {METADATA_FILE: ""}
    with _quiet_tracing():
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}


EXPORTERS: Mapping[str, Exporter] = MappingProxyType({
    "onnx": Exporter(".onnx", _write_onnx, _run_onnx, _read_onnx_metadata),
    "torchscript": Exporter(".pt", _write_torchscript, _run_torchscript, _read_torchscript_metadata),
})


def list_formats() -> list[str]:
    return sorted(EXPORTERS)


def _exporter(fmt: str) -> Exporter:
    if fmt not in EXPORTERS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(list_formats())}")
    return EXPORTERS[fmt]


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata written into an exported file (ONNX ``metadata_props`` or the
    TorchScript extra file), JSON values decoded."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"exported model not found: {path}")
    by_suffix = {e.suffix: e for e in EXPORTERS.values()}
    if path.suffix not in by_suffix:
        raise CheckpointError(f"{path}: not an exported model (expected {' or '.join(by_suffix)})")
    raw = by_suffix[path.suffix].read_metadata(path)
    return {k: _decode(v) for k, v in raw.items()}


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


# --- the frontend split ---------------------------------------------------------------------


class _Body(nn.Module):
    """A model without its frontend: features ``(batch, frames, bins)`` -> logits, through
    the model's own ``forward_features`` and ``head`` (the parts ``forward`` is made of)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.head(self.model.forward_features(features))


def _frontend_of(model: nn.Module, name: str, fmt: str) -> nn.Module:
    """The model's frontend, for ``frontend='separate'``; raw-waveform models have none to split off."""
    frontend = getattr(model, "frontend", None)
    if not isinstance(frontend, nn.Module) or isinstance(frontend, nn.Identity):
        raise ExportError(
            f"cannot export model {name!r} to {fmt} with frontend='separate': it reads the waveform "
            "(a raw-waveform model, no spectrogram frontend); export it with frontend='inside'"
        )
    return frontend


# --- export -----------------------------------------------------------------------------------


def probe_audio(batch: int, samples: int, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Synthetic test audio ``(batch, samples)`` float32: a tone, a chirp and a little noise
    per row, each row different, peak below 0.5. Exports are traced and checked on it."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sample_rate
    out = np.empty((batch, samples), dtype=np.float32)
    nyquist = sample_rate / 2
    for i in range(batch):
        f0 = rng.uniform(0.01, 0.1) * nyquist
        f1 = rng.uniform(0.2, 0.6) * nyquist
        sweep = f0 + (f1 - f0) * t / max(t[-1], 1e-9) / 2  # instantaneous frequency f0 -> f1
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(0.005, 0.05) * nyquist * t)
        x += 0.15 * np.sin(2 * np.pi * sweep * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
        x += 0.02 * rng.standard_normal(samples)
        out[i] = x
    return out


def bundle_metadata(info: Mapping[str, Any], fmt: str, frontend: str) -> dict[str, Any]:
    """What an exported file must say about itself, from a checkpoint bundle's info."""
    labels = list(info["label_names"])
    multi = info.get("task") == "multi_label"
    return {
        "producer": "audioclf",
        "audioclf_version": _version(),
        "model": info.get("model", ""),
        "model_settings": info.get("model_settings", {}),
        "num_classes": len(labels),
        "label_names": labels,
        "task": "multi_label" if multi else "single_label",
        "output_activation": "sigmoid" if multi else "softmax",
        "sample_rate": int(info["sample_rate"]),
        "clip_samples": int(info["clip_samples"]),
        "clip_seconds": int(info["clip_samples"]) / int(info["sample_rate"]),
        "format": fmt,
        "frontend": frontend,
    }


def _version() -> str:
    from audioclf import __version__

    return __version__


def _as_props(meta: Mapping[str, Any]) -> dict[str, str]:
    """ONNX metadata values are strings: JSON-encode everything that is not one."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


def _default_info(model: nn.Module, name: str) -> dict[str, Any]:
    n = int(model.num_classes)
    return {
        "model": name,
        "model_settings": {},
        "num_classes": n,
        "label_names": [f"class_{i}" for i in range(n)],
        "task": "single_label",
        "sample_rate": int(model.sample_rate),
        "clip_samples": int(model.clip_samples),
    }


def export_model(
    model: nn.Module,
    out: str | Path,
    format: str = "onnx",
    frontend: str = "inside",
    *,
    info: Mapping[str, Any] | None = None,
    opset: int = MIN_OPSET,
    verify: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> ExportResult:
    """Export ``model`` (any registered model; see :func:`export_checkpoint` for bundles).

    ``info`` is a checkpoint bundle's info (label names, task, sample rate, clip length);
    without it the model's own attributes are used and classes are named ``class_<i>``.
    With ``verify`` the written files are run on synthetic audio and must match PyTorch
    within ``atol + rtol * max|logits|``.
    """
    exporter = _exporter(format)
    if frontend not in FRONTEND_MODES:
        raise ConfigError(f"frontend must be one of {', '.join(FRONTEND_MODES)}, got {frontend!r}")
    if opset < MIN_OPSET:
        raise ConfigError(f"opset must be >= {MIN_OPSET}, got {opset}")
    info = dict(info) if info is not None else _default_info(model, type(model).__name__)
    name = str(info.get("model") or type(model).__name__)
    out = Path(out)
    if out.suffix != exporter.suffix:
        raise ConfigError(f"{out}: a {format} export is written to a {exporter.suffix} file")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = bundle_metadata(info, format, frontend)
    clip, rate = meta["clip_samples"], meta["sample_rate"]

    frontend_out, sidecar = _side_files(out, exporter, frontend)
    finals = [p for p in (frontend_out, out) if p is not None]
    temps = {p: p.with_name(f".{p.name}.partial") for p in (*finals, sidecar)}

    t0 = time.perf_counter()
    model = model.eval()
    # traced at batch 2, checked at batch 1: a batch size baked into the graph shows up
    example = torch.from_numpy(probe_audio(2, clip, rate, seed=1))
    check = probe_audio(1, clip, rate, seed=2)
    diff: float | None = None
    try:
        with torch.no_grad():
            reference = model(torch.from_numpy(check)).float().numpy()
        if frontend == "inside":
            meta.update(input="waveform", input_shape=["batch", clip], output="logits")
            exporter.write(model, example, temps[out], "waveform", "logits", _as_props(meta), opset)
        else:
            fe = _frontend_of(model, name, format)
            with torch.no_grad():
                features = fe(example)
            meta.update(
                input="features", input_shape=["batch", *features.shape[1:]], output="logits",
                frontend_file=frontend_out.name, frontend_input="waveform",
                frontend_input_shape=["batch", clip], frontend_output="features",
            )
            exporter.write(fe, example, temps[frontend_out], "waveform", "features", _as_props(meta), opset)
            exporter.write(_Body(model), features, temps[out], "features", "logits", _as_props(meta), opset)
        if verify:
            x = check
            if frontend_out is not None:
                x = exporter.run(temps[frontend_out], x, "waveform")
            got = exporter.run(temps[out], x, meta["input"])
            diff = float(np.abs(got - reference).max()) if got.shape == reference.shape else float("inf")
            bound = atol + rtol * float(np.abs(reference).max())
            if not diff <= bound:
                raise ExportError(
                    f"the {format} export of model {name!r} disagrees with PyTorch on synthetic audio: "
                    f"output shape {got.shape} vs {reference.shape}, max |diff| {diff:.3g} > {bound:.3g}; "
                    "nothing was written"
                )
        meta.update(files=[p.name for p in finals], parity_max_abs_diff=diff, opset=opset if format == "onnx" else None)
        temps[sidecar].write_text(json.dumps(meta, indent=2))
    except (ExportError, ImportError):
        _remove(temps.values())
        raise
    except Exception as err:  # noqa: BLE001 - tracers and exporters raise anything
        _remove(temps.values())
        raise ExportError(f"cannot export model {name!r} to {format}: {_short(err)}") from err
    for final in (*finals, sidecar):
        temps[final].replace(final)
    result = ExportResult(out, sidecar, frontend_out, format, frontend, diff, time.perf_counter() - t0)
    log.info("exported %s to %s (%s, frontend %s, max |diff| %s) in %.1f s", name, out, format, frontend,
             "unchecked" if diff is None else f"{diff:.2g}", result.seconds)
    return result


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path | None = None,
    format: str = "onnx",
    frontend: str = "inside",
    *,
    model: str | None = None,
    offline: bool = False,
    **options: Any,
) -> ExportResult:
    """Export a model source (an audioclf checkpoint bundle, a published file, a catalog name,
    ``hf:ORG/REPO``; ``model``/``offline`` as for :func:`audioclf.models.pretrained.resolve_model`);
    ``out`` defaults to the checkpoint's path with the format's suffix (``best.onnx``,
    ``best.pt``; a catalog name: ``<name>.onnx`` here). ``options`` go to :func:`export_model`
    (``opset``, ``verify``, ``atol``, ``rtol``)."""
    from audioclf.models.pretrained import resolve_model

    source = str(checkpoint)
    if source.startswith("hf:"):
        checkpoint = source.split(":", 1)[1].replace("/", "_").split("@")[0] + ".hf"  # default out: <repo>.onnx
    exporter = _exporter(format)
    checkpoint = Path(checkpoint)
    dest = Path(out) if out is not None else checkpoint.with_suffix(exporter.suffix)
    for path in (dest, *(p for p in _side_files(dest, exporter, frontend) if p is not None)):
        if _same_file(path, checkpoint):
            raise ConfigError(
                f"exporting {checkpoint} to {dest} would overwrite the checkpoint itself ({path} is {checkpoint}): "
                "give another output file (--out)"
            )
    net, info = resolve_model(source, model=model, offline=offline)
    return export_model(net, dest, format, frontend, info=info, **options)


def _side_files(out: Path, exporter: Exporter, frontend: str) -> tuple[Path | None, Path]:
    """The frontend file (``frontend="separate"`` only) and the JSON sidecar written beside ``out``."""
    frontend_out = out.with_name(f"{out.stem}.frontend{exporter.suffix}") if frontend == "separate" else None
    sidecar = out.with_name(out.name + ".json")  # per file, so .onnx and .pt of one stem both keep theirs
    return frontend_out, sidecar


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (through links and relative paths too)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.samefile(b)
    except OSError:  # either does not exist
        return False


def _short(err: Exception, limit: int = 600) -> str:
    """An exporter's message without the graph dump some of them append."""
    text = f"{type(err).__name__}: {str(err).strip()}"
    first = text.split("\n\n", 1)[0]
    return first if len(first) <= limit else first[:limit] + " ..."


def _remove(paths: Any) -> None:
    for p in paths:
        Path(p).unlink(missing_ok=True)
