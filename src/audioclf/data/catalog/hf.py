"""A Hugging Face dataset: a Hub dataset id, a ``save_to_disk`` directory, or a local
directory of parquet or audio files (``audiofolder``).

* A Hub id (``audioclf prepare hf danavery/urbansound8K``, also ``hf:ORG/NAME@REVISION``)
  and a data directory are read with ``datasets.load_dataset``: ``-o split=train,test``
  loads only those splits, ``-o config=NAME`` picks a configuration, ``-o revision=`` a
  branch, tag or commit, and ``-o streaming=true`` reads the rows one by one without
  datasets' Arrow cache of the whole set (each clip's encoded audio passes through a
  temporary file, so nothing is held in memory). Hub downloads use the Hub cache and honour
  ``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE``.
* A directory written with ``save_to_disk(DIR)`` holds ``dataset_dict.json`` and one
  sub-directory per split, or (a single ``Dataset``) ``state.json`` and ``data-*.arrow``;
  it is read memory-mapped with ``load_from_disk``.

A local path that exists wins over a Hub id of the same spelling. Needs the optional
``datasets`` package.

* Audio: the ``audio`` column (an ``Audio`` feature). Its stored bytes are decoded here
  with libsndfile, so no other audio backend is needed.
* Clip ids: an id column (``slice_file_name``, ``filename``, ...), else the file names kept
  in the audio column, else ``split/row``.
* Labels: a ``ClassLabel`` column keeps its names; an integer column takes its names from a
  companion text column (``class`` beside ``classID``) when one maps one-to-one; a text
  column's values are the names. A list-valued column makes the dataset multi-label.
* Folds: a ``fold`` column is kept (made 1-based if it counts from 0).
* Splits: the split names of a ``DatasetDict`` are kept, except that a single split
  beside a fold column is a k-fold dataset and gets no split name.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from audioclf.audio.io import AudioDecodeError, decode_bytes, load_audio, resample
from audioclf.data.catalog.registry import (
    DatasetInfo,
    DatasetSource,
    Item,
    Option,
    register_dataset,
)
from audioclf.data.download import DatasetLayoutError, describe_dir
from audioclf.errors import ConfigError, MissingDependencyError

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("label", "labels", "classID", "class_id", "target", "category", "class")
NAME_COLUMNS = ("class", "class_name", "label_name", "category")
ID_COLUMNS = ("slice_file_name", "filename", "file_name", "file", "path", "id")
# ORG/NAME or NAME, optionally @REVISION (the "hf:" prefix removed)
HUB_ID_RE = re.compile(r"^(?P<id>[A-Za-z0-9][\w.-]*(?:/[A-Za-z0-9][\w.-]*)?)(?:@(?P<rev>[^@]+))?$")


def _datasets():
    try:
        import datasets
    except ImportError as err:
        raise MissingDependencyError(
            "dataset 'hf' reads directories written by the Hugging Face 'datasets' library; "
            "install it with: pip install datasets"
        ) from err
    return datasets


@register_dataset
class HuggingFaceDataset(DatasetSource):
    info = DatasetInfo(
        name="hf",
        title="a Hugging Face dataset: Hub id, save_to_disk directory, or parquet/audiofolder directory",
        task="single_label or multi_label",
        classes="from the label column",
        clips="from the dataset",
        protocol="the dataset's fold column (1-based) and/or split names",
        license="that of the dataset",
        homepage="https://huggingface.co/docs/datasets/",
        sample_rate=16000,
    )
    options = {
        "label_column": Option(None, f"label column (default: first of {', '.join(LABEL_COLUMNS)})", str),
        "label_names_column": Option(None, "text column naming integer labels (default: auto)", str),
        "fold_column": Option("fold", "fold column, kept when present ('' to ignore)", str),
        "audio_column": Option("audio", "audio column", str),
        "id_column": Option(None, f"clip id column (default: first of {', '.join(ID_COLUMNS)}, else the audio file names, else split/row)", str),
        "splits": Option(None, "comma-separated splits to import (default: all)", str),
        "split": Option(None, "the same as splits (load_dataset's name for it)", str),
        "config": Option(None, "dataset configuration (load_dataset's name) of a Hub id or data directory", str),
        "revision": Option(None, "Hub branch, tag or commit of a Hub id (or ID@REVISION)", str),
        "streaming": Option(False, "read a Hub id or data directory row by row, without datasets' Arrow cache "
                            "(for sets too large to hold); clips pass through a temporary file", bool),
        "dataset_name": Option(None, "name of the store file (default: the directory's or repository's name)", str),
    }
    # Open Arrow tables do not travel to workers; each worker reopens (memory-mapped).
    _reset_in_workers = {"_parts": None, "_items": None}

    def __init__(self, root: str | Path | None = None, **options: Any) -> None:
        super().__init__(root, **options)
        self._parts: dict[str, Any] | None = None  # split -> datasets.Dataset, opened lazily
        self._labels: list[str] | None = None
        self._multi = False
        self._items: list[Item] | None = None
        self._spill: Path | None = None  # streamed clips' audio bytes, read back by load()
        if self.opts["split"] and self.opts["splits"]:
            raise ConfigError("dataset 'hf': give split or splits, not both")

    # -- where the dataset is -----------------------------------------------------------
    @property
    def hub_id(self) -> str | None:
        """The Hub dataset id when ``root`` names one (``ORG/NAME``, ``hf:ORG/NAME[@REV]``)
        rather than an existing local directory; else None."""
        root = self.require_root()
        text = str(root)
        if not text.startswith("hf:") and root.exists():
            return None
        m = HUB_ID_RE.match(text.removeprefix("hf:"))
        return m["id"] if m else None

    def _revision(self) -> str | None:
        m = HUB_ID_RE.match(str(self.require_root()).removeprefix("hf:"))
        from_id = m["rev"] if m else None
        if from_id and self.opts["revision"] and from_id != self.opts["revision"]:
            raise ConfigError(f"dataset 'hf': revision {from_id!r} in the id and revision={self.opts['revision']!r} differ")
        return from_id or self.opts["revision"]

    def _wanted_splits(self) -> list[str] | None:
        text = self.opts["split"] or self.opts["splits"]
        return [s.strip() for s in text.split(",") if s.strip()] if text else None

    # -- opening ----------------------------------------------------------------------
    def _open(self) -> dict[str, Any]:
        if self._parts is None:
            ds_lib = _datasets()
            root = self.require_root()
            saved = root.is_dir() and ((root / "dataset_dict.json").is_file() or (root / "state.json").is_file())
            if saved:
                parts = self._open_saved(ds_lib, root)
            elif self.hub_id is not None or root.is_dir():
                parts = self._open_loaded(ds_lib)
            else:
                raise DatasetLayoutError(
                    f"dataset 'hf': {root} is neither a directory nor a Hub dataset id (ORG/NAME); expected a Hub id, "
                    "a directory written by datasets' save_to_disk, or a directory of parquet or audio files"
                )
            col = self.opts["audio_column"]
            for split, ds in parts.items():
                if ds.column_names is not None and col not in ds.column_names:
                    raise DatasetLayoutError(f"dataset 'hf': split {split!r} has no audio column {col!r}; columns: {ds.column_names}")
                # raw bytes/path: decoded here, whatever audio backend datasets would want
                parts[split] = ds.cast_column(col, ds_lib.Audio(decode=False))
            self._parts = parts
        return self._parts

    def _open_saved(self, ds_lib: Any, root: Path) -> dict[str, Any]:
        for key in ("config", "revision"):
            if self.opts[key]:
                raise ConfigError(f"dataset 'hf': {key}= applies to Hub ids and data directories, not to {root} (save_to_disk)")
        if self.opts["streaming"]:
            raise ConfigError(f"dataset 'hf': {root} is a save_to_disk directory, read memory-mapped; streaming=true is for Hub ids and data directories")
        loaded = ds_lib.load_from_disk(str(root))
        # a lone Dataset keeps the split it was cut from, if it records one
        parts = dict(loaded) if isinstance(loaded, ds_lib.DatasetDict) else {str(loaded.split or ""): loaded}
        wanted = self._wanted_splits()
        if wanted:
            unknown = [s for s in wanted if s not in parts]
            if unknown:
                raise ConfigError(f"dataset 'hf': no split(s) {unknown} in {root}; splits: {sorted(parts)}")
            parts = {s: parts[s] for s in wanted}
        return parts

    def _open_loaded(self, ds_lib: Any) -> dict[str, Any]:
        """``datasets.load_dataset`` on a Hub id or a local data directory (parquet, audio
        files with optional metadata.csv: the builder is inferred from the files)."""
        hub_id = self.hub_id
        where = f"Hub dataset {hub_id!r}" if hub_id else f"directory {self.require_root()}"
        kwargs: dict[str, Any] = {"name": self.opts["config"], "streaming": bool(self.opts["streaming"])}
        if hub_id:
            kwargs["revision"] = self._revision()
        elif self.opts["revision"]:
            raise ConfigError(f"dataset 'hf': revision= applies to Hub ids, not to {where}")
        target = hub_id or str(self.require_root())
        wanted = self._wanted_splits()
        try:
            if wanted:  # only these splits are downloaded and prepared
                return {s: _load_dataset(ds_lib, target, split=s, **kwargs) for s in wanted}
            loaded = _load_dataset(ds_lib, target, split=None, **kwargs)
        except (FileNotFoundError, ValueError, ConnectionError, OSError, ds_lib.exceptions.DatasetsError) as err:
            seen = f" (and there is no local directory {self.require_root()})" if hub_id else (
                f"; expected parquet or audio files (audiofolder), or a save_to_disk directory (dataset_dict.json "
                f"or state.json); {describe_dir(self.require_root())}"
            )
            raise DatasetLayoutError(f"dataset 'hf': could not load {where} with datasets.load_dataset: {err}{seen}") from err
        if isinstance(loaded, (ds_lib.DatasetDict, ds_lib.IterableDatasetDict)):
            return dict(loaded)
        return {str(loaded.split or ""): loaded}

    def _first_column(self, given: str | None, candidates: tuple[str, ...], what: str, required: bool = True) -> str | None:
        columns = _columns(next(iter(self._open().values())))
        if given:
            if given not in columns:
                raise DatasetLayoutError(f"dataset 'hf': no {what} column {given!r}; columns: {columns}")
            return given
        found = next((c for c in candidates if c in columns), None)
        if found is None and required:
            raise DatasetLayoutError(f"dataset 'hf': no {what} column among {list(candidates)}; columns: {columns} (set {what}_column=...)")
        return found

    # -- labels and clips -------------------------------------------------------------
    @property
    def task(self) -> str:
        self.items()
        return "multi_label" if self._multi else "single_label"

    def label_names(self) -> list[str]:
        self.items()
        assert self._labels is not None
        return self._labels

    def _rows(self, cols: list[str]) -> Iterator[tuple[str, int, dict[str, Any], str | None, dict[str, Any]]]:
        """``(split, row, {column: value}, audio file name, meta)`` for every row.

        Map-style datasets are read column-wise (the audio bytes stay in Arrow); a stream
        is read once, each clip's audio bytes appended to the spill file as it passes."""
        col = self.opts["audio_column"]
        for split, ds in self._open().items():
            if not self.opts["streaming"]:
                table = ds.select_columns(cols).to_dict()
                paths = _audio_paths(ds, col)
                for i in range(len(ds)):
                    yield split, i, {c: table[c][i] for c in cols}, paths[i], {}
                continue
            spill = self._spill_file()
            with spill.open("ab") as f:
                for i, row in enumerate(ds):
                    cell = row.get(col) or {}
                    if isinstance(cell, str):  # an audio-file directory streams its paths as text
                        cell = {"bytes": None, "path": cell}
                    meta: dict[str, Any] = {}
                    if cell.get("bytes"):
                        meta["spill"] = [str(spill), f.tell(), len(cell["bytes"])]
                        f.write(cell["bytes"])
                    elif cell.get("path") and not Path(cell["path"]).is_file():  # a remote file (hf://...)
                        data = _read_remote(cell["path"])
                        meta["spill"] = [str(spill), f.tell(), len(data)]
                        f.write(data)
                    elif cell.get("path"):
                        meta["audio_path"] = cell["path"]
                    yield split, i, {c: row[c] for c in cols}, cell.get("path"), meta

    def _spill_file(self) -> Path:
        if self._spill is None:
            fd, name = tempfile.mkstemp(prefix="audioclf-hf-stream-", suffix=".bin")
            os.close(fd)
            self._spill = Path(name)
            # removed with this source (in the process that streamed; workers only read it)
            weakref.finalize(self, self._spill.unlink, missing_ok=True)
        return self._spill

    def items(self) -> list[Item]:
        if self._items is not None:
            return self._items
        parts = self._open()
        label_col = self._first_column(self.opts["label_column"], LABEL_COLUMNS, "label")
        assert label_col is not None
        fold_col = self.opts["fold_column"] or None
        first = next(iter(parts.values()))
        if fold_col and fold_col not in _columns(first):
            fold_col = None
        id_col = self._first_column(self.opts["id_column"], ID_COLUMNS, "id", required=False)
        features = first.features or {}
        names_col = None
        if self.opts["label_names_column"] or not _class_names(features.get(label_col)):
            names_col = self._first_column(self.opts["label_names_column"], tuple(c for c in NAME_COLUMNS if c != label_col), "label_names", required=False)

        cols = list(dict.fromkeys(c for c in (label_col, fold_col, id_col, names_col) if c))
        rows = list(self._rows(cols))
        if not rows:
            raise DatasetLayoutError(f"dataset 'hf': {self._where()} has no rows")

        raw = [r[label_col] for _, _, r, _, _ in rows]
        self._multi = any(isinstance(v, (list, tuple)) for v in raw)
        names, to_index = _label_mapping(features.get(label_col), raw, [r.get(names_col) for _, _, r, _, _ in rows] if names_col else None)
        self._labels = names

        folds = [int(r[fold_col]) for _, _, r, _, _ in rows] if fold_col else [-1] * len(rows)
        if fold_col and folds and min(folds) == 0:
            log.info("dataset 'hf': fold column %r counts from 0; stored 1-based", fold_col)
            folds = [f + 1 for f in folds]
        keep_split = len(parts) > 1 or not fold_col
        if id_col:
            ids = [_clip_id(r.get(id_col)) for _, _, r, _, _ in rows]
        else:  # the file names the audio came from, when the dataset kept them
            ids = [_clip_id(p) for _, _, _, p, _ in rows]
        if len(set(ids)) != len(ids) or "" in ids:
            ids = [f"{split}/{i}" if split else str(i) for split, i, _, _, _ in rows]
        items = []
        where = self._where()
        for (split, i, r, _, meta), fold, cid in zip(rows, folds, ids, strict=True):
            v = r[label_col]
            target: int | list[int] = [to_index(x) for x in v] if self._multi else to_index(v)
            items.append(
                Item(
                    clip_id=cid,
                    target=target,
                    fold=fold,
                    split=split if keep_split else "",
                    meta={"hf_split": split, "row": i, "source": f"{where}[{split or 'row'}][{i}]", **meta},
                )
            )
        self._items = items
        return items

    def _where(self) -> str:
        hub_id = self.hub_id
        return f"hf:{hub_id}" if hub_id else str(self.require_root())

    def load(self, item: Item, sample_rate: int) -> tuple[np.ndarray, int]:
        split, row = item.meta["hf_split"], item.meta["row"]
        where = f"{self._where()}[{split or 'row'}][{row}]"
        if "spill" in item.meta:  # streamed: the bytes were kept in the spill file
            name, offset, length = item.meta["spill"]
            with open(name, "rb") as f:
                f.seek(offset)
                audio, native = decode_bytes(f.read(length), name=where)
            return resample(audio, native, sample_rate), native
        if self.opts["streaming"]:
            path = item.meta.get("audio_path")
            if not path:
                raise AudioDecodeError(f"{where}: no audio in this row")
            audio, native = load_audio(self._local_path(path))
            return resample(audio, native, sample_rate), native
        ds = self._open()[split]
        cell = ds[row][self.opts["audio_column"]]
        if cell is None:
            raise AudioDecodeError(f"{where}: no audio in this row")
        if cell.get("bytes"):
            audio, native = decode_bytes(cell["bytes"], name=where)
            return resample(audio, native, sample_rate), native
        path = cell.get("path")
        if not path:
            raise AudioDecodeError(f"{where}: the audio cell holds neither bytes nor a path")
        audio, native = load_audio(self._local_path(path))
        return resample(audio, native, sample_rate), native

    def _local_path(self, path: str) -> Path:
        p = Path(path)
        if p.is_absolute() or self.hub_id is not None:
            return p
        return self.require_root() / path

    # -- description ------------------------------------------------------------------
    def store_name(self) -> str:
        name = self.opts["dataset_name"] or (self.hub_id.split("/")[-1] if self.hub_id else self.require_root().name)
        return re.sub(r"[^A-Za-z0-9._+-]+", "_", name) + ".h5"

    def dataset_version(self) -> str:
        info = next(iter(self._open().values())).info
        return str(info.version) if info.version else ""

    def provenance(self) -> dict[str, Any]:
        prov = super().provenance()
        info = next(iter(self._open().values())).info
        prov["hf_dataset"] = {"name": info.dataset_name, "config": info.config_name, "splits": list(self._open())}
        if self.hub_id:
            prov["hf_dataset"].update(hub_id=self.hub_id, revision=self._revision() or "main")
        return prov


