"""What moving a DVC repo to mlv costs: ``mlv import-dvc`` of a 20,000-file DVC-tracked directory,
timed against ``dvc checkout`` of the same directory.

Run from the repo root with the project's venv::

    .venv/bin/python bench/bench_import_dvc.py [--quick] [--files N] [--reps N] [--json] [--keep]

It builds, once, a git + DVC repo holding ``data/raw``: ``--files`` random files of 1-20 KB
(default 20,000, ~200 MB; ``--quick``: 2,000) in 100 folders, ``dvc add``ed, so DVC's cache
holds every file and the ``.dir`` listing. Then, ``--reps`` times (default 3), on fresh
copies of that repo whose ``data/raw`` was deleted (DVC's cache hardlinked in: nothing
writes to it):

- ``dvc checkout``: DVC materialises ``data/raw`` from its cache (its default link type);
- ``mlv import-dvc``: mlv reads every file from DVC's cache, checks its md5, hashes it with
  xxh3-128 and stores it (packs), writes the manifest and ``data/raw.mlv``;
- ``mlv checkout data/raw`` after it: mlv materialises the directory from its own store,
  so import + checkout is the like-for-like figure beside ``dvc checkout``.

Each command's wall time, CPU (user+sys) and peak RSS are printed; medians over the reps,
order rotated. mlv runs from the editable install (the working tree). DVC comes from the
throwaway venv ``bench/.work/dvc-venv`` (``common.ensure_dvc``; never a dependency of mlv).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

from common import (
    MLV,
    WORK,
    Run,
    dvc_env,
    ensure_dvc,
    git_init,
    log,
    median,
    mlv_env,
    run,
)


def build(root: Path, files: int, dvc: Path) -> None:
    """A git + DVC repo whose ``data/raw`` (``files`` random files) is ``dvc add``ed and committed."""
    root.mkdir(parents=True)
    git_init(root)
    rng = random.Random(7)
    raw = root / "data" / "raw"
    for i in range(files):
        path = raw / f"part-{i % 100:03d}" / f"file-{i:06d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(1024, 20 * 1024)))
    env = dvc_env()
    for argv in ([dvc, "init", "-q"], [dvc, "add", "-q", "data/raw"], ["git", "add", "-A"],
                 ["git", "commit", "-q", "-m", "data"]):
        subprocess.run([str(a) for a in argv], cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)


def fresh_copy(master: Path, dest: Path) -> Path:
    """``master`` without ``data/raw`` in the workspace; DVC's cache hardlinked (read, never written)."""
    shutil.copytree(master, dest, ignore=lambda d, names: ["raw"] if Path(d) == master / "data" else
                    ["cache"] if Path(d) == master / ".dvc" else [])
    subprocess.run(["cp", "-al", str(master / ".dvc" / "cache"), str(dest / ".dvc" / "cache")], check=True)
    return dest


def measure(master: Path, work: Path, dvc: Path, rep: int) -> dict[str, Run]:
    found: dict[str, Run] = {}
    order = ["dvc", "mlv"] if rep % 2 == 0 else ["mlv", "dvc"]
    for who in order:
        repo = fresh_copy(master, work / f"{who}-{rep}")
        if who == "dvc":
            found["dvc checkout"] = run([dvc, "checkout", "-q"], repo, dvc_env()).check("dvc checkout")
        else:
            found["mlv import-dvc"] = run([MLV, "import-dvc", "--json"], repo, mlv_env()).check("mlv import-dvc")
            found["mlv checkout"] = run([MLV, "checkout", "data/raw"], repo, mlv_env()).check("mlv checkout")
            report = json.loads(found["mlv import-dvc"].stdout)
            if report["mismatches"] or [p["nfiles"] for p in report["pointers"]] != [len(list(
                    (repo / "data" / "raw").rglob("*.bin")))]:
                raise SystemExit(f"import-dvc did not bring every file: {report}")
        shutil.rmtree(repo)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 files, 1 rep: a smoke run")
    parser.add_argument("--files", type=int, default=None)
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args()
    files = args.files or (2_000 if args.quick else 20_000)
    reps = args.reps or (1 if args.quick else 3)
    dvc = ensure_dvc()
    WORK.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="import-dvc-", dir=WORK))
    try:
        log(f"building a DVC repo with {files} files (dvc add)")
        master = work / "master"
        build(master, files, dvc)
        size = sum(p.stat().st_size for p in (master / "data" / "raw").rglob("*") if p.is_file())
        runs: dict[str, list[Run]] = {}
        for rep in range(reps):
            log(f"rep {rep + 1}/{reps}")
            for name, r in measure(master, work, dvc, rep).items():
                runs.setdefault(name, []).append(r)
        rows = {name: {"wall_s": median([r.seconds for r in rs]),
                       "cpu_s": median([r.cpu_s for r in rs if r.cpu_s is not None]),
                       "peak_rss_mb": max((r.maxrss_mb or 0) for r in rs)} for name, rs in runs.items()}
        both = median([a.seconds + b.seconds for a, b in zip(runs["mlv import-dvc"], runs["mlv checkout"])])
        result = {"files": files, "bytes": size, "reps": reps, "load": os.getloadavg(), "commands": rows,
                  "mlv import-dvc + checkout wall_s": both,
                  "ratio (import+checkout) / dvc checkout": both / rows["dvc checkout"]["wall_s"]}
        if args.json:
            print(json.dumps(result, indent=1))
            return
        print(f"{files} files, {size / 1e6:.1f} MB, median of {reps}; load {result['load'][0]:.2f}")
        for name, row in rows.items():
            print(f"  {name:<16} {row['wall_s']:7.2f} s wall  {row['cpu_s']:7.2f} s cpu  "
                  f"{row['peak_rss_mb']:7.0f} MB peak")
        print(f"  mlv import-dvc + checkout: {both:.2f} s = "
              f"{result['ratio (import+checkout) / dvc checkout']:.2f}x dvc checkout")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
