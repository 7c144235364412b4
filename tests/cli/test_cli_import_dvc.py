"""`mlv import-dvc` on a repo that real DVC 3.67.1 built (tests/fixtures/dvc_repo/make.py): the pipeline,
pointers, data and lock come over, `mlv run` reruns nothing that DVC considered done, and what has no
equivalent is reported."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from helpers import commit_all, git_init, make_tree

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dvc_repo"
DVC = Path(__file__).resolve().parents[2] / "bench" / ".work" / "dvc-venv" / "bin" / "dvc"
STAGES = {"prepare", "train", "shard@a", "shard@b", "report"}


def workspace_files(root: Path) -> dict[str, bytes]:
    skip = (".git/", ".mlv/", ".dvc/")
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.relative_to(root).as_posix().startswith(skip)}


@pytest.fixture
def dvc_repo(tmp_path, monkeypatch) -> Path:
    """The committed fixture, unpacked into a git repo (as a DVC user has it: code and metrics committed)."""
    root = tmp_path / "repo"
    root.mkdir()
    with tarfile.open(FIXTURES / "repo.tar.gz") as tf:
        tf.extractall(root, filter="data")
    git_init(root)
    commit_all(root, "a DVC repo")
    monkeypatch.chdir(root)
    return root


def test_import_brings_pipeline_data_and_lock_and_run_reruns_nothing(dvc_repo, cli):
    before = workspace_files(dvc_repo)
    report = cli.json("import-dvc")
    assert report["initialized"] and report["pipeline"] == "mlv.yaml"
    assert {p["path"]: p["nfiles"] for p in report["pointers"]} == {"data/raw": 3, "data/labels.txt": None}
    assert {s["stage"]: (s["imported"], s["action"]) for s in report["stages"]} == {
        name: (True, "up-to-date") for name in STAGES}
    assert report["mismatches"] == [] and report["not_imported"] == []
    notes = {(n["where"], n["what"]) for n in report["notes"]}
    assert notes == {
        ("dvc.yaml: stage 'train'", "cache: false on out 'summary.txt'"),
        ("dvc.yaml: stage 'train'", "persist: true on out 'history.log'"),
        ("dvc.yaml: stage 'report'", "frozen: true"),
        (".dvc/config", "remote 'storage' (/tmp/nowhere-dvc-remote)"),
    }
    pipeline = yaml.safe_load((dvc_repo / "mlv.yaml").read_text())
    assert pipeline["stages"]["train"]["params"] == ["train.n_est", "train.seed", {"config/model.yaml": ["model.depth"]}]
    assert pipeline["stages"]["train"]["plots"] == [{"loss.csv": {"x": "step", "y": "loss"}}]
    assert pipeline["stages"]["shard"]["foreach"] == "${params.shards}"

    runs = {r["stage"]: r["state"] for r in cli.json("run")}
    assert runs == dict.fromkeys(STAGES, "up-to-date")
    assert {e["path"]: e["state"] for e in cli.json("status")} == {
        "data/raw": "unchanged", "data/labels.txt": "unchanged", "mlv.yaml": "unchanged"}
    after = workspace_files(dvc_repo)
    assert {p: after[p] for p in before} == before  # not a byte of the workspace changed
    trace = cli.json("trace", "model.bin")  # the imported run records carry the lineage DVC knew
    assert {n.get("path") for n in trace["nodes"]} >= {"model.bin", "data/prepared", "data/raw", "src/train.py"}
    assert {n.get("stage") for n in trace["nodes"] if n["type"] == "run"} == {"train", "prepare"}


def test_imported_data_and_outputs_come_back_from_mlvs_store(dvc_repo, cli):
    before = workspace_files(dvc_repo)
    shutil.rmtree(dvc_repo / "data" / "raw")  # a `dvc checkout` not done: only DVC's cache has it
    (dvc_repo / "model.bin").unlink()
    prepare = next(s for s in cli.json("import-dvc")["stages"] if s["stage"] == "prepare")
    assert prepare["imported"] and prepare["reasons"][-1].startswith("`mlv checkout` first")
    shutil.rmtree(dvc_repo / ".dvc" / "cache")  # from now on only mlv's store has the bytes
    cli("checkout", "data/raw")
    runs = {r["stage"]: r["state"] for r in cli.json("run")}
    assert runs["train"] == "cached" and {runs[s] for s in STAGES - {"train"}} == {"up-to-date"}
    after = workspace_files(dvc_repo)
    assert {p: after[p] for p in before} == before


def test_a_stage_dvc_lock_no_longer_describes_is_reported_and_is_the_only_one_to_rerun(dvc_repo, cli):
    params = dvc_repo / "params.yaml"
    params.write_text(params.read_text().replace("n_est: 50", "n_est: 80"))  # edited after `dvc repro`
    old_model = (dvc_repo / "model.bin").read_text()
    report = cli.json("import-dvc")
    train = next(s for s in report["stages"] if s["stage"] == "train")
    assert not train["imported"] and train["action"] == "run"
    assert "param 'train.n_est' changed since dvc.lock: 50 → 80: it will run" in train["reasons"]
    assert {s["stage"] for s in report["stages"] if s["action"] == "up-to-date"} == STAGES - {"train"}
    runs = {r["stage"]: r["state"] for r in cli.json("run")}
    assert runs == {**dict.fromkeys(STAGES - {"train"}, "up-to-date"), "train": "done"}
    assert (dvc_repo / "model.bin").read_text() != old_model  # it ran with the new value
    assert "param 'train.n_est'" not in cli("status").stdout


def test_damaged_bytes_in_dvcs_cache_are_reported_and_not_imported(dvc_repo, cli):
    labels_md5 = hashlib.md5((dvc_repo / "data/labels.txt").read_bytes()).hexdigest()
    cached = dvc_repo / ".dvc/cache/files/md5" / labels_md5[:2] / labels_md5[2:]
    cached.chmod(0o644)
    cached.write_text("rotten\n")
    (dvc_repo / "data/labels.txt").write_text("edited\n")  # the workspace copy is no good either
    rotten = hashlib.md5(b"rotten\n").hexdigest()
    result = cli("import-dvc", code=1)
    assert f"md5 mismatch: data/labels.txt: .dvc/cache/files/md5/{labels_md5[:2]}/{labels_md5[2:]} hashes to " \
           f"{rotten}, DVC recorded {labels_md5}" in result.stderr
    assert f"not imported: data/labels.txt: 'data/labels.txt' (md5 {labels_md5}) is damaged in DVC's cache, and " \
           "edited in the workspace" in result.stdout
    assert not (dvc_repo / "data/labels.txt.mlv").exists() and (dvc_repo / "data/raw.mlv").exists()
    report = yaml.safe_load((dvc_repo / "mlv.lock").read_text())
    assert "shard@a" not in report["stages"] and "prepare" in report["stages"]


def test_an_existing_mlv_yaml_is_kept_unless_forced_and_nothing_is_written(dvc_repo, cli):
    (dvc_repo / "mlv.yaml").write_text("stages: {}\n")
    before = workspace_files(dvc_repo)
    assert "'mlv.yaml' exists already; pass --force" in cli("import-dvc", code=2).stderr
    assert workspace_files(dvc_repo) == before and not (dvc_repo / ".mlv").exists()
    cli("import-dvc", "--force")
    assert "prepare" in (dvc_repo / "mlv.yaml").read_text()


def test_outside_a_dvc_repo_it_is_a_usage_error(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    assert "is not the root of a DVC repo (no .dvc/ here)" in cli("import-dvc", code=2).stderr
    assert not (tmp_path / ".mlv").exists()


def test_what_mlv_has_no_equivalent_for_is_listed_never_dropped(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    make_tree(tmp_path, {".dvc/config": "[core]\n    no_scm = True\n", "src/p.py": "", "sub/params.yaml": "lr: 1\n",
                         "conf.yaml": "extra: {n: 2}\nother: 3\n", "dvc.yaml": """\
