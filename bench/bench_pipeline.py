"""Benchmark of mlv's pipeline engine (``mlv run``) against DVC (``dvc repro``).

Run from the repo root with the project's venv::

    .venv/bin/python bench/bench_pipeline.py [--quick] [--no-dvc] [--json] [--no-profile | --profile]
                                             [--only abcde] [--wait-idle S] [--keep]

It builds its own repos in a fresh run directory (default ``bench/.work/pipeline-<pid>``,
gitignored). Every repo is a ``git init`` repo with one commit (mlv.yaml / dvc.yaml, a
seed file, an empty ``out/``), as a user's would be; the mlv repo also has ``mlv init``,
the DVC repo ``dvc init`` (analytics off). The same stages are written to ``mlv.yaml``
and ``dvc.yaml`` (``cmd``/``deps``/``outs`` and ``foreach``/``do`` mean the same in both).

(a) no-op run of a 50-stage pipeline where everything is up to date: a binary tree of
    tiny ``cmd`` stages (stage i copies stage (i-1)//2's output and appends a line; stage 0
    reads ``seed.txt``), run once, then one warm-up no-op and the median of 5 no-ops of
    ``mlv run`` vs ``dvc repro``. Target: mlv < 1 s and <= half of DVC's.
    Beside it, ``project.run`` called in one process (no interpreter start-up or imports).
(b) 8 independent stages that each ``sleep 1``: wall of the whole ``mlv run --force``
    (a fresh repo; first rep is its first run) vs the sum of the stages' own times from
    their run records (``.mlv/runs/<run_id>.json``, ``ended - started``; ~8 s).
    Parallel efficiency = (sum / wall) / min(cores, 8), cores = ``os.cpu_count()`` (mlv's
    default runs as many stages at once as there are cores); target >= 85%. The records
    also give the per-stage timeline: how many ran at once, start-up before the first
    stage and tear-down after the last. DVC (serial) runs the same 8 with ``repro --force``.
(c) planning a 200-stage ``foreach`` sweep (one template writing ``out/${item}.txt``):
    ``mlv run --dry-run`` (whole command) and ``project.dry_run(Workspace(root),
    project.Selection())`` in one process, vs ``dvc repro --dry``; first with nothing run
    yet, then (full mode) with all 200 up to date. No target was set: reported only.
(d) first run of a 3-stage chain of short commands (``sleep 0.08 && cp …``, ~0.26 s in
    all): overhead = wall of ``mlv run`` in a fresh repo - the same three commands run
    directly in sequence (``/bin/sh -c``, via subprocess), vs DVC's overhead the same way.
    Target: mlv's overhead <= DVC's. The no-op rerun of the same repo is shown beside it.
(e) first run of a 3-stage chain of short Python ``call`` stages (each sleeps 0.08 s and
    copies its input): mlv runs ``call: steps:copy``; DVC runs the same function as a
    ``python -c`` stage; the floor is those three ``python -c`` commands run directly.
    Overhead = wall - floor; target: mlv's overhead <= DVC's.

Peer: DVC (unless ``--no-dvc``), in a throwaway venv at ``bench/.work/dvc-venv``
(``pip install dvc``; reused when present, e.g. made by bench_store.py; never a
dependency of mlv).

When a target is missed (unless ``--no-profile``, or always with ``--profile``) the
script profiles the command behind it: ``-X importtime`` grouped by top-level package,
and cProfile's top 15 by cumulative time (main thread), written under
``bench/.work/prof-pipeline/`` and summarised after the table.

``--quick`` runs fewer repetitions and skips (c)'s up-to-date variant: a smoke run.

The machine may be shared: before each section the script waits (``--wait-idle``, default
up to 300 s) until other processes use under 0.15 cores, then reports how much CPU others
used during each section and warns where that may have inflated the timings. It also
flags a change of mlv's sources during the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    MLV,
    REPO,
    WORK,
    dvc_env,
    ensure_dvc,
    git_init,
    log,
    median,
    mlv_env,
    source_state,
)

BENCH = REPO / "bench"
PROF_DIR = WORK / "prof-pipeline"
PY = sys.executable

N_NOOP_STAGES = 50
N_PAR_STAGES = 8
PAR_SLEEP = 1.0
N_SWEEP = 200
FIRST_SLEEP = 0.08

# repetitions: full, quick
REPS = {
    "noop": (5, 2),  # timed no-ops after one warm-up
    "par_mlv": (3, 1),
    "par_dvc": (2, 1),
    "dry": (5, 2),
    "first": (5, 2),  # fresh repos per rep
    "baseline": (5, 3),
}

TARGETS = {
    "noop_s": 1.0,  # mlv no-op < 1 s
    "noop_vs_dvc": 0.5,  # mlv / DVC <= 0.5
    "par_eff": 0.85,  # (sum / wall) / min(cores, 8) >= 0.85
    "first_overhead_vs_dvc": 1.0,  # mlv overhead <= DVC overhead
}

# Measured earlier on this machine kind (DVC 3.67.1), printed for comparison only.
DVC_REFERENCE = {"first_run_overhead_s (3 stages, 0.26 s of commands)": 1.3, "noop_rerun_s (3 stages)": 0.6}

# -- running commands -------------------------------------------------------------------
@dataclass
class Run:
    argv: list[str]
    seconds: float
    rc: int
    stdout: str
    stderr: str
    t_start: float = 0.0  # time.time() just before the launch
    t_end: float = 0.0  # time.time() just after the exit

    def check(self, what: str) -> Run:
        if self.rc != 0:
            raise BenchError(
                f"{what}: `{' '.join(self.argv)}` exited {self.rc}\n--- stdout\n{self.stdout[-3000:]}\n"
                f"--- stderr\n{self.stderr[-3000:]}"
            )
        return self


class BenchError(RuntimeError):
    pass


def run(argv: list, cwd: Path, env: dict[str, str] | None = None) -> Run:
    argv = [str(a) for a in argv]
    w0 = time.time()
    t0 = time.perf_counter()
    p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       check=False)
    seconds = time.perf_counter() - t0
    return Run(argv, seconds, p.returncode, p.stdout, p.stderr, w0, time.time())


# -- pipelines ----------------------------------------------------------------------------
# One stage: name -> {"cmd": str, "deps": [..], "outs": [..]}; or a foreach template.


def q(s: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(s)


def stages_yaml(stages: dict[str, dict]) -> str:
    lines = ["stages:"]
    for name, st in stages.items():
        lines.append(f"  {name}:")
        body_indent = "    "
        if "foreach" in st:
            lines.append("    foreach:")
            lines.extend(f"      - {q(item)}" for item in st["foreach"])
            lines.append("    do:")
            body_indent = "      "
        mode = "call" if "call" in st else "cmd"
        lines.append(f"{body_indent}{mode}: {q(st[mode])}")
        for key in ("deps", "outs"):
            if st.get(key):
                lines.append(f"{body_indent}{key}:")
                lines.extend(f"{body_indent}  - {q(p)}" for p in st[key])
    return "\n".join(lines) + "\n"


def tree_pipeline(n: int) -> dict[str, dict]:
    """(a) A binary tree of n tiny stages: stage i reads stage (i-1)//2's output."""
    stages = {}
    for i in range(n):
        src = "seed.txt" if i == 0 else f"out/s{(i - 1) // 2:02d}.txt"
        dst = f"out/s{i:02d}.txt"
        stages[f"s{i:02d}"] = {"cmd": f"cp {src} {dst} && echo {i} >> {dst}", "deps": [src], "outs": [dst]}
    return stages


