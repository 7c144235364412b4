"""Which Python ran a stage, and what it had installed: the run record's ``environment``.

mlv's own interpreter is not the stage's: a ``cmd`` stage may run ``python`` from another
venv, with pandas and without pyarrow. So the worker finds the interpreter the stage
used — for a ``call`` stage, the one it starts the stage with; for a ``cmd`` stage, the
first ``python``/``python3``/``pythonX.Y`` word of its commands, resolved on the stage's
``PATH`` (a stage that runs no Python has none) — and asks that interpreter itself for
its version and installed distributions. The answer is cached per interpreter (its path,
its binary's mtime, ``PYTHONPATH``) for the worker's life: a run pays one probe per interpreter.

The package list goes into the store as one small JSON object per distinct list; the
record names it by digest (``environment.interpreter.packages``), so ten thousand runs
of one venv cost one object.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading

_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
_PROBE = (
    "import json, sys\n"
    "from importlib import metadata\n"
    "names = sorted({f\"{d.metadata['Name']}=={d.version}\" for d in metadata.distributions() if d.metadata['Name']})\n"
    "print(json.dumps({'executable': sys.executable, 'version': sys.version.split()[0], 'packages': names}))\n"
)
_cache: dict = {}  # (path, its binary's mtime, PYTHONPATH, VIRTUAL_ENV) -> what the interpreter said, or None
_lock = threading.Lock()


def used_by(cmd: tuple[str, ...] | None, env: dict) -> str | None:
    """The interpreter a stage runs: ``sys.executable`` for a ``call`` (``cmd`` None), else the first Python
    word of its commands found on ``env``'s ``PATH``; None when it runs no Python."""
    if cmd is None:
        return sys.executable
    for command in cmd:
        try:
            words = shlex.split(command)
        except ValueError:
            words = command.split()
        for word in words:
            if _PYTHON.match(os.path.basename(word)):
                return shutil.which(word, path=env.get("PATH")) if "/" not in word else word
    return None


def describe(executable: str | None, env: dict, cwd: str) -> dict | None:
    """``{"path", "version", "packages": [...]}`` of ``executable``, asked of itself (None if it can't say)."""
    if executable is None:
        return None
    real = os.path.realpath(executable)
    try:
        stamp = os.stat(real).st_mtime_ns
    except OSError:
        return None
    # the path as invoked, not the real one: a venv's python is a symlink to the same binary as its base's,
    # and what it has installed depends on where the link is (pyvenv.cfg beside it)
    key = (os.path.abspath(executable), stamp, env.get("PYTHONPATH"), env.get("VIRTUAL_ENV"))
    with _lock:
        found = _cache.get(key, _cache)
    if found is _cache:
        try:
            proc = subprocess.run([executable, "-c", _PROBE], env=env, cwd=cwd, capture_output=True, timeout=60,
                                  stdin=subprocess.DEVNULL)
            found = json.loads(proc.stdout) if proc.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, ValueError):
            found = None
        with _lock:
            _cache[key] = found
    if found is None:
        return None
    return {"path": executable, "version": found["version"], "packages": found["packages"]}  # the path as invoked
