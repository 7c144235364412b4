"""Params a stage names in another file, as DVC writes them: ``params: [lr, {config/train.yaml: [epochs]}]``.

This module owns reading such files (YAML or JSON, bounded like every file mlv reads from
a repo) and picking the named keys out of them. ``schema.py`` turns its ``ParamFileError``
into a ``PipelineError`` at the entry's line and column.

Invariants:

- A stage's fingerprint holds only the keys it names, flattened to leaves and recorded as
  ``<file>:<dotted key>`` (``config/train.yaml:model.depth``); the file is not a dep, so a
  change to a key no stage names reruns nothing. ``{file: }`` or ``{file: []}`` names every key.
- The file's path is relative to the stage's ``wdir`` and obeys the paths rule.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from mlv.pipelines.interpolate import nearest, type_name
from mlv.pipelines.nodes import PipelineError
from mlv.storage import yamlfile
from mlv.storage.errors import MlvError

PARAMS_FILE = "params.yaml"  # params beside mlv.yaml, as DVC reads them
SEPARATOR = ":"  # between the file and the dotted key in a recorded param name
SUFFIXES = (".yaml", ".yml", ".json")


class ParamFileError(ValueError):
    """A params file or one of its keys cannot be used; the message names both."""


def read(root: Path, rel: str) -> dict:
    """The mapping in ``root/rel`` (YAML or JSON).

    Raises:
        ParamFileError: it is missing, not readable, not YAML/JSON, or not a mapping.
    """
    if not rel.endswith(SUFFIXES):
        raise ParamFileError(f"params file '{rel}' is not YAML or JSON ({', '.join(SUFFIXES)}); mlv reads params "
                             "only from those")
    try:
        text = yamlfile.read_text(root / rel, source=rel, limit=yamlfile.CONFIG_BYTES)
        data = yamlfile.load(text, source=rel)
    except (FileNotFoundError, NotADirectoryError):
        raise ParamFileError(f"params file '{rel}' does not exist; create it, or fix the path "
                             "(relative to the stage's wdir)") from None
    except IsADirectoryError:
        raise ParamFileError(f"params file '{rel}' is a directory; name a YAML or JSON file") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ParamFileError(f"params file '{rel}{at}' is not valid YAML: {exc.problem or exc.context}") from None
    except (yaml.YAMLError, MlvError, OSError) as exc:
        raise ParamFileError(f"params file '{rel}' cannot be read: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ParamFileError(f"params file '{rel}' must be a mapping of param names to values; got {type_name(data)}")
    return data


def pick(data: dict, rel: str, keys: list[str] | None) -> dict[str, object]:
    """``<rel>:<dotted leaf>`` → value for each key named (every key when ``keys`` is empty or None).

    >>> pick({"train": {"lr": 0.1, "epochs": 3}, "seed": 1}, "c.yaml", ["train"])
    {'c.yaml:train.epochs': 3, 'c.yaml:train.lr': 0.1}
    >>> pick({"seed": 1}, "c.yaml", None)
    {'c.yaml:seed': 1}

    Raises:
        ParamFileError: a key is not in the file (with the nearest name).
    """
    found: dict[str, object] = {}
    for key in keys or sorted(data):
        found.update({f"{rel}{SEPARATOR}{name}": value for name, value in leaves(key, value_at(data, rel, key)).items()})
    return dict(sorted(found.items()))


def value_at(data: dict, rel: str, key: str) -> object:
    """The value of the dotted ``key`` in ``data`` (read from ``rel``)."""
    value: object = data
    walked: list[str] = []
    for part in key.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            choices = [".".join([*walked, str(k)]) for k in value] if isinstance(value, dict) else []
            near = nearest(key, choices)
            hint = f" Did you mean '{near}'?" if near else ""
            listing = ", ".join(sorted(choices)[:12]) or "(none)"
            raise ParamFileError(f"param '{key}' is not in params file '{rel}'.{hint} Keys there: {listing}")
        walked.append(part)
    return value


def leaves(name: str, value: object) -> dict[str, object]:
    """Dotted name → value of every leaf under ``name`` (a mapping is spread; a list is one value).

    >>> leaves("m", {"a": 1, "b": {"c": 2}})
    {'m.a': 1, 'm.b.c': 2}
    """
    if isinstance(value, dict) and value:
        out: dict[str, object] = {}
        for key, child in value.items():
            out.update(leaves(f"{name}.{key}", child))
        return out
    return {name: value}


def read_beside(path: Path, *, shown: str) -> dict | None:
    """The params of ``params.yaml`` beside mlv.yaml (DVC's convention), or None when there is none.

    Raises:
        PipelineError: it cannot be read, is not YAML, or is not a mapping of names to values.
    """
    try:
        data = yamlfile.load(yamlfile.read_text(path, source=shown, limit=yamlfile.CONFIG_BYTES), source=shown)
    except FileNotFoundError:
        return None
    except yamlfile.YamlLimitError as exc:
        raise PipelineError(str(exc).removeprefix(f"{shown}: "), path=shown) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise PipelineError(f"invalid YAML: {exc.problem or exc.context}", path=shown,
                            line=mark.line + 1 if mark else 1, column=mark.column + 1 if mark else 1) from exc
    except (yaml.YAMLError, OSError) as exc:
        raise PipelineError(f"cannot be read: {exc}", path=shown) from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise PipelineError(f"must be a mapping of param names to values, like mlv.yaml's 'params:'; got "
                            f"{type_name(data)}", path=shown, line=1, column=1)
    return data


def beside(shown: str, name: str) -> str:
    """``name`` in the folder of the file shown as ``shown`` (how errors name it)."""
    return f"{shown.rpartition('/')[0]}/{name}" if "/" in shown else name
