"""``mlv fsck``: re-hash every object, pack and manifest; say which pointers break.

Temp files and index-less packs left by a killed process are not objects (nothing can
reference them) and are not reported as damage; ``gc`` removes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlv.storage import digest as digests
from mlv.storage import references
from mlv.storage.digest import CHUNK, Digest
from mlv.storage.errors import StorageError
from mlv.storage.packs import decode_index
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


def fsck(ws: Workspace) -> FsckReport:
    store, fs = ws.store, ws.store.fs
    report = FsckReport()
    bad: dict[Digest, Problem] = {}
    for digest, path in store.iter_loose():
        actual, size = digests.of_stream(fs.open(path, "rb"))
        report.objects += 1
        report.bytes += size
        if actual != digest:
            bad[digest] = Problem(str(digest), "corrupt", path, f"bytes hash to {actual}")
    for name in _pack_names(ws, report):
        _check_pack(ws, name, report, bad)
    roots = references.roots(ws)
    for digest, where in roots.items():
        if digest not in store and digest not in bad:
            bad[digest] = Problem(str(digest), "missing", where)
    live = references.closure(store, {d: w for d, w in roots.items() if d not in bad})
    for digest, where in live.items():
        if digest not in store and digest not in bad:
            bad[digest] = Problem(str(digest), "missing", where, "member of a directory manifest")
    for digest, problem in bad.items():
        if digest in live:
            problem.breaks.append(live[digest])
    report.problems = sorted(bad.values(), key=lambda p: (p.kind, p.digest))
    if report.problems:
        ws.state.forget_complete()
    return report


def _pack_names(ws: Workspace, report: FsckReport) -> list[str]:
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


def _check_pack(ws: Workspace, name: str, report: FsckReport, bad: dict[Digest, Problem]) -> None:
    """Stream the pack once: its own digest, then every object in offset order."""
    store, fs = ws.store, ws.store.fs
    try:
        index = decode_index(fs.cat_file(store.pack_path(name, ".idx")), name)
    except StorageError as exc:
        bad[Digest.from_hex(name)] = Problem(name, "unreadable", store.pack_path(name, ".idx"), str(exc))
        return
    whole = digests.hasher()
    try:
        f = fs.open(store.pack_path(name), "rb")
    except FileNotFoundError:
        for raw in index:
            bad[Digest.from_raw(raw)] = Problem(Digest.from_raw(raw).__str__(), "missing", store.pack_path(name))
        return
    with f:
        pos = 0
        for raw, entry in sorted(index.items(), key=lambda kv: kv[1].offset):
            digest = Digest.from_raw(raw)
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
                whole.update(chunk)
                left -= len(chunk)
            pos += entry.length - left
            report.objects += 1
            report.bytes += entry.length
            if left or h.hexdigest() != digest.hexdigest:
                detail = "truncated" if left else f"bytes hash to {h.hexdigest()}"
                bad[digest] = Problem(str(digest), "corrupt", f"{store.pack_path(name)}@{entry.offset}", detail)
    if whole.hexdigest() != name and not any(p.where.startswith(store.pack_path(name)) for p in bad.values()):
        bad[Digest.from_hex(name)] = Problem(name, "corrupt", store.pack_path(name), "pack bytes changed outside objects")
