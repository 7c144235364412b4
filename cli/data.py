"""Data commands: init, add, status, checkout, fsck, gc."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from mlv.cli.main import command, emit_json, err, out, progress, workspace


@command("init")
def init(
    path: Annotated[Path, typer.Argument(help="Directory to turn into an mlv repo.")] = Path("."),
    no_scm: Annotated[bool, typer.Option("--no-scm", help="Use mlv without git: no ignores are written.")] = False,
) -> None:
    """Create .mlv/ (config and cache) here; safe to run twice. Run `git init` first (or pass --no-scm)."""
    from mlv.storage.errors import UsageError
    from mlv.storage.workspace import Workspace

    around = (where := path.resolve(), *where.parents)
    if not no_scm and not any((d / ".mlv").is_dir() or (d / ".git").exists() for d in around):  # nesting: init says
        raise UsageError(f"'{where}' is not inside a git repo, so `mlv init` could not keep the cache and its other "
                         "files out of git; run `git init` first, or pass `--no-scm` to use mlv without git")
    ws, created = Workspace.init(path)
    out.print(f"{'Initialized' if created else 'Already initialized:'} mlv repo in {ws.dot}")


@command("add")
def add(
    paths: Annotated[list[str], typer.Argument(help="Files or directories to track.")],
    json_: Annotated[bool, typer.Option("--json", help="Print the new pointers as JSON.")] = False,
) -> None:
    """Store PATHs in the cache and write PATH.mlv pointers (commit those to git)."""
    from mlv.storage.workspace import tracking

    ws = workspace()
    if (ws.root / "mlv.yaml").exists():  # checked before importing the pipeline machinery for nothing
        from mlv.pipelines import project

        project.refuse_outputs(ws, paths)
    results = tracking.add(ws, paths, progress=progress)
    if json_:
        emit_json([{"path": ws.rel(r.pointer.target), "pointer": ws.rel(r.pointer.file), "digest": str(r.pointer.digest),
                    "size": r.pointer.size, "nfiles": r.pointer.nfiles, "stored": r.stored, "hashed": r.hashed}
                   for r in results])
        return
    for r in results:
        what = f"{r.pointer.nfiles} files, " if r.pointer.is_dir else ""
        out.print(f"added {ws.rel(r.pointer.target)} ({what}{r.pointer.size} bytes, {r.stored} new objects) "
                  f"→ {ws.rel(r.pointer.file)}")
    changed = [ws.rel(path) for r in results for path in r.changed]
    if ws.in_git and changed:
        from mlv.cli.runprogress import git_add_hint

        out.print(git_add_hint(changed))


@command("status")
def status(
    paths: Annotated[Optional[list[str]], typer.Argument(help="Tracked paths (default: all).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    exit_code: Annotated[bool, typer.Option("--exit-code", help="Exit 1 if anything is not unchanged.")] = False,
) -> None:
    """Compare tracked data with its pointers (unchanged, modified, missing, not-in-cache) and list stale stages."""
    from mlv.storage.workspace import tracking

    ws = workspace()
    results = tracking.status(ws, paths)
    stages = _stage_status(ws) if not paths else []
    if json_:
        emit_json([r.to_dict() for r in results] + stages)
    else:
        if not results and not stages:
            out.print("nothing tracked; add data with `mlv add PATH`")
        for r in results:
            out.print(f"{r.state:>13}  {r.path}" + ("" if r.in_cache else "  (not in cache)"))
            for label, names in (("added", r.added), ("changed", r.changed), ("deleted", r.deleted)):
                for name in names[:20]:
                    out.print(f"{'':>15}{label}: {name}")
                if len(names) > 20:
                    out.print(f"{'':>15}… {len(names) - 20} more {label}")
        for s in stages:
            out.print(f"{s['state']:>13}  stage {s['stage']}" + (f" ({s['action']})" if s["state"] != "unchanged" else ""))
            for reason in s["reasons"]:
                out.print(f"{'':>15}{reason}")
    if exit_code and (any(r.state != "unchanged" for r in results) or any(s["state"] != "unchanged" for s in stages)):
        raise typer.Exit(1)


def _stage_status(ws) -> list[dict]:
    """Every stage of mlv.yaml, ``unchanged`` or ``stale`` with why (empty without a pipeline)."""
    if not (ws.root / "mlv.yaml").exists():  # checked before importing the engine (networkx) for nothing
        return []
    from mlv.pipelines import project

    return [
        {"stage": d.stage, "path": project.PIPELINE_FILE, "state": "unchanged" if d.action == "up-to-date" else "stale",
         "action": d.action, "reasons": d.reasons}
        for d in project.dry_run(ws, project.Selection())
    ]


@command("checkout")
def checkout(
    paths: Annotated[Optional[list[str]], typer.Argument(help="Tracked paths (default: all).")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Discard changes that are not in the store.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Make the workspace match the pointer files (bring back any committed version)."""
    from mlv.pipelines import project
    from mlv.storage.workspace.checkout import checkout as run_checkout

    ws = workspace()
    report = run_checkout(ws, paths, force=force, extra=project.locked_outputs(ws), progress=progress)
    for note in report.notes:
        err.print(f"warning: {note}")
    if json_:
        emit_json(report.to_dict())
        return
    for p in report.restored:
        out.print(f"restored   {p}")
    for p in report.removed:
        out.print(f"removed    {p}")
    if not report.restored and not report.removed:
        out.print("workspace already matches the pointers")


