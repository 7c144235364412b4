"""`mlv run` on a real Dask cluster: a `dask scheduler` and two `dask worker` processes on loopback.

One worker offers the resource ``GPU=1`` (no device needed: Dask resources are labels);
stages with ``resources: {gpu: 1}`` must land on it. The workers share this machine's
filesystem and venv, as workers of a real cluster share the repo and the environment.
Also: a GPU stage with no GPU worker fails before anything runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import on_disk, ran, read_lock, record, states, write_pipeline
from mlv.engine import gpus
from helpers import dask_processes, make_tree



@dataclass(frozen=True)
class DaskCluster:
    scheduler: str
    gpu_worker: str
    cpu_worker: str


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory) -> DaskCluster:
    from distributed import Client

    workers = {"gpu": ["--nthreads", "1", "--resources", "GPU=1"], "cpu": ["--nthreads", "1"]}
    with dask_processes(tmp_path_factory.mktemp("dask"), workers) as address:
        with Client(address, timeout="10s") as client:
            info = client.scheduler_info()["workers"]
        by_name = {w["name"]: addr for addr, w in info.items()}
        assert info[by_name["gpu"]]["resources"] == {"GPU": 1}
        yield DaskCluster(address, by_name["gpu"], by_name["cpu"])


GPU_PIPELINE = """\
stages:
  prepare:
    cmd: echo x >> .runs/prepare && cp data/raw.txt prepared.txt
    deps: [data/raw.txt]
    outs: [prepared.txt]
  train:
    cmd: echo x >> .runs/train && cat prepared.txt > model.txt && echo "gpu=$CUDA_VISIBLE_DEVICES" >> model.txt
    deps: [prepared.txt]
    outs: [model.txt]
    resources: {gpu: 1}
