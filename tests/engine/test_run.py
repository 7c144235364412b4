"""`mlv run` end to end: what runs, what is restored from the cache, mlv.lock, run records, status/checkout/show/dag.

The pipeline is ``conftest.PIPELINE``: prepare → train → evaluate, and report on its own.
Each stage command counts its executions in ``.runs/<stage>``, so "cached" is told apart
from "ran again" by the counter, not by the reported state alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import (
    OUTPUTS, STAGES, edit_pipeline, on_disk, outputs, ran, read_lock, record, states, write_pipeline, xxh3,
)
from helpers import GIT_ENV, make_tree, run_mlv, snapshot, stored_digests

ALL_ONCE = {name: 1 for name in STAGES}
DIGEST = re.compile(r"^xxh3-128:[0-9a-f]{32}$")


# -- what runs ----------------------------------------------------------------------------


def test_first_run_executes_every_stage_and_a_second_run_none(pipeline, cli):
    first = cli.json("run")
    assert states(first) == dict.fromkeys(STAGES, "done")
    assert all(r["exit_code"] == 0 and r["run_id"] for r in first)
    assert ran(pipeline) == ALL_ONCE
    assert (pipeline / "data/prepared/a.csv").read_text() == "n=5\n1\n2\n"
    assert (pipeline / "models/model.txt").read_text() == "n=5\n1\n2\nx\n# v1\n"
    assert (pipeline / "metrics/eval.json").read_text().strip() == "5"
    assert (pipeline / "reports/notes.txt").read_text() == "HELLO\nnotes\n"
    lock = (pipeline / "mlv.lock").read_bytes()

    second = cli.json("run")
    assert states(second) == dict.fromkeys(STAGES, "up-to-date")
    assert ran(pipeline) == ALL_ONCE
    assert (pipeline / "mlv.lock").read_bytes() == lock  # a no-op run rewrites nothing
    assert "4 up-to-date" in cli("run").stdout


def test_lock_records_fingerprint_deps_params_outs_and_run_id(pipeline, cli):
    results = {r["stage"]: r for r in cli.json("run")}
    text = (pipeline / "mlv.lock").read_text()
    assert text.startswith("# ") and "Commit it with mlv.yaml" in text.splitlines()[0]
    data = yaml.safe_load(text)
    assert data["schema"] == 1
    lock = data["stages"]
    assert list(lock) == sorted(STAGES)
    for name, entry in lock.items():
        assert list(entry) == ["fingerprint", "run_id", "deps", "params", "outs"]
        assert DIGEST.match(entry["fingerprint"])
        assert entry["run_id"] == results[name]["run_id"]
        rec = record(pipeline, entry["run_id"])  # the run record the lock points at
        assert (rec["stage"], rec["fingerprint"], rec["status"], rec["exit_code"]) == (
            name, entry["fingerprint"], "succeeded", 0)
        assert rec["deps"] == entry["deps"] and rec["outs"] == entry["outs"]
    assert len({e["fingerprint"] for e in lock.values()}) == 4

    # params: exactly those each stage uses, by dotted name
    assert {n: e["params"] for n, e in lock.items()} == {
        "prepare": {"n": 5}, "train": {"train.epochs": 3}, "evaluate": {"eval.threshold": 0.5},
        "report": {"report.title": "notes"},
    }
    # file digests are xxh3-128 of the bytes; a directory out is a manifest with a file count
    model = (pipeline / "models/model.txt").read_bytes()
    assert lock["train"]["outs"] == {"models/model.txt": {"digest": xxh3(model), "size": len(model)}}
    assert lock["train"]["deps"]["src/train.sh"] == xxh3(b"# v1\n")
    prepared = lock["prepare"]["outs"]["data/prepared"]
    assert DIGEST.match(prepared["digest"]) and prepared["nfiles"] == 2
    assert prepared["size"] == len("n=5\n1\n2\n") + len("x\n")
    assert lock["train"]["deps"]["data/prepared"] == prepared["digest"]  # what train read is what prepare made
    assert lock["evaluate"]["deps"] == {"models/model.txt": xxh3(model)}
    metrics = (pipeline / "metrics/eval.json").read_bytes()
    assert lock["evaluate"]["outs"] == {"metrics/eval.json": {"digest": xxh3(metrics), "size": len(metrics)}}
    # every out is in the store
    assert {xxh3(model), xxh3(metrics), prepared["digest"]} <= stored_digests(pipeline)


def test_changing_a_dep_reruns_exactly_the_stages_downstream_of_it(pipeline, cli):
    cli("run")
    (pipeline / "data/raw/a.csv").write_text("3\n4\n")  # same size, straight after the run
    assert states(cli.json("run")) == {"prepare": "done", "train": "done", "evaluate": "done", "report": "up-to-date"}
    assert ran(pipeline) == {"prepare": 2, "train": 2, "evaluate": 2, "report": 1}
    assert (pipeline / "models/model.txt").read_text() == "n=5\n3\n4\nx\n# v1\n"

    (pipeline / "src/train.sh").write_text("# v2\n")
    assert states(cli.json("run")) == {"prepare": "up-to-date", "train": "done", "evaluate": "done",
                                       "report": "up-to-date"}
    assert ran(pipeline) == {"prepare": 2, "train": 3, "evaluate": 3, "report": 1}


def test_changing_a_param_reruns_only_the_stages_that_use_it(pipeline, cli):
    cli("run")
    expected = dict.fromkeys(STAGES, 1)
    for old, new, rerun in [
        ("threshold: 0.5", "threshold: 0.7", {"evaluate"}),  # listed in evaluate's `params:`
        ("epochs: 3", "epochs: 4", {"train"}),  # interpolated; train's output does not change, so evaluate stays
        ("title: notes", "title: memo", {"report"}),  # on the independent branch
        ("n: 5", "n: 6", {"prepare", "train", "evaluate"}),  # interpolated upstream: its output changes
    ]:
        edit_pipeline(pipeline, old, new)
        assert states(cli.json("run")) == {n: "done" if n in rerun else "up-to-date" for n in STAGES}, old
        expected.update({n: expected[n] + 1 for n in rerun})
        assert ran(pipeline) == expected


def test_deleted_outputs_are_restored_from_the_cache_without_running(pipeline, cli):
    cli("run")
    before, lock = outputs(pipeline), (pipeline / "mlv.lock").read_bytes()
    shutil.rmtree(pipeline / "data/prepared")
    (pipeline / "models/model.txt").unlink()
    (pipeline / "metrics/eval.json").unlink()
    (pipeline / "reports/notes.txt").unlink()

    results = {r["stage"]: r for r in cli.json("run")}
    assert states(results.values()) == {"prepare": "cached", "train": "cached", "evaluate": "cached", "report": "cached"}
    assert ran(pipeline) == ALL_ONCE
    assert outputs(pipeline) == before
    assert (pipeline / "mlv.lock").read_bytes() == lock
    assert any("reports/notes.txt" in reason for reason in results["report"]["reasons"])


def test_a_hand_edited_output_is_never_overwritten_by_a_cached_restore(pipeline, cli):
    cli("run")
    (pipeline / "reports/notes.txt").write_text("edited by hand\n")
    before = snapshot(pipeline)
    error = cli("run", code=2).stderr
    assert "reports/notes.txt" in error and "neither in the store nor committed" in error
    assert snapshot(pipeline) == before
    cli("checkout", "--force", "reports/notes.txt")  # the advice: bring back the recorded version
    assert states(cli.json("run")) == {s: "up-to-date" for s in STAGES}


def test_reverting_a_param_restores_the_earlier_outputs_from_run_records(pipeline, cli):
    first = {r["stage"]: r["run_id"] for r in cli.json("run")}
    first_outputs, first_lock = outputs(pipeline), (pipeline / "mlv.lock").read_bytes()
    edit_pipeline(pipeline, "n: 5", "n: 7")
    assert states(cli.json("run")) == {"prepare": "done", "train": "done", "evaluate": "done", "report": "up-to-date"}
    assert outputs(pipeline) != first_outputs

    edit_pipeline(pipeline, "n: 7", "n: 5")
    results = {r["stage"]: r for r in cli.json("run")}
    assert states(results.values()) == {"prepare": "cached", "train": "cached", "evaluate": "cached",
                                        "report": "up-to-date"}
    assert ran(pipeline) == {"prepare": 2, "train": 2, "evaluate": 2, "report": 1}
    assert results["prepare"]["run_id"] == first["prepare"]
    assert results["prepare"]["reasons"] == [f"ran before as {first['prepare']}"]
    assert outputs(pipeline) == first_outputs
    assert (pipeline / "mlv.lock").read_bytes() == first_lock  # same runs, same lock


def test_run_with_a_target_runs_only_it_and_its_upstream(pipeline, cli):
    cli("run")
    (pipeline / "data/raw/a.csv").write_text("9\n")
    (pipeline / "notes/notes.txt").write_text("changed\n")
    results = cli.json("run", "train")
    assert [r["stage"] for r in results] == ["prepare", "train"]
    assert states(results) == {"prepare": "done", "train": "done"}
    assert ran(pipeline) == {"prepare": 2, "train": 2, "evaluate": 1, "report": 1}
    assert set(read_lock(pipeline)) == set(STAGES)  # the entries of stages left out stay
    # an output path names the stage that writes it
    assert [d["stage"] for d in cli.json("run", "reports/notes.txt", "--dry-run")] == ["report"]
    assert "no stage named 'trian'" in cli("run", "trian", code=2).stderr


def test_downstream_runs_the_target_and_what_is_built_from_it(pipeline, cli):
    cli("run")
    (pipeline / "src/train.sh").write_text("# v2\n")
    (pipeline / "notes/notes.txt").write_text("changed\n")
    results = cli.json("run", "train", "--downstream")
    assert states(results) == {"train": "done", "evaluate": "done"}
    assert ran(pipeline) == {"prepare": 1, "train": 2, "evaluate": 2, "report": 1}


def test_force_reruns_stages_that_are_up_to_date(pipeline, cli):
    cli("run")
    results = cli.json("run", "--force")
    assert states(results) == dict.fromkeys(STAGES, "done")
    assert all(r["reasons"] == ["--force"] for r in results)
    assert ran(pipeline) == dict.fromkeys(STAGES, 2)


def test_dry_run_prints_the_plan_with_reasons_and_changes_nothing(pipeline, cli):
    cli("run")
    old = read_lock(pipeline)["train"]["deps"]["src/train.sh"]
    (pipeline / "src/train.sh").write_text("# v2\n")
    (pipeline / "reports/notes.txt").unlink()
    before = on_disk(pipeline)

    lines = {line.split()[1]: line for line in cli("run", "--dry-run").stdout.splitlines()}
    assert lines == {
        "prepare": " up-to-date  prepare",
        "train": f"        run  train  — dep 'src/train.sh' changed: {old[9:21]} → {xxh3(b'# v2' + bytes([10]))[9:21]}",
        "evaluate": "      maybe  evaluate  — runs if the output of 'train' changes",
        "report": "     cached  report  — output 'reports/notes.txt' is missing or modified; restoring it from the cache",
    }
    plan = {d["stage"]: (d["action"], d["reasons"]) for d in cli.json("run", "--dry-run")}
    assert {n: action for n, (action, _) in plan.items()} == {
        "prepare": "up-to-date", "train": "run", "evaluate": "maybe", "report": "cached"}
    assert plan["evaluate"][1] == ["runs if the output of 'train' changes"]  # not a promise: it depends
    assert on_disk(pipeline) == before
    assert ran(pipeline) == ALL_ONCE


def test_dry_run_predicts_what_run_does_after_outputs_are_deleted(pipeline, cli):
    """A stage downstream of one restored from the cache gets the restored deps, so it is not 'run'."""
    cli("run")
    shutil.rmtree(pipeline / "data/prepared")
    (pipeline / "models/model.txt").unlink()
    plan = {d["stage"]: d["action"] for d in cli.json("run", "--dry-run")}
    actual = states(cli.json("run"))
    assert ran(pipeline) == ALL_ONCE
    assert actual == {"prepare": "cached", "train": "cached", "evaluate": "up-to-date", "report": "up-to-date"}
    assert plan == actual


# -- status, checkout, show, dag, git -----------------------------------------------------


def test_status_names_stale_stages_and_why(pipeline, cli):
    cli("run")
    assert {s["stage"]: s["state"] for s in cli.json("status") if "stage" in s} == dict.fromkeys(STAGES, "unchanged")
    old = read_lock(pipeline)["prepare"]["deps"]["data/raw"]
    (pipeline / "data/raw/a.csv").write_text("3\n4\n")
    edit_pipeline(pipeline, "title: notes", "title: memo")

    stages = {s["stage"]: s for s in cli.json("status") if "stage" in s}
    assert {n: s["state"] for n, s in stages.items()} == {
        "prepare": "stale", "train": "stale", "evaluate": "stale", "report": "stale"}
    (reason,) = stages["prepare"]["reasons"]
    assert re.fullmatch(rf"dep 'data/raw' changed: {old[9:21]} → [0-9a-f]{{12}}", reason)
    assert stages["train"]["reasons"] == ["runs if the output of 'prepare' changes"]
    assert stages["train"]["action"] == "maybe"
    assert stages["report"]["reasons"] == ["param 'report.title' changed: 'notes' → 'memo'"]
    human = cli("status").stdout
    assert "stale  stage prepare (run)" in human and "param 'report.title' changed: 'notes' → 'memo'" in human
    cli("status", "--exit-code", code=1)


def test_status_names_a_changed_param_with_old_and_new_value(pipeline, cli):
    cli("run")
    edit_pipeline(pipeline, "n: 5", "n: 7")
    stages = {s["stage"]: s for s in cli.json("status") if "stage" in s}
    assert stages["prepare"]["reasons"] == ["param 'n' changed: 5 → 7"]
    assert stages["report"]["state"] == "unchanged"
    edit_pipeline(pipeline, "wc -l <", "wc -c <")
    stages = {s["stage"]: s for s in cli.json("status") if "stage" in s}
    assert stages["evaluate"]["reasons"] == ["stage definition changed (cmd, call, outs or settings)",
                                             "upstream 'prepare' will run"]
    edit_pipeline(pipeline, "n: 7", "n: 5")
    stages = {s["stage"]: s for s in cli.json("status") if "stage" in s}
    assert stages["evaluate"]["reasons"] == ["stage definition changed (cmd, call, outs or settings)"]
    assert [n for n, s in stages.items() if s["state"] == "stale"] == ["evaluate"]


def test_checkout_restores_deleted_stage_outputs_from_the_lock(pipeline, cli):
    cli("run")
    before = outputs(pipeline)
    shutil.rmtree(pipeline / "data/prepared")
    (pipeline / "models/model.txt").unlink()
    report = cli.json("checkout")
    assert {"data/prepared", "models/model.txt"} <= {str(p) for p in report["restored"]}
    assert outputs(pipeline) == before
    assert states(cli.json("run")) == dict.fromkeys(STAGES, "up-to-date")
    assert ran(pipeline) == ALL_ONCE


def test_outs_are_ignored_by_git_and_metrics_are_not(pipeline, cli):
    cli("run")

    def ignored(path: str) -> bool:
        proc = subprocess.run(["git", "check-ignore", "-q", path], cwd=pipeline, env=GIT_ENV, check=False)
        assert proc.returncode in (0, 1), proc
        return proc.returncode == 0

    assert {p: ignored(p) for p in OUTPUTS} == {
        "data/prepared": True, "models/model.txt": True, "metrics/eval.json": False, "reports/notes.txt": True}
    assert not ignored("mlv.lock") and not ignored("mlv.yaml")


def test_show_prints_the_latest_record_with_its_captured_output(pipeline, cli):
    cli("run")
    lock = read_lock(pipeline)
    human = cli("show", "train").stdout
    assert re.search(rf"^run +{lock['train']['run_id']}$", human, re.M) and re.search(r"^stage +train$", human, re.M)
    _, _, output = human.partition("--- output ---\n")
    assert output.strip() == "training for 3 epochs"
    by_id = cli.json("show", lock["train"]["run_id"])
    assert by_id["output"].strip() == "training for 3 epochs"
    assert (by_id["stage"], by_id["fingerprint"], by_id["status"]) == ("train", lock["train"]["fingerprint"], "succeeded")
    assert by_id["params"] == {"train.epochs": 3} and by_id["deps"] == lock["train"]["deps"]
    assert by_id["started"] <= by_id["ended"] and by_id["worker"]

    latest = {r["stage"]: r["run_id"] for r in cli.json("run", "train", "--force")}["train"]
    assert cli.json("show", "train")["run_id"] == latest
    assert "no run of stage 'nope'" in cli("show", "nope", code=2).stderr


def test_dag_draws_the_edges(pipeline, cli):
    dot = cli("dag", "--dot").stdout
    assert '"prepare" -> "train";' in dot and '"train" -> "evaluate";' in dot and '"report";' in dot
    assert dot.count("->") == 2
    mermaid = cli("dag", "--mermaid").stdout
    assert mermaid.startswith("flowchart")
    assert "prepare --> train" in mermaid and "train --> evaluate" in mermaid and mermaid.count("-->") == 2
    assert cli.json("dag")  # machine-readable form exists
    assert not (pipeline / "mlv.lock").exists()  # drawing runs nothing


def test_fsck_is_clean_after_a_run(pipeline, cli):
    """mlv.lock holds fingerprints and digests of deps that are not objects; fsck must not call them missing."""
    cli("run")
    result = cli("fsck", code=0)
    assert result.stdout.rstrip().endswith(": ok")


# -- Dask: parallelism, Python calls, the real script ----------------------------------------


SLEEPERS = """\
stages:
  a:
    cmd: sleep 0.6 && echo a > a.txt
    outs: [a.txt]
  b:
    cmd: sleep 0.6 && echo b > b.txt
    outs: [b.txt]