def parallel_pipeline(n: int, sleep: float) -> dict[str, dict]:
    """(b) n independent stages that each sleep."""
    return {
        f"p{i}": {"cmd": f"sleep {sleep:g} && echo {i} > out/p{i}.txt", "deps": ["seed.txt"], "outs": [f"out/p{i}.txt"]}
        for i in range(n)
    }


def sweep_pipeline(n: int) -> dict[str, dict]:
    """(c) One foreach template over n items."""
    return {
        "sweep": {
            "foreach": [f"i{k:03d}" for k in range(n)],
            "cmd": "echo ${item} > out/${item}.txt",
            "deps": ["seed.txt"],
            "outs": ["out/${item}.txt"],
        }
    }


def chain_pipeline(sleep: float) -> dict[str, dict]:
    """(d) Three short commands in a chain."""
    stages = {}
    src = "seed.txt"
    for i in (1, 2, 3):
        dst = f"out/d{i}.txt"
        stages[f"d{i}"] = {"cmd": f"sleep {sleep:g} && cp {src} {dst}", "deps": [src], "outs": [dst]}
        src = dst
    return stages


def git_commit(path: Path) -> None:
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(path), "commit", "-qm", "bench: pipeline"], check=True)


@dataclass
class Tools:
    dvc: Path | None
    menv: dict
    denv: dict


def make_repos(base: Path, name: str, stages: dict[str, dict], tools: Tools,
               which: tuple[str, ...] = ("mlv", "dvc")) -> tuple[Path | None, Path | None]:
    """A git + ``mlv init`` repo and (with DVC) a git + ``dvc init`` repo holding the same stages."""
    mrepo = base / f"{name}-mlv" if "mlv" in which else None
    drepo = base / f"{name}-dvc" if tools.dvc and "dvc" in which else None
    text = stages_yaml(stages)
    for repo, pipeline_file in ((mrepo, "mlv.yaml"), (drepo, "dvc.yaml")):
        if repo is None:
            continue
        repo.mkdir(parents=True)
        git_init(repo)
        if pipeline_file == "mlv.yaml":
            run([MLV, "init"], repo, tools.menv).check(f"mlv init ({name})")
        else:
            run([tools.dvc, "init", "-q"], repo, tools.denv).check(f"dvc init ({name})")
            run([tools.dvc, "config", "core.analytics", "false"], repo, tools.denv).check("dvc config")
            run([tools.dvc, "config", "core.autostage", "false"], repo, tools.denv).check("dvc config")
        (repo / pipeline_file).write_text(text)
        (repo / "seed.txt").write_text("seed\n")
        (repo / "out").mkdir()
        (repo / "out" / ".keep").write_text("")
        git_commit(repo)
    return mrepo, drepo


# -- results ------------------------------------------------------------------------------
@dataclass
class Results:
    quick: bool
    mlv: dict = field(default_factory=dict)
    dvc: dict = field(default_factory=dict)
    base: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    profiles: dict = field(default_factory=dict)


# In-process timings run in a child interpreter, so the bench process never imports mlv and
# each measurement starts from the same state; the child reports import time separately.
_INPROC = r"""
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from mlv.pipelines import project
from mlv.storage.workspace import Workspace
import_s = time.perf_counter() - t0
root, what, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
runs, summary = [], {}
for _ in range(n + 1):  # the first call is the cold one (lazy imports, empty caches)
    t = time.perf_counter()
    if what == "dry_run":
        result = project.dry_run(Workspace(root), project.Selection())
        states = [d.action for d in result]
    else:
        from mlv.engine.runresults import RunOptions
        result = project.run(Workspace(root), project.Selection(), RunOptions())
        states = [r.state for r in result]
    runs.append(time.perf_counter() - t)
    summary = {s: states.count(s) for s in sorted(set(states))}
print(json.dumps({"import_s": import_s, "first_s": runs[0], "warm_runs": runs[1:], "states": summary}))
"""


