"""audioclf: train, evaluate and run audio classifiers from one CLI and one Python API.

``from audioclf import Classifier, create_model, train`` and ``audioclf.tag(path)``: the
names are imported on first use (a module ``__getattr__``), so ``import audioclf`` stays
light.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("audioclf")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

# public name -> module that defines it
_LAZY = {
    "Classifier": "audioclf.inference.classifier",
    "Prediction": "audioclf.inference.classifier",
    "create_model": "audioclf.models.registry",
    "list_models": "audioclf.models.registry",
    "resolve_model": "audioclf.models.pretrained",
    "train": "audioclf.api",
    "tag": "audioclf.api",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'audioclf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
