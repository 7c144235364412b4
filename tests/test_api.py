"""``mlv.api``: read tracked data at any revision (cache, else the remote, writing nothing), params, metrics,
trace, and log_metric/log_plot from inside a stage. Real repos, real git, the real `mlv` CLI and remotes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import commit_all, git, make_tree, snapshot

from mlv import api
from mlv.storage.errors import MlvError, ObjectCorrupt, ObjectMissing, UsageError

V1 = "id,amount\n1,10\n2,20\n"
V2 = "id,amount\n1,10\n2,20\n3,30\n"
BIG = bytes(range(256)) * 4096  # 1 MiB: a loose object, where the small files are packed


def _two_versions(repo: Path, cli) -> None:
    make_tree(repo, {"data/raw/a.csv": V1, "data/raw/b.csv": "b\n", "model.bin": BIG})
    cli("add", "data/raw", "model.bin")
    commit_all(repo, "v1")
    make_tree(repo, {"data/raw/a.csv": V2, "model.bin": BIG[::-1]})
    cli("add", "data/raw", "model.bin")
    commit_all(repo, "v2")


def test_read_any_revision_from_the_cache(git_repo, cli):
    _two_versions(git_repo, cli)
    assert api.read("data/raw/a.csv", rev="HEAD~1") == V1.encode()
    assert api.read("data/raw/a.csv") == V2.encode()
    assert api.read("model.bin", rev="HEAD~1") == BIG
    with api.open("data/raw/a.csv", rev="HEAD~1", mode="r") as f:
        assert f.readline() == "id,amount\n" and f.read() == V1.split("\n", 1)[1]
    (git_repo / "data/raw/a.csv").write_text("edited, not added\n")
    assert api.read("data/raw/a.csv") == V2.encode()  # the recorded version, from the cache
    assert api.read("data/raw/a.csv", mode="r") == V2


def test_unknown_paths_directories_and_revisions_are_clear_errors(git_repo, cli):
    _two_versions(git_repo, cli)
    with pytest.raises(UsageError, match=r"'data/raw' is a directory"):
        api.read("data/raw")
    with pytest.raises(UsageError, match=r"'data/raw/zzz.csv' is not a file of 'data/raw'"):
        api.read("data/raw/zzz.csv", rev="HEAD~1")
    with pytest.raises(UsageError, match=r"'nothing.txt' is not tracked at [0-9a-f]{12}"):
        api.read("nothing.txt", rev="HEAD")
    with pytest.raises(UsageError, match=r"'no-such-rev' is not a commit"):
        api.read("data/raw/a.csv", rev="no-such-rev")
    with pytest.raises(UsageError, match=r"leads outside the repo"):
        api.read("../x")
    with pytest.raises(UsageError, match=r"mode 'w'"):
        api.open("data/raw/a.csv", mode="w")


def test_a_plain_git_file_is_read_from_git(git_repo, cli):
    make_tree(git_repo, {"src/prep.py": "print(1)\n"})
    commit_all(git_repo, "code")
    (git_repo / "src/prep.py").write_text("print(2)\n")
    assert api.read("src/prep.py", rev="HEAD") == b"print(1)\n"
    assert api.read("src/prep.py") == b"print(2)\n"


@pytest.fixture
def pushed_clone(git_repo, tmp_path, cli, request):
    """Two versions pushed to a remote (a folder, or S3 with ``request.param == "s3"``), and a fresh
    ``git clone`` of the repo with no `mlv pull`: its path."""
    if getattr(request, "param", "folder") == "s3":
        endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
        cli("remote", "add", "origin", f"s3://{bucket}/store", "--endpoint-url", endpoint)
    else:
        cli("remote", "add", "origin", str(tmp_path / "remote"))
    _two_versions(git_repo, cli)
    cli("push", "--all-commits")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(git_repo), str(clone))
    return clone


@pytest.mark.parametrize("pushed_clone", ["folder", "s3"], indirect=True)
def test_a_fresh_clone_streams_from_the_remote_and_writes_nothing(pushed_clone, monkeypatch):
    clone = pushed_clone
    monkeypatch.chdir(clone)
    before = snapshot(clone)
    assert api.read("data/raw/a.csv", rev="HEAD~1") == V1.encode()  # inside a directory: its manifest too
    assert api.read("data/raw/a.csv") == V2.encode()  # the workspace version: not on disk, not cached
    assert api.read("model.bin", rev="HEAD") == BIG[::-1]  # a loose object, streamed
    with api.open("model.bin", rev="HEAD~1") as f:
        assert f.read(10) == BIG[:10] and f.read() == BIG[10:]
    assert snapshot(clone) == before
    assert not (clone / ".mlv/cache").exists() and not (clone / "data/raw").exists()


def test_damaged_remote_bytes_are_refused(pushed_clone, tmp_path, monkeypatch):
    monkeypatch.chdir(pushed_clone)
    from mlv.storage.store.digest import of_bytes

    digest = of_bytes(BIG).hexdigest
    loose = tmp_path / "remote" / digest[:2] / digest[2:]
    data = bytearray(loose.read_bytes())
    data[100] ^= 0xFF
    loose.chmod(0o644)
    loose.write_bytes(bytes(data))
    with pytest.raises(ObjectCorrupt, match=r"on remote 'origin' .* is damaged .* not served"):
        api.read("model.bin", rev="HEAD~1")
    for pack in (tmp_path / "remote").rglob("*.pack"):  # every packed object (the small files, manifests)
        pack.chmod(0o644)
        pack.write_bytes(bytes(b ^ 0xFF for b in pack.read_bytes()))
    with pytest.raises(ObjectCorrupt, match=r"on remote 'origin' .* is damaged"):
        api.read("data/raw/a.csv", rev="HEAD~1")


def test_without_a_remote_missing_data_says_so(git_repo, tmp_path, cli):
    _two_versions(git_repo, cli)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(git_repo), str(clone))
    with pytest.raises(ObjectMissing, match=r"not in the local cache.*no remote configured"):
        api.read("model.bin", repo=clone)


PIPELINE = """\
params:
  lr: {lr}
