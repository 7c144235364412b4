"""The ``mlv`` command: typer app, error rendering, and the shared output helpers.

Commands stay thin: parse, call one function in storage/engine/pipelines, render.
Heavy libraries (fsspec, pyarrow, Dask, scikit-learn) are imported inside command
bodies, so ``mlv --help`` starts fast.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any

import typer

from mlv.storage.errors import MlvError

def _keep_argument_help() -> None:
    """Show positional arguments' ``help=`` in ``--help`` again.

    Typer (< 0.26, pinned for start-up time) sets ``help`` on its ``TyperArgument`` and then calls
    click's ``Argument.__init__``, which since click 8.5 takes a ``help`` of its own and resets it to
    None: every argument's help vanished from ``--help``. Setting it again after click's init keeps
    typer's own "Arguments" section; click 8.5's new "Positional arguments" section would repeat it,
    so typer's commands skip that one. On an older click this changes nothing.
    """
    from typer.core import TyperArgument, TyperCommand

    init = TyperArgument.__init__
    if getattr(init, "keeps_help", False):
        return
    TyperCommand.format_arguments = lambda self, ctx, formatter: None  # typer's format_options lists them

    @wraps(init)
    def keep(self, *args: Any, help: str | None = None, **kwargs: Any) -> None:  # noqa: A002  (click's name)
        init(self, *args, help=help, **kwargs)
        self.help = help

    keep.keeps_help = True
    TyperArgument.__init__ = keep


_keep_argument_help()

def _click_suggests() -> bool:
    """Whether click itself says "Did you mean ...?" for an unknown command (8.5+): typer's own would repeat it."""
    import click.exceptions

    return hasattr(click.exceptions, "NoSuchCommand")


_SUGGEST = not _click_suggests()

app = typer.Typer(
    name="mlv",
    help="Version data and models, run pipelines on Dask, and trace every artifact back to raw data.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (typer's own; loaded lazily by typer)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    suggest_commands=_SUGGEST,
)


def group(help: str | None = None) -> typer.Typer:
    """A command group (``mlv remote ...``): shows its help when called bare, suggests like ``app``."""
    return typer.Typer(help=help, no_args_is_help=True, add_completion=False, suggest_commands=_SUGGEST)


def _version(value: bool) -> None:
    if value:
        from mlv import __version__

        print(f"mlv {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print mlv's version and exit."),
) -> None:
    """Version data and models, run pipelines on Dask, and trace every artifact back to raw data."""


class _Stream:
    """Plain line output; rich is loaded only for progress bars, to keep start-up fast."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def file(self):
        return getattr(sys, self.name)

    @property
    def is_terminal(self) -> bool:
        return self.file.isatty()

    def print(self, text: str = "") -> None:
        self.file.write(f"{text}\n")


out = _Stream("stdout")
err = _Stream("stderr")


def command(*args: Any, group: typer.Typer | None = None, **kwargs: Any) -> Callable:
    """``app.command`` (or ``group.command``) that turns an ``MlvError`` into one message and its exit code."""

    def decorate(fn: Callable) -> Callable:
        @wraps(fn)
        def run(*a: Any, **kw: Any) -> Any:
            try:
                return fn(*a, **kw)
            except MlvError as exc:
                err.print(f"error: {exc}")
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                err.print("interrupted")
                raise typer.Exit(130) from None
            except Exception as exc:
                message = environment_error(exc)
                if message is None:
                    raise  # anything else is a bug: it keeps its traceback
                err.print(f"error: {message}")
                raise typer.Exit(1) from None

        return (group or app).command(*args, **kwargs)(run)

    return decorate


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DENIED = {errno.EROFS, errno.EACCES, errno.EPERM}
_ENVIRONMENT = _FULL | _DENIED | {errno.EIO, errno.ENAMETOOLONG, errno.EMFILE, errno.ENFILE}


def environment_error(exc: BaseException) -> str | None:
    """One message for what the machine refused (disk full, read-only, permissions), or None for a bug.

    Every write mlv makes is temp file → fsync → rename, so what was done before the refusal
    is consistent and the same command can simply be run again once the cause is fixed.
    """
    if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT:
        where = f" ('{exc.filename}')" if exc.filename else ""
        if exc.errno in _FULL:
            fix = "free some space (`mlv gc` removes objects nothing references), then run the command again"
        elif exc.errno in _DENIED:
            fix = "make it writable for this user (or point `cache.dir` elsewhere), then run the command again"
        else:
            fix = "fix the cause, then run the command again"
        return f"the filesystem refused a write: {exc.strerror or exc}{where}. Nothing is half-written; {fix}"
    sqlite = sys.modules.get("sqlite3")
    if sqlite is not None and isinstance(exc, sqlite.OperationalError):
        return (f"the state database .mlv/state.db could not be written ({exc}); it is only a cache: free disk "
                "space or fix its permissions (or delete it), then run the command again")
    return None


def workspace():
    """The repo around the working directory (``NotARepoError`` if there is none)."""
    from mlv.storage.workspace import Workspace

    return Workspace.find()


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False) + "\n")


@contextmanager
def progress(total: int, description: str, *, files: int | None = None) -> Iterator[Callable[[int], None] | None]:
    """A byte-progress callback drawing a rich bar on stderr, on a terminal, for jobs worth watching; else None.

    The callback takes bytes as they go (a big file moves the bar chunk by chunk). With ``files``
    (a checkout), each call is one file written, and the bar counts them too: ``120/300 files``."""
    if not err.is_terminal or (total < 32 * 1024 * 1024 and (files or 0) < 1000):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    counted = (TextColumn("{task.fields[done]}/{task.fields[files]} files"),) if files is not None else ()
    with Progress(
        "{task.description}", BarColumn(), DownloadColumn(), *counted, TransferSpeedColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    ) as bar:
        task = bar.add_task(description, total=total, done=0, files=files)
        step, drawn, moved, done = max(total // 50, 1), 0, 0, 0

        def advance(n: int) -> None:
            nonlocal drawn, moved, done
            done += 1
            moved += n
            bar.update(task, advance=n, done=done)
            if moved - drawn >= step:  # drawn at every 2%, however fast the bytes go (else only 10 times a second)
                drawn = moved
                bar.refresh()

        yield advance


# The modules that define commands; each registers its own on ``app`` when imported. The console
# script (``mlv.cli.entry``) imports only the one a command line needs.
COMMAND_MODULES = ("data", "experiments", "pipeline", "remote", "sync", "trace", "label", "score", "monitor", "serve",
                   "config", "plots", "importdvc")


def load_commands(modules: tuple[str, ...] | None = None) -> None:
    """Register the commands of ``modules`` (every command module when None) on ``app``."""
    import importlib

    for name in COMMAND_MODULES if modules is None else modules:
        importlib.import_module(f"mlv.cli.{name}")


if getattr(sys.modules["mlv.cli"], "load_all_commands", True):
    load_commands()
