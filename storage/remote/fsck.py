"""``mlv fsck --remote``: verify every byte on a remote.

From one listing fsck downloads every loose object and every visible pack (``remote.jobs``
at a time, into the local store's ``tmp/``, always removed) and re-hashes them; pack indexes
and run-record catalogs are read fresh, never from the local cache. Then it checks that what
the workspace references is there, directories with every member. What verified is saved
as the remote's ``remote_state``, so the next push does not take it for granted that the
rest is there.

The one thing it writes is what it learned about damage (``remote_damage``): a marker for
each bad copy, so that every clone's push sends good bytes again and every fetch tries that
copy last; and a marker its check disproves (the copy verifies now) is removed. Both are
best effort: with a read-only credential the finding stays in this clone. A bad copy of an
object that also has a sound copy breaks nothing: it is reported as ``superseded``, not as a
problem (``mlv gc --remote`` removes it).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

from mlv.storage.store import digest as digests
from mlv.storage.store import manifest
from mlv.storage.workspace import references
from mlv.storage.remote import damage as remote_damage, state as remote_state
from mlv.storage.store.digest import Digest
from mlv.storage.errors import StorageError
from mlv.storage.workspace.fsck import FsckReport, Problem
from mlv.storage.store.objects import ObjectStore
from mlv.storage.store.packs import PackEntry, decode_index
from mlv.storage.remote.state import Seen
from mlv.storage.remote.remotes import Inventory, Remote
from mlv.storage.workspace.snapshot import ProgressFactory
from mlv.storage.remote.transfer import RUNS, Bar, catalog_lines, run_all
from mlv.storage.workspace import Workspace

_ARROW_STREAM = b"\xff\xff\xff\xff"  # how a manifest (an Arrow IPC stream) begins, as ``references.closure`` checks
_IDX_BYTES = 16, 32  # index header, and bytes per entry (see ``packs``)


# -- fsck ----------------------------------------------------------------------------------
@dataclass(slots=True)
class _Checked:
    """What one downloaded file showed."""

    objects: int = 0
    bytes: int = 0
    good: list[remote_damage.Copy] = field(default_factory=list)  # copies that hash to their digest
    problems: list[Problem] = field(default_factory=list)
    wanted: dict[bytes, bytes] = field(default_factory=dict)  # verified bytes of manifests asked for
    bad: dict[remote_damage.Copy, str] = field(default_factory=dict)  # copies that do not -> what is wrong


@dataclass(slots=True)
class RemoteFsckReport(FsckReport):
    """``FsckReport`` plus the damage that breaks nothing, and what could not be written."""

    superseded: list[Problem] = field(default_factory=list)  # bad copies of objects with a sound copy too
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**FsckReport.to_dict(self), "superseded": [p.to_dict() for p in self.superseded],
                "notes": self.notes}


def fsck(ws: Workspace, remote: Remote, roots: references.Roots, *,
         progress: ProgressFactory | None = None) -> RemoteFsckReport:
    """Re-hash everything on ``remote`` and check that what the workspace references is there."""
    report = RemoteFsckReport()
    report.notes = remote.notes
    store = ws.store
    with ws.lock():
        inv = remote.inventory()
        remote.check_format(inv)
        local = {d: data for d in roots.current_dirs if (data := _local_bytes(store, d)) is not None}
        want = {d.raw for d in roots.current_dirs if d not in local}
        packs, problems = _indexes(remote, inv)
        visible = {name: entries for name, entries in packs.items() if name in inv.packs}
        for name in sorted(set(packs) - set(visible)):
            problems += [Problem(str(Digest.from_raw(raw)), "missing", Remote.pack_key(name),
                                 "its pack's bytes are gone; only the index is left") for raw in packs[name]]
        store.create()
        total = sum(i.size for i in inv.loose.values()) + sum(inv.packs[n].size for n in visible)
        checked: list[_Checked] = []
        with progress(total, f"checking remote '{remote.name}'") if progress else nullcontext() as tick:
            jobs = [_check_loose(remote, store, raw, want, tick) for raw in sorted(inv.loose)]
            jobs += [_check_pack(remote, store, name, entries, want, tick) for name, entries in sorted(visible.items())]
            run_all(remote, jobs, handlers=[checked.append] * len(jobs))
        present = set(inv.loose).union(*visible.values())
        good: set[remote_damage.Copy] = set()
        bad: dict[remote_damage.Copy, str] = {}
        fetched: dict[bytes, bytes] = {}
        for c in checked:
            report.objects += c.objects
            report.bytes += c.bytes
            good.update(c.good)
            bad.update(c.bad)
            problems += c.problems
            fetched.update(c.wanted)
        verified = {raw for raw, _ in good}  # a sound copy is there
        damage = remote_damage.known(remote, inv, packs)
        remote_damage.clear(remote, damage, good)  # a marker this check disproves goes
        remote_damage.record(remote, damage, bad, by="fsck --remote")
        unmarked = {raw for raw, _ in damage.local}
        for p in (p for p in problems if p.kind == "corrupt"):
            if _raw(p.digest) in verified:
                p.detail += f"; a sound copy is there too: `mlv gc --remote {remote.name}` removes this one"
                report.superseded.append(p)
            elif _raw(p.digest) in unmarked:
                p.detail += " (known to this clone only: the remote refused the damage marker)"
        harmless = {id(p) for p in report.superseded}
        problems = [p for p in problems if id(p) not in harmless]
        runs = _check_catalogs(remote, inv, present, verified, problems)
        manifests = _check_references(roots, local, fetched, present, verified, problems)
        report.problems = sorted(problems, key=lambda p: (p.kind, p.digest, p.where))
        complete = remote_state.complete_manifests(manifests, verified)
        remote_state.save(remote.state_db, remote.config, Seen(verified, complete, runs, damaged=damage.local))
    return report


def _raw(digest: str) -> bytes | None:
    """The raw bytes of a problem's ``xxh3-128:<hex>`` digest (None for a pack's or catalog's name)."""
    algorithm, _, hexdigest = digest.partition(":")
    return bytes.fromhex(hexdigest) if algorithm and hexdigest else None


