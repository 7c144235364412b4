"""The paths rule: where a path read from a committed or fetched file may point.

A pointer file, ``mlv.lock``, ``mlv.yaml`` or a manifest can come from a teammate's
commit or a remote nobody reviewed, and mlv writes and deletes at the paths they name.
So every such path goes through ``check`` before anything is touched, and ``--force``
never overrides it. A path is acceptable when it is:

- relative and normalised: no leading ``/``, no empty, ``.`` or ``..`` part, no NUL;
- outside ``.git/`` and ``.mlv/``, at any depth (a nested ``.git`` is another repo's
  hooks) and in any letter case (macOS and Windows filesystems fold case);
- for paths mlv writes (outputs, pointer targets), not one of mlv's own files:
  ``mlv.yaml``, ``mlv.lock``, ``params.yaml``, ``dask-cluster.yaml`` at the root, or a
  ``*.mlv`` pointer anywhere.

What only the filesystem can say — that no symlink on the way leads out of the repo or
into ``.git/`` — is ``mlv.storage.workspace.walk.check_inside``, which checkout and run call
before they write or delete.
"""

from __future__ import annotations

import re

from mlv.storage.errors import ConfigError

MANAGED = frozenset({".git", ".mlv"})
OWN_FILES = frozenset({"mlv.yaml", "mlv.lock", "params.yaml", "dask-cluster.yaml"})
POINTER_SUFFIX = ".mlv"
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # run ids name files (.mlv/runs/<id>.json): never a path


class PathError(ConfigError):
    """A path from a file breaks the paths rule (exit 2); nothing was touched."""


def problem(rel: object, *, written: bool = True) -> str | None:
    """Why ``rel`` breaks the rule, or None when it is fine.

    >>> problem("data/raw"), problem("../x"), problem(".git/hooks"), problem("src/.GIT/config")
    (None, "leads outside the repo ('..')", "is inside '.git/', which git manages", "is inside '.GIT/', which git manages")
    >>> problem("mlv.lock"), problem("mlv.lock", written=False), problem("a/b.mlv")
    ("is mlv's own file 'mlv.lock'", None, "is a pointer file ('*.mlv')")
    """
    if not isinstance(rel, str) or not rel:
        return "is not a path (empty, or not text)"
    if "\0" in rel:
        return "contains a NUL byte"
    if rel.startswith("/") or (len(rel) > 2 and rel[0].isalpha() and rel[1] == ":" and rel[2] in "/\\"):
        return "is absolute; paths are written relative to the repo root"
    parts = rel.split("/")
    for part in parts:
        if part in ("", "."):
            return "is not normalised (an empty or '.' part)"
        if part == "..":
            return "leads outside the repo ('..')"
        if part.lower() in MANAGED:
            owner = "git" if part.lower() == ".git" else "mlv"
            return f"is inside '{part}/', which {owner} manages"
    if written:
        if len(parts) == 1 and parts[0] in OWN_FILES:
            return f"is mlv's own file '{parts[0]}'"
        if parts[-1].endswith(POINTER_SUFFIX):
            return "is a pointer file ('*.mlv')"
    return None


def check(rel: object, *, source: str, what: str = "path", line: int | None = None, written: bool = True) -> str:
    """``rel`` if it keeps the rule; else ``PathError`` naming ``source`` (and ``line``)."""
    why = problem(rel, written=written)
    if why is None:
        return rel  # type: ignore[return-value]
    where = f"{source}:{line}" if line else source
    raise PathError(f"{where}: {what} {rel!r} {why}; mlv refuses it and changed nothing. "
                    "If this file came from a commit or a remote, restore it from a version you trust",
                    path=source, line=line)


def line_of(text: str, needle: str) -> int | None:
    """The 1-based line of the first line of ``text`` that mentions ``needle`` (for error messages).

    >>> line_of("a: 1\\nb: 2\\n", "b")
    2
    """
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    return None
