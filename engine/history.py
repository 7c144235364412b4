"""Artifact versions across git history: what ``mlv.lock`` and pointer files said, then and now.

A ``Tree`` is the repo's metadata as of a git revision, or as the workspace holds it
(``rev=None``): the lock, pointer files, ``mlv.yaml``. From it, ``version_of`` turns a
path into the version it had — a stage output named in the lock, data added with
``mlv add``, a file inside either (found through the directory's manifest), or a plain
source file — and ``metrics_of`` reads a stage's metrics files back (from the store by
digest, else the committed file). ``log`` lists the versions a path has had, oldest
commit first internally, newest first in its answer.

Invariants: read-only (no writes to the repo, the store or git); all file contents at
a revision come through one ``git cat-file --batch`` per call, so a log over many
commits costs two git processes, not two per commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from mlv.engine import lockfile
from mlv.engine.provenance import member_digest
from mlv.storage.workspace import gitfiles, pointers
from mlv.storage import yamlfile
from mlv.storage.store.digest import Digest, of_bytes, parse
from mlv.storage.errors import ConfigError, MlvError, StorageError, UsageError
from mlv.storage.workspace import Workspace

LOCK_FILE = "mlv.lock"
PIPELINE_FILE = "mlv.yaml"


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a path; ``source`` is where it came from, as in ``RunRecord.producers``."""

    path: str
    digest: Digest
    source: dict | None  # {"run": id} | {"added": "<path>.mlv"} (+ "within", "digest") | None: a source file
    nfiles: int | None = None  # directories only

    @property
    def origin(self) -> str:
        return "output" if self.source and "run" in self.source else "added" if self.source else "source"


@dataclass(frozen=True, slots=True)
class LockedStage:
    """A stage entry of ``mlv.lock`` (read leniently: history may hold older layouts)."""

    run_id: str
    deps: dict[str, str] = field(default_factory=dict)
    outs: dict[str, dict] = field(default_factory=dict)



def resolve_rev(ws: Workspace, rev: str) -> str:
    """The commit ``rev`` names; ``UsageError`` (exit 2) if it names none."""
    if not ws.in_git:
        raise UsageError(f"'{ws.root}' is not a git repo, so there is no revision '{rev}'; drop the revision argument")
    commit = gitfiles.commit_of(ws.root, rev)
    if commit is None:
        raise UsageError(f"'{rev}' is not a commit in this repo; name a branch, tag or commit (`git log --oneline`)")
    return commit


def show_files(root: Path, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], bytes | None]:
    """``{(rev, path): bytes}`` for files at revisions (None where absent), in one ``git cat-file --batch``."""
    if not wanted:
        return {}
    out = gitfiles.output(root, "cat-file", "--batch", stdin="".join(f"{rev}:{path}\n" for rev, path in wanted).encode())
    found: dict[tuple[str, str], bytes | None] = {}
    pos = 0
    for key in wanted:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        if len(header) == 3 and header[1] == b"blob":
            size = int(header[2])
            found[key] = out[end + 1:end + 1 + size]
            pos = end + 1 + size + 1
        else:  # "<name> missing", or a tree / submodule where a file was expected
            found[key] = None
            pos = end + 1 if len(header) != 3 else end + 1 + int(header[2]) + 1
    return found


