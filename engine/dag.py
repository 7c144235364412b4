"""Stage specs and the stage DAG: which stage feeds which, in what order they may run.

This module owns :class:`StageSpec` (plain data that ``mlv.pipelines.schema`` builds
from mlv.yaml and the fingerprint hashes) and the dependency rules between stages.
It is pure: it reads no files except through the ``exists`` callable it is given,
and :func:`build_graph` accepts any objects with ``name``, ``deps``, ``outs`` and
``metrics`` (and optionally ``line``), not only ``StageSpec``.

Rules (paths are repo-relative POSIX strings):

- An output (an ``outs``, ``metrics`` or ``plots`` path) belongs to exactly one stage, and no
  output may lie inside another output (of the same or another stage).
- Stage B depends on stage A when one of B's deps *is* an output of A, lies *inside*
  one, or *contains* one (a dep on ``data/`` waits for the stage writing ``data/x``,
  since the dep's content is not final before that). A stage may not read its own output.
- Every dep is produced by some stage or exists already (``exists(path)``); the default
  also accepts a path tracked by a ``<path>.mlv`` pointer not yet pulled.
- The graph is acyclic; a cycle is reported with its stages in order, ``a → b → a``.
"""

from __future__ import annotations

import copy
import difflib
import os
import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import networkx as nx

from mlv.engine.errors import GraphError

__all__ = [
    "Graph", "Resources", "StageLike", "StageSpec",
    "build_graph", "normalise_path", "parse_memory", "pointer_aware_exists",
]


class StageLike(Protocol):
    """What the DAG needs of a stage; ``line`` (1-based, in the pipeline file) is optional."""

    name: str
    deps: Sequence[str]
    outs: Sequence[str]
    metrics: Sequence[str]


@dataclass(frozen=True, slots=True)
class Resources:
    """What a stage needs from the worker it runs on; ``memory`` is in bytes."""

    gpu: int = 0
    cpus: int | None = None
    memory: int | None = None

    def to_dict(self) -> dict:
        return {"gpu": self.gpu, "cpus": self.cpus, "memory": self.memory}


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One concrete stage as declared: exactly one of ``cmd``, ``call``, ``kind`` is set.

    ``cmd`` holds shell commands run one after another in ``wdir``, stopping at the
    first failure. ``params`` maps the dotted name of every param the stage uses to its
    value. Paths are repo-relative POSIX strings. ``line`` is where the stage is
    declared in the pipeline file (0 when not from a file).
    """

    name: str
    cmd: tuple[str, ...] | None = None
    call: str | None = None
    kind: str | None = None
    settings: dict = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    outs: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    params: dict = field(default_factory=dict)
    plots: tuple[str, ...] = ()  # plot files: outputs that, like metrics, stay visible to git
    resources: Resources = Resources()
    wdir: str = "."
    desc: str | None = None
    line: int = 0

    def to_dict(self) -> dict:
        """Plain, JSON-safe data; ``StageSpec.from_dict(spec.to_dict()) == spec``."""
        return {
            "name": self.name,
            "cmd": list(self.cmd) if self.cmd is not None else None,
            "call": self.call,
            "kind": self.kind,
            "settings": copy.deepcopy(self.settings),
            "deps": list(self.deps),
            "outs": list(self.outs),
            "metrics": list(self.metrics),
            "params": copy.deepcopy(self.params),
            "resources": self.resources.to_dict(),
            "wdir": self.wdir,
            "desc": self.desc,
            "line": self.line,
            # only when declared: stages without plots keep the fingerprints they had before plots existed
            **({"plots": list(self.plots)} if self.plots else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> StageSpec:
        values = dict(data)
        for name in ("deps", "outs", "metrics", "plots"):
            values[name] = tuple(values.get(name) or ())
        if values.get("cmd") is not None:
            values["cmd"] = tuple(values["cmd"])
        values["resources"] = Resources(**(values.get("resources") or {}))
        return cls(**values)

    def definition(self) -> dict:
        """What the stage does, for its fingerprint: ``to_dict()`` less name, desc, line and resources.

        Renaming, describing or moving a stage, or asking for another worker, does not
        change its results, so none of them invalidates the run cache.
        """
        data = self.to_dict()
        for name in ("name", "desc", "line", "resources"):
            del data[name]
        return data


def normalise_path(path: str, base: str = ".", *, allow_root: bool = False) -> str:
    """Join ``path`` to ``base`` (a repo-relative directory) as a repo-relative POSIX path.

    >>> normalise_path("./data//raw/"), normalise_path("../x.py", "src")
    ('data/raw', 'x.py')

    Raises:
        ValueError: the path is absolute, leads outside the repository, or (unless
            ``allow_root``) is the repository root itself.
    """
    if posixpath.isabs(path) or re.match(r"^[A-Za-z]:[\\/]", path):
        raise ValueError(f"'{path}' is absolute; write it relative to the repository root")
    joined = posixpath.normpath(posixpath.join(base, path))
    if joined == ".." or joined.startswith("../"):
        within = f" (from wdir '{base}')" if base != "." else ""
        raise ValueError(f"'{path}'{within} leads outside the repository; mlv tracks only paths inside it")
    if joined == "." and not allow_root:
        raise ValueError(f"'{path}' is the repository root itself; name a file or directory inside it")
    return joined


_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_memory(text: str) -> int:
    """Bytes in a size such as ``4GB`` (powers of 1000) or ``512MiB`` (powers of 1024), as Dask reads them.

    >>> parse_memory("4GB"), parse_memory("512 MiB"), parse_memory("1024")
    (4000000000, 536870912, 1024)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower().removesuffix("b") if match else None
    if unit not in _UNITS:
        raise ValueError(f"memory '{text}' is not a size; write e.g. 4GB, 512MiB or a number of bytes")
    return int(float(match.group(1)) * _UNITS[unit])


