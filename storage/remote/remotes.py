"""Remotes: a store on any fsspec URL that clones share (S3 in most shops), and how to reach it.

Layout under the remote's URL (the local store's, plus catalogs of run records)::

    FORMAT, ID                        format version, and who this remote is
    <2 hex>/<30 hex>                  loose objects (512 KiB and up)
    packs/<name>.pack, .idx           small objects packed together; ``<name>`` is the xxh3 of the
                                      pack's bytes; a pack is visible once its ``.idx`` exists
    runs/<name>.list                  run-record catalogs: ``<run id> <digest>`` lines; the records'
                                      bytes are packed objects like any other
    damaged/<hex>.<pack name|loose>   a copy of object ``<hex>`` (in that pack, or the loose one) whose
                                      bytes proved wrong; one line saying what was found (``remote_damage``)
    tmp/                              uploads in flight, on filesystems without atomic writes

Writes never expose a partial object: object stores (S3, GCS, Azure) show a key only once
its upload completed, so objects go straight to their key; elsewhere (``file://``, SFTP)
they are written under ``tmp/`` and renamed. Nothing is written before what it refers to:
data, then manifests, then a pack's index, then run-record catalogs.

Every wait on a remote is bounded (``remote_access``: timeouts and retries per remote, and a
watch on upload bodies in ``multipart``), so a silent or frozen server is an error, not a hang.

Credentials come only from where the filesystem library looks (environment, AWS config and
profiles); they are never written by mlv, and every message from a remote is scrubbed of
the credential values in the environment before anyone sees it.
"""

from __future__ import annotations

import os
import re
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
from fsspec.callbacks import Callback
from fsspec.implementations.local import LocalFileSystem
from mlv.storage.remote import multipart
from mlv.storage import secrets
from mlv.storage.workspace import statedb
from mlv.storage.atomic import fsync_dir
from mlv.storage.workspace.config import RemoteConfig, local_path, remote_for
from mlv.storage.store.digest import Digest
from mlv.storage.store.digest import of_file as digest_of_file
from mlv.storage.errors import MlvError, ObjectCorrupt, StorageError, UsageError
from mlv.storage.store.objects import FORMAT
from mlv.storage.store.packs import PackEntry, decode_index
from mlv.storage.remote.access import (
    RemoteError,
    failure,
    filesystem,
    limits,
    transport_errors,
)
from mlv.storage.workspace import Workspace

ATOMIC_PUT = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"}  # a key appears only when complete
PART_SIZE = 8 * 1024 * 1024  # multipart chunk; parts in flight × this is what an upload holds in memory
_LOOSE = re.compile(r"^([0-9a-f]{2})/([0-9a-f]{30})$")
_PACKED = re.compile(r"^packs/([0-9a-f]{32})\.(pack|idx)$")
_CATALOG = re.compile(r"^runs/([0-9a-f]{32})\.list$")
_DAMAGED = re.compile(r"^damaged/([0-9a-f]{32})\.([0-9a-f]{32}|loose)$")


@dataclass(frozen=True, slots=True)
class Item:
    size: int
    mtime: float  # seconds since the epoch (0 where the filesystem gives none)


@dataclass(slots=True)
class Inventory:
    """One listing of a remote: what is there, by kind."""

    loose: dict[bytes, Item] = field(default_factory=dict)
    packs: dict[str, Item] = field(default_factory=dict)  # name -> the .pack
    indexes: dict[str, Item] = field(default_factory=dict)  # name -> the .idx (its pack is visible)
    catalogs: dict[str, Item] = field(default_factory=dict)
    tmp: dict[str, Item] = field(default_factory=dict)  # key -> leftovers of interrupted uploads
    damaged: set[tuple[bytes, str]] = field(default_factory=set)  # (digest, pack name or "loose"): marked bad
    formatted: bool = False  # FORMAT exists

    @property
    def empty(self) -> bool:
        return not (self.loose or self.packs or self.catalogs)


