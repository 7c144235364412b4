"""Fixtures for the pipeline-engine tests: a repo with a multi-stage mlv.yaml, and readers for what a run leaves.

Every stage command of ``PIPELINE`` first appends a line to ``.runs/<stage>`` (outside
any output), so a test can tell "the command ran" from "its outputs were restored".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import xxhash
import yaml

from helpers import MLV, make_tree, snapshot

#: prepare → train → evaluate, plus report on an independent branch.
#: n is interpolated by prepare; train.epochs is interpolated by train (but does not reach its
#: output); eval.threshold is only listed in evaluate's `params:`; report.title is interpolated by report.
PIPELINE = """\
params:
  n: 5
  train: {epochs: 3}
  eval: {threshold: 0.5}
  report: {title: notes}
stages:
  prepare:
    cmd: echo x >> .runs/prepare && mkdir data/prepared && echo n=${params.n} | cat - data/raw/a.csv > data/prepared/a.csv && cp data/raw/b.csv data/prepared/b.csv
    deps: [data/raw]
    outs: [data/prepared]
  train:
    cmd:
      - echo x >> .runs/train
      - echo training for ${params.train.epochs} epochs
      - cat data/prepared/a.csv data/prepared/b.csv src/train.sh > models/model.txt
    deps: [data/prepared, src/train.sh]
    outs: [models/model.txt]
  evaluate:
    cmd: echo x >> .runs/evaluate && wc -l < models/model.txt > metrics/eval.json
    deps: [models/model.txt]
    params: [eval.threshold]
    metrics: [metrics/eval.json]
  report:
    cmd: echo x >> .runs/report && tr a-z A-Z < notes/notes.txt > reports/notes.txt && echo ${params.report.title} >> reports/notes.txt
    deps: [notes/notes.txt]
    outs: [reports/notes.txt]
"""

FILES = {
    "data/raw/a.csv": "1\n2\n",
    "data/raw/b.csv": "x\n",
    "src/train.sh": "# v1\n",
    "notes/notes.txt": "hello\n",
}

STAGES = ["prepare", "train", "evaluate", "report"]
OUTPUTS = ["data/prepared", "models/model.txt", "metrics/eval.json", "reports/notes.txt"]


def write_pipeline(repo: Path, text: str) -> None:
    (repo / "mlv.yaml").write_text(textwrap.dedent(text))


def edit_pipeline(repo: Path, old: str, new: str) -> None:
    text = (repo / "mlv.yaml").read_text()
    assert text.count(old) == 1, f"{old!r} is not in mlv.yaml exactly once"
    (repo / "mlv.yaml").write_text(text.replace(old, new))


def ran(repo: Path) -> dict[str, int]:
    """How many times each stage's command has run (lines in ``.runs/<stage>``)."""
    runs = repo / ".runs"
    if not runs.is_dir():
        return {}
    return {p.name: len(p.read_text().splitlines()) for p in sorted(runs.iterdir())
            if p.is_file() and not p.name.endswith("-started")}


def started(repo: Path) -> list[str]:
    """Stages whose gated command has started (``.runs/<stage>-started`` exists)."""
    return sorted(p.name.removesuffix("-started") for p in (repo / ".runs").glob("*-started"))


def xxh3(data: bytes) -> str:
    """The digest mlv writes for these bytes."""
    return f"xxh3-128:{xxhash.xxh3_128_hexdigest(data)}"


def states(results: list[dict]) -> dict[str, str]:
    """``mlv run --json`` output → ``{stage: state}``."""
    return {r["stage"]: r["state"] for r in results}


def read_lock(repo: Path) -> dict:
    return yaml.safe_load((repo / "mlv.lock").read_text())["stages"]


def record(repo: Path, run_id: str) -> dict:
    return json.loads((repo / ".mlv" / "runs" / f"{run_id}.json").read_text())


def outputs(repo: Path, paths=OUTPUTS) -> dict[str, object]:
    """Bytes of the given outputs (directories file by file)."""
    found: dict[str, object] = {}
    for rel in paths:
        path = repo / rel
        if path.is_dir():
            found.update({p.relative_to(repo).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()})
        else:
            found[rel] = path.read_bytes() if path.exists() else None
    return found


def on_disk(repo: Path) -> dict[str, object]:
    """``helpers.snapshot`` less ``.mlv/run.lock`` (the flock file `mlv run` opens; it holds only a pid)."""
    return {k: v for k, v in snapshot(repo).items() if k != ".mlv/run.lock"}


def wait_for(condition, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def start_mlv(repo: Path, *args: str) -> subprocess.Popen:
    """The real ``mlv`` script in the background (for locks, kills and Ctrl-C)."""
    return subprocess.Popen([os.fspath(MLV), *args], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen) -> None:
    """Make sure a process this test started is gone (no-op when it already exited)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


@pytest.fixture
def pipeline(git_repo: Path) -> Path:
    """A git repo with ``mlv init`` done, ``PIPELINE`` in mlv.yaml and its input files; the cwd."""
    make_tree(git_repo, FILES)
    (git_repo / ".runs").mkdir()
    write_pipeline(git_repo, PIPELINE)
    return git_repo
