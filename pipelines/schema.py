"""mlv.yaml → :class:`Pipeline`: parsing, validation, interpolation and foreach/matrix fan-out.

This module owns the user-facing pipeline file. It reads YAML with a safe loader,
walks the composed nodes itself (so every value keeps its line and column and
duplicate keys are caught), resolves ``${…}``, expands ``foreach``/``matrix`` and
returns plain frozen data (:class:`mlv.engine.dag.StageSpec`). It touches no other
file, no store and no Dask.

Invariants:

- Every problem is a :class:`PipelineError` (exit code 2) whose message starts
  ``<file>:<line>:<column>: `` and says how to fix it.
- Paths are repo-relative POSIX strings inside the repository; ``wdir`` is relative
  to the repo root (default: the root) and deps/outs/metrics are relative to ``wdir``.
- ``cmd`` is a tuple of shell commands run one after another, stopping at the first
  that fails (a string is a one-command tuple); interpolated values are shell-quoted.
- ``StageSpec.params`` holds exactly the params a stage uses (interpolated anywhere
  but ``desc``/``resources``, or listed in its ``params:``), flattened to dotted names.
- With ``kind:``, the keys the kind declares are its settings (``settings``); its input,
  output and metrics settings join ``deps``/``outs``/``metrics``. Other keys are errors. A mapping under ``params:`` (``${params.model}``) is
  handed to the kind or function as ``settings["params"]``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mlv.engine.dag import Resources, StageSpec, normalise_path, parse_memory
from mlv.pipelines.interpolate import (
    InterpolationError, Scope, edit_distance, interpolate_command, lookup, nearest, type_name,
)
from mlv.pipelines.kinds import Kind, Registry, SettingError
from mlv.pipelines.kinds import load as load_function
from mlv.pipelines.nodes import Items, NodeReader, PipelineError, node_at
from mlv.storage import paths, yamlfile
from mlv.storage.errors import UsageError

__all__ = ["Pipeline", "PipelineError", "Resources", "StageSpec", "load_pipeline"]

MODES = ("cmd", "call", "kind")
STAGE_KEYS = (*MODES, "deps", "outs", "params", "metrics", "resources", "wdir", "foreach", "matrix", "desc")
_TOP_KEYS = ("params", "stages")
_RESOURCE_KEYS = ("gpu", "cpus", "memory")
_STAGE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_SUFFIX = re.compile(r"^[A-Za-z0-9_.+-]+$")  # what foreach/matrix values may add after '@'
MAX_STAGES = 10_000  # stages one foreach or matrix may generate
_CALL = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_FUNCTION = re.compile(r"^(.+\.py):[A-Za-z_]\w*$")  # a kind's input named as file.py:function: the file
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")  # package.module:function: not a path
_WHOLE_PARAM = re.compile(r"^\$\{\s*params\.([\w.-]+)\s*\}$")


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A loaded mlv.yaml: its params and its concrete stages, in file order."""

    path: Path
    params: dict
    stages: dict[str, StageSpec]

    def to_dict(self) -> dict:
        return {"path": str(self.path), "params": self.params,
                "stages": {name: spec.to_dict() for name, spec in self.stages.items()}}


