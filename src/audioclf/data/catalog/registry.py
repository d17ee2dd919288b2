"""Dataset registry and the base class every catalog entry derives from."""

from __future__ import annotations

import copy
import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from audioclf.audio.io import load_audio, resample
from audioclf.errors import ConfigError, DataError
from audioclf.registry import Registry

log = logging.getLogger(__name__)

# Imported on first use of the registry, never at package import.
_DATASET_MODULES = (
    "audioclf.data.catalog.synthetic",
    "audioclf.data.catalog.folder",
    "audioclf.data.catalog.esc50",
    "audioclf.data.catalog.urbansound8k",
    "audioclf.data.catalog.speech_commands",
    "audioclf.data.catalog.audioset",
    "audioclf.data.catalog.hf",
)

ProgressFn = Callable[[str, int, int | None], None]
"""progress(description, done, total): called by long steps (download, decode)."""


@dataclass(frozen=True)
class DatasetInfo:
    """What ``audioclf datasets`` shows about a dataset."""

    name: str
    title: str
    task: str  # "single_label" | "multi_label"
    classes: int | str
    clips: int | str
    protocol: str
    license: str
    homepage: str = ""
    sample_rate: int = 16000  # native rate of the source files
    citation: str = ""


@dataclass(frozen=True)
class Option:
    """A dataset-specific option (``audioclf prepare NAME -o key=value``)."""

    default: Any
    help: str
    type: type | tuple[type, ...] = object


@dataclass
class Item:
    """One clip to prepare: where its audio is and what its labels are."""

    clip_id: str
    target: int | list[int]
    fold: int = -1
    split: str = ""
    path: str | None = None  # file to decode; None for generated clips
    meta: dict[str, Any] = field(default_factory=dict)


class DatasetSource:
    """Base class of a catalog entry. Subclasses set ``info`` and ``options`` and implement
    ``label_names`` and ``items``; downloadable datasets implement ``fetch``.

    Instances are pickled into decoding worker processes: keep their state small, and name
    in ``_reset_in_workers`` what a worker's copy should not carry.
    """

    info: ClassVar[DatasetInfo]
    options: ClassVar[dict[str, Option]] = {}
    _reset_in_workers: ClassVar[Mapping[str, Any]] = {}
    """attribute -> the value it has in the copy pickled for a worker (parsed metadata, big
    clip lists, open tables: a worker reads them again if it needs them)."""

    def __init__(self, root: str | Path | None = None, **options: Any) -> None:
        self.root = Path(root) if root is not None else None
        unknown = set(options) - set(self.options)
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "none"
            raise ConfigError(f"dataset {self.info.name!r}: unknown option(s) {sorted(unknown)}; allowed: {allowed}")
        self.opts: dict[str, Any] = {k: o.default for k, o in self.options.items()}
        for k, v in options.items():
            expected = self.options[k].type
            accepts_float = expected is float or (isinstance(expected, tuple) and float in expected)
            if accepts_float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)  # `-o val_fraction=0` reads as an int
            if expected is not object and v is not None and not isinstance(v, expected):
                raise ConfigError(f"dataset {self.info.name!r}: option {k}={v!r} must be of type {_type_name(expected)}")
            self.opts[k] = v

    # -- what a dataset defines -------------------------------------------------------
    def fetch(self, progress: ProgressFn | None = None) -> None:
        """Download (or find) and verify the source files under ``self.root``."""

    def label_names(self) -> list[str]:
        raise NotImplementedError

    def items(self) -> list[Item]:
        raise NotImplementedError

    def load(self, item: Item, sample_rate: int) -> tuple[np.ndarray, int]:
        """Decode one item to float32 mono at ``sample_rate``; returns (audio, native rate)."""
        if item.path is None:
            raise DataError(f"dataset {self.info.name!r}: clip {item.clip_id!r} has no file to decode")
        # decode at the file's own rate (one open reports it), then resample
        audio, native = load_audio(item.path, start=item.meta.get("start", 0.0), duration=item.meta.get("duration"))
        return resample(audio, native, sample_rate), native

    # -- defaults ---------------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.info.task

    def store_name(self) -> str:
        return f"{self.info.name}.h5"

    def dataset_version(self) -> str:
        return ""

    def provenance(self) -> dict[str, Any]:
        return {"dataset": self.info.name, "root": str(self.root) if self.root else None, "options": self.opts}

    def preferred_shard_size(self) -> int | None:
        """Clips per shard when the dataset is too large for one store file (None: one file)."""
        return None

    def extra_report(self) -> dict[str, Any]:
        """Dataset-specific facts for prepare_report.json (missing files, ...)."""
        return {}

    def require_root(self) -> Path:
        if self.root is None:
            raise ConfigError(f"dataset {self.info.name!r} needs --root DIR (where its files are or will be downloaded)")
        return self.root

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update({name: copy.copy(value) for name, value in self._reset_in_workers.items()})
        return state


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return t.__name__


def _load_datasets() -> None:
    for module in _DATASET_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("audioclf.data.catalog."):
                log.debug("dataset module %s not available: %s", module, err)
            else:
                raise


REGISTRY: Registry[type[DatasetSource]] = Registry("dataset", loader=_load_datasets)


def register_dataset(cls: type[DatasetSource]) -> type[DatasetSource]:
    """Class decorator: register a catalog entry under ``cls.info.name``."""
    return REGISTRY.add(cls.info.name, cls)


def list_datasets() -> list[str]:
    return sorted(REGISTRY.names())


def get_source_class(name: str) -> type[DatasetSource]:
    return REGISTRY.get(name)


def create_source(dataset: str, root: str | Path | None = None, /, **options: Any) -> DatasetSource:
    """Instantiate catalog entry ``dataset`` (positional-only, so an option may be called
    ``name``)."""
    return REGISTRY.get(dataset)(root, **options)
