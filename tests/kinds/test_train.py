"""``kind: train`` through the real CLI: real scikit-learn fits, metrics as scikit-learn computes them,
skops files that load without running code, and bad settings refused before anything runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from pyarrow import csv
from sklearn import metrics
from sklearn.datasets import load_iris, make_classification, make_regression
from sklearn.model_selection import train_test_split

RF = "sklearn.ensemble.RandomForestClassifier"


def write_stage(repo: Path, body: str, name: str = "train") -> None:
    (repo / "mlv.yaml").write_text(f"stages:\n  {name}:\n    kind: train\n" + textwrap.indent(textwrap.dedent(body), "    "))


def binary_table(n: int = 300) -> pa.Table:
    x, y = make_classification(n_samples=n, n_features=5, n_informative=3, random_state=3)
    return pa.table({**{f"x{i}": x[:, i] for i in range(5)}, "label": y, "label_source": ["rule:r"] * n})


def outputs(repo: Path, out: str = "models/m") -> tuple[dict, dict]:
    return yaml.safe_load((repo / out / "model.yaml").read_text()), json.loads((repo / "metrics/train.json").read_text())


def load_model(path: Path):
    import skops.io as sio

    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


def test_a_classifier_is_trained_and_scored_exactly_as_scikit_learn_scores_it(repo, cli):
    table = binary_table()
    pq.write_table(table, repo / "data.parquet")
    cli("add", "data.parquet")
    write_stage(repo, f"""\
        estimator: {RF}
        params: {{n_estimators: 10, random_state: 0}}
        data: data.parquet
        target: label
        split: {{test: 0.25, seed: 7}}
        out: models/m
        metrics: metrics/train.json
        """)
    cli("run")
    card, found = outputs(repo)

    from sklearn.ensemble import RandomForestClassifier

    x = np.column_stack([table[f"x{i}"].to_numpy() for i in range(5)])
    y = table["label"].to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=7, stratify=y)
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(x_train, y_train)
    predicted = model.predict(x_test)
    assert found == {"accuracy": metrics.accuracy_score(y_test, predicted),
                     "f1": metrics.f1_score(y_test, predicted, pos_label=1),
                     "roc_auc": metrics.roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]),
                     "n_train": 225, "n_test": 75}
    assert card["metrics"] == found
    saved = load_model(repo / "models/m/model.skops")
    assert (saved.predict(x_test) == predicted).all()  # the same model, and it loads without running code

    pointer = yaml.safe_load((repo / "data.parquet.mlv").read_text())
    assert card == {
        "estimator": RF, "params": {"n_estimators": 10, "random_state": 0}, "task": "classification",
        "target": "label", "features": ["x0", "x1", "x2", "x3", "x4"],  # label_source is left out
        "feature_types": dict.fromkeys(["x0", "x1", "x2", "x3", "x4"], "double"), "classes": [0, 1],
        "metrics": found, "data": {"path": "data.parquet", "digest": pointer["digest"]},
        "split": {"test": 0.25, "seed": 7}, "device": "cpu", "trusted": [],
    }
    assert list(card) == ["estimator", "params", "task", "target", "features", "feature_types", "classes",
                          "metrics", "data", "split", "device", "trusted"]

    records = sorted((repo / ".mlv/runs").iterdir())
    first = (repo / "models/m/model.skops").read_bytes()
    cli("run")
    assert sorted((repo / ".mlv/runs").iterdir()) == records  # up to date: nothing ran
    cli("run", "--force")
    assert (repo / "models/m/model.skops").read_bytes() == first  # same inputs, same model bytes


def test_a_regressor_is_scored_on_its_eval_table(repo, cli):
    x, y = make_regression(n_samples=240, n_features=4, noise=5.0, random_state=1)
    (repo / "data").mkdir()
    for name, rows in (("train", slice(0, 180)), ("eval", slice(180, None))):
        csv.write_csv(pa.table({**{f"f{i}": x[rows, i] for i in range(4)}, "price": y[rows]}),
                      repo / f"data/{name}.csv")
    cli("add", "data")
    write_stage(repo, """\
        estimator: sklearn.linear_model.Ridge
        params: {alpha: 0.5}
        data: data/train.csv
        eval: data/eval.csv
        target: price
        features: [f0, f1, f3]
        device: auto
        out: models/m
        metrics: metrics/train.json
        """)
    cli("run")
    card, found = outputs(repo)

    from sklearn.linear_model import Ridge

    columns = [0, 1, 3]
    predicted = Ridge(alpha=0.5).fit(x[:180][:, columns], y[:180]).predict(x[180:][:, columns])
    expected = {"rmse": metrics.root_mean_squared_error(y[180:], predicted),
                "mae": metrics.mean_absolute_error(y[180:], predicted), "r2": metrics.r2_score(y[180:], predicted)}
    assert {k: found[k] for k in expected} == pytest.approx(expected, rel=1e-9)
    assert (found["n_train"], found["n_test"]) == (180, 60)
    assert card["task"] == "regression" and card["classes"] is None and card["features"] == ["f0", "f1", "f3"]
    assert card["device"] == ("gpu" if gpu_available() else "cpu")  # auto: the CPU here unless CuPy sees a device
    assert card["eval"]["path"] == "data/eval.csv" and "split" not in card
    assert card["data"]["digest"] is None or card["data"]["digest"].startswith("xxh3-128:")


def test_text_features_are_one_hot_encoded_inside_the_saved_model(repo, cli):
    iris = load_iris()
    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green", "blue"], size=150)
    species = np.array(iris.target_names)[iris.target].astype(object)
    species[[5, 60, 120]] = None  # unlabelled rows are dropped
    table = pa.table({"sepal": iris.data[:, 0], "petal": iris.data[:, 2], "wide": iris.data[:, 3] > 1.0,
                      "colour": pa.array(colour).dictionary_encode(), "species": pa.array(species, pa.string())})
    pq.write_table(table, repo / "iris.parquet")
    cli("add", "iris.parquet")
    write_stage(repo, f"""\
        estimator: {RF}
        params: {{n_estimators: 8, random_state: 0}}
        data: iris.parquet
        target: species
        out: models/m
        metrics: metrics/train.json
        """)
    cli("run")
    card, found = outputs(repo)
    assert card["features"] == ["sepal", "petal", "wide", "colour"]
    assert card["feature_types"] == {"sepal": "double", "petal": "double", "wide": "bool",
                                     "colour": "dictionary<values=string, indices=int32, ordered=0>"}
    assert card["classes"] == ["setosa", "versicolor", "virginica"] and card["split"] == {"test": 0.2, "seed": 0}
    assert (found["n_train"], found["n_test"]) == (117, 30) and set(found) >= {"accuracy", "f1", "roc_auc"}
    model = load_model(repo / "models/m/model.skops")
    rows = np.array([[5.0, 1.4, False, "red"], [6.5, 5.5, True, "purple"]], dtype=object)  # raw rows, unseen colour
    assert list(model.predict(rows)) == ["setosa", "virginica"]
    shown = cli("show", "train").stdout
    assert "dropped 3 of 150 rows of iris.parquet whose 'species' is null" in shown


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("estimator", "sklearn.ensemble.RandomForestClassifer",
     "'estimator': 'sklearn.ensemble.RandomForestClassifer' cannot be imported: "),
    ("target", "labels", ("'target': column 'labels' is not in data.parquet; its columns: x0, x1, x2, x3, x4, label, "
                         "label_source, tags")),
    ("features", "[x0, tags]", "'features.1': column 'tags' in data.parquet is list<element: int64>; a feature must be"),
    ("params", "{n_estimatorz: 3}", ("'params': 'n_estimatorz' is not a parameter of RandomForestClassifier; "
                                    "did you mean 'n_estimators'?")),
    ("device", "gpu", ("'device': sklearn.ensemble.RandomForestClassifier does not support array-API dispatch; "
                      "supported: ")),
])
def test_a_bad_setting_is_refused_before_anything_runs(repo, cli, setting, value, message):
    table = binary_table(40)
    pq.write_table(table.append_column("tags", pa.array([[1, 2]] * 40)), repo / "data.parquet")
    settings = {"estimator": RF, "data": "data.parquet", "target": "label", "out": "models/m", setting: value}
    write_stage(repo, "".join(f"{k}: {v}\n" for k, v in settings.items()))
    result = cli("run", code=2)
    assert f"mlv.yaml:2: stage 'train', {message}" in result.stderr
    assert not (repo / "mlv.lock").exists() and not (repo / "models").exists()


def test_a_table_made_upstream_without_the_target_fails_the_stage_with_one_message(repo, cli):
    (repo / "make.py").write_text("import pyarrow as pa, pyarrow.parquet as pq\n"
                                  "pq.write_table(pa.table({'a': [1.0, 2.0, 3.0], 'b': [0, 1, 0]}), 'made.parquet')\n")
    (repo / "mlv.yaml").write_text(textwrap.dedent(f"""\
        stages:
          make:
            cmd: {sys.executable} make.py
            deps: [make.py]
            outs: [made.parquet]
          train:
            kind: train
            estimator: {RF}
            data: made.parquet
            target: label
            out: models/m
        """))
    result = cli("run", code=1)
    text = result.stdout + result.stderr
    assert "'target': column 'label' is not in made.parquet; its columns: a, b" in text
    assert "Traceback" not in text
    assert "make" in yaml.safe_load((repo / "mlv.lock").read_text())["stages"]  # the stage upstream is committed


MODELS = '''
import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

class MeanRegressor(RegressorMixin, BaseEstimator):
    def fit(self, x, y):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, x):
        return np.full(len(x), self.mean_)
'''


def test_a_model_type_skops_does_not_trust_is_refused_unless_listed(repo, cli):
    (repo / "mymodels.py").write_text(MODELS)
    pq.write_table(pa.table({"a": np.arange(50.0), "y": np.arange(50.0) * 2}), repo / "data.parquet")
    body = "estimator: mymodels.MeanRegressor\ndata: data.parquet\ntarget: y\nout: models/m\n"
    write_stage(repo, body)
    result = cli("run", code=1)
    text = result.stdout + result.stderr
    assert ("'trusted': model type mymodels.MeanRegressor is not in skops' trusted set; list it under trusted: "
            "if you trust it") in text
    assert "Traceback" not in text
    write_stage(repo, body + "trusted: [mymodels.MeanRegressor]\n")
    cli("run")
    assert yaml.safe_load((repo / "models/m/model.yaml").read_text())["trusted"] == ["mymodels.MeanRegressor"]


ARRAY_API = '''
import sys
import numpy as np
import array_api_strict
from sklearn.datasets import make_classification, make_regression
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import Ridge
from mlv.pipelines import arrays

x, y = make_regression(n_samples=200, n_features=6, random_state=0)
on_numpy = arrays.fit(np, Ridge(alpha=1.0), x[:150], y[:150], x[150:])
on_strict = arrays.fit(array_api_strict, Ridge(alpha=1.0), x[:150], y[:150], x[150:])
assert type(on_strict.predicted) is np.ndarray and type(on_strict.estimator.coef_) is np.ndarray
np.testing.assert_allclose(on_strict.predicted, on_numpy.predicted, atol=1e-6)
np.testing.assert_allclose(on_strict.estimator.predict(x[150:]), on_numpy.predicted, atol=1e-6)  # back on NumPy

x, y = make_classification(n_samples=200, n_features=6, n_classes=3, n_informative=4, random_state=0)
on_numpy = arrays.fit(np, LinearDiscriminantAnalysis(), x[:150], y[:150], x[150:])
on_strict = arrays.fit(array_api_strict, LinearDiscriminantAnalysis(), x[:150], y[:150], x[150:])
assert (on_strict.predicted == on_numpy.predicted).all()
np.testing.assert_allclose(on_strict.proba, on_numpy.proba, atol=1e-6)
print("ok")
'''


def test_the_array_api_path_predicts_as_the_numpy_path_does():
    pytest.importorskip("array_api_strict")
    env = {**os.environ, "SCIPY_ARRAY_API": "1"}  # read by scipy when imported: a process of its own, as a stage is
    result = subprocess.run([sys.executable, "-c", ARRAY_API], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a visible GPU (mlv[gpu])")
def test_device_gpu_fits_on_the_gpu_and_saves_a_model_that_predicts_on_the_cpu(repo, cli):
    x, y = make_classification(n_samples=400, n_features=6, n_informative=4, random_state=0)
    pq.write_table(pa.table({**{f"x{i}": x[:, i] for i in range(6)}, "label": y}), repo / "data.parquet")
    for device in ("cpu", "gpu"):
        write_stage(repo, f"""\
            estimator: sklearn.discriminant_analysis.LinearDiscriminantAnalysis
            data: data.parquet
            target: label
            device: {device}
            out: models/{device}
            metrics: metrics/{device}.json
            """, name=f"train_{device}")
        cli("run")
    cpu = yaml.safe_load((repo / "models/cpu/model.yaml").read_text())
    gpu = yaml.safe_load((repo / "models/gpu/model.yaml").read_text())
    assert (cpu["device"], gpu["device"]) == ("cpu", "gpu")
    assert gpu["metrics"] == pytest.approx(cpu["metrics"], abs=1e-6)
    model = load_model(repo / "models/gpu/model.skops")
    assert (model.predict(x) == load_model(repo / "models/cpu/model.skops").predict(x)).all()


def test_skops_files_are_canonical_same_content_same_bytes():
    import skops.io as sio
    from mlv.pipelines.train import canonical

    def model():
        shared = np.arange(4.0)
        return {"weights": shared, "again": shared, "raw": b"\x00bytes", "nested": [np.ones(2), {"k": "v"}]}

    first, second = canonical(sio.dumps(model())), canonical(sio.dumps(model()))  # other ids, other uuids, other times
    assert first == second
    loaded = sio.loads(first, trusted=sio.get_untrusted_types(data=first))
    assert loaded["raw"] == b"\x00bytes" and loaded["nested"][1] == {"k": "v"}
    assert loaded["weights"].tolist() == loaded["again"].tolist() == [0, 1, 2, 3]
