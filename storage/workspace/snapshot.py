"""Snapshots: the digest of a workspace path, and storing its bytes in the store.

``scan`` stats a path (a file or a whole directory) and notes when it started;
``identify`` turns a scan into a digest without storing anything (for status and
stage deps); ``store`` puts every byte the store lacks and returns the same digest.
Both consult the stat cache first, so unchanged files are never read again; for an
untouched directory, ``identify`` needs one walk and no manifest at all.

Stat-cache entries are stamped with the scan's start time, before any byte is read:
a file written in the same timestamp tick as its hashing is then never trusted.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from mlv.storage.store import digest as digests
from mlv.storage.workspace import hashing
from mlv.storage.store.digest import Digest
from mlv.storage.errors import MlvError, UsageError
from mlv.storage.workspace.statcache import RACY_NS
from mlv.storage.workspace.walk import FileStat, check_inside, fingerprint, stat_file, walk
from mlv.storage.workspace import Workspace

ProgressFactory = Callable[[int, str], AbstractContextManager]
MAX_CHANGED = 1000  # more changed files than this in a re-add: look each up in the stat cache instead


@dataclass(frozen=True, slots=True)
class Scan:
    """The stat of every file of ``target`` at ``started_ns``."""

    target: Path
    rel: str
    is_dir: bool
    files: list[FileStat]
    started_ns: int
    leftovers: list[str] = field(default_factory=list)  # mlv temp files a killed process left (not data)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A path's version: its digest, and per-file digests where they were computed."""

    digest: Digest
    size: int
    nfiles: int | None  # None for a single file
    files: dict[str, Digest] = field(default_factory=dict)
    stored: int = 0  # objects newly written
    hashed: int = 0  # files whose bytes were read
    in_store: frozenset[str] = frozenset()  # files the stat cache knows the store holds (unless damaged since)


def scan(ws: Workspace, target: Path) -> Scan:
    """Stat ``target``; ``UsageError`` if it leads out of the repo (or into ``.git/``) through a symlink."""
    started = time.time_ns()
    check_inside(target, repo_root=ws.root)
    if target.is_dir():
        leftovers: list[str] = []
        return Scan(target, ws.rel(target), True, walk(target, repo_root=ws.root, leftovers=leftovers), started,
                    leftovers)
    if target.is_file():
        return Scan(target, ws.rel(target), False, [stat_file(target, repo_root=ws.root)], started)
    if not target.exists():
        raise UsageError(f"'{ws.rel(target)}' does not exist")
    raise UsageError(f"'{ws.rel(target)}' is neither a regular file nor a directory")


def identify(ws: Workspace, s: Scan, *, per_file: bool = False) -> Snapshot:
    """The digest ``s`` would be stored under; reads only files the stat cache can't vouch for."""
    walked = fingerprint(s.files) if s.is_dir else ""
    if s.is_dir and not per_file and (known := ws.state.dir_digest(s.rel, walked)) is not None:
        return Snapshot(digests.parse(known), s.size, len(s.files))
    hits, misses, stored = hashing.cached(s.files, ws.state, s.rel)
    found = hashing.digest_all(misses)
    ws.state.record(hashing.stat_rows(misses, found, s.rel), s.started_ns)
    current = {**hits, **found}
    if not s.is_dir:
        return Snapshot(current[""], s.size, None, current, hashed=len(misses), in_store=frozenset(stored))
    top = digests.of_bytes(_manifest_bytes(s, [current[f[0]].raw for f in s.files]))
    _remember_dir(ws, s, walked, top)
    return Snapshot(top, s.size, len(s.files), current, hashed=len(misses), in_store=frozenset(stored))


