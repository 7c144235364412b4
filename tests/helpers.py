"""Shared test helpers: build real file trees, snapshot them, run git and the real `mlv` script.

Imported by tests as ``from helpers import make_tree`` (``tests/`` is on ``sys.path``
because ``tests/conftest.py`` lives there and the test folders are not packages).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlv.storage.store.objects import ObjectStore
from typer.testing import CliRunner, Result

#: The installed console script, next to the interpreter running the tests (there is no
#: ``mlv.__main__``, so ``python -m mlv`` is not an option).
MLV = Path(sys.executable).with_name("mlv")

#: Environment for the S3 server's whole session: fake credentials, and nothing from the
#: developer's own AWS setup (profile, config files, endpoint overrides) leaking in.
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
S3_ENV_REMOVED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                  "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")

#: Environment for git: a fixed identity, and no user/system config leaking in.
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "mlv tests",
    "GIT_AUTHOR_EMAIL": "tests@mlv.invalid",
    "GIT_COMMITTER_NAME": "mlv tests",
    "GIT_COMMITTER_EMAIL": "tests@mlv.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def make_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write ``{relative path: content}`` under ``root`` (parents created); returns ``root``.

    >>> import tempfile
    >>> root = make_tree(Path(tempfile.mkdtemp()), {"raw/a.csv": "x\\n1\\n"})
    >>> (root / "raw/a.csv").read_text()
    'x\\n1\\n'
    """
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
    return root


def snapshot(root: Path) -> dict[str, object]:
    """Every path under ``root`` with its bytes (symlinks by target, directories as ``"<dir>"``).

    ``.mlv/state.db*`` (the stat cache, which may grow) and ``.git/`` (git's own index
    refreshes) are left out; everything else, ``.mlv/cache`` included, is in.
    """
    found: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in dirnames:
            path = Path(dirpath, name)
            found[(rel_dir / name).as_posix()] = ("symlink", os.readlink(path)) if path.is_symlink() else "<dir>"
        for name in filenames:
            rel = (rel_dir / name).as_posix()
            if rel.startswith(".mlv/state.db"):
                continue
            path = Path(dirpath, name)
            found[rel] = ("symlink", os.readlink(path)) if path.is_symlink() else path.read_bytes()
    return found


def age(root: Path, seconds: float = 3600) -> None:
    """Set the mtime of every file under ``root`` ``seconds`` in the past.

    The stat cache deliberately distrusts files modified less than a second before they
    were hashed ("racy" entries), so tests that expect cache hits age their files first.
    """
    when = time.time() - seconds
    paths = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    for path in paths:
        os.utime(path, (when, when))


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"git {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def git_init(repo: Path) -> None:
    git(repo, "init", "-q", "-b", "main", ".")


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def run_mlv(repo: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the real ``mlv`` console script in ``repo`` as a subprocess."""
    return subprocess.run([os.fspath(MLV), *args], cwd=repo, capture_output=True, text=True, timeout=timeout, check=False)


def store_of(repo: Path) -> ObjectStore:
    return ObjectStore.local(repo / ".mlv" / "cache")


def stored_digests(repo: Path) -> set[str]:
    """Every object in the repo's local store, loose or packed, as ``xxh3-128:…`` strings."""
    store = store_of(repo)
    if not (repo / ".mlv" / "cache").is_dir():
        return set()
    return {str(d) for d, _ in store.iter_loose()} | {str(d) for d, _ in store.iter_packed()}


def loose_object(repo: Path, digest: str) -> Path:
    """The file of a loose object (``cache/<2 hex>/<30 hex>``) given ``xxh3-128:<hex>``."""
    hexdigest = digest.partition(":")[2]
    return repo / ".mlv" / "cache" / hexdigest[:2] / hexdigest[2:]


def flip_byte(path: Path, offset: int = 0) -> None:
    """Corrupt one byte of ``path`` in place (cache files may be read-only)."""
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def reset_s3(endpoint: str) -> None:
    """Forget every bucket and object on the moto server at ``endpoint`` (moto never frees memory otherwise)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200, f"moto reset failed: HTTP {response.status}"


class _JumpingClock:
    """The real ``time`` module, except that every look at the monotonic clock is 5 s later
    than the last and sleeping is free: a lock wait of any length ends at once."""

    def __init__(self) -> None:
        self._now = time.monotonic()

    def monotonic(self) -> float:
        self._now += 5.0
        return self._now

    def sleep(self, seconds: float) -> None:
        pass

    def __getattr__(self, name: str):
        return getattr(time, name)


def fast_lock_clock(monkeypatch) -> None:
    """Make the repo lock give up waiting immediately (patches only the workspace module's clock)."""
    import mlv.storage.workspace.repo

    monkeypatch.setattr(mlv.storage.workspace.repo, "time", _JumpingClock())


DASK = Path(sys.executable).with_name("dask")


@contextmanager
def dask_processes(home: Path, workers: dict[str, list[str]], env: dict | None = None) -> Iterator[str]:
    """A real ``dask scheduler`` in ``home`` and one ``dask worker`` per name, each with ``home/<name>`` as its
    cwd and local directory and the extra arguments given; yields the scheduler's address, stops them all after.
    Each process has its own session, so teardown ends a nanny and the worker it spawned together."""
    from distributed import Client

    def start(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
        cwd.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen([os.fspath(DASK), *args], cwd=cwd, stdout=subprocess.DEVNULL, env=env,
                                stderr=open(cwd / f"{args[0]}.log", "wb"), start_new_session=True)

    scheduler_file = home / "scheduler.json"
    procs = [start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", os.fspath(scheduler_file)], home)]
    try:
        deadline = time.monotonic() + 30
        while not (scheduler_file.exists() and scheduler_file.stat().st_size > 0):
            assert time.monotonic() < deadline, "the dask scheduler did not start within 30 s"
            time.sleep(0.05)
        address = json.loads(scheduler_file.read_text())["address"]
        for name, extra in workers.items():
            procs.append(start(["worker", address, "--no-dashboard", "--name", name,
                                "--local-directory", os.fspath(home / name), *extra], home / name, env))
        with Client(address, timeout="10s") as client:
            client.wait_for_workers(len(workers), timeout=30)
        yield address
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class Cli:
    def __init__(self) -> None:
        from mlv.cli.main import (
            app,  # imported here: a broken CLI must not break collection of other tests
        )

        self.app = app
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0) -> Result:
        result = self.runner.invoke(self.app, [str(a) for a in args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            tb = "".join(traceback.format_exception(*result.exc_info))
            pytest.fail(f"`mlv {' '.join(map(str, args))}` raised instead of exiting cleanly:\n{tb}")
        assert result.exit_code == code, (
            f"`mlv {' '.join(map(str, args))}` exited {result.exit_code}, expected {code}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        return result

    def json(self, *args: str, code: int = 0):
        return json.loads(self(*args, "--json", code=code).stdout)

    def states(self, *paths: str) -> dict[str, str]:
        """``{path: state}`` from ``mlv status --json``."""
        return {e["path"]: e["state"] for e in self.json("status", *paths)}
