"""`workspace: remote`: a cluster whose workers share nothing with the client but an S3 bucket.

Real processes throughout: a `dask scheduler` and two `dask worker` processes, each worker
started in a temp directory of its own (its cwd and `--local-directory`), and a moto S3
server. The repo's raw data (2,000 files) was added and pushed from another clone; the test
clone is a fresh `git clone` that never ran `mlv pull`. Workers reach moto through their
environment (the fake credentials ``s3_endpoint`` puts in ``os.environ``), as a real worker
uses its own AWS profile or role.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from conftest import read_lock, states
from helpers import commit_all, dask_processes, git, make_tree, run_mlv, stored_digests
from mlv.storage.store.digest import of_bytes

RAW = {f"data/raw/part-{i:04d}.txt": f"id={i}\nvalue={i * 7 % 1000}\n" for i in range(2000)}
RAW_DIGESTS = {str(of_bytes(content.encode())) for content in RAW.values()}

FEATURES = '''\
import os


def build(deps, outs, params):
    print(os.getcwd())
    rows = open(deps[0]).read().splitlines()
    values = sorted(int(r.split("=")[1]) for r in rows if r.startswith("value="))
    os.makedirs(os.path.dirname(outs[0]), exist_ok=True)
    with open(outs[0], "w") as f:
        f.write("n,total,max\\n")
        f.write(f"{len(values)},{sum(values)},{values[-1]}\\n")
'''

PIPELINE = """\
stages:
  prepare:
    cmd: pwd && mkdir -p data/prepared && cat data/raw/*.txt | sort > data/prepared/all.txt && ls data/raw | wc -l > data/prepared/count.txt
    deps: [data/raw]
    outs: [data/prepared]
  features:
    call: src.features:build
    deps: [data/prepared/all.txt, src/features.py]
    outs: [features/table.csv]
  report:
    cmd: pwd && cat features/table.csv data/prepared/count.txt > report/summary.txt
    deps: [features/table.csv, data/prepared/count.txt]
    outs: [report/summary.txt]
"""
OUTPUTS = ["data/prepared/all.txt", "data/prepared/count.txt", "features/table.csv", "report/summary.txt"]


def _cluster(home: Path, workers: list[str], env: dict | None = None):
    """A scheduler in ``home`` and one two-thread worker per name, each in ``home/<name>``."""
    with dask_processes(home, {name: ["--nthreads", "2"] for name in workers}, env) as address:
        yield address


@pytest.fixture(scope="module")
def workers_home(tmp_path_factory, s3_endpoint) -> Path:
    return tmp_path_factory.mktemp("workers")


@pytest.fixture(scope="module")
def scheduler(workers_home: Path, s3_endpoint) -> str:
    """Two workers that reach moto with the credentials in the environment, and nothing of any repo."""
    yield from _cluster(workers_home, ["w1", "w2"])


@pytest.fixture(scope="module")
def origin(tmp_path_factory, s3_endpoint) -> Path:
    """A repo whose raw data is added and pushed to a bucket, with the pipeline committed."""
    import boto3

    root = tmp_path_factory.mktemp("team") / "origin"
    root.mkdir()
    bucket = f"mlv-nothing-{os.getpid()}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    git(root, "init", "-q", "-b", "main", ".")
    for args in (["init"], ["remote", "add", "origin", f"s3://{bucket}/store", "--endpoint-url", s3_endpoint]):
        assert run_mlv(root, *args).returncode == 0
    make_tree(root, RAW)
    make_tree(root, {"src/features.py": FEATURES, "mlv.yaml": PIPELINE})
    added = run_mlv(root, "add", "data/raw")
    assert added.returncode == 0, added.stderr
    commit_all(root, "raw data and the pipeline")
    pushed = run_mlv(root, "push", timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    return root


def clone(origin: Path, where: Path, cluster: str | None = None) -> Path:
    git(where, "clone", "-q", os.fspath(origin), os.fspath(where / "clone"))
    dst = where / "clone"
    if cluster is not None:
        (dst / "dask-cluster.yaml").write_text(f"scheduler: {cluster}\nworkspace: remote\n")
    return dst


def outputs(repo: Path) -> dict[str, bytes]:
    return {p: (repo / p).read_bytes() for p in OUTPUTS}


@pytest.fixture(scope="module")
def shared_outputs(origin: Path, tmp_path_factory) -> dict[str, bytes]:
    """The same pipeline run the usual way: pulled, then run by threads on this machine's repo."""
    repo = clone(origin, tmp_path_factory.mktemp("shared"))
    assert run_mlv(repo, "pull", timeout=120).returncode == 0
    ran = run_mlv(repo, "run", timeout=120)
    assert ran.returncode == 0, ran.stderr
    return outputs(repo)


class Watch:
    """Notes, from another thread, whether a path ever appears while the run goes on."""

    def __init__(self, path: Path) -> None:
        self.path, self.seen, self.stop = path, False, threading.Event()
        self.thread = threading.Thread(target=self._look, daemon=True)
        self.thread.start()

    def _look(self) -> None:
        while not self.stop.wait(0.005):
            self.seen |= self.path.exists()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def stage_cwd(cli, stage: str) -> str:
    return cli.json("show", stage)["output"].splitlines()[0]


def test_a_fresh_clone_runs_on_workers_that_share_only_the_bucket(origin, scheduler, workers_home, shared_outputs,
                                                                  tmp_path, cli, monkeypatch):
    repo = clone(origin, tmp_path, scheduler)
    monkeypatch.chdir(repo)
    with Watch(repo / "data" / "raw") as raw:
        results = cli.json("run")
    assert states(results) == {"prepare": "done", "features": "done", "report": "done"}
    assert not raw.seen and not (repo / "data" / "raw").exists()
    assert not RAW_DIGESTS & stored_digests(repo), "raw bytes went through the client's store"
    for stage in ("prepare", "features", "report"):
        cwd = stage_cwd(cli, stage)
        assert cwd.startswith(os.fspath(workers_home)) and "/jobs/" in cwd, f"{stage} ran in {cwd}"
        assert not cwd.startswith(os.fspath(repo))
        assert not Path(cwd).exists(), "the scratch directory outlived the job"
    workers = {_record(repo, r["run_id"])["worker"] for r in results}
    assert all(w.startswith("tcp://") for w in workers)
    assert outputs(repo) == shared_outputs  # checked out after each stage, byte-identical to a shared run
    pushed = cli.json("push", "--dry-run")  # pointers and lock: everything they name is on the bucket already
    assert pushed["ok"] and pushed["objects"] == 0
    trace = cli.json("trace", "report/summary.txt")
    assert {n["stage"] for n in trace["nodes"] if n["type"] == "run"} == {"prepare", "features", "report"}
    assert any(n.get("origin") == "added" and n["path"] == "data/raw" for n in trace["nodes"])
    assert states(cli.json("run")) == {"prepare": "up-to-date", "features": "up-to-date", "report": "up-to-date"}


def test_no_download_leaves_outputs_on_the_bucket_until_pulled(origin, scheduler, shared_outputs, tmp_path, cli,
                                                               monkeypatch):
    repo = clone(origin, tmp_path, scheduler)
    monkeypatch.chdir(repo)
    results = cli.json("run", "--no-download")
    assert states(results) == {"prepare": "done", "features": "done", "report": "done"}
    assert not any((repo / p).exists() for p in [*OUTPUTS, "data/raw"])
    lock = read_lock(repo)
    assert set(lock) == {"prepare", "features", "report"}
    assert all(_record(repo, r["run_id"])["status"] == "succeeded" for r in results)
    assert states(cli.json("run", "--no-download")) == {s: "up-to-date" for s in lock}
    for target in ("report/summary.txt", lock["report"]["outs"]["report/summary.txt"]["digest"]):  # path: by the lock
        trace = cli.json("trace", target)
        assert {n["stage"] for n in trace["nodes"] if n["type"] == "run"} == {"prepare", "features", "report"}
    cli("pull", "report/summary.txt", "features/table.csv", "data/prepared")
    assert outputs(repo) == shared_outputs
    assert not (repo / "data" / "raw").exists()


def test_remote_workspace_without_a_default_remote_is_exit_2_before_anything_runs(origin, scheduler, tmp_path, cli,
                                                                                   monkeypatch):
    repo = clone(origin, tmp_path, scheduler)
    monkeypatch.chdir(repo)
    cli("remote", "remove", "origin")
    message = cli("run", code=2).stderr
    assert "'workspace: remote'" in message and "no default remote" in message
    assert "mlv remote add NAME URL" in message and "Nothing ran" in message
    assert not (repo / "mlv.lock").exists() and not (repo / ".mlv" / "runs").exists()
    (repo / "dask-cluster.yaml").write_text("workspace: everywhere\n")
    assert "'workspace' must be shared" in cli("run", code=2).stderr
    (repo / "dask-cluster.yaml").unlink()
    assert "--no-download" in cli("run", "--no-download", code=2).stderr


@pytest.fixture(scope="module")
def scheduler_without_credentials(tmp_path_factory, s3_endpoint):
    """One worker whose environment holds no AWS credentials: it cannot reach the bucket."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true")
    yield from _cluster(tmp_path_factory.mktemp("lonely"), ["lonely"], env)


def test_a_worker_that_cannot_reach_the_remote_fails_its_stage_with_one_line(origin, scheduler_without_credentials,
                                                                            tmp_path, cli, monkeypatch):
    repo = clone(origin, tmp_path, scheduler_without_credentials)
    monkeypatch.chdir(repo)
    result = cli("run", code=1)
    lines = [line for line in result.stderr.splitlines() if "stage 'prepare' failed" in line]
    assert len(lines) == 1 and "remote 'origin'" in lines[0] and "credentials" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    results = {r["stage"]: r for r in cli.json("run", code=1)}
    assert states(results.values()) == {"prepare": "failed", "features": "skipped", "report": "skipped"}
    assert results["prepare"]["exit_code"] is None  # it never started
    assert not (repo / "mlv.lock").exists()


def _record(repo: Path, run_id: str) -> dict:
    return json.loads((repo / ".mlv" / "runs" / f"{run_id}.json").read_text())


LAYOUT = """\
stages:
  split:
    cmd: mkdir -p parts/a parts/b && cp data/raw/part-0001.txt parts/a/one.txt && cp data/raw/part-0002.txt parts/b/two.txt
    deps: [data/raw/part-0001.txt, data/raw/part-0002.txt]
    outs: [parts]
  inside:
    cmd: >-
      printf '{"n": 1}' > ../metrics.json && pwd > ../seen.txt && ls -R . >> ../seen.txt && cat a/one.txt > ../picked.txt
    wdir: parts
    deps: [a]
    outs: [../picked.txt, ../seen.txt]
    metrics: [../metrics.json]
  nosy:
    cmd: cat mlv.yaml > nosy.txt
    deps: [picked.txt]
    outs: [nosy.txt]
"""


def test_a_stage_sees_exactly_its_deps_laid_out_by_digest(origin, tmp_path, cli, monkeypatch):
    """Local threads, no cluster: files inside tracked data the clone never pulled, a folder inside an
    upstream output, a stage with a wdir of its own; a stage reading what it did not declare fails."""
    repo = clone(origin, tmp_path)
    (repo / "dask-cluster.yaml").write_text("workspace: remote\n")
    (repo / "mlv.yaml").write_text(LAYOUT)
    monkeypatch.chdir(repo)
    results = {r["stage"]: r for r in cli.json("run", code=1)}
    assert states(results.values()) == {"split": "done", "inside": "done", "nosy": "failed"}
    assert (repo / "picked.txt").read_text() == RAW["data/raw/part-0001.txt"]
    seen = (repo / "seen.txt").read_text().splitlines()
    assert seen[0].endswith("/work/parts") and not seen[0].startswith(os.fspath(repo))
    assert "one.txt" in seen and "two.txt" not in seen  # parts/a only, as declared
    assert json.loads((repo / "metrics.json").read_text()) == {"n": 1}
    assert "mlv.yaml: No such file" in cli.json("show", "nosy")["output"]  # not declared: not there
    assert not (repo / "data" / "raw").exists()
