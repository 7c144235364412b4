"""``mlv run``: settle stages in DAG order, running only what no cache can supply.

One loop over an executor (``engine.executor``: threads in this process, or a Dask
cluster). Every stage is in one ``State``: waiting for its upstream, then settled on the
spot (up to date, restored from the cache, skipped) or running as a future, then
finished. A stage is planned the moment its upstream settles — fingerprinted here, on
the client — and submitted at once (no waiting for whole levels). The worker that ran a
stage stores its outputs and log and returns their digests (``engine.worker``); this
loop, in one thread, writes the run record and then replaces ``mlv.lock`` atomically, so
an interrupt leaves every finished stage committed and nothing half-written.

With ``workspace: remote`` (``engine.remote_run``) the loop is the same; a stage is planned
by digests (upstream workers' results, pointers), what it reads is made sure to be on the
remote before it is submitted, and what it made is checked out afterwards (unless
``--no-download``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlv.engine import execute, inputs, liveoutput, lockfile, provenance, remote_run, tocommit
from mlv.engine.cluster import Cluster, ClusterConfig, dashboard_answers
from mlv.engine.dag import Graph, StageSpec
from mlv.engine.executor import OnDask, Threads
from mlv.engine.history import PIPELINE_FILE
from mlv.engine.lockfile import LockEntry, Output
from mlv.engine.outputs import check_unsaved
from mlv.engine.plan import (
    CACHED,
    MAYBE,
    RUN,
    UP_TO_DATE,
    Decision,
    Fetch,
    decide,
    plan,
)
from mlv.engine.runresults import Listener, RunOptions, StageResult, State
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
from mlv.storage.errors import MlvError, UsageError
from mlv.storage.store.digest import parse
from mlv.storage.workspace import Workspace
from mlv.storage.workspace.tracking import ignore_in_git

LOG_TAIL = 15


class Runner:
    def __init__(self, ws: Workspace, graph: Graph, cluster: ClusterConfig, options: RunOptions, *,
                 pipeline_stages: frozenset[str], listener: Listener | None = None,
                 kinds: Mapping[str, Any] | None = None) -> None:
        """``graph``: the stages to settle; ``pipeline_stages``: every stage in mlv.yaml (whose lock entries stay);
        ``kinds``: what ``kind:`` names mean (``mlv.pipelines.kinds.Kind``: its ``run`` and ``check_before_run``)."""
        self.ws, self.graph, self.options = ws, graph, options
        self.pipeline_stages = pipeline_stages
        self.cluster_config = cluster
        self.notify = listener or (lambda stage, state, detail: None)
        self.lock = lockfile.load(ws.root)
        self.index = RunIndex(ws)
        self.results: dict[str, StageResult] = {}
        self.cluster: Cluster | None = None
        self._stopped: str | None = None  # the stage whose failure stopped the run (--fail-fast)
        self._context: tuple[dict, dict] | None = None  # (git state, package versions), once per run
        self.remote: remote_run.RemoteRun | None = None  # workspace: remote
        self.kinds = kinds if kinds is not None else {}
        self.output = liveoutput.Receiver(liveoutput.new_topic(), lambda stage, line: self.notify(stage, "output", line))

    # -- entry point ----------------------------------------------------------------
    def run(self) -> list[StageResult]:
        order = self.graph.topological_order()
        specs = {name: self.graph.stage(name) for name in order}
        upstream = {n: set(self.graph.upstream_of([n])) - {n} for n in order}
        self._remote_mode()
        planned = plan(self.ws, list(specs.values()), upstream, force=self.options.force, fetch=self._fetch,
                       known=self.remote.digest if self.remote else None, no_download=not self.options.download)
        to_run = [d.stage for d in planned if d.action in (RUN, MAYBE)]  # what may run: checked and saved for
        self._preflight([specs[n] for n in to_run], specs.values())
        check_unsaved(self.ws, [specs[d.stage] for d in planned if d.action != UP_TO_DATE],
                      force=self.options.force or not self.options.download)  # --no-download: workspace untouched
        gpu = [n for n in to_run if specs[n].resources.gpu]
        self.cluster = Cluster(self.cluster_config, jobs=self.options.jobs, gpu=bool(gpu))
        settling = any(d.action != UP_TO_DATE for d in planned)  # all up to date: nothing will change on disk
        watch = tocommit.Watch(self.ws, specs.values(), lock=self.options.lock) if self.ws.in_git and settling else None
        executor = None
        try:
            self.cluster.check_devices()
            if gpu:
                self.cluster.require_gpu(gpu)
            # the last check passed: from here on the run changes things, first saving what it will read
            inputs.save(self.ws, self.graph, [specs[n] for n in to_run], lambda text: self.notify("", "note", text),
                        everything=self.remote is not None)
            if self.remote is not None:  # what no stage of this run makes goes up first: one push for all
                self.remote.ensure(self.remote.sources(self.graph, [specs[n] for n in to_run]))
            if self.cluster.threads_suffice(gpu=bool(gpu)):
                executor = Threads(self.options.jobs) if to_run else None  # nothing to run: no threads either
            else:
                executor = OnDask(self.cluster, jobs=self.options.jobs, started=self._cluster_started)
            with self.output:
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
        for path in watch.changed() if watch is not None else ():
            self.notify("", "changed", path)
        return [self.results[n] for n in order]

    def _cluster_started(self, link: str) -> None:
        """The Dask client is up (before the first submit): stages' output reaches us through its scheduler."""
        if self.options.stream:
            self.output.attach(self.cluster.client())
        if link:  # named only once it answers; asked aside, so no stage waits for the question
            threading.Thread(target=self._dashboard, args=(link,), daemon=True, name="mlv-dashboard").start()

    def _dashboard(self, link: str) -> None:
        if dashboard_answers(link) and self.cluster is not None and self.cluster.started:  # not after the run
            self.notify("", "cluster", link)

    def _remote_mode(self) -> None:
        if self.cluster_config.remote:
            remote_run.required(self.ws, self.cluster_config.source)
            self.remote = remote_run.RemoteRun(self.ws, self.lock, download=self.options.download,
                                               note=lambda text: self.notify("", "note", text))
        elif not self.options.download:
            raise UsageError(f"--no-download leaves stage outputs on the remote, which only a cluster with "
                             f"'workspace: remote' ({self.cluster_config.source}) does; drop --no-download, or set "
                             f"'workspace: remote' there")

    @property
    def _fetch(self) -> Fetch | None:
        return self.remote.available if self.remote is not None else self.options.fetch

    def _preflight(self, specs: list[StageSpec], pipeline: Iterable[StageSpec]) -> None:
        """Every kind stage that may run has a runner, and its preflight check passes (exit 2 before anything)."""
        produced = sorted({p for spec in pipeline for p in (*spec.outs, *spec.metrics, *spec.plots)})
        for spec in specs:
            if spec.kind is None:
                continue
            kind = self.kinds.get(spec.kind)
            if kind is None or kind.run is None:
                raise UsageError(f"{PIPELINE_FILE}:{spec.line}: stage '{spec.name}': kind '{spec.kind}' has no runner "
                                 "in this version of mlv yet; write the stage with `cmd:` or `call: "
                                 "package.module:function` for now")
            stage = {"name": spec.name, "root": str(self.ws.root), "wdir": str(self.ws.root / spec.wdir),
                     "produced": produced}
            try:
                kind.check_before_run(spec.settings, stage)
            except Exception as exc:
                if getattr(exc, "mlv_setting", None) is None:  # not a SettingError: a bug, with its traceback
                    raise
                raise UsageError(f"{PIPELINE_FILE}:{spec.line}: stage '{spec.name}', '{exc.mlv_setting}': "
                                 f"{exc}") from None

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
                    if job.stream:
                        self.output.expect(job.run_id)
                    running[executor.submit(job, gpu=specs[name].resources.gpu)] = (specs[name], decision, job)
                    self.notify(name, "running", "")
            if not running:
                if waiting and all(any(u not in self.results for u in upstream[n]) for n in waiting):
                    raise RuntimeError(f"scheduler stalled with {waiting}")  # a bug: the DAG is acyclic
                continue
            for future in executor.wait(running):
                spec, decision, job = running.pop(future)
                outcome = _outcome(spec, job, future)
                if job.stream:  # through a scheduler its last lines may still be on their way
                    self.output.finish(job.run_id, timeout=0 if isinstance(executor, Threads) else 2.0)
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
            if self.remote is not None and entry is not None:
                self.remote.settle(entry.outs)
            self.results[spec.name] = StageResult(spec.name, State.UP_TO_DATE, run_id=entry.run_id if entry else None)
            self.notify(spec.name, UP_TO_DATE, "")
            return
        from mlv.storage.workspace.checkout import (  # loads fsspec: only when restoring
            Version,
            restore,
        )

        run_id, outs = decision.source
        if self.remote is not None:
            self.remote.settle(outs)
        if self.options.download:  # --no-download: the outputs stay on the remote
            restore(self.ws, [Version(self.ws.root / p, o.digest, o.nfiles is not None, o.size)
                              for p, o in outs.items()], force=self.options.force)
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
        decision = decide(self.ws, spec, self.lock, self.index, force=self.options.force, fetch=self._fetch,
                          known=self.remote.digest if self.remote else None, no_download=not self.options.download)
        if decision.action != RUN:
            self._settle(spec, decision)
            return None
        if self.remote is None:
            return decision, self._prepare(spec, decision)
        job = self._prepare_remote(spec, decision)
        try:  # its deps must be on the remote: what no worker of this run pushed goes up now
            self.remote.ensure(self.remote.inputs(decision.deps))
        except MlvError as exc:  # this stage cannot start; the rest go on
            now = time.time()
            self._commit(spec, decision, job, execute.Outcome(None, now, now, host(), None, None, reason=str(exc)))
            return None
        return decision, job

    def _cancelled(self, spec: StageSpec) -> None:
        self.results[spec.name] = StageResult(spec.name, State.CANCELLED, ["stopped by --fail-fast"])
        self.notify(spec.name, "cancelled", "stopped by --fail-fast")

    def _prepare_remote(self, spec: StageSpec, decision: Decision) -> execute.Job:
        """A job that names digests, not paths: the worker lays the deps out in a scratch directory of its own."""
        run_id = new_run_id()
        return execute.Job(
            run_id=run_id, stage=spec.name, root="", wdir=spec.wdir, cmd=spec.cmd, call=spec.call,
            deps=spec.deps, outs=spec.outs, params=_nested(spec.params), log="", gpu=spec.resources.gpu,
            mask=self.ws.config.mask, outputs=(*spec.outs, *spec.metrics, *spec.plots), remote=self.remote.settings,
            inputs=tuple((p, str(d), is_dir) for p, (d, is_dir) in sorted(self.remote.inputs(decision.deps).items())),
            kind=self._kind_job(spec, decision, run_id), stream=self.output.topic if self.options.stream else None,
        )

    def _kind_job(self, spec: StageSpec, decision: Decision, run_id: str) -> dict | None:
        """What a kind's ``run(settings, stage)`` is given (``pipelines.kinds``): its inputs with where they came from."""
        if spec.kind is None:
            return None
        made = provenance.input_producers(self.ws, decision.deps, self.lock)
        return {"run": self.kinds[spec.kind].run, "settings": spec.settings, "stage": {
            "name": spec.name, "file": PIPELINE_FILE, "line": spec.line, "run_id": run_id, "gpu": spec.resources.gpu,
            "wdir": spec.wdir,
            "inputs": {p: {"digest": str(d), "run": (made.get(p) or {}).get("run")} for p, d in decision.deps.items()},
        }}

    def _prepare(self, spec: StageSpec, decision: Decision) -> execute.Job:
        root = self.ws.root
        run_id = new_run_id()
        self.ws.state.mark_writing((*spec.outs, *spec.metrics, *spec.plots), time.time_ns())  # what it writes is its own
        logs = self.ws.dot / "tmp" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        job = execute.Job(
            run_id=run_id, stage=spec.name, root=str(root), wdir=str(root / spec.wdir), cmd=spec.cmd,
            call=spec.call, deps=tuple(str(root / d) for d in spec.deps), outs=tuple(str(root / o) for o in spec.outs),
            params=_nested(spec.params), log=str(logs / f"{run_id}.log"), gpu=spec.resources.gpu,
            mask=self.ws.config.mask, outputs=(*spec.outs, *spec.metrics, *spec.plots), kind=self._kind_job(spec, decision, run_id),
            stream=self.output.topic if self.options.stream else None,
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
        if self.remote is not None:
            self._collect(spec, outcome, outs, failed)
        self.index.write(record)
        if not failed:
            self._ignore(spec)
            self._commit_lock(spec, decision, job.run_id, outs)
            self.ws.state.clear_writing(outs)
        tail = (outcome.tail or "") if job.shared_nothing else _tail(job.log)
        result = StageResult(spec.name, state, reasons, job.run_id, outcome.ended - outcome.started,
                             outcome.exit_code, tail if failed else "")
        self.results[spec.name] = result
        detail = "" if not failed else reasons[0] if outcome.reason else f"exit {outcome.exit_code}"
        self.notify(spec.name, state, detail)
        return result

    def _collect(self, spec: StageSpec, outcome: execute.Outcome, outs: dict[str, Output], failed: bool) -> None:
        """Remote mode: bring the stage's log here and (unless --no-download) check its outputs out. Its
        outputs are safe on the remote whatever happens here, so a failure is a note, not a failed stage."""
        named = [d for d in (outcome.log, (outcome.interpreter or {}).get("packages")) if d]
        try:
            self.remote.collect({} if failed else outs, named, force=self.options.force)
        except MlvError as exc:
            what = "its log" if failed else "its outputs are on the remote, but"
            self.notify("", "note", f"stage '{spec.name}': {what} could not be brought here: {exc}; "
                                    f"`mlv pull {spec.name}` brings them later")

    def _commit_lock(self, spec: StageSpec, decision: Decision, run_id: str, outs: dict[str, Output]) -> None:
        if not self.options.lock:
            return
        self.lock[spec.name] = LockEntry(decision.fingerprint, run_id, dict(decision.deps), dict(spec.params), outs)
        lockfile.dump(self.ws.root, {n: e for n, e in self.lock.items() if n in self.pipeline_stages})

    def _ignore(self, spec: StageSpec) -> None:
        if self.ws.in_git:
            for out in spec.outs:  # metrics stay visible to git, so they can be committed and diffed
                (self.ws.root / out).parent.mkdir(parents=True, exist_ok=True)  # --no-download: maybe not there yet
                ignore_in_git(self.ws.root / out)


def _outcome(spec: StageSpec, job: execute.Job, future) -> execute.Outcome:
    try:
        return future.result()
    except Exception as exc:  # the worker died or the task was cancelled: the stage failed, others go on
        message = secrets.scrub(f"mlv: the Dask task for stage '{spec.name}' failed: {exc!r}\n", job.mask)
        if job.shared_nothing:  # the log file would have been the worker's
            return execute.Outcome(-1, time.time(), time.time(), host(), None, None, tail=message)
        Path(job.log).write_text(message)
        return execute.Outcome(-1, time.time(), time.time(), host(), None, None)


def _nested(flat: dict) -> dict:
    """``{"model.depth": 8}`` → ``{"model": {"depth": 8}}`` for ``call`` stages; a key of another params
    file (``conf/t.yaml:lr``) lands under that file's name.

    >>> _nested({"a.b": 1, "c": 2, "conf/t.yaml:m.lr": 0.1})
    {'a': {'b': 1}, 'c': 2, 'conf/t.yaml': {'m': {'lr': 0.1}}}
    """
    out: dict = {}
    for key, value in flat.items():
        node = out
        file, colon, name = key.rpartition(":")
        *parents, last = ([file] if colon else []) + name.split(".")
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
