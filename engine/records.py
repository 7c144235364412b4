"""Run records: an immutable JSON document per stage execution, and the run-cache index over them.

A record says what ran (resolved definition, params), on what (dep path → digest, and
which run or ``mlv add`` produced each dep), what it made (out path → digest), where
and when (host, worker, GPU, start/end), how it ended (exit status), and where its
captured output is (log object digest). A stage restored from the run cache leaves a
light "reuse" event (status ``reused``) that points at the original record.

Invariants:
- Records never contain environment variables or credentials: only the fields below,
  filled from the stage spec, the run's outcome, ``git rev-parse`` and package versions.
- Records live in ``.mlv/runs/<run_id>.json``, written atomically and never changed.
  Each carries ``record_digest``, the xxh3-128 of its canonical JSON without that key,
  so a record is content-addressed and a damaged one is detected (``RecordCorrupt``)
  instead of being believed.
- The ``runs`` table in ``.mlv/state.db`` indexes them by fingerprint and stage for the
  run cache and ``mlv show``; it can be rebuilt from the files at any time.
"""

from __future__ import annotations

import json
import os
import platform
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from mlv.storage import atomic
from mlv.storage.workspace import gitfiles, statedb
from mlv.storage.store import digest as digests
from mlv.storage.errors import MlvError
from mlv.storage.workspace import Workspace

RUNS = "runs"
SUCCEEDED, FAILED, REUSED = "succeeded", "failed", "reused"
CHECK_KEY = "record_digest"



class RecordCorrupt(MlvError):
    """A run record file is unreadable or no longer matches its ``record_digest`` (exit 1)."""

    def __init__(self, message: str, *, path: str, run_id: str) -> None:
        super().__init__(message)
        self.path = path
        self.run_id = run_id


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    stage: str
    fingerprint: str
    definition: dict
    params: dict
    deps: dict[str, str]  # path -> digest
    outs: dict[str, dict]  # path -> {digest, size, nfiles?}
    status: str  # succeeded | failed | reused
    exit_code: int | None
    started: float
    ended: float
    host: str
    worker: str | None
    gpu: str | None
    log: str | None  # digest of the captured stdout+stderr
    git: dict = field(default_factory=dict)  # {"commit": sha | None, "dirty": bool}
    # {"mlv": mlv's own python and key package versions, "interpreter": {"path", "version", "packages": digest of
    # the JSON list of its distributions} or None: the Python the stage ran with (engine.interpreter)}
    environment: dict = field(default_factory=dict)
    reused_from: str | None = None  # set on a "reuse" event: the run whose outputs were restored
    # dep path -> where it came from: {"run": id} (an output of that run), {"added": "<path>.mlv"}
    # (data from `mlv add`), either with "within" + "digest" when the dep is a file inside that
    # output or added directory, or None (a source file, e.g. code in git, that mlv does not store)
    producers: dict[str, dict | None] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunRecord:
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})  # keys from a newer mlv stay on disk only


_FIELDS = frozenset(f.name for f in fields(RunRecord))


def dumps(record: RunRecord) -> bytes:
    """The record's file content: its fields plus ``record_digest`` over their canonical JSON."""
    data = record.to_dict()
    return json.dumps({**data, CHECK_KEY: str(_digest(data))}, indent=1, sort_keys=True).encode()


def loads(data: bytes, *, path: str, run_id: str) -> RunRecord:
    """Parse and check a record file's bytes; ``RecordCorrupt`` says what is wrong and how to fix it."""
    fix = ("restore it from a remote (`mlv pull`) or a backup; `mlv fsck` lists every damaged record, "
           "and `mlv trace --reindex` rebuilds the index without it")
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        expected = doc.pop(CHECK_KEY, None)
        record = RunRecord.from_dict(doc)
    except (ValueError, TypeError) as exc:
        raise RecordCorrupt(f"run record '{path}' is unreadable ({exc}); {fix}", path=path, run_id=run_id) from exc
    if expected is not None and expected != str(_digest(doc)):
        raise RecordCorrupt(f"run record '{path}' was modified or damaged (its content no longer matches its "
                            f"record_digest {str(expected)[:21]}…); {fix}", path=path, run_id=run_id)
    if record.run_id != run_id:
        raise RecordCorrupt(f"run record '{path}' holds run '{record.run_id}', not '{run_id}'; {fix}",
                            path=path, run_id=run_id)
    return record


