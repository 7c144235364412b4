"""``mlv monitor`` through the real CLI, against a real package (``kind: train`` then ``kind: package``).

The package's training data is ``test_package.table`` (amount ~ gamma, age ~ uniform ints, channel web/store/
phone); samples come from the same generator with other seeds — unshifted, or shifted on purpose.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from mlfixtures import built_repo, package_stage, table, train_stage
from mlv.engine import predlog
from mlv.pipelines import monitor
from mlv.storage.workspace import Workspace
from scipy import stats as scipy_stats

from mlv.api import load_package

TRAIN_ROWS = 2000


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repo whose models/pkg (and models/pkg1, a depth-1 forest: the canary) were built by `mlv run` from
    TRAIN_ROWS rows; shared, as monitor only reads it (tests that log predictions copy it)."""
    stages = train_stage("fit", "models/rf", 4) + train_stage("fit1", "models/rf1", 1)
    stages += package_stage("package", "models/rf", "models/pkg") + package_stage("package1", "models/rf1", "models/pkg1")
    return built_repo(tmp_path_factory.mktemp("monitor") / "repo", stages, table(TRAIN_ROWS, seed=3))


@pytest.fixture
def at_repo(packaged: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(packaged)
    return packaged


def sample(tmp_path: Path, data: pa.Table, name: str = "sample.parquet") -> Path:
    path = tmp_path / name
    if path.suffix == ".csv":
        from pyarrow import csv

        csv.write_csv(data, path)
    else:
        pq.write_table(data, path)
    return path


def shifted(rows: int = 1000, seed: int = 11) -> pa.Table:
    """amount moved up by three training standard deviations, channel skewed from web to phone."""
    base = table(rows, seed=seed)
    amount = base.column("amount").to_numpy() + 3 * table(TRAIN_ROWS, seed=3).column("amount").to_numpy().std()
    channel = np.random.default_rng(seed).choice(["web", "store", "phone"], rows, p=[0.1, 0.2, 0.7])
    return base.set_column(0, "amount", pa.array(amount)).set_column(2, "channel", pa.array(channel.tolist()))


def meta(repo: Path) -> dict:
    return yaml.safe_load((repo / "models/pkg/package.yaml").read_text())


def digest(repo: Path, package: str = "package") -> str:
    stage = yaml.safe_load((repo / "mlv.lock").read_text())["stages"][package]
    return next(iter(stage["outs"].values()))["digest"]


@pytest.fixture
def own_repo(packaged: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the packaged repo, to change or to log predictions in; the cwd."""
    copy = tmp_path / "repo"
    shutil.copytree(packaged, copy, symlinks=True)
    monkeypatch.chdir(copy)
    return copy


def log_predictions(repo: Path, data: pa.Table, *, canary: float = 0.0, when: float | None = None,
                    seed: int = 0) -> dict[str, int]:
    """Answer ``data``'s rows as `mlv serve models/pkg --canary models/pkg1:<canary>` would, through predlog's
    own writer: each arm's real predictions appended, then the log closed. Returns the rows per arm."""
    log = predlog.PredictionLog(Workspace(repo))
    inputs = data.select(["amount", "age", "channel"])
    to_canary = np.random.default_rng(seed).random(inputs.num_rows) < canary
    now = time.time() if when is None else when
    ids = predlog.IdMaker().make(inputs.num_rows, now)
    counts = {}
    for path, arm, mask in (("models/pkg", "main", ~to_canary), ("models/pkg1", "canary", to_canary)):
        where = np.flatnonzero(mask)
        if where.size:
            package, part = load_package(path), inputs.take(where)
            log.append(package.digest, arm, [ids[i] for i in where], now, part, package.predict(part))
        counts[arm] = int(where.size)
    log.close()
    return counts


# -- drift, or not ----------------------------------------------------------------------------


def test_a_shifted_sample_drifts_naming_the_shifted_features(at_repo: Path, tmp_path: Path, cli):
    path = sample(tmp_path, shifted())
    result = cli("monitor", "models/pkg", "--data", path, code=1)
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["feature", "type", "psi", "test", "nulls", "train→now", "status"]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert rows["amount"][1] == "numeric" and rows["amount"][3] == "ks" and rows["amount"][-1] == "drift"
    assert rows["channel"][1] == "categorical" and rows["channel"][3] == "chi2" and rows["channel"][-1] == "drift"
    assert rows["age"][-1] == "ok"
    assert lines[4] == (f"2 of 3 features need attention — drift over PSI 0.2: amount, channel "
                        f"(1000 rows of data:{path} against package {digest(at_repo)})")

    found = cli.json("monitor", "models/pkg", "--data", path, code=1)
    assert found["drifted"] == ["amount", "channel"]
    assert found["features"]["amount"]["psi"] > 1 and found["features"]["amount"]["ks"] > 0.5
    assert found["features"]["amount"]["ks_p"] < 1e-6 and found["features"]["channel"]["chi2_p"] < 1e-6
    assert found["features"]["age"]["psi"] < 0.1


def test_an_unshifted_sample_from_the_same_generator_does_not_drift(at_repo: Path, tmp_path: Path, cli):
    path = sample(tmp_path, table(1000, seed=11))
    result = cli("monitor", "models/pkg", "--data", path)
    assert result.stdout.splitlines()[-1] == (f"no drift: 3 features within PSI 0.2 (1000 rows of data:{path} "
                                              f"against package {digest(at_repo)})")
    found = cli.json("monitor", "models/pkg", "--data", path)
    assert found["drifted"] == [] and all(f["status"] == "ok" for f in found["features"].values())
    assert max(f["psi"] for f in found["features"].values()) < 0.05
    assert found["features"]["amount"]["ks_p"] > 0.01 and found["features"]["channel"]["chi2_p"] > 0.01


def test_the_threshold_decides_and_a_csv_directory_reads_as_one_table(at_repo: Path, tmp_path: Path, cli):
    data = table(1000, seed=11)
    (tmp_path / "parts").mkdir()
    sample(tmp_path, data.slice(0, 500), "parts/a.csv")
    sample(tmp_path, data.slice(500), "parts/b.csv")
    found = cli.json("monitor", "models/pkg", "--data", tmp_path / "parts")
    assert found["rows"] == 1000 and found["source"] == f"data:{tmp_path / 'parts'}"
    lowest = min(f["psi"] for f in found["features"].values())
    strict = cli.json("monitor", "models/pkg", "--data", tmp_path / "parts", "--threshold", lowest / 2, code=1)
    assert strict["drifted"] == list(meta(at_repo)["input_schema"]) and strict["threshold"] == lowest / 2


def test_missing_and_mistyped_features_are_reported(at_repo: Path, tmp_path: Path, cli):
    data = table(1000, seed=11).drop_columns(["age"])
    data = data.set_column(0, "amount", pc.cast(data.column("amount"), pa.string()))
    path = sample(tmp_path, data)
    result = cli("monitor", "models/pkg", "--data", path, code=1)
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:4]}
    assert rows["amount"].split()[-1] == "mistyped" and "string, not double" in rows["amount"]
    assert rows["age"].split()[-1] == "missing" and rows["channel"].split()[-1] == "ok"
    assert "need attention — missing: age; mistyped: amount (" in result.stdout
    found = cli.json("monitor", "models/pkg", "--data", path, code=1)
    assert found["features"]["age"] == {"type": "numeric", "status": "missing", "expected": "int64"}
    assert found["features"]["amount"] == {"type": "numeric", "status": "mistyped", "expected": "double",
                                           "actual": "string"}
    assert found["drifted"] == ["amount", "age"]


