"""``kind: train``: fit a scikit-learn-compatible estimator on a table, save it with skops, score it."""

from __future__ import annotations

import difflib
import importlib
import inspect
import json
import os
import re
import sys
from pathlib import Path

import yaml
from mlv.pipelines.kinds import SettingError, input_of
from mlv.pipelines.packages import TRUSTED_MODULES

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
DEVICES = ("cpu", "gpu", "auto")


def check(settings: dict) -> None:
    """The shape of a train stage's settings (cheap: runs whenever the pipeline is read)."""
    estimator = settings.get("estimator")
    if not isinstance(estimator, str) or not _DOTTED.match(estimator):
        raise SettingError("estimator", f"must name a class by import path, e.g. "
                           f"sklearn.ensemble.RandomForestClassifier; got {estimator!r}")
    if "id" in settings and (not isinstance(settings["id"], str) or not settings["id"]):
        raise SettingError("id", "must name the column that identifies a row (left out of the default features)")
    if not isinstance(settings.get("target"), str) or not settings["target"]:
        raise SettingError("target", "must name the column to predict")
    features = settings.get("features")
    if features is not None and (not isinstance(features, list) or not features
                                 or not all(isinstance(f, str) and f for f in features)):
        raise SettingError("features", "must be a non-empty list of column names")
    if "split" in settings and "eval" in settings:
        raise SettingError("eval", "give 'split' (hold out part of data) or 'eval' (a table of its own), not both")
    split = settings.get("split")
    if split is not None:
        if not isinstance(split, dict) or set(split) - {"test", "seed"}:
            raise SettingError("split", f"must be a mapping like {{test: 0.2, seed: 7}}; got {split!r}")
        test = split.get("test", 0.2)
        if isinstance(test, bool) or not isinstance(test, (int, float)) or not 0 < test < 1:
            raise SettingError("split.test", f"must be a fraction between 0 and 1, got {test!r}")
        seed = split.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise SettingError("split.seed", f"must be a whole number, got {seed!r}")
    if settings.get("device", "cpu") not in DEVICES:
        raise SettingError("device", f"must be one of {', '.join(DEVICES)}; got {settings['device']!r}")
    params = settings.get("params")
    if params is not None and not isinstance(params, dict):
        raise SettingError("params", f"must be a mapping of the estimator's parameters, e.g. ${{params.model}}; "
                           f"got {params!r}")
    trusted = settings.get("trusted")
    if trusted is not None and (not isinstance(trusted, list) or not all(isinstance(t, str) for t in trusted)):
        raise SettingError("trusted", "must be a list of type names skops may load, e.g. [xgboost.sklearn.XGBClassifier]")


# -- run: in the stage's own process ------------------------------------------------------------------


def run(settings: dict, stage: dict) -> None:
    """Fit the estimator on ``data``, score it on the held-out rows, save ``out/model.skops`` and ``model.yaml``."""
    device, xp = _device(settings.get("device", "cpu"), stage)  # before scikit-learn: it may set SCIPY_ARRAY_API
    from mlv.pipelines import arrays, metrics_ml

    estimator = _construct(_import_estimator(settings["estimator"]), settings.get("params"))
    classifier = _is_classifier(estimator)
    task = "classification" if classifier else "regression"
    if device == "gpu" and not arrays.supports_dispatch(estimator):
        device, xp = _cpu_instead(settings, _no_dispatch(settings["estimator"]))

    data = _read(settings, "data")
    target, features, types = columns(settings, data.schema, settings["data"], classifier=classifier)
    train, test, held_out = _held_out(settings, data, target, features, classifier)
    y_train, y_test = arrays.labels(train[target]), arrays.labels(test[target])
    if device == "gpu" and y_train.dtype.kind in "OUS":
        device, xp = _cpu_instead(settings, f"target '{target}' holds text, and on the GPU a classifier needs numeric "
                                            "labels (encode them upstream)")
    model, fitted = _fit(xp, estimator, features, types, (arrays.rows(train, features, types), y_train),
                         arrays.rows(test, features, types))
    classes = _plain(model.classes_) if classifier and hasattr(model, "classes_") else None
    metrics = metrics_ml.score(task, y_test, fitted.predicted, fitted.proba, classes)
    metrics = dict(sorted({**metrics, "n_train": len(y_train), "n_test": len(y_test)}.items()))

    out = Path(settings["out"])
    out.mkdir(parents=True, exist_ok=True)
    dump(model, out / "model.skops", settings.get("trusted") or [])
    card = {
        "estimator": settings["estimator"], "params": settings.get("params") or {}, "task": task, "target": target,
        "features": features, "feature_types": {f: str(types[f]) for f in features}, "classes": classes,
        "metrics": metrics, "data": _source(settings["data"], stage),
        **({"eval": _source(settings["eval"], stage)} if "eval" in settings else held_out),
        "device": device, "trusted": list(settings.get("trusted") or []),
    }
    with open(out / "model.yaml", "w") as f:
        yaml.safe_dump(card, f, sort_keys=False)
    if settings.get("metrics"):
        path = Path(settings["metrics"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics, sort_keys=True, indent=2) + "\n")
    shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()) if not k.startswith("n_"))
    print(f"trained {type(estimator).__name__} ({task}) on {len(y_train)} rows x {len(features)} features, "
          f"held out {len(y_test)}, on the {device.upper()}: {shown}")


