"""Fixtures shared by the whole suite: the `mlv` CLI driven in-process, and fresh repos.

``cli(...)`` runs ``mlv.cli.main:app`` through ``typer.testing.CliRunner`` in the current
directory and checks the exit code. Whatever the code, an exception other than the
CLI's own exit is a bug (users must see one message, never a traceback), so it fails
the test with its traceback.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path

import pytest
from helpers import git_init
from typer.testing import CliRunner, Result


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


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> Path:
    """A plain directory (no git) with ``mlv init`` done; the cwd for the test."""
    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.chdir(root)
    cli("init")
    return root


@pytest.fixture
def git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> Path:
    """A git repo with ``mlv init`` done; the cwd for the test."""
    root = tmp_path / "repo"
    root.mkdir()
    git_init(root)
    monkeypatch.chdir(root)
    cli("init")
    return root
