"""What push, fetch and the remote checks share: running transfers, reading ranges, catalogs,
and what this clone remembers of a remote.

``push`` and ``fetch`` (modules of their own) both start from one listing of the remote
(``Remote.inventory``) and its pack indexes (cached locally), so deciding what to send or
get costs a few requests whatever the number of objects. Transfers run ``remote.jobs`` at
a time on daemon threads (``run_all``); results are handled in the calling thread, so the
local store's writer is never shared between threads.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager

from fsspec.callbacks import Callback
from mlv.storage.store import digest as digests
from mlv.storage.remote import state as remote_state
from mlv.storage.store.digest import Digest
from mlv.storage.errors import MlvError
from mlv.storage.store.packs import PackEntry
from mlv.storage.paths import RUN_ID
from mlv.storage.remote.state import Seen
from mlv.storage.remote.remotes import Inventory, Remote

RUNS = "runs"  # .mlv/runs/<run id>.json: the engine's run records, moved as opaque, verified bytes
RANGE_GAP = 256 * 1024  # neighbouring wanted objects closer than this are read in one range
RANGE_MAX = 16 * 1024 * 1024

#: ``progress(description, total bytes, total objects)`` -> context yielding ``advance(bytes, objects)`` or None
TransferProgress = Callable[[str, int, int], AbstractContextManager[Callable[[int, int], None] | None]]
#: checks a run record's bytes before it is sent or written (raises ``MlvError`` to refuse it)
RecordCheck = Callable[[str, bytes], None]
Tick = Callable[[int, int], None]  # advance(bytes, objects)



def remember(remote: Remote, there: set[bytes], manifests: dict[Digest, list[bytes]], runs: set[str], *,
             damaged: set[tuple[bytes, str]]) -> None:
    """Leave in ``state.db`` what the remote holds (``there``: objects it can serve), for the next push's
    shortcut, and the bad copies this clone could not mark there (see ``remote_state``)."""
    seen = Seen(there, remote_state.complete_manifests(manifests, there), runs, damaged=damaged)
    remote_state.save(remote.state_db, remote.config, seen)


def catalog(remote: Remote, inv: Inventory) -> dict[str, Digest]:
    """Run id -> digest of its record's bytes, from every catalog on the remote; a malformed line
    is passed over with a note on ``remote.notes`` (``mlv fsck --remote`` names it)."""
    found: dict[str, Digest] = {}
    texts = remote.read_small({n: (f"{RUNS}/{n}.list", item.size) for n, item in inv.catalogs.items()})
    for name, data in sorted(texts.items()):
        for _, line, entry in catalog_lines(data):
            if entry is None:
                remote.note(f"catalog runs/{name}.list has a malformed line {line[:60]!r}; it was passed over")
            else:
                found.setdefault(*entry)
    return found


def catalog_line(run_id: str, digest: Digest) -> str:
    """One line of a run-record catalog (``runs/<xxh3>.list``): ``<run id> <digest>``."""
    return f"{run_id} {digest}\n"


def catalog_lines(data: bytes) -> Iterator[tuple[int, str, tuple[str, Digest] | None]]:
    """(line number, line, (run id, digest) or None when malformed) for each line of a catalog's bytes."""
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        run_id, _, text = line.partition(" ")
        try:
            d = digests.parse(text)
        except MlvError:
            d = None
        yield number, line, (run_id, d) if d is not None and RUN_ID.match(run_id) else None


def spans(entries: list[tuple[bytes, PackEntry]]) -> list[list[tuple[bytes, PackEntry]]]:
    """Pack entries grouped into reads: neighbours less than ``RANGE_GAP`` apart share one.

    Entries travel as (digest, entry) pairs: an empty object has the same offset as the next
    one, so an offset does not name an object.
    """
    grouped: list[list[tuple[bytes, PackEntry]]] = []
    for raw, e in sorted(entries, key=lambda kv: (kv[1].offset, kv[1].length)):
        last = grouped[-1] if grouped else None
        if last and e.offset - (last[-1][1].offset + last[-1][1].length) <= RANGE_GAP \
                and e.offset + e.length - last[0][1].offset <= RANGE_MAX:
            last.append((raw, e))
        else:
            grouped.append([(raw, e)])
    return grouped


def read_ranges(remote: Remote, name: str, entries: list[tuple[bytes, PackEntry]],
                tick: Tick | None = None) -> Callable[[], list[tuple[bytes, bytes]]]:
    """A job reading ``entries`` of pack ``name`` by byte ranges: [(digest, bytes as read)], unverified."""
    def job() -> list[tuple[bytes, bytes]]:
        grouped = spans(entries)
        ranges = [(g[0][1].offset, max(e.offset + e.length for _, e in g)) for g in grouped]
        blobs = remote.cat_ranges(Remote.pack_key(name), ranges, jobs=remote.jobs)
        out = [(raw, blob[e.offset - start : e.offset - start + e.length])
               for g, (start, _), blob in zip(grouped, ranges, blobs) for raw, e in g]
        if tick:
            tick(sum(len(b) for b in blobs), len(out))
        return out
    return job


def build_pack(path: str, items: Iterable[tuple[bytes, bytes]]) -> tuple[str, dict[bytes, tuple[int, int]]]:
    """Write ``(digest, bytes)`` pairs back to back into a new pack file at ``path``; returns the pack's
    name (the xxh3 of its bytes) and its index entries ``{digest: (offset, length)}``."""
    h = digests.hasher()
    entries: dict[bytes, tuple[int, int]] = {}
    offset = 0
    with open(path, "wb") as f:
        for raw, data in items:
            if raw in entries:
                continue
            f.write(data)
            h.update(data)
            entries[raw] = (offset, len(data))
            offset += len(data)
    return h.hexdigest(), entries


def run_all(remote: Remote, jobs: list[Callable], *, collect: bool = False,
            handlers: list[Callable] | None = None) -> list:
    """Run ``jobs`` ``remote.jobs`` at a time; each result goes to its handler in this thread as it
    arrives. The first failure stops what has not started and is raised.

    The workers are daemon threads: every remote call is bounded by the remote's timeouts, but a
    call that hangs all the same (a filesystem library without them) must not keep the process
    from exiting once the error is out. After a failure, the jobs still running get one timeout
    to end (those failing for the same reason do), not the time a healthy big transfer takes.
    """
    results: list = []
    if not jobs:
        return results
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for item in enumerate(jobs):
        todo.put(item)
    done: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                i, job = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((i, job(), None))
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which raises it
                done.put((i, None, exc))

    workers = [threading.Thread(target=work, name=f"mlv-{remote.name}-{n}", daemon=True)
               for n in range(max(1, min(remote.jobs, len(jobs))))]
    for worker in workers:
        worker.start()
    try:
        for _ in jobs:
            i, value, exc = done.get()
            if exc is not None:
                raise exc
            if handlers is not None:
                handlers[i](value)
            if collect:
                results.append(value)
    except BaseException as exc:
        stop.set()
        if not isinstance(exc, KeyboardInterrupt):  # jobs failing alike (a dead server) end within one timeout
            deadline = time.monotonic() + remote.timeout
            for worker in workers:
                worker.join(max(0.0, deadline - time.monotonic()))
        raise
    return results


class Bar(Callback):
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


