"""The stat cache (``.mlv/state.db``): what we already know without reading bytes again.

Tables:
- ``files``: repo-relative path + (inode, mtime_ns, size) → digest. A hit means the file
  is unchanged since it was hashed, so it is never re-hashed. An entry hashed less than
  ``RACY_NS`` after the file's mtime is not trusted: a write inside the same timestamp
  tick would leave (inode, mtime, size) unchanged ("racy git").
- ``dirs``: a tracked directory's walk fingerprint (hash of every entry's stat) → the
  manifest digest it had; lets ``mlv status`` call an untouched directory unchanged
  after one ``scandir`` walk, without loading its manifest.
- ``complete``: digests whose object, and for manifests every member, is known to be in
  the local store. Only ``gc`` deletes objects, and it clears this table.
- ``damaged``: objects ``fsck`` or ``checkout`` found damaged (and the pack holding the
  bad copy). The next ``add`` of the same bytes sets the bad copy aside and stores them anew.

Everything here is a cache: deleting ``state.db`` loses nothing but time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

RACY_NS = 1_000_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, inode INTEGER, mtime_ns INTEGER,
                                  size INTEGER, digest TEXT, checked_ns INTEGER);
CREATE TABLE IF NOT EXISTS dirs (path TEXT PRIMARY KEY, walk TEXT, digest TEXT);
CREATE TABLE IF NOT EXISTS complete (digest TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS damaged (digest TEXT PRIMARY KEY, pack TEXT);
"""


class StatCache:
    """A thin wrapper over one sqlite connection; callers batch writes and ``commit``."""

    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- files --------------------------------------------------------------------
    def lookup_under(self, prefix: str) -> dict[str, tuple[int, int, int, str]]:
        """``{path: (inode, mtime_ns, size, digest)}`` for trusted entries at or under ``prefix``."""
        rows = self.db.execute(
            "SELECT path, inode, mtime_ns, size, digest, checked_ns FROM files "
            "WHERE path = ? OR (path >= ? AND path < ?)",
            (prefix, prefix + "/", prefix + "0"),  # '0' sorts right after '/'
        )
        return {p: (ino, mt, sz, dg) for p, ino, mt, sz, dg, chk in rows if chk - mt >= RACY_NS}

    def record(self, rows: Iterable[tuple[str, int, int, int, str]], checked_ns: int) -> None:
        """Store (path, inode, mtime_ns, size, digest) rows whose stat was taken at ``checked_ns``."""
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", ((*r, checked_ns) for r in rows)
        )
        self.db.execute("COMMIT")

    # -- dirs ---------------------------------------------------------------------
    def dir_digest(self, path: str, walk: str) -> str | None:
        row = self.db.execute("SELECT digest FROM dirs WHERE path = ? AND walk = ?", (path, walk)).fetchone()
        return row[0] if row else None

    def record_dir(self, path: str, walk: str, digest: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO dirs VALUES (?, ?, ?)", (path, walk, digest))

    # -- complete -----------------------------------------------------------------
    def is_complete(self, digest: str) -> bool:
        return self.db.execute("SELECT 1 FROM complete WHERE digest = ?", (digest,)).fetchone() is not None

    def mark_complete(self, digest: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO complete VALUES (?)", (digest,))

    def forget_complete(self) -> None:
        self.db.execute("DELETE FROM complete")

    # -- damaged ------------------------------------------------------------------
    def mark_damaged(self, digest: str, pack: str | None) -> None:
        self.db.execute("INSERT OR REPLACE INTO damaged VALUES (?, ?)", (digest, pack))
        self.forget_complete()

    def damaged(self) -> dict[str, str | None]:
        return dict(self.db.execute("SELECT digest, pack FROM damaged"))

    def clear_damaged(self, digest: str) -> None:
        self.db.execute("DELETE FROM damaged WHERE digest = ?", (digest,))
