"""Experiment commands: ``mlv exp show`` and ``mlv metrics show``.

Thin as the others: parse, call ``mlv.engine.experiments``, render — a table that fits the
terminal for people, JSON with ``--json``. rich is imported only to draw the table.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from mlv.cli.main import app, command, emit_json, err, out, workspace
from mlv.cli.trace import metrics_app

exp_app = typer.Typer(help="Experiments: the runs of the pipeline's stages, their params and metrics.",
                      no_args_is_help=True, add_completion=False)
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
    from mlv.pipelines.schema import load_pipeline

    stages = load_pipeline(ws.root / "mlv.yaml", root=ws.root).stages
    return set(stages) | {name.split("@", 1)[0] for name in stages}


def _print_table(found: list, sort: str | None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout)
    shown, hidden = _columns(found, sort, console.width)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for header, style in (("", "bold"), ("run", ""), ("stage", ""), ("created", "dim"), ("status", "")):
        table.add_column(header, style=style, no_wrap=True)
    both = {n for k, n in shown if k == "params"} & {n for k, n in shown if k == "metrics"}
    for kind, name in shown:
        table.add_column(f"{kind}.{name}" if name in both else name, header_style="yellow" if kind == "params" else "cyan", justify="right",
                         no_wrap=True, max_width=_CELL, overflow="ellipsis")
    for e in found:
        cells = ["*" if e.current else "", e.run_id.rsplit("-", 1)[-1], e.stage, _created(e.started), e.status]
        cells += [_text(getattr(e, kind).get(name, "")) for kind, name in shown]
        table.add_row(*cells, style="bold" if e.current else None)
    console.print(table)
    if hidden:
        names = "; ".join(f"{kind}: " + ", ".join(n for k, n in hidden if k == kind)
                          for kind in ("params", "metrics") if any(k == kind for k, _ in hidden))
        out.print(f"{len(hidden)} more column(s) do not fit ({names}); widen the terminal, or use --json")
    out.print("* the workspace's runs (mlv.lock)" + (f"; sorted by {sort}" if sort else ""))


def _columns(found: list, sort: str | None, width: int) -> tuple[list, list]:
    """The param and metric columns that fit ``width``, most telling first; the rest are named below the table.

    Priority: the sort metric, then metrics and params whose values differ between rows, then the rest.
    """
    from mlv.engine.experiments import metric_names

    params = sorted({name for e in found for name in e.params})
    candidates = [("params", n) for n in params] + [("metrics", n) for n in metric_names(found)]

    def size(kind: str, name: str) -> int:
        cells = [len(_text(getattr(e, kind).get(name, ""))) for e in found]
        return min(max([len(name), *cells]), _CELL) + 2

    def rank(column: tuple[str, str]) -> tuple:
        kind, name = column
        values = {repr(getattr(e, kind).get(name)) for e in found}
        return (not (kind == "metrics" and name == sort), len(values) == 1, kind != "metrics")

    # each column takes its cells plus one space a side; the mark, run, stage, created and status columns come first
    fixed = (1 + 8 + max(len(e.stage) for e in found) + 16 + max(6, *(len(e.status) for e in found))) + 2 * 5 + 2
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
