"""``mlv exp show`` and ``mlv metrics show``: the runs of a pipeline as experiments, and the metrics on disk.

Every run ever made is an experiment — a stage executed, or restored from the run cache
(a ``reused`` record) — and runs with the same fingerprint are the same experiment. So an
experiment is one fingerprint, shown through one of its records (:func:`_pick`): the
newest run that succeeded, else the newest restore, else the newest failure. Its params
are the record's (the params the stage used, a sweep's ``item…``/``key`` values included);
its metrics are the content of the run's ``metrics:`` outputs, read from the store by
digest and flattened to dotted names (``history.read_metrics``, the reader ``metrics diff``
uses). An experiment is *current* when ``mlv.lock`` names one of its runs.

Invariants: read-only but for caches in ``.mlv/state.db``: the provenance index catches up
with new record files (it lists every record's stage, status, times, fingerprint and
params, so a thousand records cost one query), and ``experiment_metrics`` keeps the metric
values of each shown run once read (a record and its objects never change), so only new
runs' record files and metrics objects are read. A metrics object missing from the store,
or a damaged record, leaves that experiment's metrics empty — never an error — and is
looked at again next time.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

from mlv.engine import lockfile
from mlv.engine.history import read_metrics
from mlv.engine.records import FAILED, REUSED, SUCCEEDED, RecordCorrupt, RunIndex
from mlv.storage.errors import UsageError
from mlv.storage.store.digest import of_bytes, parse
from mlv.storage.workspace import Workspace


# Metric values per run, read once: a run record and the objects it names never change. Rows are kept only when
# every metrics object was in the store; like every table in state.db, it can be deleted and is rebuilt on use.


@dataclass(frozen=True, slots=True)
class Experiment:
    run_id: str
    stage: str
    fingerprint: str
    started: float
    status: str  # succeeded | reused (restored from the run cache, its original run not here) | failed
    current: bool  # mlv.lock names one of its runs
    params: dict = field(default_factory=dict)  # dotted name -> value
    metrics: dict = field(default_factory=dict)  # dotted name -> value

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "stage": self.stage, "fingerprint": self.fingerprint,
                "started": iso_time(self.started), "status": self.status, "current": self.current,
                "params": self.params, "metrics": self.metrics}


def iso_time(ts: float) -> str:
    """UTC, to the second.

    >>> iso_time(0)
    '1970-01-01T00:00:00Z'
    """
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def experiments(ws: Workspace, *, stages: set[str] | None, sort: str | None = None) -> list[Experiment]:
    """One experiment per distinct fingerprint of the runs of ``stages`` (None: every stage), newest first.

    A generated stage (``train@0.1``) belongs to ``stages`` when its own name or the name of the
    stage it came from (``train``) is there, so a sweep's earlier points stay listed.

    Raises:
        UsageError: ``sort`` names no metric of the experiments (the message lists them).
    """
    from mlv.engine.provenance import ProvenanceIndex

    index = ProvenanceIndex(ws)
    rows = index.db.execute("SELECT r.run_id, r.stage, r.status, r.started, r.fingerprint, r.reused_from, r.params, "
                            "m.metrics FROM records r LEFT JOIN experiment_metrics m USING (run_id)")
    groups: dict[str, list[tuple]] = {}
    for row in rows:
        if stages is None or row[1] in stages or row[1].split("@", 1)[0] in stages:
            groups.setdefault(row[4], []).append(row)
    current = {entry.run_id for entry in lockfile.load(ws.root).values()}
    found, learnt = [], []
    for fingerprint, group in groups.items():
        run_id, stage, status, started, _, reused_from, params, cached = _pick(group)
        if cached is not None:
            metrics = json.loads(cached)
        else:
            metrics, complete = _metrics(ws, index.runs_index, run_id)
            if complete:
                learnt.append((run_id, json.dumps(metrics)))
        found.append(Experiment(
            run_id, stage, fingerprint, started, status,
            current=any(r[0] in current or r[5] in current for r in group),
            params=json.loads(params or "{}"), metrics=metrics))
    if learnt:
        index.db.execute("BEGIN")
        index.db.executemany("INSERT OR REPLACE INTO experiment_metrics VALUES (?, ?)", learnt)
        index.db.execute("COMMIT")
    found.sort(key=lambda e: (e.started, e.run_id), reverse=True)
    return sort_by(found, sort) if sort else found


def _pick(group: list[tuple]) -> tuple:
    """The record that shows an experiment: its newest successful run, else newest restore, else failure."""
    rank = {SUCCEEDED: 0, REUSED: 1, FAILED: 2}
    return min(group, key=lambda r: (rank.get(r[2], 3), -(r[3] or 0), r[0]))


def _metrics(ws: Workspace, runs: RunIndex, run_id: str) -> tuple[dict, bool]:
    """The values in a run's metrics outputs, from the store, and whether every one was there to read."""
    try:
        record = runs.read(run_id)
    except (FileNotFoundError, RecordCorrupt):
        return {}, False
    declared = record.definition.get("metrics") or []
    files, complete = {}, True
    for path in declared:
        out = record.outs.get(path) if isinstance(path, str) else None
        if isinstance(out, dict) and isinstance(out.get("digest"), str):
            try:
                digest = parse(out["digest"])
            except UsageError:  # a malformed digest in a record names no object
                continue
            if digest not in ws.store:
                complete = False  # not cached: a `mlv pull` may bring it
                continue
            files[path] = read_metrics(ws, _STORE_ONLY, path, digest) or {}
    return merge(files), complete


