"""Benchmark of ``kind: score`` against a plain loop: read each Parquet file with pyarrow, ``model.predict``, write.

Run from the repo root with the project's venv::

    .venv/bin/python bench/bench_score.py [--files 20] [--rows 100000] [--features 8] [--reps 3] [--json] [--keep]

A fresh ``git init`` + ``mlv init`` repo under ``bench/.work/score-<pid>``: a training table
(``make_classification``, ``--features`` float columns), a ``StandardScaler`` + ``LogisticRegression``
``Pipeline`` fitted on it (laid out as a train stage's model directory and added) through ``kind: package``, then
``--files`` Parquet files of ``--rows`` rows each (``mlv add``-ed as ``data/incoming``) scored by
a ``kind: score`` stage.

- mlv: ``mlv run --force score`` (the whole command), and the scoring inside the stage (the
  ``scored N rows … in S s`` line its log holds: partitions read, scored and written, without
  process start-up, package loading or storing the outputs).
- plain: a fresh ``python`` that loads the same ``model.skops`` and, for each file, reads it
  with ``pyarrow.parquet.read_table``, stacks the feature columns, ``model.predict``, and writes
  a one-column Parquet file; timed around the loop only.

Both at 1 CPU and at 2 CPUs (``os.sched_setaffinity``: the score kind uses as many Dask
threads as CPUs it may use; the plain loop gets pyarrow's and BLAS's own threads). Targets:
scoring at 1 CPU >= 0.9x the plain loop's rows/s at 1 CPU; at 2 CPUs faster than the plain loop.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from common import MLV, WORK, BenchError, git_init, log, median, mlv_env, run, source_state

PLAIN = '''
import sys, time
from pathlib import Path
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import skops.io as sio

model_file, features = sys.argv[1], sys.argv[2].split(",")
model = sio.load(model_file, trusted=sio.get_untrusted_types(file=model_file))
out = Path("plain-out")
out.mkdir(exist_ok=True)
began = time.perf_counter()
rows = 0
for i, path in enumerate(sorted(Path("data/incoming").glob("*.parquet"))):
    table = pq.read_table(path, columns=features)
    x = np.column_stack([table[c].to_numpy() for c in features]).astype(np.float64)
    pq.write_table(pa.table({"prediction": model.predict(x)}), out / f"part-{i:05d}.parquet")
    rows += table.num_rows
print(rows, time.perf_counter() - began)
'''


def make_repo(root: Path, files: int, rows: int, features: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import make_classification

    root.mkdir(parents=True)
    git_init(root)
    names = [f"f{i}" for i in range(features)]
    x, y = make_classification(n_samples=20_000, n_features=features, n_informative=features // 2, random_state=0)
    (root / "data/incoming").mkdir(parents=True)
    pq.write_table(pa.table({**{n: x[:, i] for i, n in enumerate(names)}, "label": y.astype(np.int64)}),
                   root / "data/train.parquet")
    rng = np.random.default_rng(1)
    for k in range(files):
        block = rng.normal(size=(rows, features))
        pq.write_table(pa.table({n: block[:, i] for i, n in enumerate(names)}), root / f"data/incoming/p{k:03d}.parquet")
    (root / "plain.py").write_text(PLAIN)
    # the model: StandardScaler + LogisticRegression fitted here (a Pipeline is not a class the train kind can name
    # with params), laid out as a train stage lays out its model directory, and added
    import skops.io as sio
    import yaml
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (root / "models/lr").mkdir(parents=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(x, y)
    sio.dump(model, root / "models/lr/model.skops")
    (root / "models/lr/model.yaml").write_text(yaml.safe_dump({
        "task": "classification", "features": names, "feature_types": {n: "double" for n in names},
        "classes": [0, 1], "metrics": {}, "estimator": "sklearn.pipeline.Pipeline", "params": {}}))
    (root / "mlv.yaml").write_text(textwrap.dedent("""\
        stages:
          package:
            kind: package
            model: models/lr
            data: data/train.parquet
            out: models/pkg
          score:
            kind: score
            package: models/pkg
            data: data/incoming
            out: predictions/incoming
        """))


def pinned(cpus: int) -> dict:
    """``preexec_fn`` that pins the command (and the stage processes it starts) to the first ``cpus`` CPUs."""
    allowed = sorted(os.sched_getaffinity(0))[:cpus]
    return {"preexec_fn": lambda: os.sched_setaffinity(0, allowed)}


def timed(argv: list, root: Path, env: dict, cpus: int) -> float:
    t = __import__("time").perf_counter()
    subprocess.run([str(a) for a in argv], cwd=root, env=env, check=True, capture_output=True, **pinned(cpus))
    return __import__("time").perf_counter() - t


def scoring_seconds(root: Path) -> tuple[int, float, int]:
    """Rows, seconds and workers from the newest score run's log (its ``scored … in S s`` line)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mlv.storage.store.digest import parse
    from mlv.storage.workspace import Workspace

    records = [json.loads(p.read_text()) for p in (root / ".mlv/runs").glob("*.json")]
    newest = max((r for r in records if r.get("stage") == "score" and r["status"] == "succeeded"),
                 key=lambda r: r["started"])
    text = Workspace(root).store.read_bytes(parse(newest["log"])).decode()
    m = re.search(r"scored (\d+) rows of \d+ partition\(s\) with (\d+) Dask worker thread\(s\) in ([\d.]+) s", text)
    if m is None:
        raise BenchError(f"no 'scored … rows' line in the score stage's log:\n{text}")
    return int(m.group(1)), float(m.group(3)), int(m.group(2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    root = WORK / f"score-{os.getpid()}"
    log(f"building {args.files} files x {args.rows} rows x {args.features} features in {root}")
    make_repo(root, args.files, args.rows, args.features)
    env = mlv_env()
    run([MLV, "init"], root, env).check("mlv init")
    run([MLV, "add", "data/train.parquet", "data/incoming", "models/lr"], root, env).check("mlv add")
    run([MLV, "run"], root, env).check("mlv run")
    total = args.files * args.rows
    model = root / "models/pkg/model.skops"
    features = ",".join(f"f{i}" for i in range(args.features))
    results: dict[int, dict] = {}
    try:
        for cpus in (1, 2):
            mlv_s, stage_s, plain_s = [], [], []
            for rep in range(args.reps + 1):  # rep 0 warms up
                whole = timed([MLV, "run", "--force", "score"], root, env, cpus)
                rows, inside, workers = scoring_seconds(root)
                if rows != total:
                    raise BenchError(f"the score stage scored {rows} rows, not {total}")
                p = subprocess.run([sys.executable, "plain.py", str(model), features], cwd=root, env=env,
                                   check=True, capture_output=True, text=True, **pinned(cpus))
                plain_rows, plain = p.stdout.split()
                if rep == 0:
                    continue
                mlv_s.append(whole)
                stage_s.append(inside)
                plain_s.append(float(plain))
                log(f"{cpus} CPU(s) rep {rep}: mlv run {whole:.2f} s, scoring {inside:.2f} s ({workers} workers), "
                    f"plain loop {float(plain):.2f} s")
            results[cpus] = {"workers": workers, "mlv_run_s": median(mlv_s), "scoring_s": median(stage_s),
                             "plain_s": median(plain_s), "scoring_rows_s": total / median(stage_s),
                             "mlv_run_rows_s": total / median(mlv_s), "plain_rows_s": total / median(plain_s)}
        ours = __import__("pyarrow.parquet").parquet.read_table(root / "predictions/incoming").column("prediction")
        theirs = __import__("pyarrow.parquet").parquet.read_table(root / "plain-out").column("prediction")
        if ours.to_pylist() != theirs.to_pylist():
            raise BenchError("the score stage and the plain loop predict differently")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    one, two = results[1], results[2]
    met = {"1_cpu_ge_0.9x_plain": one["scoring_rows_s"] >= 0.9 * one["plain_rows_s"],
           "2_cpus_faster_than_plain_1_cpu": two["scoring_rows_s"] > one["plain_rows_s"],
           "2_cpus_faster_than_plain_2_cpus": two["scoring_rows_s"] > two["plain_rows_s"]}
    summary = {"files": args.files, "rows_per_file": args.rows, "features": args.features, "reps": args.reps,
               "cores": os.cpu_count(), "results": results, "met": met, "source": source_state()}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"kind: score, {args.files} files x {args.rows} rows x {args.features} features, scaler + logistic "
              f"regression, median of {args.reps} on {os.cpu_count()} cores")
        for cpus, r in results.items():
            print(f"  {cpus} CPU(s), {r['workers']} Dask worker(s): scoring {r['scoring_rows_s']:>10,.0f} rows/s "
                  f"({r['scoring_s']:.2f} s; whole `mlv run --force` {r['mlv_run_s']:.2f} s = "
                  f"{r['mlv_run_rows_s']:,.0f} rows/s)   plain loop {r['plain_rows_s']:>10,.0f} rows/s "
                  f"({r['plain_s']:.2f} s)")
        print("  targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in met.items()))
    return 0 if met["1_cpu_ge_0.9x_plain"] and met["2_cpus_faster_than_plain_1_cpu"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        sys.exit(2)
