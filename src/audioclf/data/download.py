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
import lzma
import os
import posixpath
import socket
import stat
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audioclf.data.catalog.registry import ProgressFn
from audioclf.errors import ArchiveError, AudioclfError, ConfigError, DataError, DownloadError

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
        raise ConfigError(f"checksum {spec!r} must look like 'sha256:<hex>' or 'md5:<hex>'")
    expected_len = hashlib.new(algo).digest_size * 2
    if len(digest) != expected_len or any(c not in "0123456789abcdef" for c in digest):
        raise ConfigError(f"checksum {spec!r}: a {algo} digest is {expected_len} hex characters")
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
    check_url(url)
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


def check_url(url: str) -> str:
    """``url`` if it is http(s) with a host; anything else (``file://``, ``ftp://``, a bare
    path) is refused: a dataset option must not turn a download into a local file read."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise DownloadError(f"{url!r}: only http:// and https:// URLs are downloaded (got scheme {parts.scheme or 'none'!r})")
    return url


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


@dataclass(frozen=True)
class ExtractLimits:
    """Bounds on what extracting one archive may write (a zip bomb stops at the first one
    crossed, before the member that would cross it is written).

    ``max_members``: entries in the archive. ``max_total_bytes``: bytes all members expand
    to. ``max_ratio``: expanded / compressed size, for each zip member over ``ratio_floor``
    bytes and for the archive as a whole (audio compresses a few times at most; a bomb by
    thousands). The defaults hold every catalog dataset with room to spare (Speech Commands:
    ~106k members; UrbanSound8K: 6.6 GB). Change them with the environment variables
    ``AUDIOCLF_EXTRACT_MAX_MEMBERS``, ``AUDIOCLF_EXTRACT_MAX_BYTES`` and
    ``AUDIOCLF_EXTRACT_MAX_RATIO`` (read when an archive is extracted).
    """

    max_members: int = 1_000_000
    max_total_bytes: int = 64 * 2**30
    max_ratio: float = 200.0
    ratio_floor: int = 2**20

    @classmethod
    def from_env(cls) -> ExtractLimits:
        d = cls()
        try:
            return cls(
                max_members=int(os.environ.get("AUDIOCLF_EXTRACT_MAX_MEMBERS", d.max_members)),
                max_total_bytes=int(float(os.environ.get("AUDIOCLF_EXTRACT_MAX_BYTES", d.max_total_bytes))),
                max_ratio=float(os.environ.get("AUDIOCLF_EXTRACT_MAX_RATIO", d.max_ratio)),
            )
        except ValueError as err:
            raise DataError(f"AUDIOCLF_EXTRACT_*: not a number ({err})") from None


def extract(
    archive: str | Path, dest: str | Path, *, progress: ProgressFn | None = None, limits: ExtractLimits | None = None
) -> Path:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into ``dest`` once; keeps the archive.

    Only regular files and directories are extracted, under names that stay inside
    ``dest`` by their text alone (:func:`safe_member_path`). Links of any kind, devices and
    pipes (no dataset ships one) stop the extraction with ``ArchiveError``, as does a
    member beyond ``limits`` (default :meth:`ExtractLimits.from_env`). Files are written
    by audioclf itself, never through a link already on disk. A marker file is written
    when everything is out, so a second call returns at once and an interrupted
    extraction starts again.
    """
    archive, dest = Path(archive), Path(dest)
    marker = extraction_marker(archive, dest)
    if marker.exists():
        log.debug("%s already extracted into %s", archive.name, dest)
        return dest
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    limits = limits or ExtractLimits.from_env()
    dest.mkdir(parents=True, exist_ok=True)
    log.info("extracting %s into %s", archive, dest)
    if zipfile.is_zipfile(archive):
        n = _extract_zip(archive, dest, progress, limits)
    elif tarfile.is_tarfile(archive):
        n = _extract_tar(archive, dest, progress, limits)
    else:
        raise ArchiveError(f"{archive}: not a zip or tar archive (is the download complete?)")
    marker.write_text(json.dumps({"archive": str(archive), "members": n, "size": archive.stat().st_size}) + "\n")
    return dest


def safe_member_path(archive: Path, name: str, dest: Path) -> Path | None:
    """Where member ``name`` goes under ``dest``, judged on the name's text, not on the disk:
    absolute names, drive letters, ``..`` anywhere, NUL bytes and names that normalise
    outside are refused. Returns None for the archive's root itself (``./``)."""
    text = name.replace("\\", "/")  # a backslash is a separator where the archive was made
    if "\x00" in text or text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise ArchiveError(f"{archive}: member {name!r} has an absolute name; refusing to extract")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{archive}: member {name!r} would be written outside {dest} ('..'); refusing to extract")
    norm = posixpath.normpath("/".join(parts)) if parts else "."
    if norm == ".":
        return None
    if norm.startswith("../") or norm == ".." or posixpath.isabs(norm):  # cannot happen after the checks: kept as a guard
        raise ArchiveError(f"{archive}: member {name!r} would be written outside {dest}; refusing to extract")
    return dest.joinpath(*norm.split("/"))


def _no_link_on_the_way(archive: Path, dest: Path, target: Path) -> None:
    """Every directory between ``dest`` and ``target`` is a real directory (a link placed
    there by anything would redirect the write), and, as a second line, the resolved
    target is inside ``dest``."""
    here = dest
    for part in target.relative_to(dest).parts[:-1]:
        here = here / part
        if here.is_symlink():
            raise ArchiveError(f"{archive}: {here} is a symbolic link; refusing to extract through it")
    if not target.resolve().is_relative_to(dest.resolve()):
        raise ArchiveError(f"{archive}: {target} resolves outside {dest}; refusing to extract")


