"""`mlv run` shows stages' output while they run; `mlv show` for people; the files to commit.

Stage output is read from the real `mlv` process's stdout pipe, line by line. Stages and test
talk through files (a handshake, not a sleep): a stage prints, then waits until the test has
read that line from the pipe and answered — so a run that only showed output at the end
would never see the answer, and the test fails rather than passing by luck of timing.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest
from helpers import MLV, commit_all, dask_processes, git, make_tree, run_mlv

SECRET = "s3cr3t-value-9f8e7d"
WAIT = 'n=0; until [ -e {f} ]; do sleep 0.05; n=$((n+1)); [ $n -gt 400 ] && echo "no {f}" && exit 3; done'


def wait_for(f: str) -> str:
    """Shell: wait until file ``f`` exists (at most 20 s, then exit 3 naming it)."""
    return WAIT.format(f=f)


def start(repo: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([os.fspath(MLV), "run", *args], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})}, text=True, bufsize=1)


def read_line(proc: subprocess.Popen, timeout: float = 30) -> str:
    """The next stdout line of ``proc``, failing the test if none comes within ``timeout`` s."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no line from `mlv run` within {timeout} s"
    line = proc.stdout.readline()
    assert line, f"`mlv run` closed its stdout early; stderr: {proc.stderr.read()}"
    return line.rstrip("\n")


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{rest}\n{err}"
    return rest, err


def pipeline(repo: Path, text: str) -> None:
    (repo / "mlv.yaml").write_text(text)


def handshake_stage(name: str = "talk") -> str:
    return f"""\
stages:
  {name}:
    cmd: echo "first line, token=$MY_API_TOKEN"; {wait_for('answer')}; echo done > out.txt; echo "last line"
    outs: [out.txt]
"""


def check_handshake(repo: Path, *args: str) -> tuple[str, str]:
    """Run the handshake stage: its first line must reach the pipe while the stage still waits for us."""
    proc = start(repo, *args, env={"MY_API_TOKEN": SECRET})
    try:
        first = read_line(proc)
        assert not (repo / "out.txt").exists()  # the stage has not finished: it is waiting for this answer
        (repo / "answer").touch()
        assert first == "first line, token=***"  # alone: no prefix; masked in the stream as in the log
        rest, err = finish(proc)
    finally:
        proc.kill()
        proc.wait()
    assert rest.splitlines()[0] == "last line"
    assert SECRET not in rest + err + first
    return rest, err


def test_a_stage_line_reaches_the_pipe_while_the_stage_runs_masked_and_unprefixed(git_repo):
    pipeline(git_repo, handshake_stage())
    started = time.monotonic()
    rest, _ = check_handshake(git_repo)
    assert time.monotonic() - started < 60
    assert "1 done" in rest
    log = json.loads(run_mlv(git_repo, "show", "talk", "--json").stdout)["output"]
    assert log.splitlines() == ["first line, token=***", "last line"]  # the log keeps what the stream showed


def test_a_stage_on_a_local_dask_cluster_of_processes_streams_too(repo):
    (repo / "dask-cluster.yaml").write_text("local: {processes: true, workers: 1}\n")
    pipeline(repo, handshake_stage())
    check_handshake(repo)
    assert json.loads(run_mlv(repo, "show", "talk", "--json").stdout)["worker"].startswith("tcp://")


def test_a_stage_on_a_remote_scheduler_streams_through_it(repo, tmp_path_factory):
    env = {**os.environ, "MY_API_TOKEN": SECRET}  # the worker's own environment: what its stages see and mask
    with dask_processes(tmp_path_factory.mktemp("dask"), {"w": ["--nthreads", "1"]}, env=env) as address:
        (repo / "cluster.yaml").write_text(f"scheduler: {address}\n")
        pipeline(repo, handshake_stage())
        check_handshake(repo, "--cluster", "cluster.yaml")
        from distributed import Client

        with Client(address, timeout="10s") as client:  # the run's topic left the scheduler with the run
            assert [t for t in client.get_events() if t.startswith("mlv-output")] == []
    assert json.loads(run_mlv(repo, "show", "talk", "--json").stdout)["status"] == "succeeded"


