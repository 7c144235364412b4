"""``mlv trace``: the lineage graph of an artifact or run, upstream to raw data or downstream from it.

A lineage is plain data: artifact nodes (a path at a digest), run nodes (a run
record), and edges in the direction data flowed — ``input`` (artifact → run),
``output`` (run → artifact), ``member`` (directory → a file inside it, which a run
read), ``part`` (a file → the directory version holding it, when tracing downstream
from one file). The walk is breadth-first and asks the provenance index a fixed number
of batched queries per hop; ``verify`` then re-hashes every artifact's object and
re-reads every run record, naming the hop that is broken.

Invariants:
- A node's ``id`` is stable (``artifact:<path>@<digest>``, ``run:<run id>``); a run that
  the lineage needs but whose record is missing or damaged appears as a node with a
  ``problem``, never silently left out.
- An artifact node is the bytes at a path, and the same bytes at the same path may have
  been made by several runs (``mlv run --force``, a stage rerun that wrote what it wrote
  before). A reader's record names the one run it took them from, so the walk links
  output → reader on (path, digest, producing run): its frontier holds one entry per
  (node, source) met, never one per node. Deduplicating by node would follow only the
  first run to reach it and silently drop the readers (downstream) or the history
  (upstream) of every other.
- A downstream trace starts from the root's bytes at its path whichever run or pointer
  made them (``ANY``); an upstream trace starts from the one source that ``mlv.lock``
  or the pointer names. Past the root both follow recorded sources only, so for two
  artifacts X, Y: Y is upstream of X iff X is downstream of Y, wherever equal
  (path, digest) pairs have equal histories (the property test checks this). A command
  that makes the same bytes from different inputs breaks that premise: downstream then
  reaches X through an earlier run of X's bytes, which upstream (from mlv.lock's run)
  does not list.
- A prediction id (``p-<unix ms>-<server>-<counter>``, from ``mlv serve``) resolves through the
  prediction log's catalog (``.mlv/predictions/<segment hex>.json``, indexed by id range in
  state.db) to the stored segment that holds it. It is traced as an artifact node, path
  ``prediction/<id>`` at the segment's digest, origin ``prediction``, carrying the logged row;
  a ``served`` edge joins it to the package that answered, and the walk goes on from there.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from mlv.engine import predlog
from mlv.engine.history import Tree, Version, resolve_rev, version_of
from mlv.engine.provenance import InputRow, ProvenanceIndex
from mlv.storage.errors import (
    MlvError,
    ObjectCorrupt,
    ObjectMissing,
    StorageError,
    UsageError,
)
from mlv.storage.store.digest import Digest, parse
from mlv.storage.workspace import Workspace, pointers

UPSTREAM, DOWNSTREAM = "upstream", "downstream"
#: The source of a downstream trace's root: its bytes at its path, whoever made them.
ANY: dict = {"any": True}
#: The ids ``mlv serve`` gives predictions (``engine.predlog``).
PREDICTION_ID = re.compile(r"p-\d{13}-[0-9a-f]{8}-[0-9a-f]+")


@dataclass(frozen=True, slots=True)
class Start:
    """What to trace from: an artifact version, or a run."""

    version: Version | None = None
    run_id: str | None = None
    rev: str | None = None
    prediction: dict | None = None  # a logged prediction: its row, segment and package


@dataclass(frozen=True, slots=True)
class Lineage:
    root: str
    direction: str
    nodes: tuple[dict, ...]
    edges: tuple[dict, ...]
    problems: tuple[str, ...] = ()  # records the walk could not read; with verify, broken hops
    verified: bool = False

    def to_dict(self) -> dict:
        return {"root": self.root, "direction": self.direction, "verified": self.verified,
                "problems": list(self.problems), "nodes": list(self.nodes), "edges": list(self.edges)}


def resolve(ws: Workspace, index: ProvenanceIndex, target: str, *, rev: str | None = None) -> Start:
    """A path (now or at ``rev``), a run id or its prefix, an object digest or its hex prefix, a prediction id."""
    if rev is None and PREDICTION_ID.fullmatch(target):
        return Start(prediction=predlog.find(ws, target))
    if rev is not None:
        commit = resolve_rev(ws, rev)
        rel = ws.rel(ws.resolve(target, must_exist=False))
        version = version_of(Tree(ws, commit), rel)
        if version is None:
            raise UsageError(f"'{rel}' is neither a stage output in mlv.lock nor data added with `mlv add` at "
                             f"'{rev}'; `mlv log {rel}` lists the commits where it has a version")
        return Start(version=version, rev=commit)
    row = index.runs([target]).get(target)
    if row is not None or ("/" not in target and index.runs_index.exists(target)):
        return Start(run_id=row.reused_from if row and row.reused_from else target)  # a reuse ran nothing itself
    try:
        rel = ws.rel(ws.resolve(target, must_exist=False))
    except UsageError:
        rel = None  # outside the repo: may still be a digest
    if rel:
        version = version_of(Tree(ws), rel)
        if version is not None:
            return Start(version=version)
    hexpart = target.removeprefix("xxh3-128:").lower()
    if len(hexpart) >= 4 and all(c in "0123456789abcdef" for c in hexpart):
        matches = index.match_digest("xxh3-128:" + hexpart)
        if len(matches) == 1:
            (d, path), = matches.items()
            source = _guess(path or "", index.made([d]).get(d, []), index.added_as([d]).get(d, []))
            return Start(version=Version(path or "", parse(d), source))
        if len(matches) > 1:
            listed = ", ".join(f"{d[9:21]} ({p})" for d, p in sorted(matches.items())[:8])
            raise UsageError(f"'{target}' is the start of {len(matches)} digests: {listed}; give more characters")
    runs = index.match_run(target)
    if len(runs) == 1:
        return resolve(ws, index, runs[0])
    if len(runs) > 1:
        raise UsageError(f"'{target}' is the start of {len(runs)} run ids: {', '.join(runs[:8])}; give more characters")
    raise UsageError(
        f"'{target}' is not a tracked path, a known object digest or a run id. Trace a stage output named in "
        "mlv.lock or data added with `mlv add` (`--rev REV` for an old version), a digest or its first hex "
        "characters (`mlv log PATH` lists them), or a run id (`mlv show STAGE` prints one)"
    )


class _Builder:
    def __init__(self) -> None:
        self.nodes: dict[str, dict] = {}
        self.edges: dict[tuple[str, str], dict] = {}
        self.problems: list[str] = []
        self._followed: set[tuple[str, str]] = set()

    def first(self, node_id: str, source: dict | None) -> bool:
        """True the first time the walk meets ``node_id`` as made by ``source`` (see the module docstring)."""
        key = (node_id, "" if source is None else repr(sorted(source.items())))
        if key in self._followed:
            return False
        self._followed.add(key)
        return True

    def artifact(self, path: str, digest: str, depth: int, **facts: object) -> tuple[str, bool]:
        node_id = f"artifact:{path}@{digest}"
        new = node_id not in self.nodes
        if new:
            self.nodes[node_id] = {"id": node_id, "type": "artifact", "path": path, "digest": digest,
                                   "origin": "source", "hop": depth}
        self.nodes[node_id].update({k: v for k, v in facts.items() if v is not None})
        return node_id, new

    def run(self, run_id: str, depth: int, row, broken: dict[str, str]) -> str:
        node_id = f"run:{run_id}"
        if node_id in self.nodes:
            return node_id
        node = {"id": node_id, "type": "run", "run_id": run_id, "stage": row.stage if row else None, "hop": depth}
        if row is not None:
            node.update({"status": row.status, "started": iso_time(row.started), "ended": iso_time(row.ended),
                         "commit": row.commit, "dirty": row.dirty, "params": row.params,
                         "fingerprint": row.fingerprint, "reused_from": row.reused_from})
        else:
            why = broken.get(run_id) or f"run record '.mlv/runs/{run_id}.json' is missing (`mlv pull` fetches records)"
            node["problem"] = why
            self.problems.append(f"hop {depth}: run {run_id}: {why}")
        self.nodes[node_id] = node
        return node_id

    def edge(self, source: str, target: str, kind: str) -> None:
        self.edges.setdefault((source, target), {"source": source, "target": target, "type": kind})


def trace(ws: Workspace, index: ProvenanceIndex, start: Start, *, downstream: bool = False,
          verify: bool = False) -> Lineage:
    """The lineage of ``start`` (see the module docstring); ``verify`` also checks every hop's bytes."""
    b = _Builder()
    broken = index.broken()
    if start.prediction is not None:
        root, frontier = _prediction(b, index, start.prediction)
        later = []
    elif start.run_id is not None:
        root = b.run(start.run_id, 0, index.runs([start.run_id]).get(start.run_id), broken)
        frontier = [] if downstream else _run_inputs(b, index, {start.run_id: 0})
        later = _run_outputs(b, index, [start.run_id], 1) if downstream else []
    else:
        v = start.version
        source = v.source or {}
        root, _ = b.artifact(v.path, str(v.digest), 0, origin="member" if source.get("within") else v.origin,
                             nfiles=v.nfiles, pointer=source.get("added"), rev=start.rev)
        frontier = [(root, v.path, str(v.digest), v.source)]
        later = [(root, v.path, str(v.digest), True, ANY)]
        if downstream and source.get("within"):  # what was built from the whole directory holding this file
            container, _ = b.artifact(source["within"], source["digest"], 1, origin=_origin(source),
                                      pointer=source.get("added"))
            b.edge(root, container, "part")
            later.append((container, source["within"], source["digest"], False, ANY))  # not its other files
    for entry in frontier if not downstream else later:
        b.first(entry[0], entry[-1])
    if downstream:
        _walk_down(b, index, later, broken)
    else:
        _walk_up(b, index, frontier, broken)
    if verify:
        _verify(ws, index, b)
    nodes = sorted(b.nodes.values(), key=lambda n: (n["hop"], n["id"]))
    return Lineage(root, DOWNSTREAM if downstream else UPSTREAM, tuple(nodes), tuple(b.edges.values()),
                   tuple(b.problems), verify)


