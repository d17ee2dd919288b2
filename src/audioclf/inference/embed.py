"""Clip embeddings of files or store clips, written as ``.npy`` (+ ``.csv`` sidecar), ``.npz``
or ``.parquet``: ``audioclf embed MODEL FILES_OR_STORE --out emb.parquet``.

Each clip's embedding is the model's documented one (``model.embed``: PANNs' ``fc1``
output, EAT's class token, BEATs/AST pooled encoder output ...), computed on the same
windows :meth:`Classifier.scores` uses (one padded clip, or half-overlapping windows
averaged for longer audio). Windows of several clips share a forward pass, ``batch_size``
at a time.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audioclf.errors import ConfigError, DataError, MissingDependencyError
from audioclf.inference.classifier import Classifier

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, "int | None"], None]
EMBEDDING_FORMATS = (".npy", ".npz", ".parquet")


@dataclass
class Embeddings:
    """``embeddings`` float32 ``(clips, dim)``; per clip its ``names`` (file path or store clip
    id) and ``labels`` (the store's label names, ``;``-joined for multi-label; empty for files)."""

    embeddings: np.ndarray
    names: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.names)


def _embed_clips(
    clf: Classifier,
    clips: Iterable[tuple[str, str, np.ndarray]],
    total: int,
    batch_size: int,
    progress: ProgressFn | None,
) -> Embeddings:
    """``clips``: ``(name, label, waveform at the model rate)``; windows of consecutive clips
    are batched together, each clip's window embeddings averaged."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    names: list[str] = []
    labels: list[str] = []
    sums: list[np.ndarray | None] = []
    counts: list[int] = []
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        out = clf.embed_batch(np.stack([w for _, w in pending]))
        for (i, _), e in zip(pending, out, strict=True):
            s = sums[i]
            sums[i] = e.astype(np.float64) if s is None else s + e
            counts[i] += 1
        pending.clear()

    for n, (name, label, wave) in enumerate(clips):
        names.append(name)
        labels.append(label)
        sums.append(None)
        counts.append(0)
        for w in clf.windows(wave):
            pending.append((n, w))
            if len(pending) == batch_size:
                flush()
        if progress is not None:
            progress("embed", n + 1, total)
    if pending:
        flush()
    if not names:
        raise ConfigError("nothing to embed: no files or clips given")
    emb = np.stack([s / c for s, c in zip(sums, counts, strict=True)]).astype(np.float32)  # type: ignore[operator]
    return Embeddings(emb, names, labels)


def embed_files(
    clf: Classifier, files: Sequence[str | Path], *, batch_size: int = 16, progress: ProgressFn | None = None
) -> Embeddings:
    """One embedding per audio file (decoded and resampled to the model's rate)."""

    def clips() -> Iterator[tuple[str, str, np.ndarray]]:
        for f in files:
            yield str(f), "", clf.load_waveform(f)

    return _embed_clips(clf, clips(), len(files), batch_size, progress)


def embed_store(
    clf: Classifier,
    store_path: str | Path,
    *,
    split: str | None = None,
    fold: int | None = None,
    batch_size: int = 16,
    progress: ProgressFn | None = None,
) -> Embeddings:
    """One embedding per clip of a packed store (``split`` or ``fold``, default all), with the
    clip id and its label name(s)."""
    from audioclf.data.store import Store

    store = Store(store_path)
    idx = store.indices(folds=[fold]) if fold is not None else store.indices(split=split)
    names = store.label_names

    def label_of(target: object) -> str:
        if store.multi_label:
            return ";".join(names[j] for j in np.flatnonzero(np.asarray(target)))
        return names[int(target)]  # type: ignore[call-overload]

    def clips() -> Iterator[tuple[str, str, np.ndarray]]:
        for i in idx:
            clip = store[int(i)]
            yield clip.clip_id, label_of(clip.target), clf.load_waveform(clip.audio, store.sample_rate)

    return _embed_clips(clf, clips(), len(idx), batch_size, progress)


def write_embeddings(emb: Embeddings, out: str | Path) -> list[Path]:
    """Write ``emb`` by ``out``'s suffix; returns the files written.

    * ``.npy``: the ``(clips, dim)`` array, plus ``<out>.csv`` (``index,name,label``) beside it;
    * ``.npz``: arrays ``embeddings``, ``names`` and ``labels`` in one file;
    * ``.parquet``: columns ``name``, ``label``, ``embedding`` (a list of floats per row),
      through pyarrow.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in EMBEDDING_FORMATS:
        raise ConfigError(f"--out {out}: embeddings are written as {', '.join(EMBEDDING_FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(out, emb.embeddings)
        sidecar = out.with_suffix(".csv")
        with sidecar.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["index", "name", "label"])
            w.writerows((i, n, lab) for i, (n, lab) in enumerate(zip(emb.names, emb.labels, strict=True)))
        return [out, sidecar]
    if suffix == ".npz":
        np.savez(out, embeddings=emb.embeddings, names=np.asarray(emb.names), labels=np.asarray(emb.labels))
        return [out]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise MissingDependencyError(f"--out {out}: writing parquet needs pyarrow (pip install pyarrow), "
                         "or write .npy/.npz instead") from err
    table = pa.table({
        "name": emb.names,
        "label": emb.labels,
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.embeddings.reshape(-1)), emb.embeddings.shape[1]),
    })
    pq.write_table(table, out)
    return [out]


def read_embeddings(path: str | Path) -> Embeddings:
    """Read what :func:`write_embeddings` wrote."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        with path.with_suffix(".csv").open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return Embeddings(np.load(path), [r["name"] for r in rows], [r["label"] for r in rows])
    if suffix == ".npz":
        with np.load(path) as z:
            return Embeddings(z["embeddings"], [str(s) for s in z["names"]], [str(s) for s in z["labels"]])
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        emb = np.asarray(t.column("embedding").combine_chunks().flatten(), dtype=np.float32).reshape(t.num_rows, -1)
        return Embeddings(emb, t.column("name").to_pylist(), t.column("label").to_pylist())
    raise DataError(f"{path}: not an embeddings file ({', '.join(EMBEDDING_FORMATS)})")
