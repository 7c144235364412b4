"""What a stage's outputs may overwrite.

``mlv run`` clears a stage's declared outputs before running it, and overwrites them when
it restores a cached result; nothing it does may destroy bytes that exist nowhere else.

- At plan time, an output that is (or lies inside) data ``mlv add`` tracks, or that holds
  files git tracks, is a ``GraphError`` (exit 2): the pipeline declares it wrong, and a run
  would delete the data or fight with the pointer on every checkout. Metrics and plots files are
  meant to be committed to git, so the git rule spares them.
- Before anything runs, every file at the outputs of the stages that will run or be
  restored must be saved — in the store or committed to git — or the run stops with
  ``UnsavedChangesError`` (exit 2) naming the files. ``--force`` discards them; it never
  lets a removal follow a symlink out of the repo (the paths rule).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mlv.engine.dag import StageSpec
from mlv.engine.errors import GraphError
from mlv.storage.workspace import gitfiles, pointers
from mlv.storage.errors import MlvError, UnsavedChangesError
from mlv.storage.workspace.walk import check_inside
from mlv.storage.workspace import Workspace

SOURCE = "mlv.yaml"


def check_overlaps(ws: Workspace, specs: Iterable[StageSpec]) -> None:
    """Refuse outputs that overlap tracked data or files git tracks (``GraphError``)."""
    specs = list(specs)
    for spec in specs:
        for out in (*spec.outs, *spec.metrics, *spec.plots):
            parts = out.split("/")
            for n in range(len(parts), 0, -1):
                tracked = "/".join(parts[:n])
                if (ws.root / (tracked + pointers.SUFFIX)).is_file():
                    how = "is" if n == len(parts) else "lies inside"
                    raise _error(spec, out, f"{how} '{tracked}', which `mlv add` tracks ('{tracked}{pointers.SUFFIX}'); "
                                 "a path is either added data or a stage's output. Write the output elsewhere, or "
                                 f"stop tracking the data (remove '{tracked}{pointers.SUFFIX}')")
    if not ws.in_git:
        return
    written = {out: spec for spec in specs for out in spec.outs}  # metrics and plots are meant to be committed
    for path in gitfiles.tracked(ws.root, sorted(written)):
        out = next(o for o in sorted(written, key=len, reverse=True) if path == o or path.startswith(o + "/"))
        held = "is" if path == out else f"holds '{path}', which is"
        raise _error(written[out], out, f"{held} tracked by git; `mlv run` deletes and rewrites its outputs. "
                     f"Write the output elsewhere, or untrack it (`git rm -r --cached {out}`) and commit")


def check_unsaved(ws: Workspace, specs: Iterable[StageSpec], *, force: bool) -> None:
    """Before any stage runs: the outputs the run will clear or overwrite hold nothing unsaved."""
    specs = list(specs)
    outs = [out for spec in specs for out in (*spec.outs, *spec.metrics, *spec.plots)]
    for out in outs:
        check_inside((ws.root / out).parent, repo_root=ws.root)  # never remove through a symlinked folder
    for spec in specs:
        for out in spec.outs:
            if (found := _pointer_inside(ws, out)) is not None:
                raise _error(spec, out, f"holds '{found}', a pointer to data `mlv add` tracks; a run would delete "
                             "that data. Write the output elsewhere, or move the tracked data out of it")
    if force or not outs:
        return
    from mlv.storage.workspace.checkout import unsaved  # loads the store: only when something will run

    lost = unsaved(ws, [out for out in outs if not (ws.root / out).is_symlink()])  # a link holds no bytes
    if lost:
        shown = "\n  ".join(lost[:10]) + (f"\n  … and {len(lost) - 10} more" if len(lost) > 10 else "")
        raise UnsavedChangesError(
            f"mlv run would discard files at stage outputs that are neither in the store nor committed to "
            f"git:\n  {shown}\nNothing ran. Move them away or commit them, or discard them: `mlv checkout --force "
            "PATH` brings back the version mlv.lock records, `mlv run --force` runs the stages anew."
        )


def _pointer_inside(ws: Workspace, out: str) -> str | None:
    """A pointer file inside the output directory ``out``, if there is one (data files that merely
    end in ``.mlv`` are not pointers)."""
    top = ws.root / out
    if top.is_symlink() or not top.is_dir():
        return None
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d.lower() not in (".git", ".mlv")]
        for name in filenames:
            if name.endswith(pointers.SUFFIX) and name != pointers.SUFFIX:
                file = Path(dirpath, name)
                try:
                    pointers.load(file, root=ws.root)
                except MlvError:
                    continue
                return ws.rel(file)
    return None


def _error(spec: StageSpec, out: str, text: str) -> GraphError:
    where = f"{SOURCE}:{spec.line}" if spec.line else SOURCE
    return GraphError(f"{where}: output '{out}' of stage '{spec.name}' {text}", stages=(spec.name,), path=SOURCE,
                      line=spec.line or None, artifact=out)