# -- predictions ------------------------------------------------------------------------------


def _prediction(b: _Builder, index: ProvenanceIndex, p: dict) -> tuple[str, list]:
    """The prediction's node, its package's node (linked by a ``served`` edge), and the walk's first frontier."""
    root, _ = b.artifact(f"prediction/{p['prediction_id']}", p["segment"], 0, origin="prediction", prediction=p)
    package = p["package"]
    made = index.made([package]).get(package, [])
    path = made[0].path if made else (index.match_digest(package).get(package) or "")
    node, _ = b.artifact(path, package, 1)
    b.edge(node, root, "served")
    return root, [(node, path, package, None)]


def _walk_up(b: _Builder, index: ProvenanceIndex, frontier: list, broken: dict) -> None:
    """Artifacts → the runs (or ``mlv add``) that made them → those runs' inputs, hop by hop."""
    seen_runs: set[str] = set()
    while frontier:
        lookup = [d for _, _, d, source in frontier if source is None]
        made, added = (index.made(lookup), index.added_as(lookup)) if lookup else ({}, {})
        runs: dict[str, int] = {}
        for node_id, path, digest, source in frontier:
            depth = b.nodes[node_id]["hop"]
            if source is None:
                source = _guess(path, made.get(digest, []), added.get(digest, []))
            if source is None:
                continue  # a source file (code, config): mlv did not make it and does not store it
            if source.get("within"):  # a file inside a directory version: that directory is the next hop
                container, _ = b.artifact(source["within"], source["digest"], depth + 1, origin=_origin(source),
                                          pointer=source.get("added"))
                b.edge(container, node_id, "member")
                b.nodes[node_id]["origin"] = "member"
                node_id, depth = container, depth + 1
                if not b.first(container, {k: source[k] for k in ("run", "added") if k in source}):
                    continue  # that directory version, from that source, is already on the frontier
            if "added" in source:
                b.nodes[node_id].update(origin="added", pointer=source["added"])
                continue
            b.nodes[node_id]["origin"] = "output"
            run_id = source["run"]
            b.edge(f"run:{run_id}", node_id, "output")
            if run_id not in seen_runs:
                seen_runs.add(run_id)
                runs[run_id] = depth + 1
        rows = index.runs(runs)
        for run_id, depth in runs.items():
            b.run(run_id, depth, rows.get(run_id), broken)
        frontier = _run_inputs(b, index, runs)


