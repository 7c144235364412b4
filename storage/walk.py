"""Walking workspace paths: one ``scandir`` pass that yields what the store needs to know.

Symlinks are followed when their target lies inside the repo (the content is stored)
and refused when it leads outside: data the repo does not own is not silently versioned.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import NamedTuple

from mlv.storage import digest as digests
from mlv.storage.errors import UsageError

SKIP_NAMES = frozenset({".git", ".mlv"})


class FileStat(NamedTuple):
    """One regular file found by a walk (``rel`` is relative to the walked directory).

    A named tuple, not a dataclass: a walk makes one per file, and tuples are the
    cheapest Python object to build and sort (status of 20,000 files is mostly this).
    """

    rel: str
    path: str  # absolute
    inode: int
    mtime_ns: int
    size: int
    executable: bool


def walk(top: Path, *, repo_root: Path) -> list[FileStat]:
    """Every regular file under ``top``, sorted by relative path."""
    out: list[FileStat] = []
    seen: set[str] = {os.path.realpath(top)}
    root_real = os.path.realpath(repo_root)
    stack = [(os.fspath(top), "")]
    append, is_dir, is_reg = out.append, stat.S_ISDIR, stat.S_ISREG
    while stack:
        directory, rel_dir = stack.pop()
        with os.scandir(directory) as it:
            for entry in it:
                name = entry.name
                if name in SKIP_NAMES:
                    continue
                if entry.is_symlink():
                    _check_symlink(entry.path, root_real, top)
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    raise UsageError(f"'{entry.path}' is a broken symlink; remove it or point it at a file") from None
                mode = st.st_mode
                if is_reg(mode):
                    append(FileStat(rel_dir + name, entry.path, st.st_ino, st.st_mtime_ns, st.st_size, bool(mode & 0o100)))
                elif is_dir(mode):
                    real = os.path.realpath(entry.path)
                    if real not in seen:
                        seen.add(real)
                        stack.append((entry.path, rel_dir + name + "/"))
    out.sort()  # by rel, the first field (rels are unique)
    return out


def stat_file(path: Path, *, repo_root: Path) -> FileStat:
    if path.is_symlink():
        _check_symlink(os.fspath(path), os.path.realpath(repo_root), path)
    st = path.stat()
    return FileStat("", os.fspath(path), st.st_ino, st.st_mtime_ns, st.st_size, bool(st.st_mode & 0o100))


def fingerprint(files: list[FileStat]) -> str:
    """A digest of every file's stat: equal fingerprints mean nothing was touched."""
    h = digests.hasher()
    h.update("".join([f"{f[0]}\0{f[2]}\0{f[3]}\0{f[4]}\0{f[5]:d}\n" for f in files]).encode())
    return h.hexdigest()


def _check_symlink(path: str, root_real: str, top: Path) -> None:
    target = os.path.realpath(path)
    if os.path.commonpath([target, root_real]) != root_real:
        raise UsageError(
            f"'{path}' is a symlink to '{target}', outside the repo; mlv only versions data the repo holds. "
            "Copy the data into the repo, or remove the link."
        )
