"""Push and fetch: move objects and run records between the local store and a remote.

Both start from one listing of the remote (``Remote.inventory``) and the pack indexes
(cached locally), so deciding what to send or get costs a few requests whatever the
number of objects. Small objects travel in packs: a local pack whose every object the
remote lacks is uploaded as it is; the rest are packed anew. A fetch that needs most
of a remote pack gets it whole (one GET) and adopts it; one that needs a few objects
reads just their byte ranges. Transfers run ``remote.jobs`` at a time.

Every byte is checked against its digest before it counts: a pack or loose object is
re-hashed before it is uploaded (local damage must not spread), and everything fetched
is hashed before it enters the local store; a mismatch is reported, never stored.

Order keeps the remote consistent at every instant, so an interrupted push leaves
nothing that points at missing bytes: file objects, then manifests, then a pack's
index after its bytes, then the run-record catalog after the records' pack.
"""

from __future__ import annotations

import mmap
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from fsspec.callbacks import Callback
from mlv.storage import atomic, manifest, references, remote_state
from mlv.storage import digest as digests
from mlv.storage.digest import Digest
from mlv.storage.errors import MlvError, ObjectCorrupt, StorageError
from mlv.storage.objects import PACK_SIZE, ObjectStore, Writer
from mlv.storage.packs import PackEntry, decode_index, encode_index
from mlv.storage.references import Roots
from mlv.storage.remote_state import Seen, TransferReport
from mlv.storage.remotes import PART_SIZE, Inventory, Remote, RemoteError
from mlv.storage.workspace import Workspace

RUNS = "runs"  # .mlv/runs/<run id>.json: the engine's run records, moved here as opaque, verified bytes
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
RANGE_GAP = 256 * 1024  # neighbouring wanted objects closer than this are read in one range
RANGE_MAX = 16 * 1024 * 1024

#: ``progress(description, total bytes, total objects)`` -> context yielding ``advance(bytes, objects)`` or None
TransferProgress = Callable[[str, int, int], AbstractContextManager[Callable[[int, int], None] | None]]
#: checks a fetched run record's bytes before it is written (raises ``MlvError`` to reject it)
RecordCheck = Callable[[str, bytes], None]


# -- push ----------------------------------------------------------------------------------
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


def push(ws: Workspace, remote: Remote, roots: Roots, *, dry_run: bool = False,
         progress: TransferProgress | None = None, check_record: RecordCheck | None = None) -> TransferReport:
    """Send the remote what ``roots`` (closed over manifests) and the local run records need and it lacks;
    a record that fails ``check_record`` (damaged here) is reported, not sent."""
    store = ws.store
    report = TransferReport(remote.name, "push", dry_run)
    with ws.lock():
        manifests: dict[Digest, list[bytes]] = {}
        live = references.closure(store, roots, manifests=manifests)
        inv = remote.inventory()
        remote.check_format(inv)
        damaged = _damaged(remote)
        there = _there(remote, inv) - damaged  # those are sent again: a good copy replaces or joins them
        runs = set(catalog(remote, inv))
        temps: list[str] = []
        try:
            phases = _plan_push(store, live, there, {m.raw for m in manifests}, inv, report,
                                None if dry_run else temps)
            if report.rejected:  # damaged here: what names it (manifests, records) waits for a good push
                phases = phases[:1]
            else:
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
                damaged -= sent
            if not report.rejected:  # a refused upload's catalog was not sent either: keep the listing's word
                runs |= set(_local_runs(ws))
            _remember(remote, there, manifests, runs, damaged=damaged)
        finally:
            for tmp in temps:
                if store.fs.exists(tmp):
                    store.fs.rm_file(tmp)
    return report


