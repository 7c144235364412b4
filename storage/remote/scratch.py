"""A worker's own store and a job's scratch directory: how bytes reach a worker that shares only a remote.

With ``workspace: remote`` (``dask-cluster.yaml``) a worker has no repo. It keeps a cache of
its own, a bare mlv workspace at a folder of its choosing::

    <root>/.mlv/cache/            objects (the store), packed as anywhere else
    <root>/.mlv/state.db          what it saw on the remote: pack indexes, listings, complete objects
    <root>/jobs/<name>/work/      one job's scratch directory: its deps, then its outputs
    <root>/jobs/<name>/state.db   that job's stat cache (files there are new: nothing is trusted from another job)

A job's deps are fetched by digest into the cache — only what it lacks, every byte hashed on
the way in (``storage.fetch``) — then materialized into the scratch directory through
``Linker``, hashed again on the way out. A dep the cache already holds costs no request at
all. The scratch directory is removed after the job; the cache lives as long as its folder.

The remote's settings travel to the worker as plain data (``settings``): the committed
``remotes.NAME`` keys, which never hold credentials. The worker reaches the remote with its
own environment (AWS variables, profiles, instance roles).
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from mlv.storage.store import manifest
from mlv.storage import paths
from mlv.storage.workspace.config import RemoteConfig, local_path, parse_remote
from mlv.storage.store.digest import Digest
from mlv.storage.errors import StorageError
from mlv.storage.workspace.links import Linker
from mlv.storage.workspace.references import Roots
from mlv.storage.remote.access import RemoteError, filesystem
from mlv.storage.remote.remotes import Remote
from mlv.storage.workspace.tracking import in_cache
from mlv.storage.workspace import DOT, Workspace

JOBS = "jobs"


@dataclass(frozen=True, slots=True)
class Input:
    """A dep to lay out: its path (relative to the repo root) and the version it must hold."""

    path: str
    digest: Digest
    is_dir: bool


def settings(config: RemoteConfig, repo: Path) -> dict:
    """A remote's settings as a job carries them: the committed keys (never credentials), and a local
    remote's folder made absolute, since a worker has no repo to resolve it against.

    >>> settings(RemoteConfig("o", "../store"), Path("/repo"))
    {'name': 'o', 'url': '/store'}
    """
    found = {"name": config.name, **config.to_dict()}
    if (folder := local_path(config, repo)) is not None:
        found["url"] = os.fspath(folder)
    return found


def connect(found: dict, cache: Workspace, *, jobs: int = 8) -> Remote:
    """The remote ``settings`` describe, reached from a worker (its listings remembered in the cache)."""
    config = parse_remote(found.get("name"), {k: v for k, v in found.items() if k != "name"})
    fs, root = filesystem(config, cache.root, jobs=jobs)
    remote = Remote(config, fs, root, cache.dot / "state.db")
    remote.jobs = jobs
    return remote


def open_cache(root: Path) -> Workspace:
    """The worker cache at ``root`` (created on first use)."""
    (root / DOT).mkdir(parents=True, exist_ok=True)
    cache = Workspace(root)
    cache.store.create()
    return cache


class Scratch(Workspace):
    """A job's scratch directory seen as a workspace: files under ``root``, objects in the worker's cache."""

    in_git = False

    def __init__(self, root: Path, cache: Workspace) -> None:  # no config of its own: the cache's
        self.root = root
        self.dot = cache.dot
        self.config = cache.config
        self.cache = cache

    @cached_property
    def cache_dir(self) -> Path:
        return self.cache.cache_dir

    @cached_property
    def store(self):  # -> ObjectStore
        return self.cache.store

    @cached_property
    def state(self):  # -> StatCache: the job's own
        from mlv.storage.workspace.statcache import StatCache

        state = StatCache(self.root.parent / "state.db")
        state.bind((self.cache_dir / "ID").read_text().strip())  # the cache is created before any job
        return state


@contextmanager
def scratch(cache: Workspace, name: str) -> Iterator[Scratch]:
    """A new, empty scratch directory for one job, removed (whatever the job left there) afterwards."""
    top = cache.root / JOBS / f"{name}-{uuid.uuid4().hex[:8]}"
    (top / "work").mkdir(parents=True)
    space = Scratch(top / "work", cache)
    try:
        yield space
    finally:
        if "state" in space.__dict__:
            space.state.close()
        shutil.rmtree(top, onerror=_writable_then_retry)


def _writable_then_retry(function, path: str, exc_info) -> None:
    """A stage may leave read-only folders behind: make the parent writable and try once more."""
    parent = os.path.dirname(path)
    try:
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        function(path)
    except OSError:
        pass  # left for the next job's look at jobs/ (nothing reads it); the stage's result stands


def materialize(space: Scratch, inputs: list[Input], remote: Remote | None) -> int:
    """Lay ``inputs`` out under ``space.root``; what the cache lacks is fetched from ``remote`` first.

    Returns the number of files written. A dep the remote lacks (or serves damaged) is a
    ``RemoteError`` naming it; nothing of a damaged object is ever written.
    """
    cache = space.cache
    for i in inputs:
        paths.check(i.path, source="the job", what="dep")  # the client sends repo-relative paths only
    absent = [i for i in inputs if not in_cache(cache, i.digest, i.is_dir)]
    if absent:
        if remote is None:
            raise ValueError("inputs are missing from the cache and no remote was given")
        _fetch(cache, remote, absent)
    linker = Linker(cache.store, cache.config.link, verify=True)
    written = 0
    for i in inputs:
        target = space.root / i.path
        if not i.is_dir:
            linker.materialize(i.digest, target)
            written += 1
            continue
        target.mkdir(parents=True, exist_ok=True)
        for entry in manifest.load(cache.store.read_bytes(i.digest)):
            linker.materialize(entry.digest, target / entry.path, executable=entry.executable)
            written += 1
    return written


def _fetch(cache: Workspace, remote: Remote, inputs: list[Input]) -> None:
    from mlv.storage.remote.fetch import fetch

    roots = Roots()
    for i in inputs:
        roots.where.setdefault(i.digest, i.path)
        if i.is_dir:
            roots.current_dirs.add(i.digest)
    report = fetch(cache, remote, lambda: roots, records=False)
    if report.missing:  # digest -> the dep that needs it
        digest, named = next(iter(report.missing.items()))
        raise RemoteError(f"dep '{named}' needs object {digest}, which is not on {remote.where}; push it from a "
                          "clone that has it (`mlv push`)")
    if report.rejected:
        digest, why = next(iter(report.rejected.items()))
        raise RemoteError(f"object {digest} of a dep could not be fetched from {remote.where}: {why}")
    for i in inputs:
        if not in_cache(cache, i.digest, i.is_dir):  # e.g. a manifest whose members went missing
            raise StorageError(f"dep '{i.path}' ({i.digest}) is not complete in the worker's cache after fetching "
                               f"it from {remote.where}; run `mlv fsck --remote {remote.name}`")
