"""What runs on a Dask worker: one stage's command or Python call, its output captured.

Everything here is module-level and takes a plain ``Job`` (picklable, no open files or
stores), so it runs the same in a thread of mlv's own process, in a local worker
process or on a remote worker that shares the repo's filesystem. It returns facts
(exit code, times, worker, GPU), never data: outputs are hashed and stored by the client.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import io
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass

from mlv.storage import secrets

_children: set[subprocess.Popen] = set()
_children_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Job:
    run_id: str
    stage: str
    root: str  # absolute repo root
    wdir: str  # absolute working directory
    cmd: tuple[str, ...] | None
    call: str | None
    deps: tuple[str, ...]  # absolute
    outs: tuple[str, ...]  # absolute
    params: dict
    log: str  # absolute path of the log file to write
    gpu: int = 0
    mask: tuple[str, ...] = ()  # more env var names whose values are masked in the log (``core.mask``)


@dataclass(frozen=True, slots=True)
class Outcome:
    exit_code: int
    started: float
    ended: float
    host: str
    worker: str | None  # a Dask worker address, or thread://host/pid/thread for the threaded scheduler
    gpu: str | None


def run_job(job: Job) -> Outcome:
    """Run ``job`` to completion; a failure is an exit code, never an exception.

    The captured output is masked on its way to the log: the values of this worker's
    credential-like environment variables never reach the log, the store or a remote."""
    started = time.time()
    masker = secrets.Masker(secrets.values(job.mask))
    with open(job.log, "wb") as log:
        if job.cmd is not None:
            code = _run_commands(job, log, masker)
        else:
            code = _run_call(job, log, masker)
        log.write(masker.flush())
    return Outcome(code, started, time.time(), os.uname().nodename, _worker_address(), _gpu(job))


def _run_commands(job: Job, log, masker: secrets.Masker) -> int:
    env = {**os.environ, "MLV_STAGE": job.stage, "MLV_RUN_ID": job.run_id}
    for command in job.cmd or ():
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command], cwd=job.wdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent,
        )
        with _children_lock:
            _children.add(proc)
        try:
            _pump(proc, log, masker)
            code = proc.wait()
        finally:
            with _children_lock:
                _children.discard(proc)
        if code != 0:
            return code if code > 0 else 128 - code  # killed by signal N -> 128+N, as shells report it
    return 0


def _pump(proc: subprocess.Popen, log, masker: secrets.Masker) -> None:
    """Copy the command's output to the log, masked, until it ends.

    A command may leave a background process holding the pipe open after it exits: once the
    command is gone, what is already in the pipe is taken and the rest is not waited for."""
    fd = proc.stdout.fileno()
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return
                log.write(masker.feed(chunk))
            elif proc.poll() is not None:
                os.set_blocking(fd, False)
                try:
                    while chunk := os.read(fd, 1 << 16):
                        log.write(masker.feed(chunk))
                except BlockingIOError:
                    pass
                return
    finally:
        proc.stdout.close()


class _MaskedText(io.TextIOBase):
    """A text stream over the log that masks what a ``call`` stage prints."""

    def __init__(self, log, masker: secrets.Masker) -> None:
        self.log, self.masker = log, masker

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.log.write(self.masker.feed(text.encode("utf-8", errors="replace")))
        return len(text)


def _run_call(job: Job, log, masker: secrets.Masker) -> int:
    module_name, _, func_name = (job.call or "").partition(":")
    text = _MaskedText(log, masker)
    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text), _cwd(job.wdir):
        try:
            func = getattr(_fresh_import(job.root, module_name), func_name)
            func(deps=list(job.deps), outs=list(job.outs), params=dict(job.params))
            return 0
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # the user's function failed: its traceback is the stage's log
            traceback.print_exc()
            return 1
        finally:
            text.flush()


def _fresh_import(root: str, module_name: str):
    """Import ``module_name`` from the repo at ``root`` as it is now.

    A long-lived worker keeps modules in ``sys.modules``: a stage whose code changed (a
    new fingerprint) must not run the old version, and two repos with a ``src`` package
    must not share one. So every module loaded from a repo directory is dropped first,
    and this repo's root goes first on ``sys.path``.
    """
    global _repo_root
    prefixes = {p for p in (_repo_root, root) if p}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if any(file.startswith(p.rstrip("/") + "/") for p in prefixes):
            del sys.modules[name]
    if _repo_root and _repo_root != root and _repo_root in sys.path:
        sys.path.remove(_repo_root)
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    _repo_root = root
    importlib.invalidate_caches()
    return importlib.import_module(module_name)


_repo_root: str | None = None


@contextlib.contextmanager
def _cwd(path: str):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def kill_children() -> None:
    """Stop every command this process started (Ctrl-C in a run with in-process workers)."""
    with _children_lock:
        for proc in list(_children):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)


def _die_with_parent() -> None:
    """Linux: the command gets SIGTERM if the worker running it dies (no orphans after Ctrl-C)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: no such guarantee, the worker's own shutdown still ends its tasks


def _worker_address() -> str:
    """The Dask worker running this job, or the thread of Dask's local threaded scheduler."""
    if "distributed" in sys.modules:  # never import it just to ask: the threaded path runs without it
        from distributed import get_worker

        try:
            return get_worker().address
        except ValueError:
            pass
    return f"thread://{os.uname().nodename}/{os.getpid()}/{threading.current_thread().name}"


def _gpu(job: Job) -> str | None:
    if not job.gpu:
        return None
    return os.environ.get("CUDA_VISIBLE_DEVICES", "GPU") or "GPU"
