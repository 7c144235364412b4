"""``${…}`` interpolation for mlv.yaml: lookup, rendering and shell-safe quoting.

This module owns the template language and nothing else (no YAML, no file
positions): ``schema.py`` turns an :class:`InterpolationError` into a
``PipelineError`` that names the file, line and column.

Invariants:

- A string that is exactly one ``${name}`` yields the looked-up value itself
  (a mapping stays a mapping); anywhere else a value is rendered as text, and only
  scalars can be rendered.
- In a command, every interpolated value is quoted for the shell context it lands
  in (unquoted, ``'…'``, ``"…"`` or ``$(…)``), so a param can never inject a command.
  Contexts that cannot be quoted safely for every POSIX shell (backticks,
  here-documents, bash's ``$'…'``) are refused.
- ``\\${`` writes a literal ``${`` and is never looked up.
- Interpolated text is not interpolated again.
- Every ``params.…`` name looked up is recorded in :attr:`Scope.used`, so a stage's
  fingerprint covers exactly the params it uses.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

_EXPRESSION = re.compile(r"\\?\$\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*$")
_UNSET = object()
# Shell contexts whose quoting rules differ between shells, or that have none.
_UNQUOTABLE = {"backtick": "`…` backticks", "heredoc": "a here-document", "ansi": "$'…' (bash-only quoting)"}


class InterpolationError(ValueError):
    """A ``${…}`` could not be resolved; ``offset`` is its index in the string."""

    def __init__(self, message: str, *, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(slots=True)
class Scope:
    """The names a stage may interpolate, and a record of the params it used."""

    params: dict
    item: object = _UNSET
    key: object = _UNSET
    used: set[str] = field(default_factory=set)

    def used_params(self) -> dict[str, object]:
        """Dotted name → value of every leaf of the params looked up so far, sorted by name."""
        flat: dict[str, object] = {}

        def add(name: str, value: object) -> None:
            if isinstance(value, dict) and value:
                for key, child in value.items():
                    add(f"{name}.{key}" if name else key, child)
            else:
                flat[name] = value

        for name in sorted(self.used):
            add(name, lookup(f"params.{name}", Scope(self.params)) if name else self.params)
        return dict(sorted(flat.items()))

    def names(self) -> list[str]:
        """Top-level names defined here, e.g. ``['params', 'item', 'key']``."""
        return ["params"] + [n for n, v in (("item", self.item), ("key", self.key)) if v is not _UNSET]


def render(value: object) -> str:
    """Render a scalar as text, the way YAML would write it.

    >>> render(True), render(0.2), render("a b")
    ('true', '0.2', 'a b')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TypeError(type_name(value))


def lookup(expression: str, scope: Scope) -> object:
    """Resolve a dotted name such as ``params.model.max_depth`` or ``item.lr``."""
    if not _NAME.match(expression):
        raise InterpolationError(
            f"'${{{expression}}}' is not a valid name; write a dotted name like '${{params.model.max_depth}}'"
        )
    root, *parts = expression.split(".")
    roots = {"params": scope.params, "item": scope.item, "key": scope.key}
    value = roots.get(root, _UNSET)
    if value is _UNSET:
        raise InterpolationError(_unknown_root(root, scope))
    for depth, part in enumerate(parts):
        value = _step(value, part, ".".join([root, *parts[:depth]]))
    if root == "params":
        scope.used.add(".".join(parts))
    return value


def interpolate(text: str, scope: Scope) -> object:
    """Interpolate a plain string; a lone ``${name}`` returns the value itself."""
    match = _EXPRESSION.fullmatch(text)
    if match and not text.startswith("\\"):
        return _lookup_at(match, scope)

    def replace(match: re.Match) -> str:
        if match.group(0).startswith("\\"):
            return match.group(0)[1:]
        return _render_at(match, _lookup_at(match, scope))

    _check_unterminated(text)
    return _EXPRESSION.sub(replace, text)


def interpolate_command(text: str, scope: Scope) -> str:
    """Interpolate a shell command, quoting each value for where it lands."""
    _check_unterminated(text)
    matches = [m for m in _EXPRESSION.finditer(text) if not m.group(0).startswith("\\")]
    contexts = _shell_contexts(text, [(m.start(), m.end()) for m in matches])
    quoted = {}
    for match, context in zip(matches, contexts):
        if context in _UNQUOTABLE:
            where = _UNQUOTABLE[context]
            raise InterpolationError(
                f"'{match.group(0)}' inside {where} cannot be quoted safely; "
                "use $(…) or pass the value as a separate argument",
                offset=match.start(),
            )
        value = _render_at(match, _lookup_at(match, scope))
        try:
            quoted[match.start()] = _quote(value, context)
        except ValueError as exc:
            raise InterpolationError(f"'{match.group(0)}' in a comment: {exc}", offset=match.start()) from None

    def replace(match: re.Match) -> str:
        if match.group(0).startswith("\\"):
            return match.group(0)[1:]
        return quoted[match.start()]

    return _EXPRESSION.sub(replace, text)


def _lookup_at(match: re.Match, scope: Scope) -> object:
    try:
        return lookup(match.group(1).strip(), scope)
    except InterpolationError as exc:
        raise InterpolationError(str(exc), offset=match.start()) from None


def _render_at(match: re.Match, value: object) -> str:
    try:
        return render(value)
    except TypeError as exc:
        hint = ""
        if isinstance(value, dict) and value:
            first = next(iter(value))
            hint = f" such as '${{{match.group(1).strip()}.{first}}}'"
        raise InterpolationError(
            f"'{match.group(0)}' is {exc}, which cannot be written into text; "
            f"interpolate a single value{hint}, or make '{match.group(0)}' the whole value",
            offset=match.start(),
        ) from None


