"""The object store: write-once blobs named by digest on any fsspec filesystem.

Invariants:
- An object is never rewritten; a name is visible only once its bytes are complete and
  durable (temp file, fsync, rename; packs become visible through their index last).
- Objects below ``pack_threshold`` bytes go into pack files (see ``packs``); larger ones
  are loose files at ``<2 hex>/<30 hex>``.
- Reads stream in bounded chunks and verify the bytes against the digest at the end, so
  damaged data raises ``ObjectCorrupt`` instead of being served.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem
from mlv.storage.store import digest as digests
from mlv.storage.store.digest import Digest
from mlv.storage.errors import ObjectCorrupt, ObjectMissing, StorageError
from mlv.storage.store.packs import PackEntry, decode_index, encode_index
from mlv.storage.store.writer import Writer, fsync_dir_of, fsync_file

FORMAT = "mlv-store 1\n"
_HEX2 = re.compile(r"^[0-9a-f]{2}$")
_HEX30 = re.compile(r"^[0-9a-f]{30}$")
TEMP = re.compile(r"^[0-9a-f]{32}(\.pack|\.idx)?$")  # names ``_tmp()`` gives (``tmp/`` holds nothing else of ours)
PACK = re.compile(r"^[0-9a-f]{32}\.pack$")
INDEX = re.compile(r"^[0-9a-f]{32}\.idx$")
PACK_THRESHOLD = 512 * 1024  # objects smaller than this are packed
DAMAGED = "damaged"  # packs/damaged: digests fsck found damaged inside packs


def damaged_error(digest: Digest, actual: Digest) -> ObjectCorrupt:
    """The error for an object whose bytes no longer match its digest."""
    return ObjectCorrupt(
        f"object {digest} is damaged (its bytes hash to {actual.hexdigest[:12]}…); re-add the data "
        "(or `mlv pull` it) to replace the bad copy; `mlv fsck` lists every damaged object",
        digest=digest,
        actual=actual,
    )


class ObjectStore:
    """Write-once blobs named by digest on any fsspec filesystem; never overwrites."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, *, pack_threshold: int = PACK_THRESHOLD) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.pack_threshold = pack_threshold
        self._index: dict[bytes, PackEntry] = {}
        self._loaded_packs: set[str] = set()
        self._loaded = False
        self._created = False
        self.unreadable: dict[str, str] = {}  # pack name -> why its index could not be read
        self._pack_handles: dict[str, BinaryIO] = {}  # a few open packs, for many small reads in a row

    @classmethod
    def local(cls, root: str | os.PathLike[str], **options: int) -> ObjectStore:
        return cls(fsspec.filesystem("file"), os.fspath(root), **options)

    # -- layout -------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def loose_path(self, digest: Digest) -> str:
        return self._path(digest.hexdigest[:2], digest.hexdigest[2:])

    def pack_path(self, name: str, suffix: str = ".pack") -> str:
        return self._path("packs", name + suffix)

    def create(self) -> None:
        """Lay out an empty store (idempotent) and record the format version.

        Called by ``mlv init`` and before the first write, so a fresh clone needs no init.
        """
        if self._created:
            return
        for sub in ("packs", "tmp"):
            self.fs.makedirs(self._path(sub), exist_ok=True)
        if not self.fs.exists(self._path("FORMAT")):
            self.fs.pipe_file(self._path("FORMAT"), FORMAT.encode())
        if not self.fs.exists(self._path("ID")):  # who this store is: caches of what it holds check it
            self.fs.pipe_file(self._path("ID"), uuid.uuid4().hex.encode())
        self._created = True

    def check_format(self) -> None:
        try:
            found = self.fs.cat_file(self._path("FORMAT")).decode()
        except FileNotFoundError:
            return  # created lazily on first write
        if found != FORMAT:
            raise StorageError(
                f"store at '{self.root}' has format {found.strip()!r}; this mlv reads {FORMAT.strip()!r}. "
                "Upgrade mlv, or point the cache elsewhere."
            )

    # -- lookup -------------------------------------------------------------------
    def refresh(self) -> None:
        """Load the indexes of packs that appeared since the last look."""
        self._loaded = True
        try:
            names = self.fs.ls(self._path("packs"), detail=False)
        except FileNotFoundError:
            return
        damaged = self.damaged()
        for path in names:
            base = path.rsplit("/", 1)[-1]
            if INDEX.match(base) and (name := base[:-4]) not in self._loaded_packs | set(self.unreadable):
                try:
                    entries = decode_index(self.fs.cat_file(path), name)
                except StorageError as exc:  # its objects read as missing; fsck names the index
                    self.unreadable[name] = str(exc)
                    continue
                for raw, entry in entries.items():
                    if (name, raw) not in damaged:
                        self._index.setdefault(raw, entry)
                self._loaded_packs.add(name)

    def damaged(self) -> set[tuple[str, bytes]]:
        """(pack, digest) pairs ``fsck`` found damaged: read as absent, so a re-add or pull stores them anew."""
        try:
            text = self.fs.cat_file(self._path("packs", DAMAGED)).decode()
        except FileNotFoundError:
            return set()
        pairs = (line.split() for line in text.splitlines())
        return {(p[0], bytes.fromhex(p[1])) for p in pairs if len(p) == 2 and len(p[1]) == 32}

    def quarantine(self, digest: Digest, *, pack: str | None = None) -> None:
        """Set a damaged object aside: a loose file moves to ``quarantine/``; a packed one is listed
        (with its pack) in ``packs/damaged`` and dropped from the index. Either way it reads as
        missing from now on, and storing the same bytes again repairs it."""
        entry = self.packed(digest)
        if pack is not None:
            entry = PackEntry(pack, 0, 0)
        if entry is None:
            self.fs.makedirs(self._path("quarantine"), exist_ok=True)
            self.fs.mv(self.loose_path(digest), self._path("quarantine", digest.hexdigest))
            return
        listed = sorted({*(f"{pack} {raw.hex()}" for pack, raw in self.damaged()), f"{entry.pack} {digest.hexdigest}"})
        tmp = self._tmp()
        self.fs.pipe_file(tmp, ("\n".join(listed) + "\n").encode())
        self.fs.mv(tmp, self._path("packs", DAMAGED))
        if (current := self._index.get(digest.raw)) is not None and current.pack == entry.pack:
            del self._index[digest.raw]

    def index(self) -> dict[bytes, PackEntry]:
        """Packed objects known so far (loaded on first use; ``refresh`` picks up new packs)."""
        if not self._loaded:
            self.refresh()
        return self._index

    def reset_index(self) -> None:
        """Forget loaded pack indexes (after gc removed packs); the next lookup reloads."""
        self._index, self._loaded_packs, self._loaded = {}, set(), False

    def packs(self) -> list[str]:
        self.refresh()
        return sorted(self._loaded_packs)

    def packed(self, digest: Digest) -> PackEntry | None:
        entry = self._index.get(digest.raw)
        if entry is None:
            self.refresh()
            entry = self._index.get(digest.raw)
        return entry

    def __contains__(self, digest: Digest) -> bool:
        return digest.raw in self.index() or self.fs.exists(self.loose_path(digest)) or self.packed(digest) is not None

    def absent(self, digests: Iterable[Digest]) -> list[Digest]:
        """Those of ``digests`` the store lacks: one look at the packs, then a stat per unpacked one
        (``in`` per digest would re-list the packs on every miss)."""
        self.refresh()
        local = isinstance(self.fs, LocalFileSystem)
        exists = os.path.exists if local else self.fs.exists
        return [d for d in digests if d.raw not in self._index and not exists(self.loose_path(d))]

    def size(self, digest: Digest) -> int:
        if (entry := self.packed(digest)) is not None:
            return entry.length
        try:
            return int(self.fs.size(self.loose_path(digest)))
        except FileNotFoundError:
            raise ObjectMissing(f"object {digest} is not in the store at '{self.root}'", digest=digest) from None

    def iter_loose(self) -> Iterator[tuple[Digest, str]]:
        """Every loose object as (digest, path); names that aren't digests are skipped."""
        try:
            tops = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            return
        for top in tops:
            prefix = top.rsplit("/", 1)[-1]
            if not _HEX2.match(prefix) or not self.fs.isdir(top):
                continue
            for path in self.fs.ls(top, detail=False):
                rest = path.rsplit("/", 1)[-1]
                if _HEX30.match(rest):
                    yield Digest.from_hex(prefix + rest), path

    def is_store(self) -> bool:
        """Whether the root holds an mlv store (its ``FORMAT`` and ``ID``), or nothing at all yet."""
        try:
            names = {p.rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False)}
        except FileNotFoundError:
            return True
        return not names or {"FORMAT", "ID"} <= names

    def iter_packed(self) -> Iterator[tuple[Digest, PackEntry]]:
        self.refresh()
        for raw, entry in self._index.items():
            yield Digest.from_raw(raw), entry

    # -- reading ------------------------------------------------------------------
    def open(self, digest: Digest, *, verify: bool = True) -> BinaryIO:
        """A stream of the object's bytes; with ``verify`` it raises ``ObjectCorrupt`` at EOF on mismatch."""
        entry = self.packed(digest)
        try:
            if entry is not None:
                try:
                    f = self.fs.open(self.pack_path(entry.pack), "rb")
                except FileNotFoundError:
                    raise self._pack_gone(digest, entry.pack) from None
                f.seek(entry.offset)
                length = entry.length
            else:
                f = self.fs.open(self.loose_path(digest), "rb")
                length = None
        except FileNotFoundError:
            hint = f" (the index of pack(s) {', '.join(sorted(self.unreadable))} is damaged: run `mlv fsck`)" \
                if self.unreadable else ""
            raise ObjectMissing(
                f"object {digest} is not in the store at '{self.root}'{hint}; "
                "fetch it from a remote (`mlv pull`) or re-add the data",
                digest=digest,
            ) from None
        return _Reader(f, digest, length, verify=verify)

    def _pack_gone(self, digest: Digest, pack: str) -> ObjectMissing:
        return ObjectMissing(
            f"object {digest} is not in the store at '{self.root}': its pack 'packs/{pack}.pack' is gone while its "
            "index remains; `mlv fsck` lists what it held, and `mlv pull` (or re-adding the data) brings it back",
            digest=digest,
        )

    def read_bytes(self, digest: Digest, *, verify: bool = True) -> bytes:
        """The whole object in memory (for small objects); packed ones reuse an open pack handle."""
        entry = self.packed(digest)
        if entry is None:
            with self.open(digest, verify=verify) as f:
                return f.read()
        f = self._pack_handles.get(entry.pack)
        if f is None:
            if len(self._pack_handles) >= 8:
                self._pack_handles.pop(next(iter(self._pack_handles))).close()
            try:
                f = self._pack_handles[entry.pack] = self.fs.open(self.pack_path(entry.pack), "rb")
            except FileNotFoundError:
                raise self._pack_gone(digest, entry.pack) from None
        f.seek(entry.offset)
        data = f.read(entry.length)
        if len(data) != entry.length:
            raise ObjectCorrupt(f"object {digest} is truncated ({entry.length - len(data)} bytes short)", digest=digest)
        if verify and (actual := digests.of_bytes(data)) != digest:
            raise damaged_error(digest, actual)
        return data

    def publish_pack(self, tmp: str, name: str, entries: dict[bytes, tuple[int, int]]) -> None:
        """Make a complete, durable pack file in ``tmp/`` visible as pack ``name``: the pack is
        renamed into place first, then its index is written, so the index never names missing bytes."""
        fs = self.fs
        fs.mv(tmp, self.pack_path(name))  # same name, same bytes: replacing a damaged copy repairs it
        idx_tmp = self._tmp() + ".idx"
        with fs.open(idx_tmp, "wb") as f:
            f.write(encode_index(entries))
            fsync_file(f)
        fs.mv(idx_tmp, self.pack_path(name, ".idx"))
        fsync_dir_of(fs, self._path("packs"))
        self._index.update({raw: PackEntry(name, off, n) for raw, (off, n) in entries.items()})
        self._loaded_packs.add(name)

    # -- writing ------------------------------------------------------------------
    @contextmanager
    def writer(self) -> Iterator[Writer]:
        """Batch writes: small objects share packs, sealed when the block exits cleanly."""
        w = Writer(self)
        try:
            yield w
        except BaseException:
            w.abort()
            raise
        w.commit()

    def put_bytes(self, data: bytes) -> Digest:
        with self.writer() as w:
            return w.put_bytes(data)

    def put_file(self, path: str | os.PathLike[str]) -> tuple[Digest, int]:
        with self.writer() as w:
            return w.put_file(path)

    def _tmp(self) -> str:
        self.fs.makedirs(self._path("tmp"), exist_ok=True)
        return self._path("tmp", uuid.uuid4().hex)


