"""Plot commands: ``mlv plots show`` and ``mlv plots diff``.

Thin as the others: parse, call ``mlv.pipelines.plots``, print the path of the page written
(``DIR/index.html``), or with ``plots show --json`` the Vega-Lite specs instead of a page.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mlv.cli.main import app, command, emit_json, err, group, out, workspace

plots_app = group("Draw the plot files stages declare: one self-contained HTML page of SVG charts.")
app.add_typer(plots_app, name="plots")

OutDir = Annotated[str, typer.Option("-o", "--out", metavar="DIR", help="Folder for index.html (created).")]


@command("show", group=plots_app)
def plots_show(
    targets: Annotated[Optional[list[str]], typer.Argument(help="Plot files or stages (default: every declared "
                                                           "plot); any CSV/TSV/JSON file may be named too.")] = None,
    out_dir: OutDir = "mlv_plots",
    json_: Annotated[bool, typer.Option("--json", help="Print the Vega-Lite specs (data inline); no page.")] = False,
) -> None:
    """Draw the workspace's plot files into DIR/index.html and print its path."""
    from mlv.pipelines import plots

    ws = workspace()
    found, missing = plots.show(ws, targets)
    for path in missing:
        err.print(f"note: plot file '{path}' is not on disk; `mlv run` (or `mlv checkout`) writes it")
    if json_:
        _emit_specs(plots, found)
        return
    out.print(str(plots.write_page(found, out_dir, "mlv plots")))


@command("diff", group=plots_app)
def plots_diff(
    revs: Annotated[Optional[list[str]], typer.Argument(help="Git revisions to compare (default: HEAD and the "
                                                        "workspace; one REV: it and the workspace).")] = None,
    out_dir: OutDir = "mlv_plots",
    targets: Annotated[Optional[list[str]], typer.Option("--targets", help="Only these plot files.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the Vega-Lite specs (data inline); no page.")] = False,
) -> None:
    """Overlay the plot files of several revisions (a colour each) into DIR/index.html and print its path."""
    from mlv.pipelines import plots

    ws = workspace()
    found = plots.diff(ws, revs, targets=[ws.rel(ws.resolve(t, must_exist=False)) for t in targets or []])
    if json_:
        _emit_specs(plots, found)
        return
    out.print(str(plots.write_page(found, out_dir, "mlv plots diff")))


def _emit_specs(plots, found: list) -> None:
    for plot in found:
        plots.check_columns(plot)
    emit_json([{"path": p.path, "props": p.props.to_dict(), "spec": p.spec()} for p in found])
