"""Pipeline commands: run, dag, show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from mlv.cli.main import command, emit_json, err, out, workspace


@command("run")
def run(
    targets: Annotated[list[str] | None, typer.Argument(help="Stages (or outputs) to bring up to date, with their upstream.")] = None,
    downstream: Annotated[bool, typer.Option("--downstream", help="Run the targets and everything built from them.")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Re-run even if up to date or cached.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (run / cached / up-to-date); run nothing.")] = False,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="At most this many stages at once.")] = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed stage.")] = False,
    cluster: Annotated[Path | None, typer.Option("--cluster", help="dask-cluster.yaml naming the scheduler to use.")] = None,
    no_download: Annotated[bool, typer.Option("--no-download", help="With 'workspace: remote': leave outputs on the "
                                              "remote (mlv.lock and run records still name them; `mlv pull` brings them).")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Show neither the stages' output nor progress; "
                                        "only errors (a failed stage's last lines) and the exit code.")] = False,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE", help="Set a param first (repeatable), where it is defined: mlv.yaml's params: "
        "or params.yaml, keeping comments and layout. VALUE is YAML: 8, 0.1, true, text. An undefined KEY writes "
        "nothing (exit 2); if the run then fails, the new value stays, as with `dvc exp run --set-param`.")] = None,
) -> None:
    """Run the pipeline in mlv.yaml on Dask: in parallel, skipping what is up to date or cached.

    Stages' output streams to stdout as they print (prefixed 'stage | ' while several run);
    progress goes to stderr; the end names the files to `git add` that the run changed."""
    from mlv.cli.runprogress import RunProgress, git_add_hint
    from mlv.engine.runresults import RunOptions
    from mlv.pipelines import project

    ws = workspace()
    selection = project.Selection(tuple(targets or ()), downstream)
    if set_:
        _set_params(ws, set_, dry_run=dry_run)
    if dry_run:
        decisions = project.dry_run(ws, selection, force=force, cluster_file=cluster, download=not no_download)
        if json_:
            emit_json([d.to_dict() for d in decisions])
        for d in decisions if not json_ else ():
            out.print(f"{d.action:>11}  {d.stage}" + (f"  — {'; '.join(d.reasons)}" if d.reasons else ""))
        return
    loaded = project.load(ws)
    with RunProgress(project.select(loaded[1], selection).topological_order(), quiet=quiet, json=json_) as progress:
        options = RunOptions(force=force, jobs=jobs, fail_fast=fail_fast, fetch=project.remote_fetcher(ws),
                             download=not no_download, stream=not quiet)
        results = project.run(ws, selection, options,
                              cluster_file=cluster, listener=progress, loaded=loaded)
    failed = [r for r in results if r.state == "failed"]
    if json_:
        emit_json([r.to_dict() for r in results])
    else:
        if not quiet:
            counts = {s: sum(r.state == s for r in results) for s in ("done", "cached", "up-to-date", "failed", "skipped")}
            out.print(", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing to run")
        _report_failures(failed)
        if progress.changed and not quiet:
            out.print(git_add_hint(progress.changed))
    if failed:
        raise typer.Exit(1)


def _report_failures(failed) -> None:
    """Each failed stage with why and its last lines (stderr): shown even with --quiet."""
    for r in failed:
        how = f"{'; '.join(r.reasons)}" if r.exit_code in (0, None) and r.reasons else f"exit status {r.exit_code}"
        if r.exit_code is None:  # it never started (its deps could not reach the worker): one line says why
            err.print(f"\nstage '{r.stage}' failed: {how}")
            continue
        err.print(f"\nstage '{r.stage}' failed ({how}); last lines of its output:")
        err.print("\n".join(f"  | {line}" for line in r.log_tail.splitlines()) or "  | (no output)")
        err.print(f"  full record: `mlv show {r.stage}`")


def _set_params(ws, options: list[str], *, dry_run: bool) -> None:
    """``run --set``: write each param where it is defined (undone if the pipeline then fails to load)."""
    from mlv.pipelines import params_edit, project
    from mlv.storage.errors import UsageError

    assignments = [params_edit.parse(option) for option in options]
    if dry_run:
        raise UsageError("--set writes the params file and --dry-run changes nothing; drop one of them")
    project.load(ws)  # a broken mlv.yaml is named by the schema, before anything is written
    for edit in params_edit.apply(ws.root, assignments, check=lambda: project.load(ws)):
        err.print(f"set {edit.key} = {json.dumps(edit.new, default=str)} in {edit.file}:{edit.line} (was {json.dumps(edit.old, default=str)})")


@command("dag")
def dag(
    targets: Annotated[list[str] | None, typer.Argument(help="Draw only these stages and their upstream.")] = None,
    dot: Annotated[bool, typer.Option("--dot", help="Graphviz DOT.")] = False,
    mermaid: Annotated[bool, typer.Option("--mermaid", help="Mermaid flowchart.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Nodes and edges as JSON.")] = False,
) -> None:
    """Draw the pipeline's stage graph."""
    from mlv.pipelines import project

    _, graph = project.load(workspace(), check_deps=False)
    graph = project.select(graph, project.Selection(tuple(targets or ())))
    if json_:
        emit_json(graph.to_dict())
    else:
        out.print(graph.to_dot() if dot else graph.to_mermaid() if mermaid else graph.to_ascii())


@command("show")
def show(
    target: Annotated[str, typer.Argument(help="A stage name (its latest run) or a run id.")],
    json_: Annotated[bool, typer.Option("--json", help="The run record as JSON.")] = False,
) -> None:
    """Print a run record (for a stage, its latest run) with its captured output."""
    from mlv.engine.records import RunIndex
    from mlv.storage.store.digest import parse
    from mlv.storage.errors import UsageError

    ws = workspace()
    index = RunIndex(ws)
    record = index.latest(target) or (index.read(target) if "/" not in target and index.exists(target) else None)
    if record is None and "/" not in target:
        from mlv.engine.provenance import ProvenanceIndex

        matches = ProvenanceIndex(ws).match_run(target)  # a unique prefix of a run id
        if len(matches) > 1:
            raise UsageError(f"'{target}' is the start of {len(matches)} run ids: {', '.join(matches[:8])}; "
                             "give more characters")
        record = index.read(matches[0]) if matches else None
    if record is None:
        raise UsageError(f"no run of stage '{target}' and no run id '{target}' is recorded; run it with `mlv run`")
    source = record  # a reuse event ran nothing: the output is the original run's
    if record.reused_from and index.exists(record.reused_from):
        source = index.read(record.reused_from)
    log = ws.store.read_bytes(parse(source.log)).decode(errors="replace") if source.log else ""
    if json_:
        emit_json({**record.to_dict(), "output": log})
        return
    from mlv.cli.recordview import render

    render(record.to_dict(), output=log, source=None if source is record else source.run_id)
