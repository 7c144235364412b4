"""What a DVC user feels at the terminal: re-add after one change, the CLI's fixed cost, mlv.api.read.

Run from the repo root with the project's venv::

    .venv/bin/python bench/bench_cli.py [--quick] [--no-dvc] [--json] [--reps N]

Measures, in one run, on the working tree as installed (the editable install):

(a) re-``add`` of a directory of 20,000 random files of 1-20 KB (~200 MB) after changing one
    file, mlv against DVC on the same data in separate repos, interleaved (median of
    ``--reps``, a different file each time, after one untimed re-add each). Target: DVC's
    time / mlv's >= 5.
(b) the fixed cost of the CLI: ``mlv --version``, and ``mlv status`` in an empty repo (git +
    ``mlv init``), median and best of 10 after a warm-up, beside ``python -c pass``.
    Target: <= 0.15 s each.
(c) ``mlv.api.read`` of a 100 MB tracked file at ``rev="HEAD"`` with the workspace copy
    deleted (so the bytes come from the cache, hash-verified), against reading the same
    bytes from a plain file, in this process (median of 5 after a warm-up each). Target:
    <= 1.3x.

Peer: DVC (unless ``--no-dvc``) in the throwaway venv at ``bench/.work/dvc-venv``
(``common.ensure_dvc``). Each child's CPU time is shown beside its wall time, and the load
average before and after: on a small shared machine other work skews wall times.
``--quick``: 2,000 files and a 16 MB file, for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import MLV, WORK, dvc_env, ensure_dvc, git_init, log, median, mlv_env, run

TARGETS = {"readd_ratio": 5.0, "version_s": 0.15, "status_s": 0.15, "api_read_ratio": 1.3}


def make_files(root: Path, n: int, rng: random.Random) -> None:
    for i in range(n):
        d = root / f"d{i // 1000:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.bin").write_bytes(rng.randbytes(rng.randint(1_000, 20_000)))


def bench_readd(work: Path, n: int, reps: int, dvc: Path | None, rng: random.Random) -> dict:
    menv, denv = mlv_env(), dvc_env()
    repos = {"mlv": work / "mlv", "dvc": work / "dvc"} if dvc else {"mlv": work / "mlv"}
    log(f"(a) writing {n} files")
    make_files(repos["mlv"] / "data", n, rng)
    for name, repo in repos.items():
        if name != "mlv":
            shutil.copytree(repos["mlv"] / "data", repo / "data")
        git_init(repo)
    run([MLV, "init"], repos["mlv"], menv).check("mlv init")
    run([MLV, "add", "data"], repos["mlv"], menv).check("mlv add (cold)")
    if dvc:
        run([dvc, "init", "-q"], repos["dvc"], denv).check("dvc init")
        run([dvc, "add", "-q", "data"], repos["dvc"], denv).check("dvc add (cold)")
    rels = sorted(p.relative_to(repos["mlv"]).as_posix() for p in (repos["mlv"] / "data").rglob("*.bin"))
    times: dict[str, list[float]] = {name: [] for name in repos}
    cpus: dict[str, list[float]] = {name: [] for name in repos}
    for k in range(reps + 1):  # the first round is a warm-up
        rel = rels[(k * 7919) % len(rels)]
        payload = rng.randbytes(64)
        for name, repo in repos.items():
            with open(repo / rel, "ab") as f:
                f.write(payload)
            argv = [MLV, "add", "data"] if name == "mlv" else [dvc, "add", "-q", "data"]
            r = run(argv, repo, menv if name == "mlv" else denv).check(f"{name} re-add")
            if k:
                times[name].append(r.seconds)
                cpus[name].append(r.cpu_s or 0.0)
    out = {f"{name}_s": median(ts) for name, ts in times.items()}
    out.update({f"{name}_cpu_s": median(cs) for name, cs in cpus.items()}, runs=times)
    if dvc:
        out["ratio"] = out["dvc_s"] / out["mlv_s"]
        log(f"(a) re-add: mlv {out['mlv_s']:.3f} s, dvc {out['dvc_s']:.3f} s: {out['ratio']:.1f}x")
    else:
        log(f"(a) re-add: mlv {out['mlv_s']:.3f} s")
    return out


def bench_fixed(work: Path) -> dict:
    env = mlv_env()
    repo = work / "empty"
    repo.mkdir()
    git_init(repo)
    run([MLV, "init"], repo, env).check("mlv init")

    def timed(argv: list) -> list[float]:
        run(argv, repo, env).check(" ".join(map(str, argv)))
        return [run(argv, repo, env).check(" ".join(map(str, argv))).seconds for _ in range(10)]

    version, status = timed([MLV, "--version"]), timed([MLV, "status"])
    floor = timed([sys.executable, "-c", "pass"])
    out = {"version_s": median(version), "version_best_s": min(version), "status_s": median(status),
           "status_best_s": min(status), "python_floor_s": median(floor)}
    log(f"(b) mlv --version {out['version_s']:.3f} s (best {out['version_best_s']:.3f}), mlv status "
        f"{out['status_s']:.3f} s (best {out['status_best_s']:.3f}), python -c pass {out['python_floor_s']:.3f} s")
    return out


def bench_api_read(work: Path, size: int, rng: random.Random) -> dict:
    env = mlv_env()
    repo = work / "api"
    repo.mkdir()
    git_init(repo)
    block = rng.randbytes(1 << 20)
    with open(repo / "big.bin", "wb") as f:
        for i in range(size >> 20):
            f.write(block[:-8] + i.to_bytes(8, "little"))
    plain = work / "plain.bin"
    shutil.copyfile(repo / "big.bin", plain)
    run([MLV, "init"], repo, env).check("mlv init")
    run([MLV, "add", "big.bin"], repo, env).check("mlv add big.bin")
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, capture_output=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "big"], check=True, capture_output=True)
    (repo / "big.bin").unlink()  # the bytes must come from the cache
    import mlv.api

    def direct() -> bytes:
        with open(plain, "rb") as f:
            return f.read()

    def api() -> bytes:
        return mlv.api.read("big.bin", rev="HEAD", repo=repo)

    assert api() == direct()
    t_direct, t_api = [], []
    for _ in range(5):
        for fn, ts in ((direct, t_direct), (api, t_api)):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    out = {"direct_s": median(t_direct), "api_s": median(t_api), "size": size}
    out["ratio"] = out["api_s"] / out["direct_s"]
    log(f"(c) mlv.api.read {out['api_s'] * 1e3:.0f} ms vs a plain read {out['direct_s'] * 1e3:.0f} ms: "
        f"{out['ratio']:.2f}x")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 files and a 16 MB file: a smoke run")
    ap.add_argument("--no-dvc", action="store_true", help="skip the DVC peer")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--reps", type=int, default=5, help="timed re-adds per tool (default 5)")
    args = ap.parse_args()
    dvc = None if args.no_dvc else ensure_dvc()
    rng = random.Random(13)
    work = WORK / f"cli-{os.getpid()}"
    work.mkdir(parents=True)
    load = [os.getloadavg()[0]]
    try:
        res = {"readd": bench_readd(work, 2_000 if args.quick else 20_000, args.reps, dvc, rng),
               "fixed": bench_fixed(work),
               "api_read": bench_api_read(work, (16 if args.quick else 100) << 20, rng)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load.append(os.getloadavg()[0])
    res["load_avg"] = load
    checks = {"readd_ratio": res["readd"].get("ratio"), "version_s": res["fixed"]["version_s"],
              "status_s": res["fixed"]["status_s"], "api_read_ratio": res["api_read"]["ratio"]}
    res["targets"] = {k: {"value": v, "target": TARGETS[k],
                          "met": None if v is None else (v >= TARGETS[k] if k == "readd_ratio" else v <= TARGETS[k])}
                      for k, v in checks.items()}
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"load average {load[0]:.2f} -> {load[1]:.2f}")
        for k, t in res["targets"].items():
            shown = "n/a" if t["value"] is None else f"{t['value']:.3f}"
            print(f"{k:16} {shown:>8}  target {'>=' if k == 'readd_ratio' else '<='} {t['target']}  "
                  f"{'' if t['met'] is None else 'met' if t['met'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
