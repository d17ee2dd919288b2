"""Imports run one way (docs/architecture.md): what each package may import, checked on
the source (every import statement, those inside functions included), and what the
inference path loads when it runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parents[1] / "src" / "audioclf"

# package (a folder or a module of src/audioclf) -> audioclf packages it must not import
FORBIDDEN = {
    "data": ("audioclf.models", "audioclf.training", "audioclf.inference", "audioclf.reporting"),
    "models": ("audioclf.training", "audioclf.data", "audioclf.inference", "audioclf.reporting"),
    "inference": ("audioclf.training",),
    "reporting": ("audioclf.training",),
    "serve.py": ("audioclf.training",),
    "registry.py": ("audioclf.models", "audioclf.data", "audioclf.training"),
    "errors.py": ("audioclf.models", "audioclf.data", "audioclf.training"),
    "metrics.py": ("audioclf.models", "audioclf.data", "audioclf.training", "audioclf.inference", "audioclf.reporting"),
}
# exceptions, each for a reason: published weights are fetched with the one downloader
# (resume, checksums), which lives with the datasets' downloads
ALLOWED = {"models": ("audioclf.data.download",)}
# packages that must not reach training by any route: no import statement, and not the
# name either (``importlib.import_module("audioclf.training...")``, a string handed on)
NO_TRAINING_BY_NAME = ("inference", "reporting", "serve.py")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from audioclf import training` names the package in the alias
            if node.module == "audioclf":
                found += [(node.lineno, f"audioclf.{alias.name}") for alias in node.names]
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package: str) -> None:
    files = _files(package)
    assert files
    bad = [
        f"{f.relative_to(SRC)}:{line} imports {name}"
        for f in files
        for line, name in _imports(f)
        if name.startswith(FORBIDDEN[package]) and not name.startswith(ALLOWED.get(package, ("-",)))
    ]
    assert not bad, "\n".join(bad)


def _files(package: str) -> list[Path]:
    root = SRC / package
    return [root] if root.suffix == ".py" else sorted(root.rglob("*.py"))


@pytest.mark.parametrize("package", NO_TRAINING_BY_NAME)
def test_package_does_not_even_name_training(package: str) -> None:
    files = _files(package)
    assert files
    bad = [
        f"{f.relative_to(SRC)}:{n} names audioclf.training"
        for f in files
        for n, line in enumerate(f.read_text().splitlines(), 1)
        if "audioclf.training" in line or "audioclf import training" in line
    ]
    assert not bad, "\n".join(bad)


def test_the_by_name_check_sees_a_lazy_import_by_string(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "reporting"
    fake.mkdir()
    (fake / "r.py").write_text("def f():\n    return importlib.import_module('audioclf.training.evaluate')\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    with pytest.raises(AssertionError, match="r.py:2 names audioclf.training"):
        test_package_does_not_even_name_training("reporting")


def test_the_layering_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from audioclf.training.task import X\n    import audioclf.models.bundle\n")
    assert [n for _, n in _imports(f)] == ["audioclf.training.task", "audioclf.models.bundle"]


def _loaded_modules(code: str) -> set[str]:
    """Top-level names of the modules ``python -X importtime -c code`` imported."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    names = set()
    for line in run.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "torch" in names or "audioclf" in names, run.stderr[-2000:]
    return names


def test_import_audioclf_inference_loads_no_lightning_or_torchmetrics() -> None:
    loaded = _loaded_modules("import audioclf.inference, audioclf.inference.export, audioclf.serve")
    assert "audioclf" in loaded
    assert not loaded & {"lightning", "pytorch_lightning", "torchmetrics"}


def test_predict_runs_without_lightning_or_torchmetrics(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    from audioclf.models import create_model
    from audioclf.models.bundle import TASK_MODEL_PREFIX, bundle_info

    model = create_model("cnn_lite", 3, channels=(4,))
    info = bundle_info(model_name="cnn_lite", model_settings={"channels": [4]}, label_names=["a", "b", "c"],
                       multi_label=False, sample_rate=16000, clip_samples=16000, ema=False)
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": {TASK_MODEL_PREFIX + k: v for k, v in model.state_dict().items()}, "audioclf": info}, ckpt)
    wav = tmp_path / "one_second.wav"
    sf.write(wav, (0.1 * np.sin(np.arange(16000) / 10)).astype(np.float32), 16000)
    code = (
        "import sys\nfrom audioclf.cli import main\n"
        f"rc = main(['predict', {str(ckpt)!r}, {str(wav)!r}])\n"
        "heavy = sorted(m for m in ('lightning', 'torchmetrics', 'transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy, rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY [] 0" in out, out