def _origin(source: dict) -> str:
    return "output" if "run" in source else "added"


def _run_inputs(b: _Builder, index: ProvenanceIndex, depths: dict[str, int]) -> list:
    """The inputs of runs at ``{run id: hop}``, as the next frontier of an upstream walk."""
    frontier = []
    for run_id, inputs in index.inputs_of(depths).items():
        hop = depths[run_id] + 1
        for row in inputs:
            node_id, _ = b.artifact(row.path, row.digest, hop)
            b.edge(node_id, f"run:{run_id}", "input")
            if b.first(node_id, row.source):  # not `new`: the same bytes read from another run have another past
                frontier.append((node_id, row.path, row.digest, row.source))
    return frontier


def _guess(path: str, made: list, added: list[str]) -> dict | None:
    """Where bytes with no recorded source came from: a run that wrote them at this path, or ``mlv add``."""
    same = [row for row in made if row.path == path or not path]
    if same:
        return {"run": same[0].run_id}
    mine = [p for p in added if p == path + pointers.SUFFIX or not path]
    return {"added": mine[0]} if mine else None


def _run_outputs(b: _Builder, index: ProvenanceIndex, run_ids: list[str], depth: int) -> list:
    later = []
    for run_id, outs in index.outputs_of(run_ids).items():
        for row in outs:
            node_id, _ = b.artifact(row.path, row.digest, depth, origin="output", nfiles=row.nfiles)
            b.edge(f"run:{run_id}", node_id, "output")
            if b.first(node_id, {"run": run_id}):  # not `new`: another run may have made these bytes first
                later.append((node_id, row.path, row.digest, True, {"run": run_id}))
    return later


