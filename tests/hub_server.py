"""A local stand-in for the Hugging Face Hub, on 127.0.0.1, for tests.

It implements the part of the Hub's HTTP API that ``huggingface_hub`` (and ``datasets``
through it) calls to download, list and upload, as the installed version calls it:

* ``GET /api/{models,datasets}/REPO[/revision/REV]``: repository info (``sha``, ``siblings``);
* ``GET /api/{models,datasets}/REPO/tree/REV[/PATH]``: the file listing (``recursive``);
* ``POST /api/{models,datasets}/REPO/paths-info/REV``: information on given paths;
* ``HEAD``/``GET /[datasets/]REPO/resolve/REV/FILE``: a file, with the ``X-Repo-Commit``,
  ``ETag`` and ``X-Linked-Size`` headers the client caches by, and ``Range`` requests;
* ``POST /api/repos/create``, ``POST /api/{models,datasets}/REPO/branch/BRANCH``,
  ``POST .../preupload/REV`` (every file "regular": no LFS or Xet storage) and
  ``POST .../commit/REV`` (the NDJSON commit payload).

Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``)
as the Hub sends it, so the client raises the same exceptions. Repositories live in memory
as commits (path -> bytes); tests add commits directly with :meth:`LocalHub.commit` or
through ``huggingface_hub``'s upload. ``requests`` logs every request (method, path).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = r"(?P<repo>[^/]+/[^/]+)"
TYPES = r"(?P<type>models|datasets)"


def git_blob_oid(data: bytes) -> str:
    """The git object id of a file, as the Hub reports ``oid`` and ``ETag`` for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    repo_type: str  # "model" or "dataset"
    private: bool = False
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> files
    history: list[str] = field(default_factory=list)

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


