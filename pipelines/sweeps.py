"""``foreach`` and ``matrix``: the stages one declaration fans out into, and the names they get (``stage@key``).

Names follow DVC: a foreach over a mapping is named by its keys, over a list by scalar values
(else their index); a matrix by its values joined with ``-`` (else ``<axis><index>``). A
sweep may generate at most ``MAX_STAGES`` stages: a larger one is refused before it is expanded.
"""

from __future__ import annotations

import itertools
import math
import re

from mlv.pipelines.interpolate import type_name
from mlv.pipelines.nodes import NodeReader, node_at
from yaml.nodes import Node, ScalarNode

SUFFIX = re.compile(r"^[A-Za-z0-9_.+-]+$")  # what foreach/matrix values may add after '@'
MAX_STAGES = 10_000  # stages one foreach or matrix may generate
WHOLE_PARAM = re.compile(r"^\$\{\s*params\.([\w.-]+)\s*\}$")
Runs = list[tuple[str, object, set[str]]]


def foreach(reader: NodeReader, node: Node, value: object, stage: str) -> Runs:
    """The (suffix, item, params it stands for) of each stage a ``foreach`` value generates."""
    if isinstance(value, (dict, list)) and len(value) > MAX_STAGES:
        raise reader.error(node, f"'foreach' would make {len(value):,} stages; at most {MAX_STAGES:,} are "
                           "allowed in one pipeline", stage)
    if isinstance(value, dict) and value:
        source = WHOLE_PARAM.match(node.value) if isinstance(node, ScalarNode) else None
        runs = []
        for k, v in value.items():
            if not SUFFIX.match(str(k)):
                raise reader.error(node, f"foreach key {str(k)!r} names the stage '{stage}@{k}', so it may use "
                                   "only letters, digits and '_', '.', '+', '-'; rename the key", stage)
            runs.append((str(k), v, {f"{source.group(1)}.{k}"} if source else set()))
        return runs
    if isinstance(value, list) and value:
        return [(suffix(v, str(i)), v, set()) for i, v in enumerate(value)]
    raise reader.error(node, f"'foreach' needs a non-empty list or mapping, got {type_name(value)}", stage)


def matrix(reader: NodeReader, node: Node, value: object, stage: str) -> Runs:
    """The (suffix, {axis: value}, params) of each combination of a ``matrix``."""
    if not isinstance(value, dict) or not value:
        raise reader.error(node, f"'matrix' needs a mapping of names to lists, e.g. matrix: {{lr: [0.1, 0.01]}}; "
                           f"got {type_name(value)}", stage)
    for axis, values in value.items():
        if not isinstance(values, list) or not values:
            raise reader.error(node_at(node, axis), f"matrix axis '{axis}' must be a non-empty list, "
                               f"got {type_name(values)}", stage)
    if math.prod(len(values) for values in value.values()) > MAX_STAGES:
        raise reader.error(node, f"'matrix' would make {math.prod(len(v) for v in value.values()):,} stages; at "
                           f"most {MAX_STAGES:,} are allowed in one pipeline", stage)
    axes = [[(axis, i, v) for i, v in enumerate(values)] for axis, values in value.items()]
    return [("-".join(suffix(v, f"{axis}{i}") for axis, i, v in combo), {axis: v for axis, _, v in combo}, set())
            for combo in itertools.product(*axes)]


def suffix(value: object, fallback: str) -> str:
    """The name suffix for a foreach/matrix value: the value itself when scalar, else ``fallback``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, (str, int, float)) and SUFFIX.match(str(value)) else fallback
