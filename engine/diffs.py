"""``mlv params diff`` and ``mlv metrics diff``: what changed between two versions of the pipeline.

Each side is a ``history.Tree`` — the workspace or a git revision. Params are the
top-level ``params`` of ``mlv.yaml`` with nested names flattened (``model.depth``);
metrics are the values in the metrics files that ``mlv.lock`` names (read from the
store by digest, or from the workspace files for the working tree), keyed by file and
flattened name. Read-only.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from mlv.engine.history import Tree, flatten, metrics_of, resolve_rev
from mlv.storage import yamlfile
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
    """(file, dotted name) -> value of the params in ``mlv.yaml`` and ``params.yaml`` (an unreadable file has none)."""
    params = tree.pipeline.get("params")
    found = {("mlv.yaml", k): v for k, v in (flatten(params) if isinstance(params, dict) else {}).items()}
    data = tree.read(PARAMS_FILE)
    if data is not None:
        try:
            extra = yamlfile.load(data, source=f"{PARAMS_FILE} at {tree.label}")
        except (yaml.YAMLError, MlvError):
            extra = None
        found.update({(PARAMS_FILE, k): v for k, v in (flatten(extra) if isinstance(extra, dict) else {}).items()})
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
