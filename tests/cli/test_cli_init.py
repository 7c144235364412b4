"""`mlv init`: creates .mlv/, keeps mlv's own files out of git, is idempotent, refuses nesting."""

from __future__ import annotations

from pathlib import Path

import yaml
from helpers import git, git_init, make_tree, snapshot


def test_init_in_a_plain_directory(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    result = cli("init", "--no-scm")
    assert "Initialized" in result.stdout
    assert (tmp_path / ".mlv").is_dir()
    assert yaml.safe_load((tmp_path / ".mlv/config.yaml").read_text())["cache"]["dir"] == "cache"
    assert (tmp_path / ".mlv/cache").is_dir()
    assert not (tmp_path / ".mlv/.gitignore").exists()  # not in git: nothing to ignore


def test_init_with_a_path_argument(tmp_path, monkeypatch, cli):
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path)
    cli("init", "project", "--no-scm")
    assert (tmp_path / "project/.mlv/config.yaml").is_file()
    assert not (tmp_path / ".mlv").exists()


def test_init_of_a_directory_that_does_not_exist_yet(tmp_path, monkeypatch, cli):
    """Like `git init newdir`: create it, or refuse with a clear usage error; never a traceback."""
    monkeypatch.chdir(tmp_path)
    result = cli.runner.invoke(cli.app, ["init", "newproject", "--no-scm"])
    assert not isinstance(result.exception, FileNotFoundError), result.exception
    if result.exit_code == 0:
        assert (tmp_path / "newproject/.mlv/config.yaml").is_file()
    else:
        assert result.exit_code == 2 and "newproject" in result.stderr


def test_init_inside_git_ignores_mlv_internals(git_repo, cli):
    ignore = (git_repo / ".mlv/.gitignore").read_text().splitlines()
    for entry in ("/cache/", "/state.db*", "/tmp/", "/lock", "/config.local.yaml"):
        assert entry in ignore
    untracked = git(git_repo, "status", "--porcelain", "--untracked-files=all").split("\n")
    assert sorted(line for line in untracked if line) == ["?? .mlv/.gitignore", "?? .mlv/config.yaml"]


def test_after_add_git_sees_only_pointers_config_and_ignores(git_repo, cli):
    make_tree(git_repo, {"data/raw/a.csv": "x\n1\n", "data/raw/b.csv": "y\n2\n", "model.bin": b"\0" * 10})
    cli("add", "data/raw", "model.bin")
    cli("status")
    untracked = git(git_repo, "status", "--porcelain", "--untracked-files=all").split("\n")
    assert sorted(line[3:] for line in untracked if line) == [
        ".gitignore", ".mlv/.gitignore", ".mlv/config.yaml", "data/.gitignore", "data/raw.mlv", "model.bin.mlv",
    ]


def test_init_is_idempotent(git_repo, cli):
    make_tree(git_repo, {"a.csv": "a"})
    cli("add", "a.csv")
    (git_repo / ".mlv/config.yaml").write_text("gc: {grace: 5}\n")  # a user's edit survives
    before = snapshot(git_repo)
    result = cli("init")
    assert "Already initialized" in result.stdout
    assert snapshot(git_repo) == before


def test_nested_init_is_refused(repo, cli, monkeypatch):
    (repo / "sub/deeper").mkdir(parents=True)
    monkeypatch.chdir(repo / "sub/deeper")
    before = snapshot(repo)
    result = cli("init", code=2)
    assert "nested" in result.stderr and str(repo) in result.stderr
    assert "Traceback" not in result.output
    assert snapshot(repo) == before
    result = cli("init", str(repo / "sub"), code=2)
    assert snapshot(repo) == before


def test_commands_before_init_are_usage_errors(tmp_path, monkeypatch, cli):
    make_tree(tmp_path, {"data/a.csv": "a"})
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    for args in (["add", "data"], ["status"], ["checkout"], ["fsck"], ["gc"]):
        result = cli(*args, code=2)
        assert "mlv init" in result.stderr, args
    assert snapshot(tmp_path) == before


def test_git_init_after_mlv_init_still_works(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    cli("init", "--no-scm")
    git_init(tmp_path)
    make_tree(tmp_path, {"data/a.csv": "a"})
    cli("add", "data")
    assert "/data" in (tmp_path / ".gitignore").read_text().splitlines()
    assert Path(tmp_path / "data.mlv").is_file()
    cli("init")  # re-running init once the repo is in git adds mlv's own ignores
    assert "/cache/" in (tmp_path / ".mlv/.gitignore").read_text().splitlines()


def test_init_outside_git_is_refused_with_a_hint(tmp_path, monkeypatch, cli):
    """Outside git, `mlv init` could write no ignores, and `git init` later would commit the cache: it asks first."""
    make_tree(tmp_path, {"data/a.csv": "a"})
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    result = cli("init", code=2)
    assert "not inside a git repo" in result.stderr and "git init" in result.stderr and "--no-scm" in result.stderr
    assert "Traceback" not in result.output
    assert snapshot(tmp_path) == before  # nothing written
    cli("init", "--no-scm")
    assert (tmp_path / ".mlv/config.yaml").is_file()
    assert "Already initialized" in cli("init").stdout  # a repo made with --no-scm needs no flag again


def test_init_in_a_subdirectory_of_a_git_repo_needs_no_flag(tmp_path, monkeypatch, cli):
    git_init(tmp_path)
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    cli("init")
    assert "/cache/" in (tmp_path / "project/.mlv/.gitignore").read_text().splitlines()
