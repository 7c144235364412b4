"""Benchmark of mlv's remotes (``mlv push`` / ``mlv pull``) against DVC and boto3, on S3 over loopback.

Run from the repo root with the project's venv::

    .venv/bin/python bench/bench_remote.py [--files 20000] [--big-mb 1024] [--only small|big]
                                           [--skip-mlv] [--skip-dvc] [--floor-files 2000] [--json] [--keep]

The server is moto's S3 (``python -m moto.server``) in its own process on a free port of
127.0.0.1, started fresh for each tool in each scenario (moto never frees memory) and killed
after it. Know the server: about 3 ms of CPU per request, so ~175-200 requests/s on a
2-core machine shared with the client, and a ranged GET costs time in proportion to the
whole object's size (moto slices the object it has read). Each step's server CPU and its
requests (counted from the server's log, by method) are shown beside the client's figures.

Everything lives under ``bench/.work/remote/`` (gitignored), wiped at the start and removed
at the end unless ``--keep``. Each scenario's data are generated once and hardlinked into
every repo. Repos are real git repos (``git init``, ``mlv init`` / ``dvc init``, the data
added, the remote configured, one commit); a fresh clone is ``git clone`` of that repo,
without the cache, as another machine would have it.

(a) ``--files`` random files of 1-20 KB (~10 KB, ~200 MB for 20,000) in one directory
    ``data/``: ``add data``, then timed: ``push``; a no-op ``push`` (median of 3); ``pull``
    into a fresh clone. Targets: mlv push and pull >= 10x faster than DVC; no-op push < 0.5 s.
    Floor (info): boto3 ``put_object`` / ``get_object`` of each file on 10 threads, timed on
    the first ``--floor-files`` files and scaled to all of them: what a tool that stores one
    object per file pays on this server at best.
(b) one ``--big-mb`` MiB random file: ``add big.bin``, then timed ``push``, and ``pull`` into a
    fresh clone (report only). Floor: boto3's own ``client.upload_file`` with its default
    TransferConfig (multipart, 10 threads), and for the pull one streamed ``get_object``
    (``download_file``'s ranged GETs would measure moto's slicing, not the network). Target:
    mlv push at >= 0.8x boto3's speed (mlv's time <= boto3's transfer time / 0.8).

Times are wall seconds of the whole command (interpreter start-up included); the boto3
floors time the transfer alone (client set-up and imports apart), which is the stricter
comparison. mlv runs from the working tree with its byte-code cached under
``bench/.work/pycache`` (``common.mlv_env()``); the source state is recorded at the start
and a change during the run is flagged. Each tool's commands run once, untimed, in a
scratch repo first (byte-code, imports). Credentials are dummies in the environment
(``AWS_ACCESS_KEY_ID`` …, region ``us-east-1``); ``~/.aws`` is hidden from every client.

DVC (unless ``--skip-dvc``) runs in the throwaway venv at ``bench/.work/dvc-venv`` with the
``dvc-s3`` plugin (installed there on first use), remote ``s3://dvc-bench/…`` with
``endpointurl`` set. Both tools run with their default concurrency (mlv: 4 per CPU, at
least 8; DVC: 4 per CPU). DVC keeps state outside the repo (hash cache, link records, an
index of what each remote URL holds) under ``/var/tmp/dvc/repo/<hash of the repo's path>``,
and this script reuses the same paths every run; so each DVC repo gets its own
``DVC_SITE_CACHE_DIR`` under the run directory: no run inherits an earlier one's state, and
the fresh clone, like another machine, shares none with its origin. A DVC failure is
reported and the run goes on.

mlv is skipped (the rest still runs) with ``--skip-mlv`` or when ``mlv push --help``,
``mlv pull --help`` or ``mlv remote add --help`` fails.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import common
from common import (
    MLV,
    REPO,
    WORK,
    BenchError,
    Run,
    dvc_env,
    ensure_dvc_s3,
    git_init,
    log,
    median,
    run,
    source_state,
)

RUN_DIR = WORK / "remote"
MiB = 1 << 20
MB = 1e6
SEED = 20240611
MIN_SIZE, MAX_SIZE = 1024, 20 * 1024
NOOP_RUNS = 3
FLOOR_THREADS = 10  # boto3's own default concurrency (TransferConfig.max_concurrency, max_pool_connections)

TARGETS = {
    "small_push": 10.0,  # DVC time / mlv time >= 10
    "small_noop_s": 0.5,  # mlv no-op push < 0.5 s
    "small_pull": 10.0,  # DVC time / mlv time >= 10
    "big_push_vs_boto3": 0.8,  # boto3 transfer time / mlv time >= 0.8
}

# Measured earlier on this machine kind (DVC 3.67.1, moto 5); printed for comparison only.
REFERENCE = {
    "(a) dvc push, 20k files": "116 s",
    "(a) dvc pull into a fresh clone": "99 s",
    "(a) no-op dvc push": "2.7 s",
    "(b) dvc push, 1 GiB": "47 MB/s",
    "(b) boto3 upload_file, 1 GiB": "132 MB/s",
}

# Dummy credentials for moto. The user's ~/.aws (profiles, s3 settings) is hidden from every client by
# an empty file made in the run directory (botocore rejects /dev/null: "config file could not be found").
AWS_EMPTY_CONFIG = RUN_DIR / "aws-config-empty"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": str(AWS_EMPTY_CONFIG),
    "AWS_SHARED_CREDENTIALS_FILE": str(AWS_EMPTY_CONFIG),
}
AWS_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION")


def with_aws(env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in env.items() if k not in AWS_UNSET}
    env.update(AWS_ENV)
    return env


# -- the server -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """moto's S3 in its own process on a free loopback port. Its log (one line per request)
    and its /proc entry give each step's request count and server CPU."""

    REQUEST = re.compile(rb'"(GET|PUT|POST|HEAD|DELETE) ')

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.url = ""
        self.proc: subprocess.Popen | None = None
        self.peak_rss_mb: float | None = None

    def __enter__(self) -> Self:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=with_aws(dict(os.environ)),
            )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"moto server exited {self.proc.returncode} while starting; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as r:
                    r.read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise BenchError(f"moto server on {self.url} did not answer within 60 s; see {self.log_path}")
                time.sleep(0.1)
        log(f"moto server up on {self.url} (pid {self.proc.pid})")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.peak_rss_mb = self._status_kb("VmHWM")
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def _status_kb(self, key: str) -> float | None:
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
        return int(m.group(1)) / 1024 if m else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def mark(self) -> tuple[float, int]:
        """The server's CPU seconds so far and its log's length, to measure a step against."""
        cpu = 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
        return cpu, self.log_path.stat().st_size

    def since(self, mark: tuple[float, int]) -> dict:
        cpu, offset = self.mark()
        with open(self.log_path, "rb") as f:
            f.seek(mark[1])
            text = f.read(offset - mark[1])
        counts: dict[str, int] = {}
        for m in self.REQUEST.finditer(text):
            counts[m.group(1).decode()] = counts.get(m.group(1).decode(), 0) + 1
        return {"server_cpu_s": cpu - mark[0], "requests": counts}

    def make_bucket(self, name: str) -> None:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket=name)


