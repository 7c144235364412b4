"""Sharing through remotes: push, fetch, pull."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from mlv.cli.main import command, emit_json, err, out, progress, workspace

TARGETS = typer.Argument(help="Tracked paths, stage names or stage outs (default: everything the "
                              "workspace's pointers and mlv.lock reference).", show_default=False)
REMOTE = typer.Option("--remote", "-r", help="Remote name (default: the default remote).")
JOBS = typer.Option("--jobs", "-j", min=1, max=256, help="Concurrent transfers (default: 4 per CPU, at least 8).")
DRY_RUN = typer.Option("--dry-run", help="Say what would be transferred; transfer nothing.")
JSON = typer.Option("--json", help="Machine-readable report.")


@command("push")
def push(
    targets: Annotated[list[str] | None, TARGETS] = None,
    remote: Annotated[str | None, REMOTE] = None,
    jobs: Annotated[int | None, JOBS] = None,
    all_commits: Annotated[bool, typer.Option("--all-commits", help="Also what any git commit references.")] = False,
    dry_run: Annotated[bool, DRY_RUN] = False,
    json_: Annotated[bool, JSON] = False,
) -> None:
    """Upload what TARGETS need (tracked paths, stage names or stage outs; default: everything the
    pointers and mlv.lock reference) and every run record the remote lacks. Small objects travel in packs."""
    from mlv.engine import roots as needs
    from mlv.storage.workspace import references
    from mlv.storage.remote import state as remote_state
    from mlv.storage.workspace.config import remote_for

    ws = workspace()
    config = remote_for(ws.config, remote)
    roots = needs.roots_of(ws, targets) if targets else needs.roots(ws, all_commits=all_commits)
    if remote_state.has_everything(ws.dot / "state.db", config, roots, references.run_ids(ws)):
        # known to be there from the last listing: no need to load the client stack and ask again
        report = remote_state.TransferReport(config.name, "push", dry_run, present=len(roots.where))
        if json_:
            _render(report, json_)
        else:  # say whose word it is: damage marked since by another clone shows at the next listing
            ago = time.time() - remote_state.load(ws.dot / "state.db", config).listed
            out.print(f"nothing to push: remote '{config.name}' has everything (as this clone saw it {_ago(ago)} ago)")
        return
    from mlv.storage.remote import push as pushing
    from mlv.storage.remote import remotes

    target = remotes.connect(ws, remote, jobs=jobs or _default_jobs())
    report = pushing.push(ws, target, roots, dry_run=dry_run, progress=_progress, check_record=_check_record)
    _render(report, json_)


@command("fetch")
def fetch(
    targets: Annotated[list[str] | None, TARGETS] = None,
    remote: Annotated[str | None, REMOTE] = None,
    jobs: Annotated[int | None, JOBS] = None,
    dry_run: Annotated[bool, DRY_RUN] = False,
    json_: Annotated[bool, JSON] = False,
) -> None:
    """Download into the local store what TARGETS need (default: everything the pointers and mlv.lock
    reference), plus the remote's run records. Every byte is checked against its digest first."""
    report = _fetch(targets, remote, jobs, dry_run)
    _render(report, json_)


@command("pull")
def pull(
    targets: Annotated[list[str] | None, TARGETS] = None,
    remote: Annotated[str | None, REMOTE] = None,
    jobs: Annotated[int | None, JOBS] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Discard workspace changes that are not in the store.")] = False,
    dry_run: Annotated[bool, DRY_RUN] = False,
    json_: Annotated[bool, JSON] = False,
) -> None:
    """Fetch, then check out TARGETS (default: all): make the workspace match its pointers and mlv.lock."""
    from mlv.pipelines import project
    from mlv.storage.workspace.checkout import checkout

    locked = project.locked_outputs(workspace())  # a lock that breaks the paths rule stops the pull before any transfer
    report = _fetch(targets, remote, jobs, dry_run)
    if dry_run:
        _render(report, json_)
        return
    ws = workspace()
    restored = checkout(ws, _paths_of(ws, targets), force=force, extra=locked, skip_missing=True, progress=progress)
    for note in restored.notes:
        err.print(f"warning: {note}")
    if json_:
        emit_json({**report.to_dict(), "checkout": restored.to_dict()})
    else:
        _render(report, False, exit_on_problems=False)
        for p in restored.restored:
            out.print(f"restored   {p}")
        for p in restored.removed:
            out.print(f"removed    {p}")
        for p in restored.skipped:
            out.print(f"skipped    {p} (not all of it is in the store)")
    if not report.ok or restored.skipped:
        raise typer.Exit(1)


