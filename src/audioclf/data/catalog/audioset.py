"""AudioSet: 10-second YouTube segments tagged with any of the ontology's 527 labels.

Google publishes the segment lists, not the audio; the audio is read from a directory the
user already holds, in one of two layouts:

* PANNs (``audioset_tagging_cnn``): ``ROOT/audios/balanced_train_segments/Y<ytid>.wav``,
  ``ROOT/audios/eval_segments/``, ``ROOT/audios/unbalanced_train_segments/
  unbalanced_train_segments_partNN/``, and ``ROOT/metadata/*.csv``;
* flat: ``<ytid>.<ext>`` (any audio format; a ``Y`` prefix is understood too) directly in
  ROOT, or in ``audio_dir``.

Labels and lists come from the official CSVs (``class_labels_indices.csv``: index, mid,
display_name; ``*_segments.csv``: three comment lines, then ``YTID, start_seconds,
end_seconds, "mid,mid,..."``), read from ``ROOT/metadata`` (or ``metadata_dir``) and
downloaded there when missing. Splits: ``balanced_train`` (AS-20K), ``unbalanced_train``
(about 2 M segments) and ``eval``; targets are multi-hot. Clips listed but not present,
files present but not listed, black-listed ids and labels outside the ontology are counted
in the prepare report. The store is written in shards of ``shard_size`` clips, so the
unbalanced set is packed incrementally and an interrupted prepare resumes shard by shard.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

from audioclf.audio.io import AUDIO_EXTENSIONS
from audioclf.data.catalog.registry import (
    DatasetInfo,
    DatasetSource,
    Item,
    Option,
    ProgressFn,
    register_dataset,
)
from audioclf.data.download import (
    DatasetLayoutError,
    DownloadError,
    download,
    join_url,
    read_csv,
    require_file,
)
from audioclf.errors import ConfigError

log = logging.getLogger(__name__)

BASE_URL = "http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/"
LABELS_CSV = "class_labels_indices.csv"
SPLITS = ("balanced_train", "unbalanced_train", "eval")  # also the order clips are stored in
SEGMENT_COLUMNS = ("YTID", "start_seconds", "end_seconds", "positive_labels")


def segments_csv(split: str) -> str:
    return f"{split}_segments.csv"


@register_dataset
class AudioSet(DatasetSource):
    info = DatasetInfo(
        name="audioset",
        title="AudioSet (audio you hold, PANNs layout or a flat directory; official CSVs)",
        task="multi_label",
        classes=527,
        clips="22,160 balanced train (AS-20K) + 2,041,789 unbalanced train + 20,371 eval (as listed; YouTube losses vary)",
        protocol="splits balanced_train / unbalanced_train / eval; train on balanced (AS-20K) or balanced+unbalanced (AS-2M), test on eval (mAP)",
        license="labels CC BY 4.0; audio belongs to the YouTube uploaders",
        homepage="https://research.google.com/audioset/",
        sample_rate=32000,  # PANNs' wavs; YouTube originals are 44.1/48 kHz
        citation="J. F. Gemmeke et al., Audio Set: An ontology and human-labeled dataset for audio events, ICASSP 2017",
    )
    options = {
        "splits": Option("balanced_train,eval", f"comma-separated splits to pack, of {', '.join(SPLITS)}", str),
        "audio_dir": Option(None, "flat directory of <ytid>.* files (default: ROOT/audios in the PANNs layout, else ROOT)", str),
        "metadata_dir": Option(None, "where the official CSVs are or are downloaded to (default: ROOT/metadata)", str),
        "blacklist": Option(None, "file of YouTube ids to leave out (one per line, or the first CSV column)", str),
        "shard_size": Option(20000, "clips per store shard; 0 writes a single file", int),
        "base_url": Option(BASE_URL, "where missing CSVs are downloaded from", str),
    }
    # Sent to every decoding worker: the clip list (millions of items) stays home.
    _reset_in_workers = {"_items": None, "_report": {}}

    def __init__(self, root: str | Path | None = None, **options: Any) -> None:
        super().__init__(root, **options)
        self.splits = [s.strip() for s in str(self.opts["splits"]).split(",") if s.strip()]
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not self.splits:
            raise ConfigError(f"dataset 'audioset': unknown split(s) {bad}; choose from {', '.join(SPLITS)}")
        # canonical order, each once: the store's order must not depend on how they were typed
        self.splits = [s for s in SPLITS if s in self.splits]
        if int(self.opts["shard_size"]) < 0:
            raise ConfigError("dataset 'audioset': shard_size must be >= 0")
        self._items: list[Item] | None = None
        self._labels: list[tuple[str, str]] | None = None
        self._report: dict[str, Any] = {}

    # -- where the files are ----------------------------------------------------------
    def metadata_dir(self) -> Path:
        md = self.opts["metadata_dir"]
        return Path(md) if md else self.require_root() / "metadata"

    def layout(self) -> str:
        """``panns`` when ROOT/audios exists and no ``audio_dir`` is given, else ``flat``."""
        if self.opts["audio_dir"]:
            return "flat"
        return "panns" if (self.require_root() / "audios").is_dir() else "flat"

    def fetch(self, progress: ProgressFn | None = None) -> None:
        root = self.require_root()
        if not root.is_dir():
            raise DatasetLayoutError(f"dataset 'audioset': {root} is not a directory; AudioSet audio is not downloaded by audioclf")
        for name in (LABELS_CSV, *(segments_csv(s) for s in self.splits)):
            dest = self.metadata_dir() / name
            if not dest.exists():
                log.info("%s not found in %s; downloading the official list", name, dest.parent)
                try:
                    download(join_url(self.opts["base_url"], name), dest, progress=progress)
                except DownloadError as err:
                    raise DatasetLayoutError(
                        f"dataset 'audioset': expected the official list {name} in {dest.parent} "
                        f"(the PANNs layout's metadata/); downloading it failed: {err}"
                    ) from err

    # -- labels -----------------------------------------------------------------------
    def _label_table(self) -> list[tuple[str, str]]:
        if self._labels is None:
            rows = read_csv(self.metadata_dir() / LABELS_CSV, ("index", "mid", "display_name"), "audioset")
            table = sorted((int(r["index"]), r["mid"], r["display_name"]) for r in rows)
            if [i for i, _, _ in table] != list(range(len(table))):
                raise DatasetLayoutError(f"dataset 'audioset': {LABELS_CSV} indices are not 0..{len(table) - 1}")
            self._labels = [(mid, name) for _, mid, name in table]
        return self._labels

    def label_names(self) -> list[str]:
        names = [name for _, name in self._label_table()]
        # display names are unique in the real ontology; a store needs them to be
        if len(set(names)) != len(names):
            return [f"{name} ({mid})" for mid, name in self._label_table()]
        return names

    def label_mids(self) -> list[str]:
        return [mid for mid, _ in self._label_table()]

    # -- clips ------------------------------------------------------------------------
    def _split_dir(self, split: str) -> Path:
        return self.require_root() / "audios" / f"{split}_segments"

    def _scan(self, directory: Path, recursive: bool) -> dict[str, str]:
        """file stem -> path of every audio file in ``directory``. os.scandir, not glob:
        the unbalanced set is about two million files."""
        found: dict[str, str] = {}
        stack = [directory]
        while stack:
            d = stack.pop()
            try:
                entries = list(os.scandir(d))
            except FileNotFoundError:
                continue
            for e in sorted(entries, key=lambda e: e.name):
                if e.is_dir():
                    if recursive:
                        stack.append(Path(e.path))
                elif os.path.splitext(e.name)[1].lower() in AUDIO_EXTENSIONS:
                    found.setdefault(os.path.splitext(e.name)[0], e.path)
        return found

    def items(self) -> list[Item]:
        if self._items is not None:
            return self._items
        root = self.require_root()
        index = {mid: i for i, mid in enumerate(self.label_mids())}
        listed = {s: self._read_segments(s) for s in self.splits}
        blacklist = self._read_blacklist()
        layout = self.layout()
        if layout == "panns":
            files = {s: self._scan(self._split_dir(s), recursive=True) for s in self.splits}
            missing_dirs = [str(self._split_dir(s)) for s in self.splits if not self._split_dir(s).is_dir()]
            if len(missing_dirs) == len(self.splits):
                raise DatasetLayoutError(
                    f"dataset 'audioset': PANNs layout (ROOT/audios) but none of {', '.join(missing_dirs)} exists; "
                    "expected audios/balanced_train_segments/, audios/eval_segments/, "
                    "audios/unbalanced_train_segments/unbalanced_train_segments_partNN/ holding Y<ytid>.wav"
                )
        else:
            flat = Path(self.opts["audio_dir"]) if self.opts["audio_dir"] else root
            if not flat.is_dir():
                raise DatasetLayoutError(f"dataset 'audioset': audio_dir {flat} is not a directory")
            all_files = self._scan(flat, recursive=False)
            files = {s: all_files for s in self.splits}

        items: list[Item] = []
        seen: set[str] = set()
        missing: dict[str, list[str]] = {}
        unlisted: list[str] = []
        duplicates: list[str] = []
        unknown_labels: dict[str, int] = {}
        blacklisted = 0
        claimed: set[str] = set()  # stems matched to a listed id (flat layout: across splits)
        for split in self.splits:
            by_stem = files[split]
            miss = missing.setdefault(split, [])
            for ytid, mids in listed[split]:
                # PANNs prefixes "Y" because ids may start with "-"; a flat directory may or may not
                stem = f"Y{ytid}" if f"Y{ytid}" in by_stem else ytid if ytid in by_stem else None
                if stem is not None:
                    claimed.add(stem)  # listed, whether or not it is packed
                if ytid in blacklist:
                    blacklisted += 1
                    continue
                if ytid in seen:
                    duplicates.append(ytid)
                    continue
                seen.add(ytid)
                if stem is None:
                    miss.append(ytid)
                    continue
                target = []
                for m in mids:
                    if m in index:
                        target.append(index[m])
                    else:
                        unknown_labels[m] = unknown_labels.get(m, 0) + 1
                items.append(Item(clip_id=ytid, target=sorted(set(target)), split=split, path=by_stem[stem]))
            if layout == "panns":
                unlisted += [p for st, p in by_stem.items() if st not in claimed]
        other_splits = 0
        if layout == "flat":
            # a flat directory may hold every split: files of splits not packed now are
            # listed (elsewhere), not strays; their lists are read when present locally
            others = {ytid for s in SPLITS if s not in self.splits for ytid in self._local_ids(s)}
            stems = files[self.splits[0]]
            for st, p in stems.items():
                if st in claimed:
                    continue
                if st in others or (st.startswith("Y") and st[1:] in others):
                    other_splits += 1
                else:
                    unlisted.append(p)
        self._report = {
            "layout": layout,
            "audio_dir": str(root / "audios") if layout == "panns" else str(self.opts["audio_dir"] or root),
            "listed": {s: len(v) for s, v in listed.items()},
            "found": {s: sum(1 for it in items if it.split == s) for s in self.splits},
            "missing_count": {s: len(v) for s, v in missing.items()},
            "missing": missing,
            "in_other_splits": other_splits,
            "unlisted_count": len(unlisted),
            "unlisted": sorted(unlisted),
            "blacklisted": blacklisted,
            "duplicates": duplicates,
            "unknown_labels": unknown_labels,
        }
        for s in self.splits:
            log.info("audioset %s: %d listed, %d found, %d missing", s, len(listed[s]), self._report["found"][s], len(missing[s]))
        self._items = items
        return items

    def _read_segments(self, split: str) -> list[tuple[str, list[str]]]:
        """(ytid, [mid, ...]) rows of ``<split>_segments.csv``."""
        path = require_file(self.metadata_dir() / segments_csv(split), "audioset", f"the official segment list {segments_csv(split)}")
        rows: list[tuple[str, list[str]]] = []
        with path.open(newline="", encoding="utf-8") as fh:
            header_seen = False
            for line_no, row in enumerate(csv.reader(fh, skipinitialspace=True), start=1):
                if not row:
                    continue
                if row[0].startswith("#"):
                    # the third comment line names the columns: "# YTID, start_seconds, ..."
                    names = [row[0].lstrip("# ").strip(), *(c.strip() for c in row[1:])]
                    header_seen = header_seen or tuple(names) == SEGMENT_COLUMNS
                    continue
                if not header_seen or len(row) != 4:
                    raise DatasetLayoutError(
                        f"dataset 'audioset': {path}, line {line_no}: expected the official format (comment lines, "
                        f"then '# {', '.join(SEGMENT_COLUMNS)}', then rows YTID, start, end, \"mid,mid\"); got {row!r}"
                    )
                rows.append((row[0].strip(), [m.strip() for m in row[3].split(",") if m.strip()]))
        return rows

    def _local_ids(self, split: str) -> set[str]:
        """Ids listed in ``split``'s CSV if it is in the metadata directory (no download)."""
        if not (self.metadata_dir() / segments_csv(split)).is_file():
            return set()
        return {ytid for ytid, _ in self._read_segments(split)}

    def _read_blacklist(self) -> set[str]:
        if not self.opts["blacklist"]:
            return set()
        path = Path(self.opts["blacklist"])
        if not path.is_file():
            raise FileNotFoundError(f"dataset 'audioset': blacklist file not found: {path}")
        ids = set()
        for line in path.read_text().splitlines():
            first = line.split(",")[0].strip()
            if first and not first.startswith("#"):
                ids.add(first[1:] if len(first) == 12 and first.startswith("Y") else first)
        return ids

    # -- description ------------------------------------------------------------------
    def store_name(self) -> str:
        name = "audioset_" + "+".join(self.splits)
        return name if self.preferred_shard_size() else f"{name}.h5"

    def preferred_shard_size(self) -> int | None:
        """Clips per shard for ``prepare_dataset`` (None: one file)."""
        return int(self.opts["shard_size"]) or None

    def dataset_version(self) -> str:
        return "v1"

    def provenance(self) -> dict[str, Any]:
        prov = super().provenance()
        prov["label_mids"] = self.label_mids()
        prov["splits"] = self.splits
        return prov

    def extra_report(self) -> dict[str, Any]:
        return dict(self._report)