def inproc(root: Path, what: str, n: int, env: dict) -> dict:
    r = run([PY, "-c", _INPROC, root, what, n], root, env).check(f"in-process {what}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_records(repo: Path, run_ids: list[str]) -> list[dict]:
    recs = []
    for rid in run_ids:
        data = json.loads((repo / ".mlv" / "runs" / f"{rid}.json").read_text())
        recs.append({"stage": data["stage"], "started": data["started"], "ended": data["ended"]})
    return recs


def timeline(recs: list[dict], t_launch: float, t_exit: float) -> dict:
    """Overlap of stage executions from their run records, and the time around them."""
    first = min(r["started"] for r in recs)
    last = max(r["ended"] for r in recs)
    events = sorted([(r["started"], 1) for r in recs] + [(r["ended"], -1) for r in recs], key=lambda e: (e[0], e[1]))
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    busy = sum(r["ended"] - r["started"] for r in recs)
    return {
        "sum_s": busy,
        "span_s": last - first,
        "max_concurrent": peak,
        "mean_concurrency": busy / (last - first) if last > first else float("nan"),
        "startup_s": first - t_launch,  # launch of `mlv run` -> first stage starts
        "teardown_s": t_exit - last,  # last stage ends -> `mlv run` exits
        "stages": [
            {"stage": r["stage"], "start": round(r["started"] - first, 3), "end": round(r["ended"] - first, 3)}
            for r in sorted(recs, key=lambda r: r["started"])
        ],
    }


# -- a shared machine: how much CPU others used ------------------------------------------------
OTHERS_WARN = 0.15  # cores used by processes outside this benchmark, on average, above which timings are suspect


def _busy_s() -> float:
    """CPU time the whole machine has spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _ours_s() -> float:
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class CpuMeter:
    """Average cores used by processes other than this benchmark and the commands it ran (and waited for)."""

    def __init__(self) -> None:
        self.t0, self.busy0, self.ours0 = time.monotonic(), _busy_s(), _ours_s()

    def others(self) -> float:
        elapsed = time.monotonic() - self.t0
        if elapsed <= 0:
            return 0.0
        return max(0.0, ((_busy_s() - self.busy0) - (_ours_s() - self.ours0)) / elapsed)


def wait_idle(limit_s: float, window_s: float = 2.0) -> float:
    """Wait (up to ``limit_s``) until other processes use under OTHERS_WARN cores over ``window_s``."""
    if limit_s <= 0:
        return 0.0
    t0 = time.monotonic()
    warned = False
    while True:
        meter = CpuMeter()
        time.sleep(window_s)
        used = meter.others()
        if used < OTHERS_WARN or time.monotonic() - t0 >= limit_s:
            return round(time.monotonic() - t0 - window_s, 1)
        if not warned:
            log(f"the machine is busy (others use {used:.2f} cores); waiting up to {limit_s:g} s for it to settle")
            warned = True


# -- the benchmark ------------------------------------------------------------------------
def bench(args: argparse.Namespace, workdir: Path) -> Results:
    quick = args.quick
    reps = {k: v[1] if quick else v[0] for k, v in REPS.items()}
    res = Results(quick=quick)
    cores = os.cpu_count() or 1
    res.info.update(
        python=platform.python_version(),
        machine=f"{platform.machine()}, {cores} CPUs, {platform.system()} {platform.release()}",
        cores=cores,
        mlv_source=source_state(),
        load_at_start=os.getloadavg()[0],
        reps=reps,
    )
    tools = Tools(None, mlv_env(), dvc_env())
    if not args.no_dvc:
        tools.dvc = ensure_dvc()
        v = run([tools.dvc, "--version"], workdir, tools.denv)
        res.info["dvc_version"] = v.stdout.strip()
    dvc = tools.dvc
    menv, denv = tools.menv, tools.denv

    # start-up floor: the interpreter alone, and `mlv --help`
    for _ in range(2):
        run([PY, "-c", "pass"], workdir)
        run([MLV, "--help"], workdir, menv)
    res.base["python_startup_s"] = median([run([PY, "-c", "pass"], workdir).seconds for _ in range(5)])
    res.mlv["help_s"] = median([run([MLV, "--help"], workdir, menv).check("mlv --help").seconds for _ in range(5)])
    if dvc:
        res.dvc["help_s"] = median([run([dvc, "--help"], workdir, denv).check("dvc --help").seconds for _ in range(3)])

    sections = (("a", bench_noop), ("b", bench_parallel), ("c", bench_sweep), ("d", bench_first),
                ("e", bench_first_call))
    res.info["others_cpu"] = {}
    for label, fn in sections:
        if args.only and label not in args.only:
            continue
        waited = wait_idle(args.wait_idle)
        if waited:
            res.info.setdefault("waited_s", {})[label] = waited
        meter = CpuMeter()
        try:
            fn(res, workdir, tools, reps)
        except BenchError as exc:
            res.errors.append(f"({label}) {exc}")
            log(f"({label}) FAILED: {str(exc).splitlines()[0]}")
        res.info["others_cpu"][label] = meter.others()
        if res.info["others_cpu"][label] > OTHERS_WARN:
            log(f"({label}) other processes used {res.info['others_cpu'][label]:.2f} cores on average meanwhile")
    res.info["load_at_end"] = os.getloadavg()[0]
    end_src = source_state()
    if end_src["sources"] != res.info["mlv_source"]["sources"]:
        res.info["mlv_source_at_end"] = end_src
        res.errors.append(f"mlv's sources changed during the run ({res.info['mlv_source']['sources']} -> "
                          f"{end_src['sources']}): the sections did not all measure the same code")
    return res


def bench_noop(res: Results, workdir: Path, tools: Tools, reps: dict) -> None:
    dvc, menv, denv = tools.dvc, tools.menv, tools.denv
    mrepo, drepo = make_repos(workdir, "noop50", tree_pipeline(N_NOOP_STAGES), tools)
    r = run([MLV, "run"], mrepo, menv).check("(a) first mlv run")
    res.mlv["noop50_first_run_s"] = r.seconds
    log(f"(a) first mlv run of {N_NOOP_STAGES} stages: {r.seconds:.2f} s")
    run([MLV, "run"], mrepo, menv).check("(a) mlv no-op warm-up")
    times = []
    for _ in range(reps["noop"]):
        r = run([MLV, "run"], mrepo, menv).check("(a) mlv no-op")
        if f"{N_NOOP_STAGES} up-to-date" not in r.stdout:
            res.errors.append(f"(a) mlv no-op did not report all {N_NOOP_STAGES} up to date: {r.stdout.strip()!r}")
        times.append(r.seconds)
    res.mlv["noop_s"], res.mlv["noop_runs"] = median(times), times
    log(f"(a) mlv no-op: {median(times):.3f} s ({', '.join(f'{t:.3f}' for t in times)})")
    ip = inproc(mrepo, "run", reps["noop"], menv)
    res.mlv["noop_inproc"] = ip
    res.mlv["noop_dry_inproc"] = inproc(mrepo, "dry_run", reps["noop"], menv)
    if ip["states"] != {"up-to-date": N_NOOP_STAGES}:
        res.errors.append(f"(a) in-process no-op run states: {ip['states']}")
    log(f"(a) in-process project.run no-op: import {ip['import_s'] * 1e3:.0f} ms, first {ip['first_s'] * 1e3:.0f} ms, "
        f"warm {median(ip['warm_runs']) * 1e3:.0f} ms")
    if dvc:
        r = run([dvc, "repro"], drepo, denv).check("(a) first dvc repro")
        res.dvc["noop50_first_run_s"] = r.seconds
        log(f"(a) first dvc repro of {N_NOOP_STAGES} stages: {r.seconds:.2f} s")
        run([dvc, "repro"], drepo, denv).check("(a) dvc no-op warm-up")
        times = []
        for _ in range(reps["noop"]):
            r = run([dvc, "repro"], drepo, denv).check("(a) dvc no-op")
            if "Running stage" in r.stdout:
                res.errors.append("(a) dvc no-op re-ran a stage")
            times.append(r.seconds)
        res.dvc["noop_s"], res.dvc["noop_runs"] = median(times), times
        log(f"(a) dvc no-op: {median(times):.3f} s ({', '.join(f'{t:.3f}' for t in times)})")
    res.info["noop_repo"] = str(mrepo)


def bench_parallel(res: Results, workdir: Path, tools: Tools, reps: dict) -> None:
    dvc, menv, denv = tools.dvc, tools.menv, tools.denv
    cores = res.info["cores"]
    ideal = min(cores, N_PAR_STAGES)
    mrepo, drepo = make_repos(workdir, "par8", parallel_pipeline(N_PAR_STAGES, PAR_SLEEP), tools)
    runs = []
    for i in range(reps["par_mlv"]):
        r = run([MLV, "run", "--force", "--json"], mrepo, menv).check("(b) mlv run --force")
        out = json.loads(r.stdout)
        if [x["state"] for x in out] != ["done"] * N_PAR_STAGES:
            res.errors.append(f"(b) mlv run states: {[x['state'] for x in out]}")
        tl = timeline(run_records(mrepo, [x["run_id"] for x in out]), r.t_start, r.t_end)
        tl["wall_s"] = r.seconds
        tl["efficiency"] = tl["sum_s"] / r.seconds / ideal
        tl["first_run"] = i == 0
        runs.append(tl)
        log(f"(b) mlv run {i + 1}: wall {r.seconds:.2f} s, stages' sum {tl['sum_s']:.2f} s, "
            f"efficiency {tl['efficiency']:.0%}, {tl['max_concurrent']} at once, start-up {tl['startup_s']:.2f} s, "
            f"tear-down {tl['teardown_s']:.2f} s")
    best = sorted(runs, key=lambda t: t["wall_s"])[len(runs) // 2]  # the median run
    res.mlv["par"] = {"runs": runs, "median": best, "wall_s": median([t["wall_s"] for t in runs]),
                      "sum_s": median([t["sum_s"] for t in runs]), "ideal_speedup": ideal}
    res.mlv["par"]["efficiency"] = res.mlv["par"]["sum_s"] / res.mlv["par"]["wall_s"] / ideal
    res.info["par_repo"] = str(mrepo)
    if dvc:
        times = []
        for i in range(reps["par_dvc"]):
            r = run([dvc, "repro", "--force"], drepo, denv).check("(b) dvc repro --force")
            times.append(r.seconds)
            log(f"(b) dvc repro --force {i + 1}: wall {r.seconds:.2f} s")
        res.dvc["par"] = {"wall_s": median(times), "runs": times,
                          "efficiency": N_PAR_STAGES * PAR_SLEEP / median(times) / ideal}


def bench_sweep(res: Results, workdir: Path, tools: Tools, reps: dict) -> None:
    dvc, menv, denv = tools.dvc, tools.menv, tools.denv
    mrepo, drepo = make_repos(workdir, "sweep200", sweep_pipeline(N_SWEEP), tools)
    variants = ["fresh"] if res.quick else ["fresh", "uptodate"]
    for variant in variants:
        if variant == "uptodate":
            r = run([MLV, "run"], mrepo, menv).check("(c) mlv run of the sweep")
            res.mlv["sweep_run_s"] = r.seconds
            log(f"(c) mlv run of {N_SWEEP} stages: {r.seconds:.2f} s")
            if dvc:
                r = run([dvc, "repro"], drepo, denv).check("(c) dvc repro of the sweep")
                res.dvc["sweep_run_s"] = r.seconds
                log(f"(c) dvc repro of {N_SWEEP} stages: {r.seconds:.2f} s")
        want = "run" if variant == "fresh" else "up-to-date"
        run([MLV, "run", "--dry-run"], mrepo, menv).check("(c) mlv dry-run warm-up")
        times = []
        for _ in range(reps["dry"]):
            r = run([MLV, "run", "--dry-run"], mrepo, menv).check("(c) mlv run --dry-run")
            n = sum(1 for line in r.stdout.splitlines() if line.split() and line.split()[0] == want)
            if n != N_SWEEP:
                res.errors.append(f"(c/{variant}) mlv --dry-run listed {n} stages as '{want}', expected {N_SWEEP}")
            times.append(r.seconds)
        ip = inproc(mrepo, "dry_run", reps["dry"], menv)
        if ip["states"] != {want: N_SWEEP}:
            res.errors.append(f"(c/{variant}) in-process dry_run states: {ip['states']}")
        res.mlv[f"dry_{variant}"] = {"cmd_s": median(times), "cmd_runs": times, "inproc": ip}
        log(f"(c/{variant}) mlv run --dry-run: {median(times):.3f} s; in-process dry_run first "
            f"{ip['first_s'] * 1e3:.0f} ms, warm {median(ip['warm_runs']) * 1e3:.0f} ms")
        if dvc:
            run([dvc, "repro", "--dry"], drepo, denv).check("(c) dvc dry warm-up")
            times = []
            for _ in range(reps["dry"]):
                r = run([dvc, "repro", "--dry"], drepo, denv).check("(c) dvc repro --dry")
                n = r.stdout.count("Running stage")
                if variant == "fresh" and n != N_SWEEP:
                    res.errors.append(f"(c/{variant}) dvc repro --dry listed {n} stages to run, expected {N_SWEEP}")
                if variant == "uptodate" and n:
                    res.errors.append(f"(c/{variant}) dvc repro --dry would run {n} stages")
                times.append(r.seconds)
            res.dvc[f"dry_{variant}"] = {"cmd_s": median(times), "cmd_runs": times}
            log(f"(c/{variant}) dvc repro --dry: {median(times):.3f} s")


def bench_first(res: Results, workdir: Path, tools: Tools, reps: dict) -> None:
    dvc, menv, denv = tools.dvc, tools.menv, tools.denv
    stages = chain_pipeline(FIRST_SLEEP)
    # baseline: the same commands, directly, in sequence
    scratch = workdir / "first-direct"
    times = []
    for _ in range(reps["baseline"] + 1):
        shutil.rmtree(scratch, ignore_errors=True)
        (scratch / "out").mkdir(parents=True)
        (scratch / "seed.txt").write_text("seed\n")
        t0 = time.perf_counter()
        for st in stages.values():
            subprocess.run(["/bin/sh", "-c", st["cmd"]], cwd=scratch, check=True)
        times.append(time.perf_counter() - t0)
    res.base["first_cmds_s"], res.base["first_cmds_runs"] = median(times[1:]), times[1:]
    log(f"(d) the 3 commands directly: {median(times[1:]):.3f} s")
    for tool in ("mlv", "dvc") if dvc else ("mlv",):
        first, noop = [], []
        for i in range(reps["first"]):
            mrepo, drepo = make_repos(workdir, f"first3-{i}", stages, tools, which=(tool,))
            if tool == "mlv":
                r = run([MLV, "run"], mrepo, menv).check("(d) mlv first run")
                if "3 done" not in r.stdout:
                    res.errors.append(f"(d) mlv first run: {r.stdout.strip()!r}")
                first.append(r.seconds)
                noop.append(run([MLV, "run"], mrepo, menv).check("(d) mlv no-op").seconds)
                shutil.rmtree(mrepo)
            else:
                r = run([dvc, "repro"], drepo, denv).check("(d) dvc first repro")
                if r.stdout.count("Running stage") != 3:
                    res.errors.append(f"(d) dvc first repro ran {r.stdout.count('Running stage')} stages")
                first.append(r.seconds)
                noop.append(run([dvc, "repro"], drepo, denv).check("(d) dvc no-op").seconds)
                shutil.rmtree(drepo)
        side = res.mlv if tool == "mlv" else res.dvc
        side["first"] = {"wall_s": median(first), "runs": first, "overhead_s": median(first) - res.base["first_cmds_s"],
                         "noop_s": median(noop), "noop_runs": noop}
        log(f"(d) {tool} first run: {median(first):.3f} s (overhead {side['first']['overhead_s']:.3f} s), "
            f"no-op rerun {median(noop):.3f} s")


STEPS = f"""\
import shutil
import time


def copy(deps, outs, params):
    time.sleep({FIRST_SLEEP})
    shutil.copyfile(deps[0], outs[0])
"""


def call_pipelines() -> tuple[dict[str, dict], dict[str, dict]]:
    """(e) Three short Python stages in a chain: as mlv ``call`` stages, and as DVC ``python -c`` commands."""
    mlv, dvc = {}, {}
    src = "seed.txt"
    for i in (1, 2, 3):
        dst = f"out/e{i}.txt"
        mlv[f"e{i}"] = {"call": "steps:copy", "deps": [src, "steps.py"], "outs": [dst]}
        dvc[f"e{i}"] = {"cmd": f"{sys.executable} -c \"import steps; steps.copy(['{src}'], ['{dst}'], {{}})\"",
                        "deps": [src, "steps.py"], "outs": [dst]}
        src = dst
    return mlv, dvc


def bench_first_call(res: Results, workdir: Path, tools: Tools, reps: dict) -> None:
    mlv_stages, dvc_stages = call_pipelines()
    scratch = workdir / "first-call-direct"
    times = []
    for _ in range(reps["baseline"] + 1):
        shutil.rmtree(scratch, ignore_errors=True)
        (scratch / "out").mkdir(parents=True)
        (scratch / "seed.txt").write_text("seed\n")
        (scratch / "steps.py").write_text(STEPS)
        t0 = time.perf_counter()
        for st in dvc_stages.values():
            subprocess.run(["/bin/sh", "-c", st["cmd"]], cwd=scratch, check=True)
        times.append(time.perf_counter() - t0)
    res.base["first_call_s"] = median(times[1:])
    log(f"(e) the 3 python -c commands directly: {median(times[1:]):.3f} s")
    for tool, stages in (("mlv", mlv_stages), ("dvc", dvc_stages)) if tools.dvc else (("mlv", mlv_stages),):
        first = []
        for i in range(reps["first"]):
            mrepo, drepo = make_repos(workdir, f"firstcall-{i}", stages, tools, which=(tool,))
            repo = mrepo if tool == "mlv" else drepo
            (repo / "steps.py").write_text(STEPS)
            git_commit(repo)
            if tool == "mlv":
                r = run([MLV, "run"], repo, tools.menv).check("(e) mlv first run")
                if "3 done" not in r.stdout:
                    res.errors.append(f"(e) mlv first run: {r.stdout.strip()!r}")
            else:
                r = run([tools.dvc, "repro"], repo, tools.denv).check("(e) dvc first repro")
            first.append(r.seconds)
            shutil.rmtree(repo)
        side = res.mlv if tool == "mlv" else res.dvc
        side["first_call"] = {"wall_s": median(first), "runs": first,
                              "overhead_s": median(first) - res.base["first_call_s"]}
        log(f"(e) {tool} first run of 3 call stages: {median(first):.3f} s "
            f"(overhead {side['first_call']['overhead_s']:.3f} s)")


# -- the table ------------------------------------------------------------------------------
def rows(res: Results) -> list[dict]:
    m, d = res.mlv, res.dvc
    out = []

    def row(measure, mv, pv, ratio, target, met, key=None):
        out.append({"measure": measure, "mlv": mv, "peer": pv, "ratio": ratio, "target": target, "met": met, "key": key})

    def s(x, digits=3):
        return "-" if x is None else f"{x:.{digits}f} s"

    def rat(a, b, digits=2):
        return "-" if a is None or b is None or not b else f"{a / b:.{digits}f}x"

    if "noop_s" in m:
        dn = d.get("noop_s")
        row(f"(a) no-op run, {N_NOOP_STAGES} stages up to date (median of {len(m['noop_runs'])})", s(m["noop_s"]),
            s(dn) + (" dvc repro" if dn else ""), rat(m["noop_s"], dn), f"mlv < {TARGETS['noop_s']:g} s",
            m["noop_s"] < TARGETS["noop_s"], "noop_s")
        row("(a) no-op run: mlv / DVC", s(m["noop_s"]), s(dn), rat(m["noop_s"], dn),
            f"<= {TARGETS['noop_vs_dvc']:g}x", None if dn is None else m["noop_s"] / dn <= TARGETS["noop_vs_dvc"],
            "noop_vs_dvc")
        ip = m["noop_inproc"]
        row("(a)   same, in-process project.run (warm; no start-up/imports)", s(median(ip["warm_runs"])), "-", "-",
            "-", None)
    if "par" in m:
        p, dp = m["par"], d.get("par")
        row(f"(b) {N_PAR_STAGES} x `sleep 1`, wall of whole run (sum of stages {p['sum_s']:.2f} s)", s(p["wall_s"], 2),
            s(dp["wall_s"], 2) + " (serial)" if dp else "-", rat(p["wall_s"], dp["wall_s"] if dp else None), "-", None)
        row(f"(b) parallel efficiency (sum/wall)/{p['ideal_speedup']} cores", f"{p['efficiency']:.0%}",
            f"{dp['efficiency']:.0%}" if dp else "-", "-", f">= {TARGETS['par_eff']:.0%}",
            p["efficiency"] >= TARGETS["par_eff"], "par_eff")
        med = p["median"]
        exec_eff = med["sum_s"] / med["span_s"] / p["ideal_speedup"]
        row("(b)   same over the stages' span only (first start -> last end)", f"{exec_eff:.0%}", "-", "-", "-", None)
    for variant, label in (("fresh", "nothing run yet"), ("uptodate", "all up to date")):
        key = f"dry_{variant}"
        if key in m:
            dv = d.get(key, {}).get("cmd_s")
            row(f"(c) dry run, {N_SWEEP}-stage foreach, {label}: whole command", s(m[key]["cmd_s"]),
                s(dv) + (" repro --dry" if dv else ""), rat(m[key]["cmd_s"], dv), "(none set)", None)
            ip = m[key]["inproc"]
            row(f"(c)   in-process project.dry_run, {label}: first call / warm",
                f"{ip['first_s'] * 1e3:.0f} / {median(ip['warm_runs']) * 1e3:.0f} ms", "-", "-", "(none set)", None)
    if "first" in m:
        f, df = m["first"], d.get("first")
        row(f"(d) first run, 3 stages: wall (commands alone {res.base['first_cmds_s']:.3f} s)", s(f["wall_s"]),
            s(df["wall_s"]) if df else "-", rat(f["wall_s"], df["wall_s"] if df else None), "-", None)
        row("(d) first run, 3 stages: overhead = wall - commands", s(f["overhead_s"]),
            s(df["overhead_s"]) if df else "-", rat(f["overhead_s"], df["overhead_s"] if df else None),
            "mlv <= DVC", None if df is None else f["overhead_s"] <= df["overhead_s"] * TARGETS["first_overhead_vs_dvc"],
            "first_overhead")
        row("(d) no-op rerun, 3 stages", s(f["noop_s"]), s(df["noop_s"]) if df else "-",
            rat(f["noop_s"], df["noop_s"] if df else None), "-", None)
    if "first_call" in m:
        f, df = m["first_call"], d.get("first_call")
        row(f"(e) first run, 3 call stages: wall (python -c alone {res.base['first_call_s']:.3f} s)", s(f["wall_s"]),
            s(df["wall_s"]) if df else "-", rat(f["wall_s"], df["wall_s"] if df else None), "-", None)
        row("(e) first run, 3 call stages: overhead = wall - python -c", s(f["overhead_s"]),
            s(df["overhead_s"]) if df else "-", rat(f["overhead_s"], df["overhead_s"] if df else None),
            "mlv <= DVC", None if df is None else f["overhead_s"] <= df["overhead_s"], "first_call_overhead")
    return out


def render(res: Results) -> str:
    table = rows(res)
    head = ("measure", "mlv", "peer (DVC)", "ratio mlv/peer", "target", "met?")
    body = [(r["measure"], r["mlv"], r["peer"], r["ratio"], r["target"], {True: "yes", False: "NO", None: "-"}[r["met"]])
            for r in table]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|-" + "-|-".join("-" * w for w in widths) + "-|"
    m, d, i = res.mlv, res.dvc, res.info
    src = i["mlv_source"]
    lines = [
        f"mlv pipeline benchmark ({'QUICK' if res.quick else 'full'})",
        f"machine: {i['machine']}; python {i['python']}; "
        + (f"DVC {i['dvc_version']}" if i.get("dvc_version") else "DVC not run"),
        (f"mlv at commit {src['commit']}{' + uncommitted changes' if src['dirty'] else ''} (sources {src['sources']}); "
        f"1-min load average {i['load_at_start']:.2f} at start, {i.get('load_at_end', float('nan')):.2f} at end"),
        "",
        line(head),
        sep,
        *map(line, body),
        "",
        "details:",
        f"  start-up: `python -c pass` {res.base['python_startup_s']:.3f} s, `mlv --help` {m['help_s']:.3f} s"
        + (f", `dvc --help` {d['help_s']:.3f} s" if "help_s" in d else ""),
    ]
    if "noop_s" in m:
        ip, dp = m["noop_inproc"], m["noop_dry_inproc"]
        lines += [
            (f"  (a) mlv no-op runs (s): {', '.join(f'{x:.3f}' for x in m['noop_runs'])}; first (real) run of the "
            f"{N_NOOP_STAGES} stages {m['noop50_first_run_s']:.2f} s"),
            (f"  (a) in-process: importing project + Workspace {ip['import_s'] * 1e3:.0f} ms; project.run first call "
            f"{ip['first_s'] * 1e3:.0f} ms, warm {', '.join(f'{x * 1e3:.0f}' for x in ip['warm_runs'])} ms; "
            f"project.dry_run warm {median(dp['warm_runs']) * 1e3:.0f} ms"),
        ]
        if "noop_s" in d:
            lines.append(f"  (a) dvc no-op runs (s): {', '.join(f'{x:.3f}' for x in d['noop_runs'])}; first (real) "
                         f"repro of the {N_NOOP_STAGES} stages {d['noop50_first_run_s']:.2f} s")
    if "par" in m:
        for k, tl in enumerate(m["par"]["runs"]):
            lines.append(
                f"  (b) mlv run {k + 1}{' (first run of the repo)' if tl['first_run'] else ' (--force)'}: wall "
                f"{tl['wall_s']:.2f} s = start-up {tl['startup_s']:.2f} s (launch -> first stage starts) + stages' span "
                f"{tl['span_s']:.2f} s + tear-down {tl['teardown_s']:.2f} s; {tl['max_concurrent']} stages at once at "
                f"most, {tl['mean_concurrency']:.2f} on average; efficiency {tl['efficiency']:.0%}"
            )
        med = m["par"]["median"]
        lines.append("  (b) per-stage timeline of the median run (s from the first start): " + ", ".join(
            f"{st['stage']} {st['start']:.2f}-{st['end']:.2f}" for st in med["stages"]))
        if "par" in d:
            lines.append(f"  (b) dvc repro --force runs (s): {', '.join(f'{x:.2f}' for x in d['par']['runs'])}")
    for variant in ("fresh", "uptodate"):
        key = f"dry_{variant}"
        if key in m:
            lines.append(f"  (c/{variant}) mlv --dry-run runs (s): {', '.join(f'{x:.3f}' for x in m[key]['cmd_runs'])}"
                         f"; in-process import {m[key]['inproc']['import_s'] * 1e3:.0f} ms"
                         + (f"; dvc --dry runs (s): {', '.join(f'{x:.3f}' for x in d[key]['cmd_runs'])}"
                            if key in d else ""))
    if "sweep_run_s" in m:
        lines.append(f"  (c) real run of the {N_SWEEP} stages (to make them up to date): mlv {m['sweep_run_s']:.2f} s"
                     + (f", dvc {d['sweep_run_s']:.2f} s" if "sweep_run_s" in d else ""))
    if "first" in m:
        lines.append(f"  (d) commands run directly (s): {', '.join(f'{x:.3f}' for x in res.base['first_cmds_runs'])}")
        lines.append(f"  (d) mlv first runs (s): {', '.join(f'{x:.3f}' for x in m['first']['runs'])}; no-op reruns "
                     f"{', '.join(f'{x:.3f}' for x in m['first']['noop_runs'])}")
        if "first" in d:
            lines.append(f"  (d) dvc first runs (s): {', '.join(f'{x:.3f}' for x in d['first']['runs'])}; no-op reruns "
                         f"{', '.join(f'{x:.3f}' for x in d['first']['noop_runs'])}")
    lines.append("  DVC reference (3.67.1, earlier, this machine kind): "
                 + ", ".join(f"{k} {v} s" for k, v in DVC_REFERENCE.items()))
    others = i.get("others_cpu", {})
    if others:
        lines.append("  other processes' CPU use during each section (cores, average): "
                     + ", ".join(f"({k}) {v:.2f}" for k, v in others.items())
                     + (f"; waited for quiet: {i['waited_s']}" if i.get("waited_s") else ""))
    busy = {k: v for k, v in others.items() if v > OTHERS_WARN}
    if busy:
        lines.append(f"  WARNING: other processes were using CPU during section(s) {', '.join(busy)} "
                     f"(> {OTHERS_WARN} cores on average): those timings may be inflated")
    for e in res.errors:
        lines.append(f"  ANOMALY: {e}")
    for name, text in res.profiles.items():
        lines += ["", f"profile: {name}", text]
    return "\n".join(lines)


# -- profiles for missed targets ---------------------------------------------------------------
_PROFILE_DRIVER = r"""
import cProfile, sys
out, cwd_args = sys.argv[1], sys.argv[2:]
prof = cProfile.Profile()
prof.enable()
try:
    sys.argv = ["mlv", *cwd_args]
    from mlv.cli.main import app
    try:
        app(standalone_mode=False)
    except SystemExit:
        pass
finally:
    prof.disable()
    prof.dump_stats(out)
"""


def short_path(path: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


_WRAPPERS = ("typer/", "click/", "cli/main.py", "<frozen importlib", "<string>")


def cprofile_top(prof_file: Path, n: int = 15) -> str:
    """Top ``n`` by cumulative time, leaving out the CLI wrappers every command goes through
    (typer, click, mlv's error wrapper) and the import machinery, which is summed on its own line."""
    import pstats

    st = pstats.Stats(str(prof_file))
    total = max((v[3] for v in st.stats.values()), default=0.0)
    imports = max((v[3] for (f, _, fn), v in st.stats.items() if fn == "_find_and_load"), default=0.0)
    entries = sorted(st.stats.items(), key=lambda kv: kv[1][3], reverse=True)
    lines = [(f"    total under the profiler {total:.3f} s; in imports (importlib _find_and_load, cumulative) "
              f"{imports:.3f} s"),
             f"    {'ncalls':>8} {'tottime':>8} {'cumtime':>8}  function"]
    shown = 0
    for (file, lineno, func), (_cc, nc, tt, ct, _callers) in entries:
        if any(w in file for w in _WRAPPERS) or (file == "~" and "builtins.exec" in func):
            continue
        where = f"{short_path(file)}:{lineno}({func})" if file != "~" else func
        lines.append(f"    {nc:>8} {tt:>8.3f} {ct:>8.3f}  {where}")
        shown += 1
        if shown == n:
            break
    # mlv's own functions below the command's call chain (those under 70% of the total): where its work is
    own = [(ct, nc, f"{short_path(file)}:{lineno}({func})") for (file, lineno, func), (_cc, nc, _tt, ct, _c)
           in entries if file.startswith(str(REPO) + "/") and "/bench/" not in file and "/.venv/" not in file
           and ct < 0.7 * total]
    lines.append("    mlv's own functions under the call chain, top 12 by cumulative time:")
    lines.extend(f"    {nc:>8} {'':>8} {ct:>8.3f}  {where}" for ct, nc, where in own[:12])
    return "\n".join(lines)


def importtime_summary(stderr: str, n: int = 10) -> str:
    """Self time summed by top-level package, and the heaviest imports of one package by another."""
    by_root: dict[str, float] = {}
    total = 0.0
    stack: list[tuple[int, str]] = []  # (indent, module) of the enclosing imports
    crossings: list[tuple[float, str, str]] = []
    for ln in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", ln)
        if not m:
            continue
        self_s, cum_s, indent, name = int(m.group(1)) / 1e6, int(m.group(2)) / 1e6, len(m.group(3)), m.group(4)
        root = name.split(".")[0]
        by_root[root] = by_root.get(root, 0.0) + self_s
        total += self_s
        # importtime prints a module after its children: children have deeper indents and come first
        crossings.append((cum_s, name, ""))
        stack.append((indent, name))
    # find each module's parent: the next line (later in the output) with a smaller indent
    parents: dict[int, str] = {}
    for i, (indent, _name) in enumerate(stack):
        for j in range(i + 1, len(stack)):
            if stack[j][0] < indent:
                parents[i] = stack[j][1]
                break
    heavy = []
    for i, (cum_s, name, _) in enumerate(crossings):
        parent = parents.get(i, "")
        if name.split(".")[0] != parent.split(".")[0]:  # one package importing another (or the top level)
            heavy.append((cum_s, name, parent))
    heavy.sort(reverse=True)
    top = sorted(by_root.items(), key=lambda kv: kv[1], reverse=True)[:n]
    return (f"    all imports: {total * 1e3:.0f} ms (self time summed); by top-level package: "
            + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in top)
            + "\n    heaviest imports of a package, cumulative: "
            + ", ".join(f"{name} {c * 1e3:.0f} ms" + (f" (from {parent})" if parent else "")
                        for c, name, parent in heavy[:n]))


def profile_command(res: Results, name: str, repo: Path, mlv_args: list[str], env: dict, prepare=None) -> None:
    PROF_DIR.mkdir(parents=True, exist_ok=True)
    parts = []
    if prepare:
        prepare()
    code = ("import sys; sys.argv=['mlv', *sys.argv[1:]]; from mlv.cli.main import app\n"
            "try:\n    app(standalone_mode=False)\nexcept SystemExit:\n    pass")
    r = run([PY, "-X", "importtime", "-c", code, *mlv_args], repo, env)
    (PROF_DIR / f"{name}.importtime.txt").write_text(r.stderr)
    parts.append(f"  -X importtime of `mlv {' '.join(mlv_args)}` ({r.seconds:.3f} s wall with importtime on):")
    parts.append(importtime_summary(r.stderr))
    if prepare:
        prepare()
    prof_file = PROF_DIR / f"{name}.prof"
    r = run([PY, "-c", _PROFILE_DRIVER, prof_file, *mlv_args], repo, env)
    if r.rc != 0 or not prof_file.exists():
        parts.append(f"  cProfile failed: {r.stderr[-500:]}")
    else:
        parts.append(f"  cProfile of `mlv {' '.join(mlv_args)}` ({r.seconds:.3f} s wall under the profiler), "
                     f"top 15 by cumulative time (main thread; file {prof_file}):")
        parts.append(cprofile_top(prof_file))
    res.profiles[name] = "\n".join(parts)


def profile_misses(res: Results, workdir: Path, force: bool) -> None:
    table = rows(res)
    missed = {r["key"] for r in table if r["met"] is False or (force and r["key"])}
    menv = mlv_env()
    if missed & {"noop_s", "noop_vs_dvc"} and "noop_repo" in res.info:
        log("profiling the no-op run (a)")
        profile_command(res, "a-noop-run-50", Path(res.info["noop_repo"]), ["run"], menv)
    if "par_eff" in missed and "par_repo" in res.info:
        log("profiling the parallel run (b)")
        profile_command(res, "b-parallel-8", Path(res.info["par_repo"]), ["run", "--force"], menv)
    if "first_overhead" in missed:
        log("profiling the first run (d)")
        repo = workdir / "first3-profile"

        def prepare() -> None:
            shutil.rmtree(repo, ignore_errors=True)
            repo.mkdir(parents=True)
            git_init(repo)
            run([MLV, "init"], repo, menv).check("mlv init (profile)")
            (repo / "mlv.yaml").write_text(stages_yaml(chain_pipeline(FIRST_SLEEP)))
            (repo / "seed.txt").write_text("seed\n")
            (repo / "out").mkdir()
            (repo / "out" / ".keep").write_text("")
            git_commit(repo)

        profile_command(res, "d-first-run-3", repo, ["run"], menv, prepare=prepare)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, no up-to-date sweep: a smoke run")
    ap.add_argument("--no-dvc", action="store_true", help="skip the DVC peer")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    ap.add_argument("--no-profile", action="store_true", help="do not profile mlv where a target is missed")
    ap.add_argument("--profile", action="store_true", help="profile mlv for every target, met or not")
    ap.add_argument("--only", default="", help="run only these sections, e.g. --only ad")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (repos) afterwards")
    ap.add_argument("--wait-idle", type=float, default=300.0, metavar="S",
                    help="before each section, wait up to S seconds for other processes to go quiet (0: don't)")
    args = ap.parse_args(argv)
    if not MLV.exists():
        print(f"no mlv at {MLV}; run this with the project's venv python", file=sys.stderr)
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="pipeline-", dir=WORK))
    log(f"run directory {workdir}")
    try:
        res = bench(args, workdir)
        if not args.no_profile:
            wait_idle(args.wait_idle)
            try:
                profile_misses(res, workdir, args.profile)
            except BenchError as exc:
                res.errors.append(f"(profile) {exc}")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps({"quick": res.quick, "mlv": res.mlv, "dvc": res.dvc, "baseline": res.base, "info": res.info,
                          "targets": TARGETS, "dvc_reference": DVC_REFERENCE, "table": rows(res),
                          "errors": res.errors, "profiles": res.profiles}, indent=2))
    else:
        print(render(res))
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