def _upload(remote: Remote, phases: list[list[_Upload]], report: TransferReport,
            tick: Callable[[int, int], None] | None) -> set[bytes]:
    """Send the phases in order (data, then manifests, then run records: nothing lands before what
    it names); a refused upload stops the phases after its own. Returns the objects sent."""
    sent: set[bytes] = set()
    for phase in phases:
        # memory stays near jobs × PART_SIZE: the fewer big files at once, the more parts each
        big = min(remote.jobs, sum(u.size >= 2 * PART_SIZE for u in phase)) or 1
        parts = max(2, remote.jobs // big)
        for raws in _run_all(remote, [_send(remote, u, tick, parts) for u in phase], collect=True):
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
               inv: Inventory, report: TransferReport, temps: list[str] | None) -> list[list[_Upload]]:
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
    data: list[_Upload] = [
        _Upload(Remote.loose_key(d), store.size(d), 1, local=store.loose_path(d), check=d.hexdigest,
                raws=frozenset([d.raw])) for d in loose
    ]
    meta: list[_Upload] = []
    repack: list[bytes] = []
    for name, raws in sorted(by_pack.items()):
        entries = _whole(store, name, raws)
        if entries is None:
            repack.extend(raws)
            continue
        phase = meta if manifests.intersection(raws) else data
        phase.append(_pack_upload(store.pack_path(name), name, entries, inv, check=True))
    small_data = sorted(r for r in repack if r not in manifests)
    small_meta = sorted(r for r in repack if r in manifests)
    data += _repack(store, small_data, inv, report, temps)
    meta += _repack(store, small_meta, inv, report, temps)
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
                 check: bool) -> _Upload:
    """A pack, then its index; a pack already on the remote (an interrupted push) only needs the index."""
    size = os.path.getsize(local)
    idx = _Upload(Remote.pack_key(name, ".idx"), 0, 0, data=encode_index(entries), raws=frozenset(entries))
    idx.size = len(idx.data)
    if (item := inv.packs.get(name)) is not None and item.size == size:
        idx.objects = len(entries)
        return idx
    return _Upload(Remote.pack_key(name), size, len(entries), local=local, check=name if check else None, then=[idx])


def _repack(store: ObjectStore, raws: list[bytes], inv: Inventory, report: TransferReport,
            temps: list[str] | None) -> list[_Upload]:
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
        h = digests.hasher()
        entries: dict[bytes, tuple[int, int]] = {}
        offset = 0
        with open(tmp, "wb") as f:
            for raw in chunk:
                d = Digest.from_raw(raw)
                try:
                    data = store.read_bytes(d)
                except ObjectCorrupt as exc:
                    report.rejected[str(d)] = f"damaged in the local store, not sent: {exc}"
                    continue
                f.write(data)
                h.update(data)
                entries[raw] = (offset, len(data))
                offset += len(data)
        if entries:
            uploads.append(_pack_upload(tmp, h.hexdigest(), entries, inv, check=False))
    return uploads


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
    lines, entries, blobs = [], {}, []
    offset = 0
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
        lines.append(f"{run_id} {d}\n")
        if d.raw not in there and d.raw not in entries:
            entries[d.raw] = (offset, len(data))
            blobs.append(data)
            offset += len(data)
    report.records = len(new)
    if not new:
        return []
    uploads: list[_Upload] = []
    text = "".join(lines).encode()
    listing = _Upload(f"{RUNS}/{digests.of_bytes(text).hexdigest}.list", len(text), 0, data=text)
    if blobs and temps is None:  # a dry run: only the sizes
        uploads.append(_Upload("packs/?.pack", offset, 0, then=[_Upload("packs/?.idx", 0), listing]))
    elif blobs:
        tmp = store._tmp() + ".pack"
        temps.append(tmp)
        body = b"".join(blobs)
        Path(tmp).write_bytes(body)
        pack = _pack_upload(tmp, digests.of_bytes(body).hexdigest, entries, inv, check=False)
        for u in (pack, *pack.then):
            u.objects = 0  # counted as run records, not objects
        pack.then.append(listing)  # the catalog lands after the records' pack and its index
        uploads.append(pack)
    else:
        uploads.append(listing)
    return uploads


def _there(remote: Remote, inv: Inventory, packs: dict[str, dict[bytes, PackEntry]] | None = None) -> set[bytes]:
    """Every object the remote holds: loose ones, and those of packs whose bytes and index are both there."""
    packs = remote.pack_index(inv) if packs is None else packs
    return set(inv.loose).union(*(entries for name, entries in packs.items() if name in inv.packs))