def timed(argv: list, cwd: Path, env: dict, server: MotoServer, what: str) -> dict:
    """Run one step against ``server``: the command's figures and the server's for the same span."""
    os.sync()  # write back earlier steps' dirty pages now, not during the timing
    mark = server.mark()
    r = run(argv, cwd, env)
    step = {"s": r.seconds, "cpu_s": r.cpu_s, "rss_mb": r.maxrss_mb, **server.since(mark)}
    if not server.alive():
        raise BenchError(f"{what}: the moto server died (see {server.log_path})\n{r.stderr[-2000:]}")
    r.check(what)
    step["stdout"] = r.stdout.strip()[-2000:]
    return step


# -- data -------------------------------------------------------------------------------
def write_small(dest: Path, n_files: int) -> int:
    """``n_files`` random files of 1-20 KB directly in ``dest``; returns their total bytes."""
    rng = random.Random(SEED)
    dest.mkdir(parents=True)
    total = 0
    for i in range(n_files):
        data = rng.randbytes(rng.randint(MIN_SIZE, MAX_SIZE))
        (dest / f"f{i:06d}.bin").write_bytes(data)
        total += len(data)
    return total


def write_big(path: Path, size: int) -> None:
    """``size`` random bytes, 64 MiB of os.urandom at a time (nothing repeats, nothing compresses)."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 64 * MiB)
            f.write(os.urandom(n))
            left -= n


def place(src: Path, dest: Path) -> None:
    """``dest`` as hardlinks to ``src`` (a file or a flat directory): the same data, not rewritten.
    Safe: the tools only read what they add, and pulls write new files."""
    if src.is_dir():
        subprocess.run(["cp", "-al", str(src), str(dest)], check=True)
    else:
        os.link(src, dest)


def differs(want: Path, got: Path) -> str | None:
    """Why ``got`` is not a byte-for-byte copy of ``want`` (a file or a flat directory), or None."""
    if want.is_file():
        if not got.is_file():
            return f"{got} is missing"
        return None if filecmp.cmp(want, got, shallow=False) else f"{got} differs from {want}"
    names = sorted(os.listdir(want))
    have = sorted(os.listdir(got)) if got.is_dir() else []
    if names != have:
        return f"{got} holds {len(have)} files, {len(names)} expected"
    bad = [n for n in names if not filecmp.cmp(want / n, got / n, shallow=False)]
    return f"{len(bad)} of {len(names)} files in {got} differ, e.g. {bad[0]}" if bad else None


# -- the tools --------------------------------------------------------------------------
@dataclass
class Tool:
    """mlv or DVC: how to make a repo with a remote, and its results."""

    name: str
    exe: Path
    out: dict
    primed: bool = False

    def env(self, repo: Path) -> dict[str, str]:
        if self.name == "mlv":
            return with_aws(common.mlv_env())
        env = with_aws(dvc_env())
        env["DVC_SITE_CACHE_DIR"] = str(repo.parent / "dvc-site" / repo.name)
        return env

    def verb(self, verb: str) -> list:
        return [self.exe, verb, "--json"] if self.name == "mlv" else [self.exe, verb]

    def make_repo(self, repo: Path, data: Path, remote: str, server: MotoServer) -> Run:
        """A git repo with ``data`` added and ``remote`` the default remote, committed; returns the add."""
        env = self.env(repo)
        repo.mkdir()
        git_init(repo)
        if self.name == "mlv":
            run([self.exe, "init"], repo, env).check("mlv init")
        else:
            run([self.exe, "init", "-q"], repo, env).check("dvc init")
            run([self.exe, "config", "core.analytics", "false"], repo, env).check("dvc config")
            run([self.exe, "config", "core.autostage", "false"], repo, env).check("dvc config")
        place(data, repo / data.name)
        add = run([self.exe, "add", data.name], repo, env).check(f"{self.name} add {data.name}")
        if self.name == "mlv":
            run([self.exe, "remote", "add", "bench", remote, "--endpoint-url", server.url], repo, env).check(
                "mlv remote add"
            )
        else:
            run([self.exe, "remote", "add", "-d", "bench", remote], repo, env).check("dvc remote add")
            run([self.exe, "remote", "modify", "bench", "endpointurl", server.url], repo, env).check(
                "dvc remote modify"
            )
        run(["git", "add", "-A"], repo).check("git add")
        run(["git", "commit", "-q", "-m", "data"], repo).check("git commit")
        return add

    def prime(self, workdir: Path, server: MotoServer) -> None:
        """Push and pull a few small files once, untimed: byte-code and imports exist before timing."""
        if self.primed:
            return
        bucket = f"{self.name}-prime"
        server.make_bucket(bucket)
        scratch = workdir / f"prime-{self.name}"
        scratch.mkdir()
        (scratch / "seed").mkdir()
        for i in range(5):
            (scratch / "seed" / f"{i}.bin").write_bytes(os.urandom(1000 + i))
        repo, clone = scratch / "repo", scratch / "clone"
        try:
            self.make_repo(repo, scratch / "seed", f"s3://{bucket}/prime", server)
            run(self.verb("push"), repo, self.env(repo)).check(f"priming: {self.name} push")
            run(["git", "clone", "-q", str(repo), str(clone)], scratch).check("git clone")
            run(self.verb("pull"), clone, self.env(clone)).check(f"priming: {self.name} pull")
        finally:
            shutil.rmtree(scratch)
        self.primed = True


def push_pull(tool: Tool, key: str, data: Path, server: MotoServer, workdir: Path, noop: bool) -> None:
    """Scenario ``key`` for one tool: add, timed push, (no-op pushes), timed pull into a fresh clone."""
    tool.prime(workdir, server)
    bucket = f"{tool.name}-bench"
    server.make_bucket(bucket)
    repo, clone = workdir / f"{key}-{tool.name}", workdir / f"{key}-{tool.name}-clone"
    add = tool.make_repo(repo, data, f"s3://{bucket}/{key}", server)
    tool.out[f"{key}_add_s"] = add.seconds
    log(f"({key}) {tool.name} add {data.name}: {add.seconds:.2f} s (untimed set-up)")

    step = timed(tool.verb("push"), repo, tool.env(repo), server, f"({key}) {tool.name} push")
    tool.out[f"{key}_push"] = step
    log(f"({key}) {tool.name} push: {step['s']:.2f} s, {requests(step)}, server CPU {step['server_cpu_s']:.1f} s")
    if not step["requests"].get("PUT") and not step["requests"].get("POST"):
        raise BenchError(f"({key}) {tool.name} push sent no PUT or POST to the server: {requests(step)}")

    if noop:
        steps = [
            timed(tool.verb("push"), repo, tool.env(repo), server, f"({key}) no-op {tool.name} push")
            for _ in range(NOOP_RUNS)
        ]
        tool.out[f"{key}_noop"] = {"s": median([s["s"] for s in steps]), "runs": steps}
        times = ", ".join(f"{s['s']:.3f}" for s in steps)
        log(f"({key}) no-op {tool.name} push: {times} s; {requests(steps[-1])}")
        wrote = [requests(s) for s in steps if s["requests"].get("PUT") or s["requests"].get("POST")]
        if wrote:
            tool.out.setdefault("anomalies", []).append(f"({key}) a no-op {tool.name} push wrote: {wrote[0]}")

    run(["git", "clone", "-q", str(repo), str(clone)], workdir).check("git clone")
    step = timed(tool.verb("pull"), clone, tool.env(clone), server, f"({key}) {tool.name} pull")
    tool.out[f"{key}_pull"] = step
    log(f"({key}) {tool.name} pull: {step['s']:.2f} s, {requests(step)}, server CPU {step['server_cpu_s']:.1f} s")
    why = differs(data, clone / data.name)
    if why:
        raise BenchError(f"({key}) {tool.name} pull into a fresh clone did not restore the data: {why}")
    shutil.rmtree(repo)
    shutil.rmtree(clone)


def requests(step: dict) -> str:
    r = step.get("requests") or {}
    return f"{sum(r.values())} requests ({', '.join(f'{n} {m}' for m, n in sorted(r.items())) or 'none'})"


# -- the boto3 floor --------------------------------------------------------------------
# Run as a child process so the floor pays no part of this process's state; prints JSON with
# set-up (imports, client) and transfer time apart.
BOTO3_CHILD = r"""
import json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
t0 = time.perf_counter()
import boto3
mode, endpoint, bucket, key, path = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=endpoint)
setup = time.perf_counter() - t0
t1 = time.perf_counter()
if mode == "upload":
    s3.upload_file(path, bucket, key)
