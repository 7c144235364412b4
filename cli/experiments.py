"""Experiment commands: ``mlv exp show`` and ``mlv metrics show``.

Thin as the others: parse, call ``mlv.engine.experiments``, render — a table that fits the
terminal for people, JSON with ``--json``; on a terminal, rich makes the workspace's rows bold.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from mlv.cli.main import app, command, emit_json, err, group, out, workspace
from mlv.cli.trace import metrics_app

exp_app = group("Experiments: the runs of the pipeline's stages, their params and metrics.")
app.add_typer(exp_app, name="exp")

Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
_CELL = 16  # widest a param or metric cell is drawn; --json has every character


@command("show", group=exp_app)
def exp_show(
    json_: Json = False,
    sort: Annotated[Optional[str], typer.Option("--sort", metavar="METRIC", help="Highest METRIC first; runs "
                                                "without it last.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Also runs of stages no longer in mlv.yaml.")] = False,
) -> None:
    """The runs of the pipeline's stages, one row per distinct fingerprint, newest first; * marks the workspace's."""
    from mlv.engine.experiments import experiments

    ws = workspace()
    found = experiments(ws, stages=None if all_ else _stage_names(ws), sort=sort)
    if json_:
        emit_json([e.to_dict() for e in found])
    elif not found:
        out.print("no runs yet: `mlv run` makes one per stage" + ("" if all_ else " (--all: runs of removed stages)"))
    else:
        _print_table(found, sort)


@command("show", group=metrics_app)
def metrics_show(json_: Json = False) -> None:
    """The metrics files of every stage in mlv.yaml, as they are on disk now."""
    from mlv.engine.experiments import workspace_metrics
    from mlv.pipelines.schema import load_pipeline

    ws = workspace()
    paths = [p for spec in load_pipeline(ws.root / "mlv.yaml", root=ws.root).stages.values() for p in spec.metrics]
    found = workspace_metrics(ws, paths)
    for path in paths:
        if path not in found:
            err.print(f"note: '{path}' is not on disk; `mlv run` (or `mlv checkout`) writes it")
    if json_:
        emit_json(found)
        return
    rows = [("path", "metric", "value")] + [(path, name or "-", _text(value))
                                           for path, values in found.items() for name, value in values.items()]
    if len(rows) == 1:
        out.print("no metrics on disk")
        return
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        out.print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _stage_names(ws) -> set[str]:
    """The stage names written in mlv.yaml (a sweep's generated stages go by them); validating the whole file
    would cost more than the table (it loads the DAG machinery), and `mlv run` says what is wrong with it."""
    import yaml

    from mlv.storage import yamlfile
    from mlv.storage.errors import MlvError, UsageError

    try:
        doc = yamlfile.load(yamlfile.read_text(ws.root / "mlv.yaml", source="mlv.yaml", limit=yamlfile.PIPELINE_BYTES),
                            source="mlv.yaml")
    except FileNotFoundError:
        raise UsageError("no mlv.yaml here, so no pipeline stages; `mlv exp show --all` lists every run") from None
    except (yaml.YAMLError, MlvError) as exc:
        raise UsageError(f"mlv.yaml cannot be read ({exc}); fix it (`mlv run` says where), or use --all") from None
    stages = doc.get("stages") if isinstance(doc, dict) else None
    return {str(name) for name in stages} if isinstance(stages, dict) else set()


def _print_table(found: list, sort: str | None) -> None:
    """A table that fits the terminal: fixed columns, then the params and metrics that fit (the rest named below).

    Drawn by hand rather than with rich's Table, which takes seconds to lay out a thousand rows;
    on a terminal, rich only makes the workspace's rows bold.
    """
    import shutil

    shown, hidden = _columns(found, sort, shutil.get_terminal_size((100, 24)).columns)
    both = {n for k, n in shown if k == "params"} & {n for k, n in shown if k == "metrics"}
    header = ["", "run", "stage", "created", "status"] + [f"{k}.{n}" if n in both else n for k, n in shown]
    rows = [header] + [
        ["*" if e.current else "", e.run_id.rsplit("-", 1)[-1], e.stage, _created(e.started), e.status]
        + [_clip(_text(getattr(e, kind).get(name, ""))) for kind, name in shown] for e in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 5 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             .rstrip() for row in rows]
    lines.insert(1, "─" * len(max(lines, key=len)))
    if out.is_terminal:
        from rich.console import Console

        console = Console(file=sys.stdout, highlight=False)
        for line, e in zip(lines, [None, None, *found]):
            console.print(line, style="bold" if e is not None and e.current else None, markup=False)
    else:
        out.print("\n".join(lines))
    if hidden:
        names = "; ".join(f"{kind}: " + ", ".join(n for k, n in hidden if k == kind)
                          for kind in ("params", "metrics") if any(k == kind for k, _ in hidden))
        out.print(f"{len(hidden)} more column(s) do not fit ({names}); widen the terminal, or use --json")
    out.print("* the workspace's runs (mlv.lock)" + (f"; sorted by {sort}" if sort else ""))


def _clip(text: str) -> str:
    return text if len(text) <= _CELL else text[:_CELL - 1] + "…"


def _columns(found: list, sort: str | None, width: int) -> tuple[list, list]:
    """The param and metric columns that fit ``width``, most telling first; the rest are named below the table.

    Priority: the sort metric, then metrics and params whose values differ between rows, then the rest.
    """
    from mlv.engine.experiments import metric_names

    params = sorted({name for e in found for name in e.params})
    candidates = [("params", n) for n in params] + [("metrics", n) for n in metric_names(found)]

    def size(kind: str, name: str) -> int:
        cells = [len(_text(getattr(e, kind).get(name, ""))) for e in found]
        return min(max([len(name) + (kind == "params") * 7, *cells]), _CELL) + 2

    def rank(column: tuple[str, str]) -> tuple:
        kind, name = column
        values = {repr(getattr(e, kind).get(name)) for e in found}
        return (not (kind == "metrics" and name == sort), len(values) == 1, kind != "metrics")

    # each column takes its cells and two spaces; the mark, run, stage, created and status columns come first
    fixed = 1 + 8 + max(len(e.stage) for e in found) + 16 + max(6, *(len(e.status) for e in found)) + 2 * 5
    budget, chosen = width - fixed, set()
    for column in sorted(candidates, key=rank):
        need = size(*column)
        if need <= budget:
            chosen.add(column)
            budget -= need
    return [c for c in candidates if c in chosen], [c for c in candidates if c not in chosen]


def _created(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _text(value: object) -> str:
    """A cell: numbers to 6 significant digits, true/false as YAML writes them, nothing as empty."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)
