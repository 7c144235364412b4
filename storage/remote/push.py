"""``mlv push``: send a remote the objects and run records it lacks.

Small objects travel in packs: a local pack whose every object the remote lacks is
uploaded as it is (re-hashed first: local damage must not spread); the others are packed
anew, sorted by digest, so a push re-run after an interruption builds the same packs and
finds them already there. Big objects go up loose (multipart on S3).

Order keeps the remote consistent at every instant: file objects, then manifests (a
directory is visible only once its members are), each pack's index after its bytes, and
last the run-record catalog after the records' own pack. An upload refused because its
local bytes are damaged stops the phases after it, so nothing names what is not there.

Damage on the remote is repaired from here (``remote_damage``): an object whose every copy
there is known bad counts as absent and goes up again. A loose one replaces its bad copy
under the same key; a pack that is known bad is uploaded again even though its name and size
are there. The markers of the copies replaced are then removed.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field

from mlv.storage.store import digest as digests
from mlv.storage.workspace import references
from mlv.storage.remote import damage as remote_damage
from mlv.storage.store.digest import Digest
from mlv.storage.errors import MlvError, ObjectCorrupt, StorageError
from mlv.storage.store.objects import ObjectStore
from mlv.storage.store.writer import PACK_SIZE
from mlv.storage.store.packs import decode_index, encode_index
from mlv.storage.workspace.references import Roots
from mlv.storage.remote.state import TransferReport
from mlv.storage.remote.remotes import PART_SIZE, Inventory, Remote
from mlv.storage.remote.transfer import (
    RUNS,
    Bar,
    RecordCheck,
    Tick,
    TransferProgress,
    build_pack,
    catalog,
    catalog_line,
    remember,
    run_all,
)
from mlv.storage.workspace import Workspace


@dataclass(slots=True)
class _Upload:
    """One remote file to write, from a local file or from bytes; ``then`` is written after it."""

    key: str
    size: int
    objects: int = 0
    local: str | None = None
    data: bytes | None = None
    check: str | None = None  # the local file must hash to this hex digest (else it is damaged)
    then: list[_Upload] = field(default_factory=list)
    raws: frozenset[bytes] = frozenset()  # the objects it puts on the remote
    rejected: str | None = None  # why it was not sent (set by the job)
    done: bool = False  # written (set by the job)


def push(ws: Workspace, remote: Remote, roots: Roots, *, dry_run: bool = False,
         progress: TransferProgress | None = None, check_record: RecordCheck | None = None,
         records: bool = True) -> TransferReport:
    """Send the remote what ``roots`` (closed over manifests) and the local run records need and it lacks;
    a record that fails ``check_record`` (damaged here) is reported, not sent. ``records=False``: objects only."""
    store = ws.store
    report = TransferReport(remote.name, "push", dry_run)
    report.notes = remote.notes  # filled as the remote is read
    with ws.lock():
        manifests: dict[Digest, list[bytes]] = {}
        live = references.closure(store, roots, manifests=manifests)
        inv = remote.inventory()
        remote.check_format(inv)
        packs = remote.pack_index(inv)
        damage = remote_damage.known(remote, inv, packs)
        there = remote_damage.sound(inv, packs, damage)  # the rest is sent again: a good copy replaces or joins it
        bad_packs = {name for _, name in damage.bad if name != remote_damage.LOOSE}
        runs = set(catalog(remote, inv))
        absent = set(store.absent(d for d in live if d.raw not in there))
        for m, members in manifests.items():  # a directory missing files here waits, like one with damaged files
            if any(Digest.from_raw(raw) in absent for raw in members) and m.raw not in there:
                live.pop(m, None)
        temps: list[str] = []
        try:
            phases = _plan_push(store, live, there, {m.raw for m in manifests}, inv, report,
                                None if dry_run else temps, bad_packs=bad_packs)
            if report.rejected:  # damaged here: what names it (manifests, records) waits for a good push
                phases = phases[:1]
            elif records:
                phases.append(_plan_records(ws, store, inv, there, runs, report, None if dry_run else temps,
                                            check_record))
            uploads = [u for phase in phases for u in phase]
            report.files = sum(1 + len(u.then) for u in uploads)
            report.bytes = sum(u.size + sum(t.size for t in u.then) for u in uploads)
            report.objects = sum(u.objects for u in uploads)
            if dry_run:
                return report
            if uploads:
                remote.ensure_format(inv)
                with progress("pushing", report.bytes, report.objects) if progress else nullcontext() as tick:
                    sent = _upload(remote, phases, report, tick)
                there |= sent
                written = {w.key for u in uploads for w in (u, *u.then) if w.done}
                remote_damage.clear(remote, damage, {
                    (raw, where) for raw, where in damage.bad
                    if (Remote.loose_key(Digest.from_raw(raw)) if where == remote_damage.LOOSE
                        else Remote.pack_key(where)) in written})
            if not report.rejected and records:  # a refused upload's catalog was not sent: keep the listing's word
                runs |= set(references.run_ids(ws))
            remember(remote, there, manifests, runs, damaged=damage.local)
        finally:
            for tmp in temps:
                if store.fs.exists(tmp):
                    store.fs.rm_file(tmp)
    return report


def _upload(remote: Remote, phases: list[list[_Upload]], report: TransferReport,
            tick: Tick | None) -> set[bytes]:
    """Send the phases in order (data, then manifests, then run records: nothing lands before what
    it names); a refused upload stops the phases after its own. Returns the objects sent."""
    sent: set[bytes] = set()
    for phase in phases:
        # memory stays near jobs × PART_SIZE: the fewer big files at once, the more parts each
        big = min(remote.jobs, sum(u.size >= 2 * PART_SIZE for u in phase)) or 1
        parts = max(2, remote.jobs // big)
        for raws in run_all(remote, [_send(remote, u, tick, parts) for u in phase], collect=True):
            sent |= raws
        refused = [u for u in phase if u.rejected]
        for u in refused:
            report.rejected[u.key] = u.rejected
            report.objects -= u.objects + sum(t.objects for t in u.then)
            report.bytes -= u.size + sum(t.size for t in u.then)
        if refused:  # what comes next may name what was refused: it waits for a good push
            break
    return sent


def _plan_push(store: ObjectStore, live: dict[Digest, str], there: set[bytes], manifests: set[bytes],
               inv: Inventory, report: TransferReport, temps: list[str] | None, *,
               bad_packs: frozenset[str] | set[str] = frozenset()) -> list[list[_Upload]]:
    """Uploads in two phases: file objects (loose, and packs without manifests), then manifests."""
    index = store.index()
    by_pack: dict[str, list[bytes]] = defaultdict(list)
    loose: list[Digest] = []
    for d, where in live.items():
        if d.raw in there:
            report.present += 1
        elif (entry := index.get(d.raw)) is not None:
            by_pack[entry.pack].append(d.raw)
        elif store.fs.exists(store.loose_path(d)):
            loose.append(d)
        else:
            report.missing[str(d)] = where
    data: list[_Upload] = []
    meta: list[_Upload] = []  # a big directory's manifest is loose: it too waits for its members
    for d in loose:
        (meta if d.raw in manifests else data).append(
            _Upload(Remote.loose_key(d), store.size(d), 1, local=store.loose_path(d), check=d.hexdigest,
                    raws=frozenset([d.raw])))
    repack: list[bytes] = []
    for name, raws in sorted(by_pack.items()):
        entries = _whole(store, name, raws)
        if entries is None:
            repack.extend(raws)
            continue
        phase = meta if manifests.intersection(raws) else data
        phase.append(_pack_upload(store.pack_path(name), name, entries, inv, check=True, bad_packs=bad_packs))
    small_data = sorted(r for r in repack if r not in manifests)
    small_meta = sorted(r for r in repack if r in manifests)
    data += _repack(store, small_data, inv, report, temps, bad_packs)
    meta += _repack(store, small_meta, inv, report, temps, bad_packs)
    return [data, meta]


def _whole(store: ObjectStore, name: str, wanted: list[bytes]) -> dict[bytes, tuple[int, int]] | None:
    """The entries of local pack ``name`` if the remote needs every object in it, else None."""
    try:
        entries = decode_index(store.fs.cat_file(store.pack_path(name, ".idx")), name)
    except (OSError, StorageError):
        return None
    if len(entries) != len(wanted) or not set(entries).issuperset(wanted):
        return None
    return {raw: (e.offset, e.length) for raw, e in entries.items()}


def _pack_upload(local: str, name: str, entries: dict[bytes, tuple[int, int]], inv: Inventory, *,
                 check: bool, bad_packs: frozenset[str] | set[str] = frozenset()) -> _Upload:
    """A pack, then its index; a pack already on the remote (an interrupted push) only needs the index,
    unless its bytes there are known bad: then it goes up again, whole."""
    size = os.path.getsize(local)
    idx = _Upload(Remote.pack_key(name, ".idx"), 0, 0, data=encode_index(entries), raws=frozenset(entries))
    idx.size = len(idx.data)
    if (item := inv.packs.get(name)) is not None and item.size == size and name not in bad_packs:
        idx.objects = len(entries)
        return idx
    return _Upload(Remote.pack_key(name), size, len(entries), local=local, check=name if check else None, then=[idx])


def _repack(store: ObjectStore, raws: list[bytes], inv: Inventory, report: TransferReport,
            temps: list[str] | None, bad_packs: frozenset[str] | set[str] = frozenset()) -> list[_Upload]:
    """Pack ``raws`` (sorted, so a re-run after an interruption builds the same packs) into temp files;
    with no ``temps`` (a dry run), only say how big they would be."""
    uploads = []
    for chunk in _packs_of(store, raws):
        if temps is None:
            size = sum(store.index()[raw].length for raw in chunk)
            uploads.append(_Upload("packs/?.pack", size, len(chunk), then=[_Upload("packs/?.idx", 0)]))
            continue
        tmp = store._tmp() + ".pack"
        temps.append(tmp)
        name, entries = build_pack(tmp, _sound(store, chunk, report))
        if entries:
            uploads.append(_pack_upload(tmp, name, entries, inv, check=False, bad_packs=bad_packs))
    return uploads


def _sound(store: ObjectStore, raws: list[bytes], report: TransferReport) -> Iterator[tuple[bytes, bytes]]:
    """The objects' verified bytes; a damaged one is reported and left out."""
    for raw in raws:
        d = Digest.from_raw(raw)
        try:
            yield raw, store.read_bytes(d)
        except ObjectCorrupt as exc:
            report.rejected[str(d)] = f"damaged in the local store, not sent: {exc}"


