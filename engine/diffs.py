"""``mlv params diff`` and ``mlv metrics diff``: what changed between two versions of the pipeline.

Each side is a ``history.Tree`` — the workspace or a git revision. Params are the
top-level ``params`` of ``mlv.yaml``, ``params.yaml`` and every other params file a stage
names (``params: [{config/train.yaml: [lr]}]``), with nested names flattened (``model.depth``);
metrics are the values in the metrics files that ``mlv.lock`` names (read from the
store by digest, or from the workspace files for the working tree), keyed by file and
flattened name. Read-only.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

import yaml
from mlv.engine.history import Tree, flatten, metrics_of, resolve_rev
from mlv.storage import paths, yamlfile
from mlv.storage.errors import MlvError
from mlv.storage.workspace import Workspace

PARAMS_FILE = "params.yaml"  # beside mlv.yaml (pipelines.schema reads it as params)
ADDED, REMOVED, MODIFIED, UNCHANGED = "added", "removed", "modified", "unchanged"


@dataclass(frozen=True, slots=True)
class Row:
    path: str  # mlv.yaml for params, the metrics file for metrics
    name: str
    old: object
    new: object
    change: str  # added | removed | modified | unchanged

    @property
    def delta(self) -> float | None:
        """``new - old`` when both are numbers.

        >>> Row("m.json", "acc", 0.5, 0.75, MODIFIED).delta
        0.25
        """
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (self.old, self.new))
        return self.new - self.old if numbers else None

    def to_dict(self) -> dict:
        return {"path": self.path, "name": self.name, "old": self.old, "new": self.new, "change": self.change,
                "delta": self.delta}


@dataclass(frozen=True, slots=True)
class Diff:
    old: str  # what the old side is: a commit, or "workspace"
    new: str
    rows: tuple[Row, ...]

    def to_dict(self) -> dict:
        return {"old": self.old, "new": self.new, "rows": [r.to_dict() for r in self.rows]}


def sides(ws: Workspace, a: str | None, b: str | None) -> tuple[Tree, Tree]:
    """``(a or HEAD, b or the workspace)``; revisions are checked first (``UsageError``, exit 2)."""
    old = Tree(ws, resolve_rev(ws, a or "HEAD"))
    new = Tree(ws, resolve_rev(ws, b)) if b else Tree(ws)
    return old, new


def params_diff(ws: Workspace, a: str | None = None, b: str | None = None, *, everything: bool = False) -> Diff:
    """Params of ``mlv.yaml`` and ``params.yaml`` at ``a`` (default HEAD) against ``b`` (default: the workspace)."""
    old, new = sides(ws, a, b)
    return Diff(old.label, new.label, _compare(_params(old), _params(new), everything))


def metrics_diff(ws: Workspace, a: str | None = None, b: str | None = None, *, everything: bool = False) -> Diff:
    """Metric values at ``a`` (default HEAD) against ``b`` (default: the workspace)."""
    old, new = sides(ws, a, b)
    return Diff(old.label, new.label, _compare(_metrics(ws, old), _metrics(ws, new), everything))


def _params(tree: Tree) -> dict[tuple[str, str], object]:
    """(file, dotted name) -> value of the params in ``mlv.yaml``, ``params.yaml`` and the params files stages
    name (an unreadable file has none)."""
    params = tree.pipeline.get("params")
    found = {("mlv.yaml", k): v for k, v in (flatten(params) if isinstance(params, dict) else {}).items()}
    for name in (PARAMS_FILE, *sorted(param_files(tree.pipeline) - {PARAMS_FILE})):
        data = tree.read(name)
        if data is None:
            continue
        try:
            extra = yamlfile.load(data, source=f"{name} at {tree.label}")
        except (yaml.YAMLError, MlvError):
            extra = None
        found.update({(name, k): v for k, v in (flatten(extra) if isinstance(extra, dict) else {}).items()})
    return found


def param_files(pipeline: dict) -> set[str]:
    """The repo-relative params files the stages of a raw ``mlv.yaml`` name (``{config/train.yaml: [lr]}``);
    names that interpolate, or break the paths rule, are left out.

    >>> sorted(param_files({"stages": {"a": {"wdir": "src", "params": ["lr", {"c.yaml": ["x"]}]},
    ...                                "b": {"foreach": [1], "do": {"params": [{"conf/p.json": None}]}}}}))
    ['conf/p.json', 'src/c.yaml']
    """
    stages = pipeline.get("stages")
    found: set[str] = set()
    for stage in stages.values() if isinstance(stages, dict) else ():
        body = stage.get("do", stage) if isinstance(stage, dict) else None
        entries = body.get("params") if isinstance(body, dict) else None
        wdir = (body.get("wdir") or stage.get("wdir") or ".") if isinstance(body, dict) else "."
        for entry in entries if isinstance(entries, list) and isinstance(wdir, str) else ():
            for name in entry if isinstance(entry, dict) else ():
                rel = posixpath.normpath(posixpath.join(wdir, str(name)))
                if "${" not in rel and paths.problem(rel, written=False) is None:
                    found.add(rel)
    return found


def _metrics(ws: Workspace, tree: Tree) -> dict[tuple[str, str], object]:
    found = metrics_of(ws, tree, sorted(tree.lock))
    return {(path, name): value for path, values in found.items() for name, value in values.items()}


def _compare(old: dict, new: dict, everything: bool) -> tuple[Row, ...]:
    rows = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            change = ADDED
        elif key not in new:
            change = REMOVED
        else:
            change = UNCHANGED if old[key] == new[key] else MODIFIED
        if change != UNCHANGED or everything:
            rows.append(Row(key[0], key[1], old.get(key), new.get(key), change))
    return tuple(rows)
