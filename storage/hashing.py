"""Digesting workspace files: stat cache first, then parallel reads for the rest.

Reading a small file is mostly syscalls, which release the GIL, so a few threads keep
the disk busy while the main thread appends the bytes to a pack. At most ``WINDOW``
small files are in flight, so memory stays bounded (``WINDOW × pack threshold``);
large files stream chunk by chunk in the calling thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from mlv.storage import digest as digests
from mlv.storage.digest import Digest
from mlv.storage.statcache import StatCache
from mlv.storage.walk import FileStat

THREADS = 4
WINDOW = 32
SMALL = 512 * 1024

Progress = Callable[[int], None]


def _read(path: str) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return f.read()


def _digest_stream(f: FileStat) -> Digest:
    return digests.of_file(f.path)[0]


def key(prefix: str, rel: str) -> str:
    """The stat-cache key of ``rel`` inside the tracked path ``prefix`` ('' is the target itself).

    >>> key("data/raw", "a.csv"), key("model.pkl", "")
    ('data/raw/a.csv', 'model.pkl')
    """
    return f"{prefix}/{rel}" if rel else prefix


def cached(files: Sequence[FileStat], state: StatCache, prefix: str) -> tuple[dict[str, Digest], list[FileStat]]:
    """Split ``files`` into those the stat cache already knows (``{rel: digest}``) and the rest."""
    known = state.lookup_under(prefix) if files else {}
    hits: dict[str, Digest] = {}
    misses: list[FileStat] = []
    for f in files:
        k = known.get(key(prefix, f.rel))
        if k is not None and k[0] == f.inode and k[1] == f.mtime_ns and k[2] == f.size:
            hits[f.rel] = Digest(digests.ALGORITHM, k[3].partition(":")[2])
        else:
            misses.append(f)
    return hits, misses


def read_all(files: Sequence[FileStat], *, progress: Progress | None = None) -> Iterator[tuple[FileStat, bytes | None]]:
    """Yield ``(file, bytes)`` for small files (read in parallel, in order) and ``(file, None)`` for large."""
    if len(files) < 8:
        for f in files:
            yield f, (_read(f.path) if f.size < SMALL else None)
            if progress:
                progress(f.size)
        return
    with ThreadPoolExecutor(THREADS, thread_name_prefix="mlv-read") as pool:
        pending: deque = deque()
        it = iter(files)
        for f in it:
            pending.append((f, pool.submit(_read, f.path) if f.size < SMALL else None))
            if len(pending) >= WINDOW:
                break
        while pending:
            f, fut = pending.popleft()
            yield f, (fut.result() if fut is not None else None)
            if progress:
                progress(f.size)
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_read, nxt.path) if nxt.size < SMALL else None))


def digest_all(files: Sequence[FileStat], *, progress: Progress | None = None) -> dict[str, Digest]:
    """Digest files without storing them (``status``, ``checkout``)."""
    out: dict[str, Digest] = {}
    for f, data in read_all(files, progress=progress):
        out[f.rel] = digests.of_bytes(data) if data is not None else _digest_stream(f)
    return out


def stat_rows(files: Sequence[FileStat], found: dict[str, Digest], prefix: str) -> Iterator[tuple]:
    for f in files:
        if f.rel in found:
            yield key(prefix, f.rel), f.inode, f.mtime_ns, f.size, str(found[f.rel])


def is_settled(files: Sequence[FileStat], now_ns: int, racy_ns: int) -> bool:
    """True when no file was modified so recently that a same-tick write could hide."""
    return all(now_ns - f.mtime_ns >= racy_ns for f in files)

