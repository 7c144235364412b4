"""What ``mlv exp show --json`` costs over a history of 1,000 run records (target: under 0.3 s).

Run from the repo root with the project's venv::

    .venv/bin/python bench/bench_exp.py [--records N] [--reps N] [--json]

Builds a repo in a temp directory, runs a one-stage pipeline once with ``mlv run`` (a real
run record, metrics file in the store), then writes ``--records`` − 1 more records as the
engine writes them (``RunIndex.write``; each with its own params, fingerprint and metrics
object put in the store; every tenth a cached-restore event of the one before). Measures:

- ``first``: the first ``exp show`` after the records appeared (the provenance index reads
  every new record file once);
- ``in-process``: ``engine.experiments.experiments`` + JSON, as the CLI command runs it;
- ``subprocess``: ``mlv exp show --json`` as a user runs it (interpreter start included).

Median of ``--reps`` (default 5) runs of each.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MLV = Path(sys.executable).with_name("mlv")
PIPELINE = """\
params:
  lr: 0.1
  model: {max_depth: 3}
stages:
  train:
    cmd: python train.py
    deps: [train.py]
    params: [lr, model.max_depth]
    metrics: [metrics/train.json]
"""


def build(root: Path, n: int) -> None:
    from mlv.engine.records import REUSED, RunIndex, new_run_id, reuse_event
    from mlv.storage.workspace import Workspace

    subprocess.run([str(MLV), "init", "--no-scm"], cwd=root, check=True, capture_output=True)
    (root / "mlv.yaml").write_text(PIPELINE)
    (root / "train.py").write_text("import json\njson.dump({'acc': 0.5, 'loss': {'train': 0.3}}, "
                                   "open('metrics/train.json', 'w'))\n")
    subprocess.run([str(MLV), "run"], cwd=root, check=True, capture_output=True)
    ws = Workspace.find(root)
    index = RunIndex(ws)
    (path,) = (root / ".mlv/runs").glob("*.json")
    real = index.read(path.stem)
    previous = real
    for i in range(1, n):
        params = {"lr": round(0.01 * (i % 50), 2), "model.max_depth": 2 + i % 17}
        metrics = {"acc": (i * 7919 % 1000) / 1000, "loss": {"train": (i * 104729 % 1000) / 1000}}
        digest = ws.store.put_bytes(json.dumps(metrics).encode())
        outs = {"metrics/train.json": {"digest": str(digest), "size": len(json.dumps(metrics))}}
        if i % 10 == 0:
            record = reuse_event(previous.run_id, stage="train", fingerprint=previous.fingerprint,
                                 definition=previous.definition, params=previous.params, deps={}, outs=previous.outs,
                                 root=root)
            assert record.status == REUSED
        else:
            record = dataclasses.replace(
                real, run_id=f"{new_run_id()[:16]}{i:08x}", fingerprint=f"xxh3-128:{i:032x}",
                definition={**real.definition, "params": params}, params=params, outs=outs,
                started=real.started - 60 * (n - i), ended=real.ended - 60 * (n - i))
            previous = record
        index.write(record)


def median_of(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from mlv.engine.experiments import experiments
    from mlv.storage.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        build(root, args.records)
        built = time.perf_counter() - start
        ws = Workspace.find(root)

        def in_process() -> None:
            json.dumps([e.to_dict() for e in experiments(ws, stages={"train"})])

        first = median_of(in_process, 1)
        rows = len(experiments(ws, stages={"train"}))
        warm = median_of(in_process, args.reps)
        env = {**os.environ, "COLUMNS": "120"}

        def cli() -> None:
            subprocess.run([str(MLV), "exp", "show", "--json"], cwd=root, check=True, capture_output=True, env=env)

        sub = median_of(cli, args.reps)
        table = median_of(lambda: subprocess.run([str(MLV), "exp", "show"], cwd=root, check=True,
                                                 capture_output=True, env=env), args.reps)
    result = {"records": args.records, "rows": rows, "build_s": round(built, 2), "first_s": round(first, 3),
              "in_process_s": round(warm, 3), "subprocess_json_s": round(sub, 3), "subprocess_table_s": round(table, 3)}
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}  {value}")


if __name__ == "__main__":
    main()
