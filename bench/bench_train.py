"""Benchmark of ``kind: train`` (``mlv run``) against the same work done with scikit-learn directly.

Run from the repo root with the project's venv::

    .venv/bin/python bench/bench_train.py [--rows 200000] [--features 20] [--trees 10] [--reps 3] [--json] [--keep]

One Parquet table of ``--rows`` x ``--features`` float columns and a binary ``label``
(``make_classification``), ``mlv add``-ed in a fresh ``git init`` + ``mlv init`` repo under
``bench/.work/train-<pid>``. The stage fits ``RandomForestClassifier(n_estimators=--trees,
max_depth=12, random_state=0)`` on a stratified 80/20 split and writes ``models/rf`` and
``metrics/train.json``.

- mlv: ``mlv run --force`` (the whole command: interpreter start-up, pipeline read,
  preflight, the stage's own process, hashing and storing the model, the lock).
- direct: a fresh ``python`` doing the same work by hand: read the Parquet file with
  pyarrow, columns to a NumPy matrix, ``train_test_split`` (stratified, same seed), fit,
  predict, ``predict_proba``, accuracy / f1 / roc_auc, ``skops.io.dump``.

Both are run ``--reps`` times, alternating, after one warm-up of each (page cache, byte-code);
medians are compared. Overhead = mlv - direct; target: overhead < 10% of direct + 1 s.
The stage's own time (``ended - started`` of its run record) is shown beside it, splitting the
overhead between the kind (inside the stage) and the engine (around it). Both runs' metrics
must agree, or the comparison is void.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from common import (
    MLV,
    WORK,
    BenchError,
    git_init,
    log,
    median,
    mlv_env,
    run,
    source_state,
)

DIRECT = '''
import json, sys
import numpy as np
import pyarrow.parquet as pq
import skops.io as sio
from sklearn import metrics
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

trees = int(sys.argv[1])
table = pq.read_table("data.parquet")
features = [c for c in table.column_names if c != "label"]
x = np.column_stack([table[c].to_numpy() for c in features]).astype(np.float64)
y = table["label"].to_numpy()
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
model = RandomForestClassifier(n_estimators=trees, max_depth=12, random_state=0).fit(x_train, y_train)
predicted = model.predict(x_test)
found = {"accuracy": metrics.accuracy_score(y_test, predicted), "f1": metrics.f1_score(y_test, predicted, pos_label=1),
         "roc_auc": metrics.roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])}
sio.dump(model, "direct.skops")
print(json.dumps(found))
'''


def make_repo(root: Path, rows: int, features: int, trees: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import make_classification

    root.mkdir(parents=True)
    git_init(root)
    x, y = make_classification(n_samples=rows, n_features=features, n_informative=features // 2, random_state=0)
    pq.write_table(pa.table({**{f"f{i}": x[:, i] for i in range(features)}, "label": y.astype(np.int64)}),
                   root / "data.parquet")
    (root / "direct.py").write_text(DIRECT)
    (root / "mlv.yaml").write_text(textwrap.dedent(f"""\
        stages:
          train:
            kind: train
            estimator: sklearn.ensemble.RandomForestClassifier
            params: {{n_estimators: {trees}, max_depth: 12, random_state: 0}}
            data: data.parquet
            target: label
            split: {{test: 0.2, seed: 0}}
            out: models/rf
            metrics: metrics/train.json
        """))
    env = mlv_env()
    run([MLV, "init"], root, env).check("mlv init")
    run([MLV, "add", "data.parquet"], root, env).check("mlv add")


def stage_seconds(root: Path) -> float:
    """``ended - started`` of the newest run record of the train stage."""
    records = [json.loads(p.read_text()) for p in (root / ".mlv/runs").glob("*.json")]
    newest = max((r for r in records if r.get("stage") == "train"), key=lambda r: r["started"])
    return newest["ended"] - newest["started"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--trees", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    import os

    root = WORK / f"train-{os.getpid()}"
    log(f"building {args.rows} x {args.features} table in {root}")
    make_repo(root, args.rows, args.features, args.trees)
    env = mlv_env()
    mlv_s, direct_s, stage_s = [], [], []
    try:
        for rep in range(args.reps + 1):  # rep 0 warms up both
            m = run([MLV, "run", "--force"], root, env).check("mlv run")
            d = run([sys.executable, "direct.py", str(args.trees)], root, env).check("direct")
            if rep == 0:
                log(f"warm-up: mlv {m.seconds:.2f} s, direct {d.seconds:.2f} s")
                continue
            mlv_s.append(m.seconds)
            direct_s.append(d.seconds)
            stage_s.append(stage_seconds(root))
            log(f"rep {rep}: mlv {m.seconds:.2f} s (stage {stage_s[-1]:.2f} s), direct {d.seconds:.2f} s")
        ours = json.loads((root / "metrics/train.json").read_text())
        theirs = json.loads(d.stdout.strip().splitlines()[-1])
        if any(abs(ours[k] - theirs[k]) > 1e-12 for k in theirs):
            raise BenchError(f"the two runs disagree: mlv {ours}, direct {theirs}")
        mlv_med, direct_med, stage_med = median(mlv_s), median(direct_s), median(stage_s)
        overhead = mlv_med - direct_med
        target = 0.1 * direct_med + 1.0
        result = {
            "rows": args.rows, "features": args.features, "trees": args.trees, "reps": args.reps,
            "cores": os.cpu_count(), "mlv_s": mlv_med, "direct_s": direct_med, "stage_s": stage_med,
            "overhead_s": overhead, "overhead_pct": 100 * overhead / direct_med, "target_s": target,
            "met": overhead < target, "metrics": {k: ours[k] for k in theirs}, "source": source_state(),
            "model_bytes": (root / "models/rf/model.skops").stat().st_size,
            "direct_model_bytes": (root / "direct.skops").stat().st_size,
        }
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"kind: train, {args.rows} rows x {args.features} features, RandomForest({args.trees} trees), "
              f"median of {args.reps} on {result['cores']} cores")
        print(f"  mlv run --force      {mlv_med:7.2f} s   (the stage itself: {stage_med:.2f} s)")
        print(f"  scikit-learn direct  {direct_med:7.2f} s")
        print(f"  overhead             {overhead:7.2f} s  ({result['overhead_pct']:.1f}%)   target < {target:.2f} s: "
              f"{'met' if result['met'] else 'MISSED'}")
        print(f"  metrics agree: {result['metrics']}")
    return 0 if result["met"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        sys.exit(2)