def _local_bytes(store: ObjectStore, d: Digest) -> bytes | None:
    """The local store's sound copy of ``d``, if it has one."""
    try:
        return store.read_bytes(d) if d in store else None
    except StorageError:
        return None


def _indexes(remote: Remote, inv: Inventory) -> tuple[dict[str, dict[bytes, PackEntry]], list[Problem]]:
    """Every pack index, read fresh; one that does not decode is a problem, not an error."""
    keys = {name: (Remote.pack_key(name, ".idx"), item.size) for name, item in inv.indexes.items()}
    packs, problems = {}, []
    for name, data in sorted(remote.read_small(keys, cached=False).items()):
        try:
            packs[name] = decode_index(data, name)
        except StorageError as exc:
            problems.append(Problem(name, "unreadable", keys[name][0], str(exc)))
    return packs, problems


def _check_loose(remote: Remote, store: ObjectStore, raw: bytes, want: set[bytes], tick) -> Callable[[], _Checked]:
    def job() -> _Checked:
        key = Remote.loose_key(Digest.from_raw(raw))
        with _download(remote, store, key, tick) as path:
            with open(path, "rb") as f:
                actual, size = digests.of_stream(f)
            c = _Checked(objects=1, bytes=size)
            if actual.raw != raw:
                c.problems.append(_corrupt(raw, key, f"bytes hash to {actual}"))
                c.bad[(raw, remote_damage.LOOSE)] = f"bytes hash to {actual}"
            else:
                c.good.append((raw, remote_damage.LOOSE))
                if raw in want:
                    with open(path, "rb") as f:
                        c.wanted[raw] = f.read()
        return c
    return job


