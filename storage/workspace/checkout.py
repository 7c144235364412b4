"""``mlv checkout``: make the workspace match the pointers.

Two phases. Planning reads only: it diffs each target against its version, and refuses
(``UnsavedChangesError``, exit 2, nothing touched) when a file it would overwrite or
delete holds bytes the store lacks, unless ``force``; it also refuses (exit 1) when an
object it needs is missing. Applying writes each file through ``Linker`` (temp +
rename, verified while streamed); a damaged object is reported and skipped, never
written, and the run ends with ``ObjectCorrupt`` (exit 1).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from mlv.storage.workspace import snapshot
from mlv.storage.atomic import is_temp, remove_stale
from mlv.storage.store.digest import Digest
from mlv.storage.errors import (
    ObjectCorrupt,
    ObjectMissing,
    StorageError,
    UnsavedChangesError,
    UsageError,
)
from mlv.storage.workspace.links import Linker
from mlv.storage.workspace.pointers import Pointer
from mlv.storage.workspace.snapshot import ProgressFactory
from mlv.storage.workspace.tracking import in_cache, load_pointers
from mlv.storage.workspace.walk import check_inside

MTIME_SLACK_NS = 2_000_000_000  # coarse filesystem clocks: a file the stage wrote may look up to 2 s older
from mlv.storage.workspace import Workspace


@dataclass(frozen=True, slots=True)
class Version:
    """A path and the version it should hold (pointers and ``mlv.lock`` outs both give these)."""

    target: Path
    digest: Digest
    is_dir: bool
    size: int = 0


@dataclass(slots=True)
class Plan:
    version: Version | Pointer
    rel: str
    writes: list[tuple[str, Digest, bool, int]] = field(default_factory=list)  # (rel in target, digest, exec, size)
    deletes: list[str] = field(default_factory=list)  # rel inside target ('' = the target itself)
    unsaved: list[str] = field(default_factory=list)
    make_dir: bool = False  # a directory version (possibly empty) where no directory is
    leftovers: list[str] = field(default_factory=list)  # temp files a killed checkout left, to remove


@dataclass(slots=True)
class CheckoutReport:
    restored: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # with ``skip_missing``: versions the store lacks
    failed: dict[str, str] = field(default_factory=dict)  # path -> why the filesystem refused it
    notes: list[str] = field(default_factory=list)  # warnings for people (e.g. a link mode not used)

    def to_dict(self) -> dict:
        return {"restored": self.restored, "removed": self.removed, "unchanged": self.unchanged,
                "damaged": self.damaged, "skipped": self.skipped, "failed": self.failed, "notes": self.notes}


def checkout(
    ws: Workspace, paths: list[str] | None = None, *, force: bool = False, extra: Iterable[Version] = (),
    progress: ProgressFactory | None = None, skip_missing: bool = False,
) -> CheckoutReport:
    """Restore the pointers' versions plus ``extra`` ones (stage outputs), all or those of ``paths``.

    With ``skip_missing`` (``mlv pull``), versions the store lacks are left alone and listed in
    ``skipped`` instead of failing the whole checkout.
    """
    if not paths:
        return restore(ws, [*load_pointers(ws), *extra], force=force, progress=progress, skip_missing=skip_missing)
    by_target = {v.target: v for v in extra}
    chosen: list[Version | Pointer] = []
    pointer_paths = []
    for p in paths:
        target = ws.resolve(p, must_exist=False)
        if target in by_target:
            chosen.append(by_target[target])
        else:
            pointer_paths.append(p)
    chosen += load_pointers(ws, pointer_paths) if pointer_paths else []
    return restore(ws, chosen, force=force, progress=progress, skip_missing=skip_missing)


def restore(ws: Workspace, versions: Iterable[Version | Pointer], *, force: bool = False,
            progress: ProgressFactory | None = None, skip_missing: bool = False) -> CheckoutReport:
    """Make each target hold its version; plan everything before touching anything."""
    report = CheckoutReport()
    if skip_missing:
        complete = []
        for v in versions:
            if in_cache(ws, v.digest, v.is_dir):
                complete.append(v)
            else:
                report.skipped.append(ws.rel(v.target))
        versions = complete
    siblings: dict[Path, list[str]] = {}
    plans = [_plan(ws, v, siblings) for v in versions]
    unsaved = _uncommitted(ws, [f"{p.rel}/{u}" if u else p.rel for p in plans for u in p.unsaved])
    if unsaved and not force:
        shown = "\n  ".join(unsaved[:10]) + (f"\n  … and {len(unsaved) - 10} more" if len(unsaved) > 10 else "")
        raise UnsavedChangesError(
            f"checkout would discard changes that are not in the store:\n  {shown}\n"
            "Save them with `mlv add`, or discard them with `mlv checkout --force`."
        )
    store = ws.store
    missing = sorted({str(w[1]) for p in plans for w in p.writes if w[1] not in store})
    if missing:
        raise ObjectMissing(
            f"{len(missing)} object(s) needed for checkout are not in the store (first: {missing[0]}); "
            "fetch them with `mlv pull`, then re-run checkout"
        )
    linker = Linker(store, ws.config.link, verify=ws.config.verify)
    linker.probe(ws.root)
    if linker.note and any(p.writes for p in plans):
        report.notes.append(linker.note)
    total = sum(w[3] for p in plans for w in p.writes)
    files = sum(len(p.writes) for p in plans)  # each is told to the bar when written: files and bytes as they go
    with ws.lock(), (progress(total, "checking out", files=files) if progress else nullcontext()) as tick:
        for plan in plans:
            _apply(ws, plan, linker, report, tick)
    if report.failed:
        shown = "\n  ".join(f"{path}: {why}" for path, why in list(report.failed.items())[:10])
        raise StorageError(f"checkout could not write {len(report.failed)} path(s); the rest was restored:\n  "
                           f"{shown}\nFix the cause (disk space, permissions), then run checkout again")
    if report.damaged:
        raise ObjectCorrupt(
            "checkout skipped damaged objects; these paths were not written:\n  "
            + "\n  ".join(report.damaged[:10])
            + "\nRestore good copies with `mlv pull` (or re-add the data), then run `mlv fsck`."
        )
    return report




def _plan(ws: Workspace, ptr: Version | Pointer, siblings: dict[Path, list[str]]) -> Plan:
    target, rel = ptr.target, ws.rel(ptr.target)
    check_inside(target, repo_root=ws.root)  # no symlink on the way leads out of the repo or into .git/
    plan = Plan(ptr, rel)
    store = ws.store
    if ptr.is_dir:
        from mlv.storage.store import manifest

        try:
            m = manifest.load(store.read_bytes(ptr.digest))
        except ObjectMissing:
            raise ObjectMissing(
                f"'{rel}': its version {ptr.digest} is not in the store; fetch it with `mlv pull`", digest=ptr.digest
            ) from None
        except StorageError as exc:
            raise ObjectCorrupt(
                f"'{rel}': the manifest of its version {ptr.digest} is damaged ({exc}); nothing was changed. "
                "Run `mlv fsck`, then re-add the data or `mlv pull` it",
                digest=ptr.digest,
            ) from exc
        wanted = {e.path: e for e in m}
    else:
        wanted = None
    if target.is_symlink() and target.is_dir():
        raise UsageError(
            f"'{rel}' is a symlink to a directory; checkout will not write or delete through it. "
            "Remove the link (the data it points to stays), then run checkout again"
        )
    in_store: frozenset[str] = frozenset()
    if target.exists():  # a dangling symlink counts as absent: os.replace swaps it out
        scan = snapshot.scan(ws, target)
        snap = snapshot.identify(ws, scan, per_file=True)
        current, in_store = snap.files, snap.in_store
        exec_of = {f.rel: f.executable for f in scan.files} if scan.is_dir else {}
        plan.leftovers = scan.leftovers
    else:
        current, exec_of = {}, {}
    if not target.is_dir() and target.parent.is_dir():  # a single file's temp files are its siblings
        if target.parent not in siblings:
            with os.scandir(target.parent) as it:
                siblings[target.parent] = [e.path for e in it if is_temp(e.name)]
        plan.leftovers = siblings[target.parent]
    if wanted is None:  # a single file
        if "" in current and current[""] == ptr.digest:
            return plan
        plan.deletes = [p for p in current if p != ""]  # a directory where the file belongs
        plan.writes = [("", ptr.digest, False, ptr.size)]
    else:
        if "" in current:  # a file where the directory belongs
            plan.deletes.append("")
            current_files = {}
        else:
            current_files = current
        for path, e in wanted.items():
            if current_files.get(path) != e.digest or exec_of.get(path) != e.executable:
                plan.writes.append((path, e.digest, e.executable, e.size))
        plan.deletes += [p for p in current_files if p not in wanted]
        plan.make_dir = not target.is_dir() or target.is_symlink()
    overwritten = {w[0] for w in plan.writes} | set(plan.deletes)
    plan.unsaved = _not_stored(ws, current, in_store, overwritten)
    return plan


def unsaved(ws: Workspace, paths: Iterable[str]) -> list[str]:
    """The files at or under ``paths`` (repo-relative) whose bytes are neither in the store nor
    committed to git: what removing those paths would destroy (``mlv run`` asks before it clears
    a stage's outputs). A failed or interrupted stage's own partial output (written since the
    stage began, as ``StatCache.writing`` records) is not unsaved work."""
    found = []
    writing = ws.state.writing()
    for rel in paths:
        target = ws.root / rel
        if not target.exists():
            continue  # nothing there (a dangling symlink holds no bytes)
        scan = snapshot.scan(ws, target)
        since = writing.get(rel)
        files = [f for f in scan.files if since is None or f.mtime_ns < since - MTIME_SLACK_NS]
        if not files:
            continue
        scan = snapshot.Scan(scan.target, scan.rel, scan.is_dir, files, scan.started_ns)
        snap = snapshot.identify(ws, scan, per_file=True)
        found += [f"{rel}/{p}" if p else rel for p in _not_stored(ws, snap.files, snap.in_store, snap.files)]
    return _uncommitted(ws, found)


def _not_stored(ws: Workspace, current: dict[str, Digest], in_store: frozenset[str], among: Iterable[str]) -> list[str]:
    """Those of ``among`` in ``current`` whose bytes the store has no good copy of.

    The stat cache's word that a file is stored is taken (as ``add`` takes it); otherwise a
    small (packed) object is re-hashed, which costs little, and a large one must exist and
    not be known damaged (``mlv fsck`` re-hashes those).
    """
    store, damaged = ws.store, ws.state.damaged()

    def saved(rel: str) -> bool:
        digest = current[rel]
        if str(digest) in damaged:
            return False
        if rel in in_store:
            return True
        if digest not in store:
            return False
        if store.packed(digest) is None:
            return True
        try:
            store.read_bytes(digest)
            return True
        except StorageError:
            return False

    return sorted(p for p in among if p in current and not saved(p))


def _uncommitted(ws: Workspace, paths: list[str]) -> list[str]:
    """``paths`` less those whose bytes git has committed (``git checkout`` brings them back)."""
    if not paths or not ws.in_git:
        return paths
    from mlv.storage.workspace import gitfiles

    committed = gitfiles.committed(ws.root, paths)
    return [p for p in paths if p not in committed]


def _apply(ws: Workspace, plan: Plan, linker: Linker, report: CheckoutReport, tick) -> None:
    target = plan.version.target
    remove_stale(plan.leftovers)
    if not plan.writes and not plan.deletes and not plan.make_dir:
        report.unchanged.append(plan.rel)
        return
    try:
        for rel in plan.deletes:
            path = target / rel if rel else target
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            report.removed.append(f"{plan.rel}/{rel}" if rel else plan.rel)
        if target.is_dir():
            _prune_empty(target)
        if plan.make_dir:
            target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        report.failed[plan.rel] = _why(exc)
        return
    failed = len(report.failed)
    for rel, digest, executable, size in plan.writes:
        path = target / rel if rel else target
        shown = f"{plan.rel}/{rel}" if rel else plan.rel
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            linker.materialize(digest, path, executable=executable)
        except StorageError:
            entry = ws.store.packed(digest)
            ws.state.mark_damaged(str(digest), entry.pack if entry else None)
            report.damaged.append(shown)
            continue
        except OSError as exc:  # disk full, read-only, a name too long: this file, not the rest
            report.failed[shown] = _why(exc)
            continue
        if tick:
            tick(size)
    if (plan.writes or plan.make_dir) and len(report.failed) == failed:
        report.restored.append(plan.rel)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _prune_empty(top: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        if dirpath != os.fspath(top) and not os.listdir(dirpath):
            os.rmdir(dirpath)