def test_json_shape(at_repo: Path, tmp_path: Path, cli):
    data = table(1000, seed=11)
    channel = data.column("channel").to_pylist()
    channel[:100] = [None] * 50 + ["fax"] * 50  # more nulls, and a value training never saw
    path = sample(tmp_path, data.set_column(2, "channel", pa.array(channel, pa.string())))
    found = cli.json("monitor", "models/pkg", "--data", path, code=1)  # 5% of one unseen value is a drift
    assert list(found) == ["package", "source", "rows", "threshold", "features", "drifted"]
    assert (found["package"], found["source"], found["rows"], found["threshold"]) == \
        (digest(at_repo), f"data:{path}", 1000, 0.2)
    assert list(found["features"]) == ["amount", "age", "channel"]
    amount, channel_report = found["features"]["amount"], found["features"]["channel"]
    assert list(amount) == ["type", "psi", "ks", "ks_p", "mean", "null_fraction", "status"]
    assert list(channel_report) == ["type", "psi", "chi2", "chi2_p", "unseen", "null_fraction", "status"]
    trained = meta(at_repo)["training_stats"]
    assert amount["mean"]["train"] == trained["amount"]["mean"]
    assert amount["mean"]["now"] == pytest.approx(data.column("amount").to_numpy().mean())
    assert channel_report["null_fraction"] == {"train": trained["channel"]["null_fraction"], "now": 51 / 1000}
    assert channel_report["unseen"] == ["fax"] and channel_report["chi2_p"] < 1e-6
    assert (channel_report["status"], found["drifted"]) == ("drift", ["channel"])