def _load_dataset(ds_lib: Any, target: str, *, split: str | None, name: str | None, streaming: bool, revision: str | None = None) -> Any:
    """``datasets.load_dataset``, through its builder so that an audio-file directory
    (``audiofolder``, local or on the Hub) keeps its file paths as text: this module decodes
    them with libsndfile, and datasets' own audio encoder (torchcodec) is not needed."""
    builder = ds_lib.load_dataset_builder(target, name=name, revision=revision)
    if getattr(builder, "BASE_COLUMN_NAME", None) == "audio" and hasattr(builder, "BASE_FEATURE"):

        class AudioPath(ds_lib.Value):
            """A text column the builder takes for its audio feature (a type, as it checks)."""

            def __init__(self, dtype: str = "string", id: str | None = None) -> None:
                super().__init__(dtype, id)

        builder.BASE_FEATURE = AudioPath
    if streaming:
        return builder.as_streaming_dataset(split=split)
    builder.download_and_prepare()
    return builder.as_dataset(split=split)


def _read_remote(url: str) -> bytes:
    """The bytes of a file a stream names by URL (``hf://datasets/...`` for Hub audio files)."""
    import fsspec

    with fsspec.open(url, "rb") as f:
        return f.read()


def _columns(ds: Any) -> list[str]:
    """Column names of a Dataset or IterableDataset (a stream without known features
    names its columns from its first row)."""
    if ds.column_names is not None:
        return list(ds.column_names)
    return list(next(iter(ds)).keys())


