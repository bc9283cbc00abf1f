"""A small Hugging Face Hub-compatible HTTP server for offline tests.

It implements the part of the Hub protocol that `huggingface_hub` (2.4) and `transformers`
use to create repos and branches, commit files, list refs and trees, and download files by
revision. Like the Hub, it stores files matching the repo's `.gitattributes` LFS patterns
(`*.safetensors`, ...) or of 10 MiB and more through git LFS: preupload answers "lfs",
the client asks the LFS batch endpoint, PUTs the raw bytes (skipped when the server already
has that sha256: no re-upload of identical weights), and commits an `lfsFile` line; trees
list such files with their `lfs` sha256. Other files are "regular": base64 inside the NDJSON
commit body. The Hub itself now moves LFS content through Xet storage, which needs a CAS
server; clients talking to this server must set `HF_HUB_DISABLE_XET=1` (then
`huggingface_hub` uses the LFS "basic" transfer, as it does without `hf_xet`).

Storage is git-like so branches really hold different content: blobs are keyed by their
git blob sha1 (what the Hub reports as a regular file's `oid`), a commit is (parent, file
tree, message), and a branch points at a commit.

Fault injection (for robustness tests), switched at runtime, always *before* a request
touches any state, so a failed request never half-applies:
- `FaultPolicy`: a seeded RNG answers a fraction of requests with a 5xx or drops the
  connection without answering;
- `RateLimit`: answer write requests (or all) with 429/503 and `Retry-After` — for the next
  K of them, or for T seconds — as the Hub does when uploads come too fast;
- `HubServer(down=True)`: the port is bound but not listening, so connections are refused
  (a server that is down) until `come_up()` (at once or after some seconds).
Every request is logged as an `Exchange` (arrival time, status answered), so a test can
check that a client waited the `Retry-After` it was given. Request bodies are always read
fully first so keep-alive connections stay in sync.

Only ever binds 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import json
import posixpath
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LOOPBACK = "127.0.0.1"


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of `data` (what the Hub calls a regular file's `oid`)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
LFS_MIN_SIZE = 10 * 1024 * 1024  #: the Hub stores files this large through LFS regardless


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The small file git stores in place of an LFS file's content."""
    return LFS_POINTER.format(oid=sha256, size=size).encode()


def parse_lfs_pointer(data: bytes) -> tuple[str, int] | None:
    """(sha256, size) when `data` is an LFS pointer, else None."""
    if not data.startswith(b"version https://git-lfs.github.com/spec/v1\n") or len(data) > 200:
        return None
    fields = dict(line.split(" ", 1) for line in data.decode().splitlines() if " " in line)
    return fields["oid"].removeprefix("sha256:"), int(fields["size"])


def lfs_patterns(gitattributes: bytes | None) -> list[str]:
    """The path patterns a `.gitattributes` file sends through LFS."""
    return [
        line.split()[0]
        for line in (gitattributes or b"").decode().splitlines()
        if "filter=lfs" in line.split()[1:]
    ]


@dataclass
class Commit:
    oid: str
    parent: str | None
    tree: dict[str, str]  #: path -> blob sha1
    message: str
    branch: str  #: the branch the commit was made on (for the tests' bookkeeping)
    changed: tuple[str, ...]  #: paths added, modified or deleted by this commit


@dataclass
class Repo:
    repo_id: str
    branches: dict[str, str] = field(default_factory=dict)  #: branch -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  #: sha256 -> LFS file content
    lfs_expected: dict[str, int] = field(default_factory=dict)  #: sha256 -> size, announced


@dataclass
class FaultPolicy:
    """Which requests fail: `rate` of them, chosen by a seeded RNG; half 5xx, half dropped."""

    rate: float = 0.0  #: fraction of requests that fail, in [0, 1)
    seed: int = 0  #: seed of the RNG that picks the failing requests (deterministic order)
    drop_fraction: float = 0.5  #: of the failures, the fraction answered by a dropped connection
    status: int = 500  #: HTTP status of the non-dropped failures


WRITE_METHODS = ("POST", "PUT", "DELETE")


@dataclass
class RateLimit:
    """Answer requests with `status` and `Retry-After: retry_after` while the limit lasts:
    for the next `requests` matching requests, and/or until `seconds` after it was set."""

    status: int = 429  #: 429 Too Many Requests, or 503 Service Unavailable
    retry_after: str = "1"  #: the header's value: delay-seconds, or an HTTP-date
    requests: int | None = None  #: how many matching requests to refuse (None: no count)
    seconds: float | None = None  #: for how long after it is set (None: no time limit)
    writes_only: bool = True  #: only POST/PUT/DELETE (reads pass), as for upload limits
    since: float = field(default_factory=time.monotonic)  #: when it was set (monotonic)

    def applies(self, method: str, now: float) -> bool:
        if self.writes_only and method not in WRITE_METHODS:
            return False
        if self.requests is not None and self.requests <= 0:
            return False
        return self.seconds is None or now < self.since + self.seconds


