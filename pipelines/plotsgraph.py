"""``mlv trace TARGET --html FILE``: the lineage graph as a layered picture, inline SVG in one page.

The graph is ``trace --json``'s nodes and edges. Layout is computed here, not by Vega: nodes
are put in layers by ``networkx.topological_generations`` (data flows left to right: a
node's layer is after every node it came from), ordered within a layer by the mean position
of their parents (one barycentre pass, which removes most crossings in lineage trees).
The picture is a Vega-Lite layer of rules (edges), points (artifacts as circles, runs as
squares) and text (each node's path or stage), rendered by vl-convert like the plots.
"""

from __future__ import annotations

from pathlib import Path

from mlv.pipelines import plots

COLUMN, ROW = 280, 70  # pixels between layers, and between nodes of one layer


def layout(nodes: list[dict], edges: list[dict]) -> dict[str, tuple[int, int]]:
    """``{node id: (layer, slot)}``: layers follow the edges, slots order the nodes within a layer.

    >>> layout([{"id": "a"}, {"id": "r"}, {"id": "b"}], [{"source": "a", "target": "r"},
    ...                                                   {"source": "r", "target": "b"}])
    {'a': (0, 0), 'r': (1, 0), 'b': (2, 0)}
    """
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(n["id"] for n in nodes)
    graph.add_edges_from((e["source"], e["target"]) for e in edges if e["source"] != e["target"])
    if not nx.is_directed_acyclic_graph(graph):  # lineage is acyclic; a damaged index must still draw
        graph = nx.DiGraph(e for e in nx.dfs_edges(graph))
        graph.add_nodes_from(n["id"] for n in nodes)
    place: dict[str, tuple[int, int]] = {}
    for layer, members in enumerate(nx.topological_generations(graph)):
        def centre(node: str) -> tuple[float, str]:
            parents = [place[p][1] for p in graph.predecessors(node) if p in place]
            return (sum(parents) / len(parents) if parents else 0.0, node)

        for slot, node in enumerate(sorted(members, key=centre)):
            place[node] = (layer, slot)
    return {n["id"]: place[n["id"]] for n in nodes}


def label(node: dict) -> str:
    """What a node is called in the picture: a path (and short digest), or a stage (and run id)."""
    if node.get("type") == "run":
        return f"stage {node.get('stage') or '?'}\nrun {node.get('run_id', '')}"
    if node.get("type") == "row":
        return f"row {node.get('row')} of {node.get('path')}"
    digest = str(node.get("digest") or "")
    return f"{node.get('path') or '(object)'}\n{digest[9:21] if ':' in digest else digest[:12]}"


def spec(lineage: dict) -> dict:
    """The Vega-Lite spec of a ``trace --json`` graph, with the layout computed here."""
    nodes, edges = list(lineage["nodes"]), list(lineage["edges"])
    place = layout(nodes, edges)
    tallest = max((slot for _, slot in place.values()), default=0) + 1
    layers = max((layer for layer, _ in place.values()), default=0) + 1
    points = [{"id": n["id"], "x": place[n["id"]][0] * COLUMN, "y": place[n["id"]][1] * ROW, "label": label(n),
               "type": n.get("type", "artifact"), "root": n["id"] == lineage.get("root")} for n in nodes]
    where = {p["id"]: p for p in points}
    kinds = [k for k in ("artifact", "run", "row") if any(p["type"] == k for p in points)]
    shapes = {"artifact": "circle", "run": "square", "row": "diamond"}
    lines = [{"x": where[e["source"]]["x"], "y": where[e["source"]]["y"], "x2": where[e["target"]]["x"],
              "y2": where[e["target"]]["y"]} for e in edges if e["source"] in where and e["target"] in where]
    width, height = (layers - 1) * COLUMN + 1, (tallest - 1) * ROW + 1
    scale_x = {"field": "x", "type": "quantitative", "axis": None,
               "scale": {"domain": [-COLUMN * 0.2, width + COLUMN * 0.8]}}
    scale_y = {"field": "y", "type": "quantitative", "axis": None,
               "scale": {"domain": [-ROW * 0.6, height + ROW * 0.6], "reverse": True}}
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": f"lineage of {where.get(lineage.get('root'), {}).get('label', '').splitlines()[0] or 'target'}",
        "width": layers * COLUMN, "height": tallest * ROW,
        "config": {"view": {"stroke": None}},
        "layer": [
            {"data": {"values": lines}, "mark": {"type": "rule", "color": "#888"},
             "encoding": {"x": scale_x, "y": scale_y, "x2": {"field": "x2"}, "y2": {"field": "y2"}}},
            {"data": {"values": points}, "mark": {"type": "point", "filled": True, "size": 180},
             "encoding": {"x": scale_x, "y": scale_y,
                          "shape": {"field": "type", "type": "nominal", "title": "node",
                                    "scale": {"domain": kinds, "range": [shapes[k] for k in kinds]}},
                          "color": {"field": "type", "type": "nominal", "title": "node",
                                    "scale": {"domain": kinds}}}},
            {"data": {"values": points}, "mark": {"type": "text", "align": "left", "dx": 8, "dy": 8, "baseline": "top",
                                                  "lineBreak": "\n", "limit": COLUMN - 20, "fontSize": 11},
             "encoding": {"x": scale_x, "y": scale_y, "text": {"field": "label"},
                          "fontWeight": {"condition": {"test": "datum.root", "value": "bold"}, "value": "normal"}}},
        ],
    }


def write(lineage: dict, file: str) -> Path:
    """Render a ``trace --json`` graph into the HTML page ``file`` (its folder is created)."""
    target = Path(file).expanduser()
    target = target if target.is_absolute() else Path.cwd() / target
    picture = spec(lineage)
    drawing = plots.svg(picture, "the lineage graph")
    return plots.write_html(str(target.parent), plots.page(picture["title"], [(picture["title"], drawing)]),
                            name=target.name)
