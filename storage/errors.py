"""Every user-facing error in mlv is an ``MlvError``; this is the bottom layer, so it lives here.

An error carries the exit code the CLI should use (DESIGN.md, "Exit codes"):
2 — the request itself is wrong and nothing was attempted (usage, syntax, bad path,
no repo); 1 — the operation ran and failed or found a problem (corrupt data, a failed
stage, a repo locked by a live process). Messages lead with the subject, quote user
names with '…', and say how to fix; the CLI prints them without a traceback.
"""

from __future__ import annotations


class MlvError(Exception):
    """Base of all errors a user should see as a message, not a traceback."""

    exit_code = 1


class UsageError(MlvError):
    """The request is wrong (bad path, bad argument); nothing was attempted."""

    exit_code = 2


class NotARepoError(UsageError):
    """No ``.mlv/`` found above the working directory, or a nested repo was refused."""


class ConfigError(UsageError):
    """A config, pointer or lock file is malformed; ``path`` and ``line`` say where."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class StorageError(MlvError):
    """The store could not do what was asked (missing or damaged data, I/O failure)."""


class ObjectMissing(StorageError):
    """An object named by a digest is not in the store."""

    def __init__(self, message: str, *, digest: object = None) -> None:
        super().__init__(message)
        self.digest = digest


class ObjectCorrupt(StorageError):
    """An object's bytes no longer hash to its digest."""

    def __init__(self, message: str, *, digest: object = None, actual: object = None) -> None:
        super().__init__(message)
        self.digest = digest
        self.actual = actual


class LockedError(MlvError):
    """Another live process holds the repository lock."""


class UnsavedChangesError(UsageError):
    """A checkout would destroy bytes that exist nowhere in the store; needs ``--force``."""
