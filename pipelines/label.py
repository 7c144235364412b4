"""``kind: label``: labels from rules and people, with their sources and a review queue.

A rule is a function named ``src/rules.py:spam`` (a file, relative to the stage's ``wdir``,
loaded by path) or ``pkg.mod:spam`` (imported), called with one row as a dict (column →
value); it returns a label (text, a number or true/false) or ``None`` to abstain.

Each item's ``label`` and ``label_source``:

- a human label (the ``human`` file) wins: source ``human:<file>`` as the setting names it;
- else the rules that did not abstain: if they agree, that label, source ``rule:<function>``
  of the first rule (in ``rules`` order) that gave it; if they disagree, a **conflict**:
  label and source are both null, and the item goes to the review queue;
- else (every rule abstained) both null: the item is **unlabeled** and goes to the queue.

The ``human`` file is a CSV ``id,label[,annotator,time]`` (the id column may also be named
as the stage's ``id``; a later line for the same id wins, an empty label is no label) — what
``mlv label review`` appends to — or a Label Studio JSON export (``.json``, see
``labelstudio``). An id that is not in ``data`` is a warning and ignored. Being an input,
the file must exist when the stage runs: start it as the line ``id,label``, or add ``human:``
once ``mlv label review QUEUE --human FILE`` has created it. Labels keep the
type the rules and people gave; when they mix kinds (numbers from rules, text from a CSV)
the column is text and the stage says so.

The review queue (``review: {size, out, format}``) holds the items that are in conflict or
unlabeled, never human-labeled ones, at most ``size`` (default 50). With ``model`` (a
package), they are ranked by the model's least-confident margin, top-1 minus top-2 class
probability, smallest first (ties by id); without one, conflicts first, then unlabeled,
each by id. ``format: csv`` (the default, unless ``out`` ends in ``.json``) writes the id
column, the item's other columns, ``reason`` (conflict|unlabeled), ``candidates`` (the
rules' labels joined by ``|``), ``margin`` (empty without a model) and an empty ``label``
for a person to fill; ``format: label-studio`` writes tasks to import (``labelstudio``).
"""

from __future__ import annotations

import ast
import csv
import importlib
import importlib.util
import math
import re
import sys
import traceback
from pathlib import Path

from mlv.pipelines import humanfiles
from mlv.pipelines.kinds import SettingError

_RULE = re.compile(r"^([^:]+\.py|[A-Za-z_]\w*(\.[A-Za-z_]\w*)*):[A-Za-z_]\w*$")
_KINDS = {bool: "true/false", int: "number", float: "number", str: "text"}


def check(settings: dict) -> None:
    rules = settings.get("rules", [])
    if not isinstance(rules, list):
        raise SettingError("rules", f"must be a list of functions like src/rules.py:spam; got {rules!r}")
    for index, rule in enumerate(rules):
        if not isinstance(rule, str) or not _RULE.match(rule):
            raise SettingError(("rules", index), f"must name a function as file.py:function or "
                               f"package.module:function; got {rule!r}")
    if not rules and "human" not in settings:
        raise SettingError("rules", "a label stage needs 'rules', 'human' labels, or both")
    if "id" in settings and (not isinstance(settings["id"], str) or not settings["id"]):
        raise SettingError("id", "must name the column that identifies an item")
    review = settings.get("review")
    if review is not None:
        if not isinstance(review, dict) or "out" not in review or set(review) - {"size", "out", "format"}:
            raise SettingError("review", "must be a mapping like {size: 50, out: labels/review.csv}")
        size = review.get("size", 50)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise SettingError("review.size", f"must be a whole number ≥ 1, got {size!r}")
        if review.get("format", "csv") not in ("csv", "label-studio"):
            raise SettingError("review.format", f"must be csv or label-studio, got {review['format']!r}")


def review_format(review: dict) -> str:
    """``csv`` or ``label-studio``: as given, else by the queue's file name."""
    return review.get("format") or ("label-studio" if str(review["out"]).lower().endswith(".json") else "csv")