stages:
  train:
    cmd: {python} train.py
    deps: [train.py]
    params: [lr, epochs]
    metrics: [metrics.json]
"""
TRAIN = """\
import json, yaml
p = yaml.safe_load(open("mlv.yaml"))["params"] | yaml.safe_load(open("params.yaml"))
json.dump({"score": p["lr"] * 10, "epochs": p["epochs"]}, open("metrics.json", "w"))
"""


def test_params_and_metrics_now_and_at_a_revision(git_repo, cli):
    make_tree(git_repo, {"mlv.yaml": PIPELINE.format(lr=0.1, python=sys.executable), "params.yaml": "epochs: 3\n",
                         "train.py": TRAIN})
    cli("run")
    commit_all(git_repo, "lr 0.1")
    (git_repo / "mlv.yaml").write_text(PIPELINE.format(lr=0.2, python=sys.executable))
    cli("run")
    commit_all(git_repo, "lr 0.2")
    assert api.params(rev="HEAD~1") == {"lr": 0.1, "epochs": 3}
    assert api.params() == {"lr": 0.2, "epochs": 3}
    assert api.metrics(rev="HEAD~1") == {"metrics.json": {"score": 1.0, "epochs": 3}}
    assert api.metrics() == json.loads(cli("metrics", "show", "--json").stdout)
    assert api.metrics() == {"metrics.json": {"score": 2.0, "epochs": 3}}
    assert api.read("metrics.json", rev="HEAD~1") == (git_repo / "metrics.json").read_bytes().replace(b"2.0", b"1.0")


def test_trace_is_the_cli_json(git_repo, cli, monkeypatch):
    make_tree(git_repo, {"data/raw.csv": V1, "mlv.yaml": f"""\
stages:
  prep:
    cmd: {sys.executable} -c "open('out.csv','w').write(open('data/raw.csv').read().upper())"
    deps: [data/raw.csv]
    outs: [out.csv]