vars:
  - conf.yaml:extra
  - seeds: [1, 2]
stages:
  sweep:
    matrix: {seed: "${seeds}"}
    cmd: echo ${item.seed} ${extra.n} > out-${item.seed}.txt
    outs: ["out-${item.seed}.txt"]
    always_changed: true
    meta: {owner: me}
  fit:
    wdir: sub
    cmd: python ../src/p.py
    deps: [../src/p.py, "https://example.com/x.csv"]
    params: [lr, {settings.toml: [a]}]
    outs:
      - model: {checkpoint: true, remote: s3}
plots:
  - acc.json
"""})
    report = cli.json("import-dvc")
    notes = {(n["where"], n["what"]) for n in report["notes"]}
    assert notes >= {("dvc.yaml", "top-level 'plots'"), ("dvc.yaml", "vars file 'conf.yaml'"),
                     ("dvc.yaml: stage 'sweep'", "always_changed: true"), ("dvc.yaml: stage 'sweep'", "meta"),
                     ("dvc.yaml: stage 'fit'", "'checkpoint' on out 'model'"),
                     ("dvc.yaml: stage 'fit'", "'remote' on out 'model'"), (".dvc/config", "core.no_scm = True"),
                     ("dvc.yaml: stage 'fit'", "dep 'https://example.com/x.csv'"),
                     ("dvc.yaml: stage 'fit'", "params file 'settings.toml'")}
    pipeline = yaml.safe_load((tmp_path / "mlv.yaml").read_text())
    assert pipeline["params"] == {"extra": {"n": 2}, "seeds": [1, 2]}
    assert pipeline["stages"]["fit"]["params"] == [{"params.yaml": ["lr"]}]  # DVC reads it from the wdir
    assert pipeline["stages"]["sweep"]["cmd"] == "echo ${item.seed} ${params.extra.n} > out-${item.seed}.txt"
    assert {s["stage"]: s["action"] for s in report["stages"]} == dict.fromkeys(
        ["sweep@1", "sweep@2", "fit"], "run")
    cli("run", "sweep@1")
    assert (tmp_path / "out-1.txt").read_text() == "1 2\n"


@pytest.mark.skipif(not DVC.exists(), reason="no DVC venv (bench/common.py ensure_dvc builds it)")
def test_a_repo_built_live_by_dvc_imports_up_to_date(tmp_path, monkeypatch, cli):
    root = tmp_path / "live"
    subprocess.run([str(DVC.with_name("python")), str(FIXTURES / "make.py"), str(root), "--dvc", str(DVC)],
                   check=True, timeout=300)
    before = workspace_files(root)
    git_init(root)
    commit_all(root, "live")
    monkeypatch.chdir(root)
    report = cli.json("import-dvc")
    assert {s["stage"]: s["action"] for s in report["stages"]} == dict.fromkeys(STAGES, "up-to-date")
    assert {r["stage"]: r["state"] for r in cli.json("run")} == dict.fromkeys(STAGES, "up-to-date")
    after = workspace_files(root)
    assert {p: after[p] for p in before} == before


def test_a_foreach_over_a_list_matches_dvcs_index_names_and_outputs_come_from_the_workspace(tmp_path, monkeypatch, cli):
    """DVC names `c@0`, `c@1`; mlv `c@raw1`, `c@raw2`. No DVC cache here: outputs are taken from the workspace,
    md5-checked (as for `cache: false` outs)."""
    monkeypatch.chdir(tmp_path)
    lock = {"schema": "2.0", "stages": {
        f"c@{i}": {"cmd": f"echo {item} > out-{item}.txt", "outs": [
            {"path": f"out-{item}.txt", "hash": "md5", "md5": hashlib.md5(f"{item}\n".encode()).hexdigest(),
             "size": len(item) + 1}]}
        for i, item in enumerate(["raw1", "raw2"])}}
    make_tree(tmp_path, {".dvc/config": "", "out-raw1.txt": "raw1\n", "out-raw2.txt": "edited\n",
                         "dvc.lock": yaml.safe_dump(lock), "dvc.yaml": """\
