"""Drift of new inputs against a package's ``training_stats``: what ``mlv monitor`` reports.

Every feature of the package's ``input_schema`` gets a status: ``missing`` (no such column),
``mistyped`` (its Arrow type family differs from the schema's), ``drift`` (its population
stability index is over the threshold) or ``ok``. Beside the PSI, numeric features get a KS
statistic and categorical ones a chi-square statistic, each with a p-value.

What the package records is a summary, not the training data, so the comparisons are made
against it:

- numeric: the inner recorded quantiles (0.01 … 0.99) are the cut points of right-closed bins
  (equal cut points collapse into one), open at both ends; a bin's expected share comes from the
  quantile levels. The training CDF for KS is the piecewise-linear curve through the recorded
  (quantile, level) points, with a jump where several levels share one value.
- categorical: the recorded frequencies, plus ``other`` (values outside them) — a value never
  seen in training lands there.
- both: a ``missing`` bucket holding the null fraction, so a column that turns to nulls drifts.

A share of zero is replaced by ``EPSILON`` before a logarithm or a division. scipy (a
dependency of scikit-learn) gives the p-values; numpy and pyarrow load in this module's callers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

from mlv.storage.errors import UsageError

THRESHOLD = 0.2  # the usual PSI alarm level: under 0.1 stable, 0.1-0.2 moderate, over 0.2 shifted
EPSILON = 1e-4
STATUSES = ("ok", "drift", "missing", "mistyped")


class MonitorError(UsageError):
    """There is nothing to compare: no package, no rows, or a table that cannot be read."""


@dataclass(frozen=True, slots=True)
class Sample:
    """What is compared with a package: the rows, and where they came from (``data:<path>`` or ``logs``)."""

    table: object  # a pyarrow Table
    source: str
    arms: object = None  # for a canary rollout: both arms' predictions (arm, package, prediction)


# -- the statistics -------------------------------------------------------------------------


def psi(expected: list[float], actual: list[float], *, epsilon: float = EPSILON) -> float:
    """The population stability index of ``actual`` shares against ``expected`` ones (same buckets).

    >>> psi([0.5, 0.5], [0.5, 0.5])
    0.0
    >>> round(psi([0.5, 0.5], [0.9, 0.1]), 4)
    0.8789
    >>> round(psi([1.0, 0.0], [1.0, 0.0]), 4)   # an empty bucket on both sides adds nothing
    0.0
    """
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, epsilon), max(a, epsilon)
        total += (a - e) * math.log(a / e)
    return float(total)


def numeric_bins(quantiles: dict) -> tuple[list[float], list[float]]:
    """Cut points (right-closed bins, open at both ends) and each bin's expected share, from recorded quantiles.

    A cut point's CDF value is the highest level recorded at that value, so a point mass stays in one bin.

    >>> numeric_bins({"0": 0.0, "0.25": 1.0, "0.5": 2.0, "0.75": 3.0, "1": 4.0})
    ([1.0, 2.0, 3.0], [0.25, 0.25, 0.25, 0.25])
    >>> numeric_bins({"0": 0.0, "0.25": 0.0, "0.5": 0.0, "0.75": 3.0, "1": 3.0})
    ([0.0, 3.0], [0.5, 0.5, 0.0])
    """
    levels = _levels(quantiles)
    top: dict[float, float] = {}
    for level, value in levels:
        top[value] = max(top.get(value, 0.0), level)
    cuts = sorted({value for level, value in levels if 0.0 < level < 1.0})
    below = [top[c] for c in cuts]
    shares = [below[0]] + [b - a for a, b in pairwise(below)] + [1.0 - below[-1]] if cuts else [1.0]
    return cuts, [max(0.0, s) for s in shares]


def ks_statistic(values, quantiles: dict) -> float:
    """The largest distance between the empirical CDF of ``values`` (finite floats) and the training CDF
    interpolated from the recorded ``quantiles``, checked on both sides of every jump of either curve."""
    import numpy as np

    x = np.sort(np.asarray(values, dtype=float))
    knots, low, high = _training_cdf(quantiles)
    points = np.union1d(x, knots)
    right = np.abs(_cdf(points, knots, low, high, left=False) - np.searchsorted(x, points, side="right") / x.size)
    left = np.abs(_cdf(points, knots, low, high, left=True) - np.searchsorted(x, points, side="left") / x.size)
    return float(max(right.max(), left.max()))


def ks_pvalue(statistic: float, n: int, m: int) -> float:
    """The asymptotic two-sample p-value (Kolmogorov's distribution) of a KS ``statistic`` between a sample of
    ``n`` values and a training set of ``m``, as ``scipy.stats.ks_2samp`` gives it for large samples."""
    from scipy.stats import kstwobign

    effective = n * m / (n + m) if m else n
    return float(kstwobign.sf(statistic * math.sqrt(effective)))


def chi_square(counts: list[int], shares: list[float]) -> tuple[float, float | None]:
    """Pearson's statistic of observed ``counts`` against expected ``shares`` (zero shares become
    ``EPSILON``), and its p-value with one degree of freedom fewer than buckets (None for one bucket).

    >>> chi_square([50, 50], [0.5, 0.5])
    (0.0, 1.0)
    """
    from scipy.stats import chi2

    kept = [(c, s) for c, s in zip(counts, shares, strict=True) if c or s]
    n = sum(c for c, _ in kept)
    floor = [max(s, EPSILON) for _, s in kept]
    total = sum(floor)
    statistic = sum((c - n * s / total) ** 2 / (n * s / total) for (c, _), s in zip(kept, floor)) if n else 0.0
    return float(statistic), float(chi2.sf(statistic, len(kept) - 1)) if len(kept) > 1 else None


def _levels(quantiles: dict) -> list[tuple[float, float]]:
    return sorted((float(level), float(value)) for level, value in quantiles.items() if value is not None)


def _training_cdf(quantiles: dict):
    """Knots (distinct recorded values) and the CDF just below (``low``) and at (``high``) each."""
    import numpy as np

    levels = _levels(quantiles)
    knots = sorted({value for _, value in levels})
    low = [min(level for level, value in levels if value == k) for k in knots]
    high = [max(level for level, value in levels if value == k) for k in knots]
    return np.array(knots), np.array(low), np.array(high)


def _cdf(points, knots, low, high, *, left: bool):
    """The interpolated training CDF at ``points`` (its left limit when ``left``)."""
    import numpy as np

    i = np.searchsorted(knots, points, side="right") - 1  # knots[i] <= point
    j = np.clip(i, 0, knots.size - 1)
    nxt = np.clip(i + 1, 0, knots.size - 1)
    span = knots[nxt] - knots[j]
    between = high[j] + (low[nxt] - high[j]) * np.divide(points - knots[j], span, out=np.zeros_like(span),
                                                           where=span > 0)
    at_knot = knots[j] == points
    value = np.where(at_knot, low[j] if left else high[j], between)
    return np.where(i < 0, 0.0, np.where((i >= knots.size - 1) & ~at_knot, 1.0, value))


# -- one feature ----------------------------------------------------------------------------


def feature(column, expected_type: str, stats: dict | None, *, threshold: float) -> dict:
    """The drift report of one column (a pyarrow ChunkedArray, or None when the data lacks it)."""
    from mlv.pipelines.package import compatible, family

    kind = (stats or {}).get("type") or ("numeric" if family(expected_type) == "numeric" else "categorical")
    if column is None:
        return {"type": kind, "status": "missing", "expected": expected_type}
    actual_type = str(column.type)
    if not compatible(expected_type, actual_type):
        return {"type": kind, "status": "mistyped", "expected": expected_type, "actual": actual_type}
    rows = len(column)
    nulls = {"train": (stats or {}).get("null_fraction"), "now": column.null_count / rows if rows else 0.0}
    found = _numeric(column, stats) if kind == "numeric" else _categorical(column, stats)
    found = {"type": kind, **found, "null_fraction": nulls}
    drifted = found["psi"] is not None and found["psi"] > threshold
    return {**found, "status": "drift" if drifted else "ok"}


def _numeric(column, stats: dict | None) -> dict:
    import numpy as np
    import pyarrow as pa

    values = column.drop_null().cast(pa.float64()).to_numpy()
    values = values[np.isfinite(values)]
    rows = len(column)
    quantiles = (stats or {}).get("quantiles") or {}
    if not rows or not _levels(quantiles):
        return {"psi": None, "ks": None, "ks_p": None, "mean": {"train": (stats or {}).get("mean"), "now": None}}
    cuts, shares = numeric_bins(quantiles)
    trained_nulls = stats.get("null_fraction") or 0.0
    counts = np.bincount(np.searchsorted(cuts, values, side="left"), minlength=len(cuts) + 1)
    expected = [s * (1.0 - trained_nulls) for s in shares] + [trained_nulls]
    actual = [c / rows for c in counts] + [(rows - values.size) / rows]
    ks = ks_statistic(values, quantiles) if values.size else None
    return {
        "psi": psi(expected, actual),
        "ks": ks, "ks_p": ks_pvalue(ks, values.size, int(stats.get("count") or 0)) if ks is not None else None,
        "mean": {"train": stats.get("mean"), "now": float(values.mean()) if values.size else None},
    }


def _categorical(column, stats: dict | None) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc

    stats = stats or {}
    rows = len(column)
    values = column.drop_null()
    values = values if values.type == pa.string() else values.cast(pa.string())
    counted = pc.value_counts(values)
    seen = dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist()))
    frequencies = stats.get("frequencies") or {}
    trained_nulls = stats.get("null_fraction") or 0.0
    known = [seen.get(v, 0) for v in frequencies]
    unseen = sorted(((v, n) for v, n in seen.items() if v not in frequencies), key=lambda vn: (-vn[1], vn[0]))
    counts = known + [sum(n for _, n in unseen), column.null_count]
    shares = [f * (1.0 - trained_nulls) for f in frequencies.values()] + \
             [(stats.get("other") or 0.0) * (1.0 - trained_nulls), trained_nulls]
    if not rows:
        return {"psi": None, "chi2": None, "chi2_p": None, "unseen": []}
    statistic, p = chi_square(counts, shares)
    return {"psi": psi(shares, [c / rows for c in counts]), "chi2": statistic, "chi2_p": p,
            "unseen": [v for v, _ in unseen[:5]]}


# -- the report -----------------------------------------------------------------------------


def monitor(package: str, *, data: str | None = None, workspace=None, threshold: float = THRESHOLD) -> dict:
    """Verify and load ``package`` (a path or a digest), read the sample — the table at ``data``, or else the
    prediction log of ``workspace`` — and report its drift (see ``report``).

    Raises:
        MonitorError: no such package, an unreadable table, no rows, or a negative threshold.
        PackageError: the package's bytes changed since it was recorded.
    """
    from pathlib import Path

    from mlv.pipelines.package import PACKAGE_FILE
    from mlv.pipelines.packages import load_package

    if not threshold >= 0:
        raise MonitorError(f"threshold {threshold} is not a PSI level; give a number of 0 or more (0.2 is usual)")
    if not package.startswith("xxh3-128:") and not (Path(package) / PACKAGE_FILE).is_file():
        what = "does not exist" if not Path(package).exists() else f"holds no {PACKAGE_FILE}"
        raise MonitorError(f"'{package}' {what}; name a package directory (the out of a package stage) or its "
                           "digest")
    loaded = load_package(package)
    sample = read_data(data) if data is not None else read_logs(workspace, loaded.digest)
    return report(loaded, sample, threshold=threshold)


def report(package, sample: Sample, *, threshold: float = THRESHOLD) -> dict:
    """``mlv monitor``'s answer for a loaded package (``mlv.pipelines.packages.Package``) and a sample: every
    feature's report, ``drifted`` (the features not ``ok``, in schema order), and with arms in a prediction
    log's rows, ``canary``."""
    table = sample.table
    if table.num_rows == 0:
        raise MonitorError(f"{_where(sample.source)} holds no rows for package {package.digest}; there is nothing "
                           "to compare")
    stats = package.meta.get("training_stats") or {}
    features = {
        name: feature(table.column(name) if name in table.column_names else None, str(expected), stats.get(name),
                      threshold=threshold)
        for name, expected in package.meta["input_schema"].items()
    }
    found = {"package": package.digest, "source": sample.source, "rows": table.num_rows, "threshold": threshold,
             "features": features, "drifted": [n for n, f in features.items() if f["status"] != "ok"]}
    if sample.arms is not None:
        found["canary"] = arms(sample.arms, task=package.task)
    return found


