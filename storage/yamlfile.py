"""Reading YAML that came from a repo or a remote: safe, bounded, and never a traceback.

``mlv.yaml``, ``mlv.lock``, pointer files, ``.mlv/config.yaml`` and ``dask-cluster.yaml``
are written by people and arrive through ``git pull``. This module is the one way mlv
reads them:

- bytes that are not UTF-8 text (binary junk, another encoding) are a ``ConfigError``
  naming the file, not a ``UnicodeDecodeError``;
- a file larger than its limit is refused before it is parsed (a 50 MB ``mlv.yaml`` is
  a mistake, and parsing it would take gigabytes);
- only the safe loader's plain data (no ``!!python`` tags);
- aliases are bounded: PyYAML shares an aliased node instead of copying it, but every
  consumer that walks the data expands it, so a 1 KB "billion laughs" would grow without
  end. A document whose expansion exceeds ``max(NODES, EXPANSION × its distinct nodes)``
  is refused ("too many aliases"), and so is an alias that contains itself;
- nesting deeper than Python's recursion allows is a ``ConfigError`` too.

Syntax errors stay ``yaml.YAMLError``: each caller knows how to tell the user to fix its file.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from mlv.storage.errors import ConfigError

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, when present

NODES = 200_000  # expanded nodes any document may have, whatever its size
EXPANSION = 10  # ... or this many times its distinct nodes: aliases may repeat a little, not explode
POINTER_BYTES = 64 * 1024
CONFIG_BYTES = 1024 * 1024
PIPELINE_BYTES = 8 * 1024 * 1024
LOCK_BYTES = 64 * 1024 * 1024


class YamlLimitError(ConfigError):
    """A YAML file is too big, not text, too deeply nested, or expands too much (exit 2)."""


def read_text(path: Path, *, source: str, limit: int) -> str:
    """The text of ``path``, refused when over ``limit`` bytes or not UTF-8 (``FileNotFoundError`` passes)."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise YamlLimitError(f"{source}: larger than {limit // 1024} KiB, which is more than such a file ever "
                             "needs; check that it is the right file (restore it from git if it is damaged)",
                             path=source)
    return decode(data, source=source)


def decode(data: bytes | str, *, source: str) -> str:
    """UTF-8 text of ``data``; a ``YamlLimitError`` naming ``source`` if it is not text."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlLimitError(f"{source}: not UTF-8 text (byte {exc.start} is {data[exc.start:exc.start + 1]!r}); "
                             "the file is damaged or binary. Restore it from git (`git checkout -- FILE`)",
                             path=source) from None


def load(data: bytes | str, *, source: str) -> object:
    """Plain data from one YAML document (None for an empty one), within the limits above."""
    text = decode(data, source=source)
    loader = None
    try:
        loader = _SafeLoader(text)  # may refuse the characters already (a YAMLError)
        node = loader.get_single_node()
        if node is None:
            return None
        check_node(node, source=source, text=text)
        return loader.construct_document(node)
    except RecursionError:
        raise YamlLimitError(f"{source}: nested too deeply to read; flatten it", path=source) from None
    finally:
        if loader is not None:
            loader.dispose()


def check_node(node: Node, *, source: str, text: str | None = None) -> None:
    """Refuse a composed document whose aliases would expand too much, or refer to themselves.

    Sizes are counted bottom-up with every distinct node visited once, so the check itself
    costs time linear in the file, whatever the expansion. A document whose ``text`` holds
    no ``*`` has no alias, so nothing to count (most files: mlv writes none).
    """
    if text is not None and "*" not in text:
        return
    size: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Node, bool]] = [(node, False)]
    while stack:
        current, expanded = stack.pop()
        key = id(current)
        children = _children(current)
        if expanded:
            active.discard(key)
            size[key] = min(1 + sum(size[id(c)] for c in children), 1 << 62)
            continue
        if key in size:
            continue
        if key in active:
            raise YamlLimitError(f"{source}: an alias refers to itself (recursive anchor); write the data out "
                                 "instead", path=source)
        active.add(key)
        stack.append((current, True))
        for child in children:
            if id(child) in active:
                raise YamlLimitError(f"{source}: an alias refers to itself (recursive anchor); write the data out "
                                     "instead", path=source)
            if id(child) not in size:
                stack.append((child, False))
    total = size[id(node)]
    if total > max(NODES, EXPANSION * len(size)):
        raise YamlLimitError(f"{source}: too many aliases: its anchors expand to over {total:,} values from "
                             f"{len(size):,} written ones; write the data out instead of nesting aliases",
                             path=source)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []
