"""What a run consumes is saved first: every byte a run record names is in the store or in git.

Before any stage runs, each dep of the stages that will run is looked at, unless another
stage of the pipeline produces it (that stage stores it):

- data ``mlv add`` tracks (the dep is a pointer's target or lies inside one) whose
  workspace bytes differ from the pointer is added again, as ``dvc repro`` does: a new
  version, and a note naming the pointer to commit;
- anything else is fine when git has committed every file of it unchanged; otherwise
  (untracked data, a source file edited since the last commit) its bytes are stored, so
  the record's digest names bytes that exist somewhere.

Without this, a stage could run on bytes that are in no store, no pointer and no commit,
and ``mlv trace --verify`` would vouch for a version nobody can get back.

With ``workspace: remote`` (``everything``) deps committed to git are stored too: workers
have no checkout, so every dep reaches them as an object through the remote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mlv.engine.dag import Graph, StageSpec
from mlv.storage.workspace import gitfiles, pointers, snapshot, tracking
from mlv.storage.workspace import Workspace

Note = Callable[[str], None]


def save(ws: Workspace, graph: Graph, specs: Iterable[StageSpec], note: Note, *, everything: bool = False) -> None:
    """Store (or re-add) the deps of ``specs`` that exist nowhere but in the workspace (``everything``:
    the ones git has committed as well)."""
    deps = sorted({d for spec in specs for d in spec.deps if graph.producer_of(d) is None and (ws.root / d).exists()})
    readd, plain = [], []
    for dep in deps:
        tracked = _tracked_target(ws, dep)
        if tracked is not None:
            if tracked not in readd and tracking.status(ws, [str(ws.root / tracked)])[0].state == "modified":
                readd.append(tracked)
        else:
            plain.append(dep)
    for target in readd:
        (added,) = tracking.add(ws, [str(ws.root / target)])
        note(f"'{target}' changed since it was added; saved as a new version before the run: "
             f"commit {ws.rel(added.pointer.file)}")
    for dep, scan in [(dep, snapshot.scan(ws, ws.root / dep)) for dep in (plain if everything else _not_in_git(ws, plain))]:
        snapshot.store(ws, scan)


def _tracked_target(ws: Workspace, dep: str) -> str | None:
    """The tracked path (a pointer's target) that ``dep`` is or lies inside, if any."""
    parts = dep.split("/")
    for n in range(len(parts), 0, -1):
        target = "/".join(parts[:n])
        if (ws.root / (target + pointers.SUFFIX)).is_file():
            return target
    return None


def _not_in_git(ws: Workspace, deps: list[str]) -> list[str]:
    """Those of ``deps`` with a file git has not committed as it is now."""
    if not deps or not ws.in_git:
        return deps
    files = {dep: [f"{dep}/{f.rel}" if f.rel else dep for f in snapshot.scan(ws, ws.root / dep).files] for dep in deps}
    committed = gitfiles.committed(ws.root, deps)  # a folder is one pathspec, however many files it holds
    return [dep for dep in deps if not all(f in committed for f in files[dep])]
