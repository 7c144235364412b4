"""params.yaml beside mlv.yaml holds params too, as DVC reads it: stage code that reads params.yaml itself
runs unchanged, and only the keys a stage names or interpolates enter its fingerprint."""

from __future__ import annotations

import json
import textwrap

from helpers import make_tree

# the stage's own code reads params.yaml, as it does under DVC
TRAIN = """\
import json, yaml
params = yaml.safe_load(open("params.yaml"))
json.dump({"lr": params["train"]["lr"]}, open("out.json", "w"))
"""


def project(repo) -> None:
    make_tree(repo, {
        "train.py": TRAIN,
        "params.yaml": "# tuned by hand\ntrain:\n  lr: 0.1   # learning rate\n  epochs: 3\nother: 1\n",
        "mlv.yaml": textwrap.dedent("""\
            stages:
              train:
                cmd: python train.py
                deps: [train.py]
                params: [train.lr]
                outs: [out.json]
              report:
                cmd: echo ${params.train.epochs} > report.txt
                outs: [report.txt]
            """),
    })


def states(cli) -> dict:
    return {r["stage"]: r["state"] for r in cli.json("run")}


def test_a_stage_reruns_only_when_a_params_yaml_key_it_names_changes(repo, cli):
    project(repo)
    assert states(cli) == {"train": "done", "report": "done"}
    assert json.loads((repo / "out.json").read_text()) == {"lr": 0.1}
    assert (repo / "report.txt").read_text().strip() == "3"
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text().replace("other: 1", "other: 2"))
    assert set(states(cli).values()) == {"up-to-date"}  # a key no stage names changes nothing
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text().replace("lr: 0.1", "lr: 0.2"))
    stale = {e["stage"]: e for e in cli.json("status") if "stage" in e}
    assert stale["train"]["state"] == "stale" and stale["report"]["state"] == "unchanged"
    assert states(cli) == {"train": "done", "report": "up-to-date"}
    assert json.loads((repo / "out.json").read_text()) == {"lr": 0.2}


def test_set_writes_params_yaml_and_params_diff_shows_it(git_repo, cli):
    from helpers import commit_all

    project(git_repo)
    cli("run")
    commit_all(git_repo, "v1")
    cli("run", "--set", "train.lr=0.3")
    assert "lr: 0.3   # learning rate" in (git_repo / "params.yaml").read_text()  # in place, comment kept
    (row,) = cli.json("params", "diff")["rows"]
    assert (row["path"], row["name"], row["old"], row["new"], row["change"]) == (
        "params.yaml", "train.lr", 0.1, 0.3, "modified")


def test_a_param_in_both_files_is_refused_naming_both(repo, cli):
    project(repo)
    (repo / "mlv.yaml").write_text("params:\n  other: 5\n" + (repo / "mlv.yaml").read_text())
    result = cli("status", code=2)
    assert "mlv.yaml:2:3: param 'other' is defined both here and in params.yaml" in result.stderr


def test_a_params_yaml_that_is_not_a_mapping_is_one_message(repo, cli):
    project(repo)
    (repo / "params.yaml").write_text("- a\n- b\n")
    assert "params.yaml:1:1: must be a mapping of param names to values" in cli("status", code=2).stderr
    (repo / "params.yaml").write_text("a: [1, 2\n")
    assert "params.yaml:" in cli("status", code=2).stderr
