"""Run records: an immutable JSON document per stage execution, and the index over them.

A record says what ran (resolved definition, params), on what (dep path → digest), what
it made (out path → digest), where and when (host, worker, GPU, start/end), how it
ended (exit status), and where its captured output is (log object digest). Records
never contain environment variables or credentials.

Records live in ``.mlv/runs/<run_id>.json`` (written atomically, never changed). The
``runs`` table in ``.mlv/state.db`` indexes them by fingerprint and stage for the run
cache and ``mlv show``; it can be rebuilt from the files at any time.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlv.storage import atomic
from mlv.storage.workspace import Workspace

RUNS = "runs"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, stage TEXT, fingerprint TEXT,
                                 status TEXT, ended REAL);
CREATE INDEX IF NOT EXISTS runs_fingerprint ON runs (fingerprint);
CREATE INDEX IF NOT EXISTS runs_stage ON runs (stage, ended);
"""


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    stage: str
    fingerprint: str
    definition: dict
    params: dict
    deps: dict[str, str]  # path -> digest
    outs: dict[str, dict]  # path -> {digest, size, nfiles?}
    status: str  # succeeded | failed
    exit_code: int | None
    started: float
    ended: float
    host: str
    worker: str | None
    gpu: str | None
    log: str | None  # digest of the captured stdout+stderr
    git: dict = field(default_factory=dict)  # {"commit": sha | None, "dirty": bool}
    environment: dict = field(default_factory=dict)  # python and key package versions
    reused_from: str | None = None  # set on a "reuse" event: the run whose outputs were restored

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunRecord:
        return cls(**data)


def new_run_id() -> str:
    """Sortable by time, unique across machines: ``20261126T221530-3f2a9c1d``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def environment() -> dict:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in ("mlv", "dask", "distributed", "pyarrow", "scikit-learn", "numpy", "cupy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_state(root: Path) -> dict:
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True)
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except FileNotFoundError:
        return {"commit": None, "dirty": None}


class RunIndex:
    """Where records are, and the sqlite index that answers run-cache and ``show`` queries."""

    def __init__(self, ws: Workspace) -> None:
        self.dir = ws.dot / RUNS
        self.db = sqlite3.connect(ws.dot / "state.db", timeout=30, isolation_level=None)
        self.db.executescript(_SCHEMA)

    def write(self, record: RunRecord) -> None:
        self.dir.mkdir(exist_ok=True)
        atomic.write_text(self.dir / f"{record.run_id}.json", json.dumps(record.to_dict(), indent=1, sort_keys=True))
        self._index(record)

    def _index(self, record: RunRecord) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?)",
            (record.run_id, record.stage, record.fingerprint, record.status, record.ended),
        )

    def read(self, run_id: str) -> RunRecord:
        return RunRecord.from_dict(json.loads((self.dir / f"{run_id}.json").read_text()))

    def by_fingerprint(self, fingerprint: str) -> list[RunRecord]:
        """Successful runs with this fingerprint, newest first."""
        rows = self.db.execute(
            "SELECT run_id FROM runs WHERE fingerprint = ? AND status = 'succeeded' ORDER BY ended DESC", (fingerprint,)
        )
        return [self.read(r) for (r,) in rows if (self.dir / f"{r}.json").exists()]

    def latest(self, stage: str) -> RunRecord | None:
        row = self.db.execute("SELECT run_id FROM runs WHERE stage = ? ORDER BY ended DESC LIMIT 1", (stage,)).fetchone()
        return self.read(row[0]) if row else None

    def reindex(self) -> int:
        """Rebuild the index from the record files; returns how many were indexed."""
        self.db.execute("DELETE FROM runs")
        n = 0
        for path in sorted(self.dir.glob("*.json")) if self.dir.exists() else []:
            self._index(RunRecord.from_dict(json.loads(path.read_text())))
            n += 1
        return n


def host() -> str:
    return platform.node() or os.uname().nodename