def pointer_aware_exists(root: str | os.PathLike) -> Callable[[str], bool]:
    """``exists(path)`` for a workspace: the path is there, or it or a parent has a ``.mlv`` pointer."""
    base = Path(root)

    def exists(path: str) -> bool:
        if (base / path).exists():
            return True
        parts = path.split("/")
        return any((base / f"{'/'.join(parts[:n])}.mlv").is_file() for n in range(1, len(parts) + 1))

    return exists


def build_graph(
    stages: Iterable[StageLike],
    *,
    root: str | os.PathLike = ".",
    exists: Callable[[str], bool] | None = None,
    source: str = "mlv.yaml",
) -> Graph:
    """Connect stages by their deps and outputs, and check the result is a valid DAG.

    Args:
        stages: stage specs, in file order (used for deterministic messages).
        root: repository root that ``exists`` checks deps against by default.
        exists: whether a dep not produced by any stage is available; pass
            ``lambda path: True`` to skip the check (e.g. to draw a pipeline).
        source: the pipeline file named in error messages.

    Raises:
        GraphError: two stages write one path, outputs nest, a stage reads its own
            output, a dep is missing, or the dependencies form a cycle.
    """
    exists = exists or pointer_aware_exists(root)
    graph = nx.DiGraph()
    order = list(stages)
    for stage in order:
        graph.add_node(stage.name, stage=stage)
    products = _products(order, source)
    inside = _containers(products)
    for stage in order:
        for dep in stage.deps:
            producers = {products[p] for p in _lineage(dep) if p in products} | inside.get(dep, set())
            if stage.name in producers:
                raise _error(source, stage, f"stage '{stage.name}' reads '{dep}', which overlaps its own output; "
                             "a stage cannot read what it writes — split it into two stages", artifact=dep)
            if not producers and not exists(dep):
                raise _missing(source, stage, dep, sorted(products))
            for producer in producers:
                graph.add_edge(producer, stage.name)
                graph.edges[producer, stage.name].setdefault("paths", set()).add(dep)
    _check_acyclic(graph, source)
    return Graph(graph, products)


