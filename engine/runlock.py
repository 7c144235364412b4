"""``.mlv/run.lock``: one ``mlv run`` (or ``mlv score``) per repo at a time; this module owns the file."""

from __future__ import annotations

import fcntl
import os

from mlv.storage.errors import LockedError
from mlv.storage.workspace import Workspace


class RunLock:
    """``.mlv/run.lock``: one ``mlv run`` per repo. flock dies with its process, so a killed run frees it."""

    def __init__(self, ws: Workspace) -> None:
        self.path = ws.dot / "run.lock"

    def __enter__(self) -> RunLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise LockedError(
                f"another `mlv run` (pid {owner}) is running in this repo; wait for it to finish "
                "(its lock is released the moment it exits, even if it is killed)"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