# -- the statistics against scipy ----------------------------------------------------------------


def test_ks_against_recorded_quantiles_is_close_to_scipy_against_the_training_data(at_repo: Path):
    trained = table(TRAIN_ROWS, seed=3).column("amount").to_numpy()
    quantiles = meta(at_repo)["training_stats"]["amount"]["quantiles"]
    rng = np.random.default_rng(5)
    for shift in (0.0, 10.0, 40.0, 80.0):  # nine quantiles draw the CDF: the far tail is linear between q0.99 and max
        values = rng.gamma(2.0, 50.0, 1500) + shift
        exact = scipy_stats.ks_2samp(values, trained)
        assert monitor.ks_statistic(values, quantiles) == pytest.approx(exact.statistic, abs=0.03)
    values = rng.gamma(2.0, 50.0, 1500) + 40.0
    statistic = scipy_stats.ks_2samp(values, trained, method="asymp").statistic
    assert monitor.ks_pvalue(statistic, 1500, TRAIN_ROWS) == pytest.approx(
        scipy_stats.ks_2samp(values, trained, method="asymp").pvalue, rel=0.05)


def test_ks_with_a_point_mass_in_the_quantiles():
    quantiles = {"0": 0.0, "0.5": 0.0, "1": 2.0}  # half the values 0, the rest spread up to 2: F jumps 0 -> 0.5 at 0
    assert monitor.ks_statistic([0.0] * 50 + list(np.linspace(0.04, 2, 50)), quantiles) == pytest.approx(0.01)
    assert monitor.ks_statistic([0.0] * 10, quantiles) == pytest.approx(0.5)
    assert monitor.ks_statistic([0.0] * 50 + [1.0] * 50, quantiles) == pytest.approx(0.25)  # F(1) = 0.75
    assert monitor.ks_statistic([2.0] * 10, quantiles) == monitor.ks_statistic([-1.0] * 10, quantiles) == 1.0


def test_chi_square_and_psi_by_hand():
    counts, shares = [30, 50, 20], [0.5, 0.3, 0.2]
    expected = scipy_stats.chisquare(counts, [s * 100 for s in shares])
    assert monitor.chi_square(counts, shares) == pytest.approx((expected.statistic, expected.pvalue))
    assert monitor.psi(shares, [0.3, 0.5, 0.2]) == pytest.approx(0.4 * np.log(5 / 3))
    assert monitor.chi_square([10, 0, 0], [0.5, 0.5, 0.0])[0] == pytest.approx(10.0)  # an empty bucket is dropped


# -- usage --------------------------------------------------------------------------------------


def test_bad_usage_exits_2(at_repo: Path, tmp_path: Path, cli):
    path = sample(tmp_path, table(100, seed=11))
    assert "give one of --data TABLE" in cli("monitor", "models/pkg", code=2).stderr
    assert "give one of --data TABLE" in cli("monitor", "models/pkg", "--data", path, "--logs", code=2).stderr
    assert "'models/nope' does not exist" in cli("monitor", "models/nope", "--data", path, code=2).stderr
    assert "'models/rf' holds no package.yaml" in cli("monitor", "models/rf", "--data", path, code=2).stderr
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    assert "cannot be read as a Parquet table" in cli("monitor", "models/pkg", "--data", tmp_path / "junk.parquet",
                                                       code=2).stderr
    empty = sample(tmp_path, table(100, seed=11).slice(0, 0), "empty.parquet")
    assert "holds no rows" in cli("monitor", "models/pkg", "--data", empty, code=2).stderr
    assert "not a PSI level" in cli("monitor", "models/pkg", "--data", path, "--threshold", "-1", code=2).stderr


