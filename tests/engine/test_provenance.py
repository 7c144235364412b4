"""Provenance end to end: run records, the provenance index, `mlv trace`, `mlv log`, params/metrics diff.

The pipeline (``LINEAGE``) runs over two pieces of data added with ``mlv add``:
``data/raw`` (a directory) and ``data/labels.csv`` (a file)::

    data/raw ─ prepare ─ data/prepared ─┬─ a.csv ─ features ─ features/table.csv ─ train ─ models/model.txt
    data/labels.csv ────────────────────┼─────────┘          src/train.sh ───────────┘    └ metrics/train.json
                                        └─ b.csv ─ stats ─ reports/stats.txt

Real git repos, the real CLI (in-process through typer's runner, and as a subprocess), no mocks.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import read_lock, record, write_pipeline, xxh3
from helpers import GIT_ENV, MLV, commit_all, flip_byte, git, make_tree, run_mlv, store_of

LINEAGE = """\
params:
  n: 5
  model: {depth: 3}
stages:
  prepare:
    cmd: mkdir data/prepared && (echo n=${params.n}; cat data/raw/a.csv) > data/prepared/a.csv && cp data/raw/b.csv data/prepared/b.csv
    deps: [data/raw]
    outs: [data/prepared]
  features:
    cmd: cat data/prepared/a.csv data/labels.csv > features/table.csv
    deps: [data/prepared/a.csv, data/labels.csv]
    outs: [features/table.csv]
  train:
    cmd: >-
      (echo depth=${params.model.depth}; cat features/table.csv src/train.sh) > models/model.txt &&
      printf 'acc: 0.${params.model.depth}\\nloss: {l2: 1}\\n' > metrics/train.json
    deps: [features/table.csv, src/train.sh]
    params: [model.depth]
    outs: [models/model.txt]
    metrics: [metrics/train.json]
  stats:
    cmd: wc -c < data/prepared/b.csv > reports/stats.txt
    deps: [data/prepared/b.csv]
    outs: [reports/stats.txt]
