"""Digesting workspace files: stat cache first, then parallel reads for the rest.

Reading a small file is mostly syscalls, which release the GIL, so a few threads keep
the disk busy while the main thread appends the bytes to a pack. At most ``WINDOW``
small files are in flight, so memory stays bounded (``WINDOW × pack threshold``);
large files stream chunk by chunk in the calling thread.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from mlv.storage.store import digest as digests
from mlv.storage.store.digest import Digest
from mlv.storage.workspace.statcache import StatCache
from mlv.storage.workspace.walk import FileStat

THREADS = min(4, os.cpu_count() or 2)
BATCH_BYTES = 4 * 1024 * 1024  # small files are read in batches: one task per file costs more than the read
BATCH_FILES = 256
SMALL = 512 * 1024

Progress = Callable[[int], None]


def _read(path: str, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, size + 1)
        if len(data) > size:  # grew since the walk: take all of it
            data += _read_rest(fd)
        return data
    finally:
        os.close(fd)


def _read_rest(fd: int) -> bytes:
    parts = []
    while chunk := os.read(fd, 1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def _read_batch(batch: list[FileStat]) -> list[bytes]:
    return [_read(f.path, f.size) for f in batch]


def _batches(files: Sequence[FileStat]) -> Iterator[list[FileStat]]:
    """Runs of consecutive files: small ones grouped, each large one alone (streamed later)."""
    batch: list[FileStat] = []
    size = 0
    for f in files:
        if f.size >= SMALL:
            if batch:
                yield batch
                batch, size = [], 0
            yield [f]
            continue
        batch.append(f)
        size += f.size
        if size >= BATCH_BYTES or len(batch) >= BATCH_FILES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def key(prefix: str, rel: str) -> str:
    """The stat-cache key of ``rel`` inside the tracked path ``prefix`` ('' is the target itself).

    >>> key("data/raw", "a.csv"), key("model.pkl", "")
    ('data/raw/a.csv', 'model.pkl')
    """
    return f"{prefix}/{rel}" if rel else prefix


def cached(
    files: Sequence[FileStat], state: StatCache, prefix: str
) -> tuple[dict[str, Digest], list[FileStat], set[str]]:
    """Split ``files`` into those the stat cache knows (``{rel: digest}``) and the rest;
    also the hits whose object the store is known to hold."""
    known = state.lookup_under(prefix) if files else {}
    hits: dict[str, Digest] = {}
    misses: list[FileStat] = []
    stored: set[str] = set()
    for f in files:
        k = known.get(key(prefix, f.rel))
        if k is not None and k[0] == f.inode and k[1] == f.mtime_ns and k[2] == f.size:
            hits[f.rel] = Digest(digests.ALGORITHM, k[3].partition(":")[2])
            if k[4]:
                stored.add(f.rel)
        else:
            misses.append(f)
    return hits, misses, stored


def read_all(files: Sequence[FileStat], *, progress: Progress | None = None) -> Iterator[tuple[FileStat, bytes | None]]:
    """Yield ``(file, bytes)`` for small files and ``(file, None)`` for large ones, in order.

    Batches of small files are read by a few threads, at most ``2 × THREADS`` batches
    ahead of the consumer, so memory stays near ``2 × THREADS × BATCH_BYTES``.
    ``progress`` is told each small file's bytes once it is yielded; a large one is the
    consumer's to report, chunk by chunk as it streams it (``digest_all``, ``snapshot.store``).
    """
    with ThreadPoolExecutor(THREADS, thread_name_prefix="mlv-read") as pool:
        pending: deque = deque()
        batches = _batches(files)

        def submit() -> bool:
            batch = next(batches, None)
            if batch is None:
                return False
            large = batch[0].size >= SMALL
            pending.append((batch, None if large else pool.submit(_read_batch, batch)))
            return True

        while len(pending) < 2 * THREADS and submit():
            pass
        while pending:
            batch, fut = pending.popleft()
            submit()
            for f, data in zip(batch, fut.result() if fut is not None else [None], strict=True):
                yield f, data
                if progress and data is not None:
                    progress(f.size)


def digest_all(files: Sequence[FileStat], *, progress: Progress | None = None) -> dict[str, Digest]:
    """Digest files without storing them (``status``, ``checkout``)."""
    out: dict[str, Digest] = {}
    for f, data in read_all(files, progress=progress):
        out[f.rel] = digests.of_bytes(data) if data is not None else digests.of_file(f.path, progress=progress)[0]
    return out


def stat_rows(files: Sequence[FileStat], found: dict[str, Digest], prefix: str) -> Iterator[tuple]:
    for f in files:
        if f.rel in found:
            yield key(prefix, f.rel), f.inode, f.mtime_ns, f.size, str(found[f.rel])


def is_settled(files: Sequence[FileStat], now_ns: int, racy_ns: int) -> bool:
    """True when no file was modified so recently that a same-tick write could hide."""
    return all(now_ns - f.mtime_ns >= racy_ns for f in files)