"""


@pytest.fixture
def gpu_repo(repo: Path) -> Path:
    make_tree(repo, {"data/raw.txt": "raw\n"})
    (repo / ".runs").mkdir()
    write_pipeline(repo, GPU_PIPELINE)
    return repo


def test_a_gpu_stage_runs_on_the_gpu_worker_of_the_configured_scheduler(gpu_repo, cli, dask_cluster):
    (gpu_repo / "dask-cluster.yaml").write_text(f"scheduler: {dask_cluster.scheduler}\n")
    results = {r["stage"]: r for r in cli.json("run")}
    assert states(results.values()) == {"prepare": "done", "train": "done"}
    train = record(gpu_repo, results["train"]["run_id"])
    assert train["worker"] == dask_cluster.gpu_worker
    assert train["gpu"] == gpus.describe()  # the devices it could see (model, UUID), not a label: none here
    prepare = record(gpu_repo, results["prepare"]["run_id"])
    assert prepare["worker"] == dask_cluster.cpu_worker  # a CPU stage leaves the GPU worker free
    assert prepare["gpu"] is None
    assert set(read_lock(gpu_repo)) == {"prepare", "train"}
    assert (gpu_repo / "model.txt").read_text().startswith("raw\n")


def test_cluster_option_names_a_cluster_file_anywhere(gpu_repo, cli, dask_cluster, tmp_path):
    config = tmp_path / "elsewhere" / "team-cluster.yaml"
    config.parent.mkdir()
    config.write_text(f"# the team's cluster\nscheduler: {dask_cluster.scheduler}\n")
    results = {r["stage"]: r for r in cli.json("run", "--cluster", config)}
    assert states(results.values()) == {"prepare": "done", "train": "done"}
    assert record(gpu_repo, results["train"]["run_id"])["worker"] == dask_cluster.gpu_worker
    assert not (gpu_repo / "dask-cluster.yaml").exists()
    assert "does not exist" in cli("run", "--force", "--cluster", tmp_path / "nope.yaml", code=2).stderr


def test_outputs_of_a_gpu_stage_come_back_from_the_cache_without_a_gpu_worker(gpu_repo, cli, dask_cluster):
    """A teammate without a GPU: everything is cached, so nothing needs a GPU worker."""
    (gpu_repo / "dask-cluster.yaml").write_text(f"scheduler: {dask_cluster.scheduler}\n")
    cli("run")
    model = (gpu_repo / "model.txt").read_bytes()
    (gpu_repo / "dask-cluster.yaml").unlink()  # back to the local cluster, which has no GPU worker
    (gpu_repo / "prepared.txt").unlink()
    (gpu_repo / "model.txt").unlink()
    assert states(cli.json("run")) == {"prepare": "cached", "train": "cached"}
    assert (gpu_repo / "model.txt").read_bytes() == model
    assert ran(gpu_repo) == {"prepare": 1, "train": 1}


STEP_V1 = '''\
def write(deps, outs, params):
    with open(outs[0], "w") as f:
        f.write("v1\\n")
'''


def test_a_call_stage_on_a_long_lived_worker_runs_the_edited_function(repo, cli, dask_cluster):
    """Workers outlive runs: after the module is edited, the stage must run the new code, not the imported one."""
    (repo / "dask-cluster.yaml").write_text(f"scheduler: {dask_cluster.scheduler}\n")
    make_tree(repo, {"edited_step.py": STEP_V1})
    write_pipeline(repo, """\
        stages:
          write:
            call: edited_step:write
            deps: [edited_step.py]
            outs: [out.txt]
            resources: {gpu: 1}   # pinned to one worker, so the second run meets the module imported by the first
    """)
    results = cli.json("run")
    assert states(results) == {"write": "done"}
    assert record(repo, results[0]["run_id"])["worker"] == dask_cluster.gpu_worker
    assert (repo / "out.txt").read_text() == "v1\n"

    (repo / "edited_step.py").write_text(STEP_V1.replace("v1", "v2"))
    assert states(cli.json("run")) == {"write": "done"}
    assert (repo / "out.txt").read_text() == "v2\n"


def test_a_gpu_stage_without_a_gpu_worker_fails_before_anything_runs(gpu_repo, cli):
    """Default local cluster (no dask-cluster.yaml): it has no GPU worker."""
    write_pipeline(gpu_repo, GPU_PIPELINE.split("  train:")[0])  # prepare alone first, so there is a lock to keep
    cli("run")
    write_pipeline(gpu_repo, GPU_PIPELINE)
    (gpu_repo / "data/raw.txt").write_text("raw, edited\n")  # prepare must run again too
    before = on_disk(gpu_repo)

    result = cli("run", code=2)
    message = result.stderr
    assert "'train'" in message and "need a GPU" in message
    assert "dask worker <scheduler-address> --resources GPU=1" in message  # how to start one
    assert "dask-cluster.yaml" in message
    assert ran(gpu_repo) == {"prepare": 1}  # nothing ran, not even the CPU stage upstream
    assert on_disk(gpu_repo) == before  # mlv.lock, outputs and store unchanged


ISOLATED = '''\
import os
import sys
import time


def work(deps, outs, params):
    name = next(iter(params["names"].values()))["name"]
    for i in range(20):
        print(f"{name} line {i}")
        sys.stdout.flush()
        time.sleep(0.01)
    with open("here.txt", "w") as f:  # relative: lands in this stage's own wdir
        f.write(f"{name} {os.getcwd()}\\n")
    assert os.path.samefile(os.path.dirname(outs[0]), os.getcwd())
'''


@pytest.fixture(scope="module")
def wide_worker(tmp_path_factory) -> str:
    """A scheduler and one `dask worker --nthreads 4`: several stages share one worker process."""
    with dask_processes(tmp_path_factory.mktemp("dask-wide"), {"wide": ["--nthreads", "4"]}) as address:
        yield address


def test_eight_call_stages_on_one_multithreaded_worker_keep_their_cwd_and_output(repo, cli, wide_worker):
    (repo / "dask-cluster.yaml").write_text(f"scheduler: {wide_worker}\n")
    make_tree(repo, {"isolated_step.py": ISOLATED})
    stages = "".join(f"  s{i}:\n    call: isolated_step:work\n    wdir: s{i}\n    deps: [../isolated_step.py]\n"
                     f"    outs: [here.txt]\n    params: [names.s{i}]\n" for i in range(8))
    names = "".join(f"    s{i}: {{name: stage{i}}}\n" for i in range(8))
    (repo / "mlv.yaml").write_text(f"params:\n  names:\n{names}stages:\n{stages}")
    for i in range(8):
        (repo / f"s{i}").mkdir()
    results = cli.json("run")
    assert states(results) == {f"s{i}": "done" for i in range(8)}
    workers = {record(repo, r["run_id"])["worker"] for r in results}
    assert len(workers) == 1 and next(iter(workers)).startswith("tcp://")  # one worker process ran them all
    for i in range(8):
        assert (repo / f"s{i}/here.txt").read_text() == f"stage{i} {repo / f's{i}'}\n"
        log = cli.json("show", f"s{i}")["output"]
        assert log.splitlines() == [f"stage{i} line {n}" for n in range(20)]


def test_local_gpu_workers_on_a_machine_without_that_many_gpus_is_exit_2(gpu_repo, cli):
    wanted = len(gpus.visible()) + 1
    (gpu_repo / "dask-cluster.yaml").write_text(f"local: {{gpu_workers: {wanted}}}\n")
    before = on_disk(gpu_repo)
    message = cli("run", code=2).stderr
    assert f"'local.gpu_workers' is {wanted}, but this machine shows" in message and "GPU(s)" in message
    assert ran(gpu_repo) == {}
    assert {k: v for k, v in on_disk(gpu_repo).items() if k != ".mlv/lock"} == before  # no output, object or lock


def test_gpu_pinning_follows_cuda_visible_devices(monkeypatch):
    found = gpus.visible({"PATH": os.environ.get("PATH", "")})
    assert gpus.visible({"PATH": os.environ.get("PATH", ""), "CUDA_VISIBLE_DEVICES": ""}) == []
    if found:
        first = found[0]
        assert gpus.visible({"PATH": os.environ["PATH"], "CUDA_VISIBLE_DEVICES": str(first.index)}) == [first]
        assert gpus.visible({"PATH": os.environ["PATH"], "CUDA_VISIBLE_DEVICES": first.uuid}) == [first]
        assert gpus.describe({"PATH": os.environ["PATH"], "CUDA_VISIBLE_DEVICES": first.uuid}) == str(first)
    else:  # no driver: a pin is a label, recorded as given
        assert gpus.describe({"PATH": "/nonexistent", "CUDA_VISIBLE_DEVICES": "3"}) == "3"


def _dask_cuda() -> bool:
    import importlib.util

    return importlib.util.find_spec("dask_cuda") is not None


@pytest.mark.gpu
@pytest.mark.skipif(not gpus.visible() or not _dask_cuda(), reason="needs a visible GPU and dask-cuda (mlv[gpu])")
def test_a_gpu_stage_on_a_local_gpu_worker_sees_one_device_and_its_record_names_it(gpu_repo, cli):
    (gpu_repo / "dask-cluster.yaml").write_text("local: {gpu_workers: 1}\n")
    results = {r["stage"]: r for r in cli.json("run")}
    assert states(results.values()) == {"prepare": "done", "train": "done"}
    train = record(gpu_repo, results["train"]["run_id"])
    first = gpus.visible()[0]
    assert first.uuid in train["gpu"] and first.name in train["gpu"]  # the device, not a label
    pinned = (gpu_repo / "model.txt").read_text().splitlines()[-1]  # the stage printed its CUDA_VISIBLE_DEVICES
    assert pinned.startswith("gpu=") and "," not in pinned  # one device, pinned by dask-cuda
