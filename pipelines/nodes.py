"""Reading ``mlv.yaml`` at the level of YAML nodes: plain data, with every value's line and column.

The schema (``pipelines.schema``) walks composed nodes rather than loaded data, so every
error can point at ``file:line:column``. This module owns that walk: only plain-data tags
(``!!python/…`` and custom ones refused anywhere), ``<<`` merges applied, duplicate keys
refused, aliases that refer to themselves refused, and ``${…}`` interpolated where the
schema asks for it (``resolve``), with the position of the offending ``${`` in errors.
"""

from __future__ import annotations

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

import yaml

from mlv.pipelines.interpolate import InterpolationError, Scope, interpolate
from mlv.storage.errors import UsageError

_MERGE = "tag:yaml.org,2002:merge"
_TAGS = {"str", "int", "float", "bool", "null", "timestamp", "seq", "map", "merge"}
Items = list[tuple[str, Node, Node]]


class PipelineError(UsageError):
    """mlv.yaml is wrong; ``path``, ``line``, ``column`` (1-based) and ``stage`` say where."""

    def __init__(self, message: str, *, path: str, line: int | None = None, column: int | None = None,
                 stage: str | None = None) -> None:
        super().__init__(f"{path}:{line}:{column}: {message}" if line is not None else f"{path}: {message}")
        self.path, self.line, self.column, self.stage = path, line, column, stage


class NodeReader:
    """Walks composed YAML nodes into plain data; every error points at a node."""

    def __init__(self, loader: yaml.SafeLoader, shown: str) -> None:
        self.loader, self.shown = loader, shown
        self._active: set[int] = set()

    def error(self, node: Node, message: str, stage: str | None = None, offset: int | None = None) -> PipelineError:
        position = offset_position(node, offset) if offset is not None else None
        line, column = position or (node.start_mark.line + 1, node.start_mark.column + 1)
        return PipelineError(message, path=self.shown, line=line, column=column, stage=stage)

    # -- YAML nodes to data ---------------------------------------------------

    def check_tags(self, node: Node, seen: set[int]) -> None:
        """Refuse tags other than plain data (``!!python/…`` and custom ones) anywhere in the file."""
        if id(node) in seen:
            return
        seen.add(id(node))
        if node.tag.rpartition(":")[0] != "tag:yaml.org,2002" or node.tag.rpartition(":")[2] not in _TAGS:
            raise self.error(node, f"unsupported YAML tag '{node.tag}'; mlv.yaml holds plain data only")
        for child in node.value if isinstance(node, SequenceNode) else []:
            self.check_tags(child, seen)
        for key, value in node.value if isinstance(node, MappingNode) else []:
            self.check_tags(key, seen)
            self.check_tags(value, seen)

    def items(self, node: Node, *, label: str = "key", stage: str | None = None) -> Items:
        """Key/value nodes of a mapping, with ``<<`` merges applied and duplicate keys refused."""
        explicit: dict[str, tuple[str, Node, Node]] = {}
        merged: Items = []
        for key, value in node.value:
            if key.tag == _MERGE:
                for source in value.value if isinstance(value, SequenceNode) else [value]:
                    if not isinstance(source, MappingNode):
                        raise self.error(source, "'<<' merges only mappings, e.g. <<: *defaults", stage)
                    merged.extend(self.items(source, label=label, stage=stage))
            elif not isinstance(key, ScalarNode):
                raise self.error(key, "keys must be plain text, not a list or mapping", stage)
            elif key.value in explicit:
                first = explicit[key.value][1].start_mark.line + 1
                fix = "rename one of them" if label == "stage" else "keep one of them"
                raise self.error(key, f"duplicate {label} '{key.value}' (first defined at line {first}); {fix}", stage)
            else:
                explicit[key.value] = (key.value, key, value)
        inherited = {name: (name, k, v) for name, k, v in reversed(merged) if name not in explicit}
        return [*explicit.values(), *reversed(inherited.values())]

    def data(self, node: Node, stage: str | None = None) -> object:
        """Plain data (str, int, float, bool, None, list, dict) for a node."""
        if id(node) in self._active:
            raise self.error(node, "this alias refers to itself; anchors may not be recursive", stage)
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return {name: self.data(value, stage) for name, _, value in self.items(node, stage=stage)}
            if isinstance(node, SequenceNode):
                return [self.data(child, stage) for child in node.value]
            if node.tag == "tag:yaml.org,2002:timestamp":
                return node.value  # dates stay as written: plain, JSON-safe data
            return self.loader.construct_object(node, deep=True)  # check_tags allowed only plain scalars
        finally:
            self._active.discard(id(node))

    def resolve(self, node: Node | None, scope: Scope, stage: str) -> object:
        """Like :meth:`data`, with ``${…}`` interpolated in every string; ``None`` for no node."""
        if node is None:
            return None
        if isinstance(node, MappingNode):
            return {name: self.resolve(value, scope, stage) for name, _, value in self.items(node, stage=stage)}
        if isinstance(node, SequenceNode):
            return [self.resolve(child, scope, stage) for child in node.value]
        value = self.data(node, stage)
        try:
            return interpolate(value, scope) if isinstance(value, str) else value
        except InterpolationError as exc:
            raise self.error(node, str(exc), stage, exc.offset) from None


def node_at(node: Node, key: object) -> Node:
    """The node of one list item or mapping value, or ``node`` itself when the value came from ``${…}``."""
    if isinstance(node, SequenceNode) and isinstance(key, int) and key < len(node.value):
        return node.value[key]
    if isinstance(node, MappingNode):
        return next((v for k, v in node.value if isinstance(k, ScalarNode) and k.value == key), node)
    return node


def offset_position(node: Node, offset: int) -> tuple[int, int] | None:
    """1-based line and column, in the source, of the ``${`` at ``offset`` in a scalar's value."""
    start, end = node.start_mark, node.end_mark
    if not isinstance(node, ScalarNode) or start.buffer is None:
        return None
    raw = start.buffer[start.pointer : end.pointer]
    if raw.count("${") != node.value.count("${") or node.value[offset : offset + 2] != "${":
        return None
    position = -1
    for _ in range(node.value[:offset].count("${") + 1):
        position = raw.find("${", position + 1)
    before = raw[:position]
    if "\n" not in before:
        return start.line + 1, start.column + 1 + position
    return start.line + 1 + before.count("\n"), len(before) - before.rfind("\n")
