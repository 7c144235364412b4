"""Benchmark of provenance: ``mlv trace`` latency on a 10,000-record history, and the index rebuild.

Run from the repo root with the project's venv::

    .venv/bin/python bench/bench_trace.py [--records 10000] [--depth 20] [--reps 7] [--json] [--keep]

It builds one synthetic repo under ``bench/.work/trace-<pid>`` (gitignored): ``mlv init``,
a pointer ``data/raw.mlv`` for the raw data, and ``--records`` run records written with
the ``RunRecord`` API (``records.dumps``: the same bytes ``mlv run`` writes, without the
per-file fsync, which is set-up cost and not what is measured):

- a lineage ``--depth`` hops deep: run ``chain-i`` reads ``art/i.bin`` (``art/0.bin``
  is the raw data, ``{"added": "data/raw.mlv"}``) and ``src/chain-i.py`` (a source
  file), and writes ``art/<i+1>.bin``; these objects are really in the store, so
  ``--verify`` re-hashes them; ``mlv.lock`` names the last run, so the final artifact
  is traced by path as a user would;
- the rest are "sweep" runs with random digests; 30% of them read the raw data (so the
  downstream trace from it is wide: ~3,000 runs), 1% read a random hop of the lineage.

Measured (median of ``--reps``, after one warm-up):
(a) upstream trace of the final artifact back to the raw data, in one process:
    ``ProvenanceIndex(ws)`` (opens sqlite and syncs with ``.mlv/runs/``) + ``resolve`` +
    ``trace``; target: well under 1 s (we aim for < 0.1 s);
(b) the same with ``--verify``;
(c) downstream trace from the raw data (every run that read it, and what they made);
(d) ``mlv trace art/<depth>.bin --json`` as a subprocess: the whole command, interpreter
    start-up included;
(e) index rebuild from the records (``mlv trace --reindex``'s work), and a sync that finds
    one new record (what every query pays after a run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / ".work"
MLV = Path(sys.executable).with_name("mlv")


def build(root: Path, n_records: int, depth: int, seed: int = 7) -> dict:
    """The synthetic repo; returns what the measurements need to know about it."""
    from mlv.engine import lockfile
    from mlv.engine.records import RUNS, RunRecord, dumps
    from mlv.storage.workspace import pointers
    from mlv.storage.store.digest import Digest
    from mlv.storage.workspace import Workspace

    rng = random.Random(seed)
    ws, _ = Workspace.init(root)
    runs_dir = ws.dot / RUNS
    runs_dir.mkdir(exist_ok=True)
    store = ws.store
    t0 = time.time() - n_records * 60
    chain = [store.put_bytes(f"raw data v1\n{'x' * 100}\n".encode())]
    (root / "data").mkdir()
    pointers.dump(pointers.Pointer(root / "data/raw.mlv", chain[0], 112))

    def record(run_id: str, stage: str, when: float, deps: dict, outs: dict, producers: dict) -> RunRecord:
        return RunRecord(
            run_id=run_id, stage=stage, fingerprint=str(_random_digest(rng)),
            definition={"cmd": [f"python src/{stage}.py"], "deps": sorted(deps), "outs": sorted(outs)},
            params={"lr": round(rng.random(), 4), "depth": rng.randint(2, 12)}, deps=deps,
            outs={p: {"digest": d, "size": 128} for p, d in outs.items()}, status="succeeded", exit_code=0,
            started=when, ended=when + 1.0, host="bench", worker=None, gpu=None, log=None,
            git={"commit": "0" * 40, "dirty": False}, environment={"python": "3"}, producers=producers,
        )

    chain_ids = []
    spacing = max(1, n_records // depth)
    for i in range(depth):
        out = store.put_bytes(f"artifact {i + 1}\n".encode() * 8)
        run_id = f"{_stamp(t0 + i * spacing * 60)}-c{i:07d}"
        source = {"run": chain_ids[-1]} if chain_ids else {"added": "data/raw.mlv"}
        rec = record(run_id, f"chain-{i}", t0 + i * spacing * 60, {f"art/{i}.bin": str(chain[-1]),
                     f"src/chain-{i}.py": str(_random_digest(rng))}, {f"art/{i + 1}.bin": str(out)},
                     {f"art/{i}.bin": source, f"src/chain-{i}.py": None})
        (runs_dir / f"{run_id}.json").write_bytes(dumps(rec))
        chain.append(out)
        chain_ids.append(run_id)
    for k in range(n_records - depth):
        when = t0 + k * 60
        run_id = f"{_stamp(when)}-s{k:07d}"
        roll = rng.random()
        if roll < 0.30:
            first, path, source = str(chain[0]), "data/raw", {"added": "data/raw.mlv"}
        elif roll < 0.31:
            hop = rng.randrange(1, depth)
            first, path, source = str(chain[hop]), f"art/{hop}.bin", {"run": chain_ids[hop - 1]}
        else:
            first, path, source = str(_random_digest(rng)), f"features/{k}.parquet", None
        outs = {f"models/sweep-{k}.bin": str(_random_digest(rng)), f"metrics/sweep-{k}.json": str(_random_digest(rng))}
        rec = record(run_id, f"sweep@{k}", when, {path: first, "src/sweep.py": str(_random_digest(rng))}, outs,
                     {path: source, "src/sweep.py": None})
        (runs_dir / f"{run_id}.json").write_bytes(dumps(rec))
    last = chain_ids[-1]
    lockfile.dump(root, {f"chain-{depth - 1}": lockfile.LockEntry(
        Digest.from_hex("0" * 32), last, {f"art/{depth - 1}.bin": chain[-2]}, {},
        {f"art/{depth}.bin": lockfile.Output(chain[-1], 128)})})
    return {"final": f"art/{depth}.bin", "raw": "data/raw", "chain": chain_ids}


def _random_digest(rng: random.Random):
    from mlv.storage.store.digest import Digest

    return Digest.from_hex(f"{rng.getrandbits(128):032x}")


def _stamp(ts: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(ts))


def timed(fn, reps: int) -> tuple[float, object]:
    fn()  # warm-up: page cache, sqlite's first open
    times, result = [], None
    for _ in range(reps):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def measure(root: Path, facts: dict, reps: int) -> dict:
    from mlv.engine import lineage
    from mlv.engine.provenance import ProvenanceIndex
    from mlv.engine.records import RunIndex, RunRecord, dumps
    from mlv.storage.workspace import Workspace

    os.chdir(root)
    ws = Workspace(root)
    t = time.perf_counter()
    report = ProvenanceIndex(ws, sync=False).reindex(history=False)
    rebuild = time.perf_counter() - t

    def trace(target: str, **options):
        w = Workspace(root)
        index = ProvenanceIndex(w)
        return lineage.trace(w, index, lineage.resolve(w, index, target), **options)

    up_s, up = timed(lambda: trace(facts["final"]), reps)
    verify_s, verified = timed(lambda: trace(facts["final"], verify=True), reps)
    down_s, down = timed(lambda: trace(facts["raw"], downstream=True), reps)
    runs_up = [n for n in up.nodes if n["type"] == "run"]
    assert [n["run_id"] for n in sorted(runs_up, key=lambda n: n["run_id"])] == facts["chain"], "lineage is wrong"
    assert not verified.problems, verified.problems

    def cli() -> float:
        t = time.perf_counter()
        proc = subprocess.run([os.fspath(MLV), "trace", facts["final"], "--json"], cwd=root, capture_output=True)
        assert proc.returncode == 0, proc.stderr
        return time.perf_counter() - t

    cli_s = statistics.median([cli() for _ in range(reps)])

    extra = RunIndex(ws).read(facts["chain"][0])
    def one_more() -> float:
        record = RunRecord.from_dict({**extra.to_dict(), "run_id": f"29991231T235959-{os.urandom(4).hex()}"})
        (ws.dot / "runs" / f"{record.run_id}.json").write_bytes(dumps(record))
        t = time.perf_counter()
        ProvenanceIndex(ws)
        return time.perf_counter() - t

    sync_s = statistics.median([one_more() for _ in range(reps)])
    return {
        "records": report.records, "depth": len(facts["chain"]),
        "upstream_trace_s": up_s, "upstream_nodes": len(up.nodes),
        "verify_trace_s": verify_s,
        "downstream_trace_s": down_s, "downstream_nodes": len(down.nodes),
        "cli_trace_s": cli_s,
        "reindex_s": rebuild, "sync_one_new_record_s": sync_s,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic repo")
    args = ap.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="trace-", dir=WORK))
    try:
        t = time.perf_counter()
        facts = build(root, args.records, args.depth)
        built = time.perf_counter() - t
        figures = {**measure(root, facts, args.reps), "build_s": built}
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    ms = lambda s: f"{s * 1000:8.1f} ms"  # noqa: E731
    print(f"provenance on {figures['records']} run records, a lineage {figures['depth']} hops deep "
          f"(built in {figures['build_s']:.1f} s)")
    print(f"  (a) upstream trace, final artifact -> raw data   {ms(figures['upstream_trace_s'])}"
          f"   ({figures['upstream_nodes']} nodes; target < 1 s: {'met' if figures['upstream_trace_s'] < 1 else 'MISSED'})")
    print(f"  (b) the same with --verify                        {ms(figures['verify_trace_s'])}")
    print(f"  (c) downstream trace from the raw data            {ms(figures['downstream_trace_s'])}"
          f"   ({figures['downstream_nodes']} nodes)")
    print(f"  (d) `mlv trace --json` as a process (start-up in) {ms(figures['cli_trace_s'])}")
    print(f"  (e) index rebuild from the records                {ms(figures['reindex_s'])}")
    print(f"      sync after one new record                     {ms(figures['sync_one_new_record_s'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
