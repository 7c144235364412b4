"""Benchmark of mlv's store commands against DVC and against the machine's floor.

Run from the repo root with the project's venv::

    .venv/bin/python bench/bench_store.py [--quick] [--no-dvc] [--json] [--reps N] [--rev REV | --live]
                                          [--workdir DIR] [--keep]

It builds its own data in a fresh run directory (default ``bench/.work/run-*``, gitignored;
``$TMPDIR`` if that cannot be created) and measures, in one run:

(a) ``mlv add`` of a directory of 20,000 random files of 1-20 KB (~200 MB), cold: a fresh
    repo and an empty store. The page cache is not dropped (that needs root): the files
    were just written (and ``os.sync()``ed), so reads hit it. Median of ``--reps`` fresh
    repos (default 3), each holding hardlinks to one master copy of the data.
(b) ``mlv status`` with nothing changed (one warm-up, then the median of 5); beside it the
    floor, a bare recursive ``os.scandir`` + ``entry.stat()`` walk of the same tree timed in
    this process, and ``status(Workspace(root))`` timed in this process, leaving out
    interpreter start-up (median of 5 after a warm-up): target in-process <= 3x the walk.
(c) re-``mlv add`` of the directory after changing one file (median of 3, a different file
    each time).
(d) ``mlv add`` of one 2 GiB file (a 64 MiB random block repeated, a counter added to every
    8-byte word), with the child's peak RSS (``/usr/bin/time -v``, else getrusage); the
    floor is ``cp`` of the file plus xxh3-128 over its bytes in 1 MiB chunks in this
    process (floor = cp + hash; the fsync of the copy is shown apart, as mlv fsyncs its
    objects). ``--reps`` rounds of floor, mlv and DVC, order rotated; medians.

Peer: DVC (unless ``--no-dvc``), installed into a throwaway venv at ``bench/.work/dvc-venv``
(reused when present; never a dependency of mlv), run on the same data in separate
``git init`` + ``dvc init`` repos, interleaved with mlv.

Fairness and repeatability:
- mlv is run from a pinned copy of its sources at ``--rev`` (default HEAD), extracted to
  ``bench/.work/src-<commit>`` and put first on PYTHONPATH, so edits made to the working
  tree during a run don't leak in; ``--live`` measures the editable install instead (and
  flags a run during which the sources changed).
- mlv's byte-code is cached under ``bench/.work/pycache`` (as an installed package's would
  be; DVC's venv has its .pyc), and every command runs once, untimed, in a scratch repo
  first. What a plain ``mlv status`` costs under PYTHONDONTWRITEBYTECODE=1 is shown apart.
- Each child's CPU time (user+sys) is shown beside its wall time, and the load average
  before and after: on a small shared machine, other work skews wall times.

``--quick`` shrinks the data (2,000 files, a 256 MiB file) for a smoke run. The run
directory (data, repos, stores, the big files) is removed at the end unless ``--keep``;
the DVC venv, the pinned sources and the byte-code cache are kept for the next run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import common
from common import (
    MLV,
    REPO,
    SOURCE_DIRS,
    WORK,
    dvc_env,
    ensure_dvc,
    git_init,
    log,
    median,
    run,
    source_state,
)

BENCH = REPO / "bench"
MiB = 1 << 20
GiB = 1 << 30
SEED = 20240611

FULL = {"files": 20_000, "big": 2 * GiB}
QUICK = {"files": 2_000, "big": 256 * MiB}
FILES_PER_DIR = 500
MIN_SIZE, MAX_SIZE = 1024, 20 * 1024
STATUS_RUNS = 5
READD_RUNS = 3

TARGETS = {
    "add_dir": 5.0,  # DVC time / mlv time >= 5
    "status": 5.0,  # DVC time / mlv time >= 5
    "status_vs_walk": 3.0,  # in-process status / bare walk <= 3
    "readd": 5.0,  # DVC time / mlv time >= 5
    "add_big_vs_floor": 1.5,  # mlv time / (cp + hash) <= 1.5
    "add_big_rss_mb": 200.0,  # peak RSS < 200 MB
}

# DVC 3.67.1 on this machine kind, measured earlier (seconds); printed for comparison only.
DVC_REFERENCE = {"add_dir": 11.0, "status": 1.2, "readd": 2.1, "add_big": "7.5-9"}


# -- data -------------------------------------------------------------------------------
def write_tree(dests: list[Path], n_files: int, rng: random.Random) -> tuple[list[str], int]:
    """``n_files`` random files of 1-20 KB, identical under each of ``dests``; returns rel paths, bytes."""
    rels: list[str] = []
    total = 0
    for i in range(n_files):
        sub = f"d{i // FILES_PER_DIR:03d}"
        if i % FILES_PER_DIR == 0:
            for d in dests:
                (d / sub).mkdir(parents=True, exist_ok=True)
        rel = f"{sub}/f{i:06d}.bin"
        data = rng.randbytes(rng.randint(MIN_SIZE, MAX_SIZE))
        total += len(data)
        for d in dests:
            with open(d / rel, "wb") as f:
                f.write(data)
        rels.append(rel)
    return rels, total


def write_big(dests: list[Path], size: int, rng: random.Random) -> None:
    """``size`` bytes: a 64 MiB random block repeated with a per-repeat counter added to every
    8-byte word, so no two blocks (and no two 1 MiB chunks) are equal and nothing compresses."""
    block_size = 64 * MiB
    block = rng.randbytes(block_size)
    try:
        import numpy as np

        words = np.frombuffer(block, dtype=np.uint64)

        def chunk(i: int) -> bytes:
            return (words + np.uint64(i)).tobytes()
    except ImportError:  # slower but fine: a counter stamped every 4 KiB

        def chunk(i: int) -> bytes:
            b = bytearray(block)
            stamp = i.to_bytes(8, "little")
            for off in range(0, block_size, 4096):
                b[off : off + 8] = stamp
            return bytes(b)

    files = [open(d, "wb") for d in dests]
    try:
        written, i = 0, 0
        while written < size:
            data = chunk(i)[: size - written]
            for f in files:
                f.write(data)
            written += len(data)
            i += 1
    finally:
        for f in files:
            f.close()


def change_file(paths: list[Path], rng: random.Random) -> None:
    """Give each of ``paths`` the same new random bytes (same size) as a new file renamed over it,
    so a hardlinked copy elsewhere keeps the old bytes."""
    size = paths[0].stat().st_size
    data = rng.randbytes(size)
    for p in paths:
        tmp = p.with_name(p.name + ".bench-tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, p)


def link_tree(src: Path, dest: Path) -> None:
    """``dest`` as a tree of hardlinks to ``src``'s files: a fresh copy of the data without rewriting it.
    Safe for both tools: mlv only reads, and DVC replaces workspace files with new copies."""
    subprocess.run(["cp", "-al", str(src), str(dest)], check=True)


# -- floors -----------------------------------------------------------------------------
def bare_walk(top: Path) -> int:
    """Recursive ``os.scandir`` with ``entry.stat()`` on every entry: the least a status must do."""
    n = 0
    stack = [os.fspath(top)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                st = entry.stat()
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
                else:
                    n += 1
    return n


def hash_file(path: Path) -> tuple[str, float]:
    import xxhash

    h = xxhash.xxh3_128()
    buf = bytearray(MiB)
    view = memoryview(buf)
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest(), time.perf_counter() - t0


# -- DVC --------------------------------------------------------------------------------
SRC_PATH: Path | None = None  # the pinned copy of mlv's sources, when not --live


def mlv_env(pyc: bool = True) -> dict[str, str]:
    return common.mlv_env(src=SRC_PATH, pyc=pyc)


def prime(workdir: Path, env: dict[str, str], dvc: Path | None, denv: dict[str, str]) -> None:
    """Run each command once in a scratch repo (untimed), so byte-code caches exist before timing."""
    scratch = workdir / "prime"
    scratch.mkdir()
    git_init(scratch)
    (scratch / "d").mkdir()
    for i in range(20):
        (scratch / "d" / f"{i}.bin").write_bytes(os.urandom(1000 + i))
    (scratch / "big.bin").write_bytes(os.urandom(MiB))
    cmds = [[MLV, "init"], [MLV, "add", "d"], [MLV, "status"], [MLV, "add", "--json", "d"], [MLV, "add", "big.bin"]]
    for c in cmds:
        run(c, scratch, env).check(f"priming: {c[1]}")
    if dvc:
        for c in (["init", "-q", "-f"], ["add", "d"], ["status"], ["add", "big.bin"]):
            run([dvc, *c], scratch, denv).check(f"priming: dvc {c[0]}")
    shutil.rmtree(scratch)


# -- the benchmark ----------------------------------------------------------------------
@dataclass
class Results:
    quick: bool
    n_files: int = 0
    tree_bytes: int = 0
    big_bytes: int = 0
    mlv: dict = field(default_factory=dict)
    dvc: dict = field(default_factory=dict)
    floor: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)


PACKAGE_DIRS = {"storage": "mlv/storage", "cli": "mlv/cli", "engine": "mlv/engine", "pipelines": "mlv/pipelines"}


def snapshot_sources(rev: str) -> tuple[Path, str]:
    """Extract mlv's packages at ``rev`` into bench/.work/src-<commit>/ laid out as the ``mlv`` package.

    Put first on PYTHONPATH, that copy is imported before the editable install's finder (which
    sits at the end of sys.meta_path), so edits made to the working tree during a run don't
    leak into it."""
    import io
    import tarfile

    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", rev], capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = WORK / f"src-{commit}"
    if (dest / "mlv" / "__init__.py").exists():
        return dest, commit
    tmp = WORK / f".src-{commit}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, *SOURCE_DIRS], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for m in tar.getmembers():
            top, _, rest = m.name.partition("/")
            if not m.isfile() or not m.name.endswith(".py"):
                continue
            target = tmp / (PACKAGE_DIRS[top] if top in PACKAGE_DIRS else top) / rest
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(m).read())
    tmp.rename(dest)
    return dest, commit


def _tracking_module():
    """``mlv add``/``status``'s module, wherever the measured revision keeps it."""
    import importlib

    try:
        return importlib.import_module("mlv.storage.workspace.tracking")
    except ModuleNotFoundError:
        return importlib.import_module("mlv.storage.tracking")


