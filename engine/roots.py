"""Everything the repo still needs, as gc, fsck, push and fetch are handed it.

Storage knows the roots pointer files name (``storage.references.pointer_roots``); the
engine adds its own: the outputs ``mlv.lock`` names (with ``all_commits``, any commit's
lock), the objects run records name (captured logs, interpreters' package lists), and the
prediction-log segments ``mlv serve`` stored (one catalog file each in ``.mlv/predictions/``,
named by the segment's hex digest), so ``mlv trace <prediction-id>`` survives gc and push.
Every command that deletes or moves objects builds its roots here, so a lock output or a
record's log is never taken for garbage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from mlv.engine import lockfile, predlog
from mlv.storage.errors import UsageError
from mlv.storage.store.digest import Digest
from mlv.storage.workspace import Workspace, gitfiles, references
from mlv.storage.workspace.references import Roots

RUNS = "runs"  # .mlv/runs/<run id>.json
_NAMED = re.compile(rb'"(?:log|packages)": "xxh3-128:([0-9a-f]{32})"')  # the objects a run record names


def roots(ws: Workspace, *, all_commits: bool = False) -> Roots:
    """Pointer files, ``mlv.lock`` outputs and run records' objects (with ``all_commits``: of every commit)."""
    result = references.pointer_roots(ws, all_commits=all_commits)
    lock = ws.root / lockfile.NAME
    if lock.exists():
        for d, is_dir in lockfile.outputs(lock.read_bytes()):
            result.add(d, lockfile.NAME, is_dir=is_dir)
    for d in _record_objects(ws):
        result.add(d, "run record")
    for d in _prediction_segments(ws):
        result.add(d, "prediction log")
    if all_commits:
        for where, blob in gitfiles.blobs(ws.root, lambda path: path.rsplit("/", 1)[-1] == lockfile.NAME):
            for d, _ in lockfile.outputs(blob, where=where):
                result.where.setdefault(d, where)
    return result


def roots_of(ws: Workspace, targets: list[str]) -> Roots:
    """The roots of some targets: tracked paths (or their ``.mlv`` pointers), stage names in ``mlv.lock``
    (all their outs), or paths of stage outs; anything else is a ``UsageError``."""
    result = Roots()
    stages = locked(ws)
    outs = {path: version for entries in stages.values() for path, version in entries.items()}
    for target in targets:
        if target in stages:
            chosen = stages[target]
        elif (tracked := references.pointer_root(ws, target)) is not None:
            chosen = {tracked[0]: tracked[1:]}
        elif (rel := ws.rel(ws.resolve(target, must_exist=False))) in outs:
            chosen = {rel: outs[rel]}
        else:
            raise UsageError(f"'{target}' is neither a tracked path (no '{target}.mlv'), nor a stage or an out "
                             f"in {lockfile.NAME}; `mlv status` lists what is tracked")
        for rel, (digest, is_dir) in chosen.items():
            result.add(digest, rel, is_dir=is_dir)
    return result


def locked(ws: Workspace) -> dict[str, dict[str, tuple[Digest, bool]]]:
    """``{stage: {out path: (digest, is a directory)}}`` from the workspace's ``mlv.lock`` (paths checked)."""
    return {name: {path: (out.digest, out.nfiles is not None) for path, out in entry.outs.items()}
            for name, entry in lockfile.load(ws.root).items()}


def record_objects(data: bytes) -> Iterable[Digest]:
    """The objects a run record's bytes name (its log, its interpreter's package list)."""
    return [Digest.from_hex(m.group(1).decode()) for m in _NAMED.finditer(data)]


def _record_objects(ws: Workspace) -> list[Digest]:
    folder: Path = ws.dot / RUNS
    return [d for path in (folder.glob("*.json") if folder.is_dir() else ()) for d in record_objects(path.read_bytes())]


def _prediction_segments(ws: Workspace) -> list[Digest]:
    return [Digest.from_hex(name) for name in predlog.catalog_names(ws)]