def _walk_down(b: _Builder, index: ProvenanceIndex, frontier: list, broken: dict) -> None:
    """Artifacts → runs that read them (or a file inside them) → those runs' outputs, hop by hop.

    Frontier entries are ``(node id, path, digest, whole, source)``, one per source that
    made the node; a run counts as a reader only if it read these bytes at this path
    from that source (``_same_source``), so a copy of the same bytes elsewhere does not
    pass for this artifact.
    """
    seen_runs: set[str] = set()
    while frontier:
        readers = index.read_by(d for _, _, d, _, _ in frontier)
        inside = index.read_by((d for _, _, d, whole, _ in frontier if whole), column="via")
        runs: dict[str, int] = {}
        for node_id, path, digest, whole, source in frontier:
            depth = b.nodes[node_id]["hop"]
            for row in readers.get(digest, []):
                if _same_source(source, path, row):
                    _reader(b, runs, seen_runs, node_id, row, depth)
            for row in inside.get(digest, []) if whole else ():
                if _same_source(source, path, row, inside=True):
                    member, _ = b.artifact(row.path, row.digest, depth + 1, origin="member")
                    b.edge(node_id, member, "member")
                    _reader(b, runs, seen_runs, member, row, depth + 1)
        rows = index.runs(runs)
        later = []
        for run_id, depth in runs.items():
            b.run(run_id, depth, rows.get(run_id), broken)
            later += _run_outputs(b, index, [run_id], depth + 1)
        frontier = later


def _same_source(source: dict | None, path: str, row: InputRow, *, inside: bool = False) -> bool:
    """Whether ``row`` read the artifact at ``path`` (``""``: anywhere) made by ``source`` (``inside``: a file in it).

    The bytes read must be the artifact's at its path; then the record's producer must be
    ``source``, unless that is ``ANY`` (a downstream root) or the record does not say.
    """
    theirs = row.source or {}
    if path and (theirs.get("within") if inside else row.path) != path:
        return False
    if source is ANY or not theirs:  # a record that does not say: the same bytes at the same path
        return True
    if not source:  # a source file: mlv made no run or pointer for it, so a reader crediting one read other bytes
        return False
    if "run" in source:
        return theirs.get("run") == source["run"]
    return theirs.get("added") == source.get("added")


def _reader(b: _Builder, runs: dict, seen: set, node_id: str, row: InputRow, depth: int) -> None:
    b.edge(node_id, f"run:{row.run_id}", "input")
    if row.run_id not in seen:
        seen.add(row.run_id)
        runs[row.run_id] = depth + 1


def _verify(ws: Workspace, index: ProvenanceIndex, b: _Builder) -> None:
    """Re-hash each artifact's object (a directory: its manifest and every file) and re-read each record."""
    store = ws.store
    for node in sorted(b.nodes.values(), key=lambda n: n["hop"]):
        if node["type"] == "run":
            node["verified"] = _check_record(index, node)
        elif node["origin"] == "source" and parse(node["digest"]) not in store:
            node["verified"] = "unstored"  # code and other source files live in git, not the store
        else:
            node["verified"] = _check_object(store, parse(node["digest"]))
        if node["verified"] not in ("ok", "unstored"):
            what = (f"run {node['run_id']} (stage '{node['stage']}')" if node["type"] == "run"
                    else f"{node['path']}@{node['digest'][9:21]}")
            b.problems.append(f"hop {node['hop']}: {what}: {node['verified']}")


def _check_record(index: ProvenanceIndex, node: dict) -> str:
    if node.get("problem"):
        return node["problem"]
    try:
        index.runs_index.read(node["run_id"])
    except FileNotFoundError:
        return f"run record '.mlv/runs/{node['run_id']}.json' is missing"
    except MlvError as exc:
        return str(exc)
    return "ok"


def _check_object(store, digest: Digest) -> str:
    from mlv.storage.store import manifest

    try:
        data = store.read_bytes(digest, verify=True) if store.size(digest) < 64 << 20 else None
        if data is None:
            with store.open(digest, verify=True) as f:
                while f.read(1 << 20):
                    pass
            return "ok"
        if data[:4] == b"\xff\xff\xff\xff":  # an Arrow stream: a directory manifest, check its files too
            try:
                members = manifest.load(data)
            except StorageError:
                return "ok"  # not a manifest after all, just bytes that start alike
            for entry in members:
                with store.open(entry.digest, verify=True) as f:
                    while f.read(1 << 20):
                        pass
        return "ok"
    except ObjectMissing as exc:
        return f"missing from the store ({exc})"
    except ObjectCorrupt as exc:
        return f"damaged ({exc})"
    except StorageError as exc:
        return f"unreadable ({exc})"


def iso_time(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))