class LocalHub:
    """The stand-in: ``endpoint`` is its URL (what ``HF_ENDPOINT`` is set to)."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.validated: list[str] = []  # model cards checked by /api/validate-yaml
        self.token: str | None = None  # when set, writes need "Authorization: Bearer <token>"
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- repositories, for tests --------------------------------------------------------
    def create(self, repo_id: str, repo_type: str = "model", private: bool = False) -> Repo:
        with self._lock:
            key = (repo_type, repo_id)
            if key not in self.repos:
                self.repos[key] = Repo(repo_type, private)
            return self.repos[key]

    def commit(
        self,
        repo_id: str,
        files: dict[str, bytes | str | Path],
        *,
        repo_type: str = "model",
        branch: str = "main",
        deleted: tuple[str, ...] = (),
        message: str = "commit",
    ) -> str:
        """Add a commit on ``branch`` (created from ``main`` when new) holding the branch's
        files updated by ``files`` (bytes, text, or a file or directory to read) minus
        ``deleted``; returns its 40-hex commit id."""
        repo = self.create(repo_id, repo_type)
        with self._lock:
            parent = repo.refs.get(branch) or repo.refs.get("main")
            tree = dict(repo.commits[parent]) if parent else {}
            for name, value in files.items():
                if isinstance(value, Path) and value.is_dir():
                    for p in sorted(value.rglob("*")):
                        if p.is_file():
                            tree[f"{name}/{p.relative_to(value)}".lstrip("/")] = p.read_bytes()
                    continue
                tree[name] = value.read_bytes() if isinstance(value, Path) else value.encode() if isinstance(value, str) else value
            for name in deleted:
                tree.pop(name, None)
                tree = {k: v for k, v in tree.items() if not k.startswith(name.rstrip("/") + "/")}
            digest = hashlib.sha1(f"{parent}\n{message}\n{len(repo.history)}".encode())
            for name in sorted(tree):
                digest.update(name.encode() + b"\0" + git_blob_oid(tree[name]).encode())
            sha = digest.hexdigest()
            repo.commits[sha] = tree
            repo.refs[branch] = sha
            repo.history.append(sha)
            return sha

    def tag(self, repo_id: str, tag: str, revision: str = "main", repo_type: str = "model") -> str:
        repo = self.repos[(repo_type, repo_id)]
        sha = repo.resolve(revision)
        assert sha is not None, revision
        repo.refs[tag] = sha
        return sha

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        repo = self.repos[(repo_type, repo_id)]
        sha = repo.resolve(revision)
        assert sha is not None, revision
        return repo.commits[sha]

    def count(self, method: str, pattern: str) -> int:
        """How many requests of ``method`` had a path matching the regular expression."""
        return sum(1 for m, p in self.requests if m == method and re.search(pattern, p))


def _singular(plural: str) -> str:
    return plural[:-1]


def _handler_for(hub: LocalHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

        # -- plumbing ---------------------------------------------------------------------
        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head and body:
                self.wfile.write(body)

        def _json(self, status: int, data: object, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})

        def _error(self, status: int, code: str | None, message: str, head: bool = False, commit: str | None = None) -> None:
            headers = {"Content-Type": "application/json", "X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            if commit:
                headers["X-Repo-Commit"] = commit
            self._send(status, json.dumps({"error": message}).encode(), headers, head=head)

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _repo(self, plural: str, repo_id: str, head: bool = False) -> Repo | None:
            repo = hub.repos.get((_singular(plural), urllib.parse.unquote(repo_id)))
            if repo is None:
                self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head=head)
            return repo

        def _commit(self, repo: Repo, revision: str, head: bool = False) -> str | None:
            sha = repo.resolve(urllib.parse.unquote(revision))
            if sha is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {urllib.parse.unquote(revision)}", head=head)
            return sha

        def _route(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            with hub._lock:
                hub.requests.append((method, url.path))
            query = urllib.parse.parse_qs(url.query)
            for verb, pattern, fn in ROUTES:
                m = re.fullmatch(pattern, url.path)
                head_of_get = verb == "GET" and method == "HEAD" and fn is Handler.resolve
                if m and (verb == method or head_of_get):
                    fn(self, method, query, **m.groupdict())
                    return
            self._error(404, None, f"no route for {method} {url.path}", head=method == "HEAD")

        def do_GET(self) -> None:
            self._route("GET")

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def do_POST(self) -> None:
            if hub.token is not None and self.headers.get("Authorization") != f"Bearer {hub.token}":
                self._body()
                self._error(401, None, "Invalid credentials in Authorization header")
                return
            self._route("POST")

        # -- endpoints --------------------------------------------------------------------
        def info(self, method: str, query: dict, type: str, repo: str, rev: str | None = None) -> None:
            r = self._repo(type, repo)
            if r is None:
                return
            sha = self._commit(r, rev or "main")
            if sha is None:
                return
            files = r.commits[sha]
            self._json(200, {
                "id": urllib.parse.unquote(repo), "_id": sha[:24], "sha": sha, "private": r.private,
                "lastModified": "2026-12-01T00:00:00.000Z", "tags": [], "downloads": 0, "likes": 0,
                "siblings": [{"rfilename": p} for p in sorted(files)],
            })  # fmt: skip

        def _entries(self, files: dict[str, bytes], under: str, recursive: bool) -> list[dict]:
            prefix = under.strip("/") + "/" if under.strip("/") else ""
            out: dict[str, dict] = {}
            for path in sorted(files):
                if not path.startswith(prefix):
                    continue
                rest = path[len(prefix) :].split("/")
                # folders on the way down (all of them when recursive, the first otherwise)
                for depth in range(1, len(rest) if recursive else min(2, len(rest))):
                    folder = prefix + "/".join(rest[:depth])
                    out.setdefault(folder, {"type": "directory", "path": folder, "oid": git_blob_oid(folder.encode()), "size": 0})
                if recursive or len(rest) == 1:
                    data = files[path]
                    out[path] = {"type": "file", "path": path, "oid": git_blob_oid(data), "size": len(data)}
            return list(out.values())

        def tree(self, method: str, query: dict, type: str, repo: str, rev: str, path: str | None = None) -> None:
            r = self._repo(type, repo)
            if r is None:
                return
            sha = self._commit(r, rev)
            if sha is None:
                return
            files = r.commits[sha]
            under = urllib.parse.unquote(path or "")
            if under and under not in files and not any(f.startswith(under.rstrip("/") + "/") for f in files):
                self._error(404, "EntryNotFound", f"{under} does not exist on {rev}", commit=sha)
                return
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            self._json(200, self._entries(files, under, recursive))

        def paths_info(self, method: str, query: dict, type: str, repo: str, rev: str) -> None:
            body = self._body()
            r = self._repo(type, repo)
            if r is None:
                return
            sha = self._commit(r, rev)
            if sha is None:
                return
            ctype = self.headers.get("Content-Type", "")
            if "json" in ctype:
                paths = json.loads(body or b"{}").get("paths", [])
            else:
                paths = urllib.parse.parse_qs(body.decode()).get("paths", [])
            files = r.commits[sha]
            out = []
            for p in paths:
                p = p.strip("/")
                if p in files:
                    out.append({"type": "file", "path": p, "oid": git_blob_oid(files[p]), "size": len(files[p])})
                elif any(f.startswith(p + "/") for f in files) or p == "":
                    out.append({"type": "directory", "path": p, "oid": git_blob_oid(p.encode()), "size": 0})
            self._json(200, out)

        def resolve(self, method: str, query: dict, repo: str, rev: str, file: str, prefix: str | None = None) -> None:
            head = method == "HEAD"
            r = self._repo("datasets" if prefix else "models", repo, head=head)
            if r is None:
                return
            sha = self._commit(r, rev, head=head)
            if sha is None:
                return
            name = urllib.parse.unquote(file)
            data = r.commits[sha].get(name)
            if data is None:
                self._error(404, "EntryNotFound", f"{name} does not exist on {rev}", head=head, commit=sha)
                return
            etag = git_blob_oid(data)
            headers = {
                "X-Repo-Commit": sha, "ETag": f'"{etag}"', "X-Linked-Size": str(len(data)),
                "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream",
            }  # fmt: skip
            rng = self.headers.get("Range")
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng or "")
            if m and not head and (m[1] or m[2]):
                if m[1]:
                    start = int(m[1])
                    end = min(int(m[2]) if m[2] else len(data) - 1, len(data) - 1)
                else:  # the last N bytes
                    start, end = max(len(data) - int(m[2]), 0), len(data) - 1
                if start >= len(data):
                    self._send(416, b"", {"Content-Range": f"bytes */{len(data)}", **headers})
                    return
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                self._send(206, data[start : end + 1], headers)
                return
            self._send(200, data, headers, head=head)

        def create_repo(self, method: str, query: dict) -> None:
            payload = json.loads(self._body() or b"{}")
            repo_type = payload.get("type") or "model"
            repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
            url = f"{hub.endpoint}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
            if (repo_type, repo_id) in hub.repos:
                self._json(409, {"error": "You already created this model repo", "url": url})
                return
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            repo = hub.create(repo_id, repo_type, private=private)
            hub.commit(repo_id, {".gitattributes": "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}, repo_type=repo_type, message="initial commit")
            assert repo.refs
            self._json(200, {"url": url, "name": repo_id, "id": repo_id})

        def create_branch(self, method: str, query: dict, type: str, repo: str, branch: str) -> None:
            payload = json.loads(self._body() or b"{}")
            r = self._repo(type, repo)
            if r is None:
                return
            name = urllib.parse.unquote(branch)
            if name in r.refs:
                self._error(409, None, f"Reference {name} already exists")
                return
            start = r.resolve(payload.get("startingPoint") or "main")
            if start is None:
                self._error(404, "RevisionNotFound", "Invalid starting point")
                return
            r.refs[name] = start
            self._json(200, {})

        def preupload(self, method: str, query: dict, type: str, repo: str, rev: str) -> None:
            payload = json.loads(self._body() or b"{}")
            r = self._repo(type, repo)
            if r is None:
                return
            sha = self._commit(r, rev)
            if sha is None:
                return
            files = r.commits[sha]
            self._json(200, {"files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                 "oid": git_blob_oid(files[f["path"]]) if f["path"] in files else None}
                for f in payload.get("files", [])
            ]})  # fmt: skip

        def commit(self, method: str, query: dict, type: str, repo: str, rev: str) -> None:
            body = self._body()
            r = self._repo(type, repo)
            if r is None:
                return
            name = urllib.parse.unquote(rev)
            if r.resolve(name) is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {name}")
                return
            added: dict[str, bytes | str | Path] = {}
            deleted: list[str] = []
            summary = "commit"
            for line in body.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                value = item["value"]
                if item["key"] == "header":
                    summary = value.get("summary") or summary
                elif item["key"] == "file":
                    added[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] in ("deletedFile", "deletedFolder"):
                    deleted.append(value["path"])
                else:  # lfsFile: this stand-in asked for regular uploads only
                    self._error(400, None, f"unsupported commit operation {item['key']!r}")
                    return
            sha = hub.commit(urllib.parse.unquote(repo), added, repo_type=_singular(type), branch=name, deleted=tuple(deleted), message=summary)
            prefix = "" if type == "models" else f"{type}/"
            self._json(200, {"commitUrl": f"{hub.endpoint}/{prefix}{urllib.parse.unquote(repo)}/commit/{sha}", "commitOid": sha, "success": True})

        def validate_yaml(self, method: str, query: dict) -> None:
            """The model card's YAML front matter must parse into a mapping whose list fields
            are lists of strings (the Hub checks more: licences, dataset ids...)."""
            import yaml

            content = json.loads(self._body() or b"{}").get("content", "")
            errors = []
            m = re.match(r"^---\n(.*?)\n---\n", content, re.S)
            try:
                meta = yaml.safe_load(m[1]) if m else {}
            except yaml.YAMLError as err:
                meta, errors = None, [f"invalid YAML: {err}"]
            if meta is not None and not isinstance(meta, dict):
                errors.append("the metadata must be a mapping")
            elif meta:
                for key in ("tags", "datasets"):
                    if key in meta and not (isinstance(meta[key], list) and all(isinstance(v, str) for v in meta[key])):
                        errors.append(f'"{key}" must be a list of strings')
                for key in ("library_name", "license", "pipeline_tag"):
                    if key in meta and not isinstance(meta[key], str):
                        errors.append(f'"{key}" must be a string')
            status = 400 if errors else 200
            hub.validated.append(content)
            self._json(status, {"errors": [{"message": e} for e in errors], "warnings": []})

    ROUTES = [
        ("POST", r"/api/validate-yaml", Handler.validate_yaml),
        ("GET", rf"/api/{TYPES}/{REPO}/revision/(?P<rev>[^/]+)", Handler.info),
        ("GET", rf"/api/{TYPES}/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", Handler.tree),
        ("GET", rf"/api/{TYPES}/{REPO}", Handler.info),
        ("POST", rf"/api/{TYPES}/{REPO}/paths-info/(?P<rev>[^/]+)", Handler.paths_info),
        ("POST", r"/api/repos/create", Handler.create_repo),
        ("POST", rf"/api/{TYPES}/{REPO}/branch/(?P<branch>[^/]+)", Handler.create_branch),
        ("POST", rf"/api/{TYPES}/{REPO}/preupload/(?P<rev>[^/]+)", Handler.preupload),
        ("POST", rf"/api/{TYPES}/{REPO}/commit/(?P<rev>[^/]+)", Handler.commit),
        ("GET", rf"/(?P<prefix>datasets/)?{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", Handler.resolve),
    ]
    return Handler


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every Hugging Face cache (``HF_HOME``, ``HF_HUB_CACHE``, datasets' cache) in
    ``tmp_path/hf-home``, online, no token: a test never writes to or reads from the user's
    caches. Returns that directory.

    ``huggingface_hub`` and ``datasets`` read these variables once, when first imported, so
    their module constants are pointed there too (what a fresh process started with the
    variables set would see)."""
    import datasets.config
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    settings = {
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_DATASETS_CACHE": str(home / "datasets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_XET_CACHE", str(home / "xet"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    return home


@pytest.fixture
def hub(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    """The local Hub stand-in, with ``HF_ENDPOINT`` pointing at it (and the caches of
    :func:`hf_cache`); closed after the test."""
    import datasets.config
    from huggingface_hub import constants

    server = LocalHub()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", server.endpoint)
    monkeypatch.setattr(datasets.config, "HUB_DATASETS_URL", server.endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}")
    try:
        yield server
    finally:
        server.close()
