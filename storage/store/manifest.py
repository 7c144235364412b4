"""Directory manifests: the sorted (path, digest, size, executable) entries of a dataset.

A manifest is itself an object; its digest is the dataset's version id. The bytes are
an Arrow IPC stream with a fixed schema, no compression and fixed batch sizes, so the
same entries always serialize to the same bytes (a golden test pins this) and 10⁶
entries load in well under a second. Paths are relative POSIX paths sorted by code
point (which is also UTF-8 byte order).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from itertools import islice
from dataclasses import dataclass

from mlv.storage import paths as rules
from mlv.storage.store import arrowlib
from mlv.storage.store.digest import ALGORITHM, Digest
from mlv.storage.errors import StorageError

pa = arrowlib.pyarrow()

SCHEMA = pa.schema(
    [
        ("path", pa.large_string()),
        ("digest", pa.binary(16)),
        ("size", pa.uint64()),
        ("executable", pa.bool_()),
    ],
    metadata={"mlv-manifest": "1", "digest-algorithm": ALGORITHM},
)
BATCH_ROWS = 65536


@dataclass(frozen=True, slots=True)
class Entry:
    """One file of a directory version."""

    path: str
    digest: Digest
    size: int
    executable: bool = False


def dump(entries: Iterable[Entry]) -> bytes:
    """Canonical manifest bytes for ``entries`` (sorted by path; duplicates are a bug)."""
    rows = sorted(entries, key=lambda e: e.path)
    return dump_columns([e.path for e in rows], [e.digest.raw for e in rows], [e.size for e in rows],
                        [e.executable for e in rows])


def dump_columns(paths: list[str], raw_digests: list[bytes], sizes: list[int], executable: list[bool]) -> bytes:
    """``dump`` of entries given as columns, already sorted by path (a directory of many files
    costs no ``Entry`` per file)."""
    check_paths(paths)  # the rule loading enforces holds for what we write, too
    table = pa.table(
        [
            pa.array(paths, pa.large_string()),
            pa.array(raw_digests, pa.binary(16)),
            pa.array(sizes, pa.uint64()),
            pa.array(executable, pa.bool_()),
        ],
        schema=SCHEMA,
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA) as writer:
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def load_table(data: bytes) -> pa.Table:
    """The manifest as an Arrow table (cheap, for large manifests)."""
    try:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise StorageError(f"manifest is unreadable ({exc}); run `mlv fsck`") from exc
    if not table.schema.equals(SCHEMA, check_metadata=False):
        raise StorageError(f"manifest has an unexpected schema: {table.schema}")
    return table


def check_paths(paths: list[str]) -> None:
    """Every path must be relative, normalised and inside its directory, sorted, and unique, and no
    part of it may be ``.git`` or ``.mlv`` (the paths rule, ``mlv.storage.paths``).

    Manifests can arrive from remotes and commits nobody reviewed: a path like
    ``../../x`` would make checkout write outside the tracked directory, and
    ``x/.git/hooks/post-checkout`` would plant a hook.

    >>> check_paths(["a", "b/c"])
    >>> check_paths(["../x"])
    Traceback (most recent call last):
    ...
    mlv.storage.errors.StorageError: manifest entry '../x' is not a plain relative path inside its directory; the manifest is damaged or was tampered with: run `mlv fsck`
    """
    if _plainly_fine(paths):
        return
    previous = None
    for p in paths:
        framed = f"/{p}/"
        if not p or p[0] == "/" or "/../" in framed or "/./" in framed or "//" in framed or "\0" in p \
                or ("/." in framed and rules.problem(p, written=False) is not None):  # .git/, .mlv/ inside
            raise StorageError(
                f"manifest entry {p!r} is not a plain relative path inside its directory; "
                "the manifest is damaged or was tampered with: run `mlv fsck`"
            )
        if previous is not None and p <= previous:
            raise StorageError(f"manifest entries are not sorted and unique (at {p!r}); run `mlv fsck`")
        previous = p


# Every path the loop in check_paths refuses contains one of these once the list is joined with
# newlines (a newline inside a name only adds boundaries, so it can only make more paths suspect).
_SUSPECT = ("\n\n", "\n/", "/\n", "//", "\n.", "/.", "\0")


def _plainly_fine(paths: list[str]) -> bool:
    """A screen in C for the common case (no dot-names, no odd separators, in order): when it
    passes, every path passes ``check_paths``; when it doesn't, the loop there decides."""
    joined = "\n" + "\n".join(paths) + "\n"
    if any(s in joined for s in _SUSPECT):
        return False
    return not any(map(operator.ge, paths, islice(paths, 1, None)))  # strictly increasing: sorted, unique


class Manifest:
    """A loaded manifest: parallel columns plus a path index built on first use."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.paths: list[str] = table.column("path").to_pylist()
        check_paths(self.paths)
        self.raw_digests: list[bytes] = table.column("digest").to_pylist()
        self.sizes: list[int] = table.column("size").to_pylist()
        self.executable: list[bool] = table.column("executable").to_pylist()
        self._by_path: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def total_size(self) -> int:
        return sum(self.sizes)

    def index(self) -> dict[str, int]:
        """``{path: row}``."""
        if self._by_path is None:
            self._by_path = {p: i for i, p in enumerate(self.paths)}
        return self._by_path

    def entry(self, row: int) -> Entry:
        return Entry(self.paths[row], Digest.from_raw(self.raw_digests[row]), self.sizes[row], self.executable[row])

    def get(self, path: str) -> Entry | None:
        row = self.index().get(path)
        return None if row is None else self.entry(row)

    def __iter__(self):
        return (self.entry(i) for i in range(len(self.paths)))


def load(data: bytes) -> Manifest:
    return Manifest(load_table(data))
