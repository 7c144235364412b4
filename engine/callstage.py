"""The child process a ``call:`` stage runs in: ``python callstage.py JOB_JSON``.

A stage gets a process of its own, so its working directory, its streams, the modules it
imports and its globals are its own: two ``call`` stages on one multi-threaded worker
never write into each other's directories or logs, and a stage whose code changed
imports the new version. The worker runs this file by path, as a script, and it imports
nothing from mlv: the user's code finds the repo root first on ``sys.path`` (and the
worker's own packages after it), never this folder.

The job is JSON: ``{"root", "wdir", "call": "pkg.mod:func", "kwargs": {...}}``; the
function is called as ``func(**kwargs)`` — ``deps=[...], outs=[...], params={...}`` for a
``call:`` stage, ``settings={...}, stage={...}`` for a kind. The exit status is the
stage's: 0, the code of a ``SystemExit``, 2 with one line for an exception that names a
kind's setting (``mlv_setting``: a ``SettingError``), or 1 with the traceback printed.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    del sys.path[0]  # this file's folder: its module names must not shadow the user's

import importlib  # noqa: E402  (after the path fix above)
import json  # noqa: E402
import os  # noqa: E402
import traceback  # noqa: E402


def main(argv: list[str]) -> int:
    job = json.loads(argv[1])
    os.chdir(job["wdir"])
    sys.path.insert(0, job["root"])
    module_name, _, qualname = job["call"].partition(":")
    try:
        func = importlib.import_module(module_name)
        for part in qualname.split("."):
            func = getattr(func, part)
        func(**job["kwargs"])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # noqa: BLE001
        if getattr(exc, "mlv_setting", None) is None:
            traceback.print_exc()
            return 1
        print(f"error: '{exc.mlv_setting}': {exc}", file=sys.stderr)  # a kind's setting is wrong: one message
        return 2
    except BaseException:  # noqa: BLE001 - the user's function failed: its traceback is the stage's log
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
