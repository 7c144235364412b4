"""``kind: select``: pick the best of several trained models by one of their metrics.

Each candidate's metric is read from its ``model.yaml``, the record its train run wrote
(a dotted name reaches into nested metrics: ``test.roc_auc``). The winner is the first
listed among the best, so ties go to the order of ``models``. ``out`` receives a copy of
the winner's files plus ``selected.yaml``::

    model: models/rf-deep        # the winning path, as written in `models`
    metric: roc_auc
    mode: max
    value: 0.93
    candidates: [{model, value, digest, run}, ...]   # every candidate, in order

The select run lists every candidate as an input, so ``mlv trace`` of whatever is built
from ``out`` passes through this run to each candidate and its train run.
"""

from __future__ import annotations

from pathlib import Path

from mlv.pipelines.kinds import SettingError, input_of
from mlv.pipelines.package import model_record

MODES = ("max", "min")
SELECTED_FILE = "selected.yaml"


def check(settings: dict) -> None:
    models = settings.get("models")
    if not isinstance(models, list) or len(models) < 1:
        raise SettingError("models", "must list the model directories to choose from, e.g. [models/a, models/b]")
    if not isinstance(settings.get("metric"), str) or not settings["metric"]:
        raise SettingError("metric", "must name a metric the train stages wrote, e.g. roc_auc")
    if settings.get("mode", "max") not in MODES:
        raise SettingError("mode", f"must be max or min, got {settings['mode']!r}")


def metric_of(directory: str, metric: str, *, key: tuple, wdir: Path = Path(".")) -> float:
    """The value of ``metric`` in the ``model.yaml`` of ``directory`` (relative to ``wdir``); ``SettingError`` on
    ``key`` if it has none."""
    record = model_record(directory, key=key, wdir=wdir)
    metrics = record.get("metrics") or {}
    value = metrics.get(metric) if isinstance(metrics, dict) else None
    if value is None and isinstance(metrics, dict) and "." in metric:
        value = metrics
        for part in metric.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        names = ", ".join(_names(metrics)) or "none"
        what = "has no metric" if value is None else f"has a metric that is not a number ({value!r}) for"
        raise SettingError(key, f"'{directory}' {what} '{metric}' in its {Path(directory, 'model.yaml')} "
                           f"(its metrics: {names}); choose a metric every candidate's train stage writes")
    return float(value)


def best(values: list[float], mode: str) -> int:
    """Index of the best value; the first one listed among equals.

    >>> best([0.8, 0.9, 0.9], "max"), best([0.3, 0.1, 0.1], "min")
    (1, 1)
    """
    pick = max if mode == "max" else min
    target = pick(values)
    return values.index(target)


def preflight(settings: dict, stage: dict) -> None:
    """Before anything runs: candidates no stage writes must already carry the metric."""
    from mlv.pipelines.package import _produced

    wdir, root = Path(stage["wdir"]), Path(stage["root"])
    for index, path in enumerate(settings["models"]):
        where = wdir / path
        if where.is_dir() and not _produced(root, where, stage.get("produced", ())):
            metric_of(path, settings["metric"], key=("models", index), wdir=wdir)


def run(settings: dict, stage: dict) -> None:
    import shutil

    import yaml

    metric, mode = settings["metric"], settings.get("mode", "max")
    candidates = []
    for index, path in enumerate(settings["models"]):
        value = metric_of(path, metric, key=("models", index))
        found = input_of(stage, path)
        candidates.append({"model": path, "value": value, "digest": found["digest"], "run": found["run"]})
    winner = candidates[best([c["value"] for c in candidates], mode)]
    out = Path(settings["out"])
    shutil.copytree(winner["model"], out, dirs_exist_ok=True)
    (out / SELECTED_FILE).unlink(missing_ok=True)  # a selection of selections names only its own choice
    selected = {"model": winner["model"], "metric": metric, "mode": mode, "value": winner["value"],
                "candidates": candidates}
    (out / SELECTED_FILE).write_text(yaml.safe_dump(selected, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _names(metrics: object, prefix: str = "") -> list[str]:
    if not isinstance(metrics, dict):
        return []
    names = []
    for name, value in metrics.items():
        names.extend(_names(value, f"{prefix}{name}.") if isinstance(value, dict) else [f"{prefix}{name}"])
    return names
