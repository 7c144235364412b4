"""The console script loads only the command it runs (mlv.cli.entry), and still knows them all."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import MLV, run_mlv

from mlv.cli import entry
from mlv.cli.main import COMMAND_MODULES, app


def _modules_of(typer_app) -> set[str]:
    """The modules whose functions a (sub)app's commands call."""
    found = {info.callback.__module__ for info in typer_app.registered_commands}
    for group in typer_app.registered_groups:
        found |= _modules_of(group.typer_instance)
    return found


def test_every_command_module_is_listed():
    """COMMAND_MODULES is exactly the modules whose functions are commands (helpers like progress bars aren't)."""
    assert _modules_of(app) == {f"mlv.cli.{name}" for name in COMMAND_MODULES}


def test_each_first_word_maps_to_every_module_that_defines_it():
    names = {info.name for info in app.registered_commands} | {g.name for g in app.registered_groups}
    assert names == set(entry.MODULES), "mlv.cli.entry.MODULES is out of date with the commands"
    for info in app.registered_commands:
        assert {info.callback.__module__} <= {f"mlv.cli.{m}" for m in entry.MODULES[info.name]}, info.name
    for group in app.registered_groups:
        assert _modules_of(group.typer_instance) <= {f"mlv.cli.{m}" for m in entry.MODULES[group.name]}, group.name


def test_what_the_script_loads_for_a_command_line():
    assert entry.modules_for(["mlv", "--version"], {}) == ()
    assert entry.modules_for(["mlv", "status", "--json"], {}) == ("data",)
    assert entry.modules_for(["mlv", "metrics", "show"], {}) == ("trace", "experiments")
    assert entry.modules_for(["mlv", "--help"], {}) is None
    assert entry.modules_for(["mlv"], {}) is None
    assert entry.modules_for(["mlv", "statu"], {}) is None  # unknown: everything, so click can suggest
    assert entry.modules_for(["mlv", "status"], {"_MLV_COMPLETE": "bash_complete"}) is None


def test_status_through_the_script_loads_one_command_module(tmp_path):
    code = ("import sys\nsys.argv = ['mlv', 'status']\nfrom mlv.cli.entry import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('LOADED=' + ','.join(sorted(m for m in sys.modules if m.startswith('mlv.cli.'))))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "LOADED=mlv.cli.data,mlv.cli.entry,mlv.cli.main"


def test_the_script_still_helps_and_suggests(tmp_path):
    helped = run_mlv(tmp_path, "--help")
    assert helped.returncode == 0
    for name in entry.MODULES:
        assert name in helped.stdout
    wrong = run_mlv(tmp_path, "statu")
    assert wrong.returncode == 2 and wrong.stderr.count("Did you mean 'status'?") == 1  # once: click's, not typer's too
    wrong = run_mlv(tmp_path, "remote", "ad")
    assert wrong.returncode == 2 and wrong.stderr.count("Did you mean 'add'?") == 1
    assert run_mlv(tmp_path, "--version").stdout.startswith("mlv ")
    assert "Usage: mlv status" in run_mlv(tmp_path, "status", "--help").stdout
    assert MLV.is_file()


def test_shell_completion_through_the_script_sees_every_command(tmp_path):
    env = {**os.environ, "_MLV_COMPLETE": "complete_bash", "COMP_WORDS": "mlv sta", "COMP_CWORD": "1"}
    proc = subprocess.run([str(MLV)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["status"]
