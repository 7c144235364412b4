"""A trained model's metrics on its held-out rows, as ``kind: train`` writes them (``metrics:`` and ``model.yaml``).

Classification: ``accuracy``, ``f1`` (binary: the second of the model's classes is the
positive one; more classes: macro average) and ``roc_auc`` (from ``predict_proba``; left out
when the model has none, or a class is missing from the held-out rows). Regression:
``rmse``, ``mae``, ``r2``. Values are plain floats, so they round-trip through JSON and YAML.
"""

from __future__ import annotations

import numpy as np


def score(task: str, y_true: np.ndarray, predicted: np.ndarray, proba: np.ndarray | None,
          classes: list | None) -> dict[str, float]:
    """The metrics of ``predicted`` (and ``proba``, one column per class in ``classes`` order) against ``y_true``."""
    from sklearn import metrics

    if task == "regression":
        return {"rmse": float(metrics.mean_squared_error(y_true, predicted) ** 0.5),
                "mae": float(metrics.mean_absolute_error(y_true, predicted)),
                "r2": float(metrics.r2_score(y_true, predicted))}
    binary = classes is not None and len(classes) == 2
    found = {"accuracy": float(metrics.accuracy_score(y_true, predicted)),
             "f1": float(metrics.f1_score(y_true, predicted, pos_label=classes[1]) if binary
                         else metrics.f1_score(y_true, predicted, average="macro"))}
    if proba is not None and classes is not None:
        labels = _array(classes)
        try:
            found["roc_auc"] = float(
                metrics.roc_auc_score(y_true == labels[1], proba[:, 1]) if binary
                else metrics.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels))
        except ValueError as exc:  # a class missing from the held-out rows
            print(f"roc_auc left out: {exc}")
    return found


def _array(values: list) -> np.ndarray:
    """``classes`` as an array that compares equal to the target's values.

    >>> _array(["a", "b"]).dtype, _array([0, 1]).dtype.kind
    (dtype('O'), 'i')
    """
    return np.asarray(values, dtype=object if any(isinstance(v, str) for v in values) else None)