def merge(files: dict[str, dict]) -> dict:
    """``{file: {name: value}}`` as one ``{name: value}``; a name two files share is kept as ``file:name``.

    >>> merge({"a.json": {"acc": 1, "n": 2}, "b.json": {"acc": 3, "": 4}})
    {'a.json:acc': 1, 'n': 2, 'b.json:acc': 3, 'b.json': 4}
    """
    seen: dict[str, int] = {}
    for values in files.values():
        for name in values:
            seen[name] = seen.get(name, 0) + 1
    merged = {}
    for path, values in files.items():
        for name, value in values.items():
            merged[f"{path}:{name}" if seen[name] > 1 and name else name or path] = value
    return merged


def metric_names(found: list[Experiment]) -> list[str]:
    names: dict[str, None] = {}
    for e in found:
        names.update(dict.fromkeys(e.metrics))
    return sorted(names)


def sort_by(found: list[Experiment], metric: str) -> list[Experiment]:
    """Highest ``metric`` first (a stable sort: rows without a number for it go last, newest first)."""
    names = metric_names(found)
    if metric not in names:
        listing = ", ".join(names) if names else "(none: no experiment has metrics)"
        raise UsageError(f"no experiment has a metric '{metric}'; metrics: {listing}")

    def key(e: Experiment) -> tuple:
        value = e.metrics.get(metric)
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
        return (0, -value) if number else (1, 0)

    return sorted(found, key=key)


def workspace_metrics(ws: Workspace, paths: list[str]) -> dict[str, dict]:
    """``{path: {name: value}}`` for metrics files as they are on disk now (absent ones left out; a file that
    is neither JSON nor YAML shows no values)."""
    found: dict[str, dict] = {}
    for path in paths:
        try:
            data = (ws.root / path).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        values = read_metrics(ws, _Bytes(data), path, of_bytes(data))
        found[path] = values if values is not None else {}
    return found


class _Store:
    """A ``history.Tree`` stand-in with no files: ``read_metrics`` then reads the store, and only the store."""

    rev = label = "store"

    def read(self, path: str) -> bytes | None:
        return None


class _Bytes:
    """A ``history.Tree`` stand-in for the workspace whose file is already read."""

    rev = None
    label = "workspace"

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, path: str) -> bytes | None:
        return self.data


_STORE_ONLY = _Store()

