"""``kind: package`` through the real CLI, and ``mlv.api.load_package``: verified before anything is deserialized.

The model directories come from real ``kind: train`` stages, so every package here has a real train run behind it.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skops.io as sio
import xxhash
import yaml
from mlfixtures import FEATURES, lock, matrix, package_stage, table, train_stage

from mlv.api import PackageError, load_package


def fitted_repo(repo: Path, cli) -> None:
    """data/train.parquet (added) and a pipeline: fit (kind: train) -> models/rf, package -> models/pkg."""
    (repo / "data").mkdir()
    pq.write_table(table(), repo / "data/train.parquet")
    cli("add", "data/train.parquet")
    stages = train_stage("fit", "models/rf", 4) + package_stage("package", "models/rf", "models/pkg")
    (repo / "mlv.yaml").write_text("stages:\n" + textwrap.indent(stages, "  "))


@pytest.fixture
def packaged(repo: Path, cli) -> Path:
    fitted_repo(repo, cli)
    cli("run")
    return repo


def xxh3(data: bytes) -> str:
    return "xxh3-128:" + xxhash.xxh3_128_hexdigest(data)


def flip(path: Path, at: int) -> None:
    """Change one byte, as a new file (a workspace file may share its inode with the store)."""
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.unlink()
    path.write_bytes(bytes(data))


def estimator(repo: Path):
    path = repo / "models/rf/model.skops"
    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


# -- package.yaml ----------------------------------------------------------------------------


def test_package_yaml_holds_schema_stats_metrics_and_lineage(packaged: Path):
    repo = packaged
    meta = yaml.safe_load((repo / "models/pkg/package.yaml").read_text())
    assert list(meta) == ["model", "format", "task", "classes", "input_schema", "training_stats", "metrics",
                          "lineage", "trusted"]
    assert sorted(p.name for p in (repo / "models/pkg").iterdir()) == ["model.skops", "package.yaml"]
    skops_bytes = (repo / "models/pkg/model.skops").read_bytes()
    assert skops_bytes == (repo / "models/rf/model.skops").read_bytes()
    assert meta["model"] == {"file": "model.skops", "digest": xxh3(skops_bytes)}
    record = yaml.safe_load((repo / "models/rf/model.yaml").read_text())
    assert (meta["format"], meta["task"], meta["classes"]) == ("skops", "classification", ["no", "yes"])
    assert list(meta["input_schema"].items()) == [("amount", "double"), ("age", "int64"), ("channel", "string")]
    assert meta["metrics"] == record["metrics"] and meta["trusted"] == []

    data = table()
    amount = data.column("amount").to_numpy()
    stats = meta["training_stats"]["amount"]
    assert stats["type"] == "numeric" and stats["count"] == 200 and stats["null_fraction"] == 0.0
    qs = (0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1)
    assert list(stats["quantiles"]) == ["0", "0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99", "1"]
    assert list(stats["quantiles"].values()) == [float(np.quantile(amount, q)) for q in qs]
    assert (stats["mean"], stats["std"]) == (float(amount.mean()), float(amount.std()))
    age = data.column("age").to_numpy().astype(float)
    assert meta["training_stats"]["age"]["quantiles"]["0.5"] == float(np.quantile(age, 0.5))
    channel = meta["training_stats"]["channel"]
    values = [v for v in data.column("channel").to_pylist() if v is not None]
    assert channel["type"] == "categorical" and channel["count"] == 199 and channel["null_fraction"] == 1 / 200
    assert channel["frequencies"] == {v: values.count(v) / 199 for v in ("web", "store", "phone")}
    assert list(channel["frequencies"]) == sorted(channel["frequencies"], key=lambda v: -values.count(v))
    assert channel["distinct"] == 3 and channel["other"] == 0.0

    stages = lock(repo)
    pointer = yaml.safe_load((repo / "data/train.parquet.mlv").read_text())["digest"]
    lineage = meta["lineage"]
    assert lineage["train_run"] == stages["fit"]["run_id"]
    assert lineage["model"] == {"path": "models/rf", "digest": stages["fit"]["outs"]["models/rf"]["digest"]}
    assert lineage["data"] == {"path": "data/train.parquet", "digest": pointer} == record["data"]
    assert lineage["stats_data"] == {"path": "data/train.parquet", "digest": pointer}
    params = {"n_estimators": 5, "max_depth": 4, "random_state": 0}
    canonical = b'{"max_depth":4,"n_estimators":5,"random_state":0}'
    assert lineage["params"] == {"estimator": "sklearn.ensemble.RandomForestClassifier", "values": params,
                                 "digest": xxh3(canonical)}


def test_data_without_a_feature_column_fails_the_stage_naming_stage_and_column(repo: Path, cli):
    fitted_repo(repo, cli)
    pq.write_table(table().drop_columns(["age"]), repo / "data/other.parquet")
    cli("add", "data/other.parquet")
    text = (repo / "mlv.yaml").read_text().replace("data: data/train.parquet\n    out: models/pkg",
                                                   "data: data/other.parquet\n    out: models/pkg")
    assert "data/other.parquet" in text
    (repo / "mlv.yaml").write_text(text)
    result = cli("run", code=1)
    out = result.stdout + result.stderr
    assert "package" in out and "'data': column 'age' is missing from data/other.parquet" in out
    assert "Traceback" not in out
    assert not (repo / "models/pkg").exists() and "package" not in lock(repo)


def test_a_mistyped_column_is_refused_before_anything_runs_when_model_and_data_exist(repo: Path, cli):
    fitted_repo(repo, cli)
    cli("run")
    bad = table().set_column(1, "age", pa.array(["x"] * 200))
    pq.write_table(bad, repo / "data/other.parquet")
    (repo / "mlv.yaml").write_text(textwrap.dedent("""\
        stages:
          pkg2:
            kind: package
            model: models/rf
            data: data/other.parquet
            out: models/pkg2
        """))
    result = cli("run", code=2)
    assert ("mlv.yaml:2: stage 'pkg2', 'data': column 'age' of data/other.parquet is string, but the model was "
            "trained on int64 values") in result.stderr


# -- load_package --------------------------------------------------------------------------


def test_load_package_predicts_as_the_estimator_does(packaged: Path):
    repo = packaged
    package = load_package("models/pkg")
    assert package.digest == lock(repo)["package"]["outs"]["models/pkg"]["digest"]
    assert (package.task, package.classes, package.features) == ("classification", ["no", "yes"], FEATURES)
    assert package.meta == yaml.safe_load((repo / "models/pkg/package.yaml").read_text())
    data = table(50, seed=11)
    predicted = package.predict(data)
    model = estimator(repo)
    assert predicted.column_names == ["prediction", "proba_no", "proba_yes"]
    assert predicted.column("prediction").to_pylist() == model.predict(matrix(data)).tolist()
    proba = model.predict_proba(matrix(data))
    assert predicted.column("proba_yes").to_pylist() == proba[:, 1].tolist()
    assert load_package(str(repo / "models/pkg")).digest == package.digest  # absolute path alike


def test_load_package_by_digest_materializes_it_from_the_store(packaged: Path, tmp_path: Path):
    repo = packaged
    digest = lock(repo)["package"]["outs"]["models/pkg"]["digest"]
    shutil.rmtree(repo / "models/pkg")  # the store has it; the workspace need not
    package = load_package(digest, root=repo)
    assert package.digest == digest
    data = table(20, seed=5)
    assert package.predict(data).column("prediction").to_pylist() == estimator(repo).predict(matrix(data)).tolist()
    with pytest.raises(PackageError, match="cannot be read from the store"):
        load_package("xxh3-128:" + "0" * 32, root=repo)


def test_input_that_does_not_fit_the_schema_is_refused_naming_the_column(packaged: Path):
    package = load_package("models/pkg")
    with pytest.raises(PackageError, match=re.escape("input has no column 'age'")) as err:
        package.predict(table(5).drop_columns(["age"]))
    assert err.value.column == "age"
    with pytest.raises(PackageError, match=re.escape("input column 'amount' is string, but the package expects "
                                                     "double")):
        package.predict(table(5).set_column(0, "amount", pa.array(["1"] * 5)))
    assert package.predict({"amount": [10.0], "age": [30], "channel": ["web"]}).num_rows == 1


@pytest.mark.parametrize("name", ["model.skops", "package.yaml"])
def test_one_changed_byte_refuses_to_load_naming_the_file(packaged: Path, name: str):
    repo = packaged
    original = (repo / "models/pkg" / name).read_bytes()
    flip(repo / "models/pkg" / name, len(original) // 2)
    with pytest.raises(PackageError, match=re.escape(f"'models/pkg/{name}' was changed")) as err:
        load_package("models/pkg")
    assert err.value.path == f"models/pkg/{name}" and err.value.exit_code == 1
    assert "mlv.lock (stage 'package')" in str(err.value)
    (repo / "models/pkg" / name).unlink()
    (repo / "models/pkg" / name).write_bytes(original)
    assert load_package("models/pkg").digest == lock(repo)["package"]["outs"]["models/pkg"]["digest"]


def test_outside_a_workspace_the_model_is_checked_against_package_yaml(packaged: Path, tmp_path: Path):
    copy = tmp_path / "elsewhere/pkg"
    shutil.copytree(packaged / "models/pkg", copy)
    assert load_package(copy).digest == lock(packaged)["package"]["outs"]["models/pkg"]["digest"]
    flip(copy / "model.skops", 100)
    with pytest.raises(PackageError, match=re.escape(f"'{copy}/model.skops' was changed: its bytes hash to")):
        load_package(copy)


SHIFT = '''
from sklearn.base import BaseEstimator, TransformerMixin

class Shift(BaseEstimator, TransformerMixin):
    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return x
'''


def test_a_type_outside_sklearn_numpy_scipy_refuses_to_load_unless_the_package_trusts_it(
        packaged: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "shiftmod.py").write_text(SHIFT)
    monkeypatch.syspath_prepend(str(site))
    from shiftmod import Shift
    from sklearn.pipeline import Pipeline

    package = tmp_path / "pkg"
    shutil.copytree(packaged / "models/pkg", package)
    model = Pipeline([("shift", Shift()), ("model", estimator(packaged))])
    sio.dump(model, package / "model.skops")
    meta = yaml.safe_load((package / "package.yaml").read_text())
    meta["model"]["digest"] = xxh3((package / "model.skops").read_bytes())
    (package / "package.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    with pytest.raises(PackageError, match=re.escape("holds types outside scikit-learn, NumPy and SciPy that the "
                                                     "package does not trust: shiftmod.Shift")):
        load_package(package)
    meta["trusted"] = ["shiftmod.Shift"]
    (package / "package.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    loaded = load_package(package)
    assert type(loaded.model.steps[0][1]).__name__ == "Shift"
    assert loaded.predict(table(5)).num_rows == 5