# -- preflight: before anything runs, without importing the user's code ----------------------------
def preflight(settings: dict, stage: dict) -> None:
    """Every rule's file and function exists (read with ``ast``); ``data`` has the ``id`` column."""
    root, wdir = Path(stage["root"]), Path(stage["wdir"])
    produced = stage.get("produced", [])
    for index, rule in enumerate(settings.get("rules", [])):
        target, _, name = rule.rpartition(":")
        if target.endswith(".py"):
            path = wdir / target
            if _produced(path, root, produced):
                continue
            if not path.is_file():
                raise SettingError(("rules", index), f"'{target}' does not exist (looked in {path.parent}); "
                                   "fix the path (relative to the stage's wdir) or create the file")
            _defines(path, name, ("rules", index), shown=target)
        else:
            _check_module(target, name, root, ("rules", index))
    data, id_column = settings["data"], settings.get("id", "id")
    if not _produced(wdir / data, root, produced):
        columns = _columns(wdir / data)
        if columns is not None and id_column not in columns:
            raise SettingError("id" if "id" in settings else "data",
                               f"'{id_column}' is not a column of '{data}' (columns: {', '.join(columns)}); "
                               "name the column that identifies an item with id: …")


def _produced(path: Path, root: Path, produced: list[str]) -> bool:
    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return False
    return any(rel == p or rel.startswith(p + "/") for p in produced)


