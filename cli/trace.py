"""Provenance commands: trace (a tree, JSON, or an HTML picture), log, params diff, metrics diff.

Thin as the others: parse, call ``mlv.engine.lineage`` / ``history`` / ``diffs``, render a
tree or a table for people and JSON with ``--json``. Engine modules are imported inside
the command bodies so ``mlv --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mlv.cli.main import app, command, emit_json, err, group, out, workspace

params_app = group("Compare params across git revisions.")
metrics_app = group("Show the metrics on disk; compare them across git revisions.")
app.add_typer(params_app, name="params")
app.add_typer(metrics_app, name="metrics")

Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@command("trace")
def trace(
    target: Annotated[Optional[str], typer.Argument(help="A path (its current version), an object digest or hex prefix, or a run id.")] = None,
    rev: Annotated[Optional[str], typer.Option("--rev", help="Trace PATH as it was at this git revision.")] = None,
    downstream: Annotated[bool, typer.Option("--downstream", help="Everything built from TARGET, instead of what it came from.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Re-hash every hop's object and re-read every run record.")] = False,
    json_: Json = False,
    reindex: Annotated[bool, typer.Option("--reindex", help="Rebuild the provenance index from the run records first.")] = False,
    row: Annotated[Optional[int], typer.Option("--row", min=0, help="Trace row N (from 0) of a prediction file, or of a "
                                               "directory of them counted across its files in name order.")] = None,
    html: Annotated[Optional[str], typer.Option(
        "--html", metavar="FILE", help="Draw the graph into FILE, one self-contained HTML page (inline SVG, no "
        "scripts), and print its path instead of the tree.")] = None,
) -> None:
    """Show where an artifact came from, back to the data added with `mlv add` (or, with --downstream, what was built from it)."""
    from mlv.engine import lineage
    from mlv.engine.provenance import ProvenanceIndex
    from mlv.storage.errors import UsageError

    ws = workspace()
    if reindex:
        report = ProvenanceIndex(ws, sync=False).reindex()
        for p in report.broken:
            err.print(f"warning: {p.detail}")
        if target is None:
            emit_json(report.to_dict()) if json_ else out.print(
                f"indexed {report.records} run records and {report.added} pointer versions"
                + (f"; {len(report.broken)} damaged record(s) left out" if report.broken else ""))
            raise typer.Exit(1 if report.broken else 0)
    elif target is None:
        raise UsageError("name what to trace: a path, an object digest or a run id (or pass --reindex)")
    index = ProvenanceIndex(ws)
    if row is not None:
        from mlv.engine import rows

        if rev is not None or downstream:
            raise UsageError("--row traces a prediction upstream as the workspace has it: drop --rev and --downstream")
        result = rows.trace_row(ws, index, rows.locate(ws, target, row), verify=verify)
    else:
        result = lineage.trace(ws, index, lineage.resolve(ws, index, target, rev=rev), downstream=downstream,
                               verify=verify)
    if html is not None:
        from mlv.pipelines import plotsgraph

        written = plotsgraph.write(result.to_dict(), html)
    if json_:
        emit_json(result.to_dict())
    elif html is not None:
        out.print(str(written))
    else:
        out.print(render_tree(result))
    for problem in result.problems:
        err.print(f"{'broken' if verify else 'warning'}: {problem}")
    if result.problems:
        raise typer.Exit(1)


def render_tree(result) -> str:
    """The lineage as an indented tree from its root; a node met again is shown once, then '(see above)'."""
    nodes = {n["id"]: n for n in result.nodes}
    children: dict[str, list[str]] = {}
    for e in result.edges:
        parent, child = (e["target"], e["source"]) if result.direction == "upstream" else (e["source"], e["target"])
        children.setdefault(parent, []).append(child)
    lines: list[str] = []
    shown: set[str] = set()

    def walk(node_id: str, prefix: str, connector: str, below: str) -> None:
        again = node_id in shown
        lines.append(prefix + connector + _label(nodes[node_id]) + ("  (see above)" if again else ""))
        if again:
            return
        shown.add(node_id)
        kids = sorted(children.get(node_id, []), key=lambda k: (nodes[k]["type"], nodes[k].get("path") or ""))
        for i, kid in enumerate(kids):
            last = i == len(kids) - 1
            walk(kid, prefix + below, "└── " if last else "├── ", "    " if last else "│   ")

    walk(result.root, "", "", "")
    return "\n".join(lines)


def _label(node: dict) -> str:
    mark = ""
    if "verified" in node:
        mark = "  ✓" if node["verified"] in ("ok", "unstored") else "  ✗ BROKEN"
    if node["type"] == "row":  # mlv trace --row
        return (f"row {node['row']} of {node['path']}  prediction {node['prediction']!r}  (row {node['input_row']} of "
                f"input {node['input'][9:21]}, package {node['package'][9:21]})")
    if node["type"] == "run":
        if node.get("problem"):
            return f"run {node['run_id']}  (record unreadable)" + mark
        when = (node.get("ended") or "").replace("T", " ").replace("Z", " UTC")
        commit = f"commit {node['commit'][:10]}{' (dirty)' if node.get('dirty') else ''}" if node.get("commit") else "no commit"
        params = ", ".join(f"{k}={v}" for k, v in sorted((node.get("params") or {}).items()))
        status = "" if node.get("status") == "succeeded" else f"  [{node.get('status')}]"
        return (f"stage {node['stage']}  run {node['run_id']}  {when}  {commit}" + (f"  params: {params}" if params else "")
                + status + mark)
    origin = node.get("origin")
    note = {"added": f"  added ({node.get('pointer')})", "source": "  source file"}.get(origin, "")
    rev = f"  at {node['rev'][:10]}" if node.get("rev") else ""
    return f"{node['path'] or '(object)'}  {node['digest'][9:21]}{note}{rev}{mark}"


@command("log")
def log(
    path: Annotated[str, typer.Argument(help="A stage output, data added with `mlv add`, or a file inside either.")],
    json_: Json = False,
) -> None:
    """List the versions PATH has had (from git history of mlv.lock and pointer files), newest first."""
    from mlv.engine import history
    from mlv.engine.provenance import ProvenanceIndex
    from mlv.storage.errors import UsageError

    ws = workspace()
    rel = ws.rel(ws.resolve(path, must_exist=False))
    entries = history.log(ws, rel)
    if not entries:
        raise UsageError(f"'{rel}' has no versions: no commit's mlv.lock or pointer names it, and the workspace has none")
    runs = ProvenanceIndex(ws).runs(e.version.source["run"] for e in entries if e.version.origin == "output")
    rows = [e.to_dict(_run(runs.get((e.version.source or {}).get("run")))) for e in entries]
    if json_:
        emit_json(rows)
        return
    for row in rows:
        where = row["commit"][:10] if row["commit"] else "workspace "
        date = (row["date"] or (row["run"] or {}).get("ended") or "")[:19].replace("T", " ")
        made = (f"stage {row['run']['stage']} run {row['run_id']}" if row["run"] else f"run {row['run_id']}"
                if row["run_id"] else row["origin"])
        out.print(f"{where}  {date:19}  {row['digest'][9:21]}  {made}" + (f"  {row['message']}" if row["message"] else ""))
        for file, values in row["metrics"].items():
            out.print(f"{'':12}{file}: " + ", ".join(f"{k or 'value'}={v}" for k, v in values.items()))


def _run(row) -> dict | None:
    if row is None:
        return None
    from mlv.engine.lineage import iso_time

    return {"run_id": row.run_id, "stage": row.stage, "status": row.status, "ended": iso_time(row.ended),
            "commit": row.commit}


Rev = Annotated[Optional[str], typer.Argument(help="Old side: a git revision (default HEAD).")]
Rev2 = Annotated[Optional[str], typer.Argument(help="New side: a git revision (default: the workspace).")]
All = Annotated[bool, typer.Option("--all", help="Also list what did not change.")]


@command("diff", group=params_app)
def params_diff(rev: Rev = None, rev2: Rev2 = None, all_: All = False, json_: Json = False) -> None:
    """Compare the params in mlv.yaml: the workspace against REV (default HEAD), or REV against REV2."""
    from mlv.engine.diffs import params_diff as diff

    _render_diff(diff(workspace(), rev, rev2, everything=all_), "param", json_)


@command("diff", group=metrics_app)
def metrics_diff(rev: Rev = None, rev2: Rev2 = None, all_: All = False, json_: Json = False) -> None:
    """Compare the metrics files named in mlv.lock: the workspace against REV (default HEAD), or REV against REV2."""
    from mlv.engine.diffs import metrics_diff as diff

    _render_diff(diff(workspace(), rev, rev2, everything=all_), "metric", json_)


def _render_diff(result, what: str, json_: bool) -> None:
    if json_:
        emit_json(result.to_dict())
        return
    if not result.rows:
        out.print(f"no {what} changed between {result.old} and {result.new}")
        return
    table = [("path", what, result.old, result.new, "change")]
    for r in result.rows:
        change = f"{r.delta:+g}" if r.change == "modified" and r.delta is not None else r.change
        table.append((r.path, r.name or "-", _cell(r.old), _cell(r.new), change))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        out.print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _cell(value: object) -> str:
    return "—" if value is None else str(value)
