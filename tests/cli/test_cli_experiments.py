"""Experiments: sweeps record their values, `mlv run --set`, `mlv exp show`, `mlv metrics show` — real runs."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from helpers import make_tree

# train.py writes its metrics from its arguments: acc depends on depth, so runs differ by their params
TRAIN = """\
import json, sys
out, depth, lr = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
json.dump({"acc": depth / 10 + lr, "loss": {"train": 1 - depth / 10}}, open(out, "w"))
"""

PIPELINE = """\
params:
  lr: 0.1     # learning rate: keep this comment
  model: {max_depth: 3, n: 10}
stages:
  train:
    cmd: python train.py metrics/train.json ${params.model.max_depth} ${params.lr}
    deps: [train.py]
    metrics: [metrics/train.json]
"""


def lock(repo: Path) -> dict:
    return yaml.safe_load((repo / "mlv.lock").read_text())["stages"]


def record(repo: Path, run_id: str) -> dict:
    return json.loads((repo / ".mlv/runs" / f"{run_id}.json").read_text())


@pytest.fixture
def project(repo: Path) -> Path:
    make_tree(repo, {"train.py": TRAIN, "mlv.yaml": PIPELINE})
    return repo


# -- sweeps record their params ------------------------------------------------


def test_matrix_and_foreach_stages_record_their_values_in_the_lock_and_records(project, cli):
    (project / "mlv.yaml").write_text(textwrap.dedent("""\
        params:
          lr: 0.1
        stages:
          sweep:
            matrix:
              depth: [2, 3]
            cmd: python train.py "metrics/m-${key}.json" ${item.depth} ${params.lr}
            deps: [train.py]
            metrics: ["metrics/m-${key}.json"]
          each:
            foreach: [us, eu]
            do:
              cmd: echo ${item} > "out/${item}.txt"
              outs: ["out/${item}.txt"]
        """))
    cli("run")
    stages = lock(project)
    assert stages["sweep@3"]["params"] == {"item.depth": 3, "key": "3", "lr": 0.1}
    assert stages["each@eu"]["params"] == {"item": "eu"}
    assert record(project, stages["sweep@2"]["run_id"])["params"] == {"item.depth": 2, "key": "2", "lr": 0.1}
    assert record(project, stages["each@us"]["run_id"])["params"] == {"item": "us"}
    rows = {e["stage"]: e for e in cli.json("exp", "show")}
    assert rows["sweep@3"]["params"]["item.depth"] == 3 and rows["sweep@3"]["metrics"]["acc"] == pytest.approx(0.4)
    cli("run")  # nothing changed: every stage is up to date (the params enter the fingerprint once)
    assert lock(project) == stages


KIND = '''
from mlv.pipelines.kinds import Kind
FIT = Kind("fit", outputs=("out",), keys=("params",), required=("out",), run="fitkind_mod:run")

def run(settings, stage):
    import json
    json.dump(settings["params"], open(settings["out"], "w"))
'''


def test_a_kind_stage_under_matrix_gets_resolved_params(project, cli, tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_tree(site, {"fitkind-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: fitkind\nVersion: 1.0\n",
                     "fitkind-1.0.dist-info/entry_points.txt": "[mlv.kinds]\nfit = fitkind_mod:FIT\n",
                     "fitkind_mod.py": KIND})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    (project / "mlv.yaml").write_text(textwrap.dedent("""\
        stages:
          fit:
            matrix: {max_depth: [2, 5]}
            kind: fit
            params: {max_depth: "${item.max_depth}", criterion: gini}
            out: "models/m-${key}.json"
        """))
    cli("run")
    assert json.loads((project / "models/m-5.json").read_text()) == {"max_depth": 5, "criterion": "gini"}
    assert lock(project)["fit@5"]["params"] == {"item.max_depth": 5, "key": "5"}


def test_matrix_with_do_is_exit_2_saying_how_dvc_writes_it(project, cli):
    (project / "mlv.yaml").write_text("stages:\n  sweep:\n    matrix: {d: [2, 3]}\n    do:\n      cmd: echo ${item.d}\n")
    result = cli("run", code=2)
    assert "mlv.yaml:4:5: 'do' goes with 'foreach'; with 'matrix', write the stage's keys next to it" in result.stderr


# -- run --set -----------------------------------------------------------------


def test_set_edits_mlv_yaml_in_place_and_runs(project, cli):
    cli("run")
    before = (project / "mlv.yaml").read_text()
    result = cli("run", "--set", "model.max_depth=8", "--set", "lr=0.5")
    assert "set model.max_depth = 8 in mlv.yaml:3 (was 3)" in result.stderr
    assert (project / "mlv.yaml").read_text() == before.replace("max_depth: 3", "max_depth: 8").replace(
        "lr: 0.1 ", "lr: 0.5 ")  # comment, flow mapping, spacing: all kept
    assert json.loads((project / "metrics/train.json").read_text())["acc"] == pytest.approx(1.3)
    assert lock(project)["train"]["params"] == {"lr": 0.5, "model.max_depth": 8}
    cli("run", "--set", "model.max_depth=9.5", code=1)  # the value is YAML: a float stays a float (train.py refuses it)
    assert yaml.safe_load((project / "mlv.yaml").read_text())["params"]["model"]["max_depth"] == 9.5


@pytest.mark.parametrize(("value", "expected"), [("8", 8), ("0.1", 0.1), ("true", True), ("abc", "abc"),
                                                 ("a, b", "a, b"), ("'07'", "07")])
def test_set_values_are_read_as_yaml(project, cli, value, expected):
    cli("run", "--set", f"model.n={value}", "train")
    assert yaml.safe_load((project / "mlv.yaml").read_text())["params"]["model"]["n"] == expected


def test_a_failed_run_keeps_the_edit(project, cli):
    cli("run", "--set", "model.max_depth=oops", code=1)  # int('oops') fails in the stage
    assert "max_depth: oops" in (project / "mlv.yaml").read_text()


def test_set_writes_params_yaml_where_the_param_is_defined(project, cli):
    (project / "params.yaml").write_text("# tuned by hand\nseed: 7\nopt:\n  momentum: 0.9   # sgd\n")
    (project / "mlv.yaml").write_text(PIPELINE + "  show:\n    cmd: cp params.yaml out/params.yaml\n"
                                      "    deps: [params.yaml]\n    outs: [out/params.yaml]\n")
    cli("run")
    cli("run", "--set", "opt.momentum=0.95")
    assert (project / "params.yaml").read_text() == "# tuned by hand\nseed: 7\nopt:\n  momentum: 0.95   # sgd\n"
    assert (project / "out/params.yaml").read_text() == (project / "params.yaml").read_text()


@pytest.mark.parametrize(("option", "message"), [
    ("model.max_deph=4", "param 'model.max_deph' is not defined in mlv.yaml's 'params:', so `--set` has nowhere "
                         "to write it. Did you mean 'model.max_depth'?"),
    ("params.lr=4", "Write 'lr': names are relative to the params."),
    ("model=4", "param 'model' in mlv.yaml is a mapping; set one of its values: model.max_depth, model.n"),
    ("lr", "--set 'lr': write KEY=VALUE"),
    ("=4", "--set '=4': write KEY=VALUE"),
    ("lr=[1,", "--set 'lr=[1,': the value is not valid YAML"),
])
def test_a_bad_set_is_exit_2_and_writes_nothing(project, cli, option, message):
    before = (project / "mlv.yaml").read_bytes()
    result = cli("run", "--set", "lr=0.3", "--set", option, code=2)
    assert message in result.stderr
    assert (project / "mlv.yaml").read_bytes() == before
    assert not (project / "mlv.lock").exists()


def test_a_value_the_pipeline_cannot_take_is_undone(project, cli):
    (project / "mlv.yaml").write_text(PIPELINE.replace("max_depth: 3", "max_depth: [3]").replace(
        "${params.model.max_depth}", "${params.model.max_depth.0}"))
    before = (project / "mlv.yaml").read_bytes()
    cli("run", "--set", "model.max_depth.0={a: 1}", code=2)  # a mapping cannot be written into the command
    assert (project / "mlv.yaml").read_bytes() == before


# -- exp show ------------------------------------------------------------------


def test_exp_show_lists_each_distinct_run_once_newest_first_with_the_workspace_marked(project, cli):
    runs = []
    for depth in (3, 5, 7):  # three distinct runs
        cli("run", "--set", f"model.max_depth={depth}")
        runs.append(lock(project)["train"]["run_id"])
    cli("run", "--set", "model.max_depth=3")  # a cached restore of the first
    assert lock(project)["train"]["run_id"] == runs[0]
    cli("run", "--force")  # the same fingerprint run again: still one row, now shown by the new run
    rerun = lock(project)["train"]["run_id"]
    assert rerun not in runs and len(list((project / ".mlv/runs").iterdir())) == 5
    rows = cli.json("exp", "show")
    assert [r["run_id"] for r in rows] == [rerun, runs[2], runs[1]]
    assert [r["params"]["model.max_depth"] for r in rows] == [3, 7, 5]
    assert [r["current"] for r in rows] == [True, False, False]
    assert [r["metrics"]["acc"] for r in rows] == pytest.approx([0.4, 0.8, 0.6])
    assert rows[0]["metrics"]["loss.train"] == pytest.approx(0.7) and rows[0]["status"] == "succeeded"
    assert set(rows[0]) == {"run_id", "stage", "fingerprint", "started", "status", "current", "params", "metrics"}
    assert len({r["fingerprint"] for r in rows}) == 3
    assert [r["params"]["model.max_depth"] for r in cli.json("exp", "show", "--sort", "acc")] == [7, 5, 3]
    assert [r["params"]["model.max_depth"] for r in cli.json("exp", "show", "--sort", "loss.train")] == [3, 5, 7]
    table = cli("exp", "show").stdout
    assert table.index(rerun[-8:]) < table.index(runs[2][-8:]) < table.index(runs[1][-8:])
    assert "* the workspace's runs" in table and "max_depth" in table


def test_exp_show_restored_runs_are_rows_and_current(project, cli):
    cli("run")
    first = lock(project)["train"]["run_id"]
    cli("run", "--set", "lr=0.2")
    cli("run", "--set", "lr=0.1")  # restored from the run cache: the lock names the first run again
    rows = cli.json("exp", "show")
    assert [(r["run_id"] == first, r["current"]) for r in rows] == [(False, False), (True, True)]


def test_exp_show_sort_by_an_unknown_metric_is_exit_2_listing_them(project, cli):
    cli("run")
    result = cli("exp", "show", "--sort", "acu", code=2)
    assert "no experiment has a metric 'acu'; metrics: acc, loss.train" in result.stderr


def test_exp_show_leaves_metrics_empty_when_their_object_is_gone(project, cli):
    cli("run")
    shutil.rmtree(project / ".mlv/cache")  # every object gone (a clone that pulled the records only)
    (row,) = cli.json("exp", "show")
    assert row["metrics"] == {} and row["params"] == {"lr": 0.1, "model.max_depth": 3}
    assert "train" in cli("exp", "show").stdout


def test_exp_show_all_keeps_runs_of_removed_stages(project, cli):
    cli("run")
    (project / "mlv.yaml").write_text(PIPELINE.replace("  train:", "  fit:"))
    assert cli.json("exp", "show") == []
    assert [r["stage"] for r in cli.json("exp", "show", "--all")] == ["train"]
    assert "no runs yet" in cli("exp", "show").stdout


# -- metrics show --------------------------------------------------------------


def test_metrics_show_prints_the_metrics_files_on_disk(project, cli):
    cli("run")
    assert cli.json("metrics", "show") == {"metrics/train.json": {"acc": pytest.approx(0.4),
                                                                  "loss.train": pytest.approx(0.7)}}
    (project / "metrics/train.json").write_text('{"acc": 0.99}')  # as on disk now, not as locked
    lines = cli("metrics", "show").stdout.splitlines()
    assert lines == ["path                metric  value", "metrics/train.json  acc     0.99"]
    (project / "metrics/train.json").unlink()
    result = cli("metrics", "show")
    assert result.stdout == "no metrics on disk\n" and "'metrics/train.json' is not on disk" in result.stderr


def test_the_short_run_id_exp_show_prints_finds_the_run(project, cli):
    cli("run")
    (row,) = cli.json("exp", "show")
    short = row["run_id"].split("-", 1)[1]
    assert short in cli("exp", "show").stdout
    assert row["run_id"] in cli("show", short).stdout
    assert row["run_id"] in cli("trace", short).stdout