def _held_out(settings: dict, data, target: str, features: list[str], classifier: bool):
    """Train rows, test rows, and what ``model.yaml`` says of them (``split`` or ``eval``)."""
    from mlv.pipelines import arrays

    train = arrays.drop_unlabelled(data, target, settings["data"], "data")
    if "eval" in settings:
        held = _read(settings, "eval")
        columns({**settings, "features": features}, held.schema, settings["eval"], classifier=classifier)
        return train, arrays.drop_unlabelled(held, target, settings["eval"], "eval"), {}
    split = {"test": 0.2, "seed": 0, **settings.get("split", {})}
    return (*arrays.split(train, target, split, classifier), {"split": split})


def _fit(xp, estimator, features: list[str], types: dict, train: tuple, x_test):
    """The model to save (one-hot encoding of text features in front, in a Pipeline) and its predictions."""
    import numpy as np
    from mlv.pipelines import arrays

    x_train, y_train = train
    encoder = arrays.encoder(features, types)
    if encoder is not None:  # encoded on the CPU: OneHotEncoder has no array-API support
        x_train = np.asarray(encoder.fit_transform(x_train), dtype=np.float64)
        x_test = np.asarray(encoder.transform(x_test), dtype=np.float64)
    try:
        fitted = arrays.fit(xp, estimator, x_train, y_train, x_test)
    except ValueError as exc:
        from sklearn.utils._param_validation import InvalidParameterError

        if isinstance(exc, InvalidParameterError):
            raise SettingError("params", str(exc)) from exc
        raise
    if encoder is None:
        return fitted.estimator, fitted
    from sklearn.pipeline import Pipeline

    return Pipeline([("columns", encoder), ("model", fitted.estimator)]), fitted  # takes raw rows


def _cpu_instead(settings: dict, why: str):
    """``device: gpu`` refuses what the GPU cannot do; ``auto`` says so and fits on the CPU."""
    import numpy as np

    if settings.get("device") == "gpu":
        raise SettingError("device", f"{why}; use device: cpu or auto")
    print(f"device auto: {why}; fitting on the CPU")
    return "cpu", np


def preflight(settings: dict, stage: dict) -> None:
    """Before anything runs: the estimator imports and takes its params; tables that exist already have the columns."""
    from mlv.pipelines import arrays, tables

    estimator = _construct(_import_estimator(settings["estimator"], root=stage["root"]), settings.get("params"))
    classifier = _is_classifier(estimator)
    if settings.get("device") == "gpu" and not arrays.supports_dispatch(estimator):
        raise SettingError("device", f"{_no_dispatch(settings['estimator'])}; use device: cpu or auto")
    root = Path(stage["root"])
    features = settings.get("features")
    for key in ("data", "eval"):
        if key not in settings:
            continue
        path = Path(stage["wdir"]) / settings[key]
        relative = os.path.relpath(path, root).replace(os.sep, "/")
        if any(relative == p or relative.startswith(p + "/") or p.startswith(relative + "/")
               for p in stage["produced"]) or not path.exists():
            continue  # written by a stage of this pipeline: run checks it
        try:
            schema = _schema(path)
        except (tables.TableError, OSError, ValueError) as exc:
            raise SettingError(key, str(exc)) from exc
        _, features, _ = columns({**settings, "features": features} if features else settings, schema,
                                 settings[key], classifier=classifier)


