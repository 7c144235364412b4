"""Small real ML inputs shared by the kind and deployment tests: a training table, `kind: train` and
`kind: package` stages, and a repo built from them by a real `mlv run`."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from helpers import Cli

FEATURES = ["amount", "age", "channel"]



def train_stage(name: str, out: str, depth: int) -> str:
    """A real `kind: train` stage (one-hot encoding of the text feature inside the saved estimator)."""
    return textwrap.dedent(f"""\
        {name}:
          kind: train
          estimator: sklearn.ensemble.RandomForestClassifier
          params: {{n_estimators: 5, max_depth: {depth}, random_state: 0}}
          data: data/train.parquet
          target: label
          features: [amount, age, channel]
          split: {{test: 0.25, seed: 0}}
          out: {out}
        """)


def table(rows: int = 200, seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 50.0, rows)
    age = rng.integers(18, 80, rows)
    channel = rng.choice(["web", "store", "phone"], rows, p=[0.5, 0.3, 0.2]).tolist()
    channel[rows // 2] = None  # a null: counted in null_fraction, not in frequencies
    label = np.where(amount + rng.normal(0, 30, rows) > 100, "yes", "no")
    return pa.table({"amount": amount, "age": age, "channel": pa.array(channel, pa.string()), "label": label})


def lock(repo: Path) -> dict:
    return yaml.safe_load((repo / "mlv.lock").read_text())["stages"]


def package_stage(name: str, model: str, out: str) -> str:
    """A `kind: package` stage of ``model``, with the training table for its schema and statistics."""
    return textwrap.dedent(f"""\
        {name}:
          kind: package
          model: {model}
          data: data/train.parquet
          out: {out}
        """)


def built_repo(root: Path, stages: str, data: pa.Table | None = None) -> Path:
    """``root`` as an mlv repo: data/train.parquet (``data``, default ``table()``) added, ``stages`` in
    mlv.yaml, and `mlv run` done — for module-scoped fixtures that tests then copy or only read."""
    root.mkdir()
    here = os.getcwd()
    os.chdir(root)
    try:
        cli = Cli()
        cli("init", "--no-scm")
        (root / "data").mkdir()
        pq.write_table(table() if data is None else data, root / "data/train.parquet")
        cli("add", "data/train.parquet")
        (root / "mlv.yaml").write_text("stages:\n" + textwrap.indent(stages, "  "))
        cli("run")
    finally:
        os.chdir(here)
    return root


def matrix(t: pa.Table) -> np.ndarray:
    """The raw rows a trained model takes: FEATURES in order, as objects (text stays text)."""
    x = np.empty((t.num_rows, len(FEATURES)), dtype=object)
    for j, name in enumerate(FEATURES):
        x[:, j] = t.column(name).to_pylist()
    return x
