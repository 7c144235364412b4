"""Fit a random forest on the prepared training table (a `call:` stage)."""

import json
import pathlib
import pickle

from sklearn.ensemble import RandomForestClassifier

from src.features import load


def fit(deps, outs, params):
    prepared = pathlib.Path(deps[0])
    x, y = load(prepared / "train.parquet")
    model = RandomForestClassifier(random_state=params["seed"], **params["model"]).fit(x, y)
    out = pathlib.Path(outs[0])
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.pkl").write_bytes(pickle.dumps(model))
    metrics = pathlib.Path("metrics/train.json")
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps({"train_accuracy": round(model.score(x, y), 4), "rows": len(y)}, indent=2))
    print(f"trained on {len(y)} rows")
