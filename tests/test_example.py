"""The quick-start job: `make demo`'s script runs the example pipeline end to end (label -> features ->
4-model sweep -> select -> package -> score), serves the package, and every prediction — batch and
online — traces back to the raw data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_demo_runs_end_to_end_and_its_package_traces_to_the_raw_data(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "TMPDIR": str(tmp_path),
           "COLUMNS": "200"}
    done = subprocess.run(["bash", str(ROOT / "examples/demo.sh")], env=env, capture_output=True, text=True,
                          timeout=540)
    out = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    first_run = out.split("$ mlv run\n", 1)[1].split("$ ", 1)[0]
    assert "11 done" in first_run  # prepare, label, features, 4 × train, select, package, incoming, score
    selected = out.split("$ cat models/best/selected.yaml\n", 1)[1].split("$ ", 1)[0]
    assert selected.count("- model: models/rf-") == 4 and "metric: roc_auc" in selected
    assert re.search(r"xxh3-128:[0-9a-f]{32} classification", out)  # load_package verified and loaded it
    row = out.split("$ mlv trace predictions/incoming --row 0\n", 1)[1].split("\n$ ", 1)[0]
    assert "added (data/incoming.mlv)" in row and "added (data/raw.mlv)" in row  # its input and the model's data
    online = out.split("$ mlv trace p-", 1)[1].split("\n$ ", 1)[0]  # a prediction the server answered
    assert "models/pkg" in online and "added (data/raw.mlv)" in online
    assert "no drift" in out.split("$ mlv monitor models/pkg", 1)[1]
    # the teammate's clone: everything was pulled, nothing runs, and the package's trace reaches the raw bytes
    clone = out.rsplit("$ mlv run\n", 1)[1]
    assert "11 up-to-date" in clone
    trace = clone.split("$ mlv trace models/pkg\n", 1)[1]
    assert "added (data/raw.mlv)" in trace and "stage select" in trace and trace.count("stage train@") == 4
    assert "stage label" in trace and "labels/human.csv" in trace
