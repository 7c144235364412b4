"""Materializing objects into the workspace: reflink, hardlink, symlink or copy.

Every mode writes to a temp name beside the destination and renames it into place,
so a workspace file is either its old bytes or the complete new ones. With ``verify``
(the default) the object's bytes are hashed on the way and a mismatch raises
``ObjectCorrupt`` before anything is renamed: damaged data is never served.
Packed objects have no file of their own, so they are always copied. Hard- and
symlinked cache files are made read-only so an edit in the workspace can't damage them;
as root, where read-only bits stop nothing, hardlink and symlink fall back to ``auto``
(reflink, else copy) and ``Linker.note`` says so.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path

from fsspec.implementations.local import LocalFileSystem
from mlv.storage.store import digest as digests
from mlv.storage.atomic import temp_name
from mlv.storage.store.digest import CHUNK, Digest
from mlv.storage.errors import ObjectMissing, UsageError
from mlv.storage.store.objects import ObjectStore, damaged_error

FICLONE = 0x40049409  # linux/fs.h
_NO_REFLINK = {errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS}


class Linker:
    """Writes objects of one store into the workspace with one configured mode."""

    def __init__(self, store: ObjectStore, mode: str = "auto", *, verify: bool = True) -> None:
        self.store = store
        self.note: str | None = None  # why the configured mode was not used, for a one-line warning
        if mode in ("hardlink", "symlink") and os.geteuid() == 0:
            # read-only mode bits are what keep an edit in the workspace out of a linked store file,
            # and they do not stop root: `echo x >> data/big.bin` would corrupt the only stored copy
            self.note = (f"`cache.link: {mode}` cannot protect the store when mlv runs as root (permission bits "
                         "do not stop root), so files were reflinked or copied instead")
            mode = "auto"
        self.mode = mode
        self.verify = verify
        self._reflink_ok = mode in ("auto", "reflink")

    def probe(self, workspace: Path) -> None:
        """With ``link: reflink``, fail before touching the workspace if the filesystem can't clone."""
        if self.mode != "reflink":
            return
        src = Path(self.store._tmp())
        src.write_bytes(b"mlv reflink probe")
        dst = workspace / temp_name()
        try:
            self._reflink(str(src), dst)
        finally:
            for p in (src, dst):
                if p.exists():
                    p.unlink()

    def materialize(self, digest: Digest, dest: Path, *, executable: bool = False) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(temp_name())  # short: a name near NAME_MAX still gets a temp file
        loose = None if self.store.packed(digest) is not None else self.store.loose_path(digest)
        try:
            if loose is not None and self.mode in ("hardlink", "symlink"):
                self._check(digest, loose)
                os.chmod(loose, 0o444)
                (os.link if self.mode == "hardlink" else os.symlink)(loose, tmp)
            elif loose is not None and self._reflink_ok and self._reflink(loose, tmp):
                self._check(digest, loose)
            else:
                self._copy(digest, tmp)
            if self.mode not in ("hardlink", "symlink") or loose is None:
                os.chmod(tmp, 0o755 if executable else 0o644)
            os.replace(tmp, dest)
        except BaseException:
            if tmp.exists() or tmp.is_symlink():
                tmp.unlink()
            raise

    def _check(self, digest: Digest, path: str) -> None:
        if self.verify and (actual := digests.of_file(path)[0]) != digest:
            raise damaged_error(digest, actual)

    def _reflink(self, src: str, dst: Path) -> bool:
        with open(src, "rb") as s, open(dst, "wb") as d:
            try:
                fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
                return True
            except OSError as exc:
                if exc.errno not in _NO_REFLINK:
                    raise
        dst.unlink()
        if self.mode == "reflink":
            raise UsageError(
                f"the filesystem under '{dst.parent}' does not support reflinks; "
                "set `cache.link: auto` or `copy` in .mlv/config.yaml"
            )
        self._reflink_ok = False
        return False

    def _copy(self, digest: Digest, dst: Path) -> None:
        if self.store.packed(digest) is not None:  # small: one read from an open pack, one write
            data = self.store.read_bytes(digest, verify=self.verify)
            with open(dst, "wb") as out:
                out.write(data)
            return
        if isinstance(self.store.fs, LocalFileSystem):  # the kernel copies; we hash what was written
            try:
                shutil.copyfile(self.store.loose_path(digest), dst)
            except FileNotFoundError:
                raise ObjectMissing(f"object {digest} is not in the store", digest=digest) from None
            self._check(digest, os.fspath(dst))
            return
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        with self.store.open(digest, verify=self.verify) as src, open(dst, "wb") as out:
            while n := src.readinto(buf):
                out.write(view[:n])
