"""``.mlv/state.db``: one SQLite file of caches and indexes, and the one place its schema lives.

Every table can be rebuilt from what it caches (files in the workspace, the store,
pointers, run records, remotes): deleting ``state.db`` loses nothing but time. The tables
come in groups, each with one module that writes its rows and rebuilds the group (drops
and creates it) when its layout changes — a cache is rebuilt, never migrated:

- ``stat`` (``storage.statcache``): what is known without reading bytes again;
- ``remotes`` (``storage.remotes``, ``storage.remote_state``): metadata files read from
  remotes, and what this clone last saw on each;
- ``runs`` (``engine.records``): the run-cache index over ``.mlv/runs/``;
- ``provenance`` (``engine.provenance``): the lineage index;
- ``predictions`` (``engine.lineage``): the id range of each prediction-log segment, synced from the
  catalog files ``mlv serve`` writes in ``.mlv/predictions/``.

``connect`` opens the file the same way for everyone (WAL, a 30 s busy timeout, no
implicit transactions; callers batch their own) and makes sure every table exists.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = {
    "stat": """
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, inode INTEGER, mtime_ns INTEGER,
                                  size INTEGER, digest TEXT, checked_ns INTEGER, stored INTEGER);
CREATE TABLE IF NOT EXISTS dirs (path TEXT PRIMARY KEY, walk TEXT, digest TEXT);
CREATE TABLE IF NOT EXISTS dir_files (path TEXT PRIMARY KEY, digest TEXT, checked_ns INTEGER, inodes BLOB,
                                      mtimes BLOB);
CREATE TABLE IF NOT EXISTS complete (digest TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS damaged (digest TEXT PRIMARY KEY, pack TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS writing (path TEXT PRIMARY KEY, started_ns INTEGER);
""",
    "remotes": """
CREATE TABLE IF NOT EXISTS remote_files (url TEXT, key TEXT, size INTEGER, data BLOB, PRIMARY KEY (url, key));
CREATE TABLE IF NOT EXISTS remote_seen (remote TEXT PRIMARY KEY, listed REAL, objects BLOB, complete BLOB,
                                        runs TEXT, damaged BLOB);
""",
    "runs": """
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, stage TEXT, fingerprint TEXT, status TEXT, ended REAL);
CREATE INDEX IF NOT EXISTS runs_fingerprint ON runs (fingerprint);
CREATE INDEX IF NOT EXISTS runs_stage ON runs (stage, ended);
""",
    "provenance": """
CREATE TABLE IF NOT EXISTS records (run_id TEXT PRIMARY KEY, stage TEXT, status TEXT, started REAL, ended REAL,
    git_commit TEXT, dirty INTEGER, fingerprint TEXT, reused_from TEXT, params TEXT);
CREATE TABLE IF NOT EXISTS outputs (digest TEXT, run_id TEXT, path TEXT, nfiles INTEGER);
CREATE INDEX IF NOT EXISTS outputs_digest ON outputs (digest);
CREATE INDEX IF NOT EXISTS outputs_run ON outputs (run_id);
CREATE TABLE IF NOT EXISTS inputs (digest TEXT, run_id TEXT, path TEXT, producer TEXT, pointer TEXT, within TEXT,
    via TEXT);
CREATE INDEX IF NOT EXISTS inputs_digest ON inputs (digest);
CREATE INDEX IF NOT EXISTS inputs_run ON inputs (run_id);
CREATE INDEX IF NOT EXISTS inputs_via ON inputs (via);
CREATE TABLE IF NOT EXISTS added (digest TEXT, pointer TEXT, origin TEXT, PRIMARY KEY (digest, pointer));
CREATE TABLE IF NOT EXISTS broken_records (run_id TEXT PRIMARY KEY, mtime_ns INTEGER, detail TEXT);
CREATE TABLE IF NOT EXISTS provenance_meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS experiment_metrics (run_id TEXT PRIMARY KEY, metrics TEXT);
""",
    "predictions": """
CREATE TABLE IF NOT EXISTS prediction_segments (segment TEXT PRIMARY KEY, first_id TEXT, last_id TEXT,
    package TEXT, arm TEXT, rows INTEGER);
CREATE INDEX IF NOT EXISTS prediction_segments_first ON prediction_segments (first_id);
""",
}


def connect(path: str | Path) -> sqlite3.Connection:
    """The state database at ``path``, every table there. One connection per thread of use (callers that
    share one across threads serialise their calls)."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    _atomically(db, "".join(SCHEMA.values()))
    return db


def reset(db: sqlite3.Connection, group: str) -> None:
    """Drop and recreate the tables of ``group`` (its layout changed, or it is rebuilt from scratch)."""
    tables = [line.split()[5] for line in SCHEMA[group].splitlines() if line.startswith("CREATE TABLE")]
    _atomically(db, "".join(f"DROP TABLE IF EXISTS {t};" for t in tables) + SCHEMA[group])


def _atomically(db: sqlite3.Connection, script: str) -> None:
    """Run a schema script as one transaction (inside the caller's, if one is open): another connection never
    sees it half done — a table dropped and not yet created again, or an index created before its table."""
    statements = [s.strip() for s in script.split(";") if s.strip()]
    own = not db.in_transaction
    if own:
        db.execute("BEGIN IMMEDIATE")
    try:
        for statement in statements:
            db.execute(statement)
    except BaseException:
        if own:
            db.execute("ROLLBACK")
        raise
    if own:
        db.execute("COMMIT")