class Remote:
    """A remote store reached through fsspec; every call goes through ``guard`` for clear errors."""

    def __init__(self, config: RemoteConfig, fs: fsspec.AbstractFileSystem, root: str, state_db: Path) -> None:
        self.config = config
        self.name = config.name
        self.fs = fs
        self.root = root.rstrip("/")
        self.atomic = config.protocol in ATOMIC_PUT
        self.state_db = state_db
        self._db: sqlite3.Connection | None = None
        self.jobs = 8  # concurrent requests (and multipart parts in flight); from --jobs
        self.timeout, self.retries = limits(config)  # per request: seconds without an answer, tries after the first
        self.notes: list[str] = []  # what was passed over (an unreadable index, a bad catalog line), for a warning

    # -- paths ------------------------------------------------------------------------
    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    @staticmethod
    def loose_key(digest: Digest) -> str:
        return f"{digest.hexdigest[:2]}/{digest.hexdigest[2:]}"

    @staticmethod
    def pack_key(name: str, suffix: str = ".pack") -> str:
        return f"packs/{name}{suffix}"

    @property
    def where(self) -> str:
        return f"remote '{self.name}' ({self.config.url})"

    # -- errors -----------------------------------------------------------------------
    @contextmanager
    def guard(self, doing: str) -> Iterator[None]:
        """Turn whatever the filesystem library raises into one clear ``RemoteError``."""
        try:
            yield
        except MlvError:
            raise
        except transport_errors() as exc:
            error, message = failure(self.config, self.where, doing, exc)
            raise error(scrub(message) if error is RemoteError else message) from None  # the server's words: scrubbed

    # -- listing ----------------------------------------------------------------------
    def inventory(self) -> Inventory:
        """Everything on the remote, from one recursive listing (a paginated LIST on object stores)."""
        inv = Inventory()
        with self.guard("listing"):
            self.fs.invalidate_cache()
            if not self.atomic and not self.fs.exists(self.root):
                return inv  # a local or SFTP remote whose folder is created by the first push
            found = self.fs.find(self.root, detail=True, withdirs=False)
        prefix = self.root + "/"
        for path, info in found.items():
            key = path.removeprefix(prefix)
            item = Item(int(info.get("size") or 0), _mtime(info))
            if m := _LOOSE.match(key):
                inv.loose[bytes.fromhex(m.group(1) + m.group(2))] = item
            elif m := _PACKED.match(key):
                (inv.packs if m.group(2) == "pack" else inv.indexes)[m.group(1)] = item
            elif m := _CATALOG.match(key):
                inv.catalogs[m.group(1)] = item
            elif m := _DAMAGED.match(key):
                inv.damaged.add((bytes.fromhex(m.group(1)), m.group(2)))
            elif key.startswith("tmp/"):
                inv.tmp[key] = item
            elif key == "FORMAT":
                inv.formatted = True
        return inv

    def check_format(self, inv: Inventory) -> None:
        if not inv.formatted:
            return
        with self.guard("reading FORMAT"):
            found = self.fs.cat_file(self.path("FORMAT")).decode(errors="replace")
        if found != FORMAT:
            raise RemoteError(f"{self.where} holds a store of format {found.strip()!r}; this mlv reads "
                              f"{FORMAT.strip()!r}. Upgrade mlv, or point the remote elsewhere.")

    def pack_index(self, inv: Inventory, *, cached: bool = True,
                   strict: bool = False) -> dict[str, dict[bytes, PackEntry]]:
        """``{pack: {digest: where}}`` for every pack index (read once, then cached locally).

        An index that does not decode makes its pack invisible (a push sends its objects again,
        which rewrites the index), with a note; with ``strict`` (gc: what the pack holds must be
        known) it is an error.
        """
        packs: dict[str, dict[bytes, PackEntry]] = {}
        for name, data in self.read_small(
            {name: (self.pack_key(name, ".idx"), item.size) for name, item in inv.indexes.items()}, cached=cached
        ).items():
            try:
                packs[name] = decode_index(data, name)
            except StorageError as exc:
                why = str(exc).replace("run `mlv fsck`", f"`mlv fsck --remote {self.name}` checks it")
                if strict:
                    raise RemoteError(f"{self.where}: {why}") from None
                self.forget_cached([self.pack_key(name, ".idx")])
                self.note(f"{why}; its objects count as absent")
        return packs

    def note(self, text: str) -> None:
        self.notes.append(f"{self.where}: {text}")

    def read_small(self, wanted: dict[str, tuple[str, int]], *, cached: bool = True) -> dict[str, bytes]:
        """``{name: (key, size)}`` -> ``{name: bytes}`` for immutable metadata files (indexes, catalogs).

        They are named by content and never rewritten, so a copy kept in ``state.db`` (matched
        on key and size) saves reading them again on every push and pull.
        """
        found: dict[str, bytes] = {}
        db = self._cache() if cached else None
        if db is not None:
            rows = db.execute("SELECT key, size, data FROM remote_files WHERE url = ?", (self.config.url,)).fetchall()
            have = {key: (size, data) for key, size, data in rows}
            for name, (key, size) in wanted.items():
                hit = have.get(key)
                if hit is not None and hit[0] == size:
                    found[name] = hit[1]
        todo = {name: ks for name, ks in wanted.items() if name not in found}
        if todo:
            with self.guard("reading pack indexes"):
                got = self.fs.cat([self.path(key) for key, _ in todo.values()], on_error="raise")
            if not isinstance(got, dict):  # a single path comes back as bytes
                got = {self.path(next(iter(todo.values()))[0]): got}
            for name, (key, _) in todo.items():
                found[name] = got[self.path(key)]
            if db is not None:
                db.executemany("INSERT OR REPLACE INTO remote_files VALUES (?, ?, ?, ?)",
                               [(self.config.url, key, len(found[name]), found[name]) for name, (key, _) in todo.items()])
        return found

    def forget_cached(self, keys: list[str]) -> None:
        if (db := self._cache()) is not None:
            db.executemany("DELETE FROM remote_files WHERE url = ? AND key = ?", [(self.config.url, k) for k in keys])

    def _cache(self) -> sqlite3.Connection | None:
        if self._db is None and self.state_db.parent.is_dir():
            # one thread at a time (the caller's); not necessarily the one that opened it
            self._db = statedb.connect(self.state_db)
        return self._db

    # -- transfers --------------------------------------------------------------------
    def put_file(self, local: str | os.PathLike[str], key: str, *, callback: Callback | None = None,
                 parts: int = 4, expect: str | None = None) -> None:
        """Upload a local file so that ``key`` shows it complete or not at all; a big file goes up in
        ``PART_SIZE`` parts, ``parts`` at a time.

        ``expect``: the hex digest the file must have, or ``ObjectCorrupt`` and nothing appears. A
        multipart upload hashes while it sends and checks before it completes; others hash first.
        """
        final = self.path(key)
        check = None if expect is None else (lambda: _check_file(local, expect))
        with self.guard(f"uploading {key}"):
            s3 = self.config.protocol in ("s3", "s3a")
            if s3 and os.path.getsize(local) >= 2 * PART_SIZE:
                multipart.upload(self.fs, local, final, part_size=PART_SIZE, window=parts, stall=self.timeout,
                                 callback=callback, verify=check)
                return
            if check is not None:
                check()
            if s3:  # one PUT, its body watched: the client alone would wait forever on a frozen server
                multipart.put(self.fs, local, final, stall=self.timeout, callback=callback)
                return
            if self.atomic:
                self.fs.put_file(os.fspath(local), final, callback=callback or Callback())
                return
            tmp = self.path(f"tmp/{uuid.uuid4().hex}")
            self.fs.makedirs(self.path("tmp"), exist_ok=True)
            try:
                self.fs.put_file(os.fspath(local), tmp, callback=callback or Callback())
                if isinstance(self.fs, LocalFileSystem):
                    with open(tmp, "rb+") as f:
                        os.fsync(f.fileno())
                self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
                self.fs.mv(tmp, final)
                if isinstance(self.fs, LocalFileSystem):
                    fsync_dir(final.rsplit("/", 1)[0])
            except BaseException:
                if self.fs.exists(tmp):
                    self.fs.rm_file(tmp)
                raise

    def put_bytes(self, key: str, data: bytes) -> None:
        """Upload small metadata (FORMAT, ID, a catalog) the same all-or-nothing way."""
        with self.guard(f"uploading {key}"):
            if self.config.protocol in ("s3", "s3a"):
                multipart.put(self.fs, data, self.path(key), stall=self.timeout)
                return
            if self.atomic:
                self.fs.pipe_file(self.path(key), data)
                return
        import tempfile

        with tempfile.NamedTemporaryFile() as f:
            f.write(data)
            f.flush()
            self.put_file(f.name, key)

    def get_file(self, key: str, local: str | os.PathLike[str], *, callback: Callback | None = None) -> None:
        """Download ``key`` into a local file in one streamed GET (bounded memory)."""
        with self.guard(f"downloading {key}"):
            self.fs.get_file(self.path(key), os.fspath(local), callback=callback or Callback(), **self._get_options())

    def cat_file(self, key: str) -> bytes:
        with self.guard(f"reading {key}"):
            return self.fs.cat_file(self.path(key))

    def cat_ranges(self, key: str, ranges: list[tuple[int, int]], *, jobs: int) -> list[bytes]:
        """Byte ranges ``[start, end)`` of one file, fetched concurrently where the filesystem can."""
        paths = [self.path(key)] * len(ranges)
        with self.guard(f"reading {key}"):
            options = {"batch_size": jobs} if getattr(self.fs, "async_impl", False) else {}
            return self.fs.cat_ranges(paths, [s for s, _ in ranges], [e for _, e in ranges], on_error="raise", **options)

    def remove(self, keys: list[str]) -> None:
        if not keys:
            return
        with self.guard("removing objects"):
            self.fs.rm([self.path(k) for k in keys])
        self.forget_cached(keys)

    def ensure_format(self, inv: Inventory) -> None:
        """Mark an empty remote as an mlv store before the first object lands on it."""
        if inv.formatted:
            return
        self.put_bytes("FORMAT", FORMAT.encode())
        self.put_bytes("ID", uuid.uuid4().hex.encode())
        inv.formatted = True

    def _get_options(self) -> dict:
        # One GET streams the object: parallel ranged GETs pay off only on very large objects,
        # and some S3-compatible servers cost time proportional to the object per ranged GET.
        return {"max_concurrency": 1} if self.config.protocol in ("s3", "s3a") else {}


