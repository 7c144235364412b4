"""What a stage's ``plots:`` declares: the plot files (stage outputs) and how to draw each.

DVC's shape: a list whose entries are a path, or a one-key mapping ``{path: {x: col, y: col,
template: linear, title: …, x_label: …, y_label: …}}`` (the props may be empty). The paths
become ``StageSpec.plots`` — outputs like ``metrics:``, hashed, stored and in ``mlv.lock``,
kept visible to git — and the props go to ``Pipeline.plots`` (path → :class:`PlotProps`).
Props stay out of the stage's fingerprint: retitling a chart reruns nothing, as in DVC.

Every problem is the parser's ``PipelineError`` at the entry's line and column (exit 2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from yaml.nodes import MappingNode, Node

from mlv.pipelines.interpolate import Scope, nearest, type_name
from mlv.pipelines.nodes import node_at

# DVC's template names, with DVC's meaning (see pipelines/plotspecs.py)
TEMPLATES = ("linear", "simple", "scatter", "smooth", "confusion", "confusion_normalized",
             "bar_horizontal", "bar_horizontal_sorted")
PROP_KEYS = ("x", "y", "template", "title", "x_label", "y_label")


@dataclass(frozen=True, slots=True)
class PlotProps:
    """How to draw one plot file; ``None`` columns are chosen from the data (``plotspecs``)."""

    x: str | None = None
    y: str | None = None
    template: str = "linear"
    title: str | None = None
    x_label: str | None = None
    y_label: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PlotProps:
        """Lenient (for ``mlv.yaml`` at old revisions): unknown keys and wrong types are dropped."""
        values = {k: v for k, v in data.items() if k in PROP_KEYS and isinstance(v, str) and v}
        if values.get("template") not in TEMPLATES:
            values.pop("template", None)
        return cls(**values)


def parse(parser, node: Node | None, scope: Scope, stage: str, wdir: str,
          taken: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, PlotProps]]:
    """The plot paths of a stage's ``plots:`` node and their props; ``taken``: its outs and metrics.

    ``parser`` is the schema's ``_Parser`` (``resolve``, ``error``, ``path_list``).
    """
    value = parser.resolve(node, scope, stage)
    if value is None:
        return (), {}
    if not isinstance(value, list):
        example = f"; write plots: [{value}]" if isinstance(value, str) else ""
        raise parser.error(node, "'plots' must be a list of plot files, each a path or {path: {x: col, y: col, "
                           f"template: linear}}; got {type_name(value)}{example}", stage)
    names: list[str] = []
    given: list[dict] = []
    for index, entry in enumerate(value):
        where = node_at(node, index)
        if isinstance(entry, dict):
            if len(entry) != 1:
                raise parser.error(where, "each entry in 'plots' names one file: {path: {x: col, y: col}}; got "
                                   f"{len(entry)} keys — write one entry per file", stage)
            (name, props), = entry.items()
            given.append(_props(parser, node_at(where, name) if isinstance(where, MappingNode) else where,
                                name, props, stage))
            names.append(name)
        else:
            names.append(entry)  # path_list says what is wrong with anything that is not a path
            given.append({})
    paths = parser.path_list("plots", node, names, stage, wdir)  # a file listed twice is an error there
    for index, path in enumerate(paths):
        if path in taken:
            raise parser.error(node_at(node, index), f"'{path}' is in 'plots' and in 'outs' or 'metrics'; keep it "
                               "in one", stage)
    return paths, {path: PlotProps(**props) for path, props in zip(paths, given)}


def _props(parser, where: Node, name: object, props: object, stage: str) -> dict:
    if props is None:
        return {}
    if not isinstance(props, dict):
        raise parser.error(where, f"the props of plot '{name}' must be a mapping such as {{x: step, y: loss, "
                           f"template: linear}}; got {type_name(props)}", stage)
    for key, item in props.items():
        at = node_at(where, key)
        if key not in PROP_KEYS:
            at = next((k for k, _ in where.value if getattr(k, "value", None) == key), where) if isinstance(
                where, MappingNode) else where  # point at the key, not its value
            near = nearest(str(key), PROP_KEYS)
            hint = f" Did you mean '{near}'?" if near else ""
            raise parser.error(at, f"unknown plot prop '{key}'.{hint}\n  Valid keys: {', '.join(PROP_KEYS)}", stage)
        if not isinstance(item, str) or not item:
            raise parser.error(at, f"plot prop '{key}' must be text (a column name or a label), got "
                               f"{type_name(item)}", stage)
        if key == "template" and item not in TEMPLATES:
            near = nearest(item, TEMPLATES)
            hint = f" Did you mean '{near}'?" if near else ""
            raise parser.error(at, f"unknown plot template '{item}'.{hint} Templates: {', '.join(TEMPLATES)}", stage)
    return dict(props)