class _Budget:
    """Counts members and expanded bytes against the limits."""

    def __init__(self, archive: Path, limits: ExtractLimits) -> None:
        self.archive, self.limits = archive, limits
        self.members = 0
        self.bytes = 0
        # the ratio bound on the whole archive, with a floor so tiny archives are not judged by it
        self.ratio_bytes = max(archive.stat().st_size, limits.ratio_floor) * limits.max_ratio

    def add(self, name: str, size: int, compressed: int | None = None) -> None:
        lim = self.limits
        self.members += 1
        self.bytes += size
        what = f"{self.archive}: extraction stopped at member {name!r}:"
        hint = "(a decompression bomb, or raise the limit: see ExtractLimits / AUDIOCLF_EXTRACT_*)"
        if self.members > lim.max_members:
            raise ArchiveError(f"{what} more than {lim.max_members} members {hint}")
        if self.bytes > lim.max_total_bytes:
            raise ArchiveError(f"{what} expands past {lim.max_total_bytes} bytes in all {hint}")
        if compressed is not None and size > lim.ratio_floor and size > lim.max_ratio * max(compressed, 1):
            raise ArchiveError(f"{what} {size} bytes from {compressed} compressed, a ratio above {lim.max_ratio:g} {hint}")
        if self.bytes > self.ratio_bytes:
            raise ArchiveError(f"{what} the archive expands more than {lim.max_ratio:g} times its size {hint}")


def _write_file(archive: Path, dest: Path, target: Path, src: Any, size: int) -> None:
    """Copy ``size`` bytes from ``src`` to ``target``, created fresh (an existing link at
    ``target`` is not followed) and never longer than the size the archive declared."""
    _no_link_on_the_way(archive, dest, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        raise ArchiveError(f"{archive}: {target} is a symbolic link; refusing to write through it")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    written = 0
    with os.fdopen(os.open(target, flags, 0o644), "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > size:
                raise ArchiveError(f"{archive}: {target.name} holds more bytes than its header declares ({size})")
            out.write(chunk)


def _extract_zip(archive: Path, dest: Path, progress: ProgressFn | None, limits: ExtractLimits) -> int:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            budget = _Budget(archive, limits)
            targets = []
            for m in members:  # check all before writing any
                mode = (m.external_attr >> 16) & 0o170000
                if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                    raise ArchiveError(f"{archive}: member {m.filename!r} is {kind}; refusing to extract")
                targets.append(safe_member_path(archive, m.filename, dest))
                budget.add(m.filename, m.file_size, m.compress_size)
            for i, (m, target) in enumerate(zip(members, targets, strict=True), 1):
                if target is None:
                    continue
                if m.is_dir():
                    _no_link_on_the_way(archive, dest, target / "x")
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    with zf.open(m) as src:
                        _write_file(archive, dest, target, src, m.file_size)
                if progress:
                    progress(f"extracting {archive.name}", i, len(members))
    except (zipfile.BadZipFile, EOFError, NotImplementedError) as err:
        raise ArchiveError(f"{archive}: damaged zip archive ({err})") from err
    return len(members)


def _check_tar_member(archive: Path, m: tarfile.TarInfo, dest: Path) -> Path | None:
    if m.issym() or m.islnk():
        # no dataset ships links, and a link is the way out of the directory (CVE-2025-4517)
        raise ArchiveError(f"{archive}: member {m.name!r} is a link (-> {m.linkname!r}); refusing to extract")
    if m.isdev() or m.isfifo():
        raise ArchiveError(f"{archive}: member {m.name!r} is a device or pipe; refusing to extract")
    if not (m.isfile() or m.isdir()):
        raise ArchiveError(f"{archive}: member {m.name!r} is of an unknown kind ({m.type!r}); refusing to extract")
    return safe_member_path(archive, m.name, dest)


def _extract_tar(archive: Path, dest: Path, progress: ProgressFn | None, limits: ExtractLimits) -> int:
    # Stream mode reads a multi-GB .tar.gz once, front to back; progress follows the
    # compressed bytes read, the only total known without a first pass.
    total = archive.stat().st_size
    budget = _Budget(archive, limits)
    n = 0
    try:
        with archive.open("rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tf:
            for m in tf:
                target = _check_tar_member(archive, m, dest)
                budget.add(m.name, m.size if m.isfile() else 0)
                n += 1
                if target is not None and m.isdir():
                    _no_link_on_the_way(archive, dest, target / "x")
                    target.mkdir(parents=True, exist_ok=True)
                elif target is not None:
                    src = tf.extractfile(m)
                    assert src is not None  # a regular file always has a body
                    _write_file(archive, dest, target, src, m.size)
                if progress and n % 64 == 0:
                    progress(f"extracting {archive.name}", raw.tell(), total)
            if progress:
                progress(f"extracting {archive.name}", total, total)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as err:
        raise ArchiveError(f"{archive}: damaged tar archive ({type(err).__name__}: {err})") from err
    except OSError as err:
        raise ArchiveError(f"{archive}: damaged tar archive or unwritable member ({type(err).__name__}: {err})") from err
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


def dataset_file(base: Path, name: str, dataset: str, listed_in: Path) -> Path:
    """``base / name`` for a file name read from a dataset's own metadata (a CSV inside its
    archive): it must be a relative name inside ``base``. An absolute name or one with
    ``..`` would make prepare pack any file of this machine into the store."""
    text = name.replace("\\", "/")
    parts = text.split("/")
    if not text or "\x00" in text or text.startswith("/") or (len(text) > 1 and text[1] == ":") or ".." in parts:
        raise DataError(
            f"dataset {dataset!r}: {listed_in} lists {name!r}, which is not a relative file name "
            f"inside {base}; refusing to read it"
        )
    return base.joinpath(*[p for p in parts if p not in ("", ".")])


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