elif mode == "download":
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with open(path, "wb") as f:
        for chunk in body.iter_chunks(1 << 20):
            f.write(chunk)
else:
    src, names, threads = sys.argv[5], sorted(os.listdir(sys.argv[5]))[: int(sys.argv[6])], int(sys.argv[7])
    if mode == "put-files":
        def one(name):
            with open(os.path.join(src, name), "rb") as f:
                s3.put_object(Bucket=bucket, Key=f"{key}/{name}", Body=f.read())
    else:
        dest = sys.argv[8]
        os.makedirs(dest)
        def one(name):
            data = s3.get_object(Bucket=bucket, Key=f"{key}/{name}")["Body"].read()
            with open(os.path.join(dest, name), "wb") as f:
                f.write(data)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, names))
print(json.dumps({"setup_s": setup, "transfer_s": time.perf_counter() - t1}))
"""


def boto3_step(args: list, server: MotoServer, workdir: Path, what: str) -> dict:
    step = timed(
        [sys.executable, "-c", BOTO3_CHILD, args[0], server.url, *args[1:]],
        workdir,
        with_aws(dict(os.environ)),
        server,
        what,
    )
    step.update(json.loads(step.pop("stdout").splitlines()[-1]))
    return step


def floor_small(res: Results, data: Path, workdir: Path) -> None:
    n = min(res.n_files, res.floor_files)
    with MotoServer(workdir / "moto-a-boto3.log") as server:
        server.make_bucket("boto3-bench")
        put = boto3_step(
            ["put-files", "boto3-bench", "a", data, n, FLOOR_THREADS], server, workdir, "(a) boto3 put_object"
        )
        dest = workdir / "a-boto3-get"
        get = boto3_step(
            ["get-files", "boto3-bench", "a", data, n, FLOOR_THREADS, dest], server, workdir, "(a) boto3 get_object"
        )
        names = sorted(os.listdir(data))[:n]
        bad = [x for x in names if not filecmp.cmp(data / x, dest / x, shallow=False)]
        if bad:
            res.errors.append(f"(a) boto3 floor: {len(bad)} downloaded files differ, e.g. {bad[0]}")
        shutil.rmtree(dest)
    scale = res.n_files / n
    for name, step in (("small_push", put), ("small_pull", get)):
        step.update(sample=n, est_s=step["transfer_s"] * scale)
        res.boto3[name] = step
        log(
            f"(a) boto3 {name[6:]} floor: {n} files in {step['transfer_s']:.2f} s ({n / step['transfer_s']:.0f}/s), "
            f"est. {step['est_s']:.1f} s for {res.n_files}; server CPU {step['server_cpu_s']:.1f} s"
        )
    res.info["server_rss_mb"]["a-boto3"] = server.peak_rss_mb


def floor_big(res: Results, big: Path, workdir: Path) -> None:
    with MotoServer(workdir / "moto-b-boto3.log") as server:
        server.make_bucket("boto3-bench")
        up = boto3_step(["upload", "boto3-bench", "big.bin", big], server, workdir, "(b) boto3 upload_file")
        copy = workdir / "b-boto3-get.bin"
        down = boto3_step(["download", "boto3-bench", "big.bin", copy], server, workdir, "(b) boto3 get_object")
        why = differs(big, copy)
        if why:
            res.errors.append(f"(b) boto3 floor: the downloaded copy differs: {why}")
        copy.unlink()
    res.boto3.update(big_push=up, big_pull=down)
    res.info["server_rss_mb"]["b-boto3"] = server.peak_rss_mb
    for name, s in (("upload_file", up), ("get_object", down)):
        log(
            f"(b) boto3 {name}: {s['transfer_s']:.2f} s ({res.big_bytes / MB / s['transfer_s']:.0f} MB/s), "
            f"{requests(s)}, server CPU {s['server_cpu_s']:.1f} s"
        )


# -- the benchmark ----------------------------------------------------------------------
@dataclass
class Results:
    n_files: int
    floor_files: int
    big_bytes: int
    small_bytes: int = 0
    big_ran: bool = False
    mlv: dict = field(default_factory=dict)
    dvc: dict = field(default_factory=dict)
    boto3: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def mlv_missing() -> str | None:
    """Why mlv's remote commands can't run (they are being written), or None."""
    for argv in (["push", "--help"], ["pull", "--help"], ["remote", "add", "--help"]):
        r = run([MLV, *argv], REPO, common.mlv_env())
        if r.rc != 0:
            return f"`mlv {' '.join(argv)}` exited {r.rc}: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    return None


def scenario(res: Results, key: str, data: Path, tools: list[Tool], workdir: Path) -> None:
    for tool in tools:
        try:
            with MotoServer(workdir / f"moto-{key}-{tool.name}.log") as server:
                try:
                    push_pull(tool, key, data, server, workdir, noop=key == "small")
                finally:
                    for p in workdir.glob(f"{key}-{tool.name}*"):
                        shutil.rmtree(p, ignore_errors=True)
            res.info["server_rss_mb"][f"{key}-{tool.name}"] = server.peak_rss_mb
        except (BenchError, OSError, subprocess.CalledProcessError) as exc:
            res.errors.append(str(exc))
            log(f"({key}) {tool.name} FAILED: {str(exc).splitlines()[0]} (details at the end; going on)")


def bench(args: argparse.Namespace) -> Results:
    res = Results(n_files=args.files, floor_files=args.floor_files, big_bytes=args.big_mb * MiB)
    res.info.update(
        python=platform.python_version(),
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        mlv_source=source_state(),
        loadavg_start=os.getloadavg(),
        server_rss_mb={},
    )
    from importlib.metadata import version

    res.info["moto"] = version("moto")
    res.info["boto3"] = version("boto3")
    tools: list[Tool] = []
    if args.skip_mlv:
        res.notes.append("mlv skipped (--skip-mlv)")
    elif why := mlv_missing():
        res.notes.append(f"mlv skipped: {why}")
        log(f"mlv skipped: {why}")
    else:
        tools.append(Tool("mlv", MLV, res.mlv))
    if args.skip_dvc:
        res.notes.append("DVC skipped (--skip-dvc)")
    else:
        try:
            dvc = ensure_dvc_s3()
            v = run([dvc, "--version"], REPO, dvc_env()).check("dvc --version")
            res.info["dvc_version"] = v.stdout.strip()
            tools.append(Tool("dvc", dvc, res.dvc))
        except (BenchError, subprocess.CalledProcessError, OSError) as exc:
            res.errors.append(f"DVC unavailable, skipped: {exc}")
            log(f"DVC unavailable, skipped: {exc}")

    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir(parents=True)
    AWS_EMPTY_CONFIG.touch()
    log(f"run directory {RUN_DIR}")
    try:
        if args.only in (None, "small"):
            data = RUN_DIR / "master-a" / "data"
            log(f"(a) writing {args.files:,} files of 1-20 KB")
            res.small_bytes = write_small(data, args.files)
            os.sync()
            scenario(res, "small", data, tools, RUN_DIR)
            try:
                floor_small(res, data, RUN_DIR)
            except (BenchError, OSError, ValueError) as exc:
                res.errors.append(str(exc))
            shutil.rmtree(data.parent)
        if args.only in (None, "big"):
            big = RUN_DIR / "master-b" / "big.bin"
            big.parent.mkdir()
            log(f"(b) writing a {args.big_mb} MiB file")
            write_big(big, res.big_bytes)
            res.big_ran = True
            os.sync()
            try:
                floor_big(res, big, RUN_DIR)
            except (BenchError, OSError, ValueError) as exc:
                res.errors.append(str(exc))
            scenario(res, "big", big, tools, RUN_DIR)
            big.unlink()
    finally:
        if args.keep:
            log(f"kept {RUN_DIR}")
        else:
            shutil.rmtree(RUN_DIR, ignore_errors=True)
    for tool in tools:
        res.errors += tool.out.pop("anomalies", [])
    res.info["loadavg_end"] = os.getloadavg()
    end = source_state()
    if end["sources"] != res.info["mlv_source"]["sources"] and any(t.name == "mlv" for t in tools):
        res.errors.append(
            f"mlv's sources changed during the run ({res.info['mlv_source']['sources']} -> "
            f"{end['sources']}): the figures mix versions; rerun"
        )
    return res


# -- report -----------------------------------------------------------------------------
def rows(res: Results) -> list[dict]:
    """The summary table: one row per measure, with ratios to DVC and to the boto3 floor."""
    m, d, b = res.mlv, res.dvc, res.boto3

    def speed(step: dict | None, n: int, nbytes: int) -> str:
        if not step:
            return "-"
        objs = f"{n / step['s']:,.0f} obj/s, " if n > 1 else ""
        return f"{step['s']:.2f} s ({objs}{nbytes / MB / step['s']:.0f} MB/s)"

    def row(measure: str, key: str, n: int, nbytes: int, floor_label: str, target: str) -> dict:
        mine, peer, floor = m.get(key), d.get(key), b.get(key)
        ratio = peer["s"] / mine["s"] if mine and peer else None
        fl = floor.get("est_s", floor["transfer_s"]) if floor else None
        vs_floor = fl / mine["s"] if fl and mine else None
        return {
            "measure": measure,
            "mlv": speed(mine, n, nbytes),
            "dvc": speed(peer, n, nbytes),
            "vs_dvc": faster(ratio),
            "floor": f"{floor_label} {fl:.2f} s ({nbytes / MB / fl:.0f} MB/s)" if fl else "-",
            "vs_floor": f"{vs_floor:.2f}x floor's speed" if vs_floor else "-",
            "target": target,
            "ratio": ratio,
            "speed_vs_floor": vs_floor,
            "met": None,
        }

    out = []
    if any("small_push" in x for x in (m, d, b)):
        n, nb = res.n_files, res.small_bytes
        per_file = "boto3 per-file" + (" (est.)" if res.floor_files < res.n_files else "")
        push = row(
            f"(a) push {n:,} files",
            "small_push",
            n,
            nb,
            f"{per_file} PUT",
            f">= {TARGETS['small_push']:g}x faster than DVC",
        )
        push["met"] = None if push["ratio"] is None else push["ratio"] >= TARGETS["small_push"]
        mn, dn = m.get("small_noop"), d.get("small_noop")
        noop = {
            "measure": f"(a) no-op push (median of {NOOP_RUNS})",
            "mlv": f"{mn['s']:.3f} s" if mn else "-",
            "dvc": f"{dn['s']:.3f} s" if dn else "-",
            "vs_dvc": faster(dn["s"] / mn["s"] if mn and dn else None),
            "floor": "-",
            "vs_floor": "-",
            "target": f"< {TARGETS['small_noop_s']:g} s",
            "ratio": dn["s"] / mn["s"] if mn and dn else None,
            "speed_vs_floor": None,
            "met": None if not mn else mn["s"] < TARGETS["small_noop_s"],
        }
        pull = row(
            "(a) pull into a fresh clone",
            "small_pull",
            n,
            nb,
            f"{per_file} GET",
            f">= {TARGETS['small_pull']:g}x faster than DVC",
        )
        pull["met"] = None if pull["ratio"] is None else pull["ratio"] >= TARGETS["small_pull"]
        out += [push, noop, pull]
    if any("big_push" in x for x in (m, d, b)):
        gib = res.big_bytes / (1 << 30)
        size = f"{gib:g} GiB" if gib >= 1 else f"{res.big_bytes / MiB:g} MiB"
        push = row(
            f"(b) push one {size} file",
            "big_push",
            1,
            res.big_bytes,
            "boto3 upload_file",
            f">= {TARGETS['big_push_vs_boto3']:g}x boto3's speed",
        )
        v = push["speed_vs_floor"]
        push["met"] = None if v is None else v >= TARGETS["big_push_vs_boto3"]
        pull = row(f"(b) pull {size} into a fresh clone", "big_pull", 1, res.big_bytes, "boto3 get_object", "(info)")
        out += [push, pull]
    return out


def faster(ratio: float | None) -> str:
    """``peer time / mlv time`` in words."""
    if not ratio:
        return "-"
    return f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"


def step_line(label: str, step: dict | None) -> str | None:
    if not step:
        return None
    cpu = f", CPU {step['cpu_s']:.2f} s" if step.get("cpu_s") is not None else ""
    rss = f", peak RSS {step['rss_mb']:.0f} MB" if step.get("rss_mb") else ""
    extra = ""
    if "transfer_s" in step:
        extra = f" (transfer {step['transfer_s']:.2f} s, set-up {step['setup_s']:.2f} s"
        extra += f", {step['sample']:,} files" if "sample" in step else ""
        extra += ")"
    said = reported(step)
    return (
        f"  {label}: {step['s']:.2f} s{extra}{cpu}{rss}; server CPU {step['server_cpu_s']:.2f} s, {requests(step)}"
        + (f"; it reported {said}" if said else "")
    )


def reported(step: dict) -> str:
    """The scalar counts of a ``--json`` report (mlv's push/pull), if its output is one."""
    try:
        doc = json.loads(step.get("stdout") or "")
    except ValueError:
        return ""
    if not isinstance(doc, dict):
        return ""
    return ", ".join(f"{k} {v:,}" for k, v in doc.items() if isinstance(v, int) and not isinstance(v, bool))


def render(res: Results) -> str:
    table = rows(res)
    head = ("measure", "mlv", "DVC", "mlv vs DVC", "boto3 floor", "mlv vs floor", "target", "met?")
    body = [
        (
            r["measure"],
            r["mlv"],
            r["dvc"],
            r["vs_dvc"],
            r["floor"],
            r["vs_floor"],
            r["target"],
            {True: "yes", False: "NO", None: "-"}[r["met"]],
        )
        for r in table
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells: tuple) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    src = res.info["mlv_source"]
    ran = [f"(a) {res.n_files:,} files / {res.small_bytes / MB:.0f} MB"] if res.small_bytes else []
    ran += [f"(b) one {res.big_bytes / MiB:g} MiB file"] if res.big_ran else []
    dvc = f"DVC {res.info['dvc_version']} + dvc-s3" if "dvc_version" in res.info else "DVC not run"
    lines = [
        f"mlv remote benchmark: {'; '.join(ran)}. S3 = moto {res.info['moto']} on 127.0.0.1 (own process)",
        f"machine: {res.info['machine']}; python {res.info['python']}; boto3 {res.info['boto3']}; {dvc}",
        "load average (1/5/15 min) before: {} / after: {} -- other work on this {}-CPU machine skews timings".format(
            " ".join(f"{x:.2f}" for x in res.info["loadavg_start"]),
            " ".join(f"{x:.2f}" for x in res.info["loadavg_end"]),
            os.cpu_count(),
        ),
        f"mlv: commit {src['commit']}{' + uncommitted changes' if src['dirty'] else ''} ({src['sources']})",
        "",
        line(head),
        "|-" + "-|-".join("-" * w for w in widths) + "-|",
        *map(line, body),
        "",
        "details: wall [client CPU, user+sys] per command; server CPU and requests over the same span:",
    ]
    for tool, out in (("mlv", res.mlv), ("DVC", res.dvc), ("boto3", res.boto3)):
        for key, label in (
            ("small_push", "(a) push"),
            ("small_pull", "(a) pull"),
            ("big_push", "(b) push"),
            ("big_pull", "(b) pull"),
        ):
            if text := step_line(f"{tool} {label}", out.get(key)):
                lines.append(text)
        if "small_noop" in out:
            lines.append(
                f"  {tool} (a) no-op push runs: "
                + ", ".join(f"{s['s']:.3f}" for s in out["small_noop"]["runs"])
                + f" s; last: {requests(out['small_noop']['runs'][-1])}"
            )
        adds = [f"{k.split('_')[0]} {out[k]:.2f} s" for k in ("small_add_s", "big_add_s") if k in out]
        if adds:
            lines.append(f"  {tool} add (set-up, untimed): {', '.join(adds)}")
    if "big_push" in res.boto3 and "big_push" in res.dvc:
        lines.append(
            f"  DVC (b) push at {res.boto3['big_push']['transfer_s'] / res.dvc['big_push']['s']:.2f}x boto3's speed"
        )
    rss = ", ".join(f"{k} {v:.0f}" for k, v in res.info["server_rss_mb"].items() if v)
    lines.append(f"  moto peak RSS (MB): {rss or '-'}")
    lines.append(
        "  reference (measured earlier on this machine kind): " + "; ".join(f"{k} {v}" for k, v in REFERENCE.items())
    )
    for n in res.notes:
        lines.append(f"  NOTE: {n}")
    for e in res.errors:
        lines.append(f"  ANOMALY: {e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20_000, help="files in (a) (default 20000)")
    ap.add_argument("--big-mb", type=int, default=1024, help="size of (b)'s file in MiB (default 1024)")
    ap.add_argument(
        "--floor-files",
        type=int,
        default=2_000,
        help="files the per-file boto3 floor of (a) really moves; scaled to --files (default 2000)",
    )
    ap.add_argument("--only", choices=("small", "big"), help="run only scenario (a) small or (b) big")
    ap.add_argument("--skip-mlv", action="store_true", help="skip mlv (automatic while `mlv push` doesn't exist)")
    ap.add_argument("--skip-dvc", action="store_true", help="skip the DVC peer")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    ap.add_argument("--keep", action="store_true", help=f"keep {RUN_DIR} (logs, repos) afterwards")
    args = ap.parse_args(argv)
    if not MLV.exists():
        print(f"no mlv at {MLV}; run this with the project's venv python", file=sys.stderr)
        return 2
    res = bench(args)
    if args.json:
        print(
            json.dumps(
                {
                    "n_files": res.n_files,
                    "small_bytes": res.small_bytes,
                    "big_bytes": res.big_bytes,
                    "mlv": res.mlv,
                    "dvc": res.dvc,
                    "boto3": res.boto3,
                    "info": res.info,
                    "targets": TARGETS,
                    "reference": REFERENCE,
                    "table": rows(res),
                    "notes": res.notes,
                    "errors": res.errors,
                },
                indent=2,
            )
        )
    else:
        print(render(res))
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