def _damaged(remote: Remote) -> set[bytes]:
    """Objects the remote lists but whose bytes proved wrong (by ``fsck --remote`` or a refused fetch)."""
    seen = remote_state.load(remote.state_db, remote.config)
    return seen.damaged if seen is not None else set()


def _remember(remote: Remote, there: set[bytes], manifests: dict[Digest, list[bytes]], runs: set[str], *,
              damaged: set[bytes]) -> None:
    there = there - damaged
    seen = Seen(there, remote_state.complete_manifests(manifests, there), runs, damaged=damaged)
    remote_state.save(remote.state_db, remote.config, seen)


def _local_runs(ws: Workspace) -> list[str]:
    folder = ws.dot / RUNS
    return [p.stem for p in folder.glob("*.json")] if folder.is_dir() else []


def catalog(remote: Remote, inv: Inventory) -> dict[str, Digest]:
    """Run id -> digest of its record's bytes, from every catalog on the remote."""
    found: dict[str, Digest] = {}
    texts = remote.read_small({n: (f"{RUNS}/{n}.list", item.size) for n, item in inv.catalogs.items()})
    for name, data in sorted(texts.items()):
        for line in data.decode("utf-8", errors="replace").splitlines():
            run_id, _, text = line.partition(" ")
            try:
                d = digests.parse(text)
            except MlvError:
                raise RemoteError(f"{remote.where}: catalog runs/{name}.list has a malformed line {line[:80]!r}; "
                                  f"`mlv fsck --remote {remote.name}` checks it") from None
            if RUN_ID.match(run_id):
                found.setdefault(run_id, d)
    return found


def _send(remote: Remote, upload: _Upload, tick: Callable[[int, int], None] | None,
          parts: int) -> Callable[[], frozenset[bytes]]:
    """A job writing ``upload`` then what follows it; returns the objects now on the remote.

    A local file that no longer hashes to its name is refused (reported, nothing of it sent):
    damage in the local store must not spread to the remote.
    """
    def job() -> frozenset[bytes]:
        sent: frozenset[bytes] = frozenset()
        for u in (upload, *upload.then):
            if u.check is not None:
                actual, _ = digests.of_file(u.local)
                if actual.hexdigest != u.check:
                    remote_report_rejection(u, actual)
                    return sent
            bar = _Bar(tick)
            if u.data is not None:
                remote.put_bytes(u.key, u.data)
            else:
                remote.put_file(u.local, u.key, callback=bar, parts=parts)
            bar.finish(u.size, u.objects)
            sent |= u.raws
        return sent

    def remote_report_rejection(u: _Upload, actual: Digest) -> None:
        upload.rejected = (f"local '{u.local}' is damaged (its bytes hash to {actual.short}), so it was not sent; "
                           "run `mlv fsck`, re-add the data, then push again")

    return job


# -- fetch ---------------------------------------------------------------------------------
def fetch(ws: Workspace, remote: Remote, roots_of: Callable[[], Roots], *, dry_run: bool = False,
          progress: TransferProgress | None = None, check_record: RecordCheck | None = None,
          records: bool = True) -> TransferReport:
    """Bring into the local store what ``roots_of()`` needs (after the remote's run records arrive,
    unless ``records`` is false)."""
    store = ws.store
    report = TransferReport(remote.name, "fetch", dry_run)
    with ws.lock():
        inv = remote.inventory()
        remote.check_format(inv)
        getter = _Getter(store, remote, inv, report)
        runs = catalog(remote, inv)
        if records:
            _fetch_records(ws, runs, getter, report, check_record)
        roots = roots_of()
        live: dict[Digest, str] = dict(roots.where)
        fetched_manifests: dict[Digest, bytes] = {}
        manifests: dict[Digest, list[bytes]] = {}
        for d in sorted(roots.current_dirs, key=str):
            data = _manifest_bytes(store, getter, d, roots[d], fetched_manifests)
            if data is None:
                continue
            try:
                manifests[d] = members = manifest.load(data).raw_digests
            except StorageError as exc:
                report.rejected[str(d)] = f"not a readable manifest: {exc}"
                continue
            for raw in members:
                live.setdefault(Digest.from_raw(raw), roots[d])
        wanted = {d: live[d] for d in store.absent(d for d in live if d not in fetched_manifests)}
        getter.plan(wanted)
        report.present += len(live) - len(wanted) - len(fetched_manifests)
        if dry_run:
            report.objects += getter.planned_objects + len(fetched_manifests)
            report.bytes += getter.planned_bytes + sum(map(len, fetched_manifests.values()))
        else:
            with store.writer() as writer:
                with progress("fetching", getter.planned_bytes, getter.planned_objects) if progress \
                        else nullcontext() as tick:
                    getter.run(writer, tick)
                for d, data in fetched_manifests.items():  # a manifest lands after its members
                    writer.put_bytes(data, d)
                    report.objects += 1
        _remember(remote, _there(remote, inv, getter.packs), manifests, set(runs),
                  damaged=_damaged(remote) | getter.refused)
    return report


