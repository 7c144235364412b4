"""Tables into arrays, and arrays into a fitted estimator on one array namespace: NumPy on the CPU, CuPy on a GPU.

A feature is a number (integers, floats, booleans, decimals: float64, null as NaN) or a
category (text or dictionary columns: objects, null as None, one-hot encoded); any
other Arrow type is refused by ``kind: train`` before it gets here.

``kind: train`` fits on a GPU through scikit-learn's array-API dispatch: the training
matrix is moved into the namespace (``cupy``; ``array_api_strict`` in tests, so this path
runs on every machine), the estimator is fitted and predicts there, and its fitted arrays
come back as NumPy arrays so the saved model loads and predicts on any machine. The
features reach this module already numeric (categories one-hot encoded on the CPU).

scipy reads ``SCIPY_ARRAY_API`` once, when it is first imported, and scikit-learn refuses
dispatch without it: :func:`enable_dispatch` must run before either is imported, which
``kind: train`` does in the stage's own process.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import pyarrow as pa
from mlv.pipelines.kinds import SettingError

NUMBER, CATEGORY = "number", "category"


@dataclass(frozen=True, slots=True)
class Fitted:
    """A fitted estimator (NumPy arrays only) and its predictions on the held-out rows."""

    estimator: object
    predicted: np.ndarray
    proba: np.ndarray | None  # predict_proba on the held-out rows, for classifiers that have it


def enable_dispatch() -> None:
    """Let scipy take non-NumPy arrays (it reads the variable when first imported)."""
    if os.environ.get("SCIPY_ARRAY_API") != "1" and "scipy" in sys.modules:
        raise RuntimeError("scipy was imported before SCIPY_ARRAY_API=1 was set; array-API dispatch needs it set "
                           "first (set SCIPY_ARRAY_API=1 in the environment)")
    os.environ["SCIPY_ARRAY_API"] = "1"


def supports_dispatch(estimator) -> bool:
    """Whether scikit-learn declares array-API support for this estimator (its ``array_api_support`` tag)."""
    try:
        from sklearn.utils import get_tags  # scikit-learn >= 1.6
    except ImportError:  # pragma: no cover - older scikit-learn
        return bool(estimator._get_tags().get("array_api_support", False))
    return bool(get_tags(estimator).array_api_support)


def supported_estimators() -> list[str]:
    """Every scikit-learn estimator that supports array-API dispatch with its default parameters (slow: error path)."""
    import warnings

    from sklearn.utils import all_estimators

    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cls in all_estimators(type_filter=["classifier", "regressor"]):
            try:
                if supports_dispatch(cls()):
                    found.append(name)
            except Exception:  # noqa: BLE001, S112 - an estimator that needs arguments is not listed
                continue
    return found


def fit(xp: ModuleType, estimator, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> Fitted:
    """Fit ``estimator`` on arrays of namespace ``xp`` and predict the test rows; everything returned is NumPy.

    With ``xp`` NumPy this is a plain ``fit``; any other namespace runs under
    ``array_api_dispatch=True`` on that namespace's default device.
    """
    if xp is np:
        estimator.fit(x_train, y_train)
        return Fitted(estimator, np.asarray(estimator.predict(x_test)), _proba(estimator, x_test))
    import sklearn
    from sklearn.utils._array_api import (
        _convert_to_numpy,
        _estimator_with_converted_arrays,
    )

    with sklearn.config_context(array_api_dispatch=True):
        estimator.fit(xp.asarray(x_train), xp.asarray(y_train))
        x_there = xp.asarray(x_test)
        predicted = _convert_to_numpy(estimator.predict(x_there), xp)
        proba = _proba(estimator, x_there)
        proba = None if proba is None else _convert_to_numpy(proba, xp)
    on_cpu = _estimator_with_converted_arrays(estimator, lambda array: _convert_to_numpy(array, xp))
    return Fitted(on_cpu, np.asarray(predicted), proba)


def _proba(estimator, x):
    from sklearn.base import is_classifier

    return estimator.predict_proba(x) if is_classifier(estimator) and hasattr(estimator, "predict_proba") else None


def column_kind(arrow_type) -> str | None:
    """NUMBER, CATEGORY, or None for a type a model cannot take."""
    t = pa.types
    if t.is_integer(arrow_type) or t.is_floating(arrow_type) or t.is_boolean(arrow_type) or t.is_decimal(arrow_type):
        return NUMBER
    if t.is_string(arrow_type) or t.is_large_string(arrow_type) or t.is_dictionary(arrow_type):
        return CATEGORY
    return None


def drop_unlabelled(table, target: str, where: str, key: str):
    """The rows whose target is set (saying how many were dropped)."""
    import pyarrow.compute as pc

    kept = table.filter(pc.is_valid(table[target]))
    if kept.num_rows < table.num_rows:
        print(f"dropped {table.num_rows - kept.num_rows} of {table.num_rows} rows of {where} whose '{target}' is null")
    if kept.num_rows == 0:
        raise SettingError(key, f"{where} has no row with a '{target}' to learn from")
    return kept


def split(table, target: str, how: dict, classifier: bool):
    """Train and test rows: ``train_test_split``, stratified for classifiers when every class can be split."""
    import math

    from sklearn.model_selection import train_test_split

    n = table.num_rows
    y = labels(table[target])
    stratify = None
    if classifier:
        counts = np.unique(y, return_counts=True)[1]
        n_test = math.ceil(how["test"] * n)
        if counts.min() >= 2 and min(n_test, n - n_test) >= len(counts):
            stratify = y
    try:
        train, test = train_test_split(np.arange(n), test_size=how["test"], random_state=how["seed"],
                                       stratify=stratify)
    except ValueError as exc:
        raise SettingError("split", f"{n} rows cannot be split so: {exc}") from exc
    return table.take(train), table.take(test)


def labels(column):
    """A target column as a NumPy array (text as objects)."""

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_decimal(column.type):
        column = column.cast(pa.float64())
    return np.asarray(column.to_numpy(zero_copy_only=False))


def rows(table, features: list[str], types: dict):
    """The feature matrix: float64, or objects (numbers as floats, text as str/None) when some features are text."""
    import pyarrow.compute as pc

    text = any(column_kind(types[f]) == CATEGORY for f in features)
    x = np.empty((table.num_rows, len(features)), dtype=object if text else np.float64)
    for j, name in enumerate(features):
        column = table[name]
        if column_kind(types[name]) == NUMBER:
            x[:, j] = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        else:
            x[:, j] = labels(column)
    return x


def encoder(features: list[str], types: dict):
    """One-hot encoding for the text features, by column index, numbers passed through; None if all are numbers."""
    categorical = [j for j, f in enumerate(features) if column_kind(types[f]) == CATEGORY]
    if not categorical:
        return None
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    return ColumnTransformer([("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical)],
                             remainder="passthrough", sparse_threshold=0.0)