def arms(table, *, task: str) -> dict | None:
    """A canary rollout's two arms side by side (None unless the rows hold a ``canary`` arm): each arm's
    packages, rows and prediction distribution, and the PSI of the canary's predictions against the main arm's
    (class shares for a classifier; for regression, bins cut at the main arm's deciles)."""
    import pyarrow.compute as pc

    if "canary" not in pc.unique(table.column("arm")).to_pylist():
        return None
    found, values = {}, {}
    for arm in ("main", "canary"):
        rows = table.filter(pc.equal(table.column("arm"), arm))
        values[arm] = rows.column("prediction").drop_null()
        packages = sorted(pc.unique(rows.column("package")).to_pylist()) if "package" in rows.column_names else []
        found[arm] = {"packages": packages, "rows": rows.num_rows}
    shares = _prediction_shares(values, regression=task == "regression")
    for arm in ("main", "canary"):
        found[arm]["predictions"] = shares[arm][1]
    empty = not (len(values["main"]) and len(values["canary"]))
    return {**found, "psi": None if empty else psi(shares["main"][0], shares["canary"][0])}


def _prediction_shares(values: dict, *, regression: bool) -> dict:
    """``{arm: (bucket shares, summary)}``: buckets the two arms share, and what the table shows of each."""
    import numpy as np
    import pyarrow as pa

    if regression:
        numbers = {arm: v.cast(pa.float64()).to_numpy() for arm, v in values.items()}
        main = numbers["main"]
        cuts = np.unique(np.quantile(main, np.linspace(0.1, 0.9, 9))) if main.size else np.array([])
        found = {}
        for arm, x in numbers.items():
            counts = np.bincount(np.searchsorted(cuts, x, side="left"), minlength=cuts.size + 1)
            summary = {"mean": float(x.mean()) if x.size else None, "std": float(x.std()) if x.size else None}
            found[arm] = ((counts / max(x.size, 1)).tolist(), summary)
        return found
    from collections import Counter

    counts = {arm: Counter(str(v) for v in array.to_pylist()) for arm, array in values.items()}
    classes = sorted(set(counts["main"]) | set(counts["canary"]))
    found = {}
    for arm, got in counts.items():
        total = sum(got.values())
        share = {c: got[c] / total if total else 0.0 for c in classes}
        found[arm] = (list(share.values()), {"shares": share})
    return found