def columns(settings: dict, schema, where: str, *, classifier: bool) -> tuple[str, list[str], dict]:
    """The target, the features (in order) and each feature's Arrow type, checked against a table's schema."""
    from mlv.pipelines import arrays

    names = schema.names
    shown = ", ".join(names)
    target = settings["target"]
    if target not in names:
        raise SettingError("target", f"column '{target}' is not in {where}; its columns: {shown}")
    target_type = schema.field(target).type
    if arrays.column_kind(target_type) is None or (not classifier and arrays.column_kind(target_type) != arrays.NUMBER):
        need = "a classifier needs labels (numbers, booleans or text)" if classifier else "a regressor needs numbers"
        raise SettingError("target", f"column '{target}' in {where} is {target_type}; {need}")
    given = settings.get("features")
    ident = settings.get("id", "id")  # the column naming each row: never a feature unless listed
    features = list(given) if given else [n for n in names if n not in (target, ident, "label_source")]
    types = {}
    for i, name in enumerate(features):
        key = ("features", i) if given else "features"
        if name not in names:
            raise SettingError(key, f"column '{name}' is not in {where}; its columns: {shown}")
        if name == target:
            raise SettingError(key, f"column '{name}' is the target; a model cannot take it as a feature")
        types[name] = schema.field(name).type
        if arrays.column_kind(types[name]) is None:
            how = "list the others under features:" if not given else "drop it from features"
            raise SettingError(key, f"column '{name}' in {where} is {types[name]}; a feature must be a number, boolean "
                               f"or text (one-hot encoded); {how}")
    if not features:
        raise SettingError("features", f"{where} has no column besides the target '{target}' to learn from")
    return target, features, types


def dump(model, path: Path, trusted: list[str]) -> None:
    """Write ``model`` with skops, the same bytes for the same model, refusing types no one trusted."""
    import skops.io as sio

    path.write_bytes(canonical(sio.dumps(model)))
    for name in sio.get_untrusted_types(file=path):
        if name.split(".")[0] not in TRUSTED_MODULES and name not in trusted:  # as load_package
            raise SettingError("trusted", f"model type {name} is not in skops' trusted set; list it under trusted: "
                               "if you trust it")


def canonical(data: bytes) -> bytes:
    """A skops file with its object ids renumbered in order and fixed zip times: same model, same bytes.

    skops names objects (``__id__``) and array files by ``id()``, bytes by ``uuid4()``, and stamps the zip with
    the clock.
    """
    import io
    import zipfile

    numbers: dict[str, str] = {}

    def number(old) -> str:
        return numbers.setdefault(str(old), str(len(numbers)))

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int):
                    node[key] = int(number(value))
                elif key == "file" and isinstance(value, str):  # an array's file is named by id(), bytes by uuid4
                    stem, dot, suffix = value.partition(".")
                    node[key] = number(stem) + dot + suffix
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    with zipfile.ZipFile(io.BytesIO(data)) as src:
        schema = json.loads(src.read("schema.json"))
        walk(schema)
        files = {}
        for name in src.namelist():
            stem, dot, suffix = name.partition(".")
            if name != "schema.json":
                if stem not in numbers:
                    raise ValueError(f"skops wrote a file this version of mlv does not know: {name}")
                files[numbers[stem] + dot + suffix] = src.read(name)
        files["schema.json"] = json.dumps(schema, indent=2).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as dst:
        for name in sorted(files):
            dst.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), files[name])
    return buffer.getvalue()


