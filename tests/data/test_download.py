"""Downloads (resume, checksums) and archive extraction (once, safely), against a real
HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import tarfile
import zipfile
from pathlib import Path

import pytest

from audioclf.data.download import (
    ArchiveError,
    ChecksumError,
    DownloadError,
    ExtractLimits,
    Remote,
    download,
    extract,
    extraction_marker,
    record_path,
)
from tests.data.catalog.fakes import add_bytes

PAYLOAD = bytes(range(256)) * 1200 + b"tail"  # ~300 kB, not a multiple of any chunk size


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- download -------------------------------------------------------------------------------------
def test_download_records_sha256_on_first_download_and_reuses_the_file(http_server, tmp_path):
    url = http_server.put("data.bin", PAYLOAD)
    dest = tmp_path / "dl" / "data.bin"
    seen = []
    assert download(url, dest, progress=lambda d, done, total: seen.append((done, total))) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("data.bin.part").exists()
    rec = json.loads(record_path(dest).read_text())
    assert rec["sha256"] == sha256(PAYLOAD) and rec["url"] == url and rec["size"] == len(PAYLOAD)
    assert seen[-1][0] == len(PAYLOAD)
    # a second call finds the file, verifies it against the record, downloads nothing
    download(url, dest)
    assert len(http_server.gets("data.bin")) == 1


def test_download_resumes_with_range_after_a_dropped_connection(http_server, tmp_path):
    url = http_server.put("big.bin", PAYLOAD)
    http_server.cut_after["big.bin"] = 100_000
    dest = tmp_path / "big.bin"
    download(url, dest, retry_wait=0)
    assert dest.read_bytes() == PAYLOAD
    first, second = http_server.gets("big.bin")
    assert first["range"] is None
    assert second["range"] == "bytes=100000-"
    assert second["if_range"] is not None  # guarded by the first response's ETag


def test_download_resumes_a_part_file_left_by_an_earlier_run(http_server, tmp_path):
    url = http_server.put("big.bin", PAYLOAD)
    dest = tmp_path / "big.bin"
    dest.with_name("big.bin.part").write_bytes(PAYLOAD[:123_457])
    download(url, dest)
    assert dest.read_bytes() == PAYLOAD
    assert [r["range"] for r in http_server.gets("big.bin")] == ["bytes=123457-"]


def test_a_file_changed_on_the_server_is_fetched_again_not_spliced(http_server, tmp_path):
    url = http_server.put("v.bin", PAYLOAD)
    http_server.cut_after["v.bin"] = 50_000
    dest = tmp_path / "v.bin"
    with pytest.raises(DownloadError, match=r"v\.bin\.part \(50000 bytes\) is kept"):
        download(url, dest, retries=0)
    new = PAYLOAD[::-1]
    http_server.put("v.bin", new)  # new version: the old ETag no longer matches
    download(url, dest)
    assert dest.read_bytes() == new
    assert http_server.gets("v.bin")[-1]["range"] == "bytes=50000-"  # asked to resume, got the whole new file


def test_a_server_without_range_support_restarts_the_download(http_server, tmp_path):
    url = http_server.put("nr.bin", PAYLOAD)
    http_server.no_range.add("nr.bin")
    dest = tmp_path / "nr.bin"
    dest.with_name("nr.bin.part").write_bytes(b"x" * 1000)  # garbage that must not survive
    download(url, dest)
    assert dest.read_bytes() == PAYLOAD


def test_published_checksum_mismatch_stops_and_keeps_the_download_aside(http_server, tmp_path):
    url = http_server.put("a.bin", PAYLOAD)
    dest = tmp_path / "a.bin"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as err:
        download(url, dest, checksum=f"sha256:{wrong}")
    msg = str(err.value)
    assert f"expected {wrong}" in msg and f"got {sha256(PAYLOAD)}" in msg and "a.bin.corrupt" in msg
    assert not dest.exists()
    assert dest.with_name("a.bin.corrupt").read_bytes() == PAYLOAD  # nothing downloaded is deleted


def test_published_md5_is_verified_and_nothing_is_recorded(http_server, tmp_path):
    url = http_server.put("m.bin", PAYLOAD)
    dest = tmp_path / "m.bin"
    download(url, dest, checksum="md5:" + hashlib.md5(PAYLOAD).hexdigest())
    assert dest.read_bytes() == PAYLOAD
    assert not record_path(dest).exists()


def test_a_file_that_no_longer_matches_its_record_is_reported_and_left_alone(http_server, tmp_path):
    url = http_server.put("r.bin", PAYLOAD)
    dest = tmp_path / "r.bin"
    download(url, dest)
    dest.write_bytes(PAYLOAD[:-1] + b"X")
    with pytest.raises(ChecksumError, match="checksum mismatch.*left untouched"):
        download(url, dest)
    assert dest.read_bytes().endswith(b"X")


def test_http_errors_name_the_url(http_server, tmp_path):
    url = http_server.url("nothing-here.bin")
    with pytest.raises(DownloadError, match=r"nothing-here\.bin.*HTTP 404"):
        download(url, tmp_path / "n.bin")


def test_malformed_checksums_are_refused_before_downloading(http_server, tmp_path):
    url = http_server.put("a.bin", PAYLOAD)
    with pytest.raises(ValueError, match="sha256"):
        download(url, tmp_path / "a.bin", checksum="sha256:abc")
    assert http_server.requests == []


def test_a_published_checksum_belongs_to_the_official_url():
    official = Remote("https://example.org/a.tgz", "a.tgz", checksum="md5:" + "1" * 32)
    assert official.with_overrides(None, None).checksum == official.checksum
    assert official.with_overrides(official.url, None).checksum == official.checksum
    mirror = official.with_overrides("http://127.0.0.1/a.tgz", None)
    assert mirror.url == "http://127.0.0.1/a.tgz" and mirror.checksum is None
    assert official.with_overrides("http://127.0.0.1/a.tgz", "md5:" + "2" * 32).checksum == "md5:" + "2" * 32


# -- extraction -----------------------------------------------------------------------------------
def make_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            add_bytes(tf, name, data)
    return path


def test_extract_once_and_keep_the_archive(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", {"top/x.txt": b"one", "top/sub/y.txt": b"two"})
    dest = tmp_path / "out"
    extract(archive, dest)
    assert (dest / "top" / "sub" / "y.txt").read_bytes() == b"two"
    assert extraction_marker(archive, dest).exists()
    (dest / "top" / "x.txt").write_bytes(b"edited")
    extract(archive, dest)  # marker present: nothing is unpacked again
    assert (dest / "top" / "x.txt").read_bytes() == b"edited"
    assert archive.exists()


def test_extract_zip(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/x.txt", "zip")
    extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "top" / "x.txt").read_text() == "zip"


def _tar_with(path: Path, info: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w") as tf:
        add_bytes(tf, "ok.txt", b"fine")
        tf.addfile(info, io.BytesIO(data) if data else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, size
    return info


@pytest.mark.parametrize(
    "member",
    [
        _member("../evil.txt", size=4),
        _member("/tmp/audioclf-evil-abs.txt", size=4),
        _member("a/../../evil.txt", size=4),
        _member("link", tarfile.SYMTYPE, linkname="../../evil.txt"),
        _member("hard", tarfile.LNKTYPE, linkname="../evil.txt"),
        _member("dev", tarfile.CHRTYPE),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink-out", "hardlink-out", "device"],
)
def test_extract_refuses_members_that_escape(tmp_path, member):
    archive = _tar_with(tmp_path / "evil.tar", member, b"evil" if member.size else b"")
    dest = tmp_path / "a" / "b" / "out"
    with pytest.raises(ArchiveError, match="refus"):
        extract(archive, dest)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "a" / "evil.txt").exists()
    assert not Path("/tmp/audioclf-evil-abs.txt").exists()
    assert not extraction_marker(archive, dest).exists()


def test_extract_refuses_zip_traversal(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../evil.txt", "evil")
    with pytest.raises(ArchiveError, match=r"'\.\./evil\.txt'"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "ok.txt").exists()  # checked before anything is written


def test_extract_rejects_what_is_not_an_archive(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(os.urandom(2048))
    with pytest.raises(ArchiveError, match="not a zip or tar"):
        extract(junk, tmp_path / "out")


# -- hostile archives ---------------------------------------------------------------------------
def realpath_chain_tar(path: Path, target_name: str) -> Path:
    """The CVE-2025-4517 pattern: directories of 247 characters reached through one-letter
    symlinks until the resolved path passes PATH_MAX (where ``os.path.realpath`` stops
    resolving), a symlink up out of the tree behind them, and a hard link through it to
    ``target_name`` beside the extraction directory, then a file written over that link."""
    long = "d" * 247
    steps = "abcdefghijklmnop"
    with tarfile.open(path, "w") as tf:
        here = ""
        for step in steps:
            d = tarfile.TarInfo(posixpath_join(here, long))
            d.type = tarfile.DIRTYPE
            tf.addfile(d)
            link = tarfile.TarInfo(posixpath_join(here, step))
            link.type, link.linkname = tarfile.SYMTYPE, long
            tf.addfile(link)
            here = posixpath_join(here, long)
        up = tarfile.TarInfo("/".join(steps) + "/" + "l" * 254)
        up.type, up.linkname = tarfile.SYMTYPE, "../" * len(steps)
        tf.addfile(up)
        escape = tarfile.TarInfo("escape")
        escape.type, escape.linkname = tarfile.SYMTYPE, up.name + "/.."  # the extraction directory's parent
        tf.addfile(escape)
        hard = tarfile.TarInfo("overwrite")
        hard.type, hard.linkname = tarfile.LNKTYPE, f"escape/{target_name}"
        tf.addfile(hard)
        add_bytes(tf, "overwrite", b"written through the chain")
        add_bytes(tf, f"escape/new-{target_name}", b"created outside")
    return path


def posixpath_join(a: str, b: str) -> str:
    return f"{a}/{b}" if a else b


def outside_snapshot(root: Path, dest: Path) -> dict[str, bytes]:
    """Every file under ``root`` but outside ``dest``, with its bytes."""
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_relative_to(dest)}


def test_realpath_chain_archive_writes_nothing_outside(tmp_path):
    (tmp_path / "victim.txt").write_bytes(b"original")
    archive = realpath_chain_tar(tmp_path / "chain.tar", "victim.txt")
    dest = tmp_path / "root"
    before = outside_snapshot(tmp_path, dest)
    with pytest.raises(ArchiveError, match="is a link"):
        extract(archive, dest)
    assert outside_snapshot(tmp_path, dest) == before
    assert (tmp_path / "victim.txt").read_bytes() == b"original"
    assert not (tmp_path / "new-victim.txt").exists()
    assert not any(p.is_symlink() for p in dest.rglob("*"))


@pytest.mark.parametrize(
    "member",
    [
        _member("inner-link", tarfile.SYMTYPE, linkname="ok.txt"),  # even pointing inside
        _member("inner-hard", tarfile.LNKTYPE, linkname="ok.txt"),
        _member("pipe", tarfile.FIFOTYPE),
        _member("blockdev", tarfile.BLKTYPE),
        _member("C:/evil.txt", size=4),
        _member("a\\..\\..\\evil.txt", size=4),
    ],
    ids=["symlink-inside", "hardlink-inside", "fifo", "block-device", "drive-letter", "backslash-dotdot"],
)
def test_extract_refuses_every_link_device_and_odd_name(tmp_path, member):
    archive = _tar_with(tmp_path / "odd.tar", member, b"evil" if member.size else b"")
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError, match="refus"):
        extract(archive, dest)
    assert not any(p.is_symlink() or p.name.endswith("evil.txt") for p in tmp_path.rglob("*"))
    assert not extraction_marker(archive, dest).exists()


def test_extract_never_writes_through_a_link_already_there(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "top").symlink_to(outside, target_is_directory=True)
    archive = make_tar(tmp_path / "a.tar.gz", {"top/x.txt": b"one"})
    with pytest.raises(ArchiveError, match="symbolic link"):
        extract(archive, dest)
    assert not (outside / "x.txt").exists()


def test_zip_symlink_entry_is_refused_clearly(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine")
        info = zipfile.ZipInfo("top/link")
        info.external_attr = (0o120777 << 16)  # S_IFLNK: how zip stores a symlink
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match=r"'top/link' is a symbolic link"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "top").exists() and not (tmp_path / "out" / "ok.txt").exists()


def test_zip_bomb_stops_before_writing(tmp_path):
    # 64 MiB of zeros deflate to ~64 kB: a ratio near 1000, the signature of a bomb
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.txt", "fine")
        with zf.open("top/zeros.bin", "w") as f:
            for _ in range(64):
                f.write(bytes(2**20))
    assert archive.stat().st_size < 2**20
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError, match=r"'top/zeros.bin'.*ratio above 200"):
        extract(archive, dest)
    assert not (dest / "top").exists() and not (dest / "ok.txt").exists()


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (ExtractLimits(max_members=3), "more than 3 members"),
        (ExtractLimits(max_total_bytes=5000), "past 5000 bytes"),
        (ExtractLimits(max_ratio=2.0, ratio_floor=1000), "more than 2 times its size"),
    ],
    ids=["members", "total-bytes", "archive-ratio"],
)
def test_tar_limits(tmp_path, limits, message):
    members = {f"top/f{i}.bin": bytes(3000) for i in range(5)}
    archive = make_tar(tmp_path / "many.tar.gz", members)
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError, match=message):
        extract(archive, dest, limits=limits)
    assert not extraction_marker(archive, dest).exists()
    extract(archive, dest)  # the defaults let it through
    assert len(list((dest / "top").iterdir())) == 5


def test_limits_come_from_the_environment(tmp_path, monkeypatch):
    archive = make_tar(tmp_path / "a.tar.gz", {f"f{i}": b"x" for i in range(4)})
    monkeypatch.setenv("AUDIOCLF_EXTRACT_MAX_MEMBERS", "2")
    with pytest.raises(ArchiveError, match="more than 2 members"):
        extract(archive, tmp_path / "out")


@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://127.0.0.1/x.zip", "/etc/hostname", "http:///nohost"])
def test_only_http_urls_are_fetched(tmp_path, url):
    with pytest.raises(DownloadError, match="only http"):
        download(url, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_chain_archive_served_as_a_dataset_fails_cleanly(http_server, tmp_path, capsys):
    # the whole path a user takes: prepare downloads the archive and refuses it, exit 2
    from audioclf.cli import main

    (tmp_path / "victim.txt").write_bytes(b"original")
    archive = realpath_chain_tar(tmp_path / "x.tar", "victim.txt")
    url = http_server.put("x.tar", archive.read_bytes())
    root = tmp_path / "us8k"
    before = outside_snapshot(tmp_path, root)
    code = main(["prepare", "urbansound8k", "--root", str(root), "-o", f"url={url}", "-o",
                 f"checksum=sha256:{sha256(archive.read_bytes())}"])
    assert code == 2
    assert "is a link" in capsys.readouterr().err
    assert outside_snapshot(tmp_path, root) == before


def test_failed_download_is_one_line_and_exit_2(http_server, tmp_path, capsys, monkeypatch):
    from audioclf.cli import main

    monkeypatch.setattr("audioclf.data.download.time.sleep", lambda s: None)  # retries without waiting

    code = main(["prepare", "esc50", "--root", str(tmp_path / "esc"), "-o", f"url={http_server.url('missing.zip')}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "missing.zip" in err and "404" in err and "Traceback" not in err
    # connection refused: nothing listens on this port any more
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["prepare", "esc50", "--root", str(tmp_path / "esc2"), "-o", f"url=http://127.0.0.1:{port}/a.zip"])
    assert code == 2
    assert f"127.0.0.1:{port}" in capsys.readouterr().err
