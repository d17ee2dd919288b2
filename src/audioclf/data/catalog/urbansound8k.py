"""UrbanSound8K: 8,732 urban sound excerpts of up to 4 s in 10 classes, 10 official folds.

Source: ``UrbanSound8K.tar.gz`` from Zenodo record 1203745 (MD5 published there), which
unpacks to ``UrbanSound8K/audio/fold1..fold10/*.wav`` and
``UrbanSound8K/metadata/UrbanSound8K.csv`` (columns slice_file_name, fsID, start, end,
salience, fold, classID, class). Excerpts of one Freesound recording share a fold: use
the folds, never a random split.

The files are as their uploaders made them: 8-bit unsigned, 16/24-bit PCM, 32-bit float,
IMA ADPCM, mono and stereo, 8 to 192 kHz, some with LIST/bext chunks before the audio.
libsndfile reads all of them (``audio.io.load_audio``). Clips keep their own length in the
store; the shorter ones are padded to 4 s when loaded for training, not here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audioclf.data.catalog.archive import ArchiveDataset, archive_options
from audioclf.data.catalog.registry import DatasetInfo, Item, ProgressFn, register_dataset
from audioclf.data.download import DatasetLayoutError, Remote, dataset_file, fetch_archive

ARCHIVE = Remote(
    url="https://zenodo.org/records/1203745/files/UrbanSound8K.tar.gz",
    filename="UrbanSound8K.tar.gz",
    checksum="md5:9aa69802bbf37fb986f71ec1483a196e",
)
TOP_DIR = "UrbanSound8K"
CSV = Path("metadata") / "UrbanSound8K.csv"
COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")
FOLDS = range(1, 11)
CLIP_SECONDS = 4.0


@register_dataset
class UrbanSound8K(ArchiveDataset):
    info = DatasetInfo(
        name="urbansound8k",
        title="UrbanSound8K: urban sound excerpts (<= 4 s)",
        task="single_label",
        classes=10,
        clips=8732,
        protocol="10-fold cross-validation on the official folds 1-10 (fold=k holds out fold k); clips < 4 s padded at load time",
        license="CC BY-NC 4.0",
        homepage="https://urbansounddataset.weebly.com/urbansound8k.html",
        sample_rate=44100,  # most files; the archive mixes 8-192 kHz
        citation="J. Salamon, C. Jacoby, J. P. Bello, A Dataset and Taxonomy for Urban Sound Research, ACM Multimedia 2014",
    )
    options = archive_options(
        ARCHIVE, "expected checksum, e.g. md5:<hex> (default: Zenodo's MD5 for the official URL, else recorded on first download)"
    )
    archive, top_dir, metadata_csv, columns = ARCHIVE, TOP_DIR, CSV, COLUMNS
    audio_layout = "audio/fold1..fold10/ (the layout of the Zenodo archive)"

    # -- where the files are ----------------------------------------------------------
    def fetch(self, progress: ProgressFn | None = None) -> None:
        if self.data_dir() is None:
            root = self.require_root()
            fetch_archive(self._remote(), root, root, progress)
            self._check_unpacked()

    # -- labels and clips -------------------------------------------------------------
    def label_names(self) -> list[str]:
        names: dict[int, str] = {}
        for row in self._metadata():
            c = int(row["classID"])
            if names.setdefault(c, row["class"]) != row["class"]:
                raise DatasetLayoutError(f"dataset 'urbansound8k': classID {c} is both {names[c]!r} and {row['class']!r}")
        if sorted(names) != list(range(len(names))):
            raise DatasetLayoutError(f"dataset 'urbansound8k': classID values are not 0..{len(names) - 1}: {sorted(names)}")
        return [names[c] for c in sorted(names)]

    def items(self) -> list[Item]:
        d = self._require_data_dir()
        items = []
        for row in self._metadata():
            fold = int(row["fold"])
            if fold not in FOLDS:
                raise DatasetLayoutError(f"dataset 'urbansound8k': {row['slice_file_name']} has fold {fold}; folds are 1-10")
            items.append(
                Item(
                    clip_id=Path(row["slice_file_name"]).stem,
                    target=int(row["classID"]),
                    fold=fold,
                    path=str(dataset_file(d / "audio" / f"fold{fold}", row["slice_file_name"], "urbansound8k", d / CSV)),
                    meta={"fsID": row["fsID"], "salience": row["salience"]},
                )
            )
        return items

    def dataset_version(self) -> str:
        return "1.0"

    def provenance(self) -> dict[str, Any]:
        prov = super().provenance()
        # read by the training side: pad shorter clips to this length when loading
        prov["clip_seconds"] = CLIP_SECONDS
        prov["archive_checksum"] = self.opts["checksum"] or (ARCHIVE.checksum if self.opts["url"] == ARCHIVE.url else None)
        return prov