def _check_pack(remote: Remote, store: ObjectStore, name: str, entries: dict[bytes, PackEntry], want: set[bytes],
                tick) -> Callable[[], _Checked]:
    def job() -> _Checked:
        key = Remote.pack_key(name)
        c = _Checked(objects=len(entries), bytes=sum(e.length for e in entries.values()))
        with _download(remote, store, key, tick) as path, open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else nullcontext(b"") as data:
                view = memoryview(data)
                try:
                    for raw, e in sorted(entries.items(), key=lambda kv: kv[1].offset):
                        where = f"{key}@{e.offset}"
                        if e.offset + e.length > size:
                            c.problems.append(_corrupt(raw, where, "truncated: the pack ends before it does"))
                            c.bad[(raw, name)] = "truncated: the pack ends before it does"
                        elif (actual := digests.of_bytes(view[e.offset : e.offset + e.length])).raw != raw:
                            c.problems.append(_corrupt(raw, where, f"bytes hash to {actual}"))
                            c.bad[(raw, name)] = f"bytes hash to {actual}"
                        else:
                            c.good.append((raw, name))
                            if raw in want:
                                c.wanted[raw] = bytes(view[e.offset : e.offset + e.length])
                    whole = digests.of_bytes(view).hexdigest
                finally:
                    view.release()
        if whole != name and not c.problems:
            c.problems.append(Problem(name, "corrupt", key, f"the pack's bytes hash to {whole}, not to its name "
                                                             "(its indexed objects are sound)"))
        return c
    return job


class _download:
    """A remote file in a temp file of the local store, removed on exit (bytes counted for the progress bar)."""

    def __init__(self, remote: Remote, store: ObjectStore, key: str, tick: Callable[[int], None] | None) -> None:
        self.remote, self.key, self.tick = remote, key, tick
        self.path = store._tmp()

    def __enter__(self) -> str:
        bar = Bar((lambda n, _: self.tick(n)) if self.tick else None)
        self.remote.get_file(self.key, self.path, callback=bar)
        bar.finish(os.path.getsize(self.path), 0)
        return self.path

    def __exit__(self, *exc: object) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)


def _corrupt(raw: bytes, where: str, detail: str) -> Problem:
    return Problem(str(Digest.from_raw(raw)), "corrupt", where, detail)


def _check_catalogs(remote: Remote, inv: Inventory, present: set[bytes], verified: set[bytes],
                    problems: list[Problem]) -> set[str]:
    """Each catalog must hash to its name, parse, and name records that are there; returns the
    run ids whose records verified."""
    keys = {name: (f"{RUNS}/{name}.list", item.size) for name, item in inv.catalogs.items()}
    runs: set[str] = set()
    for name, data in sorted(remote.read_small(keys, cached=False).items()):
        key = keys[name][0]
        if (actual := digests.of_bytes(data)).hexdigest != name:
            problems.append(Problem(name, "corrupt", key, f"bytes hash to {actual}"))
        for number, line, entry in catalog_lines(data):
            if entry is None:
                problems.append(Problem(name, "unreadable", f"{key}:{number}", f"malformed line {line[:80]!r}"))
                continue
            run_id, d = entry
            if d.raw not in present:
                problems.append(Problem(str(d), "missing", key, f"run record {run_id}", [f"run record {run_id}"]))
            elif d.raw in verified:
                runs.add(run_id)
    return runs


def _check_references(roots: references.Roots, local: dict[Digest, bytes], fetched: dict[bytes, bytes],
                      present: set[bytes], verified: set[bytes], problems: list[Problem]) -> dict[Digest, list[bytes]]:
    """Every root must be on the remote, and every directory version's manifest readable with all
    its members there; damage found already gets the pointers it breaks, unless a sound copy is
    there too (a stale index naming another copy breaks nothing). Returns the manifests read."""
    by_digest: dict[str, list[Problem]] = {}
    for p in problems:
        by_digest.setdefault(p.digest, []).append(p)

    def need(raw: bytes, where: str, detail: str) -> None:
        d = str(Digest.from_raw(raw))
        if raw not in present and d not in by_digest:
            by_digest[d] = [Problem(d, "missing", where, detail)]
            problems.append(by_digest[d][0])
        for p in by_digest.get(d, ()) if raw not in verified else ():
            if where not in p.breaks:
                p.breaks.append(where)

    manifests: dict[Digest, list[bytes]] = {}
    for d, where in sorted(roots.items(), key=lambda kv: str(kv[0])):
        need(d.raw, where, "not on the remote; `mlv push` sends it")
        data = local.get(d, fetched.get(d.raw))
        if d not in roots.current_dirs or data is None:
            continue  # no sound copy anywhere: reported above
        try:
            manifests[d] = members = manifest.load(data).raw_digests
        except StorageError as exc:
            problems.append(Problem(str(d), "unreadable", where, f"not a readable manifest: {exc}", [where]))
            continue
        for raw in members:
            need(raw, where, "member of a directory manifest; not on the remote: `mlv push` sends it")
    return manifests