def _manifest_bytes(store: ObjectStore, getter: _Getter, d: Digest, where: str,
                    fetched: dict[Digest, bytes]) -> bytes | None:
    if d in store:
        try:
            return store.read_bytes(d)
        except StorageError:
            pass  # damaged here: fetch a good copy
    got = getter.get_bytes({d: where})
    if d.raw in got:
        fetched[d] = got[d.raw]
        return got[d.raw]
    return None


def _fetch_records(ws: Workspace, runs: dict[str, Digest], getter: _Getter, report: TransferReport,
                   check: RecordCheck | None) -> None:
    folder = ws.dot / RUNS
    have = set(_local_runs(ws))
    want = {run_id: d for run_id, d in runs.items() if run_id not in have}
    if not want:
        return
    if report.dry_run:
        report.records = len(want)
        return
    got = getter.get_bytes({d: f"run record {run_id}" for run_id, d in want.items()})
    folder.mkdir(exist_ok=True)
    for run_id, d in sorted(want.items()):
        data = got.get(d.raw)
        if data is None:
            continue  # reported missing or rejected by the getter
        try:
            if check is not None:
                check(run_id, data)
        except MlvError as exc:
            report.rejected[run_id] = f"run record refused: {exc}"
            continue
        atomic.write_bytes(folder / f"{run_id}.json", data)
        report.records += 1


