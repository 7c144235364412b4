"""``mlv gc``: remove objects nothing references, under the exclusive repo lock.

Anything younger than the grace period survives (a concurrent ``mlv add`` may have
stored objects whose pointer is not written yet), and so does everything the
workspace's pointers and ``mlv.lock`` reference (or any commit's, with ``all_commits``).
Packs holding dead objects are rewritten, and small packs (every ``add`` and every run
writes one) are merged into one, so commands don't read an index per pack forever: the
new pack is sealed before an old index is removed, so a crash leaves duplicates at worst,
never a lost object.

gc removes only what mlv wrote: it refuses a cache folder without the store's ``FORMAT``
and ``ID``, and within a store it touches only names of the store's own shapes (loose
``<2 hex>/<30 hex>``, ``packs/<32 hex>.pack|.idx``, ``tmp/<32 hex>[.pack|.idx]``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mlv.storage.workspace import references
from mlv.storage.store.digest import Digest
from mlv.storage.errors import UsageError
from mlv.storage.store.objects import PACK, TEMP
from mlv.storage.workspace.references import Roots
from mlv.storage.workspace import Workspace


SMALL_PACK = 8 * 1024 * 1024  # packs under this many bytes are merged by gc


@dataclass(slots=True)
class GcReport:
    removed: list[str] = field(default_factory=list)  # digests
    freed_bytes: int = 0
    kept: int = 0
    repacked: int = 0
    merged: int = 0  # small packs whose objects now share one pack
    dry_run: bool = False

    def to_dict(self) -> dict:
        return {
            "removed": len(self.removed), "freed_bytes": self.freed_bytes, "kept": self.kept,
            "repacked_packs": self.repacked, "merged_packs": self.merged, "dry_run": self.dry_run,
            "digests": self.removed,
        }


def gc(ws: Workspace, roots: Roots, *, dry_run: bool = False, grace: int | None = None) -> GcReport:
    """Remove what the closure of ``roots`` (pointers and what the layers above add) does not reach and the grace
    period spares."""
    grace = ws.config.grace if grace is None else grace
    store, fs = ws.store, ws.store.fs
    report = GcReport(dry_run=dry_run)
    if not store.is_store():
        raise UsageError(f"'{store.root}' holds files but no mlv store (no FORMAT and ID), so gc removes nothing "
                         "there; check `cache.dir` in .mlv/config.yaml")
    with ws.lock(exclusive=True):
        live = references.closure(store, roots, strict=True)
        cutoff = time.time() - grace

        def young(path: str) -> bool:
            return fs.modified(path).timestamp() > cutoff

        for digest, path in list(store.iter_loose()):
            if digest in live or young(path):
                report.kept += 1
                continue
            report.removed.append(str(digest))
            report.freed_bytes += fs.size(path)
            if not dry_run:
                fs.rm_file(path)
        by_pack: dict[str, list[tuple[Digest, object]]] = {}
        for digest, entry in store.iter_packed():
            by_pack.setdefault(entry.pack, []).append((digest, entry))
        whole: dict[str, list[tuple[Digest, object]]] = {}  # packs kept as they are, older than the grace
        for name, entries in by_pack.items():
            dead = [(d, e) for d, e in entries if d not in live]
            if not dead or young(store.pack_path(name)):
                report.kept += len(entries)
                if not young(store.pack_path(name)):  # a pack younger than the grace period is left as it is
                    whole[name] = entries
                continue
            report.removed += [str(d) for d, _ in dead]
            report.freed_bytes += sum(e.length for _, e in dead)
            report.kept += len(entries) - len(dead)
            if dry_run:
                continue
            keep = [(d, e) for d, e in entries if d in live]
            if keep:
                with store.writer() as w:
                    w.repack = True
                    for d, _ in keep:
                        w.put_bytes(store.read_bytes(d), d)
                report.repacked += 1
            fs.rm_file(store.pack_path(name, ".idx"))
            fs.rm_file(store.pack_path(name))
        _merge_small(ws, whole, report, dry_run)
        _remove_leftovers(ws, cutoff, dry_run)
        if report.removed and not dry_run:
            ws.state.forget_complete()
        if (report.removed or report.merged) and not dry_run:
            store.reset_index()
    return report


def _merge_small(ws: Workspace, packs: dict[str, list[tuple[Digest, object]]], report: GcReport,
                 dry_run: bool) -> None:
    """Put the objects of the packs under ``SMALL_PACK`` bytes into one new pack, then remove those packs
    (index first). A pack with a copy ``fsck`` found damaged is left to ``mlv add``/``pull`` to repair."""
    store, fs = ws.store, ws.store.fs
    damaged = {pack for pack, _ in store.damaged()}
    small = sorted(name for name, entries in packs.items()
                   if name not in damaged and sum(e.length for _, e in entries) < SMALL_PACK)
    if len(small) < 2:
        return
    report.merged = len(small)
    if dry_run:
        return
    seen: set[Digest] = set()
    with store.writer() as w:
        w.repack = True  # the objects are in the store already: put them again, into this pack
        for name in small:
            for digest, _ in packs[name]:
                if digest not in seen:
                    seen.add(digest)
                    w.put_bytes(store.read_bytes(digest), digest)
    for name in small:
        fs.rm_file(store.pack_path(name, ".idx"))
        fs.rm_file(store.pack_path(name))


def _remove_leftovers(ws: Workspace, cutoff: float, dry_run: bool) -> None:
    """Temp files and index-less packs left by killed processes, once older than the grace period."""
    store, fs = ws.store, ws.store.fs
    indexed = set(store.packs())
    leftovers = []
    for sub in ("tmp", "packs"):
        try:
            paths = fs.ls(store._path(sub), detail=False)
        except FileNotFoundError:
            continue
        for path in paths:
            base = path.rsplit("/", 1)[-1]
            ours = TEMP.match(base) if sub == "tmp" else PACK.match(base) and base[:-5] not in indexed
            if ours and fs.modified(path).timestamp() <= cutoff:  # only names mlv makes: nothing else is ours
                leftovers.append(path)
    if not dry_run:
        for path in leftovers:
            fs.rm_file(path)
