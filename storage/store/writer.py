"""Putting objects into a store: small ones accumulate in a pack, large ones become loose files.

A ``Writer`` is what ``ObjectStore.writer()`` hands out: objects below the store's pack
threshold are appended to one pack file (buffered, sealed at ``PACK_SIZE`` or on
``commit``: bytes made durable, renamed into place, then the index), larger ones are
copied to a temp file, hashed, fsynced and renamed to their name. An ``abort`` leaves
nothing but a temp file ``gc`` removes.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem
from mlv.storage.atomic import fsync_dir
from mlv.storage.errors import ObjectCorrupt
from mlv.storage.store import digest as digests
from mlv.storage.store.digest import CHUNK, Digest

if TYPE_CHECKING:
    from mlv.storage.store.objects import ObjectStore

PACK_SIZE = 64 * 1024 * 1024  # a pack is sealed once it holds this many bytes
COPY_STEP = 16 * 1024 * 1024  # a kernel copy that reports progress does it in steps of this many bytes
Progress = Callable[[int], None]
WRITE_BUFFER = 4 * 1024 * 1024


class Writer:
    """Puts objects into one store; small ones accumulate in a pack until ``commit``."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        store.create()
        self._pack: BinaryIO | None = None
        self._pack_tmp = ""
        self._pack_hash = digests.hasher()
        self._pack_entries: dict[bytes, tuple[int, int]] = {}
        self._pack_bytes = 0
        self._buf = bytearray()
        self.written = 0  # objects newly stored, for reporting
        self.repack = False  # gc: pack objects even though an older pack holds them
        self.replace: set[bytes] = set()  # loose objects known damaged: overwrite them with verified bytes

    def put_bytes(self, data: bytes | memoryview, digest: Digest | None = None) -> Digest:
        digest = digest or digests.of_bytes(data)
        if len(data) < self.store.pack_threshold:
            self._append(digest, data)
        elif digest not in self.store:
            self._put_loose(io.BytesIO(data), digest)
        return digest

    def put_file(self, path: str | os.PathLike[str], *, progress: Progress | None = None) -> tuple[Digest, int]:
        """Store a local file, streaming it; returns its digest and size. ``progress`` is told
        the bytes as they are stored, chunk by chunk (a bar moves while a big file goes in)."""
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size < self.store.pack_threshold:
                data = f.read()
                digest = self.put_bytes(data)
                if progress is not None:
                    progress(len(data))
                return digest, len(data)
            if isinstance(self.store.fs, LocalFileSystem):
                return self._copy_loose(path, progress), size
            return self._put_loose(f, None, progress), size

    def _copy_loose(self, path: str | os.PathLike[str], progress: Progress | None = None) -> Digest:
        """Local store: the kernel copies the bytes (``sendfile``, as ``cp`` does), then we hash the copy.

        Pushing a large file through Python buffers costs several times a kernel copy here.
        Hashing the copy, not the source, keeps the invariant exact: the object is named by
        the bytes it holds, even if the source changes meanwhile.
        """
        tmp = self.store._tmp()
        try:
            if progress is None:
                shutil.copyfile(path, tmp)
            else:
                _copy_reporting(path, tmp, progress)
            digest = digests.of_file(tmp)[0]
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            return self._place(tmp, digest)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _append(self, digest: Digest, data: bytes | memoryview) -> None:
        raw = digest.raw
        if raw in self._pack_entries:
            return
        if not self.repack and raw in self.store.index():
            return  # another process may pack it too; a duplicate costs bytes, never correctness
        if self._pack is None:
            self._pack_tmp = self.store._tmp() + ".pack"
            self._pack = self.store.fs.open(self._pack_tmp, "wb")
        self._buf += data
        if len(self._buf) >= WRITE_BUFFER:
            self._flush()
        self._pack_entries[raw] = (self._pack_bytes, len(data))
        self._pack_bytes += len(data)
        self.written += 1
        if self._pack_bytes >= PACK_SIZE:
            self._seal()

    def _flush(self) -> None:
        """Write buffered pack bytes in one call: many tiny writes cost more than the bytes."""
        if self._buf and self._pack is not None:
            self._pack.write(self._buf)
            self._pack_hash.update(self._buf)
            self._buf = bytearray()

    def _put_loose(self, src: BinaryIO, expected: Digest | None, progress: Progress | None = None) -> Digest:
        """Copy ``src`` into a temp object while hashing, then rename it into place."""
        fs = self.store.fs
        tmp = self.store._tmp()
        h = digests.hasher()
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            with fs.open(tmp, "wb") as out:
                while n := src.readinto(buf):
                    h.update(view[:n])
                    out.write(view[:n])
                    if progress is not None:
                        progress(n)
                fsync_file(out)
            digest = Digest(digests.ALGORITHM, h.hexdigest())
            if expected is not None and digest != expected:
                raise ObjectCorrupt(f"bytes for {expected} hash to {digest}", digest=expected, actual=digest)
            return self._place(tmp, digest)
        except BaseException:
            if fs.exists(tmp):
                fs.rm_file(tmp)
            raise

    def _place(self, tmp: str, digest: Digest) -> Digest:
        """Rename a complete, durable temp object to its name (or drop it if that object exists)."""
        fs = self.store.fs
        final = self.store.loose_path(digest)
        if fs.exists(final) and digest.raw not in self.replace:
            fs.rm_file(tmp)
        else:
            parent = final.rsplit("/", 1)[0]
            if not fs.exists(parent):
                fs.makedirs(parent, exist_ok=True)
                fsync_dir_of(fs, self.store.root)
            fs.mv(tmp, final)
            fsync_dir_of(fs, parent)  # the rename is durable before any pointer names the object
            self.written += 1
        return digest

    def _seal(self) -> None:
        """Make the current pack durable and visible: bytes, rename, then index."""
        if self._pack is None:
            return
        self._flush()
        fsync_file(self._pack)
        self._pack.close()
        self.store.publish_pack(self._pack_tmp, self._pack_hash.hexdigest(), self._pack_entries)
        self._pack, self._pack_tmp = None, ""
        self._pack_hash = digests.hasher()
        self._pack_entries, self._pack_bytes = {}, 0

    def put_verified(self, tmp: str, expected: Digest) -> Digest:
        """Adopt a temp file written into this store's ``tmp/`` (a download) as ``expected``:
        its bytes are hashed first, and a mismatch is ``ObjectCorrupt`` with the file removed."""
        fs = self.store.fs
        try:
            with fs.open(tmp, "rb") as f:
                actual, _ = digests.of_stream(f)
            if actual != expected:
                raise ObjectCorrupt(f"bytes for {expected} hash to {actual}", digest=expected, actual=actual)
            if isinstance(fs, LocalFileSystem):
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
            return self._place(tmp, expected)
        except BaseException:
            if fs.exists(tmp):
                fs.rm_file(tmp)
            raise

    def commit(self) -> None:
        self._seal()

    def abort(self) -> None:
        if self._pack is not None:
            self._pack.close()
            self.store.fs.rm_file(self._pack_tmp)
            self._pack = None
            self._buf = bytearray()


def fsync_file(f: BinaryIO) -> None:
    """fsync where the filesystem has file descriptors (local); object stores commit on close."""
    f.flush()
    fileno = getattr(f, "fileno", None)
    if fileno is not None:
        try:
            os.fsync(fileno())
        except io.UnsupportedOperation:
            pass  # not a real file descriptor: the object store commits on close
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: this filesystem has no fsync; anything else is real
                raise


def fsync_dir_of(fs: fsspec.AbstractFileSystem, path: str) -> None:
    if isinstance(fs, LocalFileSystem):
        fsync_dir(path)


def _copy_reporting(source: str | os.PathLike[str], target: str, progress: Progress) -> None:
    """Copy a file as ``shutil.copyfile`` does (in the kernel where it can), telling ``progress`` each step."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        offset = 0
        try:
            while n := os.sendfile(dst.fileno(), src.fileno(), offset, COPY_STEP):
                offset += n
                progress(n)
            return
        except OSError as exc:  # no file-to-file sendfile here (not Linux): plain reads and writes
            if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSOCK, errno.EOPNOTSUPP) or offset:
                raise
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            progress(len(chunk))
