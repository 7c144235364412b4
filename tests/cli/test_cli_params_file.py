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


# DVC's form for another file's keys: the stage's code reads config/train.yaml itself
READS_CONFIG = """\
import json, yaml
cfg = yaml.safe_load(open("config/train.yaml"))
json.dump({"n_est": cfg["train"]["n_est"], "note": cfg["note"]}, open("model.json", "w"))
"""


def other_file_project(repo, params: str = "[seed, {config/train.yaml: [train.n_est]}]") -> None:
    make_tree(repo, {
        "fit.py": READS_CONFIG,
        "params.yaml": "seed: 1\n",
        "config/train.yaml": "train:\n  n_est: 50\n  depth: 3\nnote: first\n",
        "mlv.yaml": f"stages:\n  fit:\n    cmd: python fit.py\n    deps: [fit.py]\n    params: {params}\n"
                    "    outs: [model.json]\n",
    })


def edit(path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


def test_a_stage_naming_keys_of_another_file_reruns_only_when_they_change(repo, cli):
    other_file_project(repo)
    assert states(cli) == {"fit": "done"}
    assert json.loads((repo / "model.json").read_text()) == {"n_est": 50, "note": "first"}
    edit(repo / "config/train.yaml", "note: first", "note: second")  # a key the stage does not name
    edit(repo / "config/train.yaml", "depth: 3", "depth: 4")
    assert states(cli) == {"fit": "up-to-date"}
    edit(repo / "config/train.yaml", "n_est: 50", "n_est: 80")
    (entry,) = [e for e in cli.json("status") if e.get("stage") == "fit"]
    assert entry["state"] == "stale"
    assert "param 'config/train.yaml:train.n_est' changed: 50 → 80" in entry["reasons"]
    assert states(cli) == {"fit": "done"}
    assert json.loads((repo / "model.json").read_text()) == {"n_est": 80, "note": "second"}
    lock = (repo / "mlv.lock").read_text()
    assert "config/train.yaml:train.n_est" in lock and "depth" not in lock


def test_a_bare_file_entry_names_all_its_keys(repo, cli):
    other_file_project(repo, "[{config/train.yaml: }]")
    assert states(cli) == {"fit": "done"}
    edit(repo / "config/train.yaml", "depth: 3", "depth: 4")
    assert states(cli) == {"fit": "done"}
    (repo / "mlv.yaml").write_text((repo / "mlv.yaml").read_text().replace("{config/train.yaml: }",
                                                                         "{config/train.yaml: []}"))
    assert states(cli) == {"fit": "up-to-date"}  # the same params: nothing to rerun


def test_params_diff_shows_another_files_params_by_file(git_repo, cli):
    from helpers import commit_all

    other_file_project(git_repo)
    cli("run")
    commit_all(git_repo, "v1")
    edit(git_repo / "config/train.yaml", "n_est: 50", "n_est: 80")
    rows = [(r["path"], r["name"], r["old"], r["new"]) for r in cli.json("params", "diff")["rows"]]
    assert rows == [("config/train.yaml", "train.n_est", 50, 80)]
    assert "config/train.yaml" in cli("params", "diff").stdout


def test_a_missing_params_file_or_key_names_the_file_and_key(repo, cli):
    other_file_project(repo, "[{config/train.yaml: [train.n_estt]}]")
    err = cli("status", code=2).stderr
    assert "mlv.yaml:5:" in err and "stage 'fit': param 'train.n_estt' is not in params file 'config/train.yaml'" in err
    assert "Did you mean 'train.n_est'?" in err
    other_file_project(repo, "[{conf/nope.yaml: [lr]}]")
    err = cli("run", code=2).stderr
    assert "params file 'conf/nope.yaml' does not exist" in err and "stage 'fit'" in err
    assert not (repo / "model.json").exists()
    other_file_project(repo, "[{../outside.yaml: [lr]}]")
    assert "params file '../outside.yaml' leads outside the repository" in cli("status", code=2).stderr
    other_file_project(repo, "[{.git/config.yaml: [lr]}]")
    assert "is inside '.git/'" in cli("status", code=2).stderr


def test_set_writes_a_key_of_another_params_file_as_dvc_exp_run_does(repo, cli):
    other_file_project(repo)
    cli("run")
    cli("run", "--set", "config/train.yaml:train.n_est=80")
    assert (repo / "config/train.yaml").read_text() == "train:\n  n_est: 80\n  depth: 3\nnote: first\n"
    assert json.loads((repo / "model.json").read_text())["n_est"] == 80
    before = (repo / "config/train.yaml").read_text()
    err = cli("run", "--set", "config/train.yaml:train.n_ets=1", code=2).stderr
    assert "params file 'config/train.yaml' has no key 'train.n_ets'. Did you mean 'config/train.yaml:train.n_est'?" in err
    assert "'../x.yaml' leads outside the repo" in cli("run", "--set", "../x.yaml:a=1", code=2).stderr
    assert (repo / "config/train.yaml").read_text() == before
