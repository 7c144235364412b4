"""``mlv run --set KEY=VALUE``: write a param's new value where it is defined, changing nothing else.

A param is defined in the ``params:`` section of ``mlv.yaml`` or in ``params.yaml`` next to
it (DVC's convention); ``FILE:KEY`` (``--set config/train.yaml:lr=0.2``, as ``dvc exp run -S``
writes it) names a key of another params file (``paramfiles``). The edit replaces the characters of that one value and leaves every
other byte of the file as it was: comments, key order, indentation, quoting, long lines.
(A YAML round trip — ruamel.yaml's too — re-emits the whole document: it re-indents
sequences and folds lines longer than its width, so it is used for nothing here.)

Invariants:

- Nothing is written unless every ``--set`` names a param that is defined and holds a
  single value (not a mapping or list), in exactly one file: otherwise a ``UsageError``
  (exit 2) names the key, with the nearest defined name.
- VALUE is read as YAML (``8`` an integer, ``0.1`` a number, ``true``, text); the file is
  re-read after the edit and must hold exactly the old data with the new value in place,
  else the value is written quoted (or the edit refused) — never a silently different file.
- :func:`apply` writes each file atomically, then calls ``check``; if that raises (the
  pipeline no longer loads with the new value), every file gets its old bytes back.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlv.pipelines import paramfiles
from mlv.pipelines.interpolate import nearest
from mlv.pipelines.paramfiles import PARAMS_FILE
from mlv.storage import atomic, paths, yamlfile
from mlv.storage.errors import MlvError, UsageError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

PIPELINE_FILE = "mlv.yaml"
_KEY = re.compile(r"^([^:=\s]+:)?[A-Za-z_][\w-]*(\.[\w-]+)*$")


@dataclass(frozen=True, slots=True)
class Assignment:
    """One ``--set KEY=VALUE``: the dotted param name, the value read as YAML, and VALUE as typed."""

    key: str
    value: object
    text: str


@dataclass(frozen=True, slots=True)
class Edit:
    """A param written: where, and its value before and after."""

    file: str
    line: int
    key: str
    old: object
    new: object

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "key": self.key, "old": self.old, "new": self.new}


def parse(option: str) -> Assignment:
    """``"model.max_depth=8"`` → ``Assignment("model.max_depth", 8, "8")``; ``UsageError`` if malformed.

    >>> parse("lr=0.1").value, parse("on=true").value, parse("name=rf").value, parse("a.b=").value
    (0.1, True, 'rf', None)
    """
    key, eq, text = option.partition("=")
    key = key.strip()
    if not eq or not _KEY.match(key):
        raise UsageError(f"--set {option!r}: write KEY=VALUE with KEY a param's dotted name, "
                         "e.g. --set model.max_depth=8")
    try:
        value = yamlfile.load(text, source="--set") if text.strip() else None
    except (yaml.YAMLError, MlvError) as exc:
        why = getattr(exc, "problem", None) or exc
        raise UsageError(f"--set {option!r}: the value is not valid YAML ({why}); quote it: "
                         f"--set '{key}=\"{text}\"'") from None
    return Assignment(key, value, text.strip())


def apply(root: Path, assignments: list[Assignment], *, check: Callable[[], object] | None = None) -> list[Edit]:
    """Write every assignment into the file that defines its param, then ``check()``; undo all if it raises."""
    seen: set[str] = set()
    for a in assignments:
        if a.key in seen:
            raise UsageError(f"--set '{a.key}' is given twice; keep one")
        seen.add(a.key)
    files = {name: _Document.read(root / name, name) for name in (PIPELINE_FILE, PARAMS_FILE)}
    files = {name: doc for name, doc in files.items() if doc is not None}
    edits = []
    for a in assignments:
        file, colon, key = a.key.rpartition(":")
        if not colon or file == PARAMS_FILE:
            edits.append(_where(files, key).set(Assignment(key, a.value, a.text)))
            continue
        if file not in files:
            files[file] = _other_file(root, file)
        if not files[file].has(key):
            near = nearest(key, files[file].names())
            hint = f" Did you mean '{file}:{near}'?" if near else ""
            raise UsageError(f"--set '{a.key}': params file '{file}' has no key '{key}'.{hint}")
        edits.append(files[file].set(Assignment(key, a.value, a.text)))
    before = {name: doc.original for name, doc in files.items() if doc.text != doc.original}
    written: list[str] = []
    try:
        for name in before:
            atomic.write_text(root / name, files[name].text)
            written.append(name)
        if check is not None:
            check()
    except BaseException:
        for name in written:
            atomic.write_text(root / name, before[name])
        raise
    return edits


def _other_file(root: Path, file: str) -> _Document:
    """A params file a stage may name (``{config/train.yaml: [lr]}``), for ``--set FILE:KEY``."""
    from mlv.pipelines.paramfiles import SUFFIXES

    why = paths.problem(file, written=False)
    if why is None and (file in (PIPELINE_FILE,) or not file.endswith(SUFFIXES)):
        why = "is not a params file (YAML or JSON)"
    if why is not None:
        raise UsageError(f"--set {file}:…: '{file}' {why}; name a params file in the repo, relative to its root")
    doc = _Document.read(root / file, file)
    if doc is None:
        raise UsageError(f"--set {file}:…: params file '{file}' does not exist; fix the path (relative to the "
                         "repo root)")
    return doc


def _where(files: dict[str, _Document], key: str) -> _Document:
    files = {name: doc for name, doc in files.items() if name in (PIPELINE_FILE, PARAMS_FILE)}
    found = [doc for doc in files.values() if doc.has(key)]
    if len(found) > 1:
        raise UsageError(f"param '{key}' is defined in both {PIPELINE_FILE} and {PARAMS_FILE}; a param is defined "
                         "once: remove one")
    if found:
        return found[0]
    names = sorted({n for doc in files.values() for n in doc.names()})
    if key.startswith("params.") and key[7:] in names:
        hint = f" Write '{key[7:]}': names are relative to the params."
    else:
        near = nearest(key, names)
        hint = f" Did you mean '{near}'?" if near else ""
    listing = ", ".join(names[:12]) + (", …" if len(names) > 12 else "") if names else "(none)"
    where = f"{PIPELINE_FILE}'s 'params:'" + (f" or {PARAMS_FILE}" if PARAMS_FILE in files else "")
    raise UsageError(f"param '{key}' is not defined in {where}, so `--set` has nowhere to write it.{hint}\n"
                     f"  Params: {listing}")


class _Document:
    """One params file's text, its composed nodes, and the mapping that holds its params."""

    def __init__(self, name: str, text: str) -> None:
        self.name, self.original, self.text = name, text, text
        self.node = _compose(text, name)
        self.data = yaml.safe_load(text) if self.node is not None else None
        self.params = self._params_node()

    @classmethod
    def read(cls, path: Path, name: str) -> _Document | None:
        try:
            text = yamlfile.read_text(path, source=name, limit=yamlfile.PIPELINE_BYTES)
        except FileNotFoundError:
            return None
        return cls(name, text)

    def _params_node(self) -> Node | None:
        if not isinstance(self.node, MappingNode):
            return None
        if self.name != PIPELINE_FILE:  # params.yaml, or another params file: the whole file holds params
            return self.node
        return next((v for k, v in self.node.value if isinstance(k, ScalarNode) and k.value == "params"), None)

    def _params_data(self, data: object) -> object:
        if not isinstance(data, dict):
            return None
        return data if self.name != PIPELINE_FILE else data.get("params")

    def names(self) -> list[str]:
        """Dotted names of every value under the params, e.g. ``['lr', 'model.max_depth']``."""
        found: list[str] = []

        def walk(value: object, prefix: str) -> None:
            if isinstance(value, dict) and value:
                for k, v in value.items():
                    walk(v, f"{prefix}.{k}" if prefix else str(k))
            elif prefix:
                found.append(prefix)

        walk(self._params_data(self.data), "")
        return found

    def has(self, key: str) -> bool:
        try:
            paramfiles.value_at(self._params_data(self.data), self.name, key)
        except paramfiles.ParamFileError:
            return False
        return True

    def set(self, assignment: Assignment) -> Edit:
        """Replace the value of ``assignment.key`` in ``self.text``; the file is written by :func:`apply`."""
        key, where = assignment.key, self.name
        node, key_node = self.params, None
        for part in key.split("."):
            node, key_node = self._child(node, part, key)
        old = self._get(self._params_data(self.data), key)
        if not isinstance(node, ScalarNode):
            kind = "a mapping" if isinstance(node, MappingNode) else "a list"
            keys = [n for n in self.names() if n.startswith(key + ".")][:6]
            hint = f"; set one of its values: {', '.join(keys)}" if keys else ""
            raise UsageError(f"param '{key}' in {where} is {kind}{hint}")
        start, end = node.start_mark.index, node.end_mark.index
        if key_node is not None and start < key_node.end_mark.index or self.text[start] in "*&":
            raise UsageError(f"param '{key}' in {where}:{node.start_mark.line + 1} is an anchor or alias that other "
                             "values share; edit the file by hand")
        expected = copy.deepcopy(self.data)
        self._put(self._params_data(expected), key, assignment.value)
        for text in _spellings(assignment):
            edited = self.text[:start] + text + self.text[end:]
            try:
                if _same(yaml.safe_load(edited), expected):
                    self.text = edited
                    self.node = _compose(edited, self.name)
                    self.data = expected
                    self.params = self._params_node()
                    return Edit(self.name, node.start_mark.line + 1, key, old, assignment.value)
            except yaml.YAMLError:
                continue
        raise UsageError(f"param '{key}' in {where}:{node.start_mark.line + 1}: the value {assignment.text!r} cannot "
                         "be written there without changing the file's other values; edit the file by hand")

    def _child(self, node: Node | None, part: str, key: str) -> tuple[Node, Node | None]:
        if isinstance(node, MappingNode):
            for k, v in node.value:
                if isinstance(k, ScalarNode) and k.value == part:
                    return v, k
        elif isinstance(node, SequenceNode) and part.isdigit() and int(part) < len(node.value):
            return node.value[int(part)], None
        raise UsageError(f"param '{key}' in {self.name} comes from a YAML merge ('<<') or alias; edit the file by hand")

    @staticmethod
    def _get(value: object, key: str) -> object:
        for part in key.split("."):
            value = value[int(part)] if isinstance(value, list) else value[part]
        return value

    @staticmethod
    def _put(value: object, key: str, new: object) -> None:
        *parents, last = key.split(".")
        for part in parents:
            value = value[int(part)] if isinstance(value, list) else value[part]
        if isinstance(value, list):
            value[int(last)] = new
        else:
            value[last] = new


def _compose(text: str, name: str) -> Node | None:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)  # the pure-Python loader: marks count characters
    except yaml.YAMLError as exc:
        raise UsageError(f"{name} is not valid YAML ({exc}); fix it before `--set`") from None
    if node is not None:
        yamlfile.check_node(node, source=name, text=text)
    return node


def _spellings(assignment: Assignment) -> list[str]:
    """How VALUE may be written, most faithful first: as typed, then quoted (text) or YAML's own form."""
    value = assignment.value
    found = [assignment.text] if "\n" not in assignment.text and "#" not in assignment.text else []
    if isinstance(value, str):
        found.append(json.dumps(value, ensure_ascii=False))  # a JSON string is a YAML double-quoted scalar
    else:
        found.append(yaml.safe_dump(value, default_flow_style=True, width=1 << 20).removesuffix("\n...\n").strip())
    return found


def _same(a: object, b: object) -> bool:
    """Equal with the same types all the way down (``1``, ``1.0`` and ``true`` differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b