def pick_workdir(arg: str | None) -> Path:
    if arg:
        base = Path(arg)
        base.mkdir(parents=True, exist_ok=True)
    else:
        try:
            WORK.mkdir(parents=True, exist_ok=True)
            base = WORK
        except OSError:
            base = Path(tempfile.gettempdir())
    return Path(tempfile.mkdtemp(prefix="run-", dir=base))


def new_repos(workdir: Path, name: str, menv: dict, dvc: Path | None, denv: dict) -> tuple[Path, Path | None]:
    """A fresh ``git init`` + ``mlv init`` repo, and beside it a ``git init`` + ``dvc init`` one."""
    mrepo = workdir / f"mlv-{name}"
    mrepo.mkdir()
    git_init(mrepo)
    run([MLV, "init"], mrepo, menv).check("mlv init")
    if not dvc:
        return mrepo, None
    drepo = workdir / f"dvc-{name}"
    drepo.mkdir()
    git_init(drepo)
    run([dvc, "init", "-q"], drepo, denv).check("dvc init")
    run([dvc, "config", "core.analytics", "false"], drepo, denv).check("dvc config")
    run([dvc, "config", "core.autostage", "false"], drepo, denv)
    return mrepo, drepo


def bench(args: argparse.Namespace) -> Results:
    global SRC_PATH
    sizes = QUICK if args.quick else FULL
    reps = args.reps
    res = Results(quick=args.quick)
    res.info.update(
        python=platform.python_version(),
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        page_cache="page cache not dropped: the data were just written (then os.sync()ed), so reads hit the page cache",
        reps=reps,
    )
    src = source_state()
    if not args.live:
        SRC_PATH, commit = snapshot_sources(args.rev)
        sys.path.insert(0, str(SRC_PATH))  # the in-process status imports the same copy
        src = {"commit": commit, "dirty": False, "sources": f"pinned copy {SRC_PATH.relative_to(REPO)}"}
    res.info["mlv_source"] = src
    res.info["loadavg_start"] = os.getloadavg()
    dvc = None
    if not args.no_dvc:
        dvc = ensure_dvc()
        v = subprocess.run([str(dvc), "--version"], capture_output=True, text=True, env=dvc_env())
        res.info["dvc_version"] = v.stdout.strip()
    workdir = pick_workdir(args.workdir)
    res.info["workdir"] = str(workdir)
    log(f"run directory {workdir}")
    menv, denv = mlv_env(), dvc_env()
    try:
        prime(workdir, menv, dvc, denv)
        master = workdir / "master"
        master.mkdir()

        # ---- (a) add a fresh directory: `reps` fresh repos, mlv and DVC interleaved ----
        rng = random.Random(SEED)
        log(f"writing {sizes['files']} files of 1-20 KB")
        rels, res.tree_bytes = write_tree([master / "data"], sizes["files"], rng)
        res.n_files = len(rels)
        m_add, d_add, m_rss, d_rss, m_cpu, d_cpu = [], [], [], [], [], []
        for k in range(reps):
            mrepo, drepo = new_repos(workdir, str(k), menv, dvc, denv)
            link_tree(master / "data", mrepo / "data")
            if drepo:
                link_tree(master / "data", drepo / "data")
            os.sync()  # write back now, so no timing pays for the generator's dirty pages
            order = [("mlv", mrepo), ("dvc", drepo)] if k % 2 == 0 else [("dvc", drepo), ("mlv", mrepo)]
            for tool, repo in order:
                if repo is None:
                    continue
                r = run([MLV if tool == "mlv" else dvc, "add", "data"], repo, menv if tool == "mlv" else denv)
                r.check(f"{tool} add data (rep {k})")
                (m_add if tool == "mlv" else d_add).append(r.seconds)
                (m_rss if tool == "mlv" else d_rss).append(r.maxrss_mb or 0)
                (m_cpu if tool == "mlv" else d_cpu).append(r.cpu_s or 0)
            log(f"(a) rep {k}: mlv add {m_add[-1]:.2f} s" + (f", dvc add {d_add[-1]:.2f} s" if dvc else ""))
        res.mlv.update(add_dir_s=median(m_add), add_dir_runs=m_add, add_dir_rss_mb=max(m_rss), add_dir_cpu=m_cpu)
        if dvc:
            res.dvc.update(add_dir_s=median(d_add), add_dir_runs=d_add, add_dir_rss_mb=max(d_rss), add_dir_cpu=d_cpu)
        for k in range(1, reps):  # keep rep 0's repos for (b) and (c)
            shutil.rmtree(workdir / f"mlv-{k}")
            shutil.rmtree(workdir / f"dvc-{k}", ignore_errors=True)
        mrepo, drepo = workdir / "mlv-0", (workdir / "dvc-0" if dvc else None)

        # ---- (b) status with nothing changed -----------------------------------------
        r = run([MLV, "status"], mrepo, menv).check("mlv status (warm-up)")
        if "unchanged" not in r.stdout:
            res.errors.append(f"mlv status after add did not say unchanged: {r.stdout.strip()[:300]}")
        runs = [run([MLV, "status"], mrepo, menv).check("mlv status") for _ in range(STATUS_RUNS)]
        times = [r.seconds for r in runs]
        res.mlv["status_s"], res.mlv["status_runs"] = median(times), times
        res.mlv["status_cpu"] = [r.cpu_s or 0 for r in runs]
        log(f"(b) mlv status: {median(times):.3f} s")

        bare_walk(mrepo / "data")
        walks = []
        for _ in range(STATUS_RUNS):
            t0 = time.perf_counter()
            n = bare_walk(mrepo / "data")
            walks.append(time.perf_counter() - t0)
        if n != res.n_files:
            res.errors.append(f"bare walk saw {n} files, expected {res.n_files}")
        res.floor["walk_s"], res.floor["walk_runs"] = median(walks), walks

        tracking = _tracking_module()  # the pinned revision's layout: storage/ flat (before 4342936) or layered
        mlv_status, Workspace = tracking.status, tracking.Workspace

        got = mlv_status(Workspace(mrepo.resolve()))  # warm-up (imports, caches)
        states = [s.state for s in got]
        if states != ["unchanged"]:
            res.errors.append(f"in-process status returned {states}, expected ['unchanged']")
        inproc = []
        for _ in range(STATUS_RUNS):
            t0 = time.perf_counter()
            mlv_status(Workspace(mrepo.resolve()))
            inproc.append(time.perf_counter() - t0)
        res.mlv["status_inproc_s"], res.mlv["status_inproc_runs"] = median(inproc), inproc
        log(f"(b) in-process status {median(inproc) * 1e3:.1f} ms vs bare walk {median(walks) * 1e3:.1f} ms")

        startup = [run([MLV, "--help"], mrepo, menv).check("mlv --help").seconds for _ in range(3)]
        res.info["mlv_help_s"] = median(startup)
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):  # what a plain `mlv status` costs in this environment
            raw = mlv_env(pyc=False)
            times = [run([MLV, "status"], mrepo, raw).check("mlv status (no pyc)").seconds for _ in range(3)]
            res.info["status_no_pyc_s"] = median(times)

        if drepo:
            r = run([dvc, "status"], drepo, denv).check("dvc status (warm-up)")
            runs = [run([dvc, "status"], drepo, denv).check("dvc status") for _ in range(STATUS_RUNS)]
            times = [r.seconds for r in runs]
            res.dvc["status_s"], res.dvc["status_runs"] = median(times), times
            res.dvc["status_cpu"] = [r.cpu_s or 0 for r in runs]
            log(f"(b) dvc status: {median(times):.3f} s")

        # ---- (c) re-add after changing one file --------------------------------------
        picks = [rels[(k + 1) * len(rels) // (READD_RUNS + 1)] for k in range(READD_RUNS)]
        mtimes, dtimes = [], []
        for rel in picks:
            change_file([r / "data" / rel for r in (mrepo, drepo) if r], rng)
            r = run([MLV, "add", "--json", "data"], mrepo, menv).check(f"mlv re-add ({rel})")
            mtimes.append(r.seconds)
            res.mlv.setdefault("readd_cpu", []).append(r.cpu_s or 0)
            try:
                res.mlv.setdefault("readd_hashed", []).append(json.loads(r.stdout)[0]["hashed"])
            except (ValueError, KeyError, IndexError, TypeError):
                pass
            if drepo:
                r = run([dvc, "add", "data"], drepo, denv).check(f"dvc re-add ({rel})")
                dtimes.append(r.seconds)
                res.dvc.setdefault("readd_cpu", []).append(r.cpu_s or 0)
        res.mlv["readd_s"], res.mlv["readd_runs"] = median(mtimes), mtimes
        log(f"(c) mlv re-add: {median(mtimes):.3f} s, files hashed per run {res.mlv.get('readd_hashed')}")
        if drepo:
            res.dvc["readd_s"], res.dvc["readd_runs"] = median(dtimes), dtimes
            log(f"(c) dvc re-add: {median(dtimes):.3f} s")
        shutil.rmtree(mrepo)
        if drepo:
            shutil.rmtree(drepo)
        shutil.rmtree(master / "data")

        # ---- (d) add one big file: `reps` rounds of floor, mlv, DVC (order rotated) ----
        big = master / "big.bin"
        log(f"writing a {sizes['big'] / GiB:.2f} GiB file")
        write_big([big], sizes["big"], rng)
        res.big_bytes = sizes["big"]
        os.sync()
        floor_digest, _ = hash_file(big)
        copy = workdir / "floor-copy.bin"
        cps, fsyncs, hashes, m_big, m_rss, d_big, d_rss = [], [], [], [], [], [], []
        cp_cpu, m_cpu, d_cpu = [], [], []

        def floor() -> None:
            r = run(["cp", "--reflink=never", big, copy], workdir).check("cp")
            cps.append(r.seconds)
            cp_cpu.append(r.cpu_s or 0)
            t0 = time.perf_counter()
            fd = os.open(copy, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            fsyncs.append(time.perf_counter() - t0)
            hashes.append(hash_file(big)[1])

        for k in range(reps):
            mrepo, drepo = new_repos(workdir, f"big{k}", menv, dvc, denv)
            for r in (mrepo, drepo):
                if r:
                    os.link(big, r / "big.bin")
            os.sync()
            steps = ["floor", "mlv", "dvc"]
            for step in steps[k % 3 :] + steps[: k % 3]:
                if step == "floor":
                    floor()
                elif step == "mlv":
                    r = run([MLV, "add", "--json", "big.bin"], mrepo, menv).check(f"mlv add big.bin (rep {k})")
                    m_big.append(r.seconds)
                    m_rss.append(r.maxrss_mb or 0)
                    m_cpu.append(r.cpu_s or 0)
                    digest = json.loads(r.stdout)[0]["digest"]
                    if digest != f"xxh3-128:{floor_digest}":
                        res.errors.append(f"mlv stored big.bin as {digest}; xxh3-128 of its bytes is {floor_digest}")
                elif drepo:
                    r = run([dvc, "add", "big.bin"], drepo, denv).check(f"dvc add big.bin (rep {k})")
                    d_big.append(r.seconds)
                    d_rss.append(r.maxrss_mb or 0)
                    d_cpu.append(r.cpu_s or 0)
            log(
                f"(d) rep {k}: floor cp {cps[-1]:.2f} s + hash {hashes[-1]:.2f} s (+fsync {fsyncs[-1]:.2f} s); "
                f"mlv add {m_big[-1]:.2f} s, {m_rss[-1]:.0f} MB" + (f"; dvc add {d_big[-1]:.2f} s" if d_big else "")
            )
            copy.unlink()
            shutil.rmtree(mrepo)
            if drepo:
                shutil.rmtree(drepo)
            os.sync()
        cp_s, hash_s, fsync_s = median(cps), median(hashes), median(fsyncs)
        res.floor.update(
            cp_s=cp_s,
            hash_s=hash_s,
            big_s=cp_s + hash_s,
            cp_fsync_s=fsync_s,
            cp_runs=cps,
            hash_runs=hashes,
            cp_fsync_runs=fsyncs,
            cp_cpu=cp_cpu,
        )
        res.mlv.update(add_big_s=median(m_big), add_big_runs=m_big, add_big_rss_mb=max(m_rss), add_big_cpu=m_cpu)
        if d_big:
            res.dvc.update(add_big_s=median(d_big), add_big_runs=d_big, add_big_rss_mb=max(d_rss), add_big_cpu=d_cpu)
        res.info["loadavg_end"] = os.getloadavg()
        imported = Path(_tracking_module().__file__).resolve()
        if SRC_PATH is not None and not imported.is_relative_to(SRC_PATH.resolve()):
            res.errors.append(f"in-process status imported {imported}, not the pinned copy under {SRC_PATH}")
        after = source_state()
        if args.live and after["sources"] != src["sources"]:
            res.errors.append(
                f"mlv's sources changed during the run ({src['commit']}/{src['sources']} -> "
                f"{after['commit']}/{after['sources']}): the figures mix versions; rerun"
            )
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            log(f"removed {workdir}")
    return res


# -- report -----------------------------------------------------------------------------
def rows(res: Results) -> list[dict]:
    m, d, fl = res.mlv, res.dvc, res.floor
    n, big = f"{res.n_files:,}", f"{res.big_bytes / GiB:g} GiB"

    def speedup(key: str, label: str) -> dict:
        mine, peer = m.get(key), d.get(key)
        ratio = peer / mine if mine and peer else None
        target = TARGETS.get(key.removesuffix("_s"), 0.0)
        return dict(
            measure=label,
            mlv=f"{mine:.3f} s" if mine is not None else "-",
            peer=f"DVC {peer:.3f} s" if peer is not None else "DVC -",
            ratio=f"{ratio:.1f}x faster" if ratio else "-",
            target=f">= {target:g}x faster",
            met=None if ratio is None else ratio >= target,
            value=ratio,
        )

    out = [
        speedup("add_dir_s", f"(a) add {n} files, cold"),
        speedup("status_s", "(b) status, nothing changed"),
    ]
    sv = m["status_inproc_s"] / fl["walk_s"]
    out.append(
        dict(
            measure="(b) status in-process vs bare walk",
            mlv=f"{m['status_inproc_s'] * 1e3:.1f} ms",
            peer=f"walk {fl['walk_s'] * 1e3:.1f} ms",
            ratio=f"{sv:.2f}x walk",
            target=f"<= {TARGETS['status_vs_walk']:g}x walk",
            met=sv <= TARGETS["status_vs_walk"],
            value=sv,
        )
    )
    out.append(speedup("readd_s", "(c) re-add, 1 file changed"))
    if "add_big_s" in d:
        out.append(speedup("add_big_s", f"(d) add {big} file vs DVC") | dict(target="(info)", met=None))
    bf = m["add_big_s"] / fl["big_s"]
    out.append(
        dict(
            measure=f"(d) add {big} file vs floor",
            mlv=f"{m['add_big_s']:.2f} s",
            peer=f"cp+hash {fl['big_s']:.2f} s",
            ratio=f"{bf:.2f}x floor",
            target=f"<= {TARGETS['add_big_vs_floor']:g}x floor",
            met=bf <= TARGETS["add_big_vs_floor"],
            value=bf,
        )
    )
    durable = fl["cp_s"] + fl["cp_fsync_s"] + fl["hash_s"]
    out.append(
        dict(
            measure="(d) same, vs floor incl. fsync",
            mlv=f"{m['add_big_s']:.2f} s",
            peer=f"cp+fsync+hash {durable:.2f} s",
            ratio=f"{m['add_big_s'] / durable:.2f}x floor",
            target="(info: mlv fsyncs objects)",
            met=None,
            value=m["add_big_s"] / durable,
        )
    )
    rss = m.get("add_big_rss_mb")
    drss = d.get("add_big_rss_mb")
    out.append(
        dict(
            measure=f"(d) add {big} file, peak RSS",
            mlv=f"{rss:.0f} MB" if rss is not None else "?",
            peer=f"DVC {drss:.0f} MB" if drss is not None else "-",
            ratio="-",
            target=f"< {TARGETS['add_big_rss_mb']:g} MB",
            met=None if rss is None else rss < TARGETS["add_big_rss_mb"],
            value=rss,
        )
    )
    return out


def fmt(xs: list[float], scale: float = 1.0, digits: int = 3, cpu: list[float] | None = None) -> str:
    if cpu and len(cpu) == len(xs):
        return ", ".join(f"{x * scale:.{digits}f} [{c:.2f}]" for x, c in zip(xs, cpu, strict=True)) or "-"
    return ", ".join(f"{x * scale:.{digits}f}" for x in xs) or "-"


def render(res: Results) -> str:
    table = rows(res)
    head = ("measure", "mlv", "peer/floor", "ratio", "target", "met?")
    body = [
        (r["measure"], r["mlv"], r["peer"], r["ratio"], r["target"], {True: "yes", False: "NO", None: "-"}[r["met"]])
        for r in table
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    sep = "|-" + "-|-".join("-" * w for w in widths) + "-|"
    m, fl = res.mlv, res.floor
    lines = [
        f"mlv store benchmark ({'QUICK' if res.quick else 'full'}): {res.n_files:,} files / "
        f"{res.tree_bytes / 1e6:.0f} MB, big file {res.big_bytes / GiB:g} GiB",
        f"machine: {res.info['machine']}; python {res.info['python']}; "
        + (res.info.get("dvc_version") and f"DVC {res.info['dvc_version']}" or "DVC not run"),
        f"cold = fresh repo and empty store; {res.info['page_cache']}",
        "load average (1/5/15 min) before: {} / after: {} -- other work on this {}-CPU machine skews timings".format(
            " ".join(f"{x:.2f}" for x in res.info["loadavg_start"]),
            " ".join(f"{x:.2f}" for x in res.info.get("loadavg_end", (0, 0, 0))),
            os.cpu_count(),
        ),
        "mlv: commit {commit}{dirty} ({sources})".format(
            commit=res.info["mlv_source"]["commit"],
            dirty=" + uncommitted changes" if res.info["mlv_source"]["dirty"] else "",
            sources=res.info["mlv_source"]["sources"],
        ),
        "",
        line(head),
        sep,
        *map(line, body),
        "",
        "details: every run, wall seconds [CPU seconds, user+sys, of the child] unless marked:",
        f"  (a) mlv add, {res.info['reps']} fresh repos: {fmt(m['add_dir_runs'], cpu=m['add_dir_cpu'])}",
        f"  (b) mlv status: {fmt(m['status_runs'], cpu=m['status_cpu'])}; "
        f"`mlv --help` start-up {res.info['mlv_help_s']:.3f}; "
        "mlv ran with byte-code cached in bench/.work/pycache"
        + (
            f"; `mlv status` as this environment runs it (PYTHONDONTWRITEBYTECODE=1: no .pyc for the editable "
            f"sources): {res.info['status_no_pyc_s']:.3f}"
            if "status_no_pyc_s" in res.info
            else ""
        ),
        f"  (b) in-process status (ms): {fmt(m['status_inproc_runs'], 1e3, 1)}; "
        f"bare walk (ms): {fmt(fl['walk_runs'], 1e3, 1)}",
        f"  (c) mlv re-add: {fmt(m['readd_runs'], cpu=m.get('readd_cpu'))}; "
        f"files hashed per re-add: {m.get('readd_hashed', '?')}",
        f"  (d) floor cp: {fmt(fl['cp_runs'], cpu=fl['cp_cpu'])}; xxh3-128: {fmt(fl['hash_runs'])}; "
        f"fsync of the copy after cp (not in the floor): {fmt(fl['cp_fsync_runs'])}",
        f"  (d) mlv add: {fmt(m['add_big_runs'], cpu=m['add_big_cpu'])}",
        f"  mlv peak RSS: add dir {m.get('add_dir_rss_mb', 0):.0f} MB, add big {m.get('add_big_rss_mb', 0):.0f} MB",
    ]
    if res.dvc:
        d = res.dvc
        lines += [
            f"  DVC add dir: {fmt(d.get('add_dir_runs', []), cpu=d.get('add_dir_cpu'))}; "
            f"status: {fmt(d.get('status_runs', []), cpu=d.get('status_cpu'))}",
            f"  DVC re-add: {fmt(d.get('readd_runs', []), cpu=d.get('readd_cpu'))}; "
            f"add big: {fmt(d.get('add_big_runs', []), cpu=d.get('add_big_cpu'))}; "
            f"peak RSS add dir {d.get('add_dir_rss_mb', 0):.0f} MB",
            "  DVC reference (3.67.1, measured earlier on this machine kind): "
            + ", ".join(f"{k} {v} s" for k, v in DVC_REFERENCE.items()),
        ]
    for e in res.errors:
        lines.append(f"  ANOMALY: {e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small data (2,000 files, 256 MiB file): a smoke run")
    ap.add_argument("--no-dvc", action="store_true", help="skip the DVC peer")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    ap.add_argument("--workdir", help="where to make the run directory (default bench/.work, else $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (data, repos) afterwards")
    ap.add_argument(
        "--reps", type=int, default=3, help="fresh repos for the one-shot adds (a) and (d); median reported (default 3)"
    )
    ap.add_argument(
        "--rev",
        default="HEAD",
        help="git revision of mlv to measure (default HEAD), run from a "
        "pinned copy in bench/.work/src-<commit> so concurrent edits don't leak in",
    )
    ap.add_argument("--live", action="store_true", help="measure the working tree as installed (editable) instead")
    args = ap.parse_args(argv)
    if not MLV.exists():
        print(f"no mlv at {MLV}; run this with the project's venv python", file=sys.stderr)
        return 2
    res = bench(args)
    if args.json:
        doc = {
            "quick": res.quick,
            "n_files": res.n_files,
            "tree_bytes": res.tree_bytes,
            "big_bytes": res.big_bytes,
            "mlv": res.mlv,
            "dvc": res.dvc,
            "floor": res.floor,
            "info": res.info,
            "targets": TARGETS,
            "dvc_reference": DVC_REFERENCE,
            "table": rows(res),
            "errors": res.errors,
        }
        print(json.dumps(doc, indent=2))
    else:
        print(render(res))
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
