"""mlv's Python API for notebooks, scripts and stage code.

Reading what a repo versions (the repo around the working directory, or ``repo=``):

- ``open(path, rev=None, mode="rb")`` — a file object (use it in ``with``) for a tracked path as
  recorded at git revision ``rev``: data added with ``mlv add`` (or a file inside an added
  directory), or a stage output or metrics file in ``mlv.lock``; a plain file git has is read
  from git. ``rev=None`` is the workspace's version: the file on disk when it is that version,
  else the local cache, else the default remote — streamed, so a fresh ``git clone`` needs no
  ``mlv pull``, and neither the workspace nor the cache is written (``mlv.engine.reads``).
  ``mode="r"`` gives text (``encoding=``, default UTF-8).
- ``read(path, rev=None, mode="rb")`` — the same, whole: ``bytes`` (or ``str`` with ``"r"``).
- ``trace(target, downstream=False) -> dict`` — ``mlv trace --json``'s answer.
- ``params(rev=None) -> dict`` — the params of ``mlv.yaml`` and ``params.yaml`` (nested, as written).
- ``metrics(rev=None) -> dict`` — ``{metrics file: {name: value}}``, as ``mlv metrics show --json``
  (at a revision: the metrics files of that revision's ``mlv.lock``, from the cache or git).
- ``load_package(path_or_digest) -> Package`` — a model package, verified before a byte of it is
  deserialized (``mlv.pipelines.packages``); ``Package.predict(table)``.

Inside a stage that ``mlv run`` runs (``mlv.pipelines.stagelog``):

- ``log_metric(name, value, step=None)`` — into the stage's declared metrics file (latest value; with
  ``step``, a history row in the stage's plots file named after the metric).
- ``log_plot(name, rows)`` — records appended to the stage's declared plots file ``name``.

Every error is an ``MlvError`` (``mlv.storage.errors``) with a message saying what, where and how
to fix it. Light at import: nothing heavy (fsspec, pyarrow, scikit-learn) loads until it is used.
"""

from __future__ import annotations

import io
import os
from typing import IO, Any

from mlv.pipelines.packages import TRUSTED_MODULES, Package, PackageError, load_package
from mlv.storage.errors import MlvError, UsageError

__all__ = ["TRUSTED_MODULES", "MlvError", "Package", "PackageError", "load_package", "log_metric", "log_plot",
           "metrics", "open", "params", "read", "trace"]

_MODES = {"rb": False, "r": True, "rt": True}


def _workspace(repo: str | os.PathLike[str] | None):
    from pathlib import Path

    from mlv.storage.workspace import Workspace

    return Workspace.find(Path(repo) if repo is not None else None)


def open(path: str | os.PathLike[str], rev: str | None = None, mode: str = "rb", *,  # noqa: A001  (dvc.api's name)
         encoding: str | None = None, repo: str | os.PathLike[str] | None = None) -> IO[Any]:
    """A readable file object of ``path`` (relative to the repo root) at git revision ``rev``."""
    if mode not in _MODES:
        raise UsageError(f"mode {mode!r} is not one mlv.api.open reads with; use 'rb' (bytes) or 'r' (text)")
    if encoding is not None and not _MODES[mode]:
        raise UsageError("encoding= is for text mode; pass mode='r' with it")
    from mlv.engine.reads import open_path

    stream = open_path(_workspace(repo), path, rev)
    return io.TextIOWrapper(stream, encoding=encoding or "utf-8") if _MODES[mode] else stream


def read(path: str | os.PathLike[str], rev: str | None = None, mode: str = "rb", *,
         encoding: str | None = None, repo: str | os.PathLike[str] | None = None) -> bytes | str:
    """The whole content of ``path`` at ``rev``: ``bytes``, or ``str`` with ``mode="r"``."""
    with open(path, rev, mode, encoding=encoding, repo=repo) as f:
        return f.read()


def trace(target: str, downstream: bool = False, *, rev: str | None = None,
          repo: str | os.PathLike[str] | None = None) -> dict:
    """The lineage of ``target`` (a path, a digest, a run id or a prediction id), as ``mlv trace --json`` prints it."""
    from mlv.engine import lineage
    from mlv.engine.provenance import ProvenanceIndex

    ws = _workspace(repo)
    if (ws.root / target).exists():  # paths are relative to the repo root here, as in open(), wherever the cwd is
        target = str(ws.root / target)
    index = ProvenanceIndex(ws)
    return lineage.trace(ws, index, lineage.resolve(ws, index, target, rev=rev), downstream=downstream).to_dict()


def params(rev: str | None = None, *, repo: str | os.PathLike[str] | None = None) -> dict:
    """The params of ``mlv.yaml`` and the ``params.yaml`` beside it, in the workspace or at git revision ``rev``."""
    ws = _workspace(repo)
    if rev is None:
        from mlv.pipelines.schema import load_pipeline

        return load_pipeline(ws.root / "mlv.yaml", root=ws.root).params
    from mlv.engine import history, reads

    return reads.params_at(history.Tree(ws, history.resolve_rev(ws, rev)))


def metrics(rev: str | None = None, *, repo: str | os.PathLike[str] | None = None) -> dict:
    """``{metrics file: {name: value}}`` of the pipeline's stages, in the workspace or at git revision ``rev``."""
    ws = _workspace(repo)
    if rev is None:
        from mlv.engine.experiments import workspace_metrics
        from mlv.pipelines.schema import load_pipeline

        stages = load_pipeline(ws.root / "mlv.yaml", root=ws.root).stages.values()
        return workspace_metrics(ws, [p for spec in stages for p in spec.metrics])
    from mlv.engine import history

    tree = history.Tree(ws, history.resolve_rev(ws, rev))
    return history.metrics_of(ws, tree, sorted(tree.lock))


def log_metric(name: str, value: object, step: int | None = None, *, file: str | None = None) -> None:
    """Inside a stage: ``name = value`` into the stage's metrics file (``file=``: another declared one)."""
    from mlv.pipelines.stagelog import log_metric as write

    write(name, value, step, file=file)


def log_plot(name: str, rows: list[dict] | dict) -> None:
    """Inside a stage: append ``rows`` (records) to the stage's plots file ``name`` (its path or bare name)."""
    from mlv.pipelines.stagelog import log_plot as write

    write(name, rows)