"""


def _intervals(repo, results):
    return {r["stage"]: (record(repo, r["run_id"])["started"], record(repo, r["run_id"])["ended"]) for r in results}


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a local cluster sized to one core runs one stage at a time")
def test_independent_stages_run_at_the_same_time(repo, cli):
    write_pipeline(repo, SLEEPERS)
    results = cli.json("run")
    assert states(results) == {"a": "done", "b": "done"}
    (a0, a1), (b0, b1) = _intervals(repo, results).values()
    assert a0 < b1 and b0 < a1, "the two stages' run records do not overlap in time"
    assert {record(repo, r["run_id"])["worker"] is not None for r in results} == {True}


def test_jobs_1_runs_one_stage_at_a_time(repo, cli):
    write_pipeline(repo, SLEEPERS)
    results = cli.json("run", "--jobs", "1")
    assert states(results) == {"a": "done", "b": "done"}
    (_, first_end), (second_start, _) = sorted(_intervals(repo, results).values())
    assert first_end <= second_start, "with --jobs 1 the stages overlapped"


STEP = '''\
"""A `call:` stage: writes its inputs, params and where it ran."""
import json
import os
import sys


def scale(deps, outs, params):
    print("scaling by", params["model"]["factor"])
    numbers = [int(line) for line in open(deps[0])]
    with open(outs[0], "w") as f:
        json.dump({"values": [n * params["model"]["factor"] for n in numbers], "deps": deps, "outs": outs,
                   "params": params, "cwd": os.getcwd(), "pid": os.getpid()}, f)


def boom(deps, outs, params):
    print("about to fail")
    raise ValueError("boom: the input was bad")
'''


def test_call_stages_run_in_a_process_of_their_own_with_absolute_paths_and_nested_params(repo, cli):
    make_tree(repo, {"steps/__init__.py": "", "steps/numbers.py": STEP, "data/n.txt": "1\n2\n"})
    write_pipeline(repo, """\
        params:
          model: {factor: 3, unused: 9}
        stages:
          scale:
            call: steps.numbers:scale
            deps: [data/n.txt, steps/numbers.py]
            outs: [out/scaled.json]
            params: [model.factor]
          broken:
            call: steps.numbers:boom
            deps: [data/n.txt]
            outs: [out/never.json]
    """)
    result = cli("run", code=1)
    assert "stage 'broken' failed (exit status 1)" in result.stderr
    assert "ValueError: boom: the input was bad" in result.stderr and "about to fail" in result.stderr

    written = yaml.safe_load((repo / "out/scaled.json").read_text())
    assert written["values"] == [3, 6]
    assert written["deps"] == [str(repo / "data/n.txt"), str(repo / "steps/numbers.py")]
    assert written["outs"] == [str(repo / "out/scaled.json")]
    assert written["params"] == {"model": {"factor": 3}}
    assert written["cwd"] == str(repo)
    assert written["pid"] != os.getpid()  # user code ran in a process of its own, not in mlv's
    assert os.getcwd() != written["cwd"] or os.getcwd() == str(repo)  # mlv's cwd is not the stage's business
    lock = read_lock(repo)
    assert set(lock) == {"scale"}
    rec = record(repo, lock["scale"]["run_id"])
    assert rec["worker"].startswith("thread://")  # no cluster of worker processes to start for call stages
    assert cli("show", "scale").stdout.rstrip().endswith("scaling by 3")


def test_the_installed_mlv_script_runs_the_pipeline(pipeline):
    proc = run_mlv(pipeline, "run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()  # the stages' output as they printed it, the summary, the files to commit
    assert "training for 3 epochs" in lines and "4 done" in lines
    for name in STAGES:
        assert re.search(rf"^\s*done\s+{name}\b", proc.stderr, re.MULTILINE), proc.stderr
    again = run_mlv(pipeline, "run", "--json")
    assert again.returncode == 0, again.stderr
    assert states(yaml.safe_load(again.stdout)) == dict.fromkeys(STAGES, "up-to-date")
    assert ran(pipeline) == ALL_ONCE
