"""``mlv add`` and ``mlv status``: putting paths under version control and comparing.

Order of writes in ``add`` (what makes a kill at any moment safe): objects (packs
sealed, loose files renamed) → manifest object → stat cache → pointer file. A pointer
therefore never names data the store lacks; an interrupted add leaves only temp files
and unreferenced objects, and re-running it completes the job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from mlv.storage import hashing, pointers
from mlv.storage import digest as digests
from mlv.storage.digest import Digest
from mlv.storage.errors import StorageError, UsageError
from mlv.storage.pointers import Pointer
from mlv.storage.statcache import RACY_NS
from mlv.storage.walk import FileStat, fingerprint, stat_file, walk
from mlv.storage.workspace import Workspace


@dataclass(frozen=True, slots=True)
class Added:
    pointer: Pointer
    stored: int  # objects newly written to the store
    hashed: int  # files whose bytes were read


def _validate_targets(ws: Workspace, paths: list[str]) -> list[Path]:
    targets = [ws.resolve(p) for p in paths]
    tracked = {ptr.parent / ptr.name[: -len(pointers.SUFFIX)] for ptr in ws.pointer_files()}
    for t in targets:
        if t == ws.root:
            raise UsageError("cannot add the repo root itself; add the data directories inside it")
        if t.name.endswith(pointers.SUFFIX):
            raise UsageError(f"'{ws.rel(t)}' is a pointer file; add the data it describes instead")
        for parent in t.parents:
            if parent in tracked:
                raise UsageError(
                    f"'{ws.rel(t)}' is inside the tracked directory '{ws.rel(parent)}'; re-add '{ws.rel(parent)}' instead"
                )
        if not t.is_dir() and not t.is_file():
            raise UsageError(f"'{ws.rel(t)}' is neither a regular file nor a directory")
    return targets


def add(ws: Workspace, paths: list[str], *, progress: hashing.Progress | None = None) -> list[Added]:
    """Store each path's content and write its pointer; only changed files are read."""
    targets = _validate_targets(ws, paths)
    scanned = [(t, walk(t, repo_root=ws.root) if t.is_dir() else [stat_file(t, repo_root=ws.root)]) for t in targets]
    results = []
    with ws.lock():
        for target, files in scanned:
            results.append(_add_one(ws, target, files, progress))
    return results


def _previously_present(ws: Workspace, target: Path) -> set[bytes]:
    """Digests of the last version of ``target`` when the store is known to hold all of it."""
    file = pointers.pointer_path(target)
    if not file.exists():
        return set()
    try:
        old = pointers.load(file)
    except UsageError:
        return set()
    if not old.is_dir or not ws.state.is_complete(str(old.digest)):
        return set()
    from mlv.storage import manifest

    return set(manifest.load(ws.store.read_bytes(old.digest)).raw_digests)


def _add_one(ws: Workspace, target: Path, files: list[FileStat], progress) -> Added:
    rel = ws.rel(target)
    is_dir = target.is_dir()
    store = ws.store
    hits, misses = hashing.cached(files, ws.state, rel)
    present = _previously_present(ws, target) if is_dir else set()
    # a cached digest still needs its bytes stored if the object is gone from the store
    for f in files:
        d = hits.get(f.rel)
        if d is not None and d.raw not in present and d not in store:
            del hits[f.rel]
            misses.append(f)
    found: dict[str, Digest] = {}
    with store.writer() as w:
        for f, data in hashing.read_all(misses, progress=progress):
            found[f.rel] = w.put_bytes(data) if data is not None else w.put_file(f.path)[0]
        if is_dir:
            from mlv.storage import manifest

            digest_of = {**hits, **found}
            entries = [manifest.Entry(f.rel, digest_of[f.rel], f.size, f.executable) for f in files]
            top = w.put_bytes(manifest.dump(entries))
        else:
            top = found.get("") or hits[""]
    now = time.time_ns()
    ws.state.record(hashing.stat_rows(files, found, rel))
    ws.state.mark_complete(str(top))
    if is_dir and hashing.is_settled(files, now, RACY_NS):
        ws.state.record_dir(rel, fingerprint(files), str(top))
    pointer = Pointer(pointers.pointer_path(target), top, sum(f.size for f in files), len(files) if is_dir else None)
    pointers.dump(pointer)
    if ws.in_git:
        _gitignore(target)
    return Added(pointer, w.written, len(misses))