def load_pipeline(path: Path, *, root: Path, kinds: Mapping[str, Kind] | None = None) -> Pipeline:
    """Load and validate a pipeline file.

    Args:
        kinds: the stage kinds ``kind:`` accepts, by name; default: the registry of the entry
            point group ``mlv.kinds`` (``mlv.pipelines.kinds``), read only if a stage uses ``kind:``.

    Raises:
        PipelineError: anything wrong in the file, with file:line:column and a fix.
    """
    path, root = Path(path), Path(root)
    try:
        shown = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        shown = str(path)
    try:
        text = yamlfile.read_text(path, source=shown, limit=yamlfile.PIPELINE_BYTES)
    except FileNotFoundError:
        raise PipelineError("no such file; create it with a 'stages:' section", path=shown) from None
    except yamlfile.YamlLimitError as exc:
        raise PipelineError(str(exc).removeprefix(f"{shown}: "), path=shown) from None
    except OSError as exc:
        raise PipelineError(f"cannot read the pipeline file: {exc}", path=shown) from exc
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # it checks the characters already: a NUL is a YAMLError here
        node = loader.get_single_node()
        if node is not None:
            yamlfile.check_node(node, source=shown, text=text)
    except yamlfile.YamlLimitError as exc:
        raise PipelineError(str(exc).removeprefix(f"{shown}: "), path=shown) from None
    except RecursionError:
        raise PipelineError("nested too deeply to read; flatten it", path=shown) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
        hint = ". Inside [ ] or { }, quote values with '${…}': [\"${params.a}\"]" if "${" in line else ""
        raise PipelineError(f"invalid YAML: {exc.problem or exc.context}{hint}", path=shown,
                            line=mark.line + 1 if mark else 1, column=mark.column + 1 if mark else 1) from exc
    except yaml.YAMLError as exc:
        raise PipelineError(f"invalid YAML: {exc}", path=shown, line=1, column=1) from exc
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        raise PipelineError("the file is empty; add a 'stages:' section, e.g. stages: {prepare: {cmd: …}}",
                            path=shown, line=1, column=1)
    parser = _Parser(loader, shown, Registry() if kinds is None else kinds)
    parser.check_tags(node, set())
    return parser.pipeline(node, path)


