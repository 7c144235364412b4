"""Reading one tracked file as it was at a git revision, for ``mlv.api.open``/``read``.

A path is found the way ``mlv log`` finds versions (``history``): a stage output or
metrics file in that revision's ``mlv.lock``, data added with ``mlv add`` (its pointer),
or a file inside either (through the directory's manifest); a plain file git has at that
revision is read from git. Its bytes then come, in order of preference, from:

1. the workspace file, when ``rev`` is None and the file there is the recorded version;
2. the local cache;
3. the default remote, streamed: nothing is written to the workspace or the cache (a
   manifest needed to find a file inside a directory is read into memory, too).

Invariants: read-only (the workspace, the cache and git are never written); every byte
served from the cache or a remote is checked against its digest (``ObjectCorrupt`` at the
end of the stream otherwise). Errors: a path not tracked at that revision, a directory, or
a bad revision is a ``UsageError`` (exit 2); data in neither the cache nor the remote is
``ObjectMissing``; a remote that cannot be reached is ``RemoteError``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import yaml

from mlv.engine.history import Tree, resolve_rev
from mlv.storage import paths, yamlfile
from mlv.storage.errors import ConfigError, MlvError, ObjectCorrupt, ObjectMissing, UsageError
from mlv.storage.store.digest import Digest, of_file, parse
from mlv.storage.workspace import Workspace, pointers

PARAMS_FILE = "params.yaml"  # beside mlv.yaml (pipelines.schema reads it as params)


@dataclass(frozen=True, slots=True)
class Found:
    """Where a path's version is recorded: ``container`` (an out or a pointer's path) and its digest;
    ``inside``: the path within it when ``container`` is a directory version."""

    container: str
    digest: Digest
    is_dir: bool
    inside: str | None
    origin: str  # "mlv.lock" or the pointer file


def relative(ws: Workspace, path: str | os.PathLike[str]) -> str:
    """``path`` as a repo-relative POSIX path: relative paths are relative to the repo root."""
    p = Path(path)
    if p.is_absolute():
        try:
            p = Path(os.path.normpath(p)).relative_to(ws.root)
        except ValueError:
            raise UsageError(f"'{path}' is outside the repo at '{ws.root}'") from None
    rel = p.as_posix()
    if (why := paths.problem(rel, written=False)) is not None:
        raise UsageError(f"'{path}' {why}; name a file by its path from the repo root, e.g. data/raw/a.csv")
    return rel


def find(tree: Tree, rel: str) -> Found | None:
    """The recorded version that holds ``rel`` in ``tree`` (None: neither mlv.lock nor a pointer names it)."""
    for entry in tree.lock.values():
        for out_path, out in entry.outs.items():
            is_dir = out.get("nfiles") is not None
            if out_path == rel or is_dir and rel.startswith(out_path + "/"):
                inside = None if out_path == rel else rel[len(out_path) + 1:]
                return Found(out_path, parse(out["digest"]), is_dir, inside, "mlv.lock")
    parts = rel.split("/")
    for n in range(len(parts), 0, -1):
        target = "/".join(parts[:n])
        pointed = tree.pointer(target)
        if pointed is not None:
            digest, nfiles = pointed
            inside = None if n == len(parts) else "/".join(parts[n:])
            if inside is not None and nfiles is None:
                return None  # a file's pointer: nothing lies inside it
            return Found(target, digest, nfiles is not None, inside, target + pointers.SUFFIX)
    return None


def open_path(ws: Workspace, path: str | os.PathLike[str], rev: str | None = None) -> BinaryIO:
    """A binary stream of ``path`` as recorded at ``rev`` (None: the workspace's pointers and lock)."""
    rel = relative(ws, path)
    tree = Tree(ws, resolve_rev(ws, rev)) if rev is not None else Tree(ws)
    found = find(tree, rel)
    if found is None:
        return _untracked(ws, tree, rel)
    if found.is_dir and found.inside is None:
        raise UsageError(f"'{rel}' is a directory (recorded in {found.origin} at {tree.label}); open a file inside "
                         f"it, e.g. '{rel}/<name>'")
    digest, objects = found.digest, _Objects(ws, rel, tree)
    if found.inside is not None:
        from mlv.storage.store import manifest

        entry = manifest.load(objects.read(found.digest, f"'{found.container}' (directory)")).get(found.inside)
        if entry is None:
            raise UsageError(f"'{rel}' is not a file of '{found.container}' at {tree.label} (version "
                             f"{found.digest.short}, {found.origin}); `mlv.api.open` takes a file's path")
        digest = entry.digest
    if tree.rev is None and (local := ws.root / rel).is_file() and of_file(local)[0] == digest:
        return open(local, "rb")
    return objects.open(digest)


def _untracked(ws: Workspace, tree: Tree, rel: str) -> BinaryIO:
    """A path mlv does not track: the workspace file, or git's copy at the revision."""
    if tree.rev is None:
        local = ws.root / rel
        if local.is_file():
            return open(local, "rb")
        what = "a directory mlv does not track" if local.is_dir() else "not in the workspace"
    else:
        data = tree.read(rel)
        if data is not None:
            return io.BytesIO(data)
        what = "not in git at that revision"
    raise UsageError(f"'{rel}' is not tracked at {tree.label}: no pointer and no stage output in mlv.lock names it, "
                     f"and it is {what}; check the path (relative to the repo root) and the revision")


def params_at(tree: Tree) -> dict:
    """The params of ``mlv.yaml`` and ``params.yaml`` in ``tree`` (a name in both is a ``ConfigError``, as
    ``pipelines.schema`` says when it loads the workspace's)."""
    where = f"mlv.yaml at {tree.label}"
    found = tree.pipeline.get("params") or {}
    if not isinstance(found, dict):
        raise ConfigError(f"{where}: 'params' is not a mapping of names to values", path="mlv.yaml")
    data = tree.read(PARAMS_FILE)
    try:
        extra = yamlfile.load(data, source=f"{PARAMS_FILE} at {tree.label}") if data is not None else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{PARAMS_FILE} at {tree.label} is not valid YAML ({exc})", path=PARAMS_FILE) from None
    if extra is None:
        return dict(found)
    if not isinstance(extra, dict):
        raise ConfigError(f"{PARAMS_FILE} at {tree.label} is not a mapping of param names to values", path=PARAMS_FILE)
    if both := sorted(set(found) & set(extra)):
        raise ConfigError(f"param '{both[0]}' is defined both in {where} and in {PARAMS_FILE}", path=PARAMS_FILE)
    return {**found, **extra}


class _Objects:
    """Objects by digest from the local cache, else streamed from the default remote (connected on first need)."""

    def __init__(self, ws: Workspace, rel: str, tree: Tree) -> None:
        self.ws, self.rel, self.tree = ws, rel, tree
        self.remote = None
        self.store = None

    def read(self, digest: Digest, what: str) -> bytes:
        with self.open(digest, what) as f:
            return f.read()

    def open(self, digest: Digest, what: str | None = None) -> BinaryIO:
        if digest in self.ws.store:
            return io.BufferedReader(self.ws.store.open(digest))
        remote, store = self._remote(digest, what)
        try:
            with remote.guard(f"reading object {digest}"):
                if (entry := store.packed(digest)) is not None:  # one ranged read, not the pack's first block
                    return io.BytesIO(self._packed(remote, digest, entry))
                raw = store.open(digest)
        except ObjectMissing:
            raise ObjectMissing(f"{what or repr(self.rel)} at {self.tree.label} (object {digest}) is neither in the "
                                f"local cache nor on {remote.where}; `mlv push` it from a clone that has it",
                                digest=digest) from None
        return io.BufferedReader(_Guarded(raw, remote))

    @staticmethod
    def _packed(remote, digest: Digest, entry) -> bytes:
        from mlv.storage.store.digest import of_bytes

        data = remote.cat_ranges(remote.pack_key(entry.pack), [(entry.offset, entry.offset + entry.length)], jobs=1)[0]
        if (actual := of_bytes(data)) != digest:
            raise remote_damage(remote, digest, actual)
        return data

    def _remote(self, digest: Digest, what: str | None):
        if self.remote is None:
            from mlv.storage.remote.remotes import connect
            from mlv.storage.store.objects import ObjectStore

            try:
                self.remote = connect(self.ws)
            except UsageError as exc:
                raise ObjectMissing(f"{what or repr(self.rel)} at {self.tree.label} (object {digest}) is not in the "
                                    f"local cache, and it cannot come from a remote: {exc}", digest=digest) from None
            self.store = ObjectStore(self.remote.fs, self.remote.root)  # the remote's layout is the store's
        return self.remote, self.store


class _Guarded(io.RawIOBase):
    """A remote object's verified stream whose transport failures are one clear ``RemoteError``."""

    def __init__(self, raw: io.RawIOBase, remote) -> None:
        self._raw, self._remote = raw, remote

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            with self._remote.guard(f"reading from {self._remote.where}"):
                return self._raw.readinto(b)
        except ObjectCorrupt as exc:
            self.close()
            raise remote_damage(self._remote, exc.digest, exc.actual) from None
        except MlvError:
            self.close()
            raise


def remote_damage(remote, digest: Digest, actual: object) -> ObjectCorrupt:
    """The error for wrong bytes from a remote: nothing was served, and how to repair the remote."""
    return ObjectCorrupt(f"object {digest} on {remote.where} is damaged (its bytes hash to "
                         f"{getattr(actual, 'hexdigest', str(actual))[:12]}…), so it was not served; "
                         f"`mlv fsck --remote {remote.name}` marks it, and a `mlv push` from a clone that has the "
                         "data sends good bytes", digest=digest, actual=actual)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()