class Graph:
    """An immutable DAG of stages; build it with :func:`build_graph`."""

    def __init__(self, graph: nx.DiGraph, products: dict[str, str]) -> None:
        self._graph = graph
        self._products = products
        self._order = list(nx.lexicographical_topological_sort(graph))

    def __contains__(self, name: object) -> bool:
        return name in self._graph

    def __len__(self) -> int:
        return len(self._graph)

    def __iter__(self):
        return iter(self._order)

    def stage(self, name: str) -> StageLike:
        """The spec of one stage."""
        return self._graph.nodes[name]["stage"]

    def edges(self) -> list[tuple[str, str]]:
        """``(upstream, downstream)`` pairs, sorted."""
        return sorted(self._graph.edges)

    def topological_order(self) -> list[str]:
        """Stage names, every stage after all it depends on; ties broken by name."""
        return list(self._order)

    def resolve(self, targets: Iterable[str]) -> set[str]:
        """Stage names for targets: a stage, a foreach/matrix group (``train`` → ``train@…``), or an output path."""
        found: set[str] = set()
        for target in targets:
            group = {n for n in self._graph if n.split("@")[0] == target}
            producer = self.producer_of(target)
            if target in self._graph or group or producer:
                found |= {target} if target in self._graph else group or {producer}
                continue
            names = sorted(set(self._graph) | {n.split("@")[0] for n in self._graph})
            near = difflib.get_close_matches(target, names, n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise GraphError(f"no stage named '{target}' and no stage writes it.{hint}"
                             f"\n  Stages: {_listing(self._order)}", artifact=target)
        return found

    def upstream_of(self, targets: Iterable[str]) -> set[str]:
        """The targets and every stage they (transitively) depend on."""
        names = self.resolve(targets)
        return names.union(*(nx.ancestors(self._graph, n) for n in names))

    def downstream_of(self, targets: Iterable[str]) -> set[str]:
        """The targets and every stage that (transitively) depends on them."""
        names = self.resolve(targets)
        return names.union(*(nx.descendants(self._graph, n) for n in names))

    def select(self, targets: Iterable[str], *, downstream: bool = False) -> Graph:
        """The sub-DAG needed to build the targets (or, with ``downstream``, built from them)."""
        names = self.downstream_of(targets) if downstream else self.upstream_of(targets)
        products = {path: name for path, name in self._products.items() if name in names}
        return Graph(self._graph.subgraph(names).copy(), products)

    def ready(self, done: set[str], running: set[str]) -> list[str]:
        """Stages not done or running whose upstream stages are all done, in topological order."""
        return [
            name
            for name in self._order
            if name not in done and name not in running and all(p in done for p in self._graph.predecessors(name))
        ]

    def producer_of(self, path: str) -> str | None:
        """The stage whose output is ``path`` or contains it, or ``None``."""
        normal = posixpath.normpath(path.replace(os.sep, "/"))
        return next((self._products[p] for p in _lineage(normal) if p in self._products), None)

    def to_dict(self) -> dict:
        """``{"nodes": [{"id", "line"}], "edges": [{"source", "target", "paths"}]}`` for ``--json``."""
        return {
            "nodes": [{"id": n, "line": getattr(self.stage(n), "line", None)} for n in self._order],
            "edges": [
                {"source": a, "target": b, "paths": sorted(self._graph.edges[a, b]["paths"])} for a, b in self.edges()
            ],
        }

    def to_dot(self) -> str:
        """Graphviz source: ``digraph mlv { "a" -> "b"; }``."""
        lines = ["digraph mlv {", "  rankdir=TB;", '  node [shape=box, style=rounded];']
        lines += [f"  {_dot_id(n)};" for n in self._order]
        lines += [f"  {_dot_id(a)} -> {_dot_id(b)};" for a, b in self.edges()]
        return "\n".join([*lines, "}"]) + "\n"

    def to_mermaid(self) -> str:
        """Mermaid flowchart source, for Markdown: ``a --> b``."""
        ids: dict[str, str] = {}
        for name in self._order:
            base = re.sub(r"\W", "_", name)
            ids[name] = base if base not in ids.values() and base != "end" else f"{base}_{len(ids)}"
        lines = ["flowchart TD"]
        lines += [f'  {ids[n]}["{n.replace(chr(34), "#quot;")}"]' for n in self._order]
        lines += [f"  {ids[a]} --> {ids[b]}" for a, b in self.edges()]
        return "\n".join(lines) + "\n"

    def to_ascii(self) -> str:
        """Stages in layers that can run in parallel, each with the stages it waits for."""
        if not self._order:
            return "(no stages)\n"
        layer: dict[str, int] = {}
        for name in self._order:
            layer[name] = max((layer[p] + 1 for p in self._graph.predecessors(name)), default=0)
        width = max(len(n) for n in self._order)
        lines, previous = [], -1
        for name in sorted(self._order, key=lambda n: (layer[n], self._order.index(n))):
            label = f"[{layer[name] + 1}]" if layer[name] != previous else ""
            needs = sorted(self._graph.predecessors(name))
            arrow = f"  <- {', '.join(needs)}" if needs else ""
            lines.append(f"{label:<5}{name:<{width}}{arrow}".rstrip())
            previous = layer[name]
        return "\n".join(lines) + "\n"


def _lineage(path: str) -> list[str]:
    """The path and each of its parents, deepest first.

    >>> _lineage("data/a/b.csv")
    ['data/a/b.csv', 'data/a', 'data']
    """
    parts = path.split("/")
    return ["/".join(parts[:n]) for n in range(len(parts), 0, -1)]


def _products(stages: list[StageLike], source: str) -> dict[str, str]:
    """Map every output to its stage, refusing shared and nested outputs."""
    products: dict[str, str] = {}
    by_name = {s.name: s for s in stages}
    for stage in stages:
        for out in (*stage.outs, *stage.metrics, *getattr(stage, "plots", ())):
            if out in products:
                other = products[out]
                text = (f"stage '{stage.name}' lists '{out}' twice" if other == stage.name else
                        f"'{out}' is an output of both '{other}' and '{stage.name}'; "
                        "an output belongs to one stage — "
                        "rename one of them or merge the stages")
                raise _error(source, by_name[other], text, stages=(other, stage.name), artifact=out)
            products[out] = stage.name
    for out, name in products.items():
        for parent in _lineage(out)[1:]:
            if parent in products:
                owner = products[parent]
                whose = "its own output" if owner == name else f"'{parent}', the output of '{owner}'"
                text = (f"'{out}', an output of '{name}', lies inside {whose}; outputs may not nest — "
                        f"write '{out}' outside '{parent}', or drop one of them")
                raise _error(source, by_name[name], text, stages=(owner, name), artifact=out)
    return products


def _containers(products: dict[str, str]) -> dict[str, set[str]]:
    """For every parent directory of an output, the stages writing something inside it."""
    inside: dict[str, set[str]] = {}
    for out, name in products.items():
        for parent in _lineage(out)[1:]:
            inside.setdefault(parent, set()).add(name)
    return inside


def _check_acyclic(graph: nx.DiGraph, source: str) -> None:
    try:
        edges = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return
    cycle = [a for a, _ in edges]
    start = cycle.index(min(cycle))
    cycle = cycle[start:] + cycle[:start]
    ring = [*cycle, cycle[0]]
    reads = [f"'{b}' reads {', '.join(repr(p) for p in sorted(graph.edges[a, b]['paths']))} from '{a}'"
             for a, b in zip(ring, ring[1:])]
    text = f"the stages form a cycle: {' → '.join(ring)}\n  " + "\n  ".join(reads)
    text += "\n  Break it by making one of these stages read something else."
    raise _error(source, graph.nodes[cycle[0]]["stage"], text, stages=tuple(cycle))


def _missing(source: str, stage: StageLike, dep: str, outputs: list[str]) -> GraphError:
    text = f"stage '{stage.name}' reads '{dep}', but no stage produces it and it does not exist."
    near = difflib.get_close_matches(dep, outputs, n=1)
    if outputs:
        text += f"\n  Outputs in this pipeline: {_listing(outputs)}."
    if near:
        return _error(source, stage, f"{text} Did you mean '{near[0]}'?", artifact=dep)
    text += f"\n  Add it with `mlv add {dep}`, fetch it with `mlv pull`, or fix the path."
    return _error(source, stage, text, artifact=dep)


def _error(
    source: str, stage: StageLike, text: str, *, stages: tuple[str, ...] = (), artifact: str | None = None
) -> GraphError:
    line = getattr(stage, "line", None)
    where = f"{source}:{line}" if line else source
    return GraphError(f"{where}: {text}", stages=stages or (stage.name,), path=source, line=line, artifact=artifact)


def _listing(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def _dot_id(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
