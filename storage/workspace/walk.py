"""Walking workspace paths: one ``scandir`` pass that yields what the store needs to know.

Symlinks are followed when their target lies inside the repo (the content is stored)
and refused when it leads outside, or into ``.git/``/``.mlv/``: data the repo does not
own is not silently versioned. ``.git`` and ``.mlv`` themselves are never walked (in any
letter case, as the paths rule says), and mlv's own temp files (``atomic.is_temp``) are
not data: they are listed apart, for the next checkout to remove. A name that is not
UTF-8, or a symlink loop, is a ``UsageError`` naming the path.
"""

from __future__ import annotations

import errno
import marshal
import os
import stat
from pathlib import Path
from typing import NamedTuple

from mlv.storage.store import digest as digests
from mlv.storage.atomic import is_temp
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


def walk(top: Path, *, repo_root: Path, leftovers: list[str] | None = None) -> list[FileStat]:
    """Every regular file under ``top``, sorted by relative path; mlv temp files go to ``leftovers``."""
    out: list[FileStat] = []
    root_real = os.path.realpath(repo_root)
    seen: set[str] = {os.path.realpath(top)}
    stack = [(os.fspath(top), "")]
    append, is_dir, is_reg, new = out.append, stat.S_ISDIR, stat.S_ISREG, tuple.__new__  # the loop runs per file
    while stack:
        directory, rel_dir = stack.pop()
        with os.scandir(directory) as it:
            for entry in it:
                name = entry.name
                if name[0] == "." and (name.lower() in SKIP_NAMES or is_temp(name)):
                    if leftovers is not None and is_temp(name):
                        leftovers.append(entry.path)
                    continue
                if not name.isascii():
                    _check_name(entry.path)
                if entry.is_symlink():
                    _check_symlink(entry.path, root_real)
                try:
                    st = entry.stat()
                except OSError as exc:
                    raise _stat_error(entry, exc) from None
                mode = st.st_mode
                if is_reg(mode):
                    append(new(FileStat, (rel_dir + name, entry.path, st.st_ino, st.st_mtime_ns, st.st_size,
                                          mode & 0o100 != 0)))
                elif is_dir(mode):
                    real = os.path.realpath(entry.path)
                    if real not in seen:
                        seen.add(real)
                        stack.append((entry.path, rel_dir + name + "/"))
    out.sort()  # by rel, the first field (rels are unique)
    return out


def stat_file(path: Path, *, repo_root: Path) -> FileStat:
    if path.is_symlink():
        _check_symlink(os.fspath(path), os.path.realpath(repo_root))
    st = path.stat()
    return FileStat("", os.fspath(path), st.st_ino, st.st_mtime_ns, st.st_size, bool(st.st_mode & 0o100))


def check_inside(path: Path, *, repo_root: Path) -> None:
    """``path`` (a stage output, a target) resolves inside the repo and outside ``.git/``/``.mlv/``,
    whatever symlinks lie on the way; else a ``UsageError`` naming the link."""
    _check_symlink(os.fspath(path), os.path.realpath(repo_root))


def fingerprint(files: list[FileStat]) -> str:
    """A digest of every file's stat: equal fingerprints mean nothing was touched."""
    if not files:
        return digests.hasher().hexdigest()
    rel, _, inode, mtime, size, executable = zip(*files)  # columns, serialised in C: this runs on every status
    h = digests.hasher()
    h.update(marshal.dumps((rel, inode, mtime, size, executable), 4))
    return h.hexdigest()


def _check_symlink(path: str, root_real: str) -> None:
    target = os.path.realpath(path)
    if os.path.commonpath([target, root_real]) != root_real:
        raise UsageError(
            f"'{path}' leads to '{target}' through a symlink, outside the repo; mlv only versions data the repo holds. "
            "Copy the data into the repo, or remove the link."
        )
    inside = os.path.relpath(target, root_real)
    if inside != "." and any(part.lower() in SKIP_NAMES for part in inside.split(os.sep)):
        raise UsageError(f"'{path}' leads into '{inside}' through a symlink, and git or mlv manages that; "
                         "remove the link")


def _stat_error(entry: os.DirEntry, exc: OSError) -> Exception:
    if isinstance(exc, FileNotFoundError):
        return UsageError(f"'{entry.path}' is a broken symlink; remove it or point it at a file")
    if exc.errno == errno.ELOOP:
        return UsageError(f"'{entry.path}' is a symlink loop (it leads back to itself); remove it")
    return exc


def _check_name(path: str) -> None:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", errors="backslashreplace")
        raise UsageError(f"'{shown}' has a name that is not UTF-8 text; mlv stores names as UTF-8 so every "
                         "clone and platform sees the same path. Rename it (e.g. `mv` it to an ASCII name)") from None
