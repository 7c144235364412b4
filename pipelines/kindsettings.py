"""A kind's settings in ``mlv.yaml``: what they add to a stage (deps, outs, metrics), their check, and patterns.

A kind declares which settings name inputs, outputs and metrics files (``pipelines.kinds``):
``join`` adds those paths to the stage — a function named ``file.py:function`` depends on its
file, ``package.module:function`` is code, not a path — and runs the kind's ``check``; every
problem points at the setting's line and column. A list of inputs may hold patterns
(``models: [models/rf-*]``), expanded by ``expand_globs`` once every stage is read.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import posixpath
import re

from mlv.engine.dag import StageSpec
from mlv.pipelines.interpolate import type_name
from mlv.pipelines.kinds import Kind, SettingError
from mlv.pipelines.kinds import load as load_function
from mlv.pipelines.nodes import NodeReader, node_at
from mlv.storage import paths
from mlv.storage.errors import UsageError
from yaml.nodes import Node

GLOB = re.compile(r"[*?\[]")  # a kind's input that is a pattern: expanded against stage outputs and added data
_FUNCTION = re.compile(r"^(.+\.py):[A-Za-z_]\w*$")  # a kind's input named as file.py:function: the file
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")  # package.module:function: not a path


def join(parser: NodeReader, kind: Kind, spec: dict, settings: dict, fields: dict, key: Node, name: str,
         wdir: str) -> None:
    """A kind's required settings, its input/output/metrics settings joined to deps/outs/metrics, its check."""
    for required in kind.required:
        if required not in settings and not (required == "params" and "params" in fields):
            raise parser.error(key, f"stage '{name}' (kind {kind.name}) needs '{required}'; add {required}: …",
                               name)
    for field, names in (("deps", kind.inputs), ("outs", kind.outputs), ("metrics", kind.metrics)):
        for setting in names:
            value, node = setting_of(settings, fields, setting)
            if setting == field or value is None:
                continue
            if not isinstance(value, (str, list)):
                raise parser.error(node, f"'{setting}' must be a path or a list of paths, got {type_name(value)}",
                                   name)
            values = [value] if isinstance(value, str) else value
            if field == "deps" and isinstance(value, list) and any(isinstance(v, str) and GLOB.search(v)
                                                                   for v in values):  # patterns: in lists
                parser.globs.setdefault(name, []).append((setting, node, wdir))  # expanded once all stages are read
                values = [v for v in values if not (isinstance(v, str) and GLOB.search(v))]
            if field == "deps":  # a function named as file.py:function depends on its file; pkg.mod:function is code
                files = [_FUNCTION.sub(r"\1", v) if isinstance(v, str) else v for v in values
                         if not isinstance(v, str) or not _MODULE.match(v)]
                values = [v for i, v in enumerate(files) if v not in files[:i]]
            found = parser.path_list(setting, node, values, name, wdir)
            for path in found:
                if path in spec[field] and field != "deps":
                    raise parser.error(node, f"'{path}' is named twice as an output; remove one", name)
                spec[field] += (path,) if path not in spec[field] else ()
    if kind.check is not None:
        try:
            check = load_function(kind.check)
        except Exception as exc:
            raise UsageError(f"stage kind '{kind.name}': its check {kind.check} cannot be loaded: {exc!r}; fix "
                             "or reinstall the package that provides it") from exc
        try:
            check(settings)
        except SettingError as exc:
            node = fields.get(exc.key[0], key)
            for part in exc.key[1:]:
                node = node_at(node, part)
            raise parser.error(node, f"'{exc.mlv_setting}': {exc.message}", name) from None


def expand_globs(parser: NodeReader, spec: StageSpec, stages: dict[str, StageSpec]) -> StageSpec:
    """A kind's input patterns (``models: [models/rf-*]``) become the other stages' outputs and the added
    data they match, in order; the kind is given the paths, and they are its deps. Other files on disk do
    not count: an output of a stage since removed must never be picked up unseen."""
    settings, deps = dict(spec.settings), list(spec.deps)
    outputs = {p for other in stages.values() if other.name != spec.name
               for p in (*other.outs, *other.metrics, *other.plots)}
    for setting, node, wdir in parser.globs[spec.name]:
        value = settings[setting]
        expanded: list[str] = []
        for index, item in enumerate(value):
            if not (isinstance(item, str) and GLOB.search(item)):
                expanded.append(item)
                continue
            pattern = posixpath.normpath(posixpath.join(wdir, item))
            if posixpath.isabs(pattern) or pattern.split("/")[0] == "..":
                raise parser.error(node_at(node, index), f"'{setting}' pattern '{item}' leads outside the "
                                   "repository; write it relative to the stage's wdir", spec.name)
            added = {p.relative_to(parser.root).as_posix().removesuffix(".mlv")  # data added with `mlv add`
                     for p in parser.root.glob(pattern + ".mlv")}
            found = sorted(p for p in outputs | added if _matches(pattern, p)
                           and paths.problem(p, written=False) is None)
            if not found:
                raise parser.error(node_at(node, index), f"'{setting}' pattern '{item}' matches no stage output "
                                   "and no added data; check the pattern", spec.name)
            expanded += [posixpath.relpath(p, wdir) for p in found if posixpath.relpath(p, wdir) not in expanded]
            deps += [p for p in found if p not in deps]
        settings[setting] = expanded
    return dataclasses.replace(spec, settings=settings, deps=tuple(deps))


def _matches(pattern: str, path: str) -> bool:
    """Glob matching, part by part: ``*`` never crosses a ``/``."""
    parts, names = pattern.split("/"), path.split("/")
    return len(parts) == len(names) and all(fnmatch.fnmatchcase(n, p) for p, n in zip(parts, names))


def setting_of(settings: dict, fields: dict, name: str) -> tuple[object, Node | None]:
    """A (possibly dotted: ``review.out``) setting's value and its node."""
    first, *rest = name.split(".")
    value, node = settings.get(first), fields.get(first)
    for part in rest:
        value = value.get(part) if isinstance(value, dict) else None
        node = node_at(node, part) if node is not None else None
    return value, node
