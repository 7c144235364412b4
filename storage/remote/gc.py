"""``mlv gc --remote``: remove from a remote what nothing references.

gc keeps the closure of the workspace's references (manifests expanded from the local
store, else from the remote), every run record a catalog names and the logs those records
name, and anything younger than the grace period (by the listing's mtimes). A pack with
some dead entries is rewritten: its live entries are downloaded, verified, packed anew
and uploaded (pack, then index) before the old index, then the old pack, are deleted, so
an interruption leaves duplicates at worst, never a lost object. A directory version the
workspace names whose manifest cannot be read aborts gc before anything is removed.

Damage (``remote_damage``): a copy known bad goes, whatever its age, once its object has a
copy not known bad elsewhere: its pack is rewritten without it (or dropped), a loose one is
removed. A live entry that proves bad while its pack is rewritten is left out the same way
when another copy exists; otherwise the pack stays as it is, marked, and gc says so (exit 1).
Markers of copies that are gone go last.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mlv.storage.store import digest as digests
from mlv.storage.store import manifest
from mlv.storage.remote import multipart, damage as remote_damage, state as remote_state
from mlv.storage.workspace import references
from mlv.storage.store.digest import Digest
from mlv.storage.errors import StorageError
from mlv.storage.store.objects import ObjectStore
from mlv.storage.store.packs import PackEntry, encode_index
from mlv.storage.remote.remotes import Inventory, Item, Remote, RemoteError
from mlv.storage.remote.transfer import RUNS, build_pack, catalog, read_ranges, run_all
from mlv.storage.workspace import Workspace

_ARROW_STREAM = b"\xff\xff\xff\xff"  # how a manifest (an Arrow IPC stream) begins, as ``references.closure`` checks
_IDX_BYTES = 16, 32  # index header, and bytes per entry (see ``packs``)


# -- gc ------------------------------------------------------------------------------------
@dataclass(slots=True)
class RemoteGcReport:
    remote: str
    dry_run: bool = False
    removed: list[str] = field(default_factory=list)  # digests
    freed_bytes: int = 0
    repacked: int = 0
    kept: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # pack key -> why it was left as it was
    aborted_uploads: int = 0  # S3 multipart uploads a killed push left open
    damaged_removed: list[str] = field(default_factory=list)  # "<digest> in <key>": bad copies of kept objects
    markers_cleared: int = 0  # damage markers of copies that are gone

    def to_dict(self) -> dict:
        return {"remote": self.remote, "dry_run": self.dry_run, "removed": self.removed,
                "freed_bytes": self.freed_bytes, "repacked": self.repacked, "kept": self.kept,
                "skipped": self.skipped, "aborted_uploads": self.aborted_uploads,
                "damaged_removed": self.damaged_removed, "markers_cleared": self.markers_cleared}


@dataclass(slots=True)
class _Plan:
    loose: dict[bytes, int] = field(default_factory=dict)  # dead loose object -> its size
    drop: dict[str, int] = field(default_factory=dict)  # pack whose every entry is dead -> bytes freed
    rewrite: dict[str, dict[bytes, PackEntry]] = field(default_factory=dict)  # pack -> its live entries
    freed: dict[str, int] = field(default_factory=dict)  # rewritten pack -> bytes freed
    dead: dict[str, list[bytes]] = field(default_factory=dict)  # pack -> its dead entries
    leftovers: dict[str, int] = field(default_factory=dict)  # tmp/…, index-less packs, pack-less indexes
    bad_loose: dict[bytes, int] = field(default_factory=dict)  # bad loose copy of an object held elsewhere -> size
    kept: int = 0


def gc(ws: Workspace, remote: Remote, roots: references.Roots, *, named_by: Callable[[bytes], Iterable[Digest]],
       dry_run: bool = False, grace: int | None = None) -> RemoteGcReport:
    """Remove from ``remote`` what nothing references (see the module docstring for what is kept)."""
    grace = ws.config.grace if grace is None else grace
    report = RemoteGcReport(remote.name, dry_run)
    with ws.lock(exclusive=True):
        inv = remote.inventory()
        remote.check_format(inv)
        if not inv.formatted:  # no mlv store here: whatever is there is someone else's
            if inv.loose or inv.packs or inv.indexes or inv.tmp or inv.catalogs:
                raise RemoteError(f"{remote.where} holds files but no mlv store (no FORMAT file), so gc removes "
                                  "nothing there; check the URL")
            return report
        cutoff = time.time() - grace
        if remote.config.protocol in ("s3", "s3a"):
            with remote.guard("listing unfinished uploads"):
                report.aborted_uploads = multipart.abort_stale(remote.fs, remote.root, cutoff, dry_run=dry_run)
        if not (inv.loose or inv.packs or inv.indexes or inv.tmp or inv.damaged):
            return report
        packs = remote.pack_index(inv, strict=True)  # a damaged index is an error: what its pack holds is unknown
        damage = remote_damage.known(remote, inv, packs)
        live = _live(ws, remote, inv, packs, roots, named_by)
        # a file whose age the listing does not give counts as young, unless no grace was asked for
        plan = _plan(inv, packs, live, lambda item: item.mtime > cutoff or (not item.mtime and grace > 0),
                     remote_damage.superseded(inv, packs, damage))
        if not dry_run:
            _execute(ws, remote, inv, packs, plan, report, damage)
            remote_state.forget(remote.state_db, remote.config)
        done = [name for name in (*plan.drop, *plan.rewrite) if Remote.pack_key(name) not in report.skipped]
        report.damaged_removed += [f"{Digest.from_raw(raw)} in {Remote.pack_key(name)}" for name in done
                                   for raw in plan.dead[name] if raw in live]
        report.damaged_removed += [f"{Digest.from_raw(raw)} in {Remote.loose_key(Digest.from_raw(raw))}"
                                   for raw in plan.bad_loose]
        removed = set(plan.loose).union(*(plan.dead[name] for name in done)) - live
        report.removed = sorted(str(Digest.from_raw(raw)) for raw in removed)
        report.repacked = len(plan.rewrite) - len(report.skipped)
        report.freed_bytes = sum(plan.loose.values()) + sum(plan.drop.values()) + sum(plan.leftovers.values()) \
            + sum(plan.bad_loose.values()) \
            + sum(n for name, n in plan.freed.items() if Remote.pack_key(name) not in report.skipped)
        report.kept = plan.kept + sum(len(plan.dead[n]) for n in plan.rewrite if Remote.pack_key(n) in report.skipped)
    return report


def _live(ws: Workspace, remote: Remote, inv: Inventory, packs: dict[str, dict[bytes, PackEntry]],
          roots: references.Roots, named_by: Callable[[bytes], Iterable[Digest]]) -> set[bytes]:
    """What must stay: the roots' closure, the catalogs' run records and the objects they name (``named_by``)."""
    copies: dict[bytes, list[PackEntry]] = {}
    for name, entries in packs.items():
        if name in inv.packs:
            for raw, entry in entries.items():
                copies.setdefault(raw, []).append(entry)
    live = {d.raw for d in roots.where}
    for d, data in _manifests(ws, remote, inv, copies, roots).items():
        try:
            live.update(manifest.load(data).raw_digests)
        except StorageError as exc:
            if d in roots.current_dirs:
                raise _unknown(roots[d], d, remote, f"it is unreadable: {exc}") from exc
    runs = catalog(remote, inv)
    live.update(d.raw for d in runs.values())
    folder = ws.dot / RUNS
    # a record this clone holds (same bytes) had its log counted among the roots already
    elsewhere = {d.raw for run_id, d in runs.items() if not _same(folder / f"{run_id}.json", d)}
    for data in _read_objects(remote, inv, copies, elsewhere).values():
        live.update(d.raw for d in named_by(data))
    return live


def _same(path: Path, d: Digest) -> bool:
    return path.is_file() and digests.of_bytes(path.read_bytes()) == d


def _manifests(ws: Workspace, remote: Remote, inv: Inventory, copies: dict[bytes, list[PackEntry]],
               roots: references.Roots) -> dict[Digest, bytes]:
    """The bytes of every root that is a manifest: the local store's copy, else the remote's.

    A directory version the workspace names must be found, or nothing may be removed."""
    store = ws.store
    found: dict[Digest, bytes] = {}
    remote_packed: set[bytes] = set()
    remote_loose: list[Digest] = []
    for d in roots.where:
        required = d in roots.current_dirs
        try:
            if d in store:
                with store.open(d) as f:
                    head = f.read(4)
                if head == _ARROW_STREAM or required:
                    found[d] = store.read_bytes(d)
                continue
        except StorageError:
            pass  # damaged here: the remote's copy will do
        if d.raw in copies:
            remote_packed.add(d.raw)
        elif d.raw in inv.loose:
            remote_loose.append(d)
    got = _read_objects(remote, inv, copies, remote_packed)
    found.update((Digest.from_raw(raw), data) for raw, data in got.items() if data[:4] == _ARROW_STREAM
                 or Digest.from_raw(raw) in roots.current_dirs)

    def loose_manifest(d: Digest) -> Callable[[], tuple[Digest, bytes | None]]:
        def job() -> tuple[Digest, bytes | None]:
            key = Remote.loose_key(d)
            if remote.cat_ranges(key, [(0, 4)], jobs=1)[0] != _ARROW_STREAM and d not in roots.current_dirs:
                return d, None
            data = remote.cat_file(key)
            return d, data if digests.of_bytes(data) == d else None
        return job

    results = run_all(remote, [loose_manifest(d) for d in remote_loose],
                       collect=True)
    found.update((d, data) for d, data in results if data is not None)
    if unfound := sorted(roots.current_dirs - set(found), key=str):
        raise _unknown(roots[unfound[0]], unfound[0], remote, "neither the local store nor the remote has a sound copy")
    return found


def _unknown(where: str, d: Digest, remote: Remote, why: str) -> StorageError:
    return StorageError(
        f"'{where}' names the directory version {d}, whose manifest cannot be read ({why}); which objects it "
        f"needs is unknown, so nothing was removed from remote '{remote.name}'. Re-add the data or `mlv pull` "
        f"it, then push (`mlv fsck --remote {remote.name}` lists damage), and run gc again"
    )


def _read_objects(remote: Remote, inv: Inventory, copies: dict[bytes, list[PackEntry]],
                  raws: set[bytes]) -> dict[bytes, bytes]:
    """Verified bytes of some objects: packed ones by byte ranges (neighbours in one read), then any
    that did not verify from their other copies; loose ones whole."""
    found: dict[bytes, bytes] = {}
    places: dict[bytes, list[PackEntry | None]] = {  # None: the loose copy
        raw: ([None] if raw in inv.loose else []) + copies.get(raw, []) for raw in raws
    }
    for attempt in range(max(map(len, places.values()), default=0)):
        todo = {raw: where[attempt] for raw, where in places.items() if raw not in found and attempt < len(where)}
        by_pack: dict[str, list[tuple[bytes, PackEntry]]] = {}
        jobs: list[Callable] = []
        for raw, entry in todo.items():
            if entry is None:
                jobs.append(lambda raw=raw: [(raw, remote.cat_file(Remote.loose_key(Digest.from_raw(raw))))])
            else:
                by_pack.setdefault(entry.pack, []).append((raw, entry))
        jobs += [read_ranges(remote, name, wanted) for name, wanted in by_pack.items()]
        for results in run_all(remote, jobs, collect=True):
            found.update((raw, data) for raw, data in results if digests.of_bytes(data).raw == raw)
    return found


def _plan(inv: Inventory, packs: dict[str, dict[bytes, PackEntry]], live: set[bytes],
          young: Callable[[Item], bool], superseded: set[remote_damage.Copy] = frozenset()) -> _Plan:
    """What to remove and rewrite; a pack is judged whole by its entries (and its age). A copy in
    ``superseded`` (bad, its object held elsewhere) goes whatever its age."""
    plan = _Plan()
    for raw, item in inv.loose.items():
        if (raw, remote_damage.LOOSE) in superseded:
            plan.bad_loose[raw] = item.size
        elif raw in live or young(item):
            plan.kept += 1
        else:
            plan.loose[raw] = item.size
    for name, entries in sorted(packs.items()):
        idx = inv.indexes[name]
        if name not in inv.packs:  # its bytes are gone: the index names nothing that can be read
            if not young(idx):
                plan.leftovers[Remote.pack_key(name, ".idx")] = idx.size
            continue
        pack = inv.packs[name]
        fresh = young(pack) or young(idx)
        dead = [raw for raw in entries if (raw, name) in superseded or (raw not in live and not fresh)]
        if not dead:
            plan.kept += len(entries)
            continue
        plan.dead[name] = dead
        gone = set(dead)
        keep = {raw: e for raw, e in entries.items() if raw not in gone}
        if keep:  # the new pack and index cost what the live entries and their records weigh
            plan.rewrite[name] = keep
            new = sum(e.length for e in keep.values()) + _IDX_BYTES[0] + _IDX_BYTES[1] * len(keep)
            plan.freed[name] = pack.size + idx.size - new
            plan.kept += len(keep)
        else:
            plan.drop[name] = pack.size + idx.size
    for name, item in inv.packs.items():
        if name not in inv.indexes and not young(item):  # an interrupted push's pack: never visible
            plan.leftovers[Remote.pack_key(name)] = item.size
    for key, item in inv.tmp.items():
        if not young(item):
            plan.leftovers[key] = item.size
    return plan


def _execute(ws: Workspace, remote: Remote, inv: Inventory, packs: dict[str, dict[bytes, PackEntry]], plan: _Plan,
             report: RemoteGcReport, damage: remote_damage.Damage) -> None:
    """Rewrite mixed packs first (live entries safe in new packs), then remove: indexes before their packs;
    then the damage markers of copies that are gone."""
    built: list[_Built] = []
    temps: list[str] = []
    found: dict[remote_damage.Copy, str] = {}  # bad copies met while rewriting
    held = remote_damage.copies(inv, packs)
    bad = damage.bad

    def done(result: _Built | tuple[str, str, dict[bytes, str]]) -> None:
        if isinstance(result, _Built):
            found.update(((raw, result.old), why) for raw, why in result.bad.items())
            plan.dead[result.old] += list(result.bad)  # left out: their objects are held elsewhere
            plan.kept -= len(result.bad)
            if result.new is not None:
                built.append(result)
        else:
            name, why, wrong = result
            report.skipped[Remote.pack_key(name)] = why
            found.update(((raw, name), what) for raw, what in wrong.items())

    def elsewhere(name: str) -> set[bytes]:
        """The objects of ``name`` with a copy not known bad outside it."""
        return {raw for raw in packs[name]
                if any(w != name and (raw, w) not in bad for w in held.get(raw, ()))}

    if plan.rewrite:
        ws.store.create()  # a clone's store may not exist yet: the new packs are built in its tmp/
    try:
        jobs = [_repack(ws.store, remote, name, entries, temps, elsewhere(name))
                for name, entries in sorted(plan.rewrite.items())]
        run_all(remote, jobs, handlers=[done] * len(jobs))
        # Two rewrites can come out byte for byte alike (empty objects add no bytes), or like a pack
        # already there: one upload per name, with one index naming every live entry of them all.
        produced: dict[str, _Built] = {}
        for b in built:
            if b.new in produced:
                produced[b.new].entries.update(b.entries)
            else:
                produced[b.new] = b
                if b.new in packs and b.new not in plan.rewrite and b.new not in plan.drop:
                    b.entries.update({raw: (e.offset, e.length) for raw, e in packs[b.new].items()})
        uploads = [_upload(remote, inv, b) for b in produced.values()]
        run_all(remote, uploads)
        remote.forget_cached([Remote.pack_key(new, ".idx") for new in produced])  # some were rewritten in place
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
    # a pack whose name a rewrite produced is live, whatever the plan said of it
    gone = [n for n in (*plan.drop, *plan.rewrite) if Remote.pack_key(n) not in report.skipped and n not in produced]
    leftovers = [k for k in plan.leftovers if k.removeprefix("packs/").rsplit(".", 1)[0] not in produced]
    remote.remove([Remote.pack_key(n, ".idx") for n in gone] + [k for k in leftovers if k.endswith(".idx")])
    remote.remove([Remote.pack_key(n) for n in gone] + [k for k in leftovers if not k.endswith(".idx")])
    remote.remove([Remote.loose_key(Digest.from_raw(raw)) for raw in (*plan.loose, *plan.bad_loose)])
    remote_damage.record(remote, damage, {c: why for c, why in found.items() if c[1] not in gone}, by="gc --remote")
    listed = {(raw, w) for raw, where in held.items() for w in where}
    obsolete = {(raw, n) for n in gone for raw in packs[n]} | {(raw, remote_damage.LOOSE) for raw in
                                                               (*plan.loose, *plan.bad_loose)}
    before = len(damage.marked)
    remote_damage.clear(remote, damage, obsolete | (damage.marked - listed))  # and markers of copies long gone
    report.markers_cleared = before - len(damage.marked)


@dataclass(slots=True)
class _Built:
    """A new pack in a local temp file: the live entries of an old one (``new`` None: none was sound)."""

    old: str
    new: str | None
    tmp: str
    size: int
    entries: dict[bytes, tuple[int, int]]
    bad: dict[bytes, str]  # entries left out: their bytes were wrong, and their objects are held elsewhere


def _repack(store: ObjectStore, remote: Remote, name: str, entries: dict[bytes, PackEntry], temps: list[str],
            elsewhere: set[bytes]) -> Callable[[], _Built | tuple[str, str, dict[bytes, str]]]:
    """A job: the pack's live entries downloaded, verified and packed anew into a temp file (listed in
    ``temps``, for the caller to remove). A damaged entry whose object is held ``elsewhere`` is left
    out; any other damaged entry gives ``(name, why, damaged entries)``: then the old pack stays as it
    is (``mlv fsck --remote`` reports it)."""

    def job() -> _Built | tuple[str, str, dict[bytes, str]]:
        got = read_ranges(remote, name, list(entries.items()))()
        wrong = {raw: f"bytes hash to {actual}" for raw, data in got if (actual := digests.of_bytes(data)).raw != raw}
        if stuck := sorted(set(wrong) - elsewhere):
            return name, (f"live object {Digest.from_raw(stuck[0])} is damaged in it (its {wrong[stuck[0]]}) and "
                          "has no sound copy elsewhere; the pack was left as it is"), wrong
        sound = [(raw, data) for raw, data in got if raw not in wrong]
        if not sound:
            return _Built(name, None, "", 0, {}, wrong)
        tmp = store._tmp() + ".pack"
        temps.append(tmp)
        new, new_entries = build_pack(tmp, sound)
        return _Built(name, new, tmp, sum(n for _, n in new_entries.values()), new_entries, wrong)
    return job


def _upload(remote: Remote, inv: Inventory, built: _Built) -> Callable[[], None]:
    """A job: the new pack (unless the same bytes are there), then its index."""

    def job() -> None:
        if (item := inv.packs.get(built.new)) is None or item.size != built.size:
            remote.put_file(built.tmp, Remote.pack_key(built.new))
        remote.put_bytes(Remote.pack_key(built.new, ".idx"), encode_index(built.entries))
    return job
