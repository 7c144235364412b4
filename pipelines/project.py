"""A repo's pipeline: ``mlv.yaml`` loaded, its DAG built, and runs, status and checkout driven from it.

This is where the layers meet: ``schema`` turns YAML into ``StageSpec`` values, the
engine builds the DAG, plans and runs it. The CLI calls these functions and renders.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from mlv.engine import lockfile
from mlv.engine.cluster import FILE as CLUSTER_FILE
from mlv.engine.cluster import load_config
from mlv.engine.dag import Graph, build_graph
from mlv.engine.lockfile import Output
from mlv.engine.plan import Decision, Fetch, plan
from mlv.engine.runlock import RunLock
from mlv.engine.runner import Runner
from mlv.engine.runresults import Listener, RunOptions, StageResult
from mlv.pipelines.kinds import Registry
from mlv.pipelines.schema import Pipeline, load_pipeline
from mlv.storage.errors import MlvError, UsageError
from mlv.storage.workspace import Workspace

PIPELINE_FILE = "mlv.yaml"


@dataclass(frozen=True, slots=True)
class Selection:
    targets: tuple[str, ...] = ()
    downstream: bool = False


def load(ws: Workspace, *, check_deps: bool = True) -> tuple[Pipeline, Graph]:
    pipeline = load_pipeline(ws.root / PIPELINE_FILE, root=ws.root)
    exists = None if check_deps else (lambda path: True)
    return pipeline, build_graph(pipeline.stages.values(), root=ws.root, exists=exists, source=PIPELINE_FILE)


def refuse_outputs(ws: Workspace, paths: list[str]) -> None:
    """``mlv add``: a path that is, holds or lies inside a stage's declared output is a ``UsageError``
    naming the stage: the pointer and ``mlv.lock`` would fight over it on every checkout and run."""
    if not (ws.root / PIPELINE_FILE).exists():
        return
    pipeline = load_pipeline(ws.root / PIPELINE_FILE, root=ws.root)
    for path in paths:
        rel = ws.rel(ws.resolve(path, must_exist=False))
        for spec in pipeline.stages.values():
            for out in (*spec.outs, *spec.metrics, *spec.plots):
                if rel == out or rel.startswith(out + "/") or out.startswith(rel + "/"):
                    how = "is" if rel == out else "lies inside" if rel.startswith(out + "/") else "holds"
                    raise UsageError(f"'{rel}' {how} '{out}', an output of stage '{spec.name}' "
                                     f"({PIPELINE_FILE}:{spec.line}); `mlv run` versions it in {lockfile.NAME}, "
                                     "so it is not added. Add the data the stage reads instead")


def select(graph: Graph, selection: Selection) -> Graph:
    if not selection.targets:
        return graph
    return graph.select(graph.resolve(selection.targets), downstream=selection.downstream)


def run(ws: Workspace, selection: Selection, options: RunOptions, *, cluster_file: Path | None = None,
        listener: Listener | None = None, loaded: tuple[Pipeline, Graph] | None = None) -> list[StageResult]:
    """Run the selected stages; ``loaded`` reuses an already loaded pipeline."""
    pipeline, graph = loaded or load(ws)
    config = load_config(cluster_file or ws.root / CLUSTER_FILE)
    if cluster_file is not None and not cluster_file.exists():
        raise UsageError(f"'{cluster_file}' does not exist; point --cluster at a dask-cluster.yaml")
    # the run lock keeps other runs out; the shared repo lock keeps `mlv gc` from deleting an
    # object a stage's output was just deduplicated against before mlv.lock names it
    with RunLock(ws), ws.lock():
        runner = Runner(ws, select(graph, selection), config, options,
                        pipeline_stages=frozenset(pipeline.stages), listener=listener, kinds=Registry())
        return runner.run()


def dry_run(ws: Workspace, selection: Selection, *, force: bool = False, cluster_file: Path | None = None,
            download: bool = True) -> list[Decision]:
    """The plan of ``mlv run --dry-run``; with ``workspace: remote``, deps by digest as a run plans them."""
    _, graph = load(ws)
    chosen = select(graph, selection)
    order = chosen.topological_order()
    upstream = {n: set(chosen.upstream_of([n])) - {n} for n in order}
    known = None
    config = load_config(cluster_file or ws.root / CLUSTER_FILE)
    if config.remote:
        from mlv.engine import remote_run

        remote_run.required(ws, config.source)
        known = remote_run.RemoteRun(ws, lockfile.load(ws.root), download=download, note=lambda text: None).digest
    return plan(ws, [chosen.stage(n) for n in order], upstream, force=force, known=known, no_download=not download)


def remote_fetcher(ws: Workspace) -> Fetch | None:
    """For ``mlv run``: outputs that ran before (in this clone's lock or run records) but are only
    on the default remote are fetched instead of run again — the run cache across clones.

    A remote that cannot be reached is reported once; the stages then run as they would without it.
    """
    if ws.config.default_remote is None:
        return None
    remote = None
    failed = False
    one_at_a_time = threading.Lock()  # stages are decided on Dask worker threads

    def fetch(outs: dict[str, Output]) -> bool:
        with one_at_a_time:
            return fetch_now(outs)

    def fetch_now(outs: dict[str, Output]) -> bool:
        nonlocal remote, failed
        if failed:
            return False
        from mlv.storage.remote import fetch as fetching
        from mlv.storage.remote import remotes
        from mlv.storage.workspace.references import Roots
        from mlv.storage.workspace.tracking import in_cache

        roots = Roots()
        for path, out in outs.items():
            roots.where.setdefault(out.digest, path)
            if out.nfiles is not None:
                roots.current_dirs.add(out.digest)
        try:
            remote = remote or remotes.connect(ws)
            return fetching.fetch(ws, remote, lambda: roots, records=False).ok and all(
                in_cache(ws, out.digest, out.nfiles is not None) for out in outs.values())
        except Exception as exc:  # noqa: BLE001 - the remote is a shortcut: without it the stages run
            failed = True
            why = exc if isinstance(exc, MlvError) else f"fetching from the remote failed ({type(exc).__name__}: {exc})"
            sys.stderr.write(f"note: {why}\n  stages whose outputs are only on the remote will run instead\n")
            return False

    return fetch


def locked_outputs(ws: Workspace) -> list:
    """The stage outputs ``mlv.lock`` names, as ``storage.checkout.Version`` values for ``mlv checkout``."""
    from mlv.storage.workspace.checkout import Version

    return [
        Version(ws.root / path, out.digest, out.nfiles is not None, out.size)
        for entry in lockfile.load(ws.root).values()
        for path, out in entry.outs.items()
    ]