class _Getter:
    """Locates wanted objects on the remote and downloads them: loose whole, packs whole or by ranges.

    An object may have several copies (a pack re-sent after damage, say): the first is tried,
    and one whose bytes are wrong sends the next round to the next copy. Only when every copy
    is wrong is the object refused (``refused``, and reported).
    """

    def __init__(self, store: ObjectStore, remote: Remote, inv: Inventory, report: TransferReport) -> None:
        self.store, self.remote, self.inv, self.report = store, remote, inv, report
        self.packs = remote.pack_index(inv)
        self.copies: dict[bytes, list[PackEntry | None]] = defaultdict(list)  # None: the loose object
        for name in sorted(self.packs):
            if name in inv.packs:  # an index whose pack is gone offers nothing
                for raw, entry in self.packs[name].items():
                    self.copies[raw].append(entry)
        for raw in inv.loose:
            self.copies[raw].append(None)
        self.attempt: dict[bytes, int] = {}
        self.named: dict[bytes, str] = {}
        self.failed: dict[bytes, str] = {}  # wrong bytes in the copy tried last
        self.refused: set[bytes] = set()  # wrong bytes in every copy
        self.loose: list[Digest] = []
        self.whole: dict[str, list[bytes]] = {}
        self.ranged: dict[str, list[bytes]] = {}
        self.planned_bytes = 0
        self.planned_objects = 0

    def _locate(self, wanted: dict[Digest, str]) -> tuple[list[Digest], dict[str, list[bytes]]]:
        """Where the copy to try of each wanted object is; those with no copy are missing."""
        loose, by_pack = [], defaultdict(list)
        for d, where in wanted.items():
            self.named[d.raw] = where
            copies = self.copies.get(d.raw)
            if not copies:
                self.report.missing[str(d)] = where
                continue
            copy = copies[self.attempt.get(d.raw, 0)]
            if copy is None:
                loose.append(d)
            else:
                by_pack[copy.pack].append(d.raw)
        return loose, dict(by_pack)

    def _next_copies(self) -> dict[Digest, str]:
        """Objects whose copy was wrong but that have another one to try; the rest are refused."""
        again = {}
        for raw, why in list(self.failed.items()):
            n = self.attempt.get(raw, 0) + 1
            d = Digest.from_raw(raw)
            if n < len(self.copies[raw]):
                self.attempt[raw] = n
                again[d] = self.named[raw]
            else:
                self.refused.add(raw)
                self.report.rejected[str(d)] = why
            del self.failed[raw]
        return again

    def plan(self, wanted: dict[Digest, str]) -> None:
        """Choose how to get each wanted object: most of a pack -> the whole pack; a few -> ranges."""
        self.loose, by_pack = self._locate(wanted)
        self.planned_bytes = sum(self.inv.loose[d.raw].size for d in self.loose)
        self.planned_objects = len(self.loose) + sum(map(len, by_pack.values()))
        for name, raws in by_pack.items():
            need = sum(self.packs[name][r].length for r in raws)
            size = self.inv.packs[name].size
            if 2 * need >= size:
                self.whole[name] = raws
                self.planned_bytes += size
            else:
                self.ranged[name] = raws
                self.planned_bytes += need

    def get_bytes(self, wanted: dict[Digest, str]) -> dict[bytes, bytes]:
        """Small objects (records, manifests) into memory, verified, by ranges."""
        out: dict[bytes, bytes] = {}
        while wanted:
            loose, by_pack = self._locate(wanted)
            jobs = [self._range_job(name, raws) for name, raws in by_pack.items()]
            jobs += [lambda d=d: [(d.raw, self.remote.cat_file(Remote.loose_key(d)))] for d in loose]
            for results in _run_all(self.remote, jobs, collect=True):
                for raw, data in results:
                    if self._verified(raw, data):
                        out[raw] = data
            wanted = self._next_copies()
        return out

    def run(self, writer: Writer, tick: Callable[[int, int], None] | None) -> None:
        """Download what ``plan`` chose into the store; wrong bytes send later rounds to other copies."""
        self._round(writer, tick)
        while again := self._next_copies():
            self.loose, self.ranged = self._locate(again)
            self.whole = {}
            self._round(writer, None)

    def _round(self, writer: Writer, tick: Callable[[int, int], None] | None) -> None:
        store = self.store
        temps: list[str] = []

        def get(key: str, objects: int) -> Callable[[], str]:
            def job() -> str:
                tmp = store._tmp()
                temps.append(tmp)
                bar = _Bar(tick)
                self.remote.get_file(key, tmp, callback=bar)
                bar.finish(os.path.getsize(tmp), objects)
                return tmp
            return job

        jobs: list[Callable] = []
        handlers: list[Callable] = []
        for d in self.loose:
            jobs.append(get(Remote.loose_key(d), 1))
            handlers.append(lambda tmp, d=d: self._adopt_loose(writer, tmp, d))
        for name, raws in self.whole.items():
            jobs.append(get(Remote.pack_key(name), len(raws)))
            handlers.append(lambda tmp, name=name, raws=raws: self._adopt_pack(writer, tmp, name, raws))
        for name, raws in self.ranged.items():
            jobs.append(self._range_job(name, raws, tick))
            handlers.append(lambda results: [self._store(writer, raw, data) for raw, data in results])
        try:
            _run_all(self.remote, jobs, handlers=handlers)
        finally:
            for tmp in temps:
                if store.fs.exists(tmp):
                    store.fs.rm_file(tmp)

    def _range_job(self, name: str, raws: list[bytes], tick=None) -> Callable[[], list[tuple[bytes, bytes]]]:
        entries = sorted((self.packs[name][r] for r in raws), key=lambda e: e.offset)
        by_offset = {self.packs[name][r].offset: r for r in raws}
        spans: list[list[PackEntry]] = []
        for e in entries:
            last = spans[-1] if spans else None
            if last and e.offset - (last[-1].offset + last[-1].length) <= RANGE_GAP \
                    and e.offset + e.length - last[0].offset <= RANGE_MAX:
                last.append(e)
            else:
                spans.append([e])

        def job() -> list[tuple[bytes, bytes]]:
            ranges = [(s[0].offset, s[-1].offset + s[-1].length) for s in spans]
            blobs = self.remote.cat_ranges(Remote.pack_key(name), ranges, jobs=self.remote.jobs)
            out = []
            for span, (start, _), blob in zip(spans, ranges, blobs):
                for e in span:
                    out.append((by_offset[e.offset], blob[e.offset - start : e.offset - start + e.length]))
            if tick:
                tick(sum(len(b) for b in blobs), len(out))
            return out
        return job

    def _verified(self, raw: bytes, data: bytes | memoryview) -> bool:
        actual = digests.of_bytes(data)
        if actual.raw == raw:
            return True
        self._wrong(raw, actual)
        return False

    def _wrong(self, raw: bytes, actual: object) -> None:
        self.failed[raw] = (f"the remote's bytes hash to {actual} (damaged or tampered with); they were not "
                            f"stored. `mlv fsck --remote {self.remote.name}` lists damage; a push from a clone "
                            "with good bytes repairs it")

    def _store(self, writer: Writer, raw: bytes, data: bytes | memoryview) -> None:
        if self._verified(raw, data):
            writer.put_bytes(data, Digest.from_raw(raw))
            self.report.objects += 1
            self.report.bytes += len(data)

    def _adopt_loose(self, writer: Writer, tmp: str, d: Digest) -> None:
        self.report.files += 1
        size = os.path.getsize(tmp)
        try:
            writer.put_verified(tmp, d)
        except ObjectCorrupt as exc:
            self._wrong(d.raw, exc.actual)
            return
        self.report.objects += 1
        self.report.bytes += size

    def _adopt_pack(self, writer: Writer, tmp: str, name: str, wanted: list[bytes]) -> None:
        """Check a downloaded pack; adopt it whole when every object in it is sound, else keep the sound wanted ones."""
        self.report.files += 1
        entries = self.packs[name]
        good: dict[bytes, tuple[int, int]] = {}
        whole = False
        if os.path.getsize(tmp):
            with open(tmp, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                view = memoryview(data)
                try:
                    good = {raw: (e.offset, e.length) for raw, e in entries.items()
                            if e.offset + e.length <= len(view)
                            and digests.of_bytes(view[e.offset : e.offset + e.length]).raw == raw}
                    whole = len(good) == len(entries) and digests.of_bytes(view).hexdigest == name
                    if not whole:
                        for raw in wanted:
                            e = entries[raw]
                            self._store(writer, raw, bytes(view[e.offset : e.offset + e.length]))
                finally:
                    view.release()
        else:
            for raw in wanted:
                self._verified(raw, b"")
        if whole:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            self.store.publish_pack(tmp, name, good)
            self.report.objects += len(wanted)
            self.report.bytes += os.path.getsize(self.store.pack_path(name))


def _run_all(remote: Remote, jobs: list[Callable], *, collect: bool = False,
             handlers: list[Callable] | None = None) -> list:
    """Run ``jobs`` ``remote.jobs`` at a time; each result goes to its handler in this thread as it
    arrives. The first failure cancels what has not started and is raised."""
    results = []
    if not jobs:
        return results
    with ThreadPoolExecutor(max_workers=max(1, min(remote.jobs, len(jobs)))) as pool:
        futures: dict[Future, int] = {pool.submit(job): i for i, job in enumerate(jobs)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    value = fut.result()
                    if handlers is not None:
                        handlers[futures[fut]](value)
                    if collect:
                        results.append(value)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return results


class _Bar(Callback):
    """Feeds fsspec's byte callbacks to our progress; ``finish`` tops up what the filesystem did not report."""

    def __init__(self, tick: Callable[[int, int], None] | None) -> None:
        super().__init__()
        self.tick = tick
        self.sent = 0

    def relative_update(self, inc: int = 1) -> None:
        self.sent += inc
        if self.tick:
            self.tick(inc, 0)

    def finish(self, size: int, objects: int) -> None:
        if self.tick:
            self.tick(max(0, size - self.sent), objects)

