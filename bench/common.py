"""Shared by the bench scripts: paths, logging, the throwaway DVC venv, and mlv's environment.

Run the scripts from the repo root with the project's venv (``.venv/bin/python bench/…``);
Python puts ``bench/`` on ``sys.path``, so they import this module as ``common``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
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
