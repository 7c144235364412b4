"""Installing mlv never searches: pip resolves `.` and `.[dev]` at once, with pip 23 and with the current pip.

boto3 and aiobotocore (under s3fs) each pin botocore to a narrow range; left free, pip 23 spent over
25 minutes backtracking through their releases. pyproject.toml bounds them together; this test fails
(instead of CI hanging) when a change lets the search back in. It needs the package index, as the
install before it did.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 120  # "under a minute" on a quiet machine; the margin absorbs a slow index, never a search


def _resolve(pip: list[str], target: str) -> float:
    started = time.monotonic()
    try:
        proc = subprocess.run([*pip, "install", "--dry-run", "--ignore-installed", "--quiet", target], cwd=ROOT,
                              capture_output=True, text=True, timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pip took over {LIMIT_S} s to resolve {target}: it is backtracking; bound the pins that "
                    "conflict (see the comment by boto3 in pyproject.toml)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return time.monotonic() - started


@pytest.fixture(scope="module")
def pip23(tmp_path_factory) -> list[str]:
    """A venv with the pip that CPython 3.11 bundles (23.x), as on a fresh machine."""
    venv = tmp_path_factory.mktemp("pip23") / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    version = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, text=True).stdout
    if not version.startswith("pip 23."):
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "pip>=23,<24"], check=True)
    return [str(python), "-m", "pip"]


@pytest.mark.slow
@pytest.mark.parametrize("target", [".", ".[dev]"])
def test_pip_23_resolves_without_searching(pip23, target):
    _resolve(pip23, target)


@pytest.mark.slow
def test_current_pip_resolves_the_dev_install_without_searching():
    _resolve([sys.executable, "-m", "pip"], ".[dev]")
