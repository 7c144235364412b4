"""``kind: train``: fit a scikit-learn-compatible estimator on a table, save it with skops, score it."""

from __future__ import annotations

import re

from mlv.pipelines.kinds import SettingError

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
DEVICES = ("cpu", "gpu", "auto")


def check(settings: dict) -> None:
    """The shape of a train stage's settings (cheap: runs whenever the pipeline is read)."""
    estimator = settings.get("estimator")
    if not isinstance(estimator, str) or not _DOTTED.match(estimator):
        raise SettingError("estimator", f"must name a class by import path, e.g. "
                           f"sklearn.ensemble.RandomForestClassifier; got {estimator!r}")
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
