"""When `mlv run` fails: failing stages, --fail-fast, concurrent and killed runs, Ctrl-C, and bad mlv.yaml files.

Stages that must be "in the middle" when something happens wait on a gate file
(``go``) rather than sleeping, so the tests are quick and the timing is decided by the
test, not by luck. A gated command that survives its run would still create its marker
once the gate opens; the tests open it and check that nothing did.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from conftest import ran, read_lock, start_mlv, started, states, stop, wait_for, write_pipeline, xxh3
from helpers import make_tree, run_mlv, snapshot, stored_digests
from mlv.engine import lockfile

#: Wait (at most ~4 s) for the file ``go``; then leave a marker and the output.
GATED = "touch .runs/{name}-started && i=0; while [ ! -e go ] && [ $i -lt 200 ]; do sleep 0.02; i=$((i+1)); done; touch {name}-marker && echo {name} > {name}.txt"


def gated(name: str) -> str:
    return GATED.format(name=name)


@pytest.fixture
def runs(repo: Path) -> Path:
    (repo / ".runs").mkdir()
    return repo


# -- a failing stage ------------------------------------------------------------------------


def test_a_failing_stage_fails_the_run_and_the_rest_of_the_dag_is_consistent(runs, cli):
    repo = runs
    write_pipeline(repo, """\
        stages:
          bad:
            cmd: echo x >> .runs/bad && echo partial > bad.txt && for i in $(seq 1 20); do echo log line $i; done && echo the last words && exit 3
            outs: [bad.txt]
          after:
            cmd: echo x >> .runs/after && cp bad.txt after.txt
            deps: [bad.txt]
            outs: [after.txt]
          ok:
            # finishes only after 'bad' has failed: an independent branch goes on
            cmd: i=0; while [ ! -e .runs/bad ] && [ $i -lt 200 ]; do sleep 0.02; i=$((i+1)); done; sleep 0.3; echo x >> .runs/ok && echo fine > ok.txt
            outs: [ok.txt]
    """)
    result = cli("run", code=1)
    assert "stage 'bad' failed (exit status 3); last lines of its output:" in result.stderr
    tail = [line.removeprefix("  | ") for line in result.stderr.splitlines() if line.startswith("  | ")]
    assert tail[-1] == "the last words" and "log line 20" in tail
    assert "log line 1" not in tail  # the last lines, not the whole log
    assert "`mlv show bad`" in result.stderr

    assert ran(repo) == {"bad": 1, "ok": 1}  # 'after' never ran
    lock = read_lock(repo)
    assert set(lock) == {"ok"}  # the failed stage is not locked, the independent one is
    assert (repo / "ok.txt").read_text() == "fine\n"
    assert xxh3(b"partial\n") not in stored_digests(repo)  # the failed stage's output is not committed
    assert xxh3(b"fine\n") in stored_digests(repo)

    results = cli.json("run", code=1)
    assert states(results) == {"bad": "failed", "after": "skipped", "ok": "up-to-date"}
    after = next(r for r in results if r["stage"] == "after")
    assert after["reasons"] == ["upstream 'bad' failed"]
    bad = cli.json("show", "bad")
    assert (bad["status"], bad["exit_code"]) == ("failed", 3) and "the last words" in bad["output"]


def test_a_stage_that_does_not_write_its_output_fails_saying_so(runs, cli):
    repo = runs
    write_pipeline(repo, """\
        stages:
          lazy:
            cmd: echo working
            outs: [result.txt]
    """)
    result = cli("run", code=1)
    assert "stage 'lazy' failed" in result.stderr
    assert "declared output 'result.txt' was not produced" in result.stderr  # not just "exit status 0"
    assert not (repo / "mlv.lock").exists() or not read_lock(repo)


def test_fail_fast_stops_the_running_and_waiting_stages(runs, cli):
    repo = runs
    write_pipeline(repo, f"""\
        stages:
          bad:
            cmd: i=0; while [ ! -e .runs/slow-started ] && [ $i -lt 200 ]; do sleep 0.02; i=$((i+1)); done; exit 3
          slow:
            cmd: {gated("slow")}
            outs: [slow.txt]
          later:
            cmd: echo x >> .runs/later && cp slow.txt later.txt
            deps: [slow.txt]
            outs: [later.txt]
    """)
    t0 = time.monotonic()
    results = {r["stage"]: r for r in cli.json("run", "--fail-fast", code=1)}
    assert time.monotonic() - t0 < 3.5, "--fail-fast waited for the gated stage"
    assert results["bad"]["state"] == "failed" and results["bad"]["exit_code"] == 3
    assert results["slow"]["state"] in ("failed", "cancelled")  # stopped, not finished
    assert results["later"]["state"] == "skipped"
    (repo / "go").touch()
    time.sleep(0.3)
    assert not (repo / "slow-marker").exists(), "the running command was not stopped"
    assert not (repo / "mlv.lock").exists() or not read_lock(repo)
    assert started(repo) == ["slow"] and "later" not in ran(repo)


# -- two runs, killed runs, Ctrl-C ----------------------------------------------------------


def test_a_second_run_is_refused_while_one_is_running(runs, cli):
    repo = runs
    write_pipeline(repo, f"""\
        stages:
          slow:
            cmd: {gated("slow")}
            outs: [slow.txt]
    """)
    first = start_mlv(repo, "run")
    try:
        wait_for(lambda: (repo / ".runs/slow-started").exists(), what="the first run's stage to start")
        second = cli("run", code=1)
        assert f"another `mlv run` (pid {first.pid}) is running in this repo" in second.stderr
        assert started(repo) == ["slow"]
        (repo / "go").touch()
        _, stderr = first.communicate(timeout=30)
        assert first.returncode == 0, stderr
    finally:
        stop(first)
    assert set(read_lock(repo)) == {"slow"}


def test_a_lock_left_by_a_killed_run_is_reclaimed(runs, cli):
    repo = runs
    write_pipeline(repo, f"""\
        stages:
          slow:
            cmd: {gated("slow")}
            outs: [slow.txt]
    """)
    first = start_mlv(repo, "run")
    try:
        wait_for(lambda: (repo / ".runs/slow-started").exists(), what="the stage to start")
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    finally:
        stop(first)
    assert (repo / ".mlv/run.lock").exists()  # left behind, nothing cleans it up by hand
    (repo / "go").touch()
    assert states(cli.json("run")) == {"slow": "done"}
    assert (repo / "slow.txt").read_text() == "slow\n"
    assert set(read_lock(repo)) == {"slow"}


def test_ctrl_c_kills_the_running_command_and_keeps_store_and_lock_consistent(runs, cli):
    repo = runs
    write_pipeline(repo, f"""\
        stages:
          fast:
            cmd: echo fast > fast.txt
            outs: [fast.txt]
          slow:
            cmd: {gated("slow")}
            outs: [slow.txt]
    """)
    proc = start_mlv(repo, "run")
    try:
        wait_for(lambda: (repo / ".runs/slow-started").exists(), what="the slow stage to start")
        wait_for(lambda: "fast" in lockfile.load(repo), what="the fast stage to be locked")
        proc.send_signal(signal.SIGINT)  # to mlv only, as `kill -INT`: mlv itself must stop the command
        _, stderr = proc.communicate(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    (repo / "go").touch()
    time.sleep(0.3)
    assert not (repo / "slow-marker").exists(), "the running command outlived the interrupted run"

    lock = lockfile.load(repo)  # parses
    assert set(lock) == {"fast"}
    assert str(lock["fast"].outs["fast.txt"].digest) in stored_digests(repo)
    cli("fsck")  # the store is consistent
    # and the next run picks up where it stopped
    assert states(cli.json("run")) == {"fast": "up-to-date", "slow": "done"}


# -- mlv.yaml errors: exit 2, file:line, nothing changes ------------------------------------

VALID = """\
params:
  n: 5
