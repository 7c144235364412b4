"""``mlv import-dvc``: turn the DVC repo here into an mlv repo (pipeline, pointers, data, lock)."""

from __future__ import annotations

from typing import Annotated

import typer
from mlv.cli.main import command, emit_json, err, out


@command("import-dvc")
def import_dvc(
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace an existing mlv.yaml and .mlv pointers.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import the DVC repo in the current directory: dvc.yaml → mlv.yaml, each .dvc → a .mlv pointer, data
    from DVC's cache (md5-checked) into mlv's store, and dvc.lock → mlv.lock for the stages still up to date.
    Runs `mlv init` first when needed; DVC's files are left as they are. Exit 1 if some data could not be
    imported: bytes that did not match their md5, or data that is only on a DVC remote (`dvc pull` it first)."""
    from pathlib import Path

    from mlv.pipelines.importdvc import import_dvc as run_import

    report = run_import(Path.cwd(), force=force)
    if json_:
        emit_json(report.to_dict())
    else:
        _render(report)
    if report.mismatches or report.not_imported:
        raise typer.Exit(1)


def _render(report) -> None:
    if report.initialized:
        out.print("initialized an mlv repo here (.mlv/)")
    if report.pipeline:
        out.print(f"wrote {report.pipeline} from dvc.yaml")
    for p in report.pointers:
        what = f"{p['nfiles']} files, " if p["nfiles"] is not None else ""
        out.print(f"imported {p['path']} ({what}{p['size']} bytes) from {p['from']} → {p['pointer']}")
    for s in report.stages:
        state = s.get("action", "run")
        out.print(f"{state:>11}  stage {s['stage']}" + ("  (mlv.lock from dvc.lock)" if s["imported"] else ""))
        for reason in s["reasons"] if state != "up-to-date" else ():
            out.print(f"{'':>13}{reason}")
    for n in report.not_imported:
        out.print(f"not imported: {n['path']}: {n['why']}")
    if report.not_imported:
        err.print("some data was not imported: `dvc pull` it (or check it out) and run `mlv import-dvc --force` "
                  "again, or `mlv add` it yourself")
    if report.notes:
        out.print("not carried over as it was:")
        for note in report.notes:
            out.print(f"  {note}")
    for m in report.mismatches:
        err.print(f"md5 mismatch: {m.path}: {m.source} hashes to {m.actual}, DVC recorded {m.expected}; not imported")