@dataclass
class Exchange:
    """One request as the server saw it (times from `time.monotonic()` in this process)."""

    method: str
    path: str
    received: float  #: when its headers were read
    status: int | None = None  #: what it was answered (None: dropped, or not answered yet)


class HubState:
    """All repos, blobs and request bookkeeping; every access under one lock."""

    def __init__(self, token: str | None = None):
        self.lock = threading.RLock()
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}  #: git blob sha1 -> bytes (LFS files: the pointer)
        self.token = token
        self.faults = FaultPolicy()
        self._rng = random.Random(0)
        self.requests: list[tuple[str, str]] = []  #: (method, path) of every request seen
        self.injected: dict[str, int] = {"drop": 0, "status": 0}  #: failures injected, by kind
        self.commit_delay_s = 0.0  #: sleep inside each commit (to kill a client mid-upload)
        self.rate_limit: RateLimit | None = None
        self.exchanges: list[Exchange] = []  #: every request, in arrival order

    def set_rate_limit(self, limit: RateLimit | None) -> None:
        """Start (or with None end) answering requests with 429/503 and `Retry-After`."""
        with self.lock:
            if limit is not None:
                limit.since = time.monotonic()
            self.rate_limit = limit

    def draw_rate_limit(self, method: str) -> RateLimit | None:
        """The limit that refuses this request, if one does (and count it)."""
        with self.lock:
            limit = self.rate_limit
            if limit is None or not limit.applies(method, time.monotonic()):
                return None
            if limit.requests is not None:
                limit.requests -= 1
            return limit

    def refused(self) -> list[Exchange]:
        """Requests answered with 429 or 503 so far."""
        with self.lock:
            return [e for e in self.exchanges if e.status in (429, 503)]

    def set_faults(self, policy: FaultPolicy) -> None:
        with self.lock:
            self.faults = policy
            self._rng = random.Random(policy.seed)

    def draw_fault(self) -> str | None:
        """None, "drop" or "status" for the next request."""
        with self.lock:
            if self.faults.rate <= 0 or self._rng.random() >= self.faults.rate:
                return None
            kind = "drop" if self._rng.random() < self.faults.drop_fraction else "status"
            self.injected[kind] += 1
            return kind

    # --- git-like storage -------------------------------------------------------------

    def make_commit(
        self, repo: Repo, branch: str, tree: dict[str, str], message: str, changed: tuple[str, ...]
    ) -> Commit:
        parent = repo.branches.get(branch)
        seed = json.dumps([parent, sorted(tree.items()), message, time.time_ns()]).encode()
        commit = Commit(hashlib.sha1(seed).hexdigest(), parent, tree, message, branch, changed)
        repo.commits[commit.oid] = commit
        repo.branches[branch] = commit.oid
        return commit

    def resolve(self, repo: Repo, revision: str) -> Commit | None:
        if revision in repo.branches:
            return repo.commits[repo.branches[revision]]
        return repo.commits.get(revision)

    def commits_on(self, repo_id: str, branch: str) -> list[Commit]:
        """Commits made on `branch`, oldest first (walks the parents from the head)."""
        with self.lock:
            repo = self.repos[repo_id]
            out, oid = [], repo.branches.get(branch)
            while oid is not None:
                commit = repo.commits[oid]
                if commit.branch == branch:
                    out.append(commit)
                oid = commit.parent
            return out[::-1]

    def corrupt_blob_at(self, repo_id: str, revision: str, path: str, data: bytes) -> None:
        """Bit rot: replace the bytes stored for a file without changing its recorded oid."""
        with self.lock:
            repo = self.repos[repo_id]
            commit = self.resolve(repo, revision)
            assert commit is not None
            blob = commit.tree[path]
            pointer = parse_lfs_pointer(self.blobs[blob])
            if pointer is None:
                self.blobs[blob] = data
            else:
                repo.lfs_objects[pointer[0]] = data

    def content(self, repo: Repo, blob: str) -> bytes:
        """A file's bytes: the blob itself, or the repo's LFS object its pointer names."""
        pointer = parse_lfs_pointer(self.blobs[blob])
        return self.blobs[blob] if pointer is None else repo.lfs_objects[pointer[0]]

    def file_entry(self, path: str, blob: str) -> dict:
        """A tree listing entry, with `lfs` for LFS files (as the Hub lists them)."""
        data = self.blobs[blob]
        pointer = parse_lfs_pointer(data)
        if pointer is None:
            return {"type": "file", "path": path, "size": len(data), "oid": blob}
        sha256, size = pointer
        lfs = {"oid": sha256, "size": size, "pointerSize": len(data)}
        return {"type": "file", "path": path, "size": size, "oid": blob, "lfs": lfs}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, each answer waits ~40 ms for
    # the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own logs
        pass

    # --- plumbing ---------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # streamed uploads
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
        head_only: bool = False,
    ) -> None:
        exchange = getattr(self, "_exchange", None)
        if exchange is not None:
            exchange.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, status: int, code: str, message: str, head_only: bool = False) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        self._send(status, json.dumps({"error": message}).encode(), headers, head_only=head_only)

    def _handle(self, method: str) -> None:
        received = time.monotonic()
        body = self._read_body()  # always, even when failing: keeps the connection in sync
        state = self.server.state
        self._exchange = Exchange(method, self.path, received)
        with state.lock:
            state.requests.append((method, self.path))
            state.exchanges.append(self._exchange)
        limit = state.draw_rate_limit(method)
        if limit is not None:
            headers = {"Retry-After": limit.retry_after, "X-Error-Code": "RateLimited"}
            message = b'{"error": "rate limited by the test hub"}'
            self._send(limit.status, message, headers, head_only=method == "HEAD")
            return
        if state.commit_delay_s and method == "POST" and "/commit/" in self.path:
            time.sleep(state.commit_delay_s)  # a slow upload, without blocking other requests
        fault = state.draw_fault()
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(2)  # no answer at all: the client sees a dropped connection
            return
        if fault == "status":
            message = "injected server error"
            self._error(state.faults.status, "InjectedFault", message, head_only=method == "HEAD")
            return
        # Writes need the token (so tests prove it is really sent); reads are public.
        authorized = self.headers.get("Authorization") == f"Bearer {state.token}"
        if state.token is not None and not authorized and method in ("POST", "DELETE"):
            self._error(401, "Unauthorized", "missing or wrong token")
            return
        url = urlsplit(self.path)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._route(method, url.path, parse_qs(url.query), body)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    # --- routes -----------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        state = self.server.state
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo(json.loads(body or b"{}"))
        if method == "POST" and path == "/api/validate-yaml":
            return self._json(200, {"errors": [], "warnings": []})
        if method == "POST" and parts[2:] == ["info", "lfs", "objects", "batch"]:
            return self._lfs_batch(f"{parts[0]}/{parts[1].removesuffix('.git')}", json.loads(body))
        if method == "PUT" and parts[0] == "lfs-upload" and len(parts) == 4:
            return self._lfs_upload(f"{parts[1]}/{parts[2]}", parts[3], body)
        if "xet-write-token" in parts or "xet-read-token" in parts:
            message = "the test hub has no Xet storage: set HF_HUB_DISABLE_XET=1 to upload via LFS"
            return self._error(501, "XetNotSupported", message)
        if len(parts) >= 5 and parts[0] == "api" and parts[1] == "models":
            repo_id, action, rest = f"{parts[2]}/{parts[3]}", parts[4], parts[5:]
            with state.lock:
                repo = state.repos.get(repo_id)
                if repo is None:
                    return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
                if action == "branch" and rest:
                    return self._branch(method, repo, "/".join(rest), json.loads(body or b"{}"))
                if action == "refs" and method == "GET":
                    return self._refs(repo)
                if action == "preupload" and method == "POST" and rest:
                    return self._preupload(repo, "/".join(rest), json.loads(body))
                if action == "commit" and method == "POST" and rest:
                    return self._commit(repo, "/".join(rest), body)
                if action == "revision" and method == "GET" and rest:
                    return self._repo_info(repo, "/".join(rest))
                if action == "tree" and method == "GET" and rest:
                    return self._tree(repo, rest[0], "/".join(rest[1:]), query)
        if len(parts) == 4 and parts[:2] == ["api", "models"] and method == "GET":
            with state.lock:
                repo = state.repos.get(f"{parts[2]}/{parts[3]}")
                if repo is None:
                    return self._error(404, "RepoNotFound", "Repository not found")
                return self._repo_info(repo, "main")
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(method, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        self._error(404, "EndpointNotFound", f"{method} {path} is not implemented by the test hub")

    def _create_repo(self, payload: dict) -> None:
        state = self.server.state
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        url = f"{self.server.endpoint}/{repo_id}"
        with state.lock:
            if repo_id in state.repos:
                return self._json(409, {"error": "You already created this model repo", "url": url})
            repo = Repo(repo_id)
            blob = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
            state.blobs[git_blob_sha1(blob)] = blob
            state.make_commit(
                repo, "main", {".gitattributes": git_blob_sha1(blob)}, "initial commit", ()
            )
            state.repos[repo_id] = repo
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _branch(self, method: str, repo: Repo, branch: str, payload: dict) -> None:
        state = self.server.state
        if method == "DELETE":
            if branch not in repo.branches:
                return self._error(404, "RevisionNotFound", f"Branch {branch} not found")
            del repo.branches[branch]
            return self._json(200, {})
        if branch in repo.branches:
            return self._error(409, "Conflict", f"Branch {branch} already exists")
        start = state.resolve(repo, payload.get("startingPoint") or "main")
        if start is None:
            return self._error(404, "RevisionNotFound", "starting point not found")
        repo.branches[branch] = start.oid
        self._json(200, {})

    def _refs(self, repo: Repo) -> None:
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
            for name, oid in sorted(repo.branches.items())
        ]
        self._json(200, {"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def _preupload(self, repo: Repo, revision: str, payload: dict) -> None:
        state = self.server.state
        commit = state.resolve(repo, revision)
        tree = commit.tree if commit else {}
        attributes = tree.get(".gitattributes")
        patterns = lfs_patterns(state.blobs[attributes] if attributes else None)
        files = []
        for f in payload["files"]:
            path, blob = f["path"], tree.get(f["path"])
            lfs = f["size"] >= LFS_MIN_SIZE or any(
                fnmatch.fnmatch(posixpath.basename(path), p) or fnmatch.fnmatch(path, p)
                for p in patterns
            )
            # The remote oid the client compares with its own: sha256 for LFS, git sha1 else.
            pointer = parse_lfs_pointer(state.blobs[blob]) if blob else None
            oid = (pointer[0] if pointer else None) if lfs else blob
            mode = "lfs" if lfs else "regular"
            files.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._json(200, {"files": files, "commitOid": commit.oid if commit else None})

    def _lfs_batch(self, repo_id: str, payload: dict) -> None:
        state = self.server.state
        with state.lock:
            repo = state.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            objects = []
            for obj in payload["objects"]:
                oid, size = obj["oid"], obj["size"]
                answer = {"oid": oid, "size": size, "authenticated": True}
                if oid not in repo.lfs_objects:  # only what the repo lacks is sent
                    repo.lfs_expected[oid] = size
                    href = f"{self.server.endpoint}/lfs-upload/{repo_id}/{oid}"
                    answer["actions"] = {"upload": {"href": href, "expires_in": 3600}}
                objects.append(answer)
        self._json(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_upload(self, repo_id: str, oid: str, body: bytes) -> None:
        # Like a pre-signed storage URL: no token, but only for an object a batch request
        # announced, and the bytes must hash to the announced oid.
        state = self.server.state
        with state.lock:
            repo = state.repos.get(repo_id)
            expected = repo.lfs_expected.get(oid) if repo else None
            if expected != len(body) or hashlib.sha256(body).hexdigest() != oid:
                return self._error(400, "BadDigest", f"upload does not match LFS object {oid}")
            repo.lfs_objects[oid] = body
        self._send(200)

    def _commit(self, repo: Repo, revision: str, body: bytes) -> None:
        state = self.server.state
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        head = state.resolve(repo, revision)
        if head is None or revision not in repo.branches:
            return self._error(404, "RevisionNotFound", f"Branch {revision} not found")
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        if header.get("parentCommit") and header["parentCommit"] != head.oid:
            return self._error(412, "PreconditionFailed", "parentCommit is not the branch head")
        tree, changed = dict(head.tree), []
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                data = base64.b64decode(value["content"])
                oid = git_blob_sha1(data)
                state.blobs[oid] = data
                if tree.get(value["path"]) != oid:
                    changed.append(value["path"])
                tree[value["path"]] = oid
            elif key == "deletedFile":
                if value["path"] not in tree:
                    return self._error(404, "EntryNotFound", "A file with this name doesn't exist")
                del tree[value["path"]]
                changed.append(value["path"])
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for path in [p for p in tree if p.startswith(prefix)]:
                    del tree[path]
                    changed.append(path)
            elif key == "lfsFile":
                oid = value["oid"]
                if oid not in repo.lfs_objects:
                    message = f"LFS object {oid} of {value['path']} was never uploaded"
                    return self._error(422, "LfsObjectMissing", message)
                pointer = lfs_pointer(oid, len(repo.lfs_objects[oid]))
                blob = git_blob_sha1(pointer)
                state.blobs[blob] = pointer
                if tree.get(value["path"]) != blob:
                    changed.append(value["path"])
                tree[value["path"]] = blob
        commit = state.make_commit(
            repo, revision, tree, header.get("summary", ""), tuple(sorted(changed))
        )
        url = f"{self.server.endpoint}/{repo.repo_id}/commit/{commit.oid}"
        self._json(200, {"commitUrl": url, "commitOid": commit.oid, "success": True})

    def _repo_info(self, repo: Repo, revision: str) -> None:
        commit = self.server.state.resolve(repo, revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Revision {revision} not found")
        siblings = [{"rfilename": path} for path in sorted(commit.tree)]
        self._json(
            200,
            {
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": commit.oid,
                "private": False,
                "siblings": siblings,
                "tags": [],
                "downloads": 0,
                "likes": 0,
            },
        )

    def _tree(self, repo: Repo, revision: str, prefix: str, query: dict[str, list[str]]) -> None:
        state = self.server.state
        commit = state.resolve(repo, revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Revision {revision} not found")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        base = prefix.rstrip("/") + "/" if prefix else ""
        entries: dict[str, dict] = {}
        for path, oid in sorted(commit.tree.items()):
            if not path.startswith(base):
                continue
            rel = path[len(base) :]
            if "/" in rel and not recursive:
                folder = base + rel.split("/")[0]
                entries[folder] = {"type": "directory", "path": folder, "oid": "0" * 40}
                continue
            if recursive:
                parts = path.split("/")
                for depth in range(len(base.split("/")), len(parts)):
                    folder = "/".join(parts[:depth])
                    entries.setdefault(
                        folder, {"type": "directory", "path": folder, "oid": "0" * 40}
                    )
            entries[path] = state.file_entry(path, oid)
        self._json(200, list(entries.values()))

    def _resolve(self, method: str, repo_id: str, revision: str, path: str) -> None:
        state = self.server.state
        head_only = method == "HEAD"
        with state.lock:
            repo = state.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found", head_only)
            commit = state.resolve(repo, revision)
            if commit is None:
                return self._error(404, "RevisionNotFound", "Revision not found", head_only)
            oid = commit.tree.get(path)
            if oid is None:
                return self._error(404, "EntryNotFound", f"{path} not found", head_only)
            data = state.content(repo, oid)
            pointer = parse_lfs_pointer(state.blobs[oid])
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{oid}"'}
        if pointer is not None:  # the Hub names LFS files by their sha256
            headers.update({"X-Linked-Etag": f'"{pointer[0]}"', "X-Linked-Size": str(pointer[1])})
        self._send(200, data, headers, "application/octet-stream", head_only=head_only)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState
    endpoint: str


class HubServer:
    """The test hub on 127.0.0.1 and a free port; use as a context manager or start()/stop().

    `down=True`: the port is bound (the endpoint is known) but nothing listens, so clients
    get "connection refused" until `come_up()`.
    """

    def __init__(self, token: str | None = None, down: bool = False):
        self.state = HubState(token=token)
        self._httpd = _Server((LOOPBACK, 0), _Handler, bind_and_activate=False)
        self._httpd.server_bind()  # reserve the port; listen() only once up
        self._httpd.state = self.state
        self.port = self._httpd.server_address[1]
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self._httpd.endpoint = self.endpoint
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._started = False
        self._timer: threading.Timer | None = None
        self.up = threading.Event()  #: set once the server listens
        self.up_at: float | None = None  #: when it came up (monotonic)
        if not down:
            self._listen()

    def _listen(self) -> None:
        self._httpd.server_activate()
        self.up_at = time.monotonic()
        self.up.set()

    def start(self) -> HubServer:
        self._started = True
        if self.up.is_set():
            self._thread.start()
        return self

    def come_up(self, after_s: float = 0.0) -> None:
        """Start listening (and serving, once started) now, or `after_s` seconds from now."""
        if after_s > 0:
            self._timer = threading.Timer(after_s, self.come_up)
            self._timer.daemon = True
            self._timer.start()
            return
        if self.up.is_set():
            return
        self._listen()
        if self._started:
            self._thread.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # a standalone hub for manual experiments: python tests/hub_server.py
    with HubServer() as hub:
        print(hub.endpoint, flush=True)
        threading.Event().wait()
