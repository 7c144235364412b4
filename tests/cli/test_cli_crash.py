"""Crash safety: `mlv add` killed with SIGKILL at any moment leaves a repo that fsck passes and add completes.

Write order in add (objects → manifest → stat cache → pointer) is what makes this hold;
this test kills the real console script at several moments of a large add to check it.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time

import pytest
from helpers import MLV, make_tree, run_mlv

SMALL_FILES = 3000
BIG_FILES = 4
KILL_AFTER = [0.05, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9]  # seconds; the script needs ~0.3 s to start


def tree_of(path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def rewrite(repo, rng: random.Random, attempt: int) -> None:
    """New bytes for a slice of the tree, so every attempt has new objects to write."""
    files = {
        f"data/d{i % 30:02d}/f{i:05d}.csv": rng.randbytes(rng.randint(1, 3000))
        for i in range(SMALL_FILES)
        if attempt < 0 or i % len(KILL_AFTER) == attempt
    }
    files.update(
        {f"data/big{j}.bin": rng.randbytes(2 * 1024 * 1024) for j in range(BIG_FILES) if attempt < 0 or j == attempt % BIG_FILES}
    )
    make_tree(repo, files)


@pytest.mark.slow
def test_add_killed_at_any_moment_leaves_a_consistent_repo(tmp_path, monkeypatch, cli):
    repo = tmp_path / "repo"
    repo.mkdir()
    assert run_mlv(repo, "init", "--no-scm").returncode == 0
    monkeypatch.chdir(repo)
    rng = random.Random(20260101)
    rewrite(repo, rng, -1)

    outcomes = []
    for attempt, delay in enumerate(KILL_AFTER):
        rewrite(repo, rng, attempt)
        proc = subprocess.Popen([os.fspath(MLV), "add", "data"], cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=30)
        outcomes.append(proc.returncode)
        assert proc.returncode in (0, -signal.SIGKILL), stderr.decode()
        report = cli.json("fsck")  # exit 0: leftovers of a killed add are not damage
        assert report["ok"], (delay, report["problems"][:3])
        if (repo / "data.mlv").exists():  # a pointer, once written, names only stored data
            cli("status", "data")
    assert outcomes.count(-signal.SIGKILL) >= 2, f"too few adds were killed mid-way: {outcomes}"

    done = run_mlv(repo, "add", "data", "--json")
    assert done.returncode == 0, done.stderr
    assert cli.states() == {"data": "unchanged"}
    cli("fsck")

    expected = tree_of(repo / "data")
    assert len(expected) == SMALL_FILES + BIG_FILES
    shutil.rmtree(repo / "data")
    cli("checkout")
    assert tree_of(repo / "data") == expected

    cli("gc", "--grace", "0")  # leftovers and the half-added versions go; the current one stays
    assert list((repo / ".mlv/cache/tmp").iterdir()) == []
    cli("fsck")
    shutil.rmtree(repo / "data")
    cli("checkout")
    assert tree_of(repo / "data") == expected
