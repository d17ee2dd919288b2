"""Prepare: source files -> decoded, resampled, packed store (+ ``prepare_report.json``).

Decoding and resampling run in worker processes; clips are written in the dataset's own
order, so an interrupted prepare resumes (from its ``.partial`` file, or shard by shard)
and ends with the same store as an uninterrupted one. A clip that fails to decode is
skipped and listed in the report with the reason; it never stops the run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import multiprocessing as mp
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audioclf.data.catalog.registry import DatasetSource, Item, ProgressFn
from audioclf.data.store import (
    SHARD_INDEX,
    StoreHeader,
    StoreWriter,
    read_clip_ids,
    write_shard_index,
)
from audioclf.errors import DataError, StoreError

log = logging.getLogger(__name__)


@dataclass
class PrepareReport:
    store: str
    dataset: str
    sample_rate: int
    clips: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    per_split: dict[str, int] = field(default_factory=dict)
    per_fold: dict[str, int] = field(default_factory=dict)
    per_class: dict[str, int] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    source_sample_rates: dict[str, int] = field(default_factory=dict)
    resumed_clips: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, default=str)


def _decode(source: DatasetSource, sample_rate: int, item: Item) -> tuple[Item, np.ndarray | None, int, str]:
    try:
        audio, native = source.load(item, sample_rate)
        return item, audio, native, ""
    except Exception as err:  # noqa: BLE001 - any failure is reported, not fatal
        return item, None, -1, str(err)


def _decoded(
    source: DatasetSource, items: list[Item], sample_rate: int, pool: Any | None
) -> Iterator[tuple[Item, np.ndarray | None, int, str]]:
    fn = functools.partial(_decode, source, sample_rate)
    if pool is None or len(items) < 2:
        yield from map(fn, items)
        return
    # imap keeps the dataset's order, so a resumed store equals an uninterrupted one. The
    # source travels with each chunk of tasks: sources keep their pickled state small.
    yield from pool.imap(fn, items, chunksize=8)


def _ignore_sigint() -> None:
    # Ctrl-C reaches every process of the terminal's group: the workers leave it to the
    # main process, which stops the pool, rather than each printing a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _sigint_at_clip_boundaries() -> Iterator[Callable[[], None]]:
    """Yield a ``check()`` that raises KeyboardInterrupt once Ctrl-C was pressed.

    A KeyboardInterrupt raised wherever the signal lands can fall into a finaliser or a
    weakref callback, where Python prints "Exception ignored" and carries on; taking it at
    the next clip boundary instead always stops the run, and between two writes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    pressed: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))

    def check() -> None:
        if pressed:
            raise KeyboardInterrupt

    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _pool(workers: int) -> Iterator[Any]:
    if workers <= 1:
        yield None
        return
    # fork keeps start-up cheap (no re-import of torch in each worker)
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    pool = ctx.Pool(workers, initializer=_ignore_sigint)
    try:
        yield pool
    except BaseException:
        pool.terminate()  # an error or Ctrl-C: stop decoding now, quietly
        pool.join()
        raise
    pool.close()
    pool.join()


def _source_of(item: Item) -> str:
    """What the store records as the clip's origin: a file, or a part of one."""
    return str(item.meta.get("source") or item.path or "")