class _Parser(NodeReader):
    """Walks composed YAML nodes into specs (``NodeReader`` gives data, positions and errors)."""

    def __init__(self, loader: yaml.SafeLoader, shown: str, kinds: Mapping[str, Kind]) -> None:
        super().__init__(loader, shown)
        self.kinds = kinds

    # -- the file -------------------------------------------------------------

    def pipeline(self, node: Node, path: Path) -> Pipeline:
        if not isinstance(node, MappingNode):
            raise self.error(node, f"expected a mapping with 'stages:' and 'params:', got {type_name(self.data(node))}")
        top = {name: value for name, _, value in self.items(node)}
        for name, key, _ in self.items(node):
            if name not in _TOP_KEYS:
                hint = " (mlv reads params from the 'params:' section)" if name == "vars" else ""
                raise self.error(key, _unknown(f"top-level key '{name}'{hint}", name, _TOP_KEYS))
        params = self.data(top["params"]) if "params" in top else {}
        if not isinstance(params, (dict, type(None))):
            raise self.error(top["params"], f"'params' must be a mapping of names to values, got {type_name(params)}")
        if "params" in top:
            self._check_param_keys(top["params"])
        if "stages" not in top:
            raise self.error(node, "no 'stages:' section; add one, e.g. stages: {prepare: {cmd: python prepare.py}}")
        body = top["stages"]
        if isinstance(body, ScalarNode) and self.data(body) is None:
            return Pipeline(path=path, params=params or {}, stages={})
        if not isinstance(body, MappingNode):
            raise self.error(body, f"'stages' must map stage names to stages, got {type_name(self.data(body))}")
        stages: dict[str, StageSpec] = {}
        for name, key, value in self.items(body, label="stage"):
            if not _STAGE_NAME.match(name):
                raise self.error(key, f"stage name '{name}' may use only letters, digits, '_', '-' and '.' "
                                 "('@' marks stages generated by foreach/matrix)", name)
            for spec in self.expand(name, key, value, params or {}):
                if spec.name in stages:
                    raise self.error(key, f"stage '{spec.name}' is generated twice; make the foreach values distinct",
                                     name)
                stages[spec.name] = spec
        return Pipeline(path=path, params=params or {}, stages=stages)

    def _check_param_keys(self, node: Node) -> None:
        children = list(node.value) if isinstance(node, SequenceNode) else []
        for name, key, value in self.items(node) if isinstance(node, MappingNode) else []:
            if "." in name:
                raise self.error(key, f"param name '{name}' contains '.', which '${{params.…}}' reads as nesting; "
                                 f"nest it instead: {name.replace('.', ': {', 1)}: …}}")
            children.append(value)
        for child in children:
            self._check_param_keys(child)

    # -- stages ---------------------------------------------------------------

    def expand(self, name: str, key: Node, node: Node, params: dict) -> list[StageSpec]:
        """One stage, or the stages its ``foreach``/``matrix`` generates (named ``name@key``)."""
        if not isinstance(node, MappingNode):
            got = type_name(self.data(node, name))
            raise self.error(node, f"stage '{name}' must be a mapping (cmd:, deps:, outs:, …), got {got}", name)
        items = self.items(node, stage=name)
        present = {k: (kn, vn) for k, kn, vn in items}
        if "foreach" in present and "matrix" in present:
            raise self.error(present["matrix"][0], f"stage '{name}' has both 'foreach' and 'matrix'; keep one", name)
        loop = next((k for k in ("foreach", "matrix") if k in present), None)
        if loop is None:
            return [self.stage(name, key, items, Scope(params))]
        body = [entry for entry in items if entry[0] != loop]
        if loop == "foreach" and "do" in present:
            if len(body) > 1:
                other = next(entry for entry in body if entry[0] != "do")
                raise self.error(other[1], f"with 'do:', put '{other[0]}' inside 'do:' (or drop 'do:')", name)
            if not isinstance(present["do"][1], MappingNode):
                raise self.error(present["do"][1], "'do' must be a mapping (cmd:, deps:, outs:, …)", name)
            body = self.items(present["do"][1], stage=name)
        value = self.resolve(present[loop][1], Scope(params), name)
        runs = self._foreach(present[loop][1], value, name) if loop == "foreach" else self._matrix(
            present[loop][1], value, name)
        specs = []
        for suffix, item, used in runs:
            scope = Scope(params, item=item, key=suffix)
            scope.used.update(used)
            specs.append(self.stage(f"{name}@{suffix}", key, body, scope))
        return specs

    def _foreach(self, node: Node, value: object, stage: str) -> list[tuple[str, object, set[str]]]:
        if isinstance(value, (dict, list)) and len(value) > MAX_STAGES:
            raise self.error(node, f"'foreach' would make {len(value):,} stages; at most {MAX_STAGES:,} are "
                             "allowed in one pipeline", stage)
        if isinstance(value, dict) and value:
            source = _WHOLE_PARAM.match(node.value) if isinstance(node, ScalarNode) else None
            runs = []
            for k, v in value.items():
                if not _SUFFIX.match(str(k)):
                    raise self.error(node, f"foreach key {str(k)!r} names the stage '{stage}@{k}', so it may use "
                                     "only letters, digits and '_', '.', '+', '-'; rename the key", stage)
                runs.append((str(k), v, {f"{source.group(1)}.{k}"} if source else set()))
            return runs
        if isinstance(value, list) and value:
            return [(_suffix(v, str(i)), v, set()) for i, v in enumerate(value)]
        raise self.error(node, f"'foreach' needs a non-empty list or mapping, got {type_name(value)}", stage)

    def _matrix(self, node: Node, value: object, stage: str) -> list[tuple[str, object, set[str]]]:
        if not isinstance(value, dict) or not value:
            raise self.error(node, f"'matrix' needs a mapping of names to lists, e.g. matrix: {{lr: [0.1, 0.01]}}; "
                             f"got {type_name(value)}", stage)
        for axis, values in value.items():
            if not isinstance(values, list) or not values:
                raise self.error(node_at(node, axis), f"matrix axis '{axis}' must be a non-empty list, "
                                 f"got {type_name(values)}", stage)
        if math.prod(len(values) for values in value.values()) > MAX_STAGES:
            raise self.error(node, f"'matrix' would make {math.prod(len(v) for v in value.values()):,} stages; at "
                             f"most {MAX_STAGES:,} are allowed in one pipeline", stage)
        axes = [[(axis, i, v) for i, v in enumerate(values)] for axis, values in value.items()]
        return [("-".join(_suffix(v, f"{axis}{i}") for axis, i, v in combo), {axis: v for axis, _, v in combo}, set())
                for combo in itertools.product(*axes)]

    def stage(self, name: str, key: Node, items: Items, scope: Scope) -> StageSpec:
        """Validate one concrete stage (after foreach/matrix expansion)."""
        fields = {k: vn for k, _, vn in items}
        modes = [(k, kn) for k, kn, _ in items if k in MODES]
        if not modes:
            raise self.error(key, f"stage '{name}' has no 'cmd', 'call' or 'kind'; add one, "
                             f"e.g. cmd: python src/{name.split('@')[0]}.py", name)
        if len(modes) > 1:
            raise self.error(modes[1][1], f"stage '{name}' has both '{modes[0][0]}' and '{modes[1][0]}'; keep one",
                             name)
        mode, settings = modes[0][0], {}
        if mode == "cmd":
            spec = {"cmd": self._cmd(fields["cmd"], scope, name)}
        else:
            spec = {mode: self._word(mode, fields[mode], scope, name)}
        kind = self.kinds[spec["kind"]] if mode == "kind" else None
        own = kind.settings if kind is not None else ()
        for k, kn, vn in items:
            if k in ("foreach", "matrix", "do"):
                why = "'do' goes with 'foreach'" if k == "do" else "foreach/matrix cannot nest"
                raise self.error(kn, f"'{k}' cannot be used here ({why})", name)
            if k in own and k != "params":
                settings[k] = self.resolve(vn, scope, name)
            elif k not in STAGE_KEYS:
                raise self.error(kn, _unknown(f"key '{k}' in stage '{name}'", k, (*STAGE_KEYS, *own)), name)
        wdir = self._wdir(fields.get("wdir"), scope, name)
        for field in ("deps", "outs", "metrics"):
            node = fields.get(field)
            value = settings[field] if field in settings else self.resolve(node, scope, name)
            spec[field] = self._paths(field, node, [value] if kind and isinstance(value, str) else value, name, wdir)
        if kind is not None:
            self._kind_paths(kind, spec, settings, fields, key, name, wdir)
        if both := sorted(set(spec["outs"]) & set(spec["metrics"])):
            raise self.error(fields.get("metrics", key), f"'{both[0]}' is in both 'outs' and 'metrics'; keep it in "
                             "one", name)
        mapping = self._params(fields.get("params"), scope, name)
        if mapping is not None and mode != "cmd":
            settings["params"] = mapping
        # desc and resources do not change what a stage computes: the params they use stay out of its fingerprint
        aside = Scope(scope.params, item=scope.item, key=scope.key)
        desc = self.resolve(fields.get("desc"), aside, name)
        if not isinstance(desc, (str, type(None))):
            raise self.error(fields["desc"], f"'desc' must be text, got {type_name(desc)}", name)
        resources = self._resources(fields.get("resources"), aside, name)
        if kind is not None and settings.get("device") == "gpu" and not resources.gpu:  # device: gpu needs one
            resources = Resources(gpu=1, cpus=resources.cpus, memory=resources.memory)
        return StageSpec(name=name, settings=settings, wdir=wdir, desc=desc, line=key.start_mark.line + 1,
                         resources=resources, params=scope.used_params(), **spec)

    def _kind_paths(self, kind: Kind, spec: dict, settings: dict, fields: dict, key: Node, name: str,
                    wdir: str) -> None:
        """A kind's required settings, its input/output/metrics settings joined to deps/outs/metrics, its check."""
        for required in kind.required:
            if required not in settings and not (required == "params" and "params" in fields):
                raise self.error(key, f"stage '{name}' (kind {kind.name}) needs '{required}'; add {required}: …",
                                 name)
        for field, names in (("deps", kind.inputs), ("outs", kind.outputs), ("metrics", kind.metrics)):
            for setting in names:
                value, node = _setting(settings, fields, setting)
                if setting == field or value is None:
                    continue
                if not isinstance(value, (str, list)):
                    raise self.error(node, f"'{setting}' must be a path or a list of paths, got {type_name(value)}",
                                     name)
                values = [value] if isinstance(value, str) else value
                if field == "deps":  # a function named as file.py:function depends on its file; pkg.mod:function is code
                    files = [_FUNCTION.sub(r"\1", v) if isinstance(v, str) else v for v in values
                             if not isinstance(v, str) or not _MODULE.match(v)]
                    values = [v for i, v in enumerate(files) if v not in files[:i]]
                found = self._paths(setting, node, values, name, wdir)
                for path in found:
                    if path in spec[field] and field != "deps":
                        raise self.error(node, f"'{path}' is named twice as an output; remove one", name)
                    spec[field] += (path,) if path not in spec[field] else ()
        if kind.check is not None:
            try:
                check = load_function(kind.check)
            except Exception as exc:  # noqa: BLE001 - a broken plugin is named, not a traceback
                raise UsageError(f"stage kind '{kind.name}': its check {kind.check} cannot be loaded: {exc!r}; fix "
                                 "or reinstall the package that provides it") from exc
            try:
                check(settings)
            except SettingError as exc:
                node = fields.get(exc.key[0], key)
                for part in exc.key[1:]:
                    node = node_at(node, part)
                raise self.error(node, f"'{exc.mlv_setting}': {exc.message}", name) from None

    def _word(self, mode: str, node: Node, scope: Scope, stage: str) -> str:
        value = self.resolve(node, scope, stage)
        if mode == "call" and not (isinstance(value, str) and _CALL.match(value)):
            raise self.error(node, f"'call' must name a function as 'package.module:function', got {value!r}", stage)
        if mode == "kind" and value not in self.kinds:
            near = nearest(str(value), sorted(self.kinds))
            hint = f" Did you mean '{near}'?" if near else ""
            raise self.error(node, f"unknown stage kind {value!r}.{hint} Kinds: {', '.join(sorted(self.kinds))}",
                             stage)
        return value

    def _cmd(self, node: Node, scope: Scope, stage: str) -> tuple[str, ...]:
        nodes = node.value if isinstance(node, SequenceNode) else [node]
        if not nodes or isinstance(node, MappingNode):
            raise self.error(node, "'cmd' must be a command, or a non-empty list of commands run in order", stage)
        commands = []
        for child in nodes:
            text = self.data(child, stage) if isinstance(child, ScalarNode) else None
            if not isinstance(text, str) or not text.strip():
                got = "an empty command" if text == "" else type_name(text)
                raise self.error(child, f"each command must be non-empty text, got {got}", stage)
            try:
                commands.append(interpolate_command(text, scope))
            except InterpolationError as exc:
                raise self.error(child, str(exc), stage, exc.offset) from None
        return tuple(commands)

    def _wdir(self, node: Node | None, scope: Scope, stage: str) -> str:
        value = self.resolve(node, scope, stage)
        if value is None:
            return "."
        if not isinstance(value, str) or not value:
            raise self.error(node, f"'wdir' must be a directory relative to the repository root, "
                             f"got {type_name(value)}", stage)
        try:
            wdir = normalise_path(value, ".", allow_root=True)
        except ValueError as exc:
            raise self.error(node, f"wdir {exc}", stage) from None
        if wdir != "." and (why := paths.problem(wdir, written=False)) is not None:
            raise self.error(node, f"wdir '{value}' {why}; run the stage elsewhere", stage)
        return wdir

    def _paths(self, field: str, node: Node | None, value: object, stage: str, wdir: str) -> tuple[str, ...]:
        """Normalise the paths in ``value`` (the resolved content of ``node``) against ``wdir``."""
        if value is None:
            return ()
        if not isinstance(value, list):
            example = f"; write {field}: [{value}]" if isinstance(value, str) else ""
            raise self.error(node, f"'{field}' must be a list of paths, got {type_name(value)}{example}", stage)
        found: list[str] = []
        for index, item in enumerate(value):
            where = node_at(node, index)
            if not isinstance(item, str) or not item:
                raise self.error(where, f"each path in '{field}' must be non-empty text, got {type_name(item)}", stage)
            try:
                path = normalise_path(item, wdir)
            except ValueError as exc:
                role = {"deps": "dep", "outs": "out", "metrics": "metric"}.get(field, f"'{field}' path")
                raise self.error(where, f"{role} {exc}", stage) from None
            if (why := paths.problem(path, written=field != "deps")) is not None:
                role = {"deps": "dep", "outs": "out", "metrics": "metric"}.get(field, f"'{field}' path")
                fix = "read it from elsewhere" if field == "deps" else "write outputs elsewhere"
                shown = f"'{item}'" if item == path else f"'{item}' ({path})"
                raise self.error(where, f"{role} {shown} {why}; {fix}", stage)
            if path in found and field != "deps":
                raise self.error(where, f"'{item}' is listed twice in '{field}'; remove one", stage)
            found += [path] if path not in found else []
        return tuple(found)

    def _params(self, node: Node | None, scope: Scope, stage: str) -> dict | None:
        value = self.resolve(node, scope, stage)
        if value is None or isinstance(value, dict):
            return value
        if not isinstance(value, list):
            raise self.error(node, "'params' must be a list of param names, e.g. params: [model.max_depth], "
                             f"or a mapping such as ${{params.model}}; got {type_name(value)}", stage)
        for index, name in enumerate(value):
            where = node_at(node, index)
            if not isinstance(name, str):
                raise self.error(where, f"each entry in 'params' must be a param name like 'model.max_depth', "
                                 f"got {type_name(name)}", stage)
            try:
                lookup(f"params.{name}", scope)
            except InterpolationError as exc:
                detail = str(exc)
                if name.startswith("params."):
                    detail = f"write '{name[7:]}', as names here are relative to the top-level 'params:'"
                raise self.error(where, f"param '{name}' is not defined: {detail}", stage) from None
        return None

    def _resources(self, node: Node | None, scope: Scope, stage: str) -> Resources:
        value = self.resolve(node, scope, stage)
        if value is None:
            return Resources()
        if not isinstance(value, dict):
            raise self.error(node, f"'resources' must be a mapping such as {{gpu: 1, cpus: 4, memory: 8GB}}, "
                             f"got {type_name(value)}", stage)
        found: dict[str, int] = {}
        for name, amount in value.items():
            where = node_at(node, name)
            if name not in _RESOURCE_KEYS:
                raise self.error(where, _unknown(f"resource '{name}'", name, _RESOURCE_KEYS), stage)
            try:
                amount = parse_memory(amount) if name == "memory" and isinstance(amount, str) else amount
            except ValueError as exc:
                raise self.error(where, str(exc), stage) from None
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
                expected = "a size such as 4GB or a number of bytes" if name == "memory" else "a whole number ≥ 0"
                raise self.error(where, f"resource '{name}' must be {expected}, got {amount!r}", stage)
            found[name] = amount
        return Resources(**found)


def _unknown(subject: str, name: str, valid: Collection[str]) -> str:
    near = nearest(name, valid)
    hint = f" Did you mean '{near}'?" if near else ""
    return f"unknown {subject}.{hint}\n  Valid keys: {', '.join(valid)}"


def _setting(settings: dict, fields: dict, name: str) -> tuple[object, Node | None]:
    """A (possibly dotted: ``review.out``) setting's value and its node."""
    first, *rest = name.split(".")
    value, node = settings.get(first), fields.get(first)
    for part in rest:
        value = value.get(part) if isinstance(value, dict) else None
        node = node_at(node, part) if node is not None else None
    return value, node


def _suffix(value: object, fallback: str) -> str:
    """The name suffix for a foreach/matrix value: the value itself when scalar, else ``fallback``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, (str, int, float)) and _SUFFIX.match(str(value)) else fallback