def store(ws: Workspace, s: Scan, *, progress: ProgressFactory | None = None) -> Snapshot:
    """Put the bytes of ``s`` the store lacks (the stat cache says which it already holds).

    ``progress(bytes_to_read, description)`` may return a context manager that yields a
    per-bytes callback (the CLI draws a bar with it).
    """
    store_ = ws.store
    damaged = ws.state.damaged()
    same = _same_files(ws, s) if s.is_dir and not damaged else None
    if same is not None:  # the paths of the last stored version: compare columns, no per-file lookups
        raws, misses = same
        hits, verified = {}, []
    else:
        hits, misses, verified = _cached(ws, s, damaged)
    found: dict[str, Digest] = {}
    bar = progress(sum(f.size for f in misses), f"adding {s.rel}") if progress and misses else nullcontext()
    with bar as tick, store_.writer() as w:
        w.replace = {digests.parse(d).raw for d, pack in damaged.items() if pack is None}  # damaged loose copies
        for f, data in hashing.read_all(misses, progress=tick):
            if data is None:
                d = w.put_file(f.path, progress=tick)[0]  # a big file reports its bytes as they are stored
            else:
                d = digests.of_bytes(data)
                if damaged.get(str(d)) is not None:  # good bytes for a damaged packed copy: set it aside
                    ws.store.quarantine(d, pack=damaged[str(d)])
                w.put_bytes(data, d)
            found[f.rel] = d
            if str(d) in damaged:
                del damaged[str(d)]
                ws.state.clear_damaged(str(d))
        current = {**hits, **found}
        if s.is_dir:
            if same is None:
                raws = [current[f[0]].raw for f in s.files]
            else:
                raws = [r if r is not None else found[f[0]].raw for r, f in zip(raws, s.files)]
            top = w.put_bytes(_manifest_bytes(s, raws))
        else:
            top = current[""]
    ws.state.record(hashing.stat_rows([*misses, *verified], {**found, **hits}, s.rel), s.started_ns, stored=True)
    ws.state.mark_complete(str(top))
    if s.is_dir:
        _remember_dir(ws, s, fingerprint(s.files), top)
        ws.state.record_dir_files(s.rel, str(top), s.started_ns, array("Q", [f[2] for f in s.files]),
                                  array("q", [f[3] for f in s.files]))
    return Snapshot(top, s.size, len(s.files) if s.is_dir else None, current, w.written, len(misses))


def _cached(ws: Workspace, s: Scan, damaged: dict) -> tuple[dict[str, Digest], list[FileStat], list[FileStat]]:
    """The stat cache's digests for ``s`` (hits), the files to read (misses), and hits whose object was
    checked in the store just now (``verified``: the cache did not know it was stored)."""
    hits, misses, stored = hashing.cached(s.files, ws.state, s.rel)
    verified = []
    for f in s.files:  # a cached digest still needs its bytes if the object left the store or is damaged
        d = hits.get(f.rel)
        if d is None or (f.rel in stored and str(d) not in damaged):
            continue
        if str(d) in damaged or d not in ws.store:
            del hits[f.rel]
            misses.append(f)
        else:
            verified.append(f)
    return hits, misses, verified


def _same_files(ws: Workspace, s: Scan) -> tuple[list[bytes | None], list[FileStat]] | None:
    """For a directory holding exactly the paths of its last stored version (whose objects are all
    still in the store): that version's raw digests, None where the stat shows a change (or a
    racy one), and the changed files. None when this does not apply: the general path decides."""
    from mlv.storage.store import manifest

    row = ws.state.dir_files(s.rel)
    if row is None or not ws.state.is_complete(row[0]):
        return None
    digest, checked, inodes, mtimes = row
    files = s.files
    if len(inodes) != len(files) or len(mtimes) != len(files):
        return None
    try:
        last = manifest.load(ws.store.read_bytes(digests.parse(digest)))
    except MlvError:
        return None
    if last.paths != [f[0] for f in files]:
        return None
    raws: list[bytes | None] = list(last.raw_digests)
    sizes, executable = last.sizes, last.executable
    changed = []
    for i, f in enumerate(files):
        if f[2] != inodes[i] or f[3] != mtimes[i] or f[4] != sizes[i] or f[5] != executable[i] \
                or checked - f[3] < RACY_NS:
            raws[i] = None
            changed.append(f)
    if len(changed) > MAX_CHANGED:  # e.g. a checkout replaced the files: the per-file stat cache knows them
        return None
    return raws, changed


def _manifest_bytes(s: Scan, raws: list[bytes]) -> bytes:
    from mlv.storage.store import manifest

    return manifest.dump_columns([f[0] for f in s.files], raws, [f[4] for f in s.files], [f[5] for f in s.files])


def _remember_dir(ws: Workspace, s: Scan, walked: str, top: Digest) -> None:
    if hashing.is_settled(s.files, s.started_ns, RACY_NS):
        ws.state.record_dir(s.rel, walked, str(top))
