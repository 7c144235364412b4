"""``mlv run``: settle stages in DAG order, running only what no cache can supply.

One loop over an executor (``engine.executor``: threads in this process, or a Dask
cluster). Every stage is in one ``State``: waiting for its upstream, then settled on the
spot (up to date, restored from the cache, skipped) or running as a future, then
finished. A stage is planned the moment its upstream settles — fingerprinted here, on
the client — and submitted at once (no waiting for whole levels). The worker that ran a
stage stores its outputs and log and returns their digests (``engine.worker``); this
loop, in one thread, writes the run record and then replaces ``mlv.lock`` atomically, so
an interrupt leaves every finished stage committed and nothing half-written.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from mlv.engine import execute, inputs, lockfile, provenance
from mlv.engine.cluster import Cluster, ClusterConfig
from mlv.engine.executor import OnDask, Threads
from mlv.engine.dag import Graph, StageSpec
from mlv.engine.lockfile import LockEntry, Output
from mlv.engine.outputs import check_unsaved
from mlv.engine.plan import CACHED, MAYBE, RUN, UP_TO_DATE, Decision, Fetch, decide, plan
from mlv.engine.records import (
    RunIndex,
    RunRecord,
    environment,
    git_state,
    host,
    new_run_id,
    reuse_event,
)
from mlv.storage import secrets
from mlv.storage.digest import parse
from mlv.storage.errors import LockedError, UsageError
from mlv.storage.tracking import ignore_in_git
from mlv.storage.workspace import Workspace

LOG_TAIL = 15


@dataclass(frozen=True, slots=True)
class RunOptions:
    force: bool = False
    jobs: int | None = None
    fail_fast: bool = False
    fetch: Fetch | None = None  # gets outputs that ran before from a remote, instead of running the stage


class State(str, Enum):
    """Where a stage ended up (the value is what ``--json`` and the progress display show)."""

    UP_TO_DATE = UP_TO_DATE
    CACHED = CACHED
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # an upstream stage failed (or --fail-fast stopped the run first)
    CANCELLED = "cancelled"  # stopped while running (--fail-fast, Ctrl-C)

    __str__ = str.__str__  # prints and formats as its value, as a StrEnum does (Python 3.11+)
    __format__ = str.__format__


@dataclass(slots=True)
class StageResult:
    stage: str
    state: str  # a State value
    reasons: list[str] = field(default_factory=list)
    run_id: str | None = None
    elapsed: float = 0.0
    exit_code: int | None = None
    log_tail: str = ""

    def to_dict(self) -> dict:
        return {"stage": self.stage, "state": self.state, "reasons": self.reasons, "run_id": self.run_id,
                "elapsed": round(self.elapsed, 3), "exit_code": self.exit_code}


Listener = Callable[[str, str, str], None]  # (stage, state, detail); ("", "cluster", dashboard), ("", "note", text)


class RunLock:
    """``.mlv/run.lock``: one ``mlv run`` per repo. flock dies with its process, so a killed run frees it."""

    def __init__(self, ws: Workspace) -> None:
        self.path = ws.dot / "run.lock"

    def __enter__(self) -> RunLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise LockedError(
                f"another `mlv run` (pid {owner}) is running in this repo; wait for it to finish "
                "(its lock is released the moment it exits, even if it is killed)"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


class Runner:
    def __init__(self, ws: Workspace, graph: Graph, cluster: ClusterConfig, options: RunOptions, *,
                 pipeline_stages: frozenset[str], listener: Listener | None = None) -> None:
        """``graph``: the stages to settle; ``pipeline_stages``: every stage in mlv.yaml (whose lock entries stay)."""
        self.ws, self.graph, self.options = ws, graph, options
        self.pipeline_stages = pipeline_stages
        self.cluster_config = cluster
        self.notify = listener or (lambda stage, state, detail: None)
        self.lock = lockfile.load(ws.root)
        self.index = RunIndex(ws)
        self.results: dict[str, StageResult] = {}
        self.cluster: Cluster | None = None
        self._interrupted = False  # Ctrl-C: threads still finishing a command must not commit
        self._stopped: str | None = None  # the stage whose failure stopped the run (--fail-fast)
        self._context: tuple[dict, dict] | None = None  # (git state, package versions), once per run

    # -- entry point ----------------------------------------------------------------
    def run(self) -> list[StageResult]:
        order = self.graph.topological_order()
        specs = {name: self.graph.stage(name) for name in order}
        upstream = {n: set(self.graph.upstream_of([n])) - {n} for n in order}
        planned = plan(self.ws, list(specs.values()), upstream, force=self.options.force, fetch=self.options.fetch)
        to_run = [d.stage for d in planned if d.action in (RUN, MAYBE)]  # what may run: checked and saved for
        self._preflight([specs[n] for n in to_run])
        check_unsaved(self.ws, [specs[d.stage] for d in planned if d.action != UP_TO_DATE], force=self.options.force)
        gpu = [n for n in to_run if specs[n].resources.gpu]
        self.cluster = Cluster(self.cluster_config, jobs=self.options.jobs, gpu=bool(gpu))
        executor = None
        try:
            self.cluster.check_devices()
            if gpu:
                self.cluster.require_gpu(gpu)
            # the last check passed: from here on the run changes things, first saving what it will read
            inputs.save(self.ws, self.graph, [specs[n] for n in to_run], lambda text: self.notify("", "note", text))
            if self.cluster.threads_suffice(gpu=bool(gpu)):
                executor = Threads(self.options.jobs) if to_run else None  # nothing to run: no threads either
            else:
                executor = OnDask(self.cluster, jobs=self.options.jobs,
                                  started=lambda link: self.notify("", "cluster", link))
            self._loop(order, specs, upstream, executor)
        except KeyboardInterrupt:
            execute.kill_children()
            for name in order:
                self.results.setdefault(name, StageResult(name, State.CANCELLED))
            raise
        finally:
            if executor is not None:
                executor.close()
            self.cluster.close()
        return [self.results[n] for n in order]

    def _preflight(self, specs: list[StageSpec]) -> None:
        kinds = sorted({s.kind for s in specs if s.kind})
        if kinds:
            raise UsageError(
                f"stage kind '{kinds[0]}' has no runner in this version of mlv yet; "
                "write the stage with `cmd:` or `call: package.module:function` for now"
            )

    # -- the loop -------------------------------------------------------------------
    def _loop(self, order: list[str], specs: dict[str, StageSpec], upstream: dict[str, set[str]], executor) -> None:
        """Settle every stage: submit each the moment its upstream is settled, commit each as it finishes."""
        running: dict = {}  # future -> (spec, decision, job)
        waiting = list(order)
        while waiting or running:
            for name in list(waiting):
                if any(u not in self.results for u in upstream[name]):
                    continue
                if executor is not None and len(running) >= executor.limit:
                    break
                waiting.remove(name)
                started = self._begin(specs[name], upstream[name])
                if started is not None:
                    decision, job = started
                    running[executor.submit(job, gpu=specs[name].resources.gpu)] = (specs[name], decision, job)
                    self.notify(name, "running", "")
            if not running:
                if waiting and all(any(u not in self.results for u in upstream[n]) for n in waiting):
                    raise RuntimeError(f"scheduler stalled with {waiting}")  # a bug: the DAG is acyclic
                continue
            for future in executor.wait(running):
                spec, decision, job = running.pop(future)
                outcome = _outcome(spec, job, future)
                if self._stopped is not None:  # killed because another stage failed under --fail-fast
                    self._cancelled(spec)
                    continue
                result = self._commit(spec, decision, job, outcome)
                if result.state == State.FAILED and self.options.fail_fast:
                    self._stopped = spec.name
                    for other in running:
                        other.cancel()
                    execute.kill_children()

    # -- one stage --------------------------------------------------------------------
    def _settle(self, spec: StageSpec, decision: Decision) -> None:
        if decision.action == UP_TO_DATE:
            entry = self.lock.get(spec.name)
            self.results[spec.name] = StageResult(spec.name, State.UP_TO_DATE, run_id=entry.run_id if entry else None)
            self.notify(spec.name, UP_TO_DATE, "")
            return
        from mlv.storage.checkout import (  # loads fsspec: only when restoring
            Version,
            restore,
        )

        run_id, outs = decision.source
        restore(self.ws, [Version(self.ws.root / p, o.digest, o.nfiles is not None, o.size) for p, o in outs.items()],
                force=self.options.force)
        self._ignore(spec)
        self._commit_lock(spec, decision, run_id, outs)
        self.index.write(reuse_event(  # the lock keeps naming the original run; this notes that it was reused
            run_id, stage=spec.name, fingerprint=str(decision.fingerprint), definition=spec.definition(),
            params=dict(spec.params), deps={p: str(d) for p, d in decision.deps.items()},
            outs={p: o.to_dict() for p, o in outs.items()}, root=self.ws.root))
        self.results[spec.name] = StageResult(spec.name, State.CACHED, decision.reasons, run_id=run_id)
        self.notify(spec.name, CACHED, decision.reasons[0] if decision.reasons else "")

    def _begin(self, spec: StageSpec, ups: set[str]) -> tuple[Decision, execute.Job] | None:
        """Settle a stage whose upstream is done: skip, up to date, cached — or a job to run."""
        bad = sorted(u for u in ups if self.results[u].state in (State.FAILED, State.SKIPPED, State.CANCELLED))
        if bad or self._stopped is not None:
            why = f"upstream '{bad[0]}' failed" if bad else "stopped by --fail-fast"
            self.results[spec.name] = StageResult(spec.name, State.SKIPPED, [why])
            self.notify(spec.name, "skipped", why)
            return None
        decision = decide(self.ws, spec, self.lock, self.index, force=self.options.force, fetch=self.options.fetch)
        if decision.action != RUN:
            self._settle(spec, decision)
            return None
        return decision, self._prepare(spec)

    def _cancelled(self, spec: StageSpec) -> None:
        self.results[spec.name] = StageResult(spec.name, State.CANCELLED, ["stopped by --fail-fast"])
        self.notify(spec.name, "cancelled", "stopped by --fail-fast")

    def _prepare(self, spec: StageSpec) -> execute.Job:
        root = self.ws.root
        run_id = new_run_id()
        self.ws.state.mark_writing((*spec.outs, *spec.metrics), time.time_ns())  # what it writes is its own
        logs = self.ws.dot / "tmp" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        job = execute.Job(
            run_id=run_id, stage=spec.name, root=str(root), wdir=str(root / spec.wdir), cmd=spec.cmd,
            call=spec.call, deps=tuple(str(root / d) for d in spec.deps), outs=tuple(str(root / o) for o in spec.outs),
            params=_nested(spec.params), log=str(logs / f"{run_id}.log"), gpu=spec.resources.gpu,
            mask=self.ws.config.mask, outputs=(*spec.outs, *spec.metrics),
        )
        return job

    def _commit(self, spec: StageSpec, decision: Decision, job: execute.Job, outcome: execute.Outcome) -> StageResult:
        """Write a finished stage's run record and (if it succeeded) lock it; the worker stored its log and outputs."""
        if self._context is None:
            self._context = (git_state(self.ws.root), environment())
        failed = outcome.exit_code != 0 or outcome.reason is not None
        state = State.FAILED if failed else State.DONE
        reasons = [outcome.reason] if outcome.reason else list(decision.reasons)
        outs = {p: Output(parse(o["digest"]), o["size"], o.get("nfiles")) for p, o in (outcome.outs or {}).items()}
        record = RunRecord(
            run_id=job.run_id, stage=spec.name, fingerprint=str(decision.fingerprint), definition=spec.definition(),
            params=dict(spec.params), deps={p: str(d) for p, d in decision.deps.items()},
            outs={p: o.to_dict() for p, o in outs.items()}, status="failed" if failed else "succeeded",
            exit_code=outcome.exit_code, started=outcome.started, ended=outcome.ended, host=outcome.host,
            worker=outcome.worker, gpu=outcome.gpu, log=outcome.log,
            git=self._context[0], environment={"mlv": self._context[1], "interpreter": outcome.interpreter},
            producers=provenance.input_producers(self.ws, decision.deps, self.lock),
        )
        self.index.write(record)
        if not failed:
            self._ignore(spec)
            self._commit_lock(spec, decision, job.run_id, outs)
            self.ws.state.clear_writing(outs)
        result = StageResult(spec.name, state, reasons, job.run_id, outcome.ended - outcome.started,
                             outcome.exit_code, _tail(job.log) if failed else "")
        self.results[spec.name] = result
        detail = "" if not failed else reasons[0] if outcome.exit_code == 0 and reasons else f"exit {outcome.exit_code}"
        self.notify(spec.name, state, detail)
        return result

    def _commit_lock(self, spec: StageSpec, decision: Decision, run_id: str, outs: dict[str, Output]) -> None:
        self.lock[spec.name] = LockEntry(decision.fingerprint, run_id, dict(decision.deps), dict(spec.params), outs)
        lockfile.dump(self.ws.root, {n: e for n, e in self.lock.items() if n in self.pipeline_stages})

    def _ignore(self, spec: StageSpec) -> None:
        if self.ws.in_git:
            for out in spec.outs:  # metrics stay visible to git, so they can be committed and diffed
                ignore_in_git(self.ws.root / out)


def _outcome(spec: StageSpec, job: execute.Job, future) -> execute.Outcome:
    try:
        return future.result()
    except Exception as exc:  # the worker died or the task was cancelled: the stage failed, others go on
        Path(job.log).write_text(secrets.scrub(f"mlv: the Dask task for stage '{spec.name}' failed: {exc!r}\n",
                                               job.mask))
        return execute.Outcome(-1, time.time(), time.time(), host(), None, None)


def _nested(flat: dict) -> dict:
    """``{"model.depth": 8}`` → ``{"model": {"depth": 8}}`` for ``call`` stages.

    >>> _nested({"a.b": 1, "c": 2})
    {'a': {'b': 1}, 'c': 2}
    """
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def _tail(path: str, lines: int = LOG_TAIL) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