def read_data(path: str) -> Sample:
    """The table at ``path`` (Parquet or CSV, a file or a directory) as a sample; ``MonitorError`` if unreadable."""
    from mlv.pipelines import tables

    try:
        return Sample(tables.read(path), f"data:{path}")
    except tables.TableError as exc:
        raise MonitorError(f"{exc}; name a Parquet or CSV table (a file or a directory of partitions)") from exc


def read_logs(workspace, digest: str) -> Sample:
    """The prediction log's rows answered by the package ``digest`` — its inputs are what drift is measured on —
    and, when some of them were logged while a second package answered the other arm (a canary rollout, or the
    main arm when ``digest`` was the canary), both arms' predictions from that time, for ``arms``."""
    import pyarrow.compute as pc
    from mlv.engine import predlog

    log = predlog.read(workspace)
    if "package" not in log.column_names or log.num_rows == 0:
        raise MonitorError(f"the prediction log of {workspace.root} is empty; `mlv serve` the package (or give "
                           "--data TABLE)")
    own = log.filter(pc.equal(log.column("package"), digest))
    if own.num_rows == 0:
        served = ", ".join(sorted(pc.unique(log.column("package")).to_pylist()))
        raise MonitorError(f"the prediction log holds no predictions of package {digest} (it holds {served}); "
                           "`mlv serve` this package, or name one of those")
    return Sample(own, "logs", _both_arms(log, own, digest))


