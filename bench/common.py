"""Shared by the bench scripts: paths, logging, the throwaway DVC venv, and mlv's environment.

Run the scripts from the repo root with the project's venv (``.venv/bin/python bench/…``);
Python puts ``bench/`` on ``sys.path``, so they import this module as ``common``.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / ".work"
DVC_VENV = WORK / "dvc-venv"
VENV_BIN = Path(sys.executable).parent
MLV = VENV_BIN / "mlv"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ensure_dvc() -> Path:
    """DVC in a throwaway venv under bench/.work (reused when present): a peer, never a dependency."""
    dvc = DVC_VENV / "bin" / "dvc"
    if dvc.exists():
        return dvc
    log(f"creating the DVC venv at {DVC_VENV} (pip install dvc; a few minutes)")
    DVC_VENV.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", "--clear", str(DVC_VENV)], check=True)
    with open(WORK / "dvc-install.log", "w") as logf:
        subprocess.run(
            [str(DVC_VENV / "bin" / "pip"), "install", "-q", "dvc"], check=True, stdout=logf, stderr=subprocess.STDOUT
        )
    return dvc


def ensure_dvc_s3() -> Path:
    """``ensure_dvc()``, plus the ``dvc-s3`` plugin (S3 remotes) when the venv lacks it.

    DVC stays at the version already installed, so the other benches' figures stay comparable."""
    dvc = ensure_dvc()
    if any(DVC_VENV.glob("lib/python*/site-packages/dvc_s3/__init__.py")):
        return dvc
    pip = str(DVC_VENV / "bin" / "pip")
    version = subprocess.run([str(dvc), "--version"], capture_output=True, text=True, env=dvc_env(), check=True)
    log(f"installing dvc-s3 into {DVC_VENV} (keeping dvc=={version.stdout.strip()}; a few minutes)")
    with open(WORK / "dvc-install.log", "a") as logf:
        subprocess.run(
            [pip, "install", "-q", "dvc-s3", f"dvc=={version.stdout.strip()}"],
            check=True, stdout=logf, stderr=subprocess.STDOUT,
        )
    return dvc


def dvc_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(DVC_NO_ANALYTICS="1", DVC_IGNORE_ISATTY="true", GIT_TERMINAL_PROMPT="0")
    env["PATH"] = f"{DVC_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def mlv_env(*, src: Path | None = None, pyc: bool = True) -> dict[str, str]:
    """mlv's environment. ``src``: a pinned copy of mlv's sources to put first on PYTHONPATH.
    With ``pyc``, byte-code is cached under bench/.work/pycache, as an installed package would
    have it (an editable install under PYTHONDONTWRITEBYTECODE=1 recompiles on every run)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    if pyc:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(WORK / "pycache")
    return env


SOURCE_DIRS = ("mlv", "storage", "cli", "engine", "pipelines")


def source_state() -> dict:
    """The commit, whether mlv's sources differ from it, and a hash of their current bytes."""
    import hashlib

    h = hashlib.sha1()
    for d in SOURCE_DIRS:
        for p in sorted((REPO / d).rglob("*.py")):
            h.update(p.relative_to(REPO).as_posix().encode() + b"\0" + p.read_bytes())

    def git(*a: str) -> str:
        p = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else "?"

    dirty = git("status", "--porcelain", "--", *SOURCE_DIRS, "pyproject.toml")
    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(dirty and dirty != "?"),
            "sources": h.hexdigest()[:12]}


def git_init(path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    for k, v in (("user.email", "bench@example.com"), ("user.name", "bench"), ("commit.gpgsign", "false")):
        subprocess.run(["git", "-C", str(path), "config", k, v], check=True)


# -- running commands -------------------------------------------------------------------
GNU_TIME = "/usr/bin/time"


class BenchError(RuntimeError):
    pass


@dataclass
class Run:
    argv: list[str]
    seconds: float
    rc: int
    maxrss_mb: float | None
    cpu_s: float | None  # user + system CPU of the child
    stdout: str
    stderr: str

    def check(self, what: str) -> Run:
        if self.rc != 0:
            raise BenchError(
                f"{what}: `{' '.join(self.argv)}` exited {self.rc}\n--- stdout\n{self.stdout[-3000:]}\n"
                f"--- stderr\n{self.stderr[-3000:]}"
            )
        return self


_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[1:])\n"
    "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "sys.stderr.write('\\nBENCH_MAXRSS_KB=%d CPU=%f\\n' % (ru.ru_maxrss, ru.ru_utime + ru.ru_stime))\n"
    "sys.exit(rc)\n"
)


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``argv``; wall time and the child's peak RSS (``/usr/bin/time -v`` or getrusage)."""
    argv = [str(a) for a in argv]
    rss_file = None
    if os.access(GNU_TIME, os.X_OK):
        fd, rss_file = tempfile.mkstemp(prefix="bench-time-")
        os.close(fd)
        full = [GNU_TIME, "-v", "-o", rss_file, *argv]
    else:  # a fresh wrapper process, so RUSAGE_CHILDREN covers this command only
        full = [sys.executable, "-c", _RSS_WRAPPER, *argv]
    t0 = time.perf_counter()
    p = subprocess.run(full, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    maxrss = cpu = None
    stderr = p.stderr
    if rss_file is not None:
        text = Path(rss_file).read_text(errors="replace")
        os.unlink(rss_file)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
        maxrss = int(m.group(1)) / 1024 if m else None
        u = re.search(r"User time \(seconds\): ([\d.]+)", text)
        k = re.search(r"System time \(seconds\): ([\d.]+)", text)
        cpu = float(u.group(1)) + float(k.group(1)) if u and k else None
    else:
        m = re.search(r"BENCH_MAXRSS_KB=(\d+) CPU=([\d.]+)", stderr)
        if m:
            maxrss, cpu = int(m.group(1)) / 1024, float(m.group(2))
            stderr = stderr[: m.start()]
    return Run(argv, seconds, p.returncode, maxrss, cpu, p.stdout, stderr)