stages:
  c:
    foreach: [raw1, raw2]
    do:
      cmd: echo ${item} > out-${item}.txt
      outs: ["out-${item}.txt"]
"""})
    report = cli.json("import-dvc")
    assert ("dvc.yaml: stage 'c'", "foreach over a list") in {(n["where"], n["what"]) for n in report["notes"]}
    stages = {s["stage"]: s for s in report["stages"]}
    assert stages["c@raw1"]["imported"] and stages["c@raw1"]["action"] == "up-to-date"
    assert not stages["c@raw2"]["imported"] and stages["c@raw2"]["action"] == "run"
    assert "output 'out-raw2.txt' in the workspace is not the version DVC recorded (md5 " \
           f"{lock['stages']['c@1']['outs'][0]['md5']}), and DVC's cache lacks it: it will run" in stages["c@raw2"]["reasons"]
    assert report["mismatches"] == []  # an edited workspace file is a change, not damage


def test_dvc_2s_cache_layout_and_a_repo_of_dvc_add_only(dvc_repo, cli):
    """DVC 2 kept objects at .dvc/cache/<2 hex>/<30 hex>; a repo may have no pipeline at all."""
    cache = dvc_repo / ".dvc" / "cache"
    for obj in sorted((cache / "files" / "md5").rglob("*")):
        if obj.is_file():
            dest = cache / obj.parent.name / obj.name
            dest.parent.mkdir(exist_ok=True)
            obj.rename(dest)
    shutil.rmtree(cache / "files")
    for name in ("dvc.yaml", "dvc.lock"):
        (dvc_repo / name).unlink()
    shutil.rmtree(dvc_repo / "data" / "raw")  # only DVC's cache has it now
    report = cli.json("import-dvc")
    assert report["pipeline"] is None and report["stages"] == [] and not (dvc_repo / "mlv.yaml").exists()
    assert {p["path"] for p in report["pointers"]} == {"data/raw", "data/labels.txt"}
    cli("checkout")
    assert (dvc_repo / "data/raw/sub/c.csv").read_text() == "x,y\n9,9\n"
    assert cli.states() == {"data/raw": "unchanged", "data/labels.txt": "unchanged"}


def test_a_dvc_yaml_mlv_would_refuse_is_exit_2_and_leaves_nothing_behind(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    make_tree(tmp_path, {".dvc/config": "", "params.yaml": "model: {depth: 3, lr: 0.1}\n", "dvc.yaml": """\
stages:
  train:
    cmd: python train.py ${model}