def _paths_of(ws, targets: list[str] | None) -> list[str] | None:
    """Targets as checkout knows them: a stage name becomes the paths of its outs in mlv.lock."""
    if not targets:
        return targets
    from mlv.engine.roots import locked

    stages = locked(ws)
    paths: list[str] = []
    for target in targets:
        paths += [str(ws.root / path) for path in stages[target]] if target in stages else [target]
    return paths


def _fetch(targets, remote, jobs, dry_run):
    from mlv.engine import roots as needs
    from mlv.storage.remote import fetch as fetching
    from mlv.storage.remote import remotes

    ws = workspace()
    source = remotes.connect(ws, remote, jobs=jobs or _default_jobs())
    if targets:
        needs.roots_of(ws, targets)  # a bad target is refused before anything is fetched

    def roots():  # after the run records arrived: their logs are roots too
        return needs.roots_of(ws, targets) if targets else needs.roots(ws)

    report = fetching.fetch(ws, source, roots, dry_run=dry_run, progress=_progress, check_record=_check_record)
    if report.records and not dry_run:
        from mlv.engine.provenance import ProvenanceIndex

        ProvenanceIndex(ws)  # indexes the new records: the run cache and `mlv trace` see them at once
    return report


def _check_record(run_id: str, data: bytes) -> None:
    """A run record's bytes must parse and match their record_digest (``RecordCorrupt`` otherwise)."""
    from mlv.engine.records import loads

    loads(data, path=f".mlv/runs/{run_id}.json", run_id=run_id)


def _render(report, json_: bool, *, exit_on_problems: bool = True) -> None:
    if json_:
        emit_json(report.to_dict())
    else:
        verb = {"push": ("pushed", "to"), "fetch": ("fetched", "from")}[report.direction]
        would = "would have " if report.dry_run else ""
        if report.objects or report.records:
            out.print(f"{would}{verb[0]} {report.objects} objects ({_size(report.bytes)}) and {report.records} run "
                      f"records {verb[1]} remote '{report.remote}'")
        elif report.ok:
            out.print(f"nothing to {report.direction}: remote '{report.remote}' "
                      + ("has everything" if report.direction == "push" else "has nothing this workspace lacks"))
        _problems(report)
    for note in report.notes:
        err.print(f"warning: {note}")
    if exit_on_problems and not report.ok:
        raise typer.Exit(1)


def _problems(report) -> None:
    if report.missing:
        side = "the local store" if report.direction == "push" else f"remote '{report.remote}'"
        first = list(report.missing.items())[:5]
        err.print(f"error: {len(report.missing)} object(s) are not in {side}, so they were not "
                  + ("pushed" if report.direction == "push" else "fetched") + ":")
        for digest, where in first:
            err.print(f"  {digest} (named by {where})")
        err.print("  Push them from a clone that has them (`mlv push`), or re-add the data."
                  if report.direction == "fetch" else "  Re-add the data or pull it from where it is, then push again.")
    if report.rejected:
        err.print(f"error: {len(report.rejected)} object(s) or run record(s) were refused:")
        for what, why in list(report.rejected.items())[:5]:
            err.print(f"  {what}: {why}")


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _default_jobs() -> int:
    return max(8, 4 * (os.cpu_count() or 1))


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


@contextmanager
def _progress(description: str, total_bytes: int, total_objects: int) -> Iterator[Callable[[int, int], None] | None]:
    """Bytes and objects per second on a terminal, for transfers worth watching; else nothing."""
    if not err.is_terminal or (total_bytes < 8 * 1024 * 1024 and total_objects < 1000):
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    objects = TextColumn("{task.fields[objects]}/{task.fields[total_objects]} objects ({task.fields[rate]}/s)")
    with Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), objects,
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total_bytes, objects=0, total_objects=total_objects, rate="0")
        done = 0

        def advance(nbytes: int, nobjects: int) -> None:
            nonlocal done
            done += nobjects
            elapsed = bar.tasks[0].elapsed or 0
            rate = f"{done / elapsed:.0f}" if elapsed > 0 else "0"
            bar.update(task, advance=nbytes, objects=done, rate=rate)

        yield advance