REMOTE = typer.Option("--remote", "-r", help="Check this remote instead of the local store.", show_default=False)


def project_roots(ws, *, all_commits: bool = False):
    """What the repo still needs (pointers, mlv.lock outputs, run records' objects): ``mlv.engine.roots``."""
    from mlv.engine.roots import roots

    return roots(ws, all_commits=all_commits)


@command("fsck")
def fsck(
    remote: Annotated[Optional[str], REMOTE] = None,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Re-hash every object, manifest and run record; report damage and the pointers it breaks (exit 1).

    With --remote NAME: download and re-hash everything on the remote, and check that what the
    workspace references is there; it writes nothing there but markers of damaged copies, so
    every clone's next push repairs them."""
    from mlv.storage.workspace.fsck import fsck as run_fsck

    ws = workspace()
    if remote is not None:
        _fsck_remote(ws, remote, json_)
        return
    report = run_fsck(ws, project_roots(ws), progress=progress)
    records = []
    if (ws.dot / "runs").is_dir():  # run records are the engine's: checked only where runs happened
        from mlv.engine.provenance import check_records

        records = check_records(ws)
    if json_:
        emit_json({**report.to_dict(), "ok": report.ok and not records, "records": [r.to_dict() for r in records]})
    else:
        _print_problems(report.problems)
        for r in records:
            out.print(f"{r.kind:>10}  {r.run_id}  {r.path}  {r.detail}")
        problems = len(report.problems) + len(records)
        out.print(f"checked {report.objects} objects ({report.bytes} bytes)"
                  + (" and the run records" if (ws.dot / "runs").is_dir() else "")
                  + (": ok" if not problems else f": {problems} problem(s)"))
    if not report.ok or records:
        raise typer.Exit(1)


def _fsck_remote(ws, name: str, json_: bool) -> None:
    from mlv.storage.remote import fsck as remote_fsck, remotes

    report = remote_fsck.fsck(ws, remotes.connect(ws, name), project_roots(ws), progress=progress)
    if json_:
        emit_json({**report.to_dict(), "remote": name})
    else:
        _print_problems(report.problems)
        for p in report.superseded:  # a bad copy beside a good one breaks nothing
            out.print(f"{'superseded':>10}  {p.digest}  {p.where}  {p.detail} (a good copy exists; "
                      f"`mlv gc --remote {name}` removes this one)")
        for note in report.notes:
            err.print(f"warning: {note}")
        out.print(f"checked {report.objects} objects ({report.bytes} bytes) on remote '{name}'"
                  + (": ok" if report.ok else f": {len(report.problems)} problem(s)"))
    if not report.ok:
        raise typer.Exit(1)


def _print_problems(problems) -> None:
    for p in problems:
        breaks = f"; breaks {', '.join(p.breaks)}" if p.breaks else ""
        out.print(f"{p.kind:>10}  {p.digest}  {p.where}  {p.detail}{breaks}")


@command("gc")
def gc(
    remote: Annotated[Optional[str], typer.Option("--remote", "-r", help="Remove unreferenced objects from this "
                                                  "remote instead of the local store.", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed; remove nothing.")] = False,
    all_commits: Annotated[bool, typer.Option("--all-commits", help="Keep what any git commit references.")] = False,
    grace: Annotated[Optional[int], typer.Option(min=0, help="Spare unreferenced objects younger than this (seconds).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Remove cached objects that nothing references (workspace pointers and mlv.lock).

    With --remote NAME: remove them from that remote (run records its catalogs name stay, and
    their logs); packs holding dead objects are rewritten."""
    from mlv.storage.workspace.gc import gc as run_gc

    if remote is not None:
        _gc_remote(remote, all_commits=all_commits, dry_run=dry_run, grace=grace, json_=json_)
        return
    ws = workspace()
    report = run_gc(ws, project_roots(ws, all_commits=all_commits), dry_run=dry_run, grace=grace)
    if json_:
        emit_json(report.to_dict())
        return
    verb = "would free" if dry_run else "freed"
    out.print(f"{verb} {report.freed_bytes} bytes in {len(report.removed)} objects; kept {report.kept}"
              + (f"; rewrote {report.repacked} packs" if report.repacked else ""))


def _gc_remote(name: str, *, all_commits: bool, dry_run: bool, grace: int | None, json_: bool) -> None:
    from mlv.storage.remote import gc as remote_gc, remotes

    ws = workspace()
    from mlv.engine.roots import record_objects

    report = remote_gc.gc(ws, remotes.connect(ws, name), project_roots(ws, all_commits=all_commits),
                          named_by=record_objects, dry_run=dry_run, grace=grace)
    if json_:
        emit_json(report.to_dict())
    else:
        for key, why in report.skipped.items():
            err.print(f"warning: {key} on remote '{name}' was kept: {why}")
        for copy in report.damaged_removed:
            out.print(f"{'would remove' if dry_run else 'removed'} damaged copy {copy} (a good copy is kept)")
        removed, rewrote = ("would remove", "would rewrite") if dry_run else ("removed", "rewrote")
        out.print(f"{removed} {len(report.removed)} objects ({report.freed_bytes} bytes) from remote '{name}'; "
                  f"{rewrote} {report.repacked} packs; kept {report.kept}")
    if report.skipped:  # damage found on the way: `mlv fsck --remote` says more
        raise typer.Exit(1)
