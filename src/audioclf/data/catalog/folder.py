"""The user's own files: a directory of class sub-directories, or a CSV manifest.

* Directory: ``ROOT/<label>/*.wav`` (any format soundfile reads; sub-directories below a
  class directory are searched too).
* Manifest: a CSV with a header and columns ``path,label`` and optionally ``fold`` and/or
  ``split``; paths are relative to the CSV's directory; several labels separated by ``;``
  make the dataset multi-label.

Without folds or splits, clips are split train/validation/test stratified by class: each
class gives ``val_fraction``/``test_fraction`` of its files (at least one each when it has
three or more), chosen by a stable hash of their path, so adding a file moves at most two
others of its class (see :func:`audioclf.data.splits.stratified_hash_splits`).
"""

from __future__ import annotations

import csv
from pathlib import Path

from audioclf.audio.io import AUDIO_EXTENSIONS
from audioclf.data.catalog.registry import (
    DatasetInfo,
    DatasetSource,
    Item,
    Option,
    register_dataset,
)
from audioclf.data.splits import stratified_hash_splits
from audioclf.errors import DataError


@register_dataset
class Folder(DatasetSource):
    info = DatasetInfo(
        name="folder",
        title="your own files (class sub-directories or a CSV manifest)",
        task="single_label or multi_label",
        classes="from the files",
        clips="from the files",
        protocol="manifest folds/splits, else a stratified hashed 80/10/10 split",
        license="yours",
    )
    options = {
        "manifest": Option(None, "CSV manifest path,label[,fold][,split] (default: ROOT if it is a .csv)", str),
        "val_fraction": Option(0.1, "hashed split: share of each class for validation", float),
        "test_fraction": Option(0.1, "hashed split: share of each class for test", float),
        "name": Option("folder", "dataset name recorded in the store", str),
    }

    def __init__(self, root=None, **options) -> None:
        super().__init__(root, **options)
        self._items: list[Item] | None = None
        self._labels: list[str] = []
        self._multi = False

    @property
    def task(self) -> str:
        self._scan()
        return "multi_label" if self._multi else "single_label"

    def label_names(self) -> list[str]:
        self._scan()
        return self._labels

    def items(self) -> list[Item]:
        self._scan()
        assert self._items is not None
        return self._items

    def store_name(self) -> str:
        return f"{self.opts['name']}.h5"

    # -- scanning ---------------------------------------------------------------------
    def _scan(self) -> None:
        if self._items is not None:
            return
        root = self.require_root()
        manifest = self.opts["manifest"] or (root if root.suffix.lower() == ".csv" else None)
        if manifest is not None:
            self._scan_manifest(Path(manifest))
        else:
            self._scan_tree(root)

    def _scan_tree(self, root: Path) -> None:
        if not root.is_dir():
            raise FileNotFoundError(f"dataset 'folder': {root} is not a directory (expected ROOT/<label>/<files>)")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DataError(f"dataset 'folder': {root} has no class sub-directories (expected ROOT/<label>/<files>)")
        self._labels = classes
        items = []
        for c, label in enumerate(classes):
            files = sorted(p for p in (root / label).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
            for f in files:
                rel = f.relative_to(root).as_posix()
                items.append(Item(clip_id=rel, target=c, path=str(f)))
        if not items:
            raise DataError(f"dataset 'folder': no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}")
        self._assign_splits(items)
        self._items = items

    def _scan_manifest(self, manifest: Path) -> None:
        if not manifest.is_file():
            raise FileNotFoundError(f"dataset 'folder': manifest not found: {manifest}")
        with manifest.open(newline="") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or [])
            if not {"path", "label"} <= cols:
                raise DataError(
                    f"{manifest}: manifest needs a header with columns path,label[,fold][,split]; found {sorted(cols)}"
                )
            rows = list(reader)
        if not rows:
            raise DataError(f"{manifest}: manifest lists no clips")
        labels_of = [[s.strip() for s in r["label"].split(";") if s.strip()] for r in rows]
        self._multi = any(len(ls) != 1 for ls in labels_of)
        self._labels = sorted({label for ls in labels_of for label in ls})
        index = {label: i for i, label in enumerate(self._labels)}
        items = []
        for line, (row, ls) in enumerate(zip(rows, labels_of, strict=True), start=2):
            rel = row["path"]
            path = (manifest.parent / rel).resolve()
            fold = -1
            if row.get("fold") not in (None, ""):
                try:
                    fold = int(row["fold"])
                except ValueError:
                    raise DataError(f"{manifest}, line {line}: fold {row['fold']!r} is not an integer") from None
            split = (row.get("split") or "").strip()
            target: int | list[int] = [index[x] for x in ls] if self._multi else index[ls[0]]
            items.append(Item(clip_id=rel, target=target, fold=fold, split=split, path=str(path)))
        self._assign_splits([it for it in items if not it.split and it.fold < 0])
        self._items = items

    def _assign_splits(self, items: list[Item]) -> None:
        """The stratified hashed split, for clips that have neither a fold nor a split
        (multi-label clips are stratified by their first label in label order)."""
        if not items:
            return
        classes = [it.target if isinstance(it.target, int) else min(it.target, default=-1) for it in items]
        splits = stratified_hash_splits([it.clip_id for it in items], classes,
                                        float(self.opts["val_fraction"]), float(self.opts["test_fraction"]))
        for it, split in zip(items, splits, strict=True):
            it.split = split
