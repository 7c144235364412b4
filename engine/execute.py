"""Running one stage's commands or Python call in a process of its own, its output captured.

Everything here is module-level and takes a plain ``Job`` (picklable, no open files or
stores), so it runs the same in a thread of mlv's own process or on a Dask worker.
``worker.run`` wraps it: clearing the outputs before, storing them after.

With ``workspace: remote`` a job carries no path of the client's: ``remote`` (the plain
settings of the repo's default remote, never credentials) and ``inputs`` (each dep's path
and digest); ``wdir``, ``deps``, ``outs`` and ``outputs`` are relative to the repo root, and
the worker lays them out in a scratch directory of its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mlv.engine import gpus, interpreter, liveoutput
from mlv.storage import secrets

CALL_STAGE = str(Path(__file__).with_name("callstage.py"))  # run as a script by path: see its docstring
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
    outputs: tuple[str, ...] = ()  # repo-relative outs and metrics: cleared before, stored after (``worker``)
    remote: dict | None = None  # workspace: remote — the default remote's settings (``storage.scratch.settings``)
    inputs: tuple[tuple[str, str, bool], ...] = ()  # workspace: remote — (dep path, digest, is a directory)
    kind: dict | None = None  # a kind: stage: {"run": "pkg.mod:func", "settings": {...}, "stage": {...}}
    stream: str | None = None  # the topic its masked output is streamed on while it runs (``liveoutput``)

    @property
    def shared_nothing(self) -> bool:
        """Whether the worker lays the stage out in a scratch directory (``workspace: remote``)."""
        return self.remote is not None


@dataclass(frozen=True, slots=True)
class Outcome:
    exit_code: int | None  # None: the stage did not start (its deps could not be brought to the worker)
    started: float
    ended: float
    host: str
    worker: str | None  # a Dask worker address, or thread://host/pid/thread for the threaded scheduler
    gpu: str | None
    interpreter: dict | None = None  # the Python the stage ran with: path, version, packages (a digest)
    log: str | None = None  # digest of the captured output, stored by the worker
    outs: dict[str, dict] | None = None  # out path -> {digest, size, nfiles?}, stored by the worker (when it succeeded)
    reason: str | None = None  # why a stage that exited 0 still failed (an output missing or unstorable)
    tail: str | None = None  # workspace: remote — the last lines of its output (the log file is the worker's)


def run_stage(job: Job) -> tuple[int, dict | None, float, float]:
    """Run the stage's commands (or call) to the end, its output masked into ``job.log``.

    Every stage runs in a child process of its own (a ``call`` stage in ``callstage.py``), so
    nothing it does touches this worker's cwd, streams or imports. The values of this worker's
    credential-like environment variables never reach the log; with ``job.stream``, the same masked
    bytes also go to the client as they come (``liveoutput``). Returns the exit status (a
    failure is a status, never an exception), the interpreter it ran with, start and end."""
    started = time.time()
    masker = secrets.Masker(secrets.values(job.mask))
    env = {**os.environ, "MLV_STAGE": job.stage, "MLV_RUN_ID": job.run_id, "MLV_ROOT": job.root}  # root: mlv.api.log_metric
    if job.cmd is not None:
        argvs = [["/bin/sh", "-c", command] for command in job.cmd]
    else:
        if job.kind is not None:  # a kind's function: run(settings, stage)
            target, kwargs = job.kind["run"], {"settings": job.kind["settings"], "stage": job.kind["stage"]}
        else:
            target, kwargs = job.call, {"deps": list(job.deps), "outs": list(job.outs), "params": job.params}
        call = {"root": job.root, "wdir": job.wdir, "call": target, "kwargs": kwargs}
        argvs = [[sys.executable, CALL_STAGE, json.dumps(call)]]
    code = 0
    # which Python it runs is asked of that Python while the stage runs, not after it (a first probe costs ~0.2 s)
    with ThreadPoolExecutor(1) as probe:
        used = probe.submit(interpreter.describe, interpreter.used_by(job.cmd, env), env, job.wdir)
        sink = liveoutput.Sender(job.stream, job.stage, job.run_id) if job.stream else None
        with open(job.log, "wb") as log:
            for argv in argvs:  # commands run one after another, stopping at the first that fails
                code = _run(argv, job.wdir, env, _Output(log, sink), masker)
                if code != 0:
                    break
            tail = masker.flush()
            log.write(tail)
            if sink is not None:
                sink(tail)
                sink.flush(end=True)
        ended = time.time()
        return code, used.result(), started, ended


def _run(argv: list[str], cwd: str, env: dict, log, masker: secrets.Masker) -> int:
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent)
    with _children_lock:
        _children.add(proc)
    try:
        _pump(proc, log, masker)
        code = proc.wait()
    finally:
        with _children_lock:
            _children.discard(proc)
    return code if code >= 0 else 128 - code  # killed by signal N -> 128+N, as shells report it


def _pump(proc: subprocess.Popen, log, masker: secrets.Masker) -> None:
    """Copy the process's output to the log, masked, until it ends.

    A command may leave a background process holding the pipe open after it exits: once the
    command is gone, what is already in the pipe is taken and the rest is not waited for."""
    fd = proc.stdout.fileno()
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], liveoutput.FLUSH_S if log.sink else 0.2)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return
                log.write(masker.feed(chunk))
            elif log.sink is not None:
                log.sink.flush()  # quiet for a moment: what gathered goes to the client now
            if not ready and proc.poll() is not None:
                os.set_blocking(fd, False)
                try:
                    while chunk := os.read(fd, 1 << 16):
                        log.write(masker.feed(chunk))
                except BlockingIOError:
                    pass
                return
    finally:
        proc.stdout.close()


class _Output:
    """Where masked output goes: the log file, and the client's stream when there is one."""

    def __init__(self, log, sink: liveoutput.Sender | None) -> None:
        self.log, self.sink = log, sink

    def write(self, masked: bytes) -> None:
        self.log.write(masked)
        if self.sink is not None and masked:
            self.sink(masked)


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


def worker_address() -> str:
    """The Dask worker running this job, or the thread of Dask's local threaded scheduler."""
    if "distributed" in sys.modules:  # never import it just to ask: the threaded path runs without it
        from distributed import get_worker

        try:
            return get_worker().address
        except ValueError:
            pass
    return f"thread://{os.uname().nodename}/{os.getpid()}/{threading.current_thread().name}"


def gpu_of(job: Job) -> str | None:
    """The device(s) a GPU stage could see — model and UUID (``gpus.describe``) — not a label."""
    return gpus.describe() if job.gpu else None
