"""Crash-safe replacement of workspace files, and the temp files that makes.

Write to a temp file in the same directory, fsync it, rename over the target, fsync
the directory: a reader sees the old file or the new one, never a torn one.

Every temp file mlv makes in the workspace (here, and by checkout's ``Linker``) is named
``temp_name()``: ``.mlv-<pid>-<random>.tmp``, short whatever the target's name (a file
name near NAME_MAX still gets one) and recognisable. A kill leaves one behind at worst;
walks never take it for user data (``is_temp``), and the next checkout removes it once
the process that made it is gone (``stale``).
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

_TEMP = re.compile(r"^\.mlv-([0-9a-f]{1,8})-[0-9a-f]{8}\.tmp$")


def temp_name() -> str:
    """A fresh temp file name for this process.

    >>> bool(is_temp(temp_name())), len(temp_name()) <= 27
    (True, True)
    """
    return f".mlv-{os.getpid():x}-{uuid.uuid4().hex[:8]}.tmp"


def is_temp(name: str) -> bool:
    """Whether ``name`` is one of mlv's temp files (never user data)."""
    return name.startswith(".mlv-") and _TEMP.match(name) is not None


def stale(name: str) -> bool:
    """Whether the temp file ``name`` was left by a process that no longer runs."""
    m = _TEMP.match(name)
    if m is None:
        return False
    pid = int(m.group(1), 16)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def remove_stale(paths: list[str]) -> None:
    """Remove the temp files in ``paths`` whose makers are gone (one a live process writes stays)."""
    for path in paths:
        if stale(os.path.basename(path)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename still happened
    finally:
        os.close(fd)


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once, at import: os.umask can only be read by setting it


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (mode 0666 less the umask, like any new file)."""
    path = Path(path)
    tmp = path.with_name(temp_name())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # teammates and CI must read pointers and locks
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))
