"""Walking workspace paths: one ``scandir`` pass that yields what the store needs to know.

Symlinks are followed when their target lies inside the repo (the content is stored)
and refused when it leads outside: data the repo does not own is not silently versioned.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from mlv.storage import digest as digests
from mlv.storage.errors import UsageError

SKIP_NAMES = frozenset({".git", ".mlv"})


@dataclass(frozen=True, slots=True)
class FileStat:
    """One regular file found by a walk (``rel`` is relative to the walked directory)."""

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
    while stack:
        directory, rel_dir = stack.pop()
        with os.scandir(directory) as it:
            for entry in it:
                if entry.name in SKIP_NAMES:
                    continue
                rel = f"{rel_dir}{entry.name}"
                if entry.is_symlink():
                    _check_symlink(entry.path, root_real, top)
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    raise UsageError(f"'{entry.path}' is a broken symlink; remove it or point it at a file") from None
                if stat.S_ISDIR(st.st_mode):
                    real = os.path.realpath(entry.path)
                    if real not in seen:
                        seen.add(real)
                        stack.append((entry.path, rel + "/"))
                elif stat.S_ISREG(st.st_mode):
                    out.append(
                        FileStat(rel, entry.path, st.st_ino, st.st_mtime_ns, st.st_size, bool(st.st_mode & 0o100))
                    )
    out.sort(key=lambda f: f.rel)
    return out


def stat_file(path: Path, *, repo_root: Path) -> FileStat:
    if path.is_symlink():
        _check_symlink(os.fspath(path), os.path.realpath(repo_root), path)
    st = path.stat()
    return FileStat("", os.fspath(path), st.st_ino, st.st_mtime_ns, st.st_size, bool(st.st_mode & 0o100))


def fingerprint(files: list[FileStat]) -> str:
    """A digest of every file's stat: equal fingerprints mean nothing was touched."""
    h = digests.hasher()
    for f in files:
        h.update(f"{f.rel}\0{f.inode}\0{f.mtime_ns}\0{f.size}\0{int(f.executable)}\n".encode())
    return h.hexdigest()


def _check_symlink(path: str, root_real: str, top: Path) -> None:
    target = os.path.realpath(path)
    if os.path.commonpath([target, root_real]) != root_real:
        raise UsageError(
            f"'{path}' is a symlink to '{target}', outside the repo; mlv only versions data the repo holds. "
            "Copy the data into the repo, or remove the link."
        )
