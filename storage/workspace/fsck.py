"""``mlv fsck``: re-hash every object, pack and manifest; say which pointers break.

fsck only reads the store. It remembers damaged objects in the stat cache's
``damaged`` table, so the next ``mlv add`` of the same bytes replaces the bad copy.

Temp files and index-less packs left by a killed process are not objects (nothing can
reference them) and are not reported as damage; ``gc`` removes them.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

from mlv.storage.store import digest as digests
from mlv.storage.workspace import references
from mlv.storage.store.digest import CHUNK, Digest
from mlv.storage.errors import StorageError
from mlv.storage.store.packs import decode_index
from mlv.storage.workspace.snapshot import ProgressFactory
from mlv.storage.workspace import Workspace


@dataclass(slots=True)
class Problem:
    digest: str
    kind: str  # corrupt | missing | unreadable
    where: str  # the object's location, or what referenced it
    detail: str = ""
    breaks: list[str] = field(default_factory=list)  # pointer/lock files that need it

    def to_dict(self) -> dict:
        return {"digest": self.digest, "kind": self.kind, "where": self.where, "detail": self.detail, "breaks": self.breaks}


@dataclass(slots=True)
class FsckReport:
    objects: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "objects": self.objects, "bytes": self.bytes,
                "problems": [p.to_dict() for p in self.problems]}


def fsck(ws: Workspace, roots: references.Roots, *, progress: ProgressFactory | None = None) -> FsckReport:
    """Re-hash the store; check that what ``roots`` names (pointers, and what the layers above add) is there."""
    store, fs = ws.store, ws.store.fs
    report = FsckReport()
    bad: dict[Digest, Problem] = {}
    loose = list(store.iter_loose())
    names = _pack_names(ws)
    total = sum(fs.size(p) for _, p in loose) + sum(fs.size(store.pack_path(n)) for n in names
                                                     if fs.exists(store.pack_path(n)))
    with progress(total, "checking") if progress else nullcontext() as tick:
        for digest, path in loose:
            with fs.open(path, "rb") as f:
                actual, size = digests.of_stream(f)
            report.objects += 1
            report.bytes += size
            if tick:
                tick(size)
            if actual != digest:
                bad[digest] = Problem(str(digest), "corrupt", path, f"bytes hash to {actual}")
        packed_bad: dict[Digest, str] = {}
        for name in names:
            before = report.bytes
            _check_pack(ws, name, report, bad, packed_bad)
            if tick:
                tick(report.bytes - before)
    live = references.closure(store, roots)  # damaged manifests are not expanded: their members are unknown
    for digest, where in live.items():
        if digest not in bad and digest not in store:
            detail = "" if digest in roots else "member of a directory manifest"
            bad[digest] = Problem(str(digest), "missing", where, detail)
    for digest, problem in bad.items():
        if digest in live:
            problem.breaks.append(live[digest])
        if problem.kind == "corrupt":  # remembered, so that re-adding the same bytes repairs it
            ws.state.mark_damaged(str(digest), packed_bad.get(digest))
            problem.detail += "; re-add the data or `mlv pull` it to repair"
    report.problems = sorted(bad.values(), key=lambda p: (p.kind, p.digest))
    if report.problems:
        ws.state.forget_complete()
    return report


def _pack_names(ws: Workspace) -> list[str]:
    store, fs = ws.store, ws.store.fs
    names = []
    try:
        paths = fs.ls(store._path("packs"), detail=False)
    except FileNotFoundError:
        return []
    for path in sorted(paths):
        base = path.rsplit("/", 1)[-1]
        if base.endswith(".idx"):
            names.append(base[:-4])
    return names


def _check_pack(ws: Workspace, name: str, report: FsckReport, bad: dict[Digest, Problem],
                packed_bad: dict[Digest, str]) -> None:
    """Stream the pack once, checking every object in offset order (objects set aside before are skipped)."""
    store, fs = ws.store, ws.store.fs
    try:
        index = decode_index(fs.cat_file(store.pack_path(name, ".idx")), name)
    except StorageError as exc:
        bad[Digest.from_hex(name)] = Problem(name, "unreadable", store.pack_path(name, ".idx"), str(exc))
        return
    damaged = store.damaged()
    try:
        f = fs.open(store.pack_path(name), "rb")
    except FileNotFoundError:
        for raw in index:
            bad[Digest.from_raw(raw)] = Problem(str(Digest.from_raw(raw)), "missing", store.pack_path(name))
        return
    with f:
        pos = 0
        for raw, entry in sorted(index.items(), key=lambda kv: kv[1].offset):
            digest = Digest.from_raw(raw)
            if (name, raw) in damaged:
                continue
            if entry.offset != pos:
                f.seek(entry.offset)
                pos = entry.offset
            h = digests.hasher()
            left = entry.length
            while left:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                h.update(chunk)
                left -= len(chunk)
            pos += entry.length - left
            report.objects += 1
            report.bytes += entry.length
            if left or h.hexdigest() != digest.hexdigest:
                detail = "truncated" if left else f"bytes hash to {h.hexdigest()}"
                bad[digest] = Problem(str(digest), "corrupt", f"{store.pack_path(name)}@{entry.offset}", detail)
                packed_bad[digest] = name
