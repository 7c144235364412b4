"""`mlv monitor PACKAGE --data TABLE | --logs`: drift of new inputs against the package's training statistics.

Exit 1 when a feature's PSI is over the threshold or a feature is missing or mistyped (a check that
found something, so a scheduler can alert), 0 otherwise, 2 when there is nothing to compare.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from mlv.cli.main import command, emit_json, out, workspace
from mlv.storage.errors import UsageError


@command("monitor")
def monitor(
    package: Annotated[str, typer.Argument(help="The package: its directory (a package stage's out) or digest.")],
    data: Annotated[Path | None, typer.Option("--data", help="Compare this table (Parquet or CSV, a file or a "
                                                "directory of partitions).")] = None,
    logs: Annotated[bool, typer.Option("--logs", help="Compare the inputs `mlv serve` logged for the package "
                                         "(and its canary arm, side by side).")] = False,
    threshold: Annotated[float, typer.Option("--threshold", help="PSI over which a feature has drifted.")] = 0.2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Per-feature drift (PSI; KS or chi-square) of a table or the logged inputs against the package's training data."""
    from mlv.pipelines import monitor as monitoring

    if (data is None) == (not logs):
        raise UsageError("give one of --data TABLE (a table to compare) or --logs (the inputs `mlv serve` logged)")
    found = monitoring.monitor(package, data=None if data is None else str(data),
                               workspace=workspace() if logs else None, threshold=threshold)
    if as_json:
        emit_json(found)
    else:
        for line in render(found):
            out.print(line)
    if found["drifted"]:
        raise typer.Exit(1)


def render(found: dict) -> list[str]:
    """The report as a table, a summary line and, with a canary, the two arms."""
    rows = [("feature", "type", "psi", "test", "nulls train→now", "status")]
    for name, f in found["features"].items():
        rows.append((name, f["type"], _number(f.get("psi")), _test(f), _nulls(f.get("null_fraction")), f["status"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(summary(found))
    if "canary" in found:
        lines += _canary(found["canary"])
    return lines


def summary(found: dict) -> str:
    features = found["features"]
    source = "the prediction log" if found["source"] == "logs" else found["source"]
    where = f"{found['rows']} rows of {source} against package {found['package']}"
    if not found["drifted"]:
        return f"no drift: {len(features)} features within PSI {found['threshold']:g} ({where})"
    parts = []
    for status, label in (("drift", f"drift over PSI {found['threshold']:g}"), ("missing", "missing"),
                          ("mistyped", "mistyped")):
        names = [n for n in found["drifted"] if features[n]["status"] == status]
        if names:
            parts.append(f"{label}: {', '.join(names)}")
    return f"{len(found['drifted'])} of {len(features)} features need attention — {'; '.join(parts)} ({where})"


def _canary(arms: dict) -> list[str]:
    lines = ["", "canary     rows  packages  predictions"]
    for arm in ("main", "canary"):
        a = arms[arm]
        shown = a["predictions"].get("shares") or {k: v for k, v in a["predictions"].items() if v is not None}
        text = ", ".join(f"{k} {v:.3f}" for k, v in shown.items())
        lines.append(f"{arm:<9}{a['rows']:>6}  {', '.join(p[:21] for p in a['packages'])}  {text}")
    lines.append(f"prediction PSI canary vs main: {_number(arms['psi'])}")
    return lines


def _number(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _test(f: dict) -> str:
    if f.get("ks") is not None:
        return f"ks {f['ks']:.3f} p={f['ks_p']:.3g}"
    if f.get("chi2") is not None:
        return f"chi2 {f['chi2']:.1f}" + (f" p={f['chi2_p']:.3g}" if f.get("chi2_p") is not None else "")
    if f["status"] == "mistyped":
        return f"{f['actual']}, not {f['expected']}"
    return "-"


def _nulls(nulls: dict | None) -> str:
    if not nulls:
        return "-"
    train = "?" if nulls["train"] is None else f"{nulls['train']:.1%}"
    return f"{train} → {nulls['now']:.1%}"

