"""Getting source files: resumable downloads, checksums, safe extraction, layout checks.

* ``download`` fetches a URL to a file. The bytes go to ``<file>.part`` first; an
  interrupted download is resumed with an HTTP Range request (guarded by ``If-Range``, so
  a file that changed on the server is fetched again instead of spliced). A finished file
  is verified against the checksum the source publishes; where none is published, its
  SHA-256 is recorded in ``<file>.checksum.json`` on first download and checked on every
  later use.
* ``extract`` unpacks a zip or tar archive once (a marker file records that it is done),
  refuses members that would land outside the target directory, and keeps the archive.
* ``require_file`` / ``read_csv`` check that a dataset's metadata is where its official
  layout puts it, and say what was expected when it is not.

Nothing here deletes a file the user downloaded: a download that fails verification is
moved aside to ``<file>.corrupt`` and reported.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import json
import logging
import os
import socket
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from audioclf.data.catalog.registry import ProgressFn
from audioclf.errors import ArchiveError, AudioclfError, DataError, DownloadError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_USER_AGENT = "audioclf (https://github.com/audioclf/audioclf)"
# HTTP statuses worth another try: the server or a proxy had a moment, not a real "no".
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class ChecksumError(DataError):
    """A file does not match its published or recorded checksum."""


class DatasetLayoutError(AudioclfError, FileNotFoundError):
    """Files are not where a dataset's official layout puts them; the message says what was
    expected and where."""


@dataclass(frozen=True)
class Remote:
    """A file a dataset downloads.

    ``checksum`` is ``"<algorithm>:<hex digest>"`` (``md5``, ``sha1``, ``sha256`` ...) as the
    source publishes it, or None when it publishes none (then it is recorded on first
    download). ``size`` is the published size in bytes, if known (shown before download).
    """

    url: str
    filename: str
    checksum: str | None = None
    size: int | None = None

    def with_overrides(self, url: str | None = None, checksum: str | None = None) -> Remote:
        """This file from another ``url`` and/or with another ``checksum``.

        A published checksum belongs to the official URL: a different URL keeps it only
        when given again explicitly (a mirror of the same file can pass it back in).
        """
        if url is None or url == self.url:
            return Remote(self.url, self.filename, checksum or self.checksum, self.size)
        return Remote(url, self.filename, checksum, None)


def join_url(base: str, filename: str) -> str:
    """``filename`` under the directory URL ``base`` (with or without its trailing slash)."""
    return base.rstrip("/") + "/" + filename


# -- checksums --------------------------------------------------------------------------------
def parse_checksum(spec: str) -> tuple[str, str]:
    """``"sha256:ab12..."`` -> ``("sha256", "ab12...")``, validated."""
    algo, sep, digest = spec.partition(":")
    algo, digest = algo.strip().lower(), digest.strip().lower()
    if not sep or algo not in hashlib.algorithms_guaranteed:
        raise ValueError(f"checksum {spec!r} must look like 'sha256:<hex>' or 'md5:<hex>'")
    expected_len = hashlib.new(algo).digest_size * 2
    if len(digest) != expected_len or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"checksum {spec!r}: a {algo} digest is {expected_len} hex characters")
    return algo, digest


def file_digest(path: str | Path, algo: str = "sha256", progress: ProgressFn | None = None) -> str:
    """Hex digest of a file, read in chunks (archives are gigabytes)."""
    path = Path(path)
    h = hashlib.new(algo)
    total = path.stat().st_size
    done = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(f"verifying {path.name}", done, total)
    return h.hexdigest()


def record_path(path: Path) -> Path:
    """Where the checksum recorded on first download of ``path`` is kept."""
    return path.with_name(path.name + ".checksum.json")


def recorded_checksum(path: str | Path) -> str | None:
    """The checksum recorded for ``path`` (``"sha256:..."``), or None."""
    rec = record_path(Path(path))
    if not rec.exists():
        return None
    try:
        data = json.loads(rec.read_text())
        return f"sha256:{data['sha256']}"
    except (ValueError, KeyError) as err:
        raise ChecksumError(f"{rec}: unreadable checksum record ({err}); delete it to record it again") from err


def verify_file(path: str | Path, checksum: str, progress: ProgressFn | None = None) -> None:
    """Raise ``ChecksumError`` unless ``path`` matches ``checksum`` (``"algo:hex"``)."""
    path = Path(path)
    algo, expected = parse_checksum(checksum)
    actual = file_digest(path, algo, progress)
    if actual != expected:
        raise ChecksumError(f"{path}: {algo} checksum mismatch: expected {expected}, got {actual}")
    log.info("%s: %s checksum verified", path.name, algo)


def _record(path: Path, url: str, digest: str) -> None:
    rec = {
        "file": path.name,
        "url": url,
        "size": path.stat().st_size,
        "sha256": digest,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "note": "recorded by audioclf on first download; later uses are checked against it",
    }
    record_path(path).write_text(json.dumps(rec, indent=2) + "\n")


# -- download ---------------------------------------------------------------------------------
def download(
    url: str,
    dest: str | Path,
    *,
    checksum: str | None = None,
    progress: ProgressFn | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    retry_wait: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``) and verify it. Returns ``dest``.

    An existing ``dest`` is not downloaded again, only verified against ``checksum`` or the
    checksum recorded when it was downloaded. Without either, the SHA-256 of a fresh
    download is recorded next to it. Network failures are retried ``retries`` times, each
    resuming where the last stopped.
    """
    dest = Path(dest)
    if checksum is not None:
        parse_checksum(checksum)  # a malformed checksum fails before any download
    if dest.exists():
        expected = checksum or recorded_checksum(dest)
        if expected is None:
            log.info("%s: found; no published or recorded checksum to verify it against", dest)
        else:
            try:
                verify_file(dest, expected, progress)
            except ChecksumError as err:
                raise ChecksumError(
                    f"{err}. The file was left untouched: if it is damaged, delete it and run "
                    f"again to download {url}"
                ) from None
        return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, progress, timeout)
            break
        except _Transient as err:
            if attempt == retries:
                raise DownloadError(
                    f"downloading {url} failed after {retries + 1} attempts: {err}; "
                    f"{part.name} ({_size(part)} bytes) is kept and the next run resumes it"
                ) from err
            wait = retry_wait * 2**attempt
            log.warning("download of %s interrupted (%s); resuming in %.0fs", url, err, wait)
            time.sleep(wait)

    if checksum is not None:
        try:
            verify_file(part, checksum, progress)
        except ChecksumError as err:
            bad = dest.with_name(dest.name + ".corrupt")
            os.replace(part, bad)
            raise ChecksumError(
                f"{err}. The download from {url} was kept as {bad}; delete it and run again. "
                "If the source has published a new version, pass its checksum explicitly."
            ) from None
    os.replace(part, dest)
    _part_state(part).unlink(missing_ok=True)
    if checksum is None:
        digest = file_digest(dest, "sha256", progress)
        _record(dest, url, digest)
        log.info("%s: no published checksum; recorded sha256 %s in %s", dest.name, digest, record_path(dest).name)
    return dest


