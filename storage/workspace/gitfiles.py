"""Git plumbing, in one place: what git knows of workspace files, and files as they were in commits.

mlv asks git two questions before it overwrites or deletes workspace files: is a path
tracked (a stage output over tracked files is a pipeline error), and are these bytes
committed (then removing them loses nothing: ``git checkout`` brings them back). Both are
answered with one ``git`` call for many paths, and only inside a git work tree. ``blobs``
reads chosen files of every commit (``gc --all-commits``, the provenance index's history)
in one ``git cat-file --batch``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from mlv.storage.errors import UsageError


def output(root: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """What ``git ARGS`` prints in ``root``, or ``UsageError`` with git's message."""
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, input=stdin)
    except FileNotFoundError:
        raise UsageError("git is not installed, and this needs it") from None
    if proc.returncode != 0:
        raise UsageError(f"git {' '.join(args[:2])} failed in '{root}': "
                         f"{proc.stderr.decode(errors='replace').strip()}; is this a git repo?")
    return proc.stdout


def run(root: Path, *args: str) -> str:
    """``output`` as text (names that are not UTF-8 survive as surrogate escapes)."""
    return output(root, *args).decode("utf-8", errors="surrogateescape")


def _try(root: Path, *args: str) -> str | None:
    """``run``, but None where git is missing or says no (not a repo, an unknown revision)."""
    try:
        return run(root, *args)
    except UsageError:
        return None


def head(root: Path) -> str | None:
    """The commit checked out, or None (not a git repo, or no commit yet)."""
    found = _try(root, "rev-parse", "HEAD")
    return found.strip() if found else None


def commit_of(root: Path, rev: str) -> str | None:
    """The commit ``rev`` (a branch, tag, sha…) names, or None."""
    found = _try(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    return found.strip() if found else None


def dirty(root: Path, *, excluding: list[str]) -> bool | None:
    """Whether tracked files other than ``excluding`` differ from ``HEAD`` (None outside git)."""
    found = _try(root, "status", "--porcelain", "--untracked-files=no", "--", ".",
                 *(f":(exclude,literal){p}" for p in excluding))
    return None if found is None else bool(found.strip())


def history(root: Path, files: list[str]) -> list[tuple[str, str, str]]:
    """(commit, ISO date, subject) of the commits that touched ``files``, oldest first."""
    raw = _try(root, "log", "--format=%H%x1f%cI%x1f%s", "--", *files) or ""
    return [tuple(line.split("\x1f", 2)) for line in raw.splitlines() if line.count("\x1f") == 2][::-1]


def _pathspecs(paths: list[str]) -> list[str]:
    return [f":(literal){p}" for p in paths]  # never a glob or magic, whatever the name


def tracked(root: Path, paths: list[str]) -> list[str]:
    """The files git tracks at or under ``paths`` (repo-relative), in git's order."""
    if not paths:
        return []
    return [p for p in run(root, "ls-files", "-z", "--", *_pathspecs(paths)).split("\0") if p]


def committed(root: Path, paths: list[str]) -> set[str]:
    """The files at or under ``paths`` (repo-relative) that git tracks and that match the index and ``HEAD``:
    their bytes are in git, so removing them from the workspace loses nothing."""
    if not paths:
        return set()
    known = set(tracked(root, paths))
    if not known:
        return set()
    changed = run(root, "status", "--porcelain=v1", "-z", "--untracked-files=no", "--", *_pathspecs(paths))
    dirty = {entry[3:] for entry in changed.split("\0") if len(entry) > 3}
    return known - dirty


def blobs(root: Path, wanted: Callable[[str], bool]) -> list[tuple[str, bytes]]:
    """``("<commit>:<path>", content)`` of every file of every commit whose path is ``wanted``; each
    distinct content once."""
    found: dict[str, str] = {}
    for commit in run(root, "rev-list", "--all").split():
        for line in run(root, "ls-tree", "-r", commit).splitlines():
            meta, _, path = line.partition("\t")
            if wanted(path):
                found.setdefault(meta.split()[2], f"{commit[:8]}:{path}")
    if not found:
        return []
    batch = output(root, "cat-file", "--batch", stdin="\n".join(found).encode() + b"\n")
    out, pos = [], 0
    for where in found.values():
        header_end = batch.index(b"\n", pos)
        size = int(batch[pos:header_end].split()[2])
        out.append((where, batch[header_end + 1 : header_end + 1 + size]))
        pos = header_end + 1 + size + 1
    return out