def _class_names(feature: Any) -> list[str] | None:
    """Names of a ClassLabel feature, or of a list of ClassLabel."""
    names = getattr(feature, "names", None)
    if names:
        return list(names)
    inner = getattr(feature, "feature", None)
    return _class_names(inner) if inner is not None else None


def _label_mapping(feature: Any, values: list[Any], name_values: list[Any] | None):
    """(label names, value -> class index) for a label column."""
    flat = [x for v in values for x in (v if isinstance(v, (list, tuple)) else [v])]
    names = _class_names(feature)
    if names:
        return names, int
    if all(isinstance(x, str) for x in flat):
        names = sorted(set(flat))
        index = {n: i for i, n in enumerate(names)}
        return names, index.__getitem__
    ids = sorted({int(x) for x in flat})
    if ids and (ids[0] < 0):
        raise DatasetLayoutError(f"dataset 'hf': negative label {ids[0]}")
    count = ids[-1] + 1 if ids else 0
    named: dict[int, str] = {}
    if name_values is not None and not any(isinstance(v, (list, tuple)) for v in values):
        consistent = True
        for v, n in zip(values, name_values, strict=True):
            if named.setdefault(int(v), str(n)) != str(n):
                consistent = False
                break
        if not consistent or len(set(named.values())) != len(named):
            named = {}
    return [named.get(i, str(i)) for i in range(count)], int


def _audio_paths(ds: Any, column: str) -> list[str | None]:
    """The ``path`` field of an audio column, read from Arrow chunk by chunk so the audio
    bytes beside it are never copied."""
    col = ds.with_format("arrow")[column]
    chunks = col.chunks if hasattr(col, "chunks") else [col]
    return [p for chunk in chunks for p in chunk.field("path").to_pylist()]


def _clip_id(value: Any) -> str:
    s = str(value) if value is not None else ""
    # file names make good ids without their extension ("100032-3-0-0.wav" -> "100032-3-0-0")
    return Path(s).stem if "." in Path(s).name else s
