"""Small real ML inputs shared by the kind and deployment tests: a training table and a `kind: train` stage."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

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