def _digest(data: dict) -> digests.Digest:
    return digests.of_bytes(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())


def new_run_id() -> str:
    """Sortable by time, unique across machines: ``20261126T221530-3f2a9c1d``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def environment() -> dict:
    """Python and key package versions (never environment variables)."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in ("mlv", "dask", "distributed", "pyarrow", "scikit-learn", "numpy", "cupy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_state(root: Path) -> dict:
    """The commit checked out and whether tracked files other than mlv's own outputs differ from it.

    ``mlv.lock`` and the outputs it names (metrics files are tracked by git) are left out:
    the run itself rewrites them, which would mark every stage after the first as dirty.
    """
    from mlv.engine import lockfile

    commit = gitfiles.head(root)
    if commit is None:
        return {"commit": None, "dirty": None}
    try:
        outs = sorted({p for e in lockfile.load(root).values() for p in e.outs})
    except MlvError:
        outs = []
    return {"commit": commit, "dirty": gitfiles.dirty(root, excluding=[lockfile.NAME, *outs])}


def reuse_event(original: str, *, stage: str, fingerprint: str, definition: dict, params: dict,
                deps: dict[str, str], outs: dict[str, dict], root: Path) -> RunRecord:
    """The light record of a stage whose outputs were restored from run ``original`` instead of run."""
    now = time.time()
    return RunRecord(
        run_id=new_run_id(), stage=stage, fingerprint=fingerprint, definition=definition, params=params, deps=deps,
        outs=outs, status=REUSED, exit_code=None, started=now, ended=now, host=host(), worker=None, gpu=None,
        log=None, git=git_state(root), reused_from=original,
    )


class RunIndex:
    """Where records are, and the sqlite index that answers run-cache and ``show`` queries."""

    def __init__(self, ws: Workspace) -> None:
        self.root = ws.root
        self.dir = ws.dot / RUNS
        self.db = statedb.connect(ws.dot / "state.db")  # mlv run commits stages in one thread

    def path(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.json"

    def write(self, record: RunRecord) -> None:
        self.dir.mkdir(exist_ok=True)
        atomic.write_bytes(self.path(record.run_id), dumps(record))
        self.index(record)

    def index(self, record: RunRecord) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?)",
            (record.run_id, record.stage, record.fingerprint, record.status, record.ended),
        )

    def exists(self, run_id: str) -> bool:
        return self.path(run_id).is_file()

    def read(self, run_id: str) -> RunRecord:
        """The record of ``run_id``: ``FileNotFoundError`` if absent, ``RecordCorrupt`` if damaged."""
        path = self.path(run_id)
        return loads(path.read_bytes(), path=path.relative_to(self.root).as_posix(), run_id=run_id)

    def by_fingerprint(self, fingerprint: str) -> list[RunRecord]:
        """Successful runs with this fingerprint, newest first (damaged records are passed over: fsck names them)."""
        rows = self.db.execute(
            "SELECT run_id FROM runs WHERE fingerprint = ? AND status = 'succeeded' ORDER BY ended DESC", (fingerprint,)
        )
        found = []
        for (run_id,) in rows.fetchall():
            try:
                found.append(self.read(run_id))
            except (FileNotFoundError, RecordCorrupt):
                continue  # the run cache only loses a shortcut: the stage runs again
        return found

    def latest(self, stage: str) -> RunRecord | None:
        row = self.db.execute("SELECT run_id FROM runs WHERE stage = ? ORDER BY ended DESC LIMIT 1", (stage,)).fetchone()
        return self.read(row[0]) if row else None

    def reindex(self) -> int:
        """Rebuild the index from the record files; returns how many were indexed (damaged ones are left out)."""
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM runs")
        n = 0
        for path in sorted(self.dir.glob("*.json")) if self.dir.exists() else []:
            try:
                self.index(loads(path.read_bytes(), path=path.relative_to(self.root).as_posix(), run_id=path.stem))
            except RecordCorrupt:
                continue
            n += 1
        self.db.execute("COMMIT")
        return n


def host() -> str:
    return platform.node() or os.uname().nodename