def test_two_stages_running_together_prefix_their_lines_with_their_names(repo):
    # each prints only once the other has started, and ends only once the other has printed:
    # both are running whenever either prints
    pipeline(repo, f"""\
stages:
  left:
    cmd: touch a.on; {wait_for('b.on')}; echo "hello from a"; touch a.said; {wait_for('b.said')}; echo x > a.txt
    outs: [a.txt]
  right:
    cmd: touch b.on; {wait_for('a.on')}; echo "hello from b"; touch b.said; {wait_for('a.said')}; echo x > b.txt
    outs: [b.txt]
""")
    proc = start(repo, "-j", "2")
    rest, _ = finish(proc)
    lines = rest.splitlines()
    assert "left | hello from a" in lines and "right | hello from b" in lines, rest
    assert lines[-1] == "2 done"


def test_quiet_shows_no_stage_output_and_no_progress_but_still_runs_and_logs(repo):
    pipeline(repo, """\
stages:
  chatty:
    cmd: echo "something to say"; echo x > out.txt
    outs: [out.txt]
""")
    done = run_mlv(repo, "run", "-q")
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    assert json.loads(run_mlv(repo, "show", "chatty", "--json").stdout)["output"] == "something to say\n"
    (repo / "mlv.yaml").write_text((repo / "mlv.yaml").read_text().replace("echo x > out.txt", "exit 4"))
    failed = run_mlv(repo, "run", "--quiet")
    assert failed.returncode == 1 and failed.stdout == ""
    assert "stage 'chatty' failed (exit status 4)" in failed.stderr and "something to say" in failed.stderr


def test_json_keeps_stdout_for_the_result_and_sends_stage_output_to_stderr(repo):
    pipeline(repo, """\
stages:
  chatty:
    cmd: echo "something to say"; echo x > out.txt
    outs: [out.txt]
""")
    done = run_mlv(repo, "run", "--json")
    assert [r["state"] for r in json.loads(done.stdout)] == ["done"]
    assert done.stderr.splitlines() == ["something to say"]


