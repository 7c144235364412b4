"""What a worker does with one stage: lay out its inputs, run it, and store what it made.

The worker that ran a stage hashes its outputs and its captured log, stores them, and
returns their digests — never data. The client then writes only the run record and
``mlv.lock``; no output is read twice, and no lock serialises the hashing of stages that
finished together.

- ``workspace: shared`` (the default): the worker reaches the repo through the shared
  filesystem, as every local run does: it clears the stage's outputs in the repo, runs the
  stage there and stores into the repo's store.
- ``workspace: remote``: the job carries digests, not paths. The worker fetches the deps it
  lacks from the remote into a cache of its own (``storage.scratch``), lays them out in a
  fresh scratch directory, runs the stage there (it sees its declared deps and nothing
  else), stores the outputs and log in its cache and pushes them to the remote (small files
  in packs), then removes the scratch directory. A remote it cannot reach fails the stage
  with one line (``Outcome.reason``); the stage did not start (``exit_code`` None).

A stage that exited 0 still fails when a declared output is missing, or cannot be
stored (a symlink leading out of its directory: outside bytes are never read into the store);
``Outcome.reason`` says which.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from mlv.engine import execute
from mlv.engine.execute import Job, Outcome
from mlv.storage.workspace import snapshot
from mlv.storage.store.digest import parse
from mlv.storage.errors import MlvError, UsageError
from mlv.storage.workspace import Workspace

CACHE_ENV = "MLV_WORKER_CACHE"  # where a worker keeps its cache (workspace: remote); default: its local directory
TAIL_BYTES = 8192


def run(job: Job) -> Outcome:
    """Run ``job`` where its ``workspace`` says, store its log and outputs; digests only come back."""
    return _run_remote(job) if job.shared_nothing else _run_shared(job)


def _run_shared(job: Job) -> Outcome:
    ws = Workspace(Path(job.root))
    for out in job.outputs:  # a stage starts from a clean slate (the client checked nothing unsaved is lost)
        _remove(ws.root / out)
        (ws.root / out).parent.mkdir(parents=True, exist_ok=True)
    code, used, started, ended = execute.run_stage(job)
    log, used, outs, reason = _store(ws, job, code, used)
    ws.state.close()
    return Outcome(code, started, ended, os.uname().nodename, execute.worker_address(), execute.gpu_of(job), used,
                   log, outs, reason)


def _run_remote(job: Job) -> Outcome:
    from mlv.storage.remote import scratch

    cache = scratch.open_cache(cache_root())
    try:
        with scratch.scratch(cache, job.run_id) as space:
            return _in_scratch(job, cache, space)
    finally:
        cache.state.close()


def _in_scratch(job: Job, cache: Workspace, space) -> Outcome:
    from mlv.storage.remote import scratch

    root = space.root
    began = time.time()
    where = (os.uname().nodename, execute.worker_address(), execute.gpu_of(job))
    try:
        remote = scratch.connect(job.remote, cache)
        scratch.materialize(space, [scratch.Input(p, parse(d), is_dir) for p, d, is_dir in job.inputs], remote)
    except MlvError as exc:  # the stage never started: one line says why
        return Outcome(None, began, time.time(), *where, reason=f"its deps could not be laid out on the worker: {exc}")
    for folder in (job.wdir, *(str(Path(out).parent) for out in job.outputs)):  # the stage's cwd, parents of outs
        (root / folder).mkdir(parents=True, exist_ok=True)
    here = dataclasses.replace(job, root=str(root), wdir=str(root / job.wdir), deps=tuple(str(root / d) for d in job.deps),
                               outs=tuple(str(root / o) for o in job.outs), log=str(root.parent / "log"))
    code, used, started, ended = execute.run_stage(here)
    log, used, outs, reason = _store(space, here, code, used)
    from mlv.storage.remote.push import push
    from mlv.storage.workspace.references import Roots

    roots = Roots()
    for path, out in (outs or {}).items():
        roots.where.setdefault(parse(out["digest"]), path)
        if "nfiles" in out:
            roots.current_dirs.add(parse(out["digest"]))
    for named in (log, (used or {}).get("packages")):
        if named:
            roots.where.setdefault(parse(named), "run record")
    try:
        report = push(cache, remote, roots, records=False)
        problem = next(iter({**report.missing, **report.rejected}.items()), None)
        why = None if problem is None else f"to {remote.where}: object {problem[0]}: {problem[1]}"
    except MlvError as exc:
        why = str(exc)
    if why is not None and code == 0:  # a failed stage's log that stays here: its tail still comes back
        outs, reason = None, f"its outputs could not be pushed {why}"
    return Outcome(code, started, ended, *where, used, log, outs, reason, _tail(here.log))


def _store(ws: Workspace, job: Job, code: int, used: dict | None) -> tuple[str | None, dict | None, dict | None, str | None]:
    """Store the log, the interpreter's package list and (if the stage succeeded) its outputs:
    ``(log digest, interpreter, outs or None, why it failed though it exited 0)``."""
    store = ws.store
    log = str(store.put_file(job.log)[0]) if os.path.exists(job.log) else None
    if used is not None:  # the interpreter's package list: one object per distinct list
        used = {**used, "packages": str(store.put_bytes(json.dumps(used["packages"], separators=(",", ":")).encode()))}
    if code != 0:
        return log, used, None, None
    absent = [p for p in job.outputs if not (ws.root / p).exists()]
    if absent:
        return log, used, None, f"declared output '{absent[0]}' was not produced"
    outs: dict[str, dict] = {}
    try:
        for p in job.outputs:
            snap = snapshot.store(ws, snapshot.scan(ws, ws.root / p))
            outs[p] = {"digest": str(snap.digest), "size": snap.size,
                       **({"nfiles": snap.nfiles} if snap.nfiles is not None else {})}
    except UsageError as exc:  # e.g. a symlink leading out of the repo
        return log, used, None, f"its output could not be stored: {exc}"
    return log, used, outs, None


def cache_root() -> Path:
    """Where this worker keeps its cache: ``$MLV_WORKER_CACHE``, else under the Dask worker's local
    directory (it lives as long as the worker), else a folder in the temp directory."""
    if folder := os.environ.get(CACHE_ENV):
        return Path(folder)
    if "distributed" in sys.modules:
        from distributed import get_worker

        try:
            return Path(get_worker().local_directory) / "mlv"
        except ValueError:
            pass  # Dask is loaded, but this is not one of its workers
    return Path(tempfile.gettempdir()) / f"mlv-worker-{os.getuid()}"


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - TAIL_BYTES))
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
