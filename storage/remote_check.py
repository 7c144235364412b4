"""``mlv fsck --remote`` and ``mlv gc --remote``: verify a remote's bytes; remove what nothing references.

fsck only reads the remote. From one listing it downloads every loose object and every
visible pack (``remote.jobs`` at a time, into the local store's ``tmp/``, always removed)
and re-hashes them; pack indexes and run-record catalogs are read fresh, never from the
local cache. Then it checks that what the workspace references is there, directories
with every member. What verified (never a damaged copy) is saved as the remote's
``remote_state``, so the next push does not take it for granted that the rest is there.

gc keeps the closure of the workspace's references (manifests expanded from the local
store, else from the remote), every run record a catalog names and the logs those records
name, and anything younger than the grace period (by the listing's mtimes). A pack with
some dead entries is rewritten: its live entries are downloaded, verified, packed anew
and uploaded (pack, then index) before the old index, then the old pack, are deleted, so
an interruption leaves duplicates at worst, never a lost object. A directory version the
workspace names whose manifest cannot be read aborts gc before anything is removed.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from fsspec.callbacks import Callback
from mlv.storage import digest as digests
from mlv.storage import manifest, multipart, references, remote_state
from mlv.storage.digest import Digest
from mlv.storage.errors import ConfigError, StorageError
from mlv.storage.fsck import FsckReport, Problem
from mlv.storage.objects import ObjectStore
from mlv.storage.packs import PackEntry, decode_index, encode_index
from mlv.storage.remote_state import Seen
from mlv.storage.remotes import Inventory, Item, Remote
from mlv.storage.snapshot import ProgressFactory
from mlv.storage.transfer import RANGE_GAP, RANGE_MAX, RUN_ID, RUNS, _run_all, catalog
from mlv.storage.workspace import Workspace

_ARROW_STREAM = b"\xff\xff\xff\xff"  # how a manifest (an Arrow IPC stream) begins, as ``references.closure`` checks
_IDX_BYTES = 16, 32  # index header, and bytes per entry (see ``packs``)


# -- fsck ----------------------------------------------------------------------------------
@dataclass(slots=True)
class _Checked:
    """What one downloaded file showed."""

    objects: int = 0
    bytes: int = 0
    good: list[bytes] = field(default_factory=list)  # copies that hash to their digest
    problems: list[Problem] = field(default_factory=list)
    wanted: dict[bytes, bytes] = field(default_factory=dict)  # verified bytes of manifests asked for


def fsck(ws: Workspace, remote: Remote, *, progress: ProgressFactory | None = None) -> FsckReport:
    """Re-hash everything on ``remote`` and check that what the workspace references is there."""
    report = FsckReport()
    store = ws.store
    with ws.lock():
        inv = remote.inventory()
        remote.check_format(inv)
        roots = references.roots(ws)
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
            _run_all(remote, jobs, handlers=[checked.append] * len(jobs))
        present = set(inv.loose).union(*visible.values())
        good: set[bytes] = set()
        fetched: dict[bytes, bytes] = {}
        for c in checked:
            report.objects += c.objects
            report.bytes += c.bytes
            good.update(c.good)
            problems += c.problems
            fetched.update(c.wanted)
        damaged = {p.digest for p in problems if p.kind == "corrupt"}
        verified = {raw for raw in good if str(Digest.from_raw(raw)) not in damaged}
        runs = _check_catalogs(remote, inv, present, verified, problems)
        manifests = _check_references(roots, local, fetched, present, verified, problems)
        report.problems = sorted(problems, key=lambda p: (p.kind, p.digest, p.where))
        complete = remote_state.complete_manifests(manifests, verified)
        bad = {raw for raw in present - good if str(Digest.from_raw(raw)) in damaged}  # no sound copy anywhere
        remote_state.save(remote.state_db, remote.config, Seen(verified, complete, runs, damaged=bad))
    return report


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
            else:
                c.good.append(raw)
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
                        elif (actual := digests.of_bytes(view[e.offset : e.offset + e.length])).raw != raw:
                            c.problems.append(_corrupt(raw, where, f"bytes hash to {actual}"))
                        else:
                            c.good.append(raw)
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
        bar = _Bytes(self.tick)
        self.remote.get_file(self.key, self.path, callback=bar)
        if self.tick:
            self.tick(max(0, os.path.getsize(self.path) - bar.seen))
        return self.path

    def __exit__(self, *exc: object) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)


class _Bytes(Callback):
    def __init__(self, tick: Callable[[int], None] | None) -> None:
        super().__init__()
        self.tick = tick
        self.seen = 0

    def relative_update(self, inc: int = 1) -> None:
        self.seen += inc
        if self.tick:
            self.tick(inc)


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
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            run_id, _, text = line.partition(" ")
            try:
                d = digests.parse(text)
            except ConfigError:
                d = None
            if d is None or not RUN_ID.match(run_id):
                problems.append(Problem(name, "unreadable", f"{key}:{number}", f"malformed line {line[:80]!r}"))
            elif d.raw not in present:
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

    def to_dict(self) -> dict:
        return {"remote": self.remote, "dry_run": self.dry_run, "removed": self.removed,
                "freed_bytes": self.freed_bytes, "repacked": self.repacked, "kept": self.kept,
                "skipped": self.skipped, "aborted_uploads": self.aborted_uploads}


@dataclass(slots=True)
class _Plan:
    loose: dict[bytes, int] = field(default_factory=dict)  # dead loose object -> its size
    drop: dict[str, int] = field(default_factory=dict)  # pack whose every entry is dead -> bytes freed
    rewrite: dict[str, dict[bytes, PackEntry]] = field(default_factory=dict)  # pack -> its live entries
    freed: dict[str, int] = field(default_factory=dict)  # rewritten pack -> bytes freed
    dead: dict[str, list[bytes]] = field(default_factory=dict)  # pack -> its dead entries
    leftovers: dict[str, int] = field(default_factory=dict)  # tmp/…, index-less packs, pack-less indexes
    kept: int = 0


def gc(ws: Workspace, remote: Remote, *, all_commits: bool = False, dry_run: bool = False,
       grace: int | None = None) -> RemoteGcReport:
    """Remove from ``remote`` what nothing references (see the module docstring for what is kept)."""
    grace = ws.config.grace if grace is None else grace
    report = RemoteGcReport(remote.name, dry_run)
    with ws.lock(exclusive=True):
        inv = remote.inventory()
        remote.check_format(inv)
        cutoff = time.time() - grace
        if remote.config.protocol in ("s3", "s3a"):
            with remote.guard("listing unfinished uploads"):
                report.aborted_uploads = multipart.abort_stale(remote.fs, remote.root, cutoff, dry_run=dry_run)
        if not (inv.loose or inv.packs or inv.indexes or inv.tmp):
            return report
        packs = remote.pack_index(inv)  # a damaged index is an error: what its pack holds is unknown
        live = _live(ws, remote, inv, packs, all_commits)
        # a file whose age the listing does not give counts as young, unless no grace was asked for
        plan = _plan(inv, packs, live, lambda item: item.mtime > cutoff or (not item.mtime and grace > 0))
        if not dry_run:
            _execute(ws, remote, inv, packs, plan, report)
            remote_state.forget(remote.state_db, remote.config)
        removed = set(plan.loose).union(*(plan.dead[name] for name in (*plan.drop, *plan.rewrite)
                                          if Remote.pack_key(name) not in report.skipped))
        report.removed = sorted(str(Digest.from_raw(raw)) for raw in removed)
        report.repacked = len(plan.rewrite) - len(report.skipped)
        report.freed_bytes = sum(plan.loose.values()) + sum(plan.drop.values()) + sum(plan.leftovers.values()) \
            + sum(n for name, n in plan.freed.items() if Remote.pack_key(name) not in report.skipped)
        report.kept = plan.kept + sum(len(plan.dead[n]) for n in plan.rewrite if Remote.pack_key(n) in report.skipped)
    return report


def _live(ws: Workspace, remote: Remote, inv: Inventory, packs: dict[str, dict[bytes, PackEntry]],
          all_commits: bool) -> set[bytes]:
    """What must stay: the references' closure, the catalogs' run records and the logs they name."""
    roots = references.roots(ws, all_commits=all_commits)
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
        if m := references._LOG_RE.search(data):
            live.add(bytes.fromhex(m.group(1).decode()))
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

    results = _run_all(remote, [loose_manifest(d) for d in remote_loose],
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
        jobs += [_ranges(remote, name, wanted) for name, wanted in by_pack.items()]
        for results in _run_all(remote, jobs, collect=True):
            found.update((raw, data) for raw, data in results if digests.of_bytes(data).raw == raw)
    return found


def _spans(entries: list[tuple[bytes, PackEntry]]) -> list[list[tuple[bytes, PackEntry]]]:
    """Entries grouped into reads: neighbours less than ``RANGE_GAP`` apart share one."""
    spans: list[list[tuple[bytes, PackEntry]]] = []
    for raw, e in sorted(entries, key=lambda kv: kv[1].offset):
        last = spans[-1] if spans else None
        if last and e.offset - (last[-1][1].offset + last[-1][1].length) <= RANGE_GAP \
                and e.offset + e.length - last[0][1].offset <= RANGE_MAX:
            last.append((raw, e))
        else:
            spans.append([(raw, e)])
    return spans


def _ranges(remote: Remote, name: str, entries: list[tuple[bytes, PackEntry]]) -> Callable[[], list]:
    def job() -> list[tuple[bytes, bytes]]:
        spans = _spans(entries)
        starts = [s[0][1].offset for s in spans]
        blobs = remote.cat_ranges(Remote.pack_key(name), [(s[0][1].offset, s[-1][1].offset + s[-1][1].length)
                                                          for s in spans], jobs=remote.jobs)
        return [(raw, blob[e.offset - start : e.offset - start + e.length])
                for span, start, blob in zip(spans, starts, blobs) for raw, e in span]
    return job


def _plan(inv: Inventory, packs: dict[str, dict[bytes, PackEntry]], live: set[bytes],
          young: Callable[[Item], bool]) -> _Plan:
    """What to remove and rewrite; a pack is judged whole by its entries (and its age)."""
    plan = _Plan()
    for raw, item in inv.loose.items():
        if raw in live or young(item):
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
        dead = [raw for raw in entries if raw not in live]
        if not dead or young(pack) or young(idx):
            plan.kept += len(entries)
            continue
        plan.dead[name] = dead
        keep = {raw: e for raw, e in entries.items() if raw in live}
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
             report: RemoteGcReport) -> None:
    """Rewrite mixed packs first (live entries safe in new packs), then remove: indexes before their packs."""
    built: list[_Built] = []
    temps: list[str] = []

    def done(result: _Built | tuple[str, str]) -> None:
        if isinstance(result, _Built):
            built.append(result)
        else:
            report.skipped[Remote.pack_key(result[0])] = result[1]

    if plan.rewrite:
        ws.store.create()  # a clone's store may not exist yet: the new packs are built in its tmp/
    try:
        jobs = [_repack(ws.store, remote, name, entries, temps) for name, entries in sorted(plan.rewrite.items())]
        _run_all(remote, jobs, handlers=[done] * len(jobs))
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
        _run_all(remote, uploads)
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
    remote.remove([Remote.loose_key(Digest.from_raw(raw)) for raw in plan.loose])


@dataclass(slots=True)
class _Built:
    """A new pack in a local temp file: the live entries of an old one."""

    old: str
    new: str
    tmp: str
    size: int
    entries: dict[bytes, tuple[int, int]]


def _repack(store: ObjectStore, remote: Remote, name: str, entries: dict[bytes, PackEntry],
            temps: list[str]) -> Callable[[], _Built | tuple[str, str]]:
    """A job: the pack's live entries downloaded, verified and packed anew into a temp file (listed in
    ``temps``, for the caller to remove); or ``(name, why)`` when one is damaged there: then the old
    pack stays as it is (``mlv fsck --remote`` reports it)."""

    def job() -> _Built | tuple[str, str]:
        got = _ranges(remote, name, list(entries.items()))()
        tmp = store._tmp() + ".pack"
        temps.append(tmp)
        h = digests.hasher()
        new_entries: dict[bytes, tuple[int, int]] = {}
        offset = 0
        with open(tmp, "wb") as f:
            for raw, data in got:
                if (actual := digests.of_bytes(data)).raw != raw:
                    return name, (f"live object {Digest.from_raw(raw)} is damaged in it (its bytes hash to "
                                  f"{actual}); the pack was left as it is")
                f.write(data)
                h.update(data)
                new_entries[raw] = (offset, len(data))
                offset += len(data)
        return _Built(name, h.hexdigest(), tmp, offset, new_entries)
    return job


def _upload(remote: Remote, inv: Inventory, built: _Built) -> Callable[[], None]:
    """A job: the new pack (unless the same bytes are there), then its index."""

    def job() -> None:
        if (item := inv.packs.get(built.new)) is None or item.size != built.size:
            remote.put_file(built.tmp, Remote.pack_key(built.new))
        remote.put_bytes(Remote.pack_key(built.new, ".idx"), encode_index(built.entries))
    return job