"""
FILES = {"data/raw/a.csv": "1\n2\n", "data/raw/b.csv": "x\n", "data/labels.csv": "label\n1\n", "src/train.sh": "# v1\n"}


@pytest.fixture
def repo(git_repo: Path, cli) -> Path:
    """The lineage pipeline, run once and committed ("v1"); the cwd."""
    make_tree(git_repo, FILES)
    write_pipeline(git_repo, LINEAGE)
    cli("add", "data/raw", "data/labels.csv")
    cli("run")
    commit_all(git_repo, "v1")
    return git_repo


def pointer_digest(repo: Path, target: str) -> str:
    return yaml.safe_load((repo / f"{target}.mlv").read_text())["digest"]


def out_digest(repo: Path, stage: str, path: str) -> str:
    return read_lock(repo)[stage]["outs"][path]["digest"]


def artifacts(graph: dict) -> dict[str, str]:
    return {n["path"]: n["digest"] for n in graph["nodes"] if n["type"] == "artifact"}


def runs(graph: dict) -> dict[str, str]:
    return {n["stage"]: n["run_id"] for n in graph["nodes"] if n["type"] == "run"}


def shape(graph: dict) -> tuple[dict, set]:
    """What a trace says, less incidental fields (timestamps, hop numbers)."""
    keep = ("type", "path", "digest", "run_id", "stage", "origin", "pointer")
    nodes = {n["id"]: {k: n[k] for k in keep if k in n} for n in graph["nodes"]}
    return nodes, {(e["source"], e["target"], e["type"]) for e in graph["edges"]}


def built_from(graph: dict) -> set[str]:
    """Paths of every artifact in a downstream trace but its root."""
    return {n["path"] for n in graph["nodes"] if n["type"] == "artifact" and n["id"] != graph["root"]}


# -- run records ---------------------------------------------------------------------------


def test_records_name_the_run_or_pointer_behind_every_input_and_carry_their_own_digest(repo):
    lock = read_lock(repo)
    prepare, features, train = (record(repo, lock[s]["run_id"]) for s in ("prepare", "features", "train"))
    assert prepare["producers"] == {"data/raw": {"added": "data/raw.mlv"}}
    assert features["producers"] == {
        "data/prepared/a.csv": {"run": lock["prepare"]["run_id"], "within": "data/prepared",
                                "digest": out_digest(repo, "prepare", "data/prepared")},
        "data/labels.csv": {"added": "data/labels.csv.mlv"},
    }
    assert train["producers"] == {"features/table.csv": {"run": lock["features"]["run_id"]}, "src/train.sh": None}
    assert train["reused_from"] is None and train["status"] == "succeeded"
    assert train["git"]["commit"] is None  # the repo had no commit yet when it ran
    for rec in (prepare, features, train):
        body = {k: v for k, v in rec.items() if k != "record_digest"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        assert rec["record_digest"] == xxh3(canonical)


def test_records_name_the_commit_and_only_uncommitted_code_or_config_makes_them_dirty(repo, cli):
    (repo / "mlv.yaml").write_text(LINEAGE.replace("depth: 3", "depth: 4"))
    commit_all(repo, "deeper")
    head = git(repo, "rev-parse", "HEAD").strip()
    cli("run")  # rewrites mlv.lock and the committed metrics file: mlv's own outputs do not count as dirty
    assert record(repo, read_lock(repo)["train"]["run_id"])["git"] == {"commit": head, "dirty": False}
    (repo / "src/train.sh").write_text("# v2\n")
    cli("run")
    assert record(repo, read_lock(repo)["train"]["run_id"])["git"] == {"commit": head, "dirty": True}


def test_a_stage_restored_from_the_run_cache_records_a_reuse_event_pointing_at_the_original(repo, cli):
    original = read_lock(repo)["train"]["run_id"]
    (repo / "mlv.yaml").write_text(LINEAGE.replace("depth: 3", "depth: 4"))
    cli("run")
    (repo / "mlv.yaml").write_text(LINEAGE)
    assert {r["stage"]: r["state"] for r in cli.json("run")}["train"] == "cached"

    events = [json.loads(p.read_text()) for p in (repo / ".mlv/runs").glob("*.json")]
    reused = [e for e in events if e["status"] == "reused"]
    assert [(e["stage"], e["reused_from"], e["log"]) for e in reused] == [("train", original, None)]
    assert read_lock(repo)["train"]["run_id"] == original  # the lock still names the run that made the bytes
    assert runs(cli.json("trace", "models/model.txt"))["train"] == original
    human = cli("show", "train").stdout
    assert f"--- output of run {original} (restored from the run cache; nothing ran) ---" in human
    assert f"outputs restored from run {original}, nothing ran" in human


# -- trace ---------------------------------------------------------------------------------


def test_trace_of_the_model_reaches_the_raw_data_through_every_stage(repo, cli):
    lock = read_lock(repo)
    graph = cli.json("trace", "models/model.txt")
    member = xxh3((repo / "data/prepared/a.csv").read_bytes())
    assert artifacts(graph) == {
        "models/model.txt": out_digest(repo, "train", "models/model.txt"),
        "features/table.csv": out_digest(repo, "features", "features/table.csv"),
        "src/train.sh": xxh3(b"# v1\n"),
        "data/prepared/a.csv": member,
        "data/prepared": out_digest(repo, "prepare", "data/prepared"),
        "data/labels.csv": pointer_digest(repo, "data/labels.csv"),
        "data/raw": pointer_digest(repo, "data/raw"),
    }
    ids = {stage: lock[stage]["run_id"] for stage in ("prepare", "features", "train")}
    assert runs(graph) == ids

    def a(path: str) -> str:
        return f"artifact:{path}@{artifacts(graph)[path]}"

    assert {(e["source"], e["target"], e["type"]) for e in graph["edges"]} == {
        (a("data/raw"), f"run:{ids['prepare']}", "input"),
        (f"run:{ids['prepare']}", a("data/prepared"), "output"),
        (a("data/prepared"), a("data/prepared/a.csv"), "member"),
        (a("data/prepared/a.csv"), f"run:{ids['features']}", "input"),
        (a("data/labels.csv"), f"run:{ids['features']}", "input"),
        (f"run:{ids['features']}", a("features/table.csv"), "output"),
        (a("features/table.csv"), f"run:{ids['train']}", "input"),
        (a("src/train.sh"), f"run:{ids['train']}", "input"),
        (f"run:{ids['train']}", a("models/model.txt"), "output"),
    }
    assert graph["root"] == a("models/model.txt") and graph["direction"] == "upstream"
    by_path = {n["path"]: n for n in graph["nodes"] if n["type"] == "artifact"}
    assert (by_path["data/raw"]["origin"], by_path["data/raw"]["pointer"]) == ("added", "data/raw.mlv")
    assert by_path["src/train.sh"]["origin"] == "source"
    train = next(n for n in graph["nodes"] if n.get("stage") == "train")
    assert train["params"] == {"model.depth": 3} and train["status"] == "succeeded"

    human = cli("trace", "models/model.txt").stdout
    for path, digest in artifacts(graph).items():
        assert f"{path}  {digest[9:21]}" in human
    assert "added (data/raw.mlv)" in human and "params: model.depth=3" in human and "stage prepare" in human


def test_every_node_and_edge_follows_the_documented_schema(repo, cli):
    for args in (("models/model.txt",), ("data/raw", "--downstream")):
        graph = cli.json("trace", *args)
        ids = {n["id"] for n in graph["nodes"]}
        for node in graph["nodes"]:
            assert node["type"] in ("artifact", "run")
            required = ("path", "digest") if node["type"] == "artifact" else ("run_id", "stage")
            assert all(node.get(k) for k in required), node
        assert all(e["source"] in ids and e["target"] in ids and e["type"] in ("input", "output", "member", "part")
                   for e in graph["edges"])


def test_after_changing_one_raw_file_old_and_new_models_trace_to_their_own_raw_data(repo, cli):
    old = cli.json("trace", "models/model.txt")
    (repo / "data/raw/a.csv").write_text("1\n2\n3\n")
    cli("add", "data/raw")
    cli("run")
    commit_all(repo, "v2")

    new = cli.json("trace", "models/model.txt")
    assert artifacts(new)["data/raw"] == pointer_digest(repo, "data/raw") != artifacts(old)["data/raw"]
    assert artifacts(new)["models/model.txt"] != artifacts(old)["models/model.txt"]
    assert artifacts(new)["data/labels.csv"] == artifacts(old)["data/labels.csv"]  # unchanged input, same digest
    assert set(runs(new).values()).isdisjoint(runs(old).values())

    at_rev = cli.json("trace", "models/model.txt", "--rev", "HEAD~1")
    assert shape(at_rev) == shape(old)
    assert next(n for n in at_rev["nodes"] if n["id"] == at_rev["root"])["rev"] == git(repo, "rev-parse", "HEAD~1").strip()
    # a file inside the added directory, at the old revision, goes through that directory's old version
    member = cli.json("trace", "data/raw/a.csv", "--rev", "HEAD~1")
    assert artifacts(member) == {"data/raw/a.csv": xxh3(b"1\n2\n"), "data/raw": artifacts(old)["data/raw"]}

    git(repo, "checkout", "-q", "HEAD~1", "--", "mlv.lock", "data/raw.mlv")  # the old model, checked out from git
    cli("checkout")
    assert (repo / "data/raw/a.csv").read_text() == "1\n2\n"
    assert shape(cli.json("trace", "models/model.txt")) == shape(old)


def test_downstream_lists_exactly_what_was_built_from_a_raw_file(repo, cli):
    labels = cli.json("trace", "data/labels.csv", "--downstream")
    assert built_from(labels) == {"features/table.csv", "models/model.txt", "metrics/train.json"}
    assert set(runs(labels)) == {"features", "train"}

    # a file inside the added directory reaches what was built from the directory; data/prepared/b.csv has
    # the same bytes as data/raw/b.csv, but `stats` read the copy, so it is reached only through prepare
    raw_b = cli.json("trace", "data/raw/b.csv", "--downstream")
    assert built_from(raw_b) == {"data/raw", "data/prepared", "data/prepared/a.csv", "data/prepared/b.csv",
                                 "features/table.csv", "models/model.txt", "metrics/train.json", "reports/stats.txt"}
    stats = runs(raw_b)["stats"]
    assert (raw_b["root"], f"run:{stats}", "input") not in shape(raw_b)[1]

    # a file inside an output directory: what read that file, not what read its siblings
    prepared_b = cli.json("trace", "data/prepared/b.csv", "--downstream")
    assert built_from(prepared_b) == {"data/prepared", "reports/stats.txt"}
    human = cli("trace", "data/labels.csv", "--downstream").stdout
    assert "stage features" in human and "models/model.txt" in human and "data/prepared" not in human


TWICE = """\
stages:
  prep:
    cmd: sed s/a/b/ raw.txt > prep.txt
    deps: [raw.txt]
    outs: [prep.txt]
  use1:
    cmd: sed s/b/c/ prep.txt > use1.txt
    deps: [prep.txt]
    outs: [use1.txt]