stages:
  prepare:
    cmd: echo x >> .runs/prepare && echo ${params.n} > prepared.txt
    deps: [data/raw.txt]
    outs: [prepared.txt]
"""

BAD = {
    "unknown-key": (
        """\
        stages:
          prepare:
            cmd: echo x >> .runs/prepare && echo 1 > prepared.txt
            deps: [data/raw.txt]
            outz: [prepared.txt]
        """,
        "mlv.yaml:5:5: ", ["unknown key 'outz' in stage 'prepare'", "Did you mean 'outs'?"],
    ),
    "wrong-type": (
        """\
        stages:
          prepare:
            cmd: echo x >> .runs/prepare && echo 1 > prepared.txt
            deps: data/raw.txt
            outs: [prepared.txt]
        """,
        "mlv.yaml:4:11: ", ["'deps' must be a list of paths", "deps: [data/raw.txt]"],
    ),
    "undefined-param": (
        """\
        params:
          n: 5
        stages:
          prepare:
            cmd: echo x >> .runs/prepare && echo ${params.m} > prepared.txt
            deps: [data/raw.txt]
            outs: [prepared.txt]
        """,
        "mlv.yaml:5:", ["'params' has no key 'm'"],
    ),
    "cycle": (
        """\
        stages:
          prepare:
            cmd: echo x >> .runs/prepare && cat data/raw.txt model.txt > prepared.txt
            deps: [data/raw.txt, model.txt]
            outs: [prepared.txt]
          train:
            cmd: echo x >> .runs/train && cp prepared.txt model.txt
            deps: [prepared.txt]
            outs: [model.txt]
        """,
        "mlv.yaml:2", ["cycle", "prepare → train → prepare"],
    ),
    "out-claimed-twice": (
        """\
        stages:
          prepare:
            cmd: echo x >> .runs/prepare && echo 1 > prepared.txt
            outs: [prepared.txt]
          other:
            cmd: echo x >> .runs/other && echo 2 > prepared.txt
            outs: [prepared.txt]
        """,
        "mlv.yaml:", ["'prepared.txt' is an output of both 'prepare' and 'other'"],
    ),
    "dep-nobody-produces": (
        """\
        stages:
          prepare:
            cmd: echo x >> .runs/prepare && echo 1 > prepared.txt
            outs: [prepared.txt]
          train:
            cmd: echo x >> .runs/train && cp prepped.txt model.txt
            deps: [prepped.txt]
            outs: [model.txt]
        """,
        "mlv.yaml:5", ["stage 'train' reads 'prepped.txt', but no stage produces it and it does not exist",
                       "Did you mean 'prepared.txt'?"],
    ),
    "out-outside-repo": (
        """\
        stages:
          prepare:
            cmd: echo x >> .runs/prepare && echo 1 > ../escaped.txt
            outs: [../escaped.txt]
        """,
        "mlv.yaml:4:12: ", ["'../escaped.txt' leads outside the repository"],
    ),
}


@pytest.fixture(scope="module")
def ran_once(tmp_path_factory) -> Path:
    """A repo where VALID ran once, through the real `mlv` script (copied per test)."""
    root = tmp_path_factory.mktemp("base") / "repo"
    root.mkdir()
    assert run_mlv(root, "init", "--no-scm").returncode == 0
    make_tree(root, {"data/raw.txt": "raw\n"})
    (root / ".runs").mkdir()
    write_pipeline(root, VALID)
    proc = run_mlv(root, "run")
    assert proc.returncode == 0, proc.stderr
    return root


@pytest.fixture
def copy(ran_once: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(ran_once, repo, symlinks=True)
    monkeypatch.chdir(repo)
    return repo


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_mlv_yaml_exits_2_naming_file_and_line_and_changes_nothing(copy, cli, case):
    text, where, fragments = BAD[case]
    write_pipeline(copy, text)
    before = snapshot(copy)
    result = cli("run", code=2)
    message = result.stderr
    assert message.startswith(f"error: {where}"), message
    for fragment in fragments:
        assert fragment in message
    assert "Traceback" not in result.output
    assert snapshot(copy) == before
    assert ran(copy) == {"prepare": 1}
    assert not (copy.parent / "escaped.txt").exists()


def test_a_param_cannot_inject_a_shell_command(copy, cli):
    values = {
        "unquoted": "x; touch pwned1",
        "double": "$(touch pwned2) `touch pwned3` \" ; touch pwned4",
        "single": "' ; touch pwned5 ; '",
    }
    write_pipeline(copy, f"""\
        params:
          unquoted: {values['unquoted']!r}
          double: {values['double']!r}
          single: "' ; touch pwned5 ; '"
        stages:
          unquoted:
            cmd: echo ${{params.unquoted}} > unquoted.txt
            outs: [unquoted.txt]
          double:
            cmd: echo "${{params.double}}" > double.txt
            outs: [double.txt]
          single:
            cmd: echo '${{params.single}}' > single.txt
            outs: [single.txt]
    """)
    assert states(cli.json("run")) == dict.fromkeys(values, "done")
    for name, value in values.items():
        assert (copy / f"{name}.txt").read_text() == value + "\n"
    assert sorted(p.name for p in copy.parent.rglob("pwned*")) == []
