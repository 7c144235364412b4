"""`--help` documents every positional argument; typer's shell completion is on and costs start-up nothing."""

from __future__ import annotations

import click
import typer.main
from helpers import run_mlv

from mlv.cli.main import app


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_positional_argument_shows_its_help(cli):
    checked = 0
    for words, command in _commands(typer.main.get_command(app)):
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        if not arguments:
            continue
        shown = cli(*words, "--help").stdout
        for argument in arguments:
            assert argument.help, f"`mlv {' '.join(words)}`: argument {argument.name} has no help text"
            first_words = " ".join(argument.help.split()[:3])
            assert first_words in " ".join(shown.split()), f"`mlv {' '.join(words)} --help` lacks {argument.name}'s help"
            checked += 1
        assert shown.count("Arguments:") == 1 and "Positional arguments" not in shown  # listed once
    assert checked >= 20  # add, trace, log, params diff, score, serve, config, ...


def test_show_completion_prints_a_bash_script_for_mlv(tmp_path):
    proc = run_mlv(tmp_path, "--show-completion", "bash")
    assert proc.returncode == 0, proc.stderr
    assert "complete" in proc.stdout and "_MLV_COMPLETE" in proc.stdout and "mlv" in proc.stdout


def test_completion_completes_command_names(tmp_path):
    import os
    import subprocess

    from helpers import MLV

    env = {**os.environ, "_MLV_COMPLETE": "complete_bash", "COMP_WORDS": "mlv con", "COMP_CWORD": "1"}
    proc = subprocess.run([str(MLV)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert "config" in proc.stdout.split()