def _device(setting: str, stage: dict):
    """("cpu", numpy) or ("gpu", cupy): what ``device:`` asks for and this stage can have."""
    import numpy as np

    if setting == "cpu":
        return "cpu", np
    try:
        import cupy
    except ImportError as exc:
        if setting == "gpu":
            raise SettingError("device", f"device: gpu needs CuPy (pip install 'mlv[gpu]'): {exc}; or use device: "
                               "cpu or auto") from exc
        print("device auto: CuPy is not installed; fitting on the CPU")
        return "cpu", np
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - no driver, no device: CuPy's own runtime error
        count, why = 0, f" ({exc})"
    else:
        why = ""
    if count == 0:
        if setting == "gpu":
            raise SettingError("device", f"device: gpu, but this stage sees no GPU{why} (pinned: {stage.get('gpu', 0)}); "
                               "use device: cpu or auto")
        print(f"device auto: no GPU visible{why}; fitting on the CPU")
        return "cpu", np
    from mlv.pipelines import arrays

    arrays.enable_dispatch()
    print(f"device {setting}: fitting on the GPU through array-API dispatch (CuPy, {count} visible)")
    return "gpu", cupy


def _no_dispatch(path: str) -> str:
    from mlv.pipelines import arrays

    return f"{path} does not support array-API dispatch; supported: {', '.join(arrays.supported_estimators())}"


def _import_estimator(path: str, *, root: str | None = None):
    """The class ``path`` names; modules under the repo's ``root`` are forgotten again (the stage imports them fresh)."""
    module_name, _, name = path.rpartition(".")
    before = set(sys.modules)
    if root is not None:
        sys.path.insert(0, root)
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise SettingError("estimator", f"'{path}' cannot be imported: {exc}; e.g. "
                           "sklearn.ensemble.RandomForestClassifier") from exc
    except Exception as exc:
        raise SettingError("estimator", f"'{path}' cannot be imported: {type(exc).__name__}: {exc}") from exc
    finally:
        if root is not None:
            sys.path.remove(root)
            for new in set(sys.modules) - before:
                if (getattr(sys.modules[new], "__file__", None) or "").startswith(root + os.sep):
                    del sys.modules[new]
    if not isinstance(found, type) or not callable(getattr(found, "fit", None)):
        raise SettingError("estimator", f"'{path}' is not an estimator class (a class with fit)")
    return found


def _construct(cls: type, params: dict | None):
    params = params or {}
    try:
        return cls(**params)
    except TypeError as exc:
        accepted = _parameters(cls)
        unknown = [p for p in params if accepted is not None and p not in accepted]
        if not unknown:
            raise SettingError("params", f"{cls.__name__}({', '.join(params)}) refused them: {exc}") from exc
        hint = difflib.get_close_matches(unknown[0], accepted or [], n=1)
        raise SettingError("params", f"'{unknown[0]}' is not a parameter of {cls.__name__}"
                           f"{f'; did you mean {hint[0]!r}?' if hint else ''} Its parameters: "
                           f"{', '.join(accepted or [])}") from exc


def _parameters(cls: type) -> list[str] | None:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return None
    return [p for p in signature.parameters if p != "self"]


def _is_classifier(estimator) -> bool:
    from sklearn.base import is_classifier

    return bool(is_classifier(estimator))


def _schema(path: Path):
    """A table's schema, reading no rows of Parquet and one block of CSV."""
    from mlv.pipelines import tables

    first = tables.partitions(path)[0]
    if first.suffix.lower() == ".csv":
        from pyarrow import csv

        with csv.open_csv(first) as reader:
            return reader.schema
    import pyarrow.parquet as pq

    return pq.read_schema(first)


def _read(settings: dict, key: str):
    from mlv.pipelines import tables

    try:
        return tables.read(settings[key])
    except tables.TableError as exc:
        raise SettingError(key, str(exc)) from exc


def _source(path: str, stage: dict) -> dict:
    """``{path, digest}``: the digest of the input as the stage was given it (None when it is not a dep)."""
    return {"path": path, "digest": input_of(stage, path)["digest"]}


def _plain(values) -> list:
    return [v.item() if hasattr(v, "item") else v for v in values]
