"""``mlv add`` and ``mlv status``: putting paths under version control and comparing.

Order of writes in ``add`` (what makes a kill at any moment safe): objects (packs
sealed, loose files renamed) → manifest object → stat cache → pointer file. A pointer
therefore never names data the store lacks; an interrupted add leaves only temp files
and unreferenced objects, and re-running it completes the job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mlv.storage import paths as rules
from mlv.storage.workspace import pointers, snapshot
from mlv.storage.store.digest import Digest
from mlv.storage.errors import StorageError, UsageError
from mlv.storage.workspace.pointers import Pointer
from mlv.storage.workspace import Workspace

NAME_MAX = 255  # bytes in one file name on the filesystems mlv runs on


@dataclass(frozen=True, slots=True)
class Added:
    pointer: Pointer
    stored: int  # objects newly written to the store
    hashed: int  # files whose bytes were read
    changed: tuple[Path, ...] = ()  # files this add wrote that belong in git: the pointer, the .gitignore


def _validate_targets(ws: Workspace, paths: list[str]) -> list[Path]:
    targets = [ws.resolve(p) for p in paths]
    tracked = {ptr.parent / ptr.name[: -len(pointers.SUFFIX)] for ptr in ws.pointer_files()}
    for t in targets:
        if t == ws.root:
            raise UsageError("cannot add the repo root itself; add the data directories inside it")
        if t.is_symlink():
            raise UsageError(
                f"'{ws.rel(t)}' is a symlink; add what it points to ('{os.path.realpath(t)}') instead, "
                "so one piece of data is never tracked under two names"
            )
        if t.name.endswith(pointers.SUFFIX):
            raise UsageError(f"'{ws.rel(t)}' is a pointer file; add the data it describes instead")
        inner = sorted(p for p in tracked if t in p.parents and _is_pointer(pointers.pointer_path(p)))
        if inner:
            raise UsageError(
                f"'{ws.rel(t)}' contains the tracked path '{ws.rel(inner[0])}'; a path can be tracked only once. "
                f"Add other paths inside '{ws.rel(t)}' one by one, or remove '{ws.rel(inner[0])}.mlv' first"
            )
        for parent in t.parents:
            if parent in tracked:
                raise UsageError(
                    f"'{ws.rel(t)}' is inside the tracked directory '{ws.rel(parent)}'; re-add '{ws.rel(parent)}' instead"
                )
        if not t.is_dir() and not t.is_file():
            raise UsageError(f"'{ws.rel(t)}' is neither a regular file nor a directory")
        if len(os.fsencode(pointers.pointer_path(t).name)) > NAME_MAX:
            raise UsageError(f"'{ws.rel(t)}' has a name too long to put its pointer '<name>{pointers.SUFFIX}' "
                             f"beside it ({NAME_MAX} bytes at most); add the directory that holds it instead")
        if (why := rules.problem(ws.rel(t))) is not None:
            raise UsageError(f"'{ws.rel(t)}' {why}; mlv does not track it")
    return targets


def add(ws: Workspace, paths: list[str], *, progress: snapshot.ProgressFactory | None = None) -> list[Added]:
    """Store each path's content and write its pointer; only changed files are read.

    ``progress(total_bytes, description)`` may return a context manager yielding a
    per-bytes callback (the CLI draws a bar with it).
    """
    scans = [snapshot.scan(ws, t) for t in _validate_targets(ws, paths)]  # all errors before any write
    results = []
    with ws.lock():
        for s in scans:
            snap = snapshot.store(ws, s, progress=progress)
            pointer = Pointer(pointers.pointer_path(s.target), snap.digest, snap.size, snap.nfiles)
            before = pointer.file.read_bytes() if pointer.file.is_file() else None
            pointers.dump(pointer)
            changed = [pointer.file] if pointer.file.read_bytes() != before else []
            if ws.in_git and ignore_in_git(s.target):
                changed.append(s.target.parent / ".gitignore")
            results.append(Added(pointer, snap.stored, snap.hashed, tuple(changed)))
    return results


def _is_pointer(file: Path) -> bool:
    """A file that parses as a pointer (data may contain files that merely end in '.mlv')."""
    try:
        pointers.load(file, root=file.parent)
        return True
    except UsageError:
        return False


def ignore_in_git(target: Path) -> bool:
    """Keep tracked data out of git: '/name' in the .gitignore beside it (idempotent); whether it was added."""
    ignore = target.parent / ".gitignore"
    line = f"/{target.name}"
    existing = ignore.read_text().splitlines() if ignore.exists() else []
    if line not in existing:
        with open(ignore, "a") as f:
            if existing and not ignore.read_text().endswith("\n"):
                f.write("\n")
            f.write(line + "\n")
        return True
    return False


# -- status ------------------------------------------------------------------------------
@dataclass(slots=True)
class PathStatus:
    path: str
    state: str  # unchanged | modified | missing | not-in-cache
    in_cache: bool = True
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d: dict = {"path": self.path, "state": self.state, "in_cache": self.in_cache}
        if self.added or self.changed or self.deleted:
            d.update(added=self.added, changed=self.changed, deleted=self.deleted)
        return d


def load_pointers(ws: Workspace, paths: list[str] | None = None) -> list[Pointer]:
    """The pointers for ``paths`` (data paths or pointer files), or all of them."""
    if not paths:
        return [pointers.load(f, root=ws.root) for f in ws.pointer_files()]
    out = []
    for p in paths:
        target = ws.resolve(p, must_exist=False)
        file = target if target.name.endswith(pointers.SUFFIX) else pointers.pointer_path(target)
        if not file.exists():
            raise UsageError(f"'{p}' is not tracked (no '{ws.rel(file)}'); track it with `mlv add {p}`")
        out.append(pointers.load(file, root=ws.root))
    return out


def status(ws: Workspace, paths: list[str] | None = None) -> list[PathStatus]:
    return [_status_one(ws, ptr) for ptr in load_pointers(ws, paths)]


def _status_one(ws: Workspace, ptr: Pointer) -> PathStatus:
    target = ptr.target
    result = PathStatus(ws.rel(target), "unchanged")
    if not target.exists():
        result.state = "missing"
    elif ptr.is_dir != target.is_dir():
        result.state = "modified"
    else:
        scan = snapshot.scan(ws, target)
        if snapshot.identify(ws, scan).digest != ptr.digest:
            result.state = "modified"
            if ptr.is_dir:
                _diff_dir(ws, ptr, scan, result)
    result.in_cache = in_cache(ws, ptr.digest, ptr.is_dir)
    if result.state == "unchanged" and not result.in_cache:
        result.state = "not-in-cache"
    return result


def _diff_dir(ws: Workspace, ptr: Pointer, scan: snapshot.Scan, result: PathStatus) -> None:
    """Fill the added/changed/deleted lists, when the old version is here to compare against."""
    from mlv.storage.store import manifest

    if ptr.digest not in ws.store:
        return
    current = snapshot.identify(ws, scan, per_file=True).files
    old = manifest.load(ws.store.read_bytes(ptr.digest))
    old_index = old.index()
    for f in scan.files:
        row = old_index.get(f.rel)
        if row is None:
            result.added.append(f.rel)
        elif old.raw_digests[row] != current[f.rel].raw or old.executable[row] != f.executable:
            result.changed.append(f.rel)
    seen = {f.rel for f in scan.files}
    result.deleted = [p for p in old.paths if p not in seen]


def in_cache(ws: Workspace, digest: Digest, is_dir: bool) -> bool:
    """Whether the store holds ``digest`` (and every member, for a manifest)."""
    if ws.state.is_complete(str(digest)):
        return True
    store = ws.store
    if digest not in store:
        return False
    if is_dir:
        from mlv.storage.store import manifest

        try:
            m = manifest.load(store.read_bytes(digest))
        except StorageError:  # a damaged manifest is as good as absent; `mlv fsck` names it
            return False
        if not all(Digest.from_raw(raw) in store for raw in m.raw_digests):
            return False
    ws.state.mark_complete(str(digest))
    return True

