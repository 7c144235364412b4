"""``mlv fetch``: bring into the local store what the workspace needs, and the remote's run records.

From one listing and the pack indexes, each wanted object is located: a loose object is
downloaded whole (one streamed GET); from a pack, most of it -> the whole pack (one GET,
adopted as a local pack when every object in it verifies), a few objects -> just their
byte ranges. Every byte is hashed before it enters the store; a copy whose bytes are
wrong is refused and the next copy of the same object (a pack re-sent after damage) is
tried. Copies known bad (``remote_damage``) are tried last, and a copy found bad here is
marked on the remote, so every clone's push knows to send good bytes. Directory manifests
are read first (to know their members) and stored last, after their members. Run records
arrive before the roots are computed: their logs are roots.
"""

from __future__ import annotations

import mmap
import os
from collections import defaultdict
from collections.abc import Callable
from contextlib import nullcontext

from mlv.storage import atomic
from mlv.storage.store import manifest
from mlv.storage.workspace import references
from mlv.storage.remote import damage as remote_damage
from mlv.storage.store import digest as digests
from mlv.storage.store.digest import Digest
from mlv.storage.errors import MlvError, ObjectCorrupt, StorageError
from mlv.storage.store.objects import ObjectStore
from mlv.storage.store.writer import Writer
from mlv.storage.store.packs import PackEntry
from mlv.storage.workspace.references import Roots
from mlv.storage.remote.state import TransferReport
from mlv.storage.remote.remotes import Inventory, Remote, RemoteError
from mlv.storage.remote.transfer import (
    RUNS,
    Bar,
    RecordCheck,
    Tick,
    TransferProgress,
    catalog,
    read_ranges,
    remember,
    run_all,
)
from mlv.storage.workspace import Workspace


def fetch(ws: Workspace, remote: Remote, roots_of: Callable[[], Roots], *, dry_run: bool = False,
          progress: TransferProgress | None = None, check_record: RecordCheck | None = None,
          records: bool = True) -> TransferReport:
    """Bring into the local store what ``roots_of()`` needs (after the remote's run records arrive,
    unless ``records`` is false)."""
    store = ws.store
    report = TransferReport(remote.name, "fetch", dry_run)
    report.notes = remote.notes  # filled as the remote is read
    with ws.lock():
        inv = remote.inventory()
        remote.check_format(inv)
        packs = remote.pack_index(inv)
        damage = remote_damage.known(remote, inv, packs)
        getter = _Getter(store, remote, inv, report, packs, damage.bad)
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
        if (wanted or report.missing) and not inv.formatted:
            raise RemoteError(f"{remote.where} holds no mlv store: nothing was ever pushed there. "
                              "Check the URL, or push from a clone that has the data")
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
        if dry_run:  # writes nothing, not even a marker: this clone keeps what it saw
            damage.local |= getter.found.keys() - damage.marked
        else:  # marked on the remote, so that any clone's push repairs it
            remote_damage.record(remote, damage, getter.found, by="fetch")
        remember(remote, remote_damage.sound(inv, packs, damage), manifests, set(runs), damaged=damage.local)
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
    have = set(references.run_ids(ws))
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
    copies known bad last, and one whose bytes are wrong sends the next round to the next copy.
    Only when every copy is wrong is the object refused (reported). Every copy seen wrong is
    in ``found``, for the caller to mark on the remote.
    """

    def __init__(self, store: ObjectStore, remote: Remote, inv: Inventory, report: TransferReport,
                 packs: dict[str, dict[bytes, PackEntry]], bad: set[remote_damage.Copy]) -> None:
        self.store, self.remote, self.inv, self.report = store, remote, inv, report
        self.packs = packs
        self.copies: dict[bytes, list[PackEntry | None]] = defaultdict(list)  # None: the loose object
        for raw, where in remote_damage.copies(inv, packs).items():
            where = sorted(where, key=lambda w: (raw, w) in bad)  # known bad last, in order otherwise
            self.copies[raw] = [None if w == remote_damage.LOOSE else packs[w][raw] for w in where]
        self.attempt: dict[bytes, int] = {}
        self.named: dict[bytes, str] = {}
        self.failed: dict[bytes, str] = {}  # wrong bytes in the copy tried last
        self.found: dict[remote_damage.Copy, str] = {}  # every copy seen wrong -> what was wrong
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
            jobs = [self._ranges(name, raws) for name, raws in by_pack.items()]
            jobs += [lambda d=d: [(d.raw, self.remote.cat_file(Remote.loose_key(d)))] for d in loose]
            for results in run_all(self.remote, jobs, collect=True):
                for raw, data in results:
                    if self._verified(raw, data):
                        out[raw] = data
            wanted = self._next_copies()
        return out

    def run(self, writer: Writer, tick: Tick | None) -> None:
        """Download what ``plan`` chose into the store; wrong bytes send later rounds to other copies."""
        self._round(writer, tick)
        while again := self._next_copies():
            self.loose, self.ranged = self._locate(again)
            self.whole = {}
            self._round(writer, None)

    def _round(self, writer: Writer, tick: Tick | None) -> None:
        store = self.store
        temps: list[str] = []

        def get(key: str, objects: int) -> Callable[[], str]:
            def job() -> str:
                tmp = store._tmp()
                temps.append(tmp)
                bar = Bar(tick)
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
            jobs.append(self._ranges(name, raws, tick))
            handlers.append(lambda results: [self._store(writer, raw, data) for raw, data in results])
        try:
            run_all(self.remote, jobs, handlers=handlers)
        finally:
            for tmp in temps:
                if store.fs.exists(tmp):
                    store.fs.rm_file(tmp)

    def _ranges(self, name: str, raws: list[bytes], tick: Tick | None = None) -> Callable[[], list]:
        return read_ranges(self.remote, name, [(raw, self.packs[name][raw]) for raw in raws], tick)

    def _verified(self, raw: bytes, data: bytes | memoryview) -> bool:
        actual = digests.of_bytes(data)
        if actual.raw == raw:
            return True
        self._wrong(raw, actual)
        return False

    def _wrong(self, raw: bytes, actual: object) -> None:
        entry = self.copies[raw][self.attempt.get(raw, 0)]
        self.found[(raw, remote_damage.LOOSE if entry is None else entry.pack)] = f"bytes hash to {actual}"
        self.failed[raw] = (f"the remote's bytes hash to {actual} (damaged or tampered with); they were not "
                            "stored. The damage is marked on the remote, so `mlv push` from any clone with good "
                            "bytes repairs it")

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
                    for raw in entries.keys() - good.keys() - set(wanted):  # seen bad, if not wanted: worth a marker
                        self.found[(raw, name)] = "its bytes in the pack do not hash to it"
                    if not whole:
                        for raw in wanted:
                            e = entries[raw]
                            self._store(writer, raw, bytes(view[e.offset : e.offset + e.length]))
                finally:
                    view.release()
        else:  # a pack of empty objects only (empty files): nothing to read, each checked all the same
            for raw in wanted:
                self._store(writer, raw, b"")
        if whole:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            self.store.publish_pack(tmp, name, good)
            self.report.objects += len(wanted)
            self.report.bytes += os.path.getsize(self.store.pack_path(name))
