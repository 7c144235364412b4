"""``mlv plots show|diff``: plot files → one self-contained HTML page of inline SVG charts.

A plot file is a stage output declared under ``plots:`` (``pipelines.plotsconfig``): CSV, TSV,
JSON (a list of records, or DVC's ``{key: [records]}``) or YAML of the same shape. For the
workspace it is read from disk; at a git revision, from the store by the digest that
revision's ``mlv.lock`` records (else git's copy when it is that version), as ``metrics diff``
reads metrics. Each file becomes a Vega-Lite spec (``pipelines.plotspecs``) rendered to SVG
by vl-convert, offline: the page has no ``<script>`` and loads nothing.

Invariants: read-only, except the page itself, written atomically (``DIR/index.html``).
Errors: an unknown target or revision is a ``UsageError`` (exit 2); a plot file that is
missing or cannot be parsed is a ``PlotError`` (exit 1) naming the file (and line).
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from mlv.engine.history import Tree, resolve_rev
from mlv.pipelines import plotspecs
from mlv.pipelines.plotsconfig import PlotProps
from mlv.storage import atomic
from mlv.storage.errors import MlvError, StorageError, UsageError
from mlv.storage.store.digest import of_bytes, parse
from mlv.storage.workspace import Workspace

PIPELINE_FILE = "mlv.yaml"
PAGE = "index.html"
FORMATS = (".csv", ".tsv", ".json", ".yaml", ".yml")


class PlotError(MlvError):
    """A plot file is missing, unreadable or not a series of records (exit 1); ``path`` names it."""

    exit_code = 1

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True, slots=True)
class Plot:
    """One chart: a plot file, how to draw it, and its rows per revision label."""

    path: str
    props: PlotProps
    series: dict[str, list[dict]] = field(default_factory=dict)

    def spec(self) -> dict:
        return plotspecs.spec(self.path, self.props, self.series)


# -- reading series -------------------------------------------------------------


def parse_rows(data: bytes, path: str) -> list[dict]:
    """The records of a plot file's bytes, by its extension; ``PlotError`` naming the file if they are not records.

    >>> parse_rows(b"step,loss\\n1,0.5\\n2,0.25\\n", "loss.csv")
    [{'step': 1, 'loss': 0.5}, {'step': 2, 'loss': 0.25}]
    >>> parse_rows(b'{"train": [{"x": 1}]}', "p.json")
    [{'x': 1}]
    """
    suffix = Path(path).suffix.lower()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PlotError(f"plot file '{path}' is not UTF-8 text (byte {exc.start}); write it as CSV, TSV or JSON",
                        path=path) from None
    if suffix in (".csv", ".tsv"):
        return _delimited(text, path, "\t" if suffix == ".tsv" else ",")
    if suffix in (".json", ".yaml", ".yml"):
        return _records(_document(text, path, suffix), path)
    raise PlotError(f"plot file '{path}' has an unknown format; plots are {', '.join(FORMATS)} files", path=path)


def _delimited(text: str, path: str, delimiter: str) -> list[dict]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, None)
    if not header or not all(name.strip() for name in header):
        raise PlotError(f"plot file '{path}':1: the first line must name the columns, e.g. step,loss", path=path)
    rows = []
    for number, cells in enumerate(reader, start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise PlotError(f"plot file '{path}':{number}: {len(cells)} values for {len(header)} columns "
                            f"({', '.join(header)}); give every row one value per column", path=path)
        rows.append({name: _number(cell) for name, cell in zip(header, cells)})
    return rows


def _number(cell: str) -> object:
    """CSV cells as numbers where they are numbers (a label such as ``cat`` stays text).

    >>> _number("3"), _number("0.5"), _number("cat"), _number("nan")
    (3, 0.5, 'cat', 'nan')
    """
    for kind in (int, float):
        try:
            value = kind(cell)
        except ValueError:
            continue
        return value if value == value and value not in (float("inf"), float("-inf")) else cell
    return cell


def _document(text: str, path: str, suffix: str) -> object:
    if suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise PlotError(f"plot file '{path}':{getattr(exc, 'lineno', 1)}: not valid JSON ({exc})",
                            path=path) from None
    import yaml

    from mlv.storage import yamlfile

    try:
        return yamlfile.load(text.encode(), source=path)
    except (yaml.YAMLError, MlvError) as exc:
        raise PlotError(f"plot file '{path}': not valid YAML ({exc})", path=path) from None


def _records(doc: object, path: str) -> list[dict]:
    if isinstance(doc, dict):  # DVC's {key: [records]}: the first list of records
        doc = next((v for v in doc.values() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)),
                   doc)
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise PlotError(f"plot file '{path}' must hold a list of records ([{{\"step\": 1, \"loss\": 0.5}}, …]) or "
                        "{name: [records]}", path=path)
    return [{str(k): v for k, v in r.items() if isinstance(v, (int, float, str, bool)) or v is None} for r in doc]


# -- finding plot files -------------------------------------------------------------


def declared(ws: Workspace) -> dict[str, PlotProps]:
    """The plot files mlv.yaml declares, in file order, with their props (a broken mlv.yaml: ``PipelineError``)."""
    from mlv.pipelines.schema import load_pipeline

    path = ws.root / PIPELINE_FILE
    if not path.exists():
        return {}
    return dict(load_pipeline(path, root=ws.root).plots)


def locked(ws: Workspace, tree: Tree) -> dict[str, tuple[str, PlotProps]]:
    """``{plot file: (digest, props)}`` at a revision: plot outputs of the stages in its ``mlv.lock``.

    Which outs are plots comes from each stage's run record (its definition), else from ``mlv.yaml`` at
    that revision, read leniently (it may predate a rule), as ``history.metric_paths`` does for metrics.
    """
    from mlv.engine.records import RecordCorrupt, RunIndex

    stages = tree.pipeline.get("stages")
    stages = stages if isinstance(stages, dict) else {}
    found: dict[str, tuple[str, PlotProps]] = {}
    for name, entry in tree.lock.items():
        stage = stages.get(name.split("@")[0])  # a foreach/matrix stage is declared under its base name
        raw = _raw_plots(stage.get("plots") if isinstance(stage, dict) else None)
        try:
            paths = RunIndex(ws).read(entry.run_id).definition.get("plots") or []
        except (FileNotFoundError, RecordCorrupt):
            paths = list(raw)
        for path in paths:
            if isinstance(path, str) and path in entry.outs:
                found[path] = (entry.outs[path]["digest"], raw.get(path, PlotProps()))
    return found


def _raw_plots(value: object) -> dict[str, PlotProps]:
    """The plots of a stage in an old mlv.yaml, leniently: what cannot be read is left out."""
    found: dict[str, PlotProps] = {}
    for entry in value if isinstance(value, list) else []:
        if isinstance(entry, str):
            found[entry.removeprefix("./")] = PlotProps()
        elif isinstance(entry, dict) and len(entry) == 1:
            (name, props), = entry.items()
            found[str(name).removeprefix("./")] = PlotProps.from_dict(props if isinstance(props, dict) else {})
    return found


def read_at(ws: Workspace, tree: Tree, path: str, digest: str) -> bytes | None:
    """A plot file's bytes at a revision: the stored object, else git's copy when it is that version."""
    wanted = parse(digest)
    try:
        return ws.store.read_bytes(wanted)
    except StorageError:
        data = tree.read(path)
        return data if data is not None and of_bytes(data) == wanted else None


# -- the two commands -----------------------------------------------------------------


def show(ws: Workspace, targets: list[str] | None = None) -> tuple[list[Plot], list[str]]:
    """The workspace's plots — every declared plot file, or the ``targets`` (plot files, stages, or any series
    file) — and the declared plot files not on disk (left out; an error if nothing else is there to draw)."""
    plots = declared(ws)
    chosen = _choose(ws, plots, targets) if targets else plots
    if not chosen:
        raise UsageError(f"no plots: declare plot files under a stage's 'plots:' in {PIPELINE_FILE}, "
                         "e.g. plots: [{metrics/loss.csv: {x: step, y: loss}}], or name a CSV/JSON file")
    found, missing = [], []
    for path, props in chosen.items():
        try:
            data = (ws.root / path).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            missing.append(path)
            continue
        found.append(Plot(path, props, {"workspace": parse_rows(data, path)}))
    if missing and (targets or not found):
        raise PlotError(f"plot file '{missing[0]}' is not in the workspace; run the stage that writes it "
                        f"(`mlv run`) or bring it back (`mlv checkout {missing[0]}`)", path=missing[0])
    return found, missing


def diff(ws: Workspace, revs: list[str] | None = None, targets: list[str] | None = None) -> list[Plot]:
    """Plots overlaid across revisions: HEAD and the workspace by default, as DVC; one REV: it and the workspace."""
    revs = list(revs or [])
    sides: list[Tree] = [Tree(ws, resolve_rev(ws, rev)) for rev in (revs or ["HEAD"])]
    labels = list(revs or ["HEAD"])
    if len(revs) < 2:
        sides.append(Tree(ws))
        labels.append("workspace")
    current = declared(ws)
    merged: dict[str, Plot] = {}
    for label, tree in zip(labels, sides):
        if tree.rev is None:
            series = {p: (props, (ws.root / p).read_bytes()) for p, props in current.items() if (ws.root / p).is_file()}
        else:
            series = {p: (current.get(p, props), read_at(ws, tree, p, digest))
                      for p, (digest, props) in locked(ws, tree).items()}
        for path, (props, data) in series.items():
            if targets and path not in targets:
                continue
            plot = merged.setdefault(path, Plot(path, props))
            if data is not None:
                plot.series[label] = parse_rows(data, path)
    plots = [p for p in merged.values() if p.series]
    if not plots:
        raise PlotError(f"no plot files to compare at {', '.join(labels)}: none is declared, locked and stored "
                        f"(`mlv pull` fetches stored versions)", path=PIPELINE_FILE)
    return plots


def _choose(ws: Workspace, plots: dict[str, PlotProps], targets: list[str]) -> dict[str, PlotProps]:
    from mlv.pipelines.schema import load_pipeline

    stages = load_pipeline(ws.root / PIPELINE_FILE, root=ws.root).stages if (ws.root / PIPELINE_FILE).exists() else {}
    chosen: dict[str, PlotProps] = {}
    for target in targets:
        if target in stages:
            chosen.update({p: plots[p] for p in stages[target].plots})
            continue
        rel = ws.rel(ws.resolve(target, must_exist=False))
        if rel in plots:
            chosen[rel] = plots[rel]
        elif (ws.root / rel).is_file() and rel.lower().endswith(FORMATS):
            chosen[rel] = PlotProps()
        else:
            listing = ", ".join(plots) or "(none declared)"
            raise UsageError(f"'{target}' is not a plot file, a stage or a CSV/TSV/JSON file; plot files: {listing}")
    return chosen


# -- rendering --------------------------------------------------------------------------


def svg(spec: dict, what: str) -> str:
    """A Vega-Lite spec rendered to SVG, offline (vl-convert); ``PlotError`` naming ``what`` if it cannot be."""
    import vl_convert

    try:
        return vl_convert.vegalite_to_svg(spec)
    except Exception as exc:  # vl-convert raises ValueError/RuntimeError with Vega's message: keep it, name the plot
        raise PlotError(f"{what} could not be drawn: {exc}", path=what) from exc


def check_columns(plot: Plot) -> None:
    """Every column the plot's props name is in its rows (``PlotError`` listing the columns there are)."""
    rows = [row for rows in plot.series.values() for row in rows]
    names = list(dict.fromkeys(k for row in rows for k in row))
    for channel in ("x", "y"):
        column = getattr(plot.props, channel)
        if column and rows and column not in names:
            raise PlotError(f"plot '{plot.path}' names {channel}: {column}, but the file has no column "
                            f"'{column}'; its columns: {', '.join(names)}. Fix 'plots:' in {PIPELINE_FILE}",
                            path=plot.path)