def prepare_dataset(
    source: DatasetSource,
    out: str | Path,
    *,
    sample_rate: int | None = None,
    workers: int = 1,
    resume: bool = True,
    overwrite: bool = False,
    shard_size: int | None = None,
    progress: ProgressFn | None = None,
    stop_after: int | None = None,
) -> PrepareReport:
    """Fetch ``source``, decode every item at ``sample_rate`` and pack it into ``out``.

    ``shard_size`` writes a directory of shards ``part-00000.h5`` ... of that many clips
    each (AudioSet scale); finished shards are kept on resume. Left at None, the source's
    ``preferred_shard_size()`` decides, where it has one (AudioSet does). ``stop_after`` stops after
    that many new clips without finishing (used to test interruption).
    Returns the report, also written as ``prepare_report.json`` beside the store.
    """
    t0 = time.time()
    out = Path(out)
    sample_rate = sample_rate or source.info.sample_rate
    source.fetch(progress)
    labels = source.label_names()
    items = source.items()
    if not items:
        raise DataError(f"dataset {source.info.name!r}: no clips found under {source.root}")
    header = StoreHeader(
        sample_rate=sample_rate,
        label_names=labels,
        task=source.task,
        dataset=source.info.name,
        dataset_version=source.dataset_version(),
        provenance=source.provenance(),
    )
    report = PrepareReport(store=str(out), dataset=source.info.name, sample_rate=sample_rate)
    lengths: list[int] = []
    native_rates: Counter[int] = Counter()
    if shard_size is None:
        # a dataset may ask for shards (AudioSet: millions of clips, packed incrementally)
        shard_size = source.preferred_shard_size()
    if shard_size:
        out.mkdir(parents=True, exist_ok=True)
        groups = [(out / f"part-{i:05d}.h5", items[s : s + shard_size]) for i, s in enumerate(range(0, len(items), shard_size))]
    else:
        groups = [(out, items)]
    done = 0
    new = 0  # clips decoded and written by this run, across shards
    total = len(items)
    shards: list[str] = []  # the shard files that make up the store, for its index
    with _sigint_at_clip_boundaries() as check_interrupt, _pool(workers) as pool:
        for path, group in groups:
            if path.exists() and not overwrite:
                if not shard_size:
                    raise FileExistsError(f"store already exists: {path} (pass --overwrite to `audioclf prepare`, or overwrite=True, to rebuild it)")
                _check_kept_shard(path, group)
                shards.append(path.name)
                done += len(group)
                report.resumed_clips += len(group)
                continue
            if shard_size:
                # the index marks the directory complete: drop it while a shard is written
                (out / SHARD_INDEX).unlink(missing_ok=True)
            writer = StoreWriter(path, header, resume=resume, overwrite=overwrite)
            report.resumed_clips += len(writer)
            todo = [it for it in group if it.clip_id not in writer.written_ids]
            done += len(group) - len(todo)
            try:
                for item, audio, native, error in _decoded(source, todo, sample_rate, pool):
                    check_interrupt()
                    done += 1
                    if progress:
                        progress("decoding", done, total)
                    if audio is None or audio.size == 0:
                        report.skipped.append({"clip_id": item.clip_id, "path": _source_of(item), "reason": error or "empty audio"})
                        continue
                    writer.add(audio, item.target, clip_id=item.clip_id, source=_source_of(item), fold=item.fold, split=item.split)
                    lengths.append(audio.size)
                    native_rates[native] += 1
                    new += 1
                    if stop_after is not None and new >= stop_after:
                        raise _Interrupted(f"stopped after {new} new clips (stop_after)")
            except BaseException:
                writer.abort()
                raise
            if len(writer) == 0:
                writer.abort()
                writer.tmp.unlink(missing_ok=True)
                if not shard_size:
                    first = report.skipped[0]["reason"] if report.skipped else "?"
                    raise DataError(
                        f"dataset {source.info.name!r}: none of the {len(group)} clips could be decoded; first error: {first}"
                    )
                # a shard whose every clip failed is left out (and retried by the next run)
                log.warning("%s: none of its %d clips could be decoded; shard left out", path.name, len(group))
                continue
            writer.close()
            shards.append(path.name)
    if shard_size and not shards:
        first = report.skipped[0]["reason"] if report.skipped else "?"
        raise DataError(f"dataset {source.info.name!r}: no clip could be decoded; first error: {first}")
    if shard_size:
        write_shard_index(out, shards)

    from audioclf.data.store import Store

    store = Store(out)
    summary = store.summary()
    report.clips = summary["clips"]
    report.per_split = summary["splits"]
    report.per_fold = {str(k): v for k, v in summary["folds"].items()}
    report.per_class = summary["per_class"]
    if store.split_names():  # a split without some class, or smaller than the class count, is said now
        from audioclf.data.splits import coverage_warnings

        groups = {name: store.indices(split=name) for name in store.split_names()}
        for message in coverage_warnings(store.targets, store.label_names, groups, where=str(out)):
            log.warning(message)
    secs = store.lengths / store.sample_rate
    report.durations = {
        "min": round(float(secs.min()), 3),
        "mean": round(float(secs.mean()), 3),
        "max": round(float(secs.max()), 3),
        "hours": round(float(secs.sum()) / 3600, 3),
    }
    report.source_sample_rates = {str(k): v for k, v in sorted(native_rates.items())}
    report.extra = source.extra_report()
    report.seconds = round(time.time() - t0, 2)
    store.close()
    report_path = (out if out.is_dir() else out.parent) / (
        "prepare_report.json" if out.is_dir() else f"{out.stem}.prepare_report.json"
    )
    report_path.write_text(report.to_json())
    log.info("prepared %s: %d clips (%d skipped) in %.1fs", out, report.clips, len(report.skipped), report.seconds)
    return report


def _check_kept_shard(path: Path, group: list[Item]) -> None:
    """A finished shard is kept on resume only if it holds clips of the slice it stands for:
    when the clip list changed (files added, other options, another shard size), keeping it
    would duplicate or drop clips."""
    stray = set(read_clip_ids(path)) - {it.clip_id for it in group}
    if stray:
        raise StoreError(
            f"{path}: this finished shard holds {len(stray)} clip(s) that are not in its slice of the "
            f"dataset now (e.g. {sorted(stray)[:3]}): the clip list or shard size changed since it was "
            "written; pass --overwrite to `audioclf prepare` (overwrite=True in Python) to rebuild the store"
        )


class _Interrupted(Exception):
    """Raised by ``stop_after`` to simulate an interruption."""


PrepareInterrupted = _Interrupted
