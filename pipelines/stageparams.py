"""A stage's ``params:`` in mlv.yaml: param names (``[model.max_depth]``), keys of other files as DVC
names them (``{config/train.yaml: [lr]}``: read by ``paramfiles``), or a mapping handed to a kind or a
``call`` (``${params.model}``). Errors point at the entry's line and column (``parser.error``).
"""

from __future__ import annotations

from yaml.nodes import Node

from mlv.engine.dag import normalise_path
from mlv.pipelines import paramfiles
from mlv.pipelines.interpolate import InterpolationError, Scope, lookup, type_name
from mlv.pipelines.nodes import NodeReader, node_at
from mlv.storage import paths


def parse(parser: NodeReader, node: Node | None, scope: Scope, stage: str, wdir: str) -> tuple[dict | None, dict]:
    """A mapping handed to a kind or call (else None), and the params named in other files (``paramfiles``)."""
    value = parser.resolve(node, scope, stage)
    if value is None or isinstance(value, dict):
        return value, {}
    if not isinstance(value, list):
        raise parser.error(node, "'params' must be a list of param names, e.g. params: [model.max_depth], "
                         f"or a mapping such as ${{params.model}}; got {type_name(value)}", stage)
    from_files: dict = {}
    for index, name in enumerate(value):
        where = node_at(node, index)
        if isinstance(name, dict):
            from_files.update(_file_entry(parser, where, name, scope, stage, wdir))
            continue
        if not isinstance(name, str):
            raise parser.error(where, f"each entry in 'params' must be a param name like 'model.max_depth', "
                             f"or a file with its keys like {{config/train.yaml: [lr]}}; got {type_name(name)}",
                             stage)
        _name(parser, where, name, scope, stage)
    return None, from_files

def _name(parser: NodeReader, where: Node, name: str, scope: Scope, stage: str) -> None:
    try:
        lookup(f"params.{name}", scope)
    except InterpolationError as exc:
        detail = str(exc)
        if name.startswith("params."):
            detail = f"write '{name[7:]}', as names here are relative to the top-level 'params:'"
        raise parser.error(where, f"param '{name}' is not defined: {detail}", stage) from None

def _file_entry(parser: NodeReader, node: Node, entry: dict, scope: Scope, stage: str, wdir: str) -> dict:
    """``{file: [keys]}`` (``{file: }`` or ``{file: []}``: every key) → the recorded params of that file."""
    found: dict = {}
    for file, keys in entry.items():
        where = node_at(node, file)
        if keys is not None and not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            raise parser.error(where, f"the keys of params file '{file}' must be a list of names, e.g. "
                             f"{{{file}: [lr, model.depth]}}, or empty for all of them; got {type_name(keys)}",
                             stage)
        try:
            rel = normalise_path(str(file), wdir)
        except ValueError as exc:
            raise parser.error(where, f"params file {exc}", stage) from None
        if (why := paths.problem(rel, written=False)) is not None:
            raise parser.error(where, f"params file '{file}' {why}; keep params files in the repo", stage)
        try:
            if rel == paramfiles.beside(parser.shown, paramfiles.PARAMS_FILE):  # params.yaml: its keys are params like any other
                for key in keys or sorted(paramfiles.read(parser.root, rel)):
                    _name(parser, where, key, scope, stage)
                continue
            data = parser.param_files.get(rel)
            if data is None:
                data = parser.param_files[rel] = paramfiles.read(parser.root, rel)
            found.update(paramfiles.pick(data, rel, keys))
        except paramfiles.ParamFileError as exc:
            raise parser.error(where, f"stage '{stage}': {exc}", stage) from None
    return found
