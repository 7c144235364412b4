"""`mlv --version` (DESIGN.md, Command line) and `-h` beside `--help`, everywhere."""

from __future__ import annotations

import subprocess

import pytest
from helpers import MLV

import mlv


def test_version_prints_the_package_version_and_exits_0(cli):
    assert cli("--version").stdout == f"mlv {mlv.__version__}\n"


@pytest.mark.parametrize("args", [["-h"], ["status", "-h"], ["remote", "-h"], ["exp", "show", "-h"]])
def test_h_is_help(cli, args):
    assert cli(*args).stdout.startswith("Usage: mlv")


def test_the_installed_script_answers_version():
    done = subprocess.run([str(MLV), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == f"mlv {mlv.__version__}"