def _gitignore(target: Path) -> None:
    """Keep tracked data out of git: '/name' in the .gitignore beside it."""
    ignore = target.parent / ".gitignore"
    line = f"/{target.name}"
    existing = ignore.read_text().splitlines() if ignore.exists() else []
    if line not in existing:
        with open(ignore, "a") as f:
            if existing and not ignore.read_text().endswith("\n"):
                f.write("\n")
            f.write(line + "\n")


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
        return [pointers.load(f) for f in ws.pointer_files()]
    out = []
    for p in paths:
        target = ws.resolve(p, must_exist=False)
        file = target if target.name.endswith(pointers.SUFFIX) else pointers.pointer_path(target)
        if not file.exists():
            raise UsageError(f"'{p}' is not tracked (no '{ws.rel(file)}'); track it with `mlv add {p}`")
        out.append(pointers.load(file))
    return out


def status(ws: Workspace, paths: list[str] | None = None) -> list[PathStatus]:
    return [_status_one(ws, ptr) for ptr in load_pointers(ws, paths)]


def _status_one(ws: Workspace, ptr: Pointer) -> PathStatus:
    target = ptr.target
    rel = ws.rel(target)
    result = PathStatus(rel, "unchanged")
    if not target.exists():
        result.state = "missing"
    elif ptr.is_dir != target.is_dir():
        result.state = "modified"
    elif not ptr.is_dir:
        f = stat_file(target, repo_root=ws.root)
        hits, misses = hashing.cached([f], ws.state, rel)
        found = hashing.digest_all(misses)
        ws.state.record(hashing.stat_rows(misses, found, rel))
        if (hits.get("") or found[""]) != ptr.digest:
            result.state = "modified"
    else:
        files = walk(target, repo_root=ws.root)
        walked = fingerprint(files)
        if ws.state.dir_digest(rel, walked) != str(ptr.digest):
            _diff_dir(ws, ptr, files, walked, result)
    result.in_cache = _in_cache(ws, ptr.digest, ptr.is_dir)
    if result.state == "unchanged" and not result.in_cache:
        result.state = "not-in-cache"
    return result


def _diff_dir(ws: Workspace, ptr: Pointer, files: list[FileStat], walked: str, result: PathStatus) -> None:
    from mlv.storage import manifest

    rel = result.path
    now = time.time_ns()
    hits, misses = hashing.cached(files, ws.state, rel)
    found = hashing.digest_all(misses)
    ws.state.record(hashing.stat_rows(misses, found, rel))
    current = {**hits, **found}
    entries = [manifest.Entry(f.rel, current[f.rel], f.size, f.executable) for f in files]
    if digests.of_bytes(manifest.dump(entries)) == ptr.digest:
        if hashing.is_settled(files, now, RACY_NS):
            ws.state.record_dir(rel, walked, str(ptr.digest))
        return
    result.state = "modified"
    if ptr.digest not in ws.store:
        return  # the old version is not here to compare against; `in_cache` says so
    old = manifest.load(ws.store.read_bytes(ptr.digest))
    old_index = old.index()
    for f in files:
        row = old_index.get(f.rel)
        if row is None:
            result.added.append(f.rel)
        elif old.raw_digests[row] != current[f.rel].raw or old.executable[row] != f.executable:
            result.changed.append(f.rel)
    seen = {f.rel for f in files}
    result.deleted = [p for p in old.paths if p not in seen]


def _in_cache(ws: Workspace, digest: Digest, is_dir: bool) -> bool:
    if ws.state.is_complete(str(digest)):
        return True
    store = ws.store
    if digest not in store:
        return False
    if is_dir:
        from mlv.storage import manifest

        try:
            m = manifest.load(store.read_bytes(digest))
        except StorageError:  # a damaged manifest is as good as absent; `mlv fsck` names it
            return False
        if not all(Digest.from_raw(raw) in store for raw in m.raw_digests):
            return False
    ws.state.mark_complete(str(digest))
    return True

