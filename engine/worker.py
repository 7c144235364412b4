"""What a worker does with one stage: clear its outputs, run it, and store what it made.

The worker that ran a stage hashes its outputs and its captured log, stores them, and
returns their digests — never data. The client then writes only the run record and
``mlv.lock``; no output is read twice, and no lock serialises the hashing of stages that
finished together. With ``workspace: shared`` (the default) the worker reaches the
repo's store through the shared filesystem, as every local run does.

A stage that exited 0 still fails when a declared output is missing, or cannot be
stored (a symlink leading out of the repo: outside bytes are never read into the store);
``Outcome.reason`` says which.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from mlv.engine import execute
from mlv.engine.execute import Job, Outcome
from mlv.storage import snapshot
from mlv.storage.errors import UsageError
from mlv.storage.workspace import Workspace


def run(job: Job) -> Outcome:
    """Clear ``job``'s outputs, run it (``execute.run_stage``), store its log and outputs; digests only come back."""
    ws = Workspace(Path(job.root))
    for out in job.outputs:  # a stage starts from a clean slate (the client checked nothing unsaved is lost)
        _remove(ws.root / out)
        (ws.root / out).parent.mkdir(parents=True, exist_ok=True)
    code, used, started, ended = execute.run_stage(job)
    store = ws.store
    log = str(store.put_file(job.log)[0]) if os.path.exists(job.log) else None
    if used is not None:  # the interpreter's package list: one object per distinct list
        used = {**used, "packages": str(store.put_bytes(json.dumps(used["packages"], separators=(",", ":")).encode()))}
    outs: dict[str, dict] = {}
    reason = None
    if code == 0:
        absent = [p for p in job.outputs if not (ws.root / p).exists()]
        if absent:
            reason = f"declared output '{absent[0]}' was not produced"
        else:
            try:
                for p in job.outputs:
                    snap = snapshot.store(ws, snapshot.scan(ws, ws.root / p))
                    outs[p] = {"digest": str(snap.digest), "size": snap.size,
                               **({"nfiles": snap.nfiles} if snap.nfiles is not None else {})}
            except UsageError as exc:  # e.g. a symlink leading out of the repo
                outs, reason = {}, f"its output could not be stored: {exc}"
    ws.state.close()
    return Outcome(code, started, ended, os.uname().nodename, execute.worker_address(), execute.gpu_of(job), used,
                   log, outs if code == 0 and reason is None else None, reason)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