def _packs_of(store: ObjectStore, raws: list[bytes]) -> Iterator[list[bytes]]:
    index = store.index()
    chunk: list[bytes] = []
    size = 0
    for raw in raws:
        chunk.append(raw)
        size += index[raw].length
        if size >= PACK_SIZE:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _plan_records(ws: Workspace, store: ObjectStore, inv: Inventory, there: set[bytes], runs: set[str],
                  report: TransferReport, temps: list[str] | None, check: RecordCheck | None) -> list[_Upload]:
    """The local run records the remote's catalogs lack: their bytes packed, then a catalog naming them."""
    folder = ws.dot / RUNS
    local = {p.stem: p for p in folder.glob("*.json")} if folder.is_dir() else {}
    new = sorted(set(local) - runs)
    if not new:
        return []
    lines, blobs = [], {}
    for run_id in list(new):
        data = local[run_id].read_bytes()
        try:
            if check is not None:
                check(run_id, data)
        except MlvError as exc:
            report.rejected[run_id] = f"run record not sent: {exc}"
            new.remove(run_id)
            continue
        d = digests.of_bytes(data)
        lines.append(catalog_line(run_id, d))
        if d.raw not in there:
            blobs[d.raw] = data
    report.records = len(new)
    if not new:
        return []
    uploads: list[_Upload] = []
    text = "".join(lines).encode()
    listing = _Upload(f"{RUNS}/{digests.of_bytes(text).hexdigest}.list", len(text), 0, data=text)
    if blobs and temps is None:  # a dry run: only the sizes
        size = sum(map(len, blobs.values()))
        uploads.append(_Upload("packs/?.pack", size, 0, then=[_Upload("packs/?.idx", 0), listing]))
    elif blobs:
        tmp = store._tmp() + ".pack"
        temps.append(tmp)
        name, entries = build_pack(tmp, sorted(blobs.items()))
        pack = _pack_upload(tmp, name, entries, inv, check=False)
        for u in (pack, *pack.then):
            u.objects = 0  # counted as run records, not objects
        pack.then.append(listing)  # the catalog lands after the records' pack and its index
        uploads.append(pack)
    else:
        uploads.append(listing)
    return uploads


def _send(remote: Remote, upload: _Upload, tick: Tick | None,
          parts: int) -> Callable[[], frozenset[bytes]]:
    """A job writing ``upload`` then what follows it; returns the objects now on the remote.

    A local file that no longer hashes to its name is refused (reported, nothing of it sent):
    damage in the local store must not spread to the remote.
    """
    def job() -> frozenset[bytes]:
        sent: frozenset[bytes] = frozenset()
        for u in (upload, *upload.then):
            bar = Bar(tick)
            try:
                if u.data is not None:
                    remote.put_bytes(u.key, u.data)
                else:
                    remote.put_file(u.local, u.key, callback=bar, parts=parts, expect=u.check)
            except ObjectCorrupt as exc:
                upload.rejected = (f"local '{u.local}' is damaged (its bytes hash to {exc.actual}), so it was "
                                   "not sent; run `mlv fsck`, re-add the data, then push again")
                return sent
            bar.finish(u.size, u.objects)
            u.done = True
            sent |= u.raws
        return sent

    return job