"""})
    cli("add", "data/raw.csv")
    cli("run")
    traced = api.trace("out.csv")
    assert traced == json.loads(cli("trace", "out.csv", "--json").stdout)
    assert {n["type"] for n in traced["nodes"]} == {"artifact", "run"}
    assert {n.get("path") for n in traced["nodes"]} >= {"out.csv", "data/raw.csv"}
    assert all({"source", "target"} <= set(e) for e in traced["edges"])
    down = api.trace("data/raw.csv", downstream=True)
    assert "out.csv" in {n.get("path") for n in down["nodes"]}
    monkeypatch.chdir(git_repo / "data")  # elsewhere, paths stay relative to the repo root
    assert api.trace("out.csv", repo=git_repo) == traced


STAGE_CODE = """\
from mlv import api
for step in range(3):
    api.log_metric("loss", 1 / (step + 1), step=step)
api.log_metric("acc", 0.9)
api.log_plot("pred", [{"x": 1, "y": 2}, {"x": 2, "y": 3}])
api.log_plot("plots/pred.json", {"x": 3, "y": 5})
"""


def test_log_metric_and_log_plot_inside_a_stage(git_repo, cli):
    make_tree(git_repo, {"train.py": STAGE_CODE, "mlv.yaml": f"""\
stages:
  train:
    cmd: {sys.executable} train.py
    deps: [train.py]
    metrics: [metrics/train.json]
    plots: [plots/loss.tsv, plots/pred.json]
"""})
    cli("run")
    assert json.loads((git_repo / "metrics/train.json").read_text()) == {"loss": 1 / 3, "step": 2, "acc": 0.9}
    assert (git_repo / "plots/loss.tsv").read_text().splitlines() == [
        "step\tloss", "0\t1.0", "1\t0.5", f"2\t{1 / 3}"]
    assert json.loads((git_repo / "plots/pred.json").read_text()) == [{"x": 1, "y": 2}, {"x": 2, "y": 3},
                                                                      {"x": 3, "y": 5}]
    lock = (git_repo / "mlv.lock").read_text()
    assert "metrics/train.json" in lock and "plots/loss.tsv" in lock  # recorded outputs, like any other
    assert api.metrics() == {"metrics/train.json": {"loss": 1 / 3, "step": 2, "acc": 0.9}}


def test_log_metric_refuses_what_it_cannot_record(git_repo, cli, monkeypatch):
    monkeypatch.delenv("MLV_STAGE", raising=False)
    with pytest.raises(MlvError, match="works inside a stage"):
        api.log_metric("acc", 0.5)
    make_tree(git_repo, {"mlv.yaml": "stages:\n  s:\n    cmd: 'true'\n    metrics: [m.json]\n"})
    monkeypatch.setenv("MLV_STAGE", "s")
    with pytest.raises(MlvError, match=r"declares no plots file for 'loss'"):
        api.log_metric("loss", 0.5, step=1)
    with pytest.raises(MlvError, match=r"finite number"):
        api.log_metric("loss", float("nan"))
    with pytest.raises(MlvError, match=r"declares no plots file"):
        api.log_plot("curve", [{"x": 1}])
    assert not (git_repo / "m.json").exists()  # nothing written by a refused call
    monkeypatch.setenv("MLV_ROOT", str(git_repo / "elsewhere"))  # a scratch directory with no mlv.yaml
    with pytest.raises(MlvError, match=r"has no mlv.yaml"):
        api.log_metric("acc", 0.5)


def test_importing_the_api_is_light():
    code = ("import sys, time; t = time.perf_counter(); import mlv.api; dt = time.perf_counter() - t\n"
            "heavy = [m for m in ('fsspec', 'pyarrow', 'sklearn', 'dask', 'numpy') if m in sys.modules]\n"
            "print(dt, heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert out[1].strip() == "[]"
    assert float(out[0]) < 0.5  # ~0.015 s measured; loose bound for a loaded CI machine
