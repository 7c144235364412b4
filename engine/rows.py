"""``mlv trace PREDICTIONS --row N``: the lineage of one batch prediction, from its provenance columns.

A score stage (or ``mlv score``) writes, beside each prediction, ``mlv_package`` (the package
digest), ``mlv_input`` (the digest of the input partition file) and ``mlv_row`` (the row's number
in that file). ``locate`` reads those of one row — row ``N`` of a prediction file, or of a
directory of them counted across its ``*.parquet`` files in name order, from 0 — reading only
the footers and the one row group that holds it. ``trace_row`` then builds the lineage:

    row ← the run that wrote it ← its inputs (the package, the input data) ← … ← raw data
    row ← the input partition (a file of the input directory, found by its digest) ← that directory
    row ← the package

as a ``Lineage`` rooted at a node of type ``row`` (id ``row:<file>#<N>``), the others being the
``mlv trace`` nodes and edges of the scoring run, one hop further out.

Invariants:
- The run is the one that wrote the file where it lies: the ``mlv.lock`` output, or the run
  whose record has the enclosing directory's bytes at that path (``mlv score``). A row whose
  file no run wrote is traced from its digests alone, and the lineage says so in ``problems``.
- A row that names another package or input than the run read is a problem, never glossed over.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from mlv.engine import lineage
from mlv.engine.history import Tree, Version, version_of
from mlv.engine.provenance import ProvenanceIndex
from mlv.storage.errors import MlvError, StorageError, UsageError
from mlv.storage.store.digest import parse
from mlv.storage.workspace import Workspace

PROVENANCE = ("mlv_package", "mlv_input", "mlv_row")
PARTITION_SUFFIXES = (".parquet", ".pq", ".csv")  # what the score kind reads as partitions (pipelines.tables)


@dataclass(frozen=True, slots=True)
class Row:
    file: str  # the prediction file, repo-relative
    index: int  # the row's number in that file
    number: int  # the N asked for (across a directory's files)
    part: int  # which file of the directory (0 for a file)
    package: str
    input: str
    input_row: int
    prediction: object


def locate(ws: Workspace, target: str, n: int) -> Row:
    """Row ``n`` (from 0) of a prediction file, or of a directory of them counted across its files in name order.

    Raises:
        UsageError: the path is not a Parquet prediction file or directory, has no provenance columns, or has no
            row ``n``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = ws.resolve(target)
    files = sorted(p for p in path.glob("*.parquet") if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise UsageError(f"'{target}' holds no .parquet files; --row reads the predictions a score stage or "
                         "`mlv score` wrote")
    try:
        counts = [pq.read_metadata(f).num_rows for f in files]
    except (pa.ArrowInvalid, OSError) as exc:
        raise UsageError(f"'{target}' is not a Parquet prediction file ({exc}); --row reads the predictions a score "
                         "stage or `mlv score` wrote") from None
    total = sum(counts)
    if n < 0 or n >= total:
        span = f"rows 0–{total - 1}" if total else "no rows"
        raise UsageError(f"row {n} is out of range: '{target}' has {span}")
    part, index = 0, n
    while index >= counts[part]:
        index -= counts[part]
        part += 1
    with pq.ParquetFile(files[part]) as f:
        missing = [c for c in PROVENANCE if c not in f.schema_arrow.names]
        if missing:
            raise UsageError(f"'{ws.rel(files[part])}' has no {', '.join(missing)} column(s), so it names no package "
                             "or input; --row traces predictions written by a score stage or `mlv score`")
        group, offset = 0, index
        while offset >= f.metadata.row_group(group).num_rows:
            offset -= f.metadata.row_group(group).num_rows
            group += 1
        columns = [c for c in ("prediction", *PROVENANCE) if c in f.schema_arrow.names]
        values = f.read_row_group(group, columns=columns).slice(offset, 1).to_pylist()[0]
    return Row(ws.rel(files[part]), index, n, part if path.is_dir() else _part_of(files[part]),
               values["mlv_package"], values["mlv_input"], values["mlv_row"], values.get("prediction"))


def trace_row(ws: Workspace, index: ProvenanceIndex, row: Row, *, verify: bool = False) -> lineage.Lineage:
    """The lineage of ``row`` (see the module docstring), rooted at its ``row`` node."""
    root = f"row:{row.file}#{row.index}"
    nodes = {root: {"id": root, "type": "row", "path": row.file, "row": row.index, "prediction": row.prediction,
                    "package": row.package, "input": row.input, "input_row": row.input_row, "hop": 0}}
    edges: dict[tuple[str, str], dict] = {}
    problems: list[str] = []
    run_id = _scoring_run(ws, index, row.file)
    record = None
    if run_id is not None:
        try:
            record = index.runs_index.read(run_id)
        except (FileNotFoundError, MlvError) as exc:
            problems.append(f"run {run_id}, which wrote '{row.file}', cannot be read: {exc}")
    if record is not None:
        sub = lineage.trace(ws, index, lineage.Start(run_id=run_id), verify=verify)
        _merge(nodes, edges, problems, sub, root, "output")
        package_path, data_path = (_setting(record, key) for key in ("package", "data"))
        if record.deps.get(package_path) != row.package:
            problems.append(f"row {row.number} names package {row.package}, but run {run_id} read "
                            f"'{package_path}' at {record.deps.get(package_path)}")
        else:
            _edge(edges, f"artifact:{package_path}@{row.package}", root, "input")
        _partition(ws, nodes, edges, problems, row, root, data_path, record.deps.get(data_path),
                   record.producers.get(data_path))
        return _lineage(root, nodes, edges, problems, verify)
    problems.append(f"no run record says which run wrote '{row.file}': traced from the row's digests alone")
    for digest in (row.package, row.input):
        try:
            start = lineage.resolve(ws, index, digest)
        except UsageError:
            node = f"artifact:@{digest}"
            nodes[node] = {"id": node, "type": "artifact", "path": "", "digest": digest, "origin": "source", "hop": 1}
            _edge(edges, node, root, "input")
            continue
        _merge(nodes, edges, problems, lineage.trace(ws, index, start, verify=verify), root, "input")
    return _lineage(root, nodes, edges, problems, verify)


def _partition(ws, nodes, edges, problems, row: Row, root: str, data_path: str, data_digest: str | None,
               source: dict | None) -> None:
    """The input partition the row came from, under the input the run read (a file, or a directory holding it)."""
    container = f"artifact:{data_path}@{data_digest}"
    if data_digest == row.input:  # the input was one file: that is the partition
        _edge(edges, container, root, "input")
        return
    member = _member(ws, data_digest, row)
    if member is None:
        problems.append(f"row {row.number} names input partition {row.input}, which is not a file of "
                        f"'{data_path}' at {data_digest}")
        return
    path = f"{data_path}/{member}"
    node = f"artifact:{path}@{row.input}"
    nodes.setdefault(node, {"id": node, "type": "artifact", "path": path, "digest": row.input, "origin": "member",
                            "hop": 1, **({"pointer": source["added"]} if source and "added" in source else {})})
    _edge(edges, container, node, "member")
    _edge(edges, node, root, "input")


def _member(ws: Workspace, directory: str | None, row: Row) -> str | None:
    """The file of input directory ``directory`` with the row's input digest (the row's file's place among the
    partitions decides between identical files)."""
    from mlv.storage.store import manifest

    if directory is None:
        return None
    try:
        entries = [e for e in manifest.load(ws.store.read_bytes(parse(directory)))
                   if e.path.lower().endswith(PARTITION_SUFFIXES)]
    except (StorageError, MlvError):
        return None
    entries.sort(key=lambda e: Path(e.path))  # the order the score kind reads partitions in
    same = [(i, e.path) for i, e in enumerate(entries) if str(e.digest) == row.input]
    exact = [p for i, p in same if i == row.part]
    return exact[0] if exact else same[0][1] if same else None


def _scoring_run(ws: Workspace, index: ProvenanceIndex, rel: str) -> str | None:
    """The run that wrote the prediction file at ``rel`` (or the directory holding it)."""
    tree = Tree(ws)
    parts = rel.split("/")
    for n in range(len(parts), 0, -1):
        where = "/".join(parts[:n])
        try:
            version = version_of(tree, where)
        except MlvError:
            continue
        if version is None:
            continue
        if version.source and "run" in version.source:
            return version.source["run"]
        if version.source is None:
            made = [r for r in index.made([str(version.digest)]).get(str(version.digest), []) if r.path == where]
            if made:
                return made[0].run_id
    return None


def _setting(record, key: str) -> str:
    definition = record.definition or {}
    value = (definition.get("settings") or {}).get(key) or ""
    return posixpath.normpath(posixpath.join(definition.get("wdir") or ".", value))


def _merge(nodes: dict, edges: dict, problems: list, sub: lineage.Lineage, root: str, kind: str) -> None:
    """Add ``sub`` one hop out from ``root``, its own root feeding ``root``."""
    for node in sub.nodes:
        shifted = {**node, "hop": node["hop"] + 1}
        if node["id"] not in nodes or nodes[node["id"]]["hop"] > shifted["hop"]:
            nodes[node["id"]] = shifted
    for e in sub.edges:
        edges.setdefault((e["source"], e["target"]), e)
    problems.extend(p for p in sub.problems if p not in problems)
    _edge(edges, sub.root, root, kind)


def _edge(edges: dict, source: str, target: str, kind: str) -> None:
    edges.setdefault((source, target), {"source": source, "target": target, "type": kind})


def _lineage(root: str, nodes: dict, edges: dict, problems: list, verify: bool) -> lineage.Lineage:
    ordered = sorted(nodes.values(), key=lambda n: (n["hop"], n["id"]))
    return lineage.Lineage(root, lineage.UPSTREAM, tuple(ordered), tuple(edges.values()), tuple(problems), verify)


def _part_of(file: Path) -> int:
    """Which input partition a ``part-NNNNN.parquet`` file scored (0 for any other name).

    >>> _part_of(Path("p/part-00003.parquet")), _part_of(Path("x.parquet"))
    (3, 0)
    """
    stem = file.stem
    return int(stem[5:]) if stem.startswith("part-") and stem[5:].isdigit() else 0