def _check_unterminated(text: str) -> None:
    start = text.find("${")
    while start != -1:
        if not (start > 0 and text[start - 1] == "\\") and not _EXPRESSION.match(text, start):
            raise InterpolationError(
                "unterminated or nested '${'; write '${name}', or '\\${' for a literal '${'",
                offset=start,
            )
        start = text.find("${", start + 2)


def _step(value: object, part: str, parent: str) -> object:
    if isinstance(value, dict):
        if part in value:
            return value[part]
        keys = [str(k) for k in value]
        near = nearest(part, keys)
        hint = f" Did you mean '{parent}.{near}'?" if near else ""
        listing = ", ".join(sorted(keys)[:12]) or "(none)"
        raise InterpolationError(f"'{parent}' has no key '{part}'.{hint} Keys of '{parent}': {listing}")
    if isinstance(value, list):
        if part.isdigit() and int(part) < len(value):
            return value[int(part)]
        raise InterpolationError(
            f"'{parent}' is a list of {len(value)} items; index it with 0…{len(value) - 1}, not '{part}'"
        )
    raise InterpolationError(f"'{parent}' is {type_name(value)}, so it has no key '{part}'")


def _unknown_root(root: str, scope: Scope) -> str:
    if root in ("item", "key"):
        return f"'${{{root}}}' is only defined in a stage with 'foreach:' or 'matrix:'"
    message = f"unknown name '{root}'; names defined here: {', '.join(scope.names())}."
    if root in scope.params:
        message += f" Did you mean '${{params.{root}}}'?"
    else:
        message += f" For a shell variable write '\\${{{root}}}' or '${root}'." if root.isupper() else ""
    return message


def nearest(name: str, choices: Iterable[str]) -> str | None:
    """The choice a mistyped ``name`` most likely meant, or ``None``; transpositions count as one edit.

    >>> nearest("dpes", ["desc", "deps"]), nearest("max_deph", ["max_depth", "n"]), nearest("zzz", ["deps"])
    ('deps', 'max_depth', None)
    """
    choices = list(choices)
    scored = sorted((edit_distance(name, c), -difflib.SequenceMatcher(None, name, c).ratio(), c) for c in choices)
    if scored and scored[0][0] <= max(1, len(name) // 3):
        return scored[0][2]
    close = difflib.get_close_matches(name, choices, n=1)
    return close[0] if close else None


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions, adjacent swaps.

    >>> edit_distance("dpes", "deps"), edit_distance("out", "outs"), edit_distance("data", "desc")
    (1, 1, 3)
    """
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def type_name(value: object) -> str:
    """How a value's type reads in a message.

    >>> type_name(None), type_name([1]), type_name("x"), type_name(3)
    ('null', 'a list', 'text', 'an integer')
    """
    if isinstance(value, bool):
        return "true/false"
    names = {type(None): "null", dict: "a mapping", list: "a list", str: "text", int: "an integer", float: "a number"}
    return names.get(type(value), f"a {type(value).__name__}")


def _quote(value: str, context: str) -> str:
    if context == "comment" and ("\n" in value or "\r" in value):
        raise ValueError("a line break would end the comment")
    if context == "single":
        return value.replace("'", "'\"'\"'")
    if context == "double":
        return re.sub(r'([\\"$`])', r"\\\1", value)
    return shlex.quote(value)


def _shell_contexts(text: str, spans: list[tuple[int, int]]) -> list[str]:
    """Name the quoting context at each span: code, single, double, ansi, backtick, comment, heredoc.

    A small POSIX-shell lexer: enough to know which quotes surround a position,
    not a parser. ``$(…)`` opens a fresh code context even inside double quotes.

    >>> _shell_contexts("a ${x} '${x}' \\"$(b ${x})\\"", [(2, 6), (8, 12), (18, 22)])
    ['code', 'single', 'code']
    """
    starts = dict(spans)
    stack: list[list] = [["code", 0]]
    heredoc = False
    found: list[str] = []
    i = 0
    while i < len(text):
        if i in starts:  # after a here-document starts, its body is not shell syntax: refuse
            found.append("heredoc" if heredoc else stack[-1][0])
            i = starts[i]
            continue
        state, char, pair = stack[-1][0], text[i], text[i : i + 2]
        if state == "single" or state == "comment":
            if char == ("'" if state == "single" else "\n"):
                stack.pop()
        elif char == "\\":
            i += 1
        elif char == {"double": '"', "backtick": "`", "ansi": "'"}.get(state):
            stack.pop()
        elif state in ("code", "double") and pair == "$(":
            stack.append(["code", 0])
            i += 1
        elif state == "double" and char == "`":
            stack.append(["backtick", 0])
        elif state == "code" and pair == "$'":
            stack.append(["ansi", 0])
            i += 1
        elif state == "code":
            heredoc = heredoc or (pair == "<<" and text[i + 2 : i + 3] != "<")
            i = _code_char(text, i, stack)
        i += 1
    return found


def _code_char(text: str, i: int, stack: list[list]) -> int:
    """Advance over one character in unquoted shell code; returns the last index consumed."""
    char = text[i]
    if char == "'":
        stack.append(["single", 0])
    elif char == '"':
        stack.append(["double", 0])
    elif char == "`":
        stack.append(["backtick", 0])
    elif char == "(" and len(stack) > 1:
        stack[-1][1] += 1
    elif char == ")" and len(stack) > 1:
        if stack[-1][1] == 0:
            stack.pop()
        else:
            stack[-1][1] -= 1
    elif char == "#" and (i == 0 or text[i - 1] in " \t\n;|&("):
        stack.append(["comment", 0])
    elif text.startswith("<<", i):
        return i + 1
    return i
