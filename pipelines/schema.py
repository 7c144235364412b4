"""mlv.yaml → :class:`Pipeline`: parsing, validation, interpolation and fan-out.

This module owns the user-facing pipeline file. It reads YAML with a safe loader,
walks the composed nodes itself (so every value keeps its line and column and
duplicate keys are caught), resolves ``${…}``, expands ``foreach``/``matrix`` and
returns plain frozen data. Nothing here touches the store, Dask or other files.

Invariants:

- Every problem is a :class:`PipelineError` (exit code 2) whose message starts
  ``<file>:<line>:<column>: `` and says how to fix it.
- Paths in a spec are repo-relative POSIX strings that stay inside the repository
  (``wdir`` and the paths under it are relative to the repo root).
- ``cmd`` is a tuple of shell commands run one after another in ``wdir``, stopping at
  the first that fails (a string is a one-command tuple); interpolated values in it
  are shell-quoted.
- ``StageSpec.params`` holds exactly the params a stage uses, flattened to dotted
  names, so its fingerprint changes when, and only when, one of those changes.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mlv.pipelines.interpolate import InterpolationError, Scope, interpolate, interpolate_command, lookup
from mlv.pipelines.spec import Pipeline, Resources, StageSpec, normalise_path, parse_memory, type_name
from mlv.storage.errors import UsageError

__all__ = ["BUILTIN_KINDS", "Pipeline", "PipelineError", "Resources", "StageSpec", "load_pipeline"]

BUILTIN_KINDS = ("label", "train", "package", "score", "serve")
MODES = ("cmd", "call", "kind")
STAGE_KEYS = (*MODES, "deps", "outs", "params", "metrics", "resources", "wdir", "foreach", "matrix", "desc")
_TOP_KEYS = ("params", "stages")
_RESOURCE_KEYS = ("gpu", "cpus", "memory")
_DVC_HINTS = {"vars": "mlv reads params from the 'params:' section of this file"}
_STAGE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_CALL = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_WHOLE_PARAM = re.compile(r"^\$\{\s*params\.([\w.-]+)\s*\}$")
_MERGE = "tag:yaml.org,2002:merge"


class PipelineError(UsageError):
    """mlv.yaml is wrong; ``path``, ``line``, ``column`` (1-based) and ``stage`` say where."""

    def __init__(
        self, message: str, *, path: str, line: int | None = None, column: int | None = None, stage: str | None = None
    ) -> None:
        where = f"{path}:{line}:{column}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.column, self.stage = path, line, column, stage


def load_pipeline(path: Path, *, root: Path, kinds: Collection[str] = BUILTIN_KINDS) -> Pipeline:
    """Load and validate ``mlv.yaml``; ``kinds`` names the stage kinds ``kind:`` may use.

    Raises:
        PipelineError: anything wrong in the file, with file:line:column and a fix.
    """
    path, root = Path(path), Path(root)
    try:
        shown = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError("no such file; create it with a 'stages:' section (see DESIGN.md, mlv.yaml)", path=shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"cannot read the pipeline file: {exc}", path=shown) from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        hint = ""
        if mark is not None and "${" in text.splitlines()[min(mark.line, len(text.splitlines()) - 1)]:
            hint = ". Inside [ ] or { }, quote values that contain '${…}': [\"${params.a}\"]"
        message = f"invalid YAML: {exc.problem or exc.context}{hint}"
        raise PipelineError(message, path=shown, line=mark.line + 1 if mark else 1, column=mark.column + 1 if mark else 1) from exc
    except yaml.YAMLError as exc:
        raise PipelineError(f"invalid YAML: {exc}", path=shown, line=1, column=1) from exc
    finally:
        loader.dispose()
    if node is None:
        raise PipelineError("the file is empty; add a 'stages:' section, e.g. stages: {prepare: {cmd: …}}", path=shown, line=1, column=1)
    return _Parser(loader, shown, frozenset(kinds)).pipeline(node, path)


class _Parser:
    """Walks composed YAML nodes into specs; every error points at a node."""

    def __init__(self, loader: yaml.SafeLoader, shown: str, kinds: frozenset[str]) -> None:
        self.loader, self.shown, self.kinds = loader, shown, kinds
        self._active: set[int] = set()

    def error(self, node: Node, message: str, *, stage: str | None = None, offset: int | None = None) -> PipelineError:
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        if offset is not None:
            line, column = _offset_position(node, offset) or (line, column)
        return PipelineError(message, path=self.shown, line=line, column=column, stage=stage)

    # -- generic YAML walking -------------------------------------------------

    def items(self, node: Node, *, label: str = "key", stage: str | None = None) -> list[tuple[str, Node, Node]]:
        """Key/value nodes of a mapping, merge keys applied, duplicates refused."""
        explicit: dict[str, tuple[str, Node, Node]] = {}
        merged: list[tuple[str, Node, Node]] = []
        for key, value in node.value:
            if key.tag == _MERGE:
                for source in value.value if isinstance(value, SequenceNode) else [value]:
                    if not isinstance(source, MappingNode):
                        raise self.error(source, "'<<' merges only mappings (use an alias of a mapping: <<: *name)", stage=stage)
                    merged.extend(self.items(source, label=label, stage=stage))
                continue
            if not isinstance(key, ScalarNode):
                raise self.error(key, "keys must be plain text, not a list or mapping", stage=stage)
            if key.value in explicit:
                first = explicit[key.value][1].start_mark.line + 1
                fix = "rename one of them" if label == "stage" else "keep one of them"
                raise self.error(key, f"duplicate {label} '{key.value}' (first defined at line {first}); {fix}", stage=stage)
            explicit[key.value] = (key.value, key, value)
        extra = {name: (name, k, v) for name, k, v in reversed(merged) if name not in explicit}
        return [*explicit.values(), *reversed(extra.values())]

    def data(self, node: Node, *, stage: str | None = None) -> object:
        """Plain Python data (str, int, float, bool, None, list, dict) for a node."""
        if id(node) in self._active:
            raise self.error(node, "an alias refers to itself; YAML anchors may not be recursive here", stage=stage)
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return {name: self.data(value, stage=stage) for name, _, value in self.items(node, stage=stage)}
            if isinstance(node, SequenceNode):
                return [self.data(child, stage=stage) for child in node.value]
            if node.tag == "tag:yaml.org,2002:timestamp":
                return node.value  # keep dates as written: plain, JSON-safe data
            try:
                value = self.loader.construct_object(node, deep=True)
            except yaml.constructor.ConstructorError as exc:
                raise self.error(node, f"unsupported YAML value: {exc.problem}", stage=stage) from exc
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise self.error(node, f"unsupported YAML value of type {type(value).__name__}; use text or numbers", stage=stage)
            return value
        finally:
            self._active.discard(id(node))

    def resolve(self, node: Node, scope: Scope, stage: str) -> object:
        """Like :meth:`data`, with ``${…}`` interpolated in every string."""
        if isinstance(node, MappingNode):
            return {name: self.resolve(value, scope, stage) for name, _, value in self.items(node, stage=stage)}
        if isinstance(node, SequenceNode):
            return [self.resolve(child, scope, stage) for child in node.value]
        value = self.data(node, stage=stage)
        if not isinstance(value, str):
            return value
        try:
            return interpolate(value, scope)
        except InterpolationError as exc:
            raise self.error(node, str(exc), stage=stage, offset=exc.offset) from None

    # -- the file -------------------------------------------------------------

    def pipeline(self, node: Node, path: Path) -> Pipeline:
        if not isinstance(node, MappingNode):
            raise self.error(node, f"expected a mapping with 'stages:' (and optionally 'params:'), got {type_name(self.data(node))}")
        top = {name: (key, value) for name, key, value in self.items(node)}
        for name, (key, _) in top.items():
            if name not in _TOP_KEYS:
                raise self.error(key, _unknown(f"top-level key '{name}'", name, _TOP_KEYS, _DVC_HINTS.get(name)))
        params: dict = {}
        if "params" in top:
            params = self.data(top["params"][1])
            if params is None:
                params = {}
            elif not isinstance(params, dict):
                raise self.error(top["params"][1], f"'params' must be a mapping of names to values, got {type_name(params)}")
            self._check_param_keys(top["params"][1])
        if "stages" not in top:
            raise self.error(node, "no 'stages:' section; add one, e.g. stages: {prepare: {cmd: python prepare.py}}")
        stages_node = top["stages"][1]
        stages: dict[str, StageSpec] = {}
        if not (isinstance(stages_node, ScalarNode) and self.data(stages_node) is None):
            if not isinstance(stages_node, MappingNode):
                raise self.error(stages_node, f"'stages' must be a mapping of stage names to stages, got {type_name(self.data(stages_node))}")
            for name, key, body in self.items(stages_node, label="stage"):
                if not _STAGE_NAME.match(name):
                    raise self.error(key, f"stage name '{name}' may use only letters, digits, '_', '-' and '.'"
                                     " ('@' is reserved for stages generated by foreach/matrix)", stage=name)
                for spec in self.expand(name, key, body, params):
                    if spec.name in stages:
                        raise self.error(key, f"stage '{spec.name}' is generated twice; make the foreach/matrix values distinct", stage=name)
                    stages[spec.name] = spec
        return Pipeline(path=path, params=params, stages=stages)

    def _check_param_keys(self, node: Node) -> None:
        if isinstance(node, SequenceNode):
            for child in node.value:
                self._check_param_keys(child)
        elif isinstance(node, MappingNode):
            for name, key, value in self.items(node):
                if "." in name:
                    nested = name.replace(".", ": {", 1)
                    raise self.error(key, f"param name '{name}' contains '.', which '${{params.…}}' reads as nesting; nest it instead ({nested}: …}})")
                self._check_param_keys(value)

    # -- stages ---------------------------------------------------------------

    def expand(self, name: str, key: Node, node: Node, params: dict) -> list[StageSpec]:
        """One stage, or the stages its ``foreach``/``matrix`` generates."""
        if not isinstance(node, MappingNode):
            raise self.error(node, f"stage '{name}' must be a mapping (cmd:, deps:, outs:, …), got {type_name(self.data(node))}", stage=name)
        items = self.items(node, stage=name)
        present = {k: (kn, vn) for k, kn, vn in items}
        if "foreach" in present and "matrix" in present:
            raise self.error(present["matrix"][0], f"stage '{name}' has both 'foreach' and 'matrix'; keep one", stage=name)
        if "foreach" not in present and "matrix" not in present:
            return [self.stage(name, key, items, Scope(params))]
        loop = "foreach" if "foreach" in present else "matrix"
        body = [entry for entry in items if entry[0] != loop]
        if loop == "foreach" and "do" in present:
            others = [entry for entry in body if entry[0] != "do"]
            if others:
                raise self.error(others[0][1], f"with 'do:', put '{others[0][0]}' inside 'do:' (or drop 'do:' and keep the keys beside 'foreach')", stage=name)
            do_node = present["do"][1]
            if not isinstance(do_node, MappingNode):
                raise self.error(do_node, f"'do' must be a mapping (cmd:, deps:, outs:, …), got {type_name(self.data(do_node))}", stage=name)
            body = self.items(do_node, stage=name)
        value_node = present[loop][1]
        runs = self._foreach(value_node, params, name) if loop == "foreach" else self._matrix(value_node, params, name)
        specs = []
        for suffix, item, extra in runs:
            scope = Scope(params, item=item, key=suffix)
            scope.used.update(extra)
            specs.append(self.stage(f"{name}@{suffix}", key, body, scope))
        return specs

    def _foreach(self, node: Node, params: dict, stage: str) -> list[tuple[str, object, set[str]]]:
        value = self.resolve(node, Scope(params), stage)
        if isinstance(value, dict) and value:
            source = _WHOLE_PARAM.match(node.value) if isinstance(node, ScalarNode) else None
            return [(k, v, {f"{source.group(1)}.{k}"} if source else set()) for k, v in value.items()]
        if isinstance(value, list) and value:
            return [(_suffix(v, str(i)), v, set()) for i, v in enumerate(value)]
        raise self.error(node, f"'foreach' needs a non-empty list or mapping to generate stages from, got {type_name(value)}", stage=stage)

    def _matrix(self, node: Node, params: dict, stage: str) -> list[tuple[str, object, set[str]]]:
        value = self.resolve(node, Scope(params), stage)
        if not isinstance(value, dict) or not value:
            raise self.error(node, f"'matrix' needs a mapping of names to lists, e.g. matrix: {{lr: [0.1, 0.01]}}; got {type_name(value)}", stage=stage)
        for axis, values in value.items():
            if not isinstance(values, list) or not values:
                raise self.error(_child(node, axis), f"matrix axis '{axis}' must be a non-empty list, got {type_name(values)}", stage=stage)
        axes = [[(axis, i, v) for i, v in enumerate(values)] for axis, values in value.items()]
        runs = []
        for combination in itertools.product(*axes):
            suffix = "-".join(_suffix(v, f"{axis}{i}") for axis, i, v in combination)
            runs.append((suffix, {axis: v for axis, _, v in combination}, set()))
        return runs

    def stage(self, name: str, key: Node, items: list[tuple[str, Node, Node]], scope: Scope) -> StageSpec:
        """Validate one concrete stage (after any foreach/matrix expansion)."""
        fields = {k: vn for k, _, vn in items}
        modes = [(k, kn) for k, kn, _ in items if k in MODES]
        if not modes:
            raise self.error(key, f"stage '{name}' has no 'cmd', 'call' or 'kind'; add one, e.g. cmd: python src/{name.split('@')[0]}.py", stage=name)
        if len(modes) > 1:
            raise self.error(modes[1][1], f"stage '{name}' has both '{modes[0][0]}' and '{modes[1][0]}'; keep one", stage=name)
        mode = modes[0][0]
        settings: dict = {}
        for k, kn, vn in items:
            if k in STAGE_KEYS and k not in ("foreach", "matrix"):
                continue
            if k in ("foreach", "matrix", "do"):
                raise self.error(kn, f"'{k}' cannot be used here" + (" ('do' goes with 'foreach')" if k == "do" else " (no nested foreach/matrix)"), stage=name)
            if mode == "kind" and not difflib.get_close_matches(k, STAGE_KEYS, n=1, cutoff=0.8):
                settings[k] = self.resolve(vn, scope, name)
                continue
            raise self.error(kn, _unknown(f"key '{k}' in stage '{name}'", k, STAGE_KEYS), stage=name)
        wdir = self._wdir(fields.get("wdir"), scope, name)
        spec = dict(name=name, wdir=wdir, line=key.start_mark.line + 1, settings=settings)
        spec[mode] = self._cmd(fields["cmd"], scope, name) if mode == "cmd" else self._word(mode, fields[mode], scope, name)
        for field_name in ("deps", "outs", "metrics"):
            spec[field_name] = self._paths(field_name, fields.get(field_name), scope, name, wdir)
        self._check_distinct(spec["outs"] + spec["metrics"], fields, name)
        if "params" in fields:
            mapping = self._params(fields["params"], scope, name)
            if mapping is not None and mode != "cmd":
                settings["params"] = mapping
        spec["resources"] = self._resources(fields.get("resources"), scope, name)
        spec["desc"] = self._desc(fields.get("desc"), scope, name)
        spec["params"] = _flatten_used(scope)
        return StageSpec(**spec)

    def _word(self, mode: str, node: Node, scope: Scope, stage: str) -> str:
        value = self.resolve(node, scope, stage)
        if mode == "call" and not (isinstance(value, str) and _CALL.match(value)):
            raise self.error(node, f"'call' must name a function as 'package.module:function', got {value!r}", stage=stage)
        if mode == "kind" and value not in self.kinds:
            near = difflib.get_close_matches(str(value), sorted(self.kinds), n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise self.error(node, f"unknown stage kind {value!r}.{hint} Kinds: {', '.join(sorted(self.kinds))}", stage=stage)
        return value

    def _cmd(self, node: Node, scope: Scope, stage: str) -> tuple[str, ...]:
        nodes = node.value if isinstance(node, SequenceNode) else [node]
        if not nodes or isinstance(node, MappingNode):
            raise self.error(node, "'cmd' must be a command string or a non-empty list of them", stage=stage)
        commands = []
        for child in nodes:
            text = self.data(child, stage=stage) if isinstance(child, ScalarNode) else None
            if not isinstance(text, str) or not text.strip():
                raise self.error(child, f"each command must be non-empty text, got {type_name(text) if text != '' else 'an empty string'}", stage=stage)
            try:
                commands.append(interpolate_command(text, scope))
            except InterpolationError as exc:
                raise self.error(child, str(exc), stage=stage, offset=exc.offset) from None
        return tuple(commands)

    def _wdir(self, node: Node | None, scope: Scope, stage: str) -> str:
        if node is None:
            return "."
        value = self.resolve(node, scope, stage)
        if not isinstance(value, str) or not value:
            raise self.error(node, f"'wdir' must be a directory relative to the repository root, got {type_name(value)}", stage=stage)
        try:
            return normalise_path(value, ".", allow_root=True)
        except ValueError as exc:
            raise self.error(node, f"'wdir' {exc}", stage=stage) from None

    def _paths(self, field_name: str, node: Node | None, scope: Scope, stage: str, wdir: str) -> tuple[str, ...]:
        value = None if node is None else self.resolve(node, scope, stage)
        if value is None:
            return ()
        if not isinstance(value, list):
            example = f"; write {field_name}: [{value}]" if isinstance(value, str) else ""
            raise self.error(node, f"'{field_name}' must be a list of paths, got {type_name(value)}{example}", stage=stage)
        paths: list[str] = []
        for index, item in enumerate(value):
            where = _child(node, index)
            if not isinstance(item, str) or not item:
                raise self.error(where, f"each path in '{field_name}' must be non-empty text, got {type_name(item)}", stage=stage)
            try:
                path = normalise_path(item, wdir, allow_root=False)
            except ValueError as exc:
                raise self.error(where, f"{field_name[:-1]} {exc}", stage=stage) from None
            if field_name != "deps" and path.split("/")[0] in (".mlv", ".git"):
                raise self.error(where, f"'{item}' is inside {path.split('/')[0]}/, which mlv and git manage; write outputs elsewhere", stage=stage)
            if path not in paths:
                paths.append(path)
        return tuple(paths)

    def _check_distinct(self, paths: tuple[str, ...], fields: dict[str, Node], stage: str) -> None:
        duplicates = sorted({p for p in paths if paths.count(p) > 1})
        if duplicates:
            raise self.error(fields.get("metrics") or fields["outs"], f"'{duplicates[0]}' is listed in both 'outs' and 'metrics'; keep it in one", stage=stage)

    def _params(self, node: Node, scope: Scope, stage: str) -> dict | None:
        value = self.resolve(node, scope, stage)
        if value is None or isinstance(value, dict):
            return value
        if not isinstance(value, list):
            raise self.error(node, f"'params' must be a list of param names (params: [model.max_depth]) or a mapping such as ${{params.model}}, got {type_name(value)}", stage=stage)
        for index, name in enumerate(value):
            where = _child(node, index)
            if not isinstance(name, str):
                raise self.error(where, f"each entry in 'params' must be a param name like 'model.max_depth', got {type_name(name)}", stage=stage)
            try:
                lookup(f"params.{name}", scope)
            except InterpolationError as exc:
                hint = f" Write '{name[7:]}': names here are relative to 'params:'." if name.startswith("params.") else ""
                raise self.error(where, f"param '{name}' is not defined: {exc}{hint}", stage=stage) from None
        return None

    def _resources(self, node: Node | None, scope: Scope, stage: str) -> Resources:
        value = None if node is None else self.resolve(node, scope, stage)
        if value is None:
            return Resources()
        if not isinstance(value, dict):
            raise self.error(node, f"'resources' must be a mapping such as {{gpu: 1, cpus: 4, memory: 8GB}}, got {type_name(value)}", stage=stage)
        found: dict[str, int] = {}
        for name, amount in value.items():
            where = _child(node, name)
            if name not in _RESOURCE_KEYS:
                raise self.error(where, _unknown(f"resource '{name}'", name, _RESOURCE_KEYS), stage=stage)
            if name == "memory" and isinstance(amount, str):
                try:
                    amount = parse_memory(amount)
                except ValueError as exc:
                    raise self.error(where, str(exc), stage=stage) from None
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
                expected = "a size such as 4GB or a number of bytes" if name == "memory" else "a whole number ≥ 0"
                raise self.error(where, f"resource '{name}' must be {expected}, got {amount!r}", stage=stage)
            found[name] = amount
        return Resources(**found)

    def _desc(self, node: Node | None, scope: Scope, stage: str) -> str | None:
        value = None if node is None else self.resolve(node, scope, stage)
        if value is not None and not isinstance(value, str):
            raise self.error(node, f"'desc' must be text, got {type_name(value)}", stage=stage)
        return value


def _child(node: Node, key: object) -> Node:
    """The node of one item of a list or mapping, or the node itself when it came from ``${…}``."""
    if isinstance(node, SequenceNode) and isinstance(key, int) and key < len(node.value):
        return node.value[key]
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == key:
                return v
    return node


def _offset_position(node: Node, offset: int) -> tuple[int, int] | None:
    """Line and column of the ``offset``-th character of a scalar, found in the source."""
    start, end = node.start_mark, node.end_mark
    if not isinstance(node, ScalarNode) or start.buffer is None:
        return None
    nth = node.value[:offset].count("${")
    raw = start.buffer[start.pointer : end.pointer]
    if raw.count("${") != node.value.count("${"):
        return None
    position = -1
    for _ in range(nth + 1):
        position = raw.find("${", position + 1)
    before = raw[:position]
    if "\n" not in before:
        return start.line + 1, start.column + 1 + position
    return start.line + 1 + before.count("\n"), len(before) - before.rfind("\n")


def _unknown(subject: str, name: str, valid: Collection[str], hint: str | None = None) -> str:
    near = difflib.get_close_matches(name, list(valid), n=1)
    message = f"unknown {subject}."
    if near:
        message += f" Did you mean '{near[0]}'?"
    if hint:
        message += f" ({hint})"
    return message + f"\n  Valid keys: {', '.join(valid)}"


def _suffix(value: object, fallback: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, (str, int, float)) and str(value) else fallback


def _flatten_used(scope: Scope) -> dict[str, object]:
    flat: dict[str, object] = {}

    def add(name: str, value: object) -> None:
        if isinstance(value, dict) and value:
            for key, child in value.items():
                add(f"{name}.{key}" if name else key, child)
        else:
            flat[name] = value

    for name in sorted(scope.used):
        add(name, scope.params if not name else lookup(f"params.{name}", Scope(scope.params)))
    return dict(sorted(flat.items()))
