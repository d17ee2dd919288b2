"""ESC-50: 2,000 five-second environmental recordings in 50 classes, 5 official folds.

Source: the ``master`` archive of the ESC-50 GitHub repository, which unpacks to
``ESC-50-master/audio/*.wav`` (44.1 kHz mono, named ``{fold}-{src_file}-{take}-{target}.wav``)
and ``ESC-50-master/meta/esc50.csv`` (columns filename, fold, target, category, esc10,
src_file, take). Clips cut from the same source recording share a fold, so the folds are
the only fair cross-validation. ESC-10 is the 10-class subset flagged in the ``esc10``
column; its classes are re-indexed 0..9 in the order of their ESC-50 targets.

The repository publishes no checksum (and the archive of a branch can change), so the
SHA-256 of the archive is recorded on first download and checked afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audioclf.data.catalog.archive import ArchiveDataset, archive_options
from audioclf.data.catalog.registry import DatasetInfo, Item, Option, ProgressFn, register_dataset
from audioclf.data.download import (
    DatasetLayoutError,
    Remote,
    dataset_file,
    fetch_archive,
    recorded_checksum,
)

ARCHIVE = Remote(url="https://github.com/karoldvl/ESC-50/archive/master.zip", filename="ESC-50-master.zip")
TOP_DIR = "ESC-50-master"
CSV = Path("meta") / "esc50.csv"
COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
FOLDS = range(1, 6)


@register_dataset
class ESC50(ArchiveDataset):
    info = DatasetInfo(
        name="esc50",
        title="ESC-50: environmental sound classification (ESC-10 subset with -o esc10=true)",
        task="single_label",
        classes="50 (ESC-10: 10)",
        clips="2000 x 5 s (ESC-10: 400)",
        protocol="5-fold cross-validation on the official folds 1-5 (fold=k holds out fold k)",
        license="CC BY-NC 3.0",
        homepage="https://github.com/karolpiczak/ESC-50",
        sample_rate=44100,
        citation="K. J. Piczak, ESC: Dataset for Environmental Sound Classification, ACM Multimedia 2015",
    )
    options = {
        "esc10": Option(False, "only the ESC-10 subset (10 classes, 400 clips)", bool),
        **archive_options(ARCHIVE, "expected checksum of the archive, e.g. sha256:<hex> (default: recorded on first download)"),
    }
    archive, top_dir, metadata_csv, columns = ARCHIVE, TOP_DIR, CSV, COLUMNS
    audio_layout = "audio/*.wav (the layout of the ESC-50 repository's master.zip)"
    unpacked = "repository"

    # -- where the files are ----------------------------------------------------------
    def fetch(self, progress: ProgressFn | None = None) -> None:
        if self.data_dir() is None:
            root = self.require_root()
            fetch_archive(self._remote(), root, root, progress)
            self._check_unpacked()

    # -- labels and clips -------------------------------------------------------------
    def _categories(self) -> dict[int, str]:
        """ESC-50 target -> category, checked to be one name per target, targets 0..N-1."""
        names: dict[int, str] = {}
        for row in self._metadata():
            t = int(row["target"])
            if names.setdefault(t, row["category"]) != row["category"]:
                raise DatasetLayoutError(f"dataset 'esc50': target {t} is both {names[t]!r} and {row['category']!r} in esc50.csv")
        if sorted(names) != list(range(len(names))):
            raise DatasetLayoutError(f"dataset 'esc50': targets in esc50.csv are not 0..{len(names) - 1}: {sorted(names)}")
        return names

    def _esc10_targets(self) -> list[int]:
        return sorted({int(r["target"]) for r in self._metadata() if r["esc10"].lower() == "true"})

    def label_names(self) -> list[str]:
        names = self._categories()
        targets = self._esc10_targets() if self.opts["esc10"] else sorted(names)
        return [names[t] for t in targets]

    def items(self) -> list[Item]:
        d = self._require_data_dir()
        self._categories()
        keep = self._esc10_targets() if self.opts["esc10"] else None
        index = {t: i for i, t in enumerate(keep)} if keep is not None else None
        items = []
        for row in self._metadata():
            t = int(row["target"])
            if index is not None and t not in index:
                continue
            fold = int(row["fold"])
            if fold not in FOLDS:
                raise DatasetLayoutError(f"dataset 'esc50': {row['filename']} has fold {fold}; ESC-50 folds are 1-5")
            items.append(
                Item(
                    clip_id=Path(row["filename"]).stem,
                    target=index[t] if index is not None else t,
                    fold=fold,
                    path=str(dataset_file(d / "audio", row["filename"], "esc50", d / CSV)),
                    meta={"category": row["category"], "src_file": row["src_file"], "take": row["take"]},
                )
            )
        return items

    # -- description ------------------------------------------------------------------
    def store_name(self) -> str:
        return "esc10.h5" if self.opts["esc10"] else "esc50.h5"

    def dataset_version(self) -> str:
        return "master"

    def provenance(self) -> dict[str, Any]:
        prov = super().provenance()
        prov["subset"] = "esc10" if self.opts["esc10"] else "esc50"
        root = self.require_root()
        prov["archive_checksum"] = recorded_checksum(root / ARCHIVE.filename) or self.opts["checksum"]
        return prov