def _both_arms(log, own, digest: str):
    """The rows of the other arm logged while ``own``'s arm was answering, and ``own``'s from the time both
    answered, as a table of ``arm``, ``package`` and ``prediction`` (text for class labels, else float); None
    when no other arm answered beside it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arm = "canary" if "main" not in pc.unique(own.column("arm")).to_pylist() else "main"
    mine = own.filter(pc.equal(own.column("arm"), arm))
    others = pc.and_(pc.not_equal(log.column("arm"), arm), pc.not_equal(log.column("package"), digest))
    other = _during(log.filter(others), mine)
    if other.num_rows == 0 or "prediction" not in log.column_names:
        return None
    text = not pa.types.is_floating(log.schema.field("prediction").type)
    return pa.concat_tables([
        t.select(["arm", "package", "prediction"]).set_column(
            2, "prediction", t.column("prediction").cast(pa.string() if text else pa.float64()))
        for t in (_during(mine, other), other)])


def _during(rows, span):
    """The ``rows`` logged between the first and the last ``time`` of ``span``."""
    import pyarrow.compute as pc

    times = rows.column("time")
    first, last = pc.min(span.column("time")), pc.max(span.column("time"))
    return rows.filter(pc.and_(pc.greater_equal(times, first), pc.less_equal(times, last)))


def _where(source: str) -> str:
    return f"'{source[5:]}'" if source.startswith("data:") else "the prediction log"
