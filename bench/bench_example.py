"""Benchmark of the example pipeline (``examples/churn``): cold, no-op, and fully cached.

Run from the repo root with the project's venv::

    .venv/bin/python bench/bench_example.py [--reps 3] [--json]

Each repetition copies ``examples/churn`` into a fresh ``git init`` + ``mlv init`` repo under
``bench/.work/example-<pid>``, ``mlv add``-s ``data/raw`` and ``data/incoming`` and times:

- cold: the first ``mlv run`` — all 11 stages (prepare, label, features, 4 × train, select,
  package, incoming, score) run, on the local cluster mlv starts;
- no-op: ``mlv run`` again — everything up to date;
- fully cached: every output and ``mlv.lock`` deleted, then ``mlv run`` — every stage is
  restored from the run cache, none runs.

Per-stage times of the cold run come from its run records (``ended - started``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys

import yaml
from common import MLV, REPO, WORK, BenchError, git_init, log, median, mlv_env, run, source_state

STAGES = 11


def once(work) -> dict:
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(REPO / "examples/churn", work)
    (work / "src/generate.py").unlink()
    git_init(work)
    env = mlv_env()
    run([MLV, "init"], work, env).check("mlv init")
    run([MLV, "add", "data/raw", "data/incoming"], work, env).check("mlv add")
    cold = run([MLV, "run", "--json"], work, env).check("cold run")
    states = [r["state"] for r in json.loads(cold.stdout)]
    if states.count("done") != STAGES:
        raise BenchError(f"cold run: expected {STAGES} stages done, got {states}")
    stages = {}
    for record in (work / ".mlv/runs").glob("*.json"):
        data = json.loads(record.read_text())
        stages[data["stage"]] = data["ended"] - data["started"]
    noop = run([MLV, "run", "--json"], work, env).check("no-op run")
    if {r["state"] for r in json.loads(noop.stdout)} != {"up-to-date"}:
        raise BenchError(f"no-op run ran something: {noop.stdout}")
    lock = yaml.safe_load((work / "mlv.lock").read_text())
    for entry in lock["stages"].values():
        for path in entry["outs"]:
            target = work / path
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    (work / "mlv.lock").unlink()
    cached = run([MLV, "run", "--json"], work, env).check("cached run")
    if {r["state"] for r in json.loads(cached.stdout)} != {"cached"}:
        raise BenchError(f"fully cached run did not restore every stage: {cached.stdout}")
    return {"cold_s": cold.seconds, "noop_s": noop.seconds, "cached_s": cached.seconds, "stages_s": stages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = WORK / f"example-{__import__('os').getpid()}"
    runs = []
    try:
        for i in range(args.reps):
            log(f"repetition {i + 1}/{args.reps}")
            runs.append(once(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "source": source_state(),
        "cold_s": median([r["cold_s"] for r in runs]),
        "noop_s": median([r["noop_s"] for r in runs]),
        "cached_s": median([r["cached_s"] for r in runs]),
        "stages_s": {s: median([r["stages_s"][s] for r in runs]) for s in sorted(runs[0]["stages_s"])},
    }
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    print(f"example pipeline ({STAGES} stages), median of {args.reps}:")
    print(f"  cold run       {result['cold_s']:7.2f} s")
    print(f"  no-op run      {result['noop_s']:7.2f} s")
    print(f"  fully cached   {result['cached_s']:7.2f} s   (every output and mlv.lock deleted, all restored)")
    print("  stage times in the cold run:")
    for stage, seconds in result["stages_s"].items():
        print(f"    {stage:14s} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