class _Transient(Exception):
    """A failure worth another try (connection dropped, timeout, 5xx)."""


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _part_state(part: Path) -> Path:
    # The validator (ETag / Last-Modified) of the response a .part file came from, so a
    # resume asks for "the rest of *that* file" (If-Range) and never splices two versions.
    return part.with_name(part.name + ".json")


def _fetch(url: str, part: Path, progress: ProgressFn | None, timeout: float) -> None:
    start = _size(part)
    state_file = _part_state(part)
    state: dict[str, Any] = {}
    if start and state_file.exists():
        try:
            state = json.loads(state_file.read_text())
        except ValueError:
            state = {}
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
        validator = state.get("etag") or state.get("last_modified")
        if state.get("url") == url and validator:
            headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:
            # Nothing past our end: the part is complete if the server's size agrees.
            total = _content_range_total(err.headers.get("Content-Range"))
            if total == start:
                return
            log.warning("%s: server refused to resume (%s); starting over", url, err)
            part.unlink()
            raise _Transient("range not satisfiable; restarting") from err
        if err.code in _RETRY_STATUSES:
            raise _Transient(f"HTTP {err.code} {err.reason}") from err
        raise DownloadError(f"downloading {url} failed: HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        if isinstance(err.reason, (socket.timeout, ConnectionError, TimeoutError)):
            raise _Transient(str(err.reason)) from err
        raise DownloadError(f"downloading {url} failed: {err.reason}") from err
    except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise _Transient(str(err) or type(err).__name__) from err

    with resp:
        status = resp.status
        length = resp.headers.get("Content-Length")
        if start and status == 206:
            first = _content_range_start(resp.headers.get("Content-Range"))
            if first != start:
                resp.close()
                part.unlink()
                raise _Transient(f"server resumed at byte {first}, not {start}; restarting")
            mode, done = "ab", start
            total = _content_range_total(resp.headers.get("Content-Range"))
        else:
            if start:
                log.info("%s: server sent the whole file (changed, or no range support); starting over", url)
            mode, done = "wb", 0
            total = int(length) if length is not None else None
            state = {
                "url": url,
                "etag": resp.headers.get("ETag"),
                "last_modified": resp.headers.get("Last-Modified"),
                "total": total,
            }
            state_file.write_text(json.dumps(state))
        desc = f"downloading {part.name[: -len('.part')]}"
        try:
            with part.open(mode) as out:
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(desc, done, total)
        except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
            raise _Transient(f"connection lost after {done} bytes ({type(err).__name__}: {err})") from err
    if total is not None and done < total:
        raise _Transient(f"connection closed after {done} of {total} bytes")


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    try:
        assert value is not None
        return int(value.split()[1].split("-")[0])
    except (AssertionError, IndexError, ValueError):
        return None


def _content_range_total(value: str | None) -> int | None:
    # "bytes 100-199/200" or "bytes */200"
    try:
        assert value is not None
        total = value.rsplit("/", 1)[1]
        return None if total == "*" else int(total)
    except (AssertionError, IndexError, ValueError):
        return None


# -- extraction -------------------------------------------------------------------------------
def extraction_marker(archive: Path, dest: Path) -> Path:
    """The file whose presence says ``archive`` was fully extracted into ``dest``."""
    return dest / f".{archive.name}.extracted"


def is_extracted(archive: Path, dest: Path) -> bool:
    return extraction_marker(archive, dest).exists()


def extract(archive: str | Path, dest: str | Path, *, progress: ProgressFn | None = None) -> Path:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into ``dest`` once; keeps the archive.

    Members with absolute paths, ``..`` components, links that point outside ``dest``, or
    device files stop the extraction with ``ArchiveError`` before anything of theirs is
    written. A marker file is written when everything is out, so a second call returns at
    once and an interrupted extraction starts again.
    """
    archive, dest = Path(archive), Path(dest)
    marker = extraction_marker(archive, dest)
    if marker.exists():
        log.debug("%s already extracted into %s", archive.name, dest)
        return dest
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    dest.mkdir(parents=True, exist_ok=True)
    log.info("extracting %s into %s", archive, dest)
    if zipfile.is_zipfile(archive):
        n = _extract_zip(archive, dest, progress)
    elif tarfile.is_tarfile(archive):
        n = _extract_tar(archive, dest, progress)
    else:
        raise ArchiveError(f"{archive}: not a zip or tar archive (is the download complete?)")
    marker.write_text(json.dumps({"archive": str(archive), "members": n, "size": archive.stat().st_size}) + "\n")
    return dest


def _check_member_name(archive: Path, name: str, dest: Path) -> Path:
    # resolving catches absolute names, "..", and ".." hidden behind links already extracted
    target = (dest / PurePosixPath(name.replace("\\", "/"))).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise ArchiveError(f"{archive}: member {name!r} would be written outside {dest}; refusing to extract")
    return target


def _extract_zip(archive: Path, dest: Path, progress: ProgressFn | None) -> int:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for m in members:  # check all before writing any
                _check_member_name(archive, m.filename, dest)
            for i, m in enumerate(members, 1):
                zf.extract(m, dest)
                if progress:
                    progress(f"extracting {archive.name}", i, len(members))
    except (zipfile.BadZipFile, EOFError) as err:
        raise ArchiveError(f"{archive}: damaged zip archive ({err})") from err
    return len(members)


def _check_tar_member(archive: Path, m: tarfile.TarInfo, dest: Path) -> None:
    target = _check_member_name(archive, m.name, dest)
    if m.isdev() or m.isfifo():
        raise ArchiveError(f"{archive}: member {m.name!r} is a device or pipe; refusing to extract")
    if m.issym() or m.islnk():
        # symlinks are relative to their own directory, hard links to the archive root
        base = target.parent if m.issym() else dest.resolve()
        link = PurePosixPath(m.linkname)
        if link.is_absolute() or not (base / link).resolve().is_relative_to(dest.resolve()):
            raise ArchiveError(
                f"{archive}: link {m.name!r} -> {m.linkname!r} points outside {dest}; refusing to extract"
            )


def _extract_tar(archive: Path, dest: Path, progress: ProgressFn | None) -> int:
    # Stream mode reads a multi-GB .tar.gz once, front to back; progress follows the
    # compressed bytes read, the only total known without a first pass.
    total = archive.stat().st_size
    n = 0
    kwargs: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:
        with archive.open("rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tf:
            for m in tf:
                _check_tar_member(archive, m, dest)
                tf.extract(m, dest, **kwargs)
                n += 1
                if progress and n % 64 == 0:
                    progress(f"extracting {archive.name}", raw.tell(), total)
            if progress:
                progress(f"extracting {archive.name}", total, total)
    except (tarfile.TarError, EOFError, OSError) as err:
        if isinstance(err, tarfile.FilterError):
            raise ArchiveError(f"{archive}: unsafe member refused ({err})") from err
        raise ArchiveError(f"{archive}: damaged tar archive ({type(err).__name__}: {err})") from err
    return n


def fetch_archive(remote: Remote, directory: Path, extract_to: Path, progress: ProgressFn | None = None) -> Path:
    """Download (or find) ``remote`` in ``directory``, verify it and extract it once into
    ``extract_to``. Returns the archive's path."""
    archive = directory / remote.filename
    if is_extracted(archive, extract_to):
        return archive
    if remote.size and not archive.exists():
        log.info("downloading %s (%.1f MB) from %s", remote.filename, remote.size / 1e6, remote.url)
    download(remote.url, archive, checksum=remote.checksum, progress=progress)
    extract(archive, extract_to, progress=progress)
    return archive


def describe_dir(path: Path, limit: int = 12) -> str:
    """A short listing of what ``path`` holds, for error messages."""
    if not path.is_dir():
        return f"{path} does not exist"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir() if not p.name.startswith("."))
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"{path} holds: {', '.join(names[:limit]) or 'nothing'}{more}"


