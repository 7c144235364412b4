"""The provenance index: which run made each artifact, which runs read it, where raw data was added.

Tables in ``.mlv/state.db`` (beside the stat cache and the run-cache table ``runs``)::

    records(run_id PRIMARY KEY, stage, status, started, ended, git_commit, dirty,
            fingerprint, reused_from, params)          one row per readable record (params: JSON)
    outputs(digest, run_id, path, nfiles)              outs of succeeded runs       [digest] [run_id]
    inputs(digest, run_id, path, producer, pointer, within, via)
                                                       deps of executed runs        [digest] [run_id] [via]
        producer: the run that made the dep; pointer: the ``.mlv`` file of added data;
        within, via: path and digest of the output or added directory the dep is a file of
    added(digest, pointer, origin)                     versions added with ``mlv add``  [digest]
    broken_records(run_id PRIMARY KEY, mtime_ns, detail)   record files that could not be read
    provenance_meta(key PRIMARY KEY, value)            schema version

Invariants:
- Every row derives from the record files in ``.mlv/runs/`` and from pointer files
  (in the workspace and, on ``reindex``, in git history). ``sync`` runs before every
  query: it indexes record files that appeared (a run, a pull) and drops the rows of
  ones that vanished. ``reindex`` rebuilds everything, so losing ``state.db`` loses nothing.
- Lookups go by indexed digest, run id or ``via``, in batches: walking a lineage costs
  a few queries per hop, whatever the size of the history.
- A record that cannot be read is never skipped silently: it is listed in
  ``broken_records``, and ``check_records`` (for ``mlv fsck``) reports every damaged file.
- A digest has one ``outputs`` row per run that wrote it (``mlv run --force``, a rerun
  that made the same bytes): there is no "the" producer of a digest. An ``inputs`` row's
  ``producer`` is the one run its reader took the bytes from, whichever that was (the
  run ``mlv.lock`` named then). So an output reaches its readers through (digest, path,
  producing run), and a walk must follow each producing run it meets, not one per
  digest; ``mlv.engine.lineage`` does.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mlv.engine.lockfile import LockEntry
from mlv.engine.records import SUCCEEDED, REUSED, RecordCorrupt, RunIndex, RunRecord, loads
from mlv.storage.workspace import gitfiles, pointers, statedb
from mlv.storage.store.digest import Digest
from mlv.storage.errors import MlvError, StorageError
from mlv.storage.workspace import Workspace

VERSION = "1"  # bump when a table changes: the tables are rebuilt from the records, never migrated
_BATCH = 500


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: str
    stage: str
    status: str
    started: float
    ended: float
    commit: str | None
    dirty: bool | None
    fingerprint: str
    reused_from: str | None
    params: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InputRow:
    run_id: str
    path: str
    digest: str
    source: dict | None  # the record's producers entry: {"run": …} | {"added": …} (+ "within", "digest") | None


@dataclass(frozen=True, slots=True)
class OutputRow:
    run_id: str
    path: str
    digest: str
    nfiles: int | None


@dataclass(frozen=True, slots=True)
class RecordProblem:
    """A run record file that is unreadable or no longer matches its ``record_digest``."""

    run_id: str
    path: str  # the record file, relative to the repo root
    detail: str  # what is wrong and how to fix it
    kind: str = "corrupt-record"

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "path": self.path, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class ReindexReport:
    records: int
    added: int
    broken: tuple[RecordProblem, ...]

    def to_dict(self) -> dict:
        return {"records": self.records, "added": self.added, "broken": [p.to_dict() for p in self.broken]}


class ProvenanceIndex:
    """The provenance tables over one sqlite connection (shared with the run-cache index)."""

    def __init__(self, ws: Workspace, *, sync: bool = True) -> None:
        self.ws = ws
        self.runs_index = RunIndex(ws)
        self.db = self.runs_index.db
        try:
            row = self.db.execute("SELECT value FROM provenance_meta WHERE key = 'version'").fetchone()
        except sqlite3.OperationalError:  # no such table: a fresh (or deleted) state.db
            row = None
        if row is None or row[0] != VERSION:
            self._create()
        if sync:
            self.sync()

    def _create(self, *, always: bool = False) -> None:
        """(Re)create the tables: ``always``, or when their version is not this one — checked under the write
        lock, so two processes or threads opening a fresh state.db do not both rebuild it."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT value FROM provenance_meta WHERE key = 'version'").fetchone()
            if always or row is None or row[0] != VERSION:
                statedb.reset(self.db, "provenance")
                self.db.execute("INSERT INTO provenance_meta VALUES ('version', ?)", (VERSION,))
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- keeping up with the record files ---------------------------------------------
    def sync(self) -> int:
        """Index record files not yet indexed, drop rows of vanished ones; returns how many were read."""
        folder = self.runs_index.dir
        on_disk = {n[:-5] for n in os.listdir(folder) if n.endswith(".json")} if folder.is_dir() else set()
        indexed = {r for (r,) in self.db.execute("SELECT run_id FROM records")}
        broken = dict(self.db.execute("SELECT run_id, mtime_ns FROM broken_records").fetchall())
        retry = {r for r, ns in broken.items() if r in on_disk and _mtime(self.runs_index.path(r)) != ns}
        new = (on_disk - indexed - set(broken)) | retry
        gone = (indexed | set(broken)) - on_disk
        if not new and not gone:
            return 0
        self.db.execute("BEGIN")
        try:
            self._forget(gone | retry)
            for run_id in sorted(new):
                self._read_and_add(run_id)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return len(new)

    def reindex(self, *, history: bool = True) -> ReindexReport:
        """Rebuild every table from the record files, workspace pointers and (``history``) git history."""
        self._create(always=True)
        self.db.execute("BEGIN")
        try:
            self.db.execute("DELETE FROM runs")
            folder = self.runs_index.dir
            for name in sorted(os.listdir(folder)) if folder.is_dir() else ():
                if name.endswith(".json"):
                    self._read_and_add(name[:-5])
            n_added = self._add_pointers(history=history)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        broken = tuple(RecordProblem(r, self.ws.rel(self.runs_index.path(r)), d)
                       for r, d in self.db.execute("SELECT run_id, detail FROM broken_records ORDER BY run_id"))
        records = self.db.execute("SELECT count(*) FROM records").fetchone()[0]
        return ReindexReport(records, n_added, broken)

    def _read_and_add(self, run_id: str) -> None:
        path = self.runs_index.path(run_id)
        try:
            record = loads(path.read_bytes(), path=self.ws.rel(path), run_id=run_id)
        except RecordCorrupt as exc:
            self.db.execute("INSERT OR REPLACE INTO broken_records VALUES (?, ?, ?)", (run_id, _mtime(path), str(exc)))
            return
        except FileNotFoundError:
            return  # removed while we looked
        self.add(record)

    def add(self, record: RunRecord) -> None:
        """Index one record (and its run-cache row)."""
        self.runs_index.index(record)
        git = record.git or {}
        self.db.execute(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.run_id, record.stage, record.status, record.started, record.ended, git.get("commit"),
             git.get("dirty"), record.fingerprint, record.reused_from, json.dumps(record.params, sort_keys=True)),
        )
        if record.status == REUSED:
            return  # the original record already says what these outputs came from
        if record.status == SUCCEEDED:
            self.db.executemany("INSERT INTO outputs VALUES (?, ?, ?, ?)",
                                [(o["digest"], record.run_id, p, o.get("nfiles")) for p, o in record.outs.items()])
        rows, added = [], []
        for path, dep in record.deps.items():
            src = record.producers.get(path) or {}
            via = src.get("digest") if src.get("within") else None
            rows.append((dep, record.run_id, path, src.get("run"), src.get("added"), src.get("within"), via))
            if src.get("added"):
                added.append((via or dep, src["added"], "record"))
        self.db.executemany("INSERT INTO inputs VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        self.db.executemany("INSERT OR IGNORE INTO added VALUES (?, ?, ?)", added)

    def _forget(self, run_ids: set[str]) -> None:
        for chunk in _chunks(sorted(run_ids)):
            marks = ",".join("?" * len(chunk))
            for table in ("records", "outputs", "inputs", "broken_records", "runs"):
                self.db.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", chunk)

    def _add_pointers(self, *, history: bool) -> int:
        rows = []
        for file in self.ws.pointer_files():
            try:
                rows.append((str(pointers.load(file, root=self.ws.root).digest), self.ws.rel(file), "workspace"))
            except MlvError:
                continue  # a malformed pointer names nothing; `mlv status` says what is wrong with it
        if history and self.ws.in_git:
            try:  # the same walk `gc --all-commits` does
                blobs = gitfiles.blobs(self.ws.root, lambda path: path.endswith(pointers.SUFFIX))
            except MlvError:
                blobs = []  # not a git work tree after all (or no commits): workspace pointers only
            for where, blob in blobs:
                commit, _, path = where.partition(":")
                try:
                    digest = pointers.parse(blob, name=path.rsplit("/", 1)[-1], where=where)[0]
                except MlvError:
                    continue  # an old pointer that does not parse named nothing anyone can check out
                rows.append((str(digest), path, commit))
        self.db.executemany("INSERT OR IGNORE INTO added VALUES (?, ?, ?)", rows)
        return len(rows)

    # -- queries ----------------------------------------------------------------------
    def runs(self, run_ids: Iterable[str]) -> dict[str, RunRow]:
        rows = self._many("SELECT * FROM records WHERE run_id IN ({})", run_ids)
        return {r[0]: RunRow(*r[:6], None if r[6] is None else bool(r[6]), r[7], r[8], json.loads(r[9] or "{}"))
                for r in rows}

    def outputs_of(self, run_ids: Iterable[str]) -> dict[str, list[OutputRow]]:
        found: dict[str, list[OutputRow]] = {}
        for d, run_id, path, nfiles in self._many("SELECT * FROM outputs WHERE run_id IN ({})", run_ids):
            found.setdefault(run_id, []).append(OutputRow(run_id, path, d, nfiles))
        return found

    def inputs_of(self, run_ids: Iterable[str]) -> dict[str, list[InputRow]]:
        found: dict[str, list[InputRow]] = {}
        for row in self._many("SELECT * FROM inputs WHERE run_id IN ({})", run_ids):
            found.setdefault(row[1], []).append(_input(row))
        return found

    def made(self, digests: Iterable[str]) -> dict[str, list[OutputRow]]:
        """Runs that output each digest, newest first."""
        found: dict[str, list[OutputRow]] = {}
        sql = ("SELECT o.digest, o.run_id, o.path, o.nfiles FROM outputs o JOIN records r USING (run_id) "
               "WHERE o.digest IN ({}) ORDER BY r.ended DESC")
        for d, run_id, path, nfiles in self._many(sql, digests):
            found.setdefault(d, []).append(OutputRow(run_id, path, d, nfiles))
        return found

    def read_by(self, digests: Iterable[str], *, column: str = "digest") -> dict[str, list[InputRow]]:
        """Succeeded runs that read each digest (``column="via"``: that read a file inside it)."""
        assert column in ("digest", "via")
        found: dict[str, list[InputRow]] = {}
        sql = (f"SELECT i.* FROM inputs i JOIN records r USING (run_id) WHERE i.{column} IN ({{}}) "
               "AND r.status = 'succeeded' ORDER BY r.ended")
        for row in self._many(sql, digests):
            found.setdefault(row[6] if column == "via" else row[0], []).append(_input(row))
        return found

    def added_as(self, digests: Iterable[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for d, pointer in self._many("SELECT DISTINCT digest, pointer FROM added WHERE digest IN ({})", digests):
            found.setdefault(d, []).append(pointer)
        return found

    def match_digest(self, prefix: str) -> dict[str, str | None]:
        """``{digest: a path it had}`` for every known digest starting with ``prefix`` (``xxh3-128:…``)."""
        found: dict[str, str | None] = {}
        end = prefix + "\uffff"
        for table, column in (("outputs", "path"), ("inputs", "path"), ("added", "pointer")):
            for d, where in self.db.execute(
                    f"SELECT digest, {column} FROM {table} WHERE digest >= ? AND digest < ? LIMIT 50", (prefix, end)):
                if table == "added" and where.endswith(pointers.SUFFIX):
                    where = where[: -len(pointers.SUFFIX)]
                found.setdefault(d, where)
        return found

    def match_run(self, prefix: str) -> list[str]:
        """Run ids that start with ``prefix`` — or, failing that, whose random part (after the '-', as
        ``exp show`` prints it) starts with it."""
        rows = self.db.execute("SELECT run_id FROM records WHERE run_id >= ? AND run_id < ? LIMIT 50",
                               (prefix, prefix + "\uffff"))
        found = [r for (r,) in rows]
        if not found and len(prefix) >= 4 and all(c in "0123456789abcdef" for c in prefix):
            rows = self.db.execute("SELECT run_id FROM records WHERE run_id LIKE ? LIMIT 50", (f"%-{prefix}%",))
            found = [r for (r,) in rows if r.split("-", 1)[-1].startswith(prefix)]
        return found

    def broken(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT run_id, detail FROM broken_records"))

    def _many(self, sql: str, keys: Iterable[str]) -> list[tuple]:
        rows: list[tuple] = []
        for chunk in _chunks(sorted(set(keys))):
            rows.extend(self.db.execute(sql.format(",".join("?" * len(chunk))), chunk))
        return rows


def input_producers(ws: Workspace, deps: dict[str, Digest], lock: dict[str, LockEntry]) -> dict[str, dict | None]:
    """Where each dep came from, for a new run record (see ``RunRecord.producers``).

    In order: an output named in ``mlv.lock`` (or a file inside one), data added with
    ``mlv add`` (its pointer, or a file inside an added directory), an earlier run that
    wrote these very bytes at this very path; else None (a source file, e.g. code).
    A dep whose bytes differ from what the lock or pointer names is not credited to it.
    """
    found: dict[str, dict | None] = {}
    manifests: dict[Digest, object] = {}
    unknown = []
    for path, digest in deps.items():
        try:
            found[path] = _from_lock(ws, path, digest, lock, manifests) or _from_pointer(ws, path, digest, manifests)
        except MlvError:  # e.g. a malformed pointer: the stage has run, so its record is still written
            found[path] = None
        if found[path] is None:
            unknown.append(path)
    if unknown:
        try:
            made = ProvenanceIndex(ws).made(str(deps[p]) for p in unknown)
        except sqlite3.Error:  # the index is busy or damaged: these deps stay unattributed, the record is written
            made = {}
        for path in unknown:
            same_path = [row for row in made.get(str(deps[path]), []) if row.path == path]
            found[path] = {"run": same_path[0].run_id} if same_path else None
    return found


def _from_lock(ws, path, digest, lock, manifests) -> dict | None:
    for entry in lock.values():
        for out_path, out in entry.outs.items():
            if out_path == path and out.digest == digest:
                return {"run": entry.run_id}
            if out.nfiles is not None and path.startswith(out_path + "/"):
                if member_digest(ws, out.digest, path[len(out_path) + 1:], manifests) == digest:
                    return {"run": entry.run_id, "within": out_path, "digest": str(out.digest)}
    return None


def _from_pointer(ws, path, digest, manifests) -> dict | None:
    parts = path.split("/")
    for n in range(len(parts), 0, -1):
        target = "/".join(parts[:n])
        file = ws.root / (target + pointers.SUFFIX)
        if not file.is_file():
            continue
        pointer = pointers.load(file, root=ws.root)
        if n == len(parts):
            return {"added": ws.rel(file)} if pointer.digest == digest else None
        if pointer.is_dir and member_digest(ws, pointer.digest, "/".join(parts[n:]), manifests) == digest:
            return {"added": ws.rel(file), "within": target, "digest": str(pointer.digest)}
        return None
    return None


def member_digest(ws: Workspace, directory: Digest, rel: str, cache: dict | None = None) -> Digest | None:
    """The digest of file ``rel`` in directory version ``directory`` (None if absent or unreadable)."""
    from mlv.storage.store import manifest

    cache = {} if cache is None else cache
    if directory not in cache:
        try:
            cache[directory] = manifest.load(ws.store.read_bytes(directory))
        except StorageError:
            cache[directory] = None
    loaded = cache[directory]
    entry = loaded.get(rel) if loaded is not None else None
    return entry.digest if entry is not None else None


def check_records(ws: Workspace) -> list[RecordProblem]:
    """Every run record file that is unreadable or damaged (for ``mlv fsck``); an empty list if all are sound."""
    index = RunIndex(ws)
    problems = []
    for path in sorted(index.dir.glob("*.json")) if index.dir.is_dir() else ():
        try:
            loads(path.read_bytes(), path=ws.rel(path), run_id=path.stem)
        except RecordCorrupt as exc:
            problems.append(RecordProblem(path.stem, ws.rel(path), str(exc)))
        except OSError as exc:
            problems.append(RecordProblem(path.stem, ws.rel(path), f"run record '{ws.rel(path)}' cannot be read ({exc})"))
    return problems


def _input(row: tuple) -> InputRow:
    d, run_id, path, producer, pointer, within, via = row
    source: dict | None = None
    if producer or pointer:
        source = {"run": producer} if producer else {"added": pointer}
        if within:
            source.update({"within": within, "digest": via})
    return InputRow(run_id, path, d, source)


def _chunks(keys: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(keys), _BATCH):
        yield keys[i:i + _BATCH]


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0