class Tree:
    """The repo's metadata files as of ``rev`` (a commit), or in the workspace when ``rev`` is None."""

    def __init__(self, ws: Workspace, rev: str | None = None, blobs: dict | None = None) -> None:
        self.ws, self.rev = ws, rev
        self._blobs: dict[tuple[str, str], bytes | None] = blobs if blobs is not None else {}

    @property
    def label(self) -> str:
        return self.rev[:12] if self.rev else "workspace"

    def read(self, path: str) -> bytes | None:
        if self.rev is None:
            try:
                return (self.ws.root / path).read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return None
        key = (self.rev, path)
        if key not in self._blobs:
            self._blobs.update(show_files(self.ws.root, [key]))
        return self._blobs[key]

    @cached_property
    def lock(self) -> dict[str, LockedStage]:
        data = self.read(LOCK_FILE)
        return {} if data is None else parse_lock(data, where=f"{LOCK_FILE} at {self.label}")

    def pointer(self, target: str) -> tuple[Digest, int | None] | None:
        """(digest, nfiles) of the pointer for ``target``, if there is one."""
        data = self.read(target + pointers.SUFFIX)
        if data is None:
            return None
        name = target.rsplit("/", 1)[-1] + pointers.SUFFIX
        digest, _, nfiles = pointers.parse(data, name=name, where=f"{target}{pointers.SUFFIX} at {self.label}")
        return digest, nfiles

    @cached_property
    def pipeline(self) -> dict:
        data = self.read(PIPELINE_FILE)
        try:
            doc = yamlfile.load(data, source=f"{PIPELINE_FILE} at {self.label}") if data is not None else {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{PIPELINE_FILE} at {self.label} is not valid YAML ({exc})", path=PIPELINE_FILE) from exc
        return doc if isinstance(doc, dict) else {}


def parse_lock(data: bytes, *, where: str = LOCK_FILE) -> dict[str, LockedStage]:
    return {name: LockedStage(e["run_id"], e["deps"], e["outs"]) for name, e in lockfile.read(data, where=where).items()}


def version_of(tree: Tree, rel: str) -> Version | None:
    """The version ``rel`` has in ``tree``: a locked output, added data, a file inside either, or a source file."""
    ws = tree.ws
    for entry in tree.lock.values():
        for out_path, out in entry.outs.items():
            if out_path == rel:
                return Version(rel, parse(out["digest"]), {"run": entry.run_id}, out.get("nfiles"))
            if out.get("nfiles") is not None and rel.startswith(out_path + "/"):
                d = _member(ws, parse(out["digest"]), rel, out_path, tree)
                return Version(rel, d, {"run": entry.run_id, "within": out_path, "digest": out["digest"]})
    parts = rel.split("/")
    for n in range(len(parts), 0, -1):
        target = "/".join(parts[:n])
        found = tree.pointer(target)
        if found is None:
            continue
        digest, nfiles = found
        if n == len(parts):
            return Version(rel, digest, {"added": target + pointers.SUFFIX}, nfiles)
        d = _member(ws, digest, rel, target, tree)
        return Version(rel, d, {"added": target + pointers.SUFFIX, "within": target, "digest": str(digest)})
    if tree.rev is None:
        path = ws.root / rel
        if path.is_file() or path.is_dir():
            from mlv.storage.workspace import snapshot

            snap = snapshot.identify(ws, snapshot.scan(ws, path))
            return Version(rel, snap.digest, None, snap.nfiles)
        return None
    data = tree.read(rel)
    return None if data is None else Version(rel, of_bytes(data), None)


def _member(ws: Workspace, directory: Digest, rel: str, container: str, tree: Tree) -> Digest:
    d = member_digest(ws, directory, rel[len(container) + 1:])
    if d is not None:
        return d
    if directory not in ws.store:
        raise StorageError(f"'{container}' at {tree.label} (version {directory.short}) is not in the local store, "
                           f"so the files inside it are unknown; fetch it with `mlv pull {container}`")
    raise UsageError(f"'{rel}' is not a file of '{container}' at {tree.label} (version {directory.short})")


def metric_paths(ws: Workspace, tree: Tree, stage: str) -> list[str]:
    """The metrics files of a locked stage: from its run record, else from ``mlv.yaml`` in ``tree``."""
    from mlv.engine.records import RecordCorrupt, RunIndex

    entry = tree.lock[stage]
    try:
        declared = RunIndex(ws).read(entry.run_id).definition.get("metrics")
    except (FileNotFoundError, RecordCorrupt):
        declared = ((tree.pipeline.get("stages") or {}).get(stage) or {}).get("metrics")
    if not isinstance(declared, list):
        return []
    return [p for p in declared if isinstance(p, str) and p in entry.outs]


def metrics_of(ws: Workspace, tree: Tree, stages: list[str]) -> dict[str, dict]:
    """``{metrics file: {dotted name: value}}`` for the metrics files of ``stages`` in ``tree``."""
    found: dict[str, dict] = {}
    for stage in stages:
        for path in metric_paths(ws, tree, stage):
            values = read_metrics(ws, tree, path, parse(tree.lock[stage].outs[path]["digest"]))
            if values is not None:
                found[path] = values
    return found


def read_metrics(ws: Workspace, tree: Tree, path: str, digest: Digest) -> dict | None:
    """A metrics file's values: the workspace file for the workspace, else the stored object, else git's copy."""
    data = tree.read(path) if tree.rev is None else None
    if data is None:
        try:
            data = ws.store.read_bytes(digest)
        except StorageError:
            data = tree.read(path)
            if data is not None and of_bytes(data) != digest:
                data = None  # the committed file is not the version the lock names
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        try:
            doc = yamlfile.load(data, source=path)
        except (yaml.YAMLError, MlvError):
            return None
    return flatten(doc)


def flatten(doc: object, prefix: str = "") -> dict:
    """Nested mappings and lists to dotted names; a bare value is named ``""``.

    >>> flatten({"a": {"b": 1}, "c": [2, 3]})
    {'a.b': 1, 'c.0': 2, 'c.1': 3}
    """
    if isinstance(doc, dict):
        items = doc.items()
    elif isinstance(doc, list):
        items = enumerate(doc)
    else:
        return {prefix: doc}
    out: dict = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


@dataclass(frozen=True, slots=True)
class LogEntry:
    version: Version
    commit: str | None  # None: the workspace, not committed yet
    date: str  # ISO 8601: the commit's date, or the run's end for the workspace
    message: str
    stages: tuple[str, ...]  # stages whose metrics belong with this version (its producer and direct readers)
    metrics: dict = field(default_factory=dict)

    def to_dict(self, run: dict | None) -> dict:
        v = self.version
        return {"path": v.path, "digest": str(v.digest), "origin": v.origin, "commit": self.commit, "date": self.date,
                "message": self.message, "run_id": (v.source or {}).get("run"), "run": run, "metrics": self.metrics}


def log(ws: Workspace, rel: str) -> list[LogEntry]:
    """The versions ``rel`` has had, newest first: one entry per commit that changed it, plus the workspace."""
    parts = rel.split("/")
    files = [LOCK_FILE] + ["/".join(parts[:n]) + pointers.SUFFIX for n in range(len(parts), 0, -1)]
    commits = gitfiles.history(ws.root, files) if ws.in_git else []
    blobs = show_files(ws.root, [(sha, f) for sha, _, _ in commits for f in files]) if commits else {}
    entries: list[LogEntry] = []
    for sha, date, message in commits:
        _append(entries, Tree(ws, sha, blobs), rel, sha, date, message)
    _append(entries, Tree(ws), rel, None, "", "")
    return entries[::-1]


def _append(entries: list[LogEntry], tree: Tree, rel: str, sha: str | None, date: str, message: str) -> None:
    try:
        version = version_of(tree, rel)
    except StorageError:
        return  # a file inside a directory version that is not stored here: skipped, the directory's log has it
    if version is None or (entries and entries[-1].version.digest == version.digest):
        return
    producer = [s for s, e in tree.lock.items() if (version.source or {}).get("run") == e.run_id]
    readers = [s for s, e in tree.lock.items() if e.deps.get(rel) == str(version.digest)]
    stages = tuple(dict.fromkeys(producer + readers))
    entries.append(LogEntry(version, sha, date, message, stages, metrics_of(tree.ws, tree, list(stages))))
