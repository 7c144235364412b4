"""``kind: package``: a trained model, its input schema and training statistics, as a verifiable directory.

The package directory holds a copy of the train stage's ``model.skops`` and ``package.yaml``
(safe YAML, keys in this order)::

    model: {file: model.skops, digest: xxh3-128:…}   # the digest mlv.api.load_package re-hashes
    format: skops
    task: classification | regression
    classes: [...] | null
    input_schema: {column: arrow type, ...}           # the model's features, in order
    training_stats: {column: {...}, ...}              # numeric or categorical (see ``stats``)
    metrics: {...}                                    # the train stage's metrics
    lineage: {train_run, model: {path, digest}, data: {path, digest}, stats_data: {path, digest},
              params: {estimator, values, digest}[, select_run]}
    trusted: [...]                                    # extra type names skops may load

The model directory's ``model.yaml`` (written by ``kind: train``) is the record read here:
``task``, ``features``, ``feature_types``, ``classes``, ``metrics``, ``data``, ``estimator``,
``params``, ``trusted``. numpy and pyarrow are imported in the stage's process only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mlv.pipelines.kinds import SettingError, input_of

MODEL_FILE = "model.skops"
MODEL_RECORD = "model.yaml"
PACKAGE_FILE = "package.yaml"
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
TOP_CATEGORIES = 100
_NUMERIC = re.compile(r"u?int(8|16|32|64)|halffloat|float(16|32|64)?|double|decimal(32|64|128|256)?\(.*\)")
_STRING = frozenset({"string", "large_string", "string_view", "utf8", "large_utf8"})


def check(settings: dict) -> None:
    """Nothing beyond the paths the schema checks: ``model``, ``data`` and ``out``."""


# -- types ---------------------------------------------------------------------------------


def family(arrow_type: str) -> str:
    """What a column of this Arrow type is to a model: numeric, string, boolean, temporal or null.

    >>> family("int64"), family("double"), family("large_string"), family("dictionary<values=string, indices=int32, ordered=0>")
    ('numeric', 'numeric', 'string', 'string')
    >>> family("bool"), family("timestamp[us]"), family("null")
    ('boolean', 'temporal', 'null')
    """
    text = arrow_type.strip()
    if text.startswith("dictionary<values="):
        text = text[len("dictionary<values="):].split(",")[0].strip()
    if _NUMERIC.fullmatch(text):
        return "numeric"
    if text in _STRING:
        return "string"
    if text == "bool":
        return "boolean"
    if text.startswith(("timestamp", "date", "time", "duration")):
        return "temporal"
    return text


def compatible(expected: str, actual: str) -> bool:
    """Whether a column of Arrow type ``actual`` can feed a feature trained as ``expected`` (an all-null column can).

    >>> compatible("double", "int32"), compatible("string", "large_string"), compatible("double", "string")
    (True, True, False)
    """
    got = family(actual)
    return got == "null" or got == family(expected)


def check_features(record: dict, schema, *, where: str) -> None:
    """Every feature of the model record is a column of ``schema`` (a pyarrow schema) of a compatible type."""
    types = record.get("feature_types") or {}
    for feature in record["features"]:
        if feature not in schema.names:
            raise SettingError("data", f"column '{feature}' is missing from {where}; the model was trained on "
                               f"{', '.join(record['features'])}")
        actual = str(schema.field(feature).type)
        if feature in types and not compatible(str(types[feature]), actual):
            raise SettingError("data", f"column '{feature}' of {where} is {actual}, but the model was trained on "
                               f"{types[feature]} values")


# -- the model record -----------------------------------------------------------------------


def model_record(directory: str | os.PathLike, *, key: str | tuple = "model", wdir: Path = Path(".")) -> dict:
    """The ``model.yaml`` a train stage wrote into ``directory`` (relative to ``wdir``); ``SettingError`` on
    ``key`` if it is not one."""
    import yaml

    path = Path(directory) / MODEL_RECORD
    try:
        record = yaml.safe_load((wdir / path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingError(key, f"'{directory}' holds no {MODEL_RECORD}; name the 'out' of a train stage") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SettingError(key, f"{path} is not valid YAML: {exc}") from None
    if not isinstance(record, dict):
        raise SettingError(key, f"{path} is not a mapping; name the 'out' of a train stage")
    for name in ("task", "features"):
        if name not in record:
            raise SettingError(key, f"{path} has no '{name}'; name the 'out' of a train stage")
    if not isinstance(record["features"], list) or not all(isinstance(f, str) for f in record["features"]):
        raise SettingError(key, f"{path}: 'features' must be a list of column names")
    return record


# -- the stage -------------------------------------------------------------------------------


def preflight(settings: dict, stage: dict) -> None:
    """Before anything runs: when neither ``model`` nor ``data`` is some stage's output, check the features now."""
    from mlv.pipelines import tables

    wdir, root = Path(stage["wdir"]), Path(stage["root"])
    paths = {key: wdir / settings[key] for key in ("model", "data")}
    if any(_produced(root, p, stage.get("produced", ())) or not p.exists() for p in paths.values()):
        return  # run() checks what an upstream stage writes
    record = model_record(settings["model"], wdir=wdir)
    try:
        schema = _schema(tables.partitions(paths["data"]))
    except tables.TableError as exc:
        raise SettingError("data", str(exc)) from None
    check_features(record, schema, where=settings["data"])


