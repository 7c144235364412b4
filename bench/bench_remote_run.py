"""Benchmark of ``workspace: remote`` (shared-nothing workers) beside the shared filesystem, on S3 over loopback.

Run from the repo root with the project's venv::

    .venv/bin/python bench/bench_remote_run.py [--files 20000] [--reps 3] [--json] [--keep]

One moto S3 server (``python -m moto.server``, its own process, a free loopback port), one
``dask scheduler`` and two ``dask worker`` processes (``--nthreads 1``), each worker in a
directory of its own (cwd and ``--local-directory``); dummy credentials in the environment,
``~/.aws`` hidden. An origin repo adds ``--files`` text files of 1-8 KB (``data/raw``,
~90 MB for 20,000) and pushes them; every timed repo below is a fresh ``git clone`` of it.
The pipeline has three stages: ``prepare`` (a ``cmd``: a Python script reads every raw file
and writes a summary line per file plus a count), ``features`` (a ``call``, reading one file
inside ``prepare``'s output directory) and ``report`` (a ``cmd``).

(a) shared: ``mlv pull`` (timed: the pull rate), then ``mlv run`` with
    ``workspace: shared`` on the two workers (they read the clone's files).
(b) remote, cold: ``mlv run`` with ``workspace: remote`` in a clone that never pulled, on
    the same two workers just restarted (empty caches): each worker fetches what its stage
    reads from the bucket into its own cache, lays it out in a scratch directory, runs the
    stage there and pushes the outputs; the client checks the outputs out after each stage.
(c) remote again: ``mlv run --no-download`` in another fresh clone on the same workers, their
    caches as (b) left them (a worker that fetched the raw data then does not fetch it again;
    Dask may give ``prepare`` to the other one), outputs left on the bucket.
(d) the rate at which a worker materializes a dep: ``storage.scratch.materialize`` of
    ``data/raw`` into a scratch directory in a fresh process (interpreter start-up and
    imports included, as in ``mlv pull``) from an empty cache (fetch + lay out), beside
    ``mlv pull data/raw`` in a fresh clone; ``--reps`` of each, alternating, medians
    compared (this kind of VM disk makes file creation erratic, several-fold slower for a
    while after many files are deleted). Then once more with the cache filled (lay out
    only). Target: materialize >= 0.8x pull's rate (files/s).

Times are wall seconds of the whole command. The outputs of (a) and (b) are compared byte
for byte. Everything lives under ``bench/.work/remote-run/`` (removed at the end unless
``--keep``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from bench_remote import MotoServer, with_aws
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

RUN_DIR = WORK / "remote-run"
DASK = Path(sys.executable).with_name("dask")
SEED = 20261205
TARGET_MATERIALIZE_VS_PULL = 0.8
OUTPUTS = ["data/prepared/summary.csv", "data/prepared/count.txt", "features/table.csv", "report/summary.txt"]

PREPARE = '''\
import hashlib, os, sys

raw, out = sys.argv[1], sys.argv[2]
print(os.getcwd())
os.makedirs(out, exist_ok=True)
names = sorted(os.listdir(raw))
with open(os.path.join(out, "summary.csv"), "w") as f:
    for name in names:
        data = open(os.path.join(raw, name), "rb").read()
        f.write(f"{name},{len(data)},{hashlib.md5(data).hexdigest()}\\n")
with open(os.path.join(out, "count.txt"), "w") as f:
    f.write(f"{len(names)}\\n")
'''
FEATURES = '''\
import os


def build(deps, outs, params):
    print(os.getcwd())
    sizes = [int(line.split(",")[1]) for line in open(deps[0])]
    os.makedirs(os.path.dirname(outs[0]), exist_ok=True)
    with open(outs[0], "w") as f:
        f.write(f"n,total,max\\n{len(sizes)},{sum(sizes)},{max(sizes)}\\n")
'''
PIPELINE = """\
stages:
  prepare:
    cmd: python src/prepare.py data/raw data/prepared
    deps: [data/raw, src/prepare.py]
    outs: [data/prepared]
  features:
    call: src.features:build
    deps: [data/prepared/summary.csv, src/features.py]
    outs: [features/table.csv]
  report:
    cmd: pwd && cat features/table.csv data/prepared/count.txt > report/summary.txt
    deps: [features/table.csv, data/prepared/count.txt]
    outs: [report/summary.txt]
