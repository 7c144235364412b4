"""The kind seam: a user's package registers a stage kind through the ``mlv.kinds`` entry points and
``mlv run`` carries it out in the stage's own process, as it does mlv's built-in kinds."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

KIND = '''
from mlv.pipelines.kinds import Kind
UPPER = Kind("upper", inputs=("data",), outputs=("out",), keys=("suffix",), required=("data", "out"),
             check="upperkind_mod:check", run="upperkind_mod:run", preflight="upperkind_mod:preflight")

def check(settings):
    from mlv.pipelines.kinds import SettingError
    if not isinstance(settings.get("suffix", ""), str):
        raise SettingError("suffix", "must be text")

def preflight(settings, stage):
    from mlv.pipelines.kinds import SettingError
    if settings.get("suffix") == "refuse":
        raise SettingError("suffix", "'refuse' is refused before anything runs")

def run(settings, stage):
    import json, os
    from mlv.pipelines.kinds import SettingError
    if settings.get("suffix") == "bad":
        raise SettingError("suffix", "'bad' is a bad suffix")
    text = open(settings["data"]).read().upper() + settings.get("suffix", "")
    with open(settings["out"], "w") as f:
        f.write(text)
    with open("context.json", "w") as f:
        json.dump({"cwd": os.getcwd(), **stage}, f)
'''


@pytest.fixture
def user_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny package installed into a site directory this process and the stages' processes both see."""
    site = tmp_path / "site"
    (site / "upperkind-1.0.dist-info").mkdir(parents=True)
    (site / "upperkind-1.0.dist-info/METADATA").write_text("Metadata-Version: 2.1\nName: upperkind\nVersion: 1.0\n")
    (site / "upperkind-1.0.dist-info/entry_points.txt").write_text("[mlv.kinds]\nupper = upperkind_mod:UPPER\n")
    (site / "upperkind_mod.py").write_text(KIND)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))


def pipeline(repo: Path, suffix: str) -> None:
    (repo / "mlv.yaml").write_text(textwrap.dedent(f"""\
        stages:
          up:
            kind: upper
            data: in.txt
            suffix: "{suffix}"
            out: sub/out.txt
            wdir: work
        """))


def test_a_users_kind_runs_in_its_own_process_with_its_inputs_named(repo, cli, user_kind):
    (repo / "work").mkdir()
    (repo / "work/in.txt").write_text("hello\n")
    cli("add", "work/in.txt")
    pipeline(repo, "!")
    cli("run")
    assert (repo / "work/sub/out.txt").read_text() == "HELLO\n!"
    context = json.loads((repo / "work/context.json").read_text())
    assert context["cwd"] == str(repo / "work") and context["name"] == "up" and context["line"] == 2
    pointer = yaml.safe_load((repo / "work/in.txt.mlv").read_text())
    assert context["inputs"] == {"work/in.txt": {"digest": pointer["digest"], "run": None}}  # added data: no run
    lock = yaml.safe_load((repo / "mlv.lock").read_text())["stages"]["up"]
    assert list(lock["outs"]) == ["work/sub/out.txt"] and list(lock["deps"]) == ["work/in.txt"]
    records = sorted((repo / ".mlv/runs").iterdir())
    cli("run")
    assert sorted((repo / ".mlv/runs").iterdir()) == records  # up to date: nothing ran


def test_a_setting_a_kind_refuses_names_the_stage_and_setting(repo, cli, user_kind):
    (repo / "work").mkdir()
    (repo / "work/in.txt").write_text("hello\n")
    pipeline(repo, "refuse")
    result = cli("run", code=2)
    assert "mlv.yaml:2: stage 'up', 'suffix': 'refuse' is refused before anything runs" in result.stderr
    assert not (repo / "mlv.lock").exists()
    pipeline(repo, "bad")
    result = cli("run", code=1)
    assert "'suffix': 'bad' is a bad suffix" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