def page(title: str, sections: list[tuple[str, str]]) -> str:
    """One self-contained XHTML-compatible page: a heading and an inline SVG per ``(caption, svg)``."""
    body = "\n".join(f'<section class="plot"><h2>{html.escape(caption)}</h2>\n{drawing}\n</section>'
                     for caption, drawing in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>"
            f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
            "section.plot{margin-bottom:2em}h2{font-size:1.1em}</style></head>\n"
            f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def write_page(plots: list[Plot], out_dir: str, title: str) -> Path:
    """Render ``plots`` into ``out_dir/index.html`` (created; written atomically) and return its path."""
    sections = []
    for plot in plots:
        check_columns(plot)
        sections.append((plot.path, svg(plot.spec(), f"plot '{plot.path}'")))
    return write_html(out_dir, page(title, sections))


def write_html(out_dir: str, text: str, name: str = PAGE) -> Path:
    """Write a page atomically into ``out_dir`` (relative to the working directory); ``UsageError`` if it is a file."""
    folder = Path(out_dir).expanduser()
    folder = folder if folder.is_absolute() else Path.cwd() / folder
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"-o '{out_dir}' is a file; name a directory for {name}")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    atomic.write_text(target, text)
    return target


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append records to a plot file (CSV/TSV: a header first when the file is new; JSON: the list grows).

    For ``mlv.api.log_plot``: the columns of the first row written fix a CSV's columns; a row with
    other columns is a ``UsageError``. The file is replaced atomically.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    old = path.read_bytes() if path.exists() else b""
    if suffix in (".csv", ".tsv"):
        existing = parse_rows(old, str(path)) if old.strip() else []
        columns = list((existing or rows or [{}])[0])
        for row in rows:
            if list(row) != columns:
                raise UsageError(f"plot '{path.name}' has columns {', '.join(columns)}; log rows with exactly "
                                 f"those (got {', '.join(row)})")
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter="\t" if suffix == ".tsv" else ",", lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[r[c] for c in columns] for r in (*existing, *rows)])
        atomic.write_text(path, buffer.getvalue())
    elif suffix == ".json":
        existing = parse_rows(old, str(path)) if old.strip() else []
        atomic.write_text(path, json.dumps([*existing, *rows], indent=1) + "\n")
    else:
        raise UsageError(f"plot '{path.name}': rows can be logged to .csv, .tsv or .json plot files")