# -- layout checks ----------------------------------------------------------------------------
def require_file(path: Path, dataset: str, what: str) -> Path:
    """``path`` if it is a file, else ``DatasetLayoutError`` naming what was expected."""
    if not path.is_file():
        raise DatasetLayoutError(f"dataset {dataset!r}: expected {what} at {path}; {describe_dir(path.parent)}")
    return path


def read_csv(path: Path, required: Sequence[str], dataset: str, *, comment: str | None = None) -> list[dict[str, str]]:
    """Rows of a metadata CSV with a header holding ``required`` columns (stripped values).

    ``comment`` skips lines starting with it before the header.
    """
    require_file(path, dataset, f"metadata file {path.name}")
    with path.open(newline="", encoding="utf-8") as fh:
        lines: Iterable[str] = fh
        if comment:
            lines = (ln for ln in fh if not ln.startswith(comment))
        reader = csv.DictReader(lines, skipinitialspace=True)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if missing:
            raise DatasetLayoutError(
                f"dataset {dataset!r}: {path} must have the columns {', '.join(required)}; "
                f"missing {', '.join(missing)} (found: {', '.join(columns) or 'no header'})"
            )
        reader.fieldnames = columns
        rows = [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    if not rows:
        raise DatasetLayoutError(f"dataset {dataset!r}: {path} lists no clips")
    return rows
