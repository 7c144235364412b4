"""``kind: select``: pick the best of several trained models by one of their metrics."""

from __future__ import annotations

from mlv.pipelines.kinds import SettingError

MODES = ("max", "min")


def check(settings: dict) -> None:
    models = settings.get("models")
    if not isinstance(models, list) or len(models) < 1:
        raise SettingError("models", "must list the model directories to choose from, e.g. [models/a, models/b]")
    if not isinstance(settings.get("metric"), str) or not settings["metric"]:
        raise SettingError("metric", "must name a metric the train stages wrote, e.g. roc_auc")
    if settings.get("mode", "max") not in MODES:
        raise SettingError("mode", f"must be max or min, got {settings['mode']!r}")
