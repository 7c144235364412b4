"""The ``mlv`` console script: load only the command the user typed, then run the app.

Building every command (importing its module, and typer turning each signature into click
parameters) costs more than the interpreter's own start-up, and ``mlv status`` needs one
of them. So the script looks at the first word of the command line and imports just the
module that defines it; anything else (``--help``, an unknown word, shell completion)
loads them all, so help, suggestions and completion still see every command.
``mlv.cli.main`` imported any other way (tests, ``python -m``) has every command, as before.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

COMPLETE_ENV = "_MLV_COMPLETE"  # click's completion variable for the `mlv` program

# first word -> the modules that register it (tests/cli/test_cli_entry.py checks this against the full app)
MODULES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("init", "add", "status", "checkout", "fsck", "gc"), ("data",)),
    **dict.fromkeys(("run", "dag", "show"), ("pipeline",)),
    **dict.fromkeys(("push", "fetch", "pull"), ("sync",)),
    **dict.fromkeys(("trace", "log", "params"), ("trace",)),
    "metrics": ("trace", "experiments"),
    "exp": ("experiments",),
    "remote": ("remote",),
    "label": ("label",),
    "score": ("score",),
    "serve": ("serve",),
    "monitor": ("monitor",),
    "plots": ("plots",),
    "config": ("config",),
    "import-dvc": ("importdvc",),
}
# commands that only move bytes: their manifests need pyarrow but never NumPy (mlv.storage.store.arrowlib)
BYTES_ONLY = frozenset({"init", "add", "status", "checkout", "fsck", "gc", "push", "fetch", "pull"})


def modules_for(argv: list[str], environ: Mapping[str, str] = os.environ) -> tuple[str, ...] | None:
    """The command modules ``argv`` needs: ``()`` for ``--version``, None for all of them."""
    if COMPLETE_ENV in environ:  # shell completion (typer's script sets it) asks for every command
        return None
    args = argv[1:]
    if args[:1] == ["--version"]:
        return ()
    if not args or args[0].startswith("-"):  # top-level help, completion scripts
        return None
    return MODULES.get(args[0])


def main() -> None:
    import mlv.cli

    mlv.cli.load_all_commands = False
    from mlv.cli.main import app, load_commands

    if sys.argv[1:2] and sys.argv[1] in BYTES_ONLY:
        from mlv.storage.store import arrowlib

        arrowlib.without_numpy()
    load_commands(modules_for(sys.argv))
    app()
