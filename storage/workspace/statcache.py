"""The stat cache (``.mlv/state.db``): what we already know without reading bytes again.

Tables:
- ``files``: repo-relative path + (inode, mtime_ns, size) → digest, and whether the
  store holds that object. A hit means the file is unchanged since it was hashed, so it
  is never re-hashed (and, when stored, ``add`` need not even look in the store). An entry hashed less than
  ``RACY_NS`` after the file's mtime is not trusted: a write inside the same timestamp
  tick would leave (inode, mtime, size) unchanged ("racy git").
- ``dirs``: a tracked directory's walk fingerprint (hash of every entry's stat) → the
  manifest digest it had; lets ``mlv status`` call an untouched directory unchanged
  after one ``scandir`` walk, without loading its manifest.
- ``dir_files``: a tracked directory's last stored manifest and, in its row order, each
  file's inode and mtime then (packed 64-bit arrays), stamped like ``files``. Re-adding a
  directory whose list of files is unchanged compares against these columns instead of
  looking up every file in ``files``: one row instead of one per file.
- ``complete``: digests whose object, and for manifests every member, is known to be in
  the local store. Only ``gc`` deletes objects, and it clears this table.
- ``damaged``: objects ``fsck`` or ``checkout`` found damaged (and the pack holding the
  bad copy). The next ``add`` of the same bytes sets the bad copy aside and stores them anew.
- ``writing``: stage outputs ``mlv run`` cleared and handed to a stage, with when; the row
  stays when the stage failed or was interrupted. Files there modified since are the
  stage's own partial output, not unsaved work, so the next run may clear them again.

Everything here is a cache: deleting ``state.db`` loses nothing but time.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from pathlib import Path

from mlv.storage.workspace import statedb

RACY_NS = 1_000_000_000

VERSION = 3  # bump when a table changes: the cache is rebuilt, never migrated



class StatCache:
    """A thin wrapper over one sqlite connection; callers batch writes and ``commit``."""

    def __init__(self, path: str | Path) -> None:
        self.db = statedb.connect(path)  # one connection per thread (each worker thread opens its own)
        if self.db.execute("PRAGMA user_version").fetchone()[0] != VERSION:
            statedb.reset(self.db, "stat")
            self.db.execute(f"PRAGMA user_version = {VERSION}")

    def close(self) -> None:
        self.db.close()

    def bind(self, store_id: str | None) -> None:
        """What this cache knows about stored objects holds only for the store with ``store_id``."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'store'").fetchone()
        if store_id is None or row is None or row[0] != store_id:
            self.forget_complete()
            if store_id is not None:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('store', ?)", (store_id,))

    # -- files --------------------------------------------------------------------
    def lookup_under(self, prefix: str) -> dict[str, tuple[int, int, int, str, int]]:
        """``{path: (inode, mtime_ns, size, digest, stored)}`` for trusted entries at or under ``prefix``."""
        rows = self.db.execute(
            "SELECT path, inode, mtime_ns, size, digest, checked_ns, stored FROM files "
            "WHERE path = ? OR (path >= ? AND path < ?)",
            (prefix, prefix + "/", prefix + "0"),  # '0' sorts right after '/'
        )
        return {p: (ino, mt, sz, dg, st) for p, ino, mt, sz, dg, chk, st in rows if chk - mt >= RACY_NS}

    def record(self, rows: Iterable[tuple[str, int, int, int, str]], checked_ns: int, *, stored: bool = False) -> None:
        """Store (path, inode, mtime_ns, size, digest) rows whose stat was taken at ``checked_ns``.

        ``stored``: the local store is known to hold each row's object (so ``add`` need not look).
        """
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", ((*r, checked_ns, int(stored)) for r in rows)
        )
        self.db.execute("COMMIT")

    # -- dirs ---------------------------------------------------------------------
    def dir_digest(self, path: str, walk: str) -> str | None:
        row = self.db.execute("SELECT digest FROM dirs WHERE path = ? AND walk = ?", (path, walk)).fetchone()
        return row[0] if row else None

    def record_dir(self, path: str, walk: str, digest: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO dirs VALUES (?, ?, ?)", (path, walk, digest))

    def dir_files(self, path: str) -> tuple[str, int, array, array] | None:
        """``(manifest digest, checked_ns, inodes, mtimes)`` recorded for the directory ``path``, if any."""
        row = self.db.execute("SELECT digest, checked_ns, inodes, mtimes FROM dir_files WHERE path = ?",
                              (path,)).fetchone()
        if row is None:
            return None
        inodes, mtimes = array("Q"), array("q")
        inodes.frombytes(row[2])
        mtimes.frombytes(row[3])
        return row[0], row[1], inodes, mtimes

    def record_dir_files(self, path: str, digest: str, checked_ns: int, inodes: array, mtimes: array) -> None:
        self.db.execute("INSERT OR REPLACE INTO dir_files VALUES (?, ?, ?, ?, ?)",
                        (path, digest, checked_ns, inodes.tobytes(), mtimes.tobytes()))

    # -- complete -----------------------------------------------------------------
    def is_complete(self, digest: str) -> bool:
        return self.db.execute("SELECT 1 FROM complete WHERE digest = ?", (digest,)).fetchone() is not None

    def mark_complete(self, digest: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO complete VALUES (?)", (digest,))

    def forget_complete(self) -> None:
        """Objects may have left the store (gc, damage, a wiped cache): forget what we knew was there."""
        self.db.execute("DELETE FROM complete")
        self.db.execute("UPDATE files SET stored = 0 WHERE stored = 1")

    # -- damaged ------------------------------------------------------------------
    def mark_damaged(self, digest: str, pack: str | None) -> None:
        self.db.execute("INSERT OR REPLACE INTO damaged VALUES (?, ?)", (digest, pack))
        self.forget_complete()

    def damaged(self) -> dict[str, str | None]:
        return dict(self.db.execute("SELECT digest, pack FROM damaged"))

    def clear_damaged(self, digest: str) -> None:
        self.db.execute("DELETE FROM damaged WHERE digest = ?", (digest,))

    # -- writing ------------------------------------------------------------------
    def mark_writing(self, paths: Iterable[str], started_ns: int) -> None:
        self.db.executemany("INSERT OR REPLACE INTO writing VALUES (?, ?)", [(p, started_ns) for p in paths])

    def clear_writing(self, paths: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM writing WHERE path = ?", [(p,) for p in paths])

    def writing(self) -> dict[str, int]:
        """``{output path: when a stage began writing it}`` for outputs no successful run has stored since."""
        return dict(self.db.execute("SELECT path, started_ns FROM writing"))