# -- mlv show ---------------------------------------------------------------------------------
def test_show_prints_a_summary_tree_and_the_output_for_people_and_the_record_as_json(git_repo):
    make_tree(git_repo, {"data.csv": "x\n1\n2\n"})
    assert run_mlv(git_repo, "add", "data.csv").returncode == 0
    pipeline(git_repo, """\
params: {epochs: 3}
stages:
  train:
    cmd: echo "training for ${params.epochs} epochs"; cp data.csv model.txt
    deps: [data.csv]
    outs: [model.txt]
""")
    assert run_mlv(git_repo, "run").returncode == 0
    record = json.loads(run_mlv(git_repo, "show", "train", "--json").stdout)
    assert record["output"] == "training for 3 epochs\n" and record["stage"] == "train"
    assert set(record) >= {"run_id", "fingerprint", "definition", "deps", "outs", "status", "started", "ended", "log"}
    human = run_mlv(git_repo, "show", record["run_id"]).stdout
    fields = dict(re.findall(r"^(\w+) {2,}(.+)$", human.partition("\n--- output ---")[0], re.MULTILINE))
    assert fields["run"] == record["run_id"] and fields["stage"] == "train"
    assert fields["status"] == "succeeded (exit 0)"
    started = fields["started"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", started), started
    assert fields["duration"] == f"{record['ended'] - record['started']:.2f} s"
    assert fields["ran"] == '$ echo "training for 3 epochs"; cp data.csv model.txt'
    dep_digest = record["deps"]["data.csv"].partition(":")[2]
    out_digest = record["outs"]["model.txt"]["digest"].partition(":")[2]
    assert f"data.csv  {dep_digest[:8]}  ← data.csv.mlv" in human and dep_digest not in human
    assert f"model.txt  {out_digest[:8]}  6 B" in human
    assert "epochs = 3" in human
    assert human.endswith("--- output ---\ntraining for 3 epochs\n")


# -- files to commit ----------------------------------------------------------------------------
def hint(stdout: str) -> list[str]:
    """The files of the closing `git add` advice ([] when there is none)."""
    _, found, after = stdout.partition("To track the changes with git, run:\n  git add ")
    return after.splitlines()[0].split() if found else []


def test_run_names_the_files_it_changed_for_git_and_only_those(git_repo):
    make_tree(git_repo, {"data/raw.csv": "x\n1\n"})
    assert hint(run_mlv(git_repo, "add", "data/raw.csv").stdout) == ["data/.gitignore", "data/raw.csv.mlv"]
    pipeline(git_repo, """\
stages:
  train:
    cmd: mkdir -p models metrics && cp data/raw.csv models/m.txt && echo '{"acc":1}' > metrics/train.json
    deps: [data/raw.csv]
    outs: [models/m.txt]
    metrics: [metrics/train.json]
""")
    first = run_mlv(git_repo, "run")
    assert hint(first.stdout) == ["metrics/train.json", "mlv.lock", "models/.gitignore"], first.stdout
    commit_all(git_repo, "first run")
    assert hint(run_mlv(git_repo, "run").stdout) == []  # nothing ran, nothing changed
    (git_repo / "data/raw.csv").write_text("x\n2\n")  # tracked data changed: saved again before the run
    again = run_mlv(git_repo, "run")
    assert hint(again.stdout) == ["data/raw.csv.mlv", "mlv.lock"], again.stdout  # same metrics bytes: not named
    assert sorted(git(git_repo, "status", "--porcelain").split()[1::2]) == ["data/raw.csv.mlv", "mlv.lock"]


def test_add_names_the_pointer_and_the_gitignore_it_changed_and_nothing_outside_git(git_repo, repo):
    make_tree(git_repo, {"a.csv": "1\n", "b.csv": "2\n"})
    assert hint(run_mlv(git_repo, "add", "a.csv").stdout) == [".gitignore", "a.csv.mlv"]
    assert hint(run_mlv(git_repo, "add", "b.csv").stdout) == [".gitignore", "b.csv.mlv"]
    assert hint(run_mlv(git_repo, "add", "a.csv").stdout) == []  # the same bytes: nothing changed
    (git_repo / "a.csv").write_text("3\n")
    assert hint(run_mlv(git_repo, "add", "a.csv").stdout) == ["a.csv.mlv"]  # .gitignore has it already
    make_tree(repo, {"c.csv": "1\n"})  # not a git repo: no advice
    plain = run_mlv(repo, "add", "c.csv")
    assert plain.returncode == 0 and "git add" not in plain.stdout


@pytest.fixture
def repo(tmp_path, cli):
    """A plain mlv repo (no git) for subprocess runs; the cwd is left alone."""
    root = tmp_path / "plain"
    root.mkdir()
    done = run_mlv(root, "init", "--no-scm")
    assert done.returncode == 0, done.stderr
    return root


def test_a_reader_that_leaves_early_does_not_fail_the_stage(repo):
    pipeline(repo, f"""\
stages:
  talk:
    cmd: echo one; {wait_for('answer')}; echo two; echo three; echo x > out.txt
    outs: [out.txt]
""")
    proc = start(repo)
    try:
        assert read_line(proc) == "one"
        proc.stdout.close()  # as `mlv run | head -1` does
        (repo / "answer").touch()
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    record = json.loads(run_mlv(repo, "show", "talk", "--json").stdout)
    assert record["status"] == "succeeded" and record["output"] == "one\ntwo\nthree\n"