def run(settings: dict, stage: dict) -> None:
    import shutil

    import yaml
    from mlv.pipelines import tables
    from mlv.storage.store import digest as digests

    model_dir, out = Path(settings["model"]), Path(settings["out"])
    record = model_record(model_dir)
    try:
        table = tables.read(settings["data"])
    except tables.TableError as exc:
        raise SettingError("data", str(exc)) from None
    check_features(record, table.schema, where=settings["data"])
    if not (model_dir / MODEL_FILE).is_file():
        raise SettingError("model", f"'{model_dir}' holds no {MODEL_FILE}; name the 'out' of a train stage")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_dir / MODEL_FILE, out / MODEL_FILE)
    model_digest, _ = digests.of_file(out / MODEL_FILE)
    types = record.get("feature_types") or {}
    package = {
        "model": {"file": MODEL_FILE, "digest": str(model_digest)},
        "format": "skops",
        "task": record["task"],
        "classes": record.get("classes"),
        "input_schema": {f: str(types.get(f) or table.schema.field(f).type) for f in record["features"]},
        "training_stats": {f: stats(table.column(f)) for f in record["features"]},
        "metrics": record.get("metrics") or {},
        "lineage": lineage(settings, stage, record, model_dir),
        "trusted": list(record.get("trusted") or []),
    }
    text = yaml.safe_dump(package, sort_keys=False, allow_unicode=True)
    (out / PACKAGE_FILE).write_text(text, encoding="utf-8")


def lineage(settings: dict, stage: dict, record: dict, model_dir: Path) -> dict:
    """Where the model came from: its train run (through a ``select`` stage's choice), data and params."""
    import yaml
    from mlv.engine.fingerprint import canonical
    from mlv.storage.store import digest as digests

    model_input = input_of(stage, settings["model"])
    data_input = input_of(stage, settings["data"])
    params = record.get("params") or {}
    found = {
        "train_run": model_input["run"],
        "model": {"path": settings["model"], "digest": model_input["digest"]},
        "data": dict(record.get("data") or {}),
        "stats_data": {"path": settings["data"], "digest": data_input["digest"]},
        "params": {"estimator": record.get("estimator"), "values": params,
                   "digest": str(digests.of_bytes(canonical(params)))},
    }
    selected = model_dir / "selected.yaml"
    if selected.is_file():  # a select stage's copy: the train run is the winner's, the choice is a run of its own
        choice = yaml.safe_load(selected.read_text(encoding="utf-8")) or {}
        winner = next((c for c in choice.get("candidates") or [] if c.get("model") == choice.get("model")), {})
        found["train_run"] = winner.get("run")
        found["select_run"] = model_input["run"]
    return found


def stats(column) -> dict:
    """Training statistics of one column (a pyarrow ChunkedArray): what monitoring compares new data against.

    Numeric: ``count`` (non-null values), ``null_fraction``, ``mean``, ``std`` (population, ddof 0),
    ``quantiles`` (numpy's linear quantiles at ``QUANTILES``, keyed ``"0"``, ``"0.01"``, …).
    Otherwise categorical: ``count``, ``null_fraction``, ``distinct``, ``frequencies`` (value → share of
    the non-null values, the ``TOP_CATEGORIES`` most common, most common first) and ``other`` (the rest's share).
    """
    import numpy as np
    import pyarrow as pa

    rows = len(column)
    nulls = column.null_count
    null_fraction = nulls / rows if rows else 0.0
    if family(str(column.type)) == "numeric":
        values = column.drop_null().cast(pa.float64()).to_numpy()
        values = values[~np.isnan(values)]
        empty = values.size == 0
        return {
            "type": "numeric", "count": int(values.size), "null_fraction": float(null_fraction),
            "mean": None if empty else float(values.mean()), "std": None if empty else float(values.std()),
            "quantiles": {f"{q:g}": None if empty else float(np.quantile(values, q)) for q in QUANTILES},
        }
    import pyarrow.compute as pc

    counts = pc.value_counts(column.drop_null().cast(pa.string()) if column.type != pa.string() else
                             column.drop_null())
    pairs = sorted(((str(v), int(n)) for v, n in zip(counts.field("values").to_pylist(),
                                                     counts.field("counts").to_pylist())),
                   key=lambda vn: (-vn[1], vn[0]))
    total = rows - nulls
    top = pairs[:TOP_CATEGORIES]
    return {
        "type": "categorical", "count": total, "null_fraction": float(null_fraction), "distinct": len(pairs),
        "frequencies": {v: n / total for v, n in top},
        "other": (total - sum(n for _, n in top)) / total if total else 0.0,
    }


def _produced(root: Path, path: Path, produced) -> bool:
    rel = os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")
    return any(rel == p or rel.startswith(p + "/") or p.startswith(rel + "/") for p in produced)


def _schema(parts: list[Path]):
    """The schema of a table's first partition, reading as little as the format allows."""
    from mlv.pipelines import tables

    if parts[0].suffix.lower() == ".csv":
        return tables.read_file(parts[0]).schema
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(parts[0])
    except (pa.ArrowInvalid, OSError) as exc:
        raise tables.TableError(f"{parts[0]} cannot be read as a Parquet table: {exc}") from exc
