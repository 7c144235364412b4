"""Vega-Lite specs for plot files, one per file, with DVC's templates and their meaning.

Pure functions of plain data: rows (``{column: value}``) per revision and the file's
:class:`~mlv.pipelines.plotsconfig.PlotProps` in, a Vega-Lite spec (a dict, data inline) out.
Nothing here reads files or renders; ``pipelines.plots`` does both.

Templates (DVC's names):

- ``linear``: a line of y over x, with a point at each row. ``simple``: the line alone.
- ``scatter``: a point per row. ``smooth``: the points, faint, and a LOESS curve through them.
- ``confusion``: counts of each (x = actual, y = predicted) pair, as a heatmap with the count
  written in each cell; ``confusion_normalized``: the same as a share of each actual class.
- ``bar_horizontal``: a horizontal bar of x for each y category; ``bar_horizontal_sorted``:
  longest bar first.

With several revisions every row carries ``rev`` and the revisions are overlaid in colours
(lines, points, bars side by side), or for confusion matrices shown side by side.
When ``x`` is not given, rows are numbered in a ``step`` column, as DVC does; when ``y`` is
not given, it is the last column that is not ``x``.
"""

from __future__ import annotations

from mlv.pipelines.plotsconfig import PlotProps

REV = "rev"
STEP = "step"  # DVC's index field, when a plot names no x
WIDTH, HEIGHT = 420, 280
_CONFUSION = ("confusion", "confusion_normalized")
_BARS = ("bar_horizontal", "bar_horizontal_sorted")


def columns(rows: list[dict], props: PlotProps) -> tuple[str, str]:
    """The x and y fields of a plot: as declared, else ``step`` and the last other column.

    >>> columns([{"epoch": 1, "loss": 0.5, "acc": 0.7}], PlotProps())
    ('step', 'acc')
    >>> columns([{"actual": "a", "predicted": "b"}], PlotProps(template="confusion"))
    ('actual', 'predicted')
    """
    names = list(dict.fromkeys(k for row in rows for k in row if k != REV))
    if props.template in _CONFUSION:
        x = props.x or next((n for n in names if n != props.y), STEP)
        return x, props.y or next((n for n in names if n != x), x)
    x = props.x or STEP
    y = props.y or next((n for n in reversed(names) if n != x), x)
    return x, y


def spec(path: str, props: PlotProps, series: dict[str, list[dict]]) -> dict:
    """The Vega-Lite spec of one plot file; ``series``: revision label → rows (one label: no ``rev`` colour)."""
    x, y = columns([row for rows in series.values() for row in rows], props)
    values: list[dict] = []
    for rev, rows in series.items():
        for index, row in enumerate(rows):
            values.append({**({STEP: index} if x == STEP and STEP not in row else {}), **row, REV: rev})
    several = len(series) > 1
    body = _template(props.template, x, y, several)
    labels = {"x": props.x_label or x, "y": props.y_label or y}
    for channel in ("x", "y"):
        for part in (body.get("encoding"), *[layer.get("encoding") for layer in body.get("layer", [])]):
            if part and channel in part and "title" not in part[channel]:
                part[channel]["title"] = labels[channel]
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": props.title or path,
        "data": {"values": values},
        **({"width": WIDTH, "height": HEIGHT} if props.template not in _CONFUSION else {}),
        **body,
    }


def _template(template: str, x: str, y: str, several: bool) -> dict:
    colour = {"color": {"field": REV, "type": "nominal", "title": "revision"}} if several else {}
    xy = {"x": {"field": x, "type": "quantitative"}, "y": {"field": y, "type": "quantitative"}}
    if template in ("linear", "simple"):
        mark = {"type": "line", "point": True} if template == "linear" else {"type": "line"}
        return {"mark": mark, "encoding": {**xy, **colour}}
    if template == "scatter":
        return {"mark": {"type": "point", "filled": True}, "encoding": {**xy, **colour}}
    if template == "smooth":
        group = [REV] if several else []
        return {"layer": [
            {"mark": {"type": "point", "opacity": 0.3, "filled": True}, "encoding": {**xy, **colour}},
            {"transform": [{"loess": y, "on": x, "groupby": group, "bandwidth": 0.3}],
             "mark": {"type": "line"}, "encoding": {**xy, **colour}},
        ]}
    if template in _BARS:
        sort = "-x" if template == "bar_horizontal_sorted" else None
        encoding = {"x": {"field": x, "type": "quantitative"}, "y": {"field": y, "type": "nominal", "sort": sort},
                    **colour, **({"yOffset": {"field": REV}} if several else {})}
        return {"mark": {"type": "bar"}, "encoding": encoding}
    return _confusion(x, y, normalized=template == "confusion_normalized", several=several)


def _confusion(x: str, y: str, *, normalized: bool, several: bool) -> dict:
    """Counts of (actual, predicted) pairs per revision; normalized: each actual class's share."""
    transform: list[dict] = [{"aggregate": [{"op": "count", "as": "count"}], "groupby": [REV, x, y]}]
    value = "count"
    if normalized:
        transform += [{"joinaggregate": [{"op": "sum", "field": "count", "as": "total"}], "groupby": [REV, x]},
                      {"calculate": "datum.count / datum.total", "as": "share"}]
        value = "share"
    cell = {"x": {"field": x, "type": "nominal", "sort": "ascending"},
            "y": {"field": y, "type": "nominal", "sort": "ascending"}}
    text_format = {"format": ".2f"} if normalized else {}
    layer = {"layer": [
        {"mark": {"type": "rect"}, "encoding": {**cell, "color": {"field": value, "type": "quantitative",
                                                                   "title": value}}},
        {"mark": {"type": "text", "baseline": "middle"},
         "encoding": {**cell, "text": {"field": value, "type": "quantitative", **text_format}}},
    ], "width": {"step": 40}, "height": {"step": 40}}
    if several:
        return {"transform": transform, "facet": {"column": {"field": REV, "type": "nominal", "title": "revision"}},
                "spec": layer}
    return {"transform": transform, **layer}
