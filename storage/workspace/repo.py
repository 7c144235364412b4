"""The workspace: a repo root with ``.mlv/``, its config, store, stat cache and lock.

Small on purpose (root, config, store, state): operations live in their own modules
and take a ``Workspace``. Paths given by users are validated here: they must exist
where needed and lie inside the repo, outside ``.mlv/`` and ``.git/``.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

from mlv.storage.workspace import config as configs
from mlv.storage.workspace import pointers
from mlv.storage.errors import LockedError, NotARepoError, UsageError

DOT = ".mlv"
DOT_GITIGNORE = "/cache/\n/tmp/\n/runs/\n/state.db*\n/lock\n/run.lock\n/config.local.yaml\n"


class Workspace:
    """A repo root that holds ``.mlv/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dot = root / DOT
        self.config = configs.load_repo(self.dot)  # config.yaml, overridden by config.local.yaml

    @classmethod
    def find(cls, start: Path | None = None) -> Workspace:
        """The repo containing ``start`` (default: cwd); ``NotARepoError`` if none."""
        start = (start or Path.cwd()).resolve()
        for d in (start, *start.parents):
            if (d / DOT).is_dir():
                return cls(d)
        raise NotARepoError(f"'{start}' is not inside an mlv repo; run `mlv init` at the project's root first")

    @classmethod
    def init(cls, root: Path) -> tuple[Workspace, bool]:
        """Create ``.mlv/`` at ``root``; idempotent; refuses to nest inside another repo."""
        root = root.resolve()
        for d in root.parents:
            if (d / DOT).is_dir():
                raise NotARepoError(
                    f"'{root}' is inside the mlv repo at '{d}'; nested repos are not supported. "
                    f"Run mlv commands from '{d}' instead."
                )
        if root.exists() and not root.is_dir():
            raise UsageError(f"'{root}' is a file; `mlv init` needs a directory")
        created = not (root / DOT).is_dir()
        (root / DOT).mkdir(parents=True, exist_ok=True)
        if not (root / DOT / "config.yaml").exists():
            from mlv.storage.workspace import configedit

            configedit.write_template(root / DOT / "config.yaml")
        ws = cls(root)
        ws.store.create()
        if ws.in_git:
            ignore = root / DOT / ".gitignore"
            if not ignore.exists():
                ignore.write_text(DOT_GITIGNORE)
        return ws, created

    # -- parts --------------------------------------------------------------------
    @cached_property
    def cache_dir(self) -> Path:
        return (self.dot / self.config.cache_dir).resolve()

    @cached_property
    def store(self):  # -> ObjectStore; imported here so `mlv status` need not load fsspec
        from mlv.storage.store.objects import ObjectStore

        store = ObjectStore.local(self.cache_dir)
        store.check_format()
        return store

    @cached_property
    def state(self):  # -> StatCache
        from mlv.storage.workspace.statcache import StatCache

        state = StatCache(self.dot / "state.db")
        try:
            store_id = (self.cache_dir / "ID").read_text().strip()
        except FileNotFoundError:
            store_id = None
        state.bind(store_id)  # a wiped or swapped cache voids what the state knew was stored
        return state

    @cached_property
    def in_git(self) -> bool:
        return any((d / ".git").exists() for d in (self.root, *self.root.parents))

    # -- paths --------------------------------------------------------------------
    def resolve(self, path: str | os.PathLike[str], *, must_exist: bool = True) -> Path:
        """An absolute path inside the repo for a user-given path (symlinks in it not followed)."""
        p = Path(os.path.abspath(Path.cwd() / path))
        try:
            rel = p.relative_to(self.root)
        except ValueError:
            raise UsageError(f"'{path}' is outside the repo at '{self.root}'; mlv tracks only paths inside it") from None
        if rel.parts and rel.parts[0] in (DOT, ".git"):
            raise UsageError(f"'{path}' is inside '{rel.parts[0]}/', which mlv manages itself")
        if must_exist and not p.exists() and not p.is_symlink():
            raise UsageError(f"'{path}' does not exist")
        return p

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def pointer_files(self) -> list[Path]:
        """Every ``*.mlv`` pointer in the workspace; tracked data directories are not descended."""
        found: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            names = set(filenames)
            dirnames[:] = [d for d in dirnames if d not in (DOT, ".git") and d + pointers.SUFFIX not in names]
            found.extend(Path(dirpath, f) for f in filenames if f.endswith(pointers.SUFFIX) and f != pointers.SUFFIX)
        return sorted(found)

    # -- locking ------------------------------------------------------------------
    @contextmanager
    def lock(self, *, exclusive: bool = False, wait: float = 10.0) -> Iterator[None]:
        """Hold ``.mlv/lock``: shared for add/checkout, exclusive for gc.

        ``flock`` locks die with their process, so a killed mlv never leaves a stale lock.
        """
        fd = os.open(self.dot / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LockedError(
                            f"the repo at '{self.root}' is busy: "
                            + ("another mlv command (add, checkout, run or gc)" if exclusive else "`mlv gc`")
                            + " holds its lock. Try again when it finishes."
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)