"""
MATERIALIZE = '''\
import sys, time
from pathlib import Path
from mlv.storage.remote import scratch
from mlv.storage.store.digest import parse

settings, digest, cache_root = sys.argv[1], sys.argv[2], Path(sys.argv[3])
cache = scratch.open_cache(cache_root)
with scratch.scratch(cache, "bench") as space:
    t0 = time.perf_counter()
    n = scratch.materialize(space, [scratch.Input("data/raw", parse(digest), True)],
                            scratch.connect(__import__("json").loads(settings), cache))
    print(n, time.perf_counter() - t0)
'''


def sh(argv: list, cwd: Path, env: dict, what: str):
    return run(argv, cwd, env).check(what)


class Cluster:
    """A scheduler and two workers, each worker in a folder of its own."""

    def __init__(self, home: Path, env: dict) -> None:
        self.home, self.env, self.procs, self.address = home, env, [], ""

    def __enter__(self) -> Cluster:
        self.home.mkdir(parents=True, exist_ok=True)
        sched = self.home / "scheduler.json"
        sched.unlink(missing_ok=True)
        self._start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", sched],
                    self.home)
        deadline = time.monotonic() + 60
        while not (sched.exists() and sched.stat().st_size):
            if time.monotonic() > deadline:
                raise BenchError("the dask scheduler did not start")
            time.sleep(0.1)
        self.address = json.loads(sched.read_text())["address"]
        for name in ("w1", "w2"):
            folder = self.home / name
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            self._start(["worker", self.address, "--nthreads", "1", "--no-dashboard", "--name", name,
                         "--local-directory", folder], folder)
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        return self

    def _start(self, args: list, cwd: Path) -> None:
        self.procs.append(subprocess.Popen([DASK, *map(str, args)], cwd=cwd, env=self.env, stdout=subprocess.DEVNULL,
                                           stderr=open(cwd / f"{args[0]}.log", "ab"), start_new_session=True))

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def make_origin(root: Path, env: dict, server: MotoServer, files: int) -> tuple[int, str]:
    rng = random.Random(SEED)
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    total = 0
    for i in range(files):
        lines = rng.randint(20, 110)
        text = "".join(f"{i},{j},{rng.random():.12f},{rng.randint(0, 10**9)}\n" for j in range(lines))
        (raw / f"part-{i:06d}.csv").write_text(text)
        total += len(text)
    (root / "src").mkdir()
    (root / "src" / "prepare.py").write_text(PREPARE)
    (root / "src" / "features.py").write_text(FEATURES)
    (root / "mlv.yaml").write_text(PIPELINE)
    git_init(root)
    sh([MLV, "init"], root, env, "mlv init")
    server.make_bucket("run-bench")
    sh([MLV, "remote", "add", "origin", "s3://run-bench/store", "--endpoint-url", server.url], root, env, "remote add")
    sh([MLV, "add", "data/raw"], root, env, "mlv add")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "raw data"], cwd=root, check=True)
    pushed = sh([MLV, "push"], root, env, "mlv push")
    log(f"origin: {files} files, {total / 1e6:.1f} MB, pushed in {pushed.seconds:.1f} s")
    digest = next(line.split()[1] for line in (root / "data" / "raw.mlv").read_text().splitlines()
                  if line.startswith("digest:"))
    return total, digest


def clone(origin: Path, name: str, cluster: str | None = None, workspace: str = "shared") -> Path:
    dst = RUN_DIR / name
    subprocess.run(["git", "clone", "-q", str(origin), str(dst)], check=True)
    if cluster:
        (dst / "dask-cluster.yaml").write_text(f"scheduler: {cluster}\nworkspace: {workspace}\n")
    return dst


def outputs(repo: Path) -> dict[str, bytes]:
    return {p: (repo / p).read_bytes() if (repo / p).exists() else b"" for p in OUTPUTS}


def bench(files: int, reps: int) -> dict:
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir(parents=True)
    (RUN_DIR / "aws-config-empty").write_text("")
    env = with_aws(mlv_env())
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})  # the Dask client in this process
    results: dict = {"files": files, "source": source_state(), "cores": os.cpu_count()}
    with MotoServer(RUN_DIR / "moto.log") as server:
        origin = RUN_DIR / "origin"
        origin.mkdir()
        total, digest = make_origin(origin, env, server, files)
        results["mb"] = round(total / 1e6, 1)
        with Cluster(RUN_DIR / "cluster-a", env) as cluster:
            shared = clone(origin, "shared", cluster.address, "shared")
            pulled = sh([MLV, "pull"], shared, env, "mlv pull")
            ran = sh([MLV, "run"], shared, env, "mlv run (shared)")
            results["a_pull_s"], results["a_run_s"] = pulled.seconds, ran.seconds
            log(f"(a) shared: pull {pulled.seconds:.1f} s ({files / pulled.seconds:.0f} files/s), "
                f"run {ran.seconds:.1f} s")
        with Cluster(RUN_DIR / "cluster-b", env) as cluster:  # fresh workers: empty caches
            remote = clone(origin, "remote", cluster.address, "remote")
            ran = sh([MLV, "run"], remote, env, "mlv run (remote)")
            results["b_run_s"] = ran.seconds
            results["b_raw_in_client"] = (remote / "data" / "raw").exists()
            results["identical"] = outputs(remote) == outputs(shared)
            log(f"(b) remote, cold caches: run {ran.seconds:.1f} s; outputs identical to (a): {results['identical']}")
            lazy = clone(origin, "no-download", cluster.address, "remote")
            ran = sh([MLV, "run", "--no-download"], lazy, env, "mlv run --no-download")
            results["c_run_s"] = ran.seconds
            log(f"(c) remote, same workers, --no-download: run {ran.seconds:.1f} s")
        settings = json.dumps({"name": "origin", "url": "s3://run-bench/store", "endpoint_url": server.url})
        pulls, cold = [], []
        for i in range(reps):
            fresh = clone(origin, f"pull-{i}")
            pulls.append(sh([MLV, "pull", "data/raw"], fresh, env, "mlv pull data/raw").seconds)
            shutil.rmtree(fresh)
            step = sh([sys.executable, "-c", MATERIALIZE, settings, digest, RUN_DIR / f"cache-{i}"], RUN_DIR, env,
                      "materialize")
            cold.append(step.seconds)
            log(f"(d) rep {i + 1}: mlv pull data/raw {pulls[-1]:.1f} s, materialize (empty cache) {cold[-1]:.1f} s")
        step = sh([sys.executable, "-c", MATERIALIZE, settings, digest, RUN_DIR / f"cache-{reps - 1}"], RUN_DIR, env,
                  "materialize")
        results.update(d_pull_s=median(pulls), d_materialize_cold_s=median(cold), d_materialize_warm_s=step.seconds,
                       d_pulls=pulls, d_colds=cold)
        results["d_ratio"] = round(results["d_pull_s"] / results["d_materialize_cold_s"], 2)
        log(f"(d) medians: pull {results['d_pull_s']:.1f} s, materialize {results['d_materialize_cold_s']:.1f} s: "
            f"{results['d_ratio']:.2f}x pull's rate (target >= {TARGET_MATERIALIZE_VS_PULL}x); "
            f"with the cache filled {step.seconds:.1f} s")
    return results


def render(r: dict) -> str:
    f = r["files"]
    rows = [
        f"shared-nothing pipeline bench: {f} raw files ({r['mb']} MB), 3 stages, 2 local dask workers, moto S3; "
        f"{r['cores']} cores; source {r['source']}",
        f"(a) shared     mlv pull {r['a_pull_s']:6.1f} s   mlv run {r['a_run_s']:6.1f} s   "
        f"pull + run {r['a_pull_s'] + r['a_run_s']:6.1f} s",
        f"(b) remote     mlv run {r['b_run_s']:6.1f} s  (fresh clone, no pull, cold worker caches; raw data in the "
        f"client: {r['b_raw_in_client']}; outputs identical to (a): {r['identical']})",
        f"(c) remote     mlv run --no-download {r['c_run_s']:6.1f} s  (another fresh clone, the same workers)",
        f"(d) materialize data/raw from an empty cache {r['d_materialize_cold_s']:.1f} s "
        f"({f / r['d_materialize_cold_s']:.0f} files/s; reps {', '.join(f'{x:.1f}' for x in r['d_colds'])}), "
        f"cache filled {r['d_materialize_warm_s']:.1f} s; mlv pull data/raw {r['d_pull_s']:.1f} s "
        f"({f / r['d_pull_s']:.0f} files/s; reps {', '.join(f'{x:.1f}' for x in r['d_pulls'])}) "
        f"-> {r['d_ratio']:.2f}x pull's rate "
        f"(target >= {TARGET_MATERIALIZE_VS_PULL}x: {'met' if r['d_ratio'] >= TARGET_MATERIALIZE_VS_PULL else 'MISSED'})",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=textwrap.dedent(__doc__).split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=3, help="pulls and materializations for (d), alternating")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep bench/.work/remote-run")
    args = ap.parse_args(argv)
    try:
        results = bench(args.files, args.reps)
    finally:
        if not args.keep:
            shutil.rmtree(RUN_DIR, ignore_errors=True)
    print(json.dumps(results, indent=2) if args.json else render(results))
    return 0 if results["d_ratio"] >= TARGET_MATERIALIZE_VS_PULL and results["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