class _Reader(io.RawIOBase):
    """Reads ``length`` bytes (or to EOF) from ``f``, checking them against ``digest``."""

    def __init__(self, f: BinaryIO, digest: Digest, length: int | None, *, verify: bool) -> None:
        self._f, self.digest, self._left, self._verify = f, digest, length, verify
        self._hash = digests.hasher()
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:
        view = memoryview(b).cast("B")
        if self._left is not None:
            view = view[: self._left]
        n = self._f.readinto(view) if len(view) else 0
        if n:
            if self._verify:
                self._hash.update(view[:n])
            if self._left is not None:
                self._left -= n
            return n
        self._end()
        return 0

    def readall(self) -> bytes:
        """The rest in one read and one hash update (``read()`` of a whole object: ``RawIOBase``'s
        own ``readall`` goes 8 KiB at a time, a Python call each)."""
        data = self._f.read() if self._left is None else self._f.read(self._left)
        if self._verify:
            self._hash.update(data)
        if self._left is not None:
            self._left -= len(data)
        self._end()
        return data

    def _end(self) -> None:
        """At EOF: every byte arrived, and they hash to the digest."""
        if self._left:
            raise ObjectCorrupt(f"object {self.digest} is truncated ({self._left} bytes short)", digest=self.digest)
        if self._verify and not self._done:
            self._done = True
            actual = Digest(digests.ALGORITHM, self._hash.hexdigest())
            if actual != self.digest:
                raise damaged_error(self.digest, actual)

    def close(self) -> None:
        self._f.close()
        super().close()