def _defines(path: Path, name: str, key: tuple, *, shown: str) -> None:
    """Raise unless the module at ``path`` defines ``name`` at its top level (as far as its syntax tells)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        raise SettingError(key, f"'{shown}' is not valid Python (line {exc.lineno}: {exc.msg})") from None
    names: list[str] = []
    statements = list(tree.body)
    while statements:
        node = statements.pop(0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(alias.name == "*" for alias in node.names):
                return  # a star import may bring it: only running the module can tell
            names += [alias.asname or alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        for block in ("body", "orelse", "finalbody", "handlers"):  # if/try/with at the top level
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                statements += getattr(node, block, [])
    if name not in names:
        from mlv.pipelines.interpolate import nearest

        near = nearest(name, names)
        functions = sorted({n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))})
        raise SettingError(key, f"'{shown}' defines no function '{name}'"
                           + (f"; did you mean '{near}'?" if near else "")
                           + f" Functions there: {', '.join(functions) or 'none'}")


def _check_module(module: str, name: str, root: Path, key: tuple) -> None:
    """A ``pkg.mod`` whose source is found (the repo root first, as the stage sees it) must define ``name``."""
    parts = module.split(".")
    for base in (root, *(Path(p) for p in sys.path if p)):
        top = base / parts[0]
        if not (top.is_dir() or top.with_suffix(".py").is_file()):
            continue
        source = base.joinpath(*parts)
        for path in (source.with_suffix(".py"), source / "__init__.py"):
            if path.is_file():
                return _defines(path, name, key, shown=module)
        if source.is_dir() or not top.is_dir():
            return  # a namespace package or a compiled module: only importing it can tell
        raise SettingError(key, f"module '{module}' does not exist ('{parts[0]}' is {top}, which has no "
                           f"{'/'.join(parts[1:])}.py)")
    if importlib.util.find_spec(parts[0]) is None:  # top-level only: finding it runs none of its code
        raise SettingError(key, f"module '{parts[0]}' cannot be found, neither in the repo nor installed; "
                           "fix the name, or name a file as path/to/rules.py:function")


def _columns(path: Path) -> list[str] | None:
    """The column names of a table path, read from its schema or header; None if unknown yet."""
    from mlv.pipelines import tables

    if not path.exists():
        return None  # a missing input is the planner's to name
    try:
        first = tables.partitions(path)[0]
        if first.suffix.lower() == ".csv":
            with first.open(newline="", encoding="utf-8") as f:
                return next(csv.reader(f), [])
        import pyarrow.parquet as pq

        return pq.read_schema(first).names
    except (tables.TableError, OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise SettingError("data", f"'{path.name}' cannot be read as a table: {exc}") from exc


# -- run: in the stage's own process ----------------------------------------------------------------
def run(settings: dict, stage: dict) -> None:
    """Label every item of ``data`` and write ``out`` (and the review queue)."""
    import pyarrow as pa
    from mlv.pipelines import tables

    data, id_column = settings["data"], settings.get("id", "id")
    try:
        table = tables.read(data)
    except tables.TableError as exc:
        raise SettingError("data", str(exc)) from exc
    if id_column not in table.column_names:
        raise SettingError("id", f"'{id_column}' is not a column of '{data}' (columns: "
                           f"{', '.join(table.column_names)}); name the column that identifies an item")
    for name in ("label", "label_source"):
        if name in table.column_names:
            raise SettingError("data", f"'{data}' already has a '{name}' column, which the label stage writes; "
                               "rename or drop it first")
    rows = table.to_pylist()
    rules = [(ref, _load_rule(ref, index)) for index, ref in enumerate(settings.get("rules", []))]
    votes = [_vote(rules, row, index, id_column, settings, stage) for index, row in enumerate(rows)]
    human = _human(settings, id_column, rows) if settings.get("human") else {}
    labels, sources = [], []
    for row, vote in zip(rows, votes):
        key = str(row[id_column])
        if key in human:
            labels.append(human[key])
            sources.append(f"human:{settings['human']}")
        elif len(vote) == 1:
            (label, rule), = vote.items()
            labels.append(label)
            sources.append(f"rule:{rule}")
        else:
            labels.append(None)
            sources.append(None)
    labels = _one_kind(labels, sources)
    column = pa.array(labels) if any(v is not None for v in labels) else pa.array(labels, pa.string())
    out = table.append_column("label", column).append_column("label_source", pa.array(sources, pa.string()))
    tables.write(out, settings["out"])
    given = {s: sources.count(s) for s in dict.fromkeys(sources) if s is not None}
    print(f"labeled {len(rows) - sources.count(None)} of {len(rows)} items"
          + (f" ({', '.join(f'{s}: {n}' for s, n in given.items())})" if given else "")
          + (f"; {sources.count(None)} in conflict or unlabeled" if None in sources else ""))
    if settings.get("review"):
        _review(settings, table, rows, votes, human, id_column)


def _load_rule(ref: str, index: int):
    target, _, name = ref.rpartition(":")
    try:
        if target.endswith(".py"):
            module = _load_file(Path(target))
        else:
            module = importlib.import_module(target)
        return getattr(module, name)
    except (ImportError, AttributeError, OSError) as exc:
        raise SettingError(("rules", index), f"{ref} cannot be loaded: {exc}") from exc


def _load_file(path: Path):
    """The module at ``path``, executed once per file however many of its rules are named."""
    name = "mlv_rules_" + re.sub(r"\W", "_", path.as_posix())
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or not path.is_file():
            raise ImportError(f"'{path}' does not exist")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: dataclasses and pickle look modules up by name
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def _vote(rules: list, row: dict, index: int, id_column: str, settings: dict, stage: dict) -> dict:
    """``{label: first rule that gave it}`` for one row, in rule order."""
    found: dict = {}
    for ref, rule in rules:
        try:
            label = rule(dict(row))
        except Exception:  # noqa: BLE001 - the user's traceback, then where it happened
            traceback.print_exc()
            print(f"error: stage '{stage['name']}' ({stage.get('file', 'mlv.yaml')}:{stage.get('line', 0)}): rule "
                  f"{ref} raised on the item {id_column}={row[id_column]!r} (row {index} of '{settings['data']}')",
                  file=sys.stderr)
            raise SystemExit(1) from None
        if label is not None and type(label) not in _KINDS:
            print(f"error: stage '{stage['name']}': rule {ref} returned {label!r} ({type(label).__name__}) for the "
                  f"item {id_column}={row[id_column]!r}; a label is text, a number, true/false, or None to abstain",
                  file=sys.stderr)
            raise SystemExit(1)
        if label is not None and not (isinstance(label, float) and math.isnan(label)):  # NaN abstains too
            found.setdefault(label, ref.rpartition(":")[2])
    return found


def _human(settings: dict, id_column: str, rows: list[dict]) -> dict[str, object]:
    """``{str(id): label}`` from the human file, less (with a warning) ids that are not in data."""
    path = settings["human"]
    if str(path).lower().endswith(".json"):
        from mlv.pipelines import labelstudio

        labels = labelstudio.read_export(path, id_column)
    else:
        labels = humanfiles.read_human_csv(path, id_column)
    known = {str(row[id_column]) for row in rows}
    unknown = [key for key in labels if key not in known]
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        print(f"warning: {len(unknown)} id(s) in '{path}' are not in '{settings['data']}' and are ignored: {shown}")
    return {key: label for key, label in labels.items() if key in known}


def _whole(label: object) -> bool:
    """Whether a label is a whole number, or text that reads as one and back the same (``"7"``, not ``"07"``)."""
    if isinstance(label, int) and not isinstance(label, bool):
        return True
    return isinstance(label, str) and label.lstrip("-").isdigit() and str(int(label)) == label


def _one_kind(labels: list, sources: list) -> list:
    """The labels, as text when they mix kinds (numbers and text, say), with a note naming the sources.

    A human file is text: when the rules give whole numbers and every human label reads as one
    (``"1"``), the human labels are those numbers, not a reason to turn the column into text.
    """
    rules = {type(label) for label, source in zip(labels, sources) if label is not None and source.startswith("rule:")}
    if rules == {int} and all(_whole(label) for label, source in zip(labels, sources)
                              if label is not None and not source.startswith("rule:")):
        labels = [int(label) if isinstance(label, str) else label for label in labels]
    kinds: dict[str, set] = {}
    for label, source in zip(labels, sources):
        if label is not None:
            kinds.setdefault(_KINDS[type(label)], set()).add("rules" if source.startswith("rule:") else source[6:])
    if len(kinds) < 2:
        return labels
    print("note: labels mix types (" + "; ".join(f"{kind} from {', '.join(sorted(s))}" for kind, s in kinds.items())
          + "), so the label column is text")
    return [None if label is None else str(label) for label in labels]


# -- the review queue -------------------------------------------------------------------------------
def _review(settings: dict, table, rows: list[dict], votes: list[dict], human: dict, id_column: str) -> None:
    review = settings["review"]
    items = [{"index": i, "row": row, "reason": "conflict" if len(vote) > 1 else "unlabeled",
              "candidates": list(vote.items()), "margin": None, "top": None}
             for i, (row, vote) in enumerate(zip(rows, votes))
             if str(row[id_column]) not in human and len(vote) != 1]
    if settings.get("model") and items:
        _rank(settings["model"], table, items)
        items.sort(key=lambda item: (item["margin"], _order(item["row"][id_column])))
    else:
        items.sort(key=lambda item: (item["reason"] != "conflict", _order(item["row"][id_column])))
    items = items[:review.get("size", 50)]
    if review_format(review) == "label-studio":
        from mlv.pipelines import labelstudio

        labelstudio.write_tasks(items, review["out"])
    else:
        humanfiles.write_review_csv(items, table.column_names, id_column, review["out"])
    print(f"review queue: {len(items)} items → {review['out']}")


def _rank(model: str, table, items: list[dict]) -> None:
    """Each item's margin (top-1 minus top-2 probability) and top class, from the package's predictions."""
    from mlv.pipelines.packages import load_package
    from mlv.storage.errors import MlvError

    try:
        predicted = load_package(model).predict(table.take([item["index"] for item in items]))
    except MlvError as exc:  # a changed package, or items that do not fit it: one message, not a traceback
        raise SettingError("model", f"'{model}' cannot rank the review queue: {exc}") from exc
    columns = [c for c in predicted.column_names if c.startswith("proba_")]
    if not columns:
        raise SettingError("model", f"'{model}' gives no class probabilities (proba_<class> columns); ranking the "
                           "review queue needs a classifier")
    probabilities = [predicted.column(c).to_pylist() for c in columns]
    for position, item in enumerate(items):
        ranked = sorted(((p[position], c[len("proba_"):]) for p, c in zip(probabilities, columns)), reverse=True)
        item["margin"] = ranked[0][0] - (ranked[1][0] if len(ranked) > 1 else 0.0)
        item["top"] = (ranked[0][1], ranked[0][0])


def _order(value: object) -> tuple:
    """Ids sort numbers before text, each in its own order.

    >>> sorted([10, "b", 2, "a"], key=_order)
    [2, 10, 'a', 'b']
    """
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))