"""
USE2 = """\
  use2:
    cmd: sed s/b/d/ prep.txt > use2.txt
    deps: [prep.txt]
    outs: [use2.txt]
"""
BOTH = """\
  both:
    cmd: cat use1.txt use2.txt > both.txt
    deps: [use1.txt, use2.txt]
    outs: [both.txt]
"""


@pytest.fixture
def made_twice(git_repo: Path, cli) -> Path:
    """prep.txt made by two runs with the same bytes: use1 read the first run's, use2 (added later) the second's."""
    (git_repo / "raw.txt").write_text("a\n")
    cli("add", "raw.txt")
    write_pipeline(git_repo, TWICE)
    cli("run")
    cli("run", "--force", "prep")
    write_pipeline(git_repo, TWICE + USE2)
    cli("run")
    return git_repo


def test_downstream_reaches_the_readers_of_every_run_that_made_the_same_bytes(made_twice, cli):
    lock = read_lock(made_twice)
    first = record(made_twice, lock["use1"]["run_id"])["producers"]["prep.txt"]["run"]
    assert first != lock["prep"]["run_id"] == record(made_twice, lock["use2"]["run_id"])["producers"]["prep.txt"]["run"]
    made = {"prep.txt": out_digest(made_twice, "prep", "prep.txt"), "use1.txt": out_digest(made_twice, "use1", "use1.txt"),
            "use2.txt": out_digest(made_twice, "use2", "use2.txt")}

    raw = cli.json("trace", "raw.txt", "--downstream")
    assert {p: d for p, d in artifacts(raw).items() if p != "raw.txt"} == made
    assert set(runs(raw)) == {"prep", "use1", "use2"}
    assert {n["run_id"] for n in raw["nodes"] if n.get("stage") == "prep"} == {first, lock["prep"]["run_id"]}
    prep = cli.json("trace", "prep.txt", "--downstream")
    assert built_from(prep) == {"use1.txt", "use2.txt"} and set(runs(prep)) == {"use1", "use2"}
    assert {runs(prep)[s] for s in ("use1", "use2")} == {lock["use1"]["run_id"], lock["use2"]["run_id"]}
    for graph in (raw, prep):
        ids = {n["id"] for n in graph["nodes"]}
        assert all(e["source"] in ids and e["target"] in ids for e in graph["edges"])
    human = cli("trace", "prep.txt", "--downstream").stdout
    assert "stage use1" in human and "stage use2" in human

    # upstream is unchanged: each output goes back through the run its reader named, to raw.txt
    assert runs(cli.json("trace", "use1.txt"))["prep"] == first
    assert runs(cli.json("trace", "use2.txt"))["prep"] == lock["prep"]["run_id"]
    assert runs(cli.json("trace", "prep.txt"))["prep"] == lock["prep"]["run_id"]  # the run mlv.lock names

    for path in made_twice.glob(".mlv/state.db*"):  # rebuilt from the records, the index says the same
        path.unlink()
    assert shape(cli.json("trace", "raw.txt", "--downstream")) == shape(raw)


def test_upstream_and_verify_follow_both_runs_that_made_bytes_read_twice(made_twice, cli):
    write_pipeline(made_twice, TWICE + USE2 + BOTH)
    cli("run")
    lock = read_lock(made_twice)
    first = record(made_twice, lock["use1"]["run_id"])["producers"]["prep.txt"]["run"]
    graph = cli.json("trace", "both.txt", "--verify")
    preps = {n["run_id"] for n in graph["nodes"] if n.get("stage") == "prep"}
    assert preps == {first, lock["prep"]["run_id"]} and graph["problems"] == []
    prep_txt = f"artifact:prep.txt@{out_digest(made_twice, 'prep', 'prep.txt')}"
    assert {(f"run:{r}", prep_txt, "output") for r in preps} <= shape(graph)[1]

    for run_id in preps:  # the walk used to follow one of them only, and verify passed over the other
        path = made_twice / ".mlv/runs" / f"{run_id}.json"
        sound = path.read_text()
        path.write_text(sound.replace('"status": "succeeded"', '"status": "Succeeded"'))
        result = cli("trace", "both.txt", "--verify", code=1)
        assert f"run {run_id} (stage 'prep')" in result.stderr and "record_digest" in result.stderr
        path.write_text(sound)


def test_a_run_id_a_digest_or_a_prefix_is_a_target_and_anything_else_exits_2(repo, cli):
    lock = read_lock(repo)
    model = out_digest(repo, "train", "models/model.txt")
    by_path = shape(cli.json("trace", "models/model.txt"))
    assert shape(cli.json("trace", model)) == by_path
    assert shape(cli.json("trace", model[9:17])) == by_path
    by_run = cli.json("trace", lock["train"]["run_id"])
    assert by_run["root"] == f"run:{lock['train']['run_id']}" and set(runs(by_run)) == {"train", "features", "prepare"}
    down = cli.json("trace", lock["train"]["run_id"][:-2], "--downstream")
    assert built_from(down) == {"models/model.txt", "metrics/train.json"}

    assert "is not a tracked path, a known object digest or a run id" in cli("trace", "nope.txt", code=2).stderr
    assert "name what to trace" in cli("trace", code=2).stderr
    assert "is not a commit in this repo" in cli("trace", "models/model.txt", "--rev", "v9", code=2).stderr
    assert "neither a stage output" in cli("trace", "nope.txt", "--rev", "HEAD", code=2).stderr


def test_deleting_the_index_and_reindexing_gives_the_same_answers(repo, cli):
    questions = [("models/model.txt",), ("data/raw/b.csv", "--downstream"), ("data/labels.csv", "--downstream")]
    before = [shape(cli.json("trace", *q)) for q in questions]
    for path in (repo / ".mlv").glob("state.db*"):
        path.unlink()
    report = cli.json("trace", "--reindex")
    assert report["records"] == len(list((repo / ".mlv/runs").glob("*.json"))) and report["broken"] == []
    assert [shape(cli.json("trace", *q)) for q in questions] == before

    for path in (repo / ".mlv").glob("state.db*"):
        path.unlink()
    assert [shape(cli.json("trace", *q)) for q in questions] == before  # the index catches up by itself

    # the real script, in a fresh process, says the same
    proc = run_mlv(repo, "trace", "models/model.txt", "--json")
    assert proc.returncode == 0, proc.stderr
    assert shape(json.loads(proc.stdout)) == before[0]


# -- damage ----------------------------------------------------------------------------------


def test_verify_names_the_hop_whose_record_or_object_is_damaged(repo, cli):
    graph = cli.json("trace", "models/model.txt", "--verify")
    assert graph["verified"] and graph["problems"] == []
    # src/train.sh was not committed yet when the stage ran, so the run stored it (every byte a run reads is saved)
    assert {n["verified"] for n in graph["nodes"]} == {"ok"}

    prepare = read_lock(repo)["prepare"]["run_id"]
    path = repo / ".mlv/runs" / f"{prepare}.json"
    path.write_text(path.read_text().replace('"n": 5', '"n": 6'))
    result = cli("trace", "models/model.txt", "--verify", code=1)
    assert f"run {prepare} (stage 'prepare')" in result.stderr and "record_digest" in result.stderr
    assert "✗ BROKEN" in result.stdout.splitlines()[[l.find(prepare) >= 0 for l in result.stdout.splitlines()].index(True)]

    path.write_text("{ torn")  # unreadable: reindexing reports it, and the lineage says where it stops
    assert "1 damaged record(s) left out" in cli("trace", "--reindex", code=1).stdout
    result = cli("trace", "models/model.txt", code=1)
    assert f"run {prepare}: run record '.mlv/runs/{prepare}.json' is unreadable" in result.stderr


def test_verify_finds_a_damaged_object_on_the_path(repo, cli):
    table = out_digest(repo, "features", "features/table.csv")
    store = store_of(repo)
    from mlv.storage.store.digest import parse

    entry = store.packed(parse(table))
    flip_byte(Path(store.pack_path(entry.pack)), entry.offset)
    result = cli("trace", "models/model.txt", "--verify", code=1)
    assert f"features/table.csv@{table[9:21]}: damaged" in result.stderr


def test_fsck_reports_a_corrupted_record(repo, cli):
    prepare = read_lock(repo)["prepare"]["run_id"]
    path = repo / ".mlv/runs" / f"{prepare}.json"
    path.write_text(path.read_text().replace('"n": 5', '"n": 6'))
    result = cli("fsck", code=1)
    assert prepare in result.stdout


def test_check_records_lists_every_damaged_record(repo):
    from mlv.engine.provenance import check_records
    from mlv.storage.workspace import Workspace

    assert check_records(Workspace(repo)) == []
    prepare = read_lock(repo)["prepare"]["run_id"]
    (repo / ".mlv/runs" / f"{prepare}.json").write_text("{ torn")
    [problem] = check_records(Workspace(repo))
    assert (problem.run_id, problem.path, problem.kind) == (prepare, f".mlv/runs/{prepare}.json", "corrupt-record")
    assert "is unreadable" in problem.detail and "mlv pull" in problem.detail


# -- secrets ---------------------------------------------------------------------------------


def test_run_records_and_indexes_never_hold_environment_secrets(git_repo):
    secret = f"hunter2-{uuid.uuid4().hex}"
    aws = f"wJalrXUtnFEMI-{uuid.uuid4().hex}"
    make_tree(git_repo, FILES)
    write_pipeline(git_repo, LINEAGE.replace(
        "cmd: wc -c < data/prepared/b.csv",  # the stage sees the secrets (and does not print them)
        'cmd: test -n "$MLV_TEST_SECRET" && test -n "$AWS_SECRET_ACCESS_KEY" && wc -c < data/prepared/b.csv'))
    env = {**GIT_ENV, "MLV_TEST_SECRET": secret, "AWS_SECRET_ACCESS_KEY": aws, "AWS_ACCESS_KEY_ID": "AKIA" + aws[-12:]}

    def mlv(*args: str) -> str:
        proc = subprocess.run([os.fspath(MLV), *args], cwd=git_repo, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout + proc.stderr

    mlv("add", "data/raw", "data/labels.csv")
    mlv("run")
    subprocess.run(["git", "add", "-A"], cwd=git_repo, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "v1"], cwd=git_repo, env=env, check=True)
    outputs = [mlv("trace", "--reindex"), mlv("trace", "models/model.txt", "--json"), mlv("log", "models/model.txt"),
               mlv("show", "stats", "--json"), mlv("metrics", "diff", "--all")]
    assert (git_repo / "reports/stats.txt").read_text().strip() == "2"  # the stage did run with the secrets set
    assert len(list((git_repo / ".mlv/runs").glob("*.json"))) == 4

    for needle in (secret, aws, aws[-12:]):
        leaks = [p for p in git_repo.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]
        assert leaks == [], f"{needle!r} was written to {leaks}"
        assert all(needle not in text for text in outputs)
        assert needle not in git(git_repo, "log", "-p", "--all")


# -- history and diffs --------------------------------------------------------------------------


def test_log_params_diff_and_metrics_diff_across_two_commits(repo, cli):
    v1 = {"rev": git(repo, "rev-parse", "HEAD").strip(), "model": out_digest(repo, "train", "models/model.txt"),
          "run": read_lock(repo)["train"]["run_id"]}
    (repo / "mlv.yaml").write_text(LINEAGE.replace("depth: 3", "depth: 4"))
    params = cli.json("params", "diff")  # the workspace against HEAD
    assert params["rows"] == [{"path": "mlv.yaml", "name": "model.depth", "old": 3, "new": 4, "change": "modified",
                               "delta": 1}]
    cli("run")
    metrics = cli.json("metrics", "diff")
    assert [(r["path"], r["name"], r["old"], r["new"]) for r in metrics["rows"]] == [
        ("metrics/train.json", "acc", 0.3, 0.4)]
    assert metrics["rows"][0]["delta"] == pytest.approx(0.1) and metrics["new"] == "workspace"
    commit_all(repo, "v2")
    v2 = {"rev": git(repo, "rev-parse", "HEAD").strip(), "model": out_digest(repo, "train", "models/model.txt"),
          "run": read_lock(repo)["train"]["run_id"]}

    assert cli.json("params", "diff")["rows"] == []  # nothing changed since HEAD
    assert cli.json("params", "diff", "HEAD~1", "HEAD")["rows"] == params["rows"]
    assert [r["name"] for r in cli.json("params", "diff", "HEAD~1", "--all")["rows"]] == ["model.depth", "n"]
    between = cli.json("metrics", "diff", "HEAD~1", "HEAD")
    assert (between["old"], between["new"]) == (v1["rev"][:12], v2["rev"][:12])
    assert [(r["name"], r["old"], r["new"]) for r in between["rows"]] == [("acc", 0.3, 0.4)]
    table = cli("metrics", "diff", "HEAD~1", "HEAD").stdout.splitlines()
    assert table[0].split() == ["path", "metric", v1["rev"][:12], v2["rev"][:12], "change"]
    assert table[1].split() == ["metrics/train.json", "acc", "0.3", "0.4", "+0.1"]
    assert "no param changed" in cli("params", "diff").stdout

    log = cli.json("log", "models/model.txt")
    assert [(e["commit"], e["digest"], e["run_id"]) for e in log] == [
        (v2["rev"], v2["model"], v2["run"]), (v1["rev"], v1["model"], v1["run"])]
    assert [e["metrics"] for e in log] == [{"metrics/train.json": {"acc": 0.4, "loss.l2": 1}},
                                           {"metrics/train.json": {"acc": 0.3, "loss.l2": 1}}]
    assert log[0]["run"]["stage"] == "train" and log[1]["message"] == "v1"
    human = cli("log", "models/model.txt").stdout
    assert f"{v2['rev'][:10]}" in human and "acc=0.4" in human and "acc=0.3" in human
    assert [e["origin"] for e in cli.json("log", "data/raw")] == ["added"]  # one version, added, unchanged since
    assert "has no versions" in cli("log", "nope.txt", code=2).stderr