def test_a_changed_package_is_refused_before_monitoring(own_repo: Path, tmp_path: Path, cli):
    copy = own_repo
    text = (copy / "models/pkg/package.yaml").read_text()
    (copy / "models/pkg/package.yaml").unlink()
    (copy / "models/pkg/package.yaml").write_text(text.replace("task: classification", "task: regression"))
    result = cli("monitor", "models/pkg", "--data", sample(tmp_path, table(100, seed=11)), code=1)
    assert "was changed" in result.stderr and result.stdout == ""


def test_json_is_plain_json(at_repo: Path, tmp_path: Path, cli):
    result = cli("monitor", "models/pkg", "--data", sample(tmp_path, shifted()), "--json", code=1)
    json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))


# -- the prediction log, and a canary -----------------------------------------------------------


def test_logs_with_a_canary_compare_the_inputs_and_the_two_arms(own_repo: Path, cli):
    early = log_predictions(own_repo, table(300, seed=12), when=time.time() - 3600)  # before the canary
    arms = log_predictions(own_repo, table(1000, seed=11), canary=0.2)
    found = cli.json("monitor", "models/pkg", "--logs")
    assert (found["source"], found["rows"]) == ("logs", early["main"] + arms["main"])
    assert found["drifted"] == [] and set(found["features"]) == {"amount", "age", "channel"}
    canary = found["canary"]
    assert list(canary) == ["main", "canary", "psi"]
    assert canary["main"]["packages"] == [digest(own_repo)] and canary["main"]["rows"] == arms["main"]
    assert canary["canary"]["packages"] == [digest(own_repo, "package1")]
    assert canary["canary"]["rows"] == arms["canary"] and 150 < arms["canary"] < 250

    main, other = load_package("models/pkg"), load_package("models/pkg1")
    for arm, package in (("main", main), ("canary", other)):
        rows = predlog.read(Workspace(own_repo), package.digest)
        recent = datetime.fromtimestamp(time.time() - 1800, timezone.utc)
        rows = rows.filter(pc.greater(rows.column("time"), pa.scalar(recent, pa.timestamp("us", "UTC"))))
        labels = rows.column("prediction").to_pylist()
        assert canary[arm]["predictions"]["shares"] == pytest.approx(
            {c: labels.count(c) / len(labels) for c in ("no", "yes")})
    assert canary["psi"] == pytest.approx(monitor.psi(list(canary["main"]["predictions"]["shares"].values()),
                                                      list(canary["canary"]["predictions"]["shares"].values())))

    text = cli("monitor", "models/pkg", "--logs").stdout.splitlines()
    assert text[4] == (f"no drift: 3 features within PSI 0.2 ({found['rows']} rows of the prediction log against "
                       f"package {digest(own_repo)})")
    assert text[6].split()[:2] == ["canary", "rows"] and text[7].split()[:2] == ["main", str(arms["main"])]
    assert text[8].split()[:2] == ["canary", str(arms["canary"])]
    assert text[9] == f"prediction PSI canary vs main: {canary['psi']:.3f}"

    reverse = cli.json("monitor", "models/pkg1", "--logs")  # the canary's own view: its rows, the main arm beside
    assert reverse["rows"] == arms["canary"] and reverse["canary"]["main"]["rows"] == arms["main"]


def test_logged_inputs_that_drift_exit_1_and_a_log_without_canary_has_no_arms(own_repo: Path, cli):
    log_predictions(own_repo, shifted())
    found = cli.json("monitor", "models/pkg", "--logs", code=1)
    assert found["drifted"] == ["amount", "channel"] and "canary" not in found
    assert "drift over PSI 0.2: amount, channel" in cli("monitor", "models/pkg", "--logs", code=1).stdout


def test_logs_with_nothing_to_compare_exit_2(own_repo: Path, cli):
    assert "prediction log of" in cli("monitor", "models/pkg", "--logs", code=2).stderr
    log_predictions(own_repo, table(50, seed=11))
    result = cli("monitor", "models/pkg1", "--logs", code=2)
    assert f"holds no predictions of package {digest(own_repo, 'package1')}" in result.stderr
    assert digest(own_repo) in result.stderr