def connect(ws: Workspace, name: str | None = None, *, jobs: int | None = None) -> Remote:
    """The remote called ``name`` (default: the configured default), ready for calls."""
    config = remote_for(ws.config, name)
    fs, root = filesystem(config, ws.root, jobs=jobs or 8)
    if local_path(config, ws.root) is not None:
        _refuse_own_store(ws, Path(root), config)
    remote = Remote(config, fs, root, ws.dot / "state.db")
    if jobs is not None:
        remote.jobs = jobs
    return remote


def _refuse_own_store(ws: Workspace, root: Path, config: RemoteConfig) -> None:
    for own in (ws.cache_dir, ws.dot):
        if root == own or own in root.parents or root in own.parents:
            raise UsageError(f"remote '{config.name}' ({config.url}) overlaps this repo's '{own}'; "
                             "point it at a folder outside .mlv/ and the cache")


def _check_file(path: str | os.PathLike[str], expect: str) -> None:
    actual, _ = digest_of_file(path)
    if actual.hexdigest != expect:
        raise ObjectCorrupt(f"'{path}' hashes to {actual}, not to {expect}", actual=actual)


def scrub(text: str) -> str:
    """``text`` with every credential-looking environment value replaced by ``***`` (``mlv.storage.secrets``)."""
    return secrets.scrub(text)


def _mtime(info: dict) -> float:
    value = info.get("LastModified") or info.get("mtime") or info.get("last_modified") or 0
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