"""})  # DVC unpacks a mapping into --depth 3 --lr 0.1; mlv interpolates single values only
    before = sorted(p.name for p in tmp_path.rglob("*"))
    err = cli("import-dvc", code=2).stderr
    assert "dvc.yaml converts to an mlv.yaml that mlv refuses: mlv.yaml:4:" in err
    assert "'${params.model}' is a mapping" in err and "nothing was written" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_an_existing_pointer_is_kept_unless_forced(dvc_repo, cli):
    (dvc_repo / "data/raw.mlv").write_text("mine\n")
    assert "'data/raw.mlv' exists already; pass --force" in cli("import-dvc", code=2).stderr
    assert (dvc_repo / "data/raw.mlv").read_text() == "mine\n" and not (dvc_repo / "mlv.yaml").exists()


def test_data_only_on_a_dvc_remote_is_listed_and_the_import_says_so(dvc_repo, cli):
    """As on a fresh clone of a public DVC repo (iterative/example-get-started) before `dvc pull`: the data is
    neither in DVC's cache nor in the workspace. The pipeline still comes over, every stage says why it cannot
    run yet, and the exit status is 1: the import ran but left something out."""
    shutil.rmtree(dvc_repo / "data" / "raw")
    shutil.rmtree(dvc_repo / ".dvc" / "cache")
    result = cli("import-dvc", code=1)
    assert "not imported: data/raw:" in result.stdout and "`dvc pull` it" in result.stderr
    report = cli.json("import-dvc", "--force", code=1)
    assert [n["path"] for n in report["not_imported"]] == ["data/raw"]
    prepare = next(s for s in report["stages"] if s["stage"] == "prepare")
    assert prepare["action"] == "blocked" and not prepare["imported"]
    assert any("mlv run refuses the pipeline as it is" in r and "data/raw" in r for r in prepare["reasons"])
    assert (dvc_repo / "mlv.yaml").is_file() and not (dvc_repo / "data/raw.mlv").exists()
