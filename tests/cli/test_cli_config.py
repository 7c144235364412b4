"""`mlv config [--local] [--unset] KEY [VALUE]`: one setting read or written, checked like every load."""

from __future__ import annotations

import yaml
from helpers import commit_all, git, make_tree, snapshot


def test_read_a_default_then_write_and_read_back(git_repo, cli):
    assert cli("config", "cache.link").stdout.strip() == "auto"  # not in the file: the default
    cli("config", "gc.grace", "120")
    assert yaml.safe_load((git_repo / ".mlv/config.yaml").read_text())["gc"]["grace"] == 120  # a number, not text
    assert "# mlv settings" in (git_repo / ".mlv/config.yaml").read_text()  # comments survive the edit
    assert cli("config", "gc.grace").stdout.strip() == "120"


def test_local_overrides_the_shared_file_key_by_key(git_repo, cli):
    cli("config", "cache.link", "copy")
    cli("config", "--local", "cache.link", "symlink")
    assert cli("config", "cache.link").stdout.strip() == "symlink"  # what the repo uses
    assert cli("config", "--local", "cache.link").stdout.strip() == "symlink"
    assert yaml.safe_load((git_repo / ".mlv/config.yaml").read_text())["cache"]["link"] == "copy"  # untouched
    assert cli("config", "cache.verify").stdout.strip() == "true"  # keys the local file lacks come from the shared
    cli("config", "--local", "--unset", "cache.link")
    assert cli("config", "cache.link").stdout.strip() == "copy"
    cli("config", "--local", "cache.verify", code=1)  # not set in the local file


def test_a_personal_remote_is_git_ignored_and_survives_checkout_of_an_old_commit(git_repo, tmp_path, cli):
    make_tree(git_repo, {"data/a.csv": "a,b\n1,2\n"})
    cli("add", "data")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-qm", "v1")
    cli("config", "--local", "remotes.mine.url", str(tmp_path / "mine"))
    cli("config", "--local", "core.remote", "mine")
    assert git(git_repo, "status", "--porcelain") == ""  # config.local.yaml is ignored: nothing to commit
    cli("config", "gc.grace", "60")
    commit_all(git_repo, "v2: shorter grace")
    git(git_repo, "checkout", "-q", "HEAD~1")
    assert cli("config", "core.remote").stdout.strip() == "mine"
    cli("push")  # the default remote comes from the local file
    assert any((tmp_path / "mine").rglob("*.pack")) or any((tmp_path / "mine").glob("??/*"))


def test_local_file_may_pick_a_remote_the_shared_file_defines(git_repo, tmp_path, cli):
    cli("remote", "add", "team", str(tmp_path / "team"))
    cli("remote", "add", "other", str(tmp_path / "other"))
    cli("config", "--local", "core.remote", "other")
    assert cli("config", "core.remote").stdout.strip() == "other"
    assert cli("config", "--local", "core.remote").stdout.strip() == "other"


def test_bad_keys_and_values_are_refused_naming_the_key(git_repo, cli):
    before = snapshot(git_repo)
    assert "'cache.lnk'" in cli("config", "cache.lnk", "copy", code=2).stderr
    assert "Did you mean 'cache'" in cli("config", "cach.link", "copy", code=2).stderr
    result = cli("config", "cache.link", "sideways", code=2)
    assert "'cache.link'" in result.stderr and "reflink" in result.stderr
    assert "'gc.grace'" in cli("config", "gc.grace", "soon", code=2).stderr
    assert "'core.remote'" in cli("config", "--local", "core.remote", "nowhere", code=2).stderr
    assert "remotes.x.password" in cli("config", "--local", "remotes.x.password", "hunter2", code=2).stderr
    result = cli("config", "--local", "remotes.x.url", "s3://AKIA:verysecret@bucket/x", code=2)
    assert "verysecret" not in result.output and "credentials" in result.stderr
    assert "Traceback" not in result.output
    assert snapshot(git_repo) == before  # nothing written, not even an empty local file


def test_an_error_in_the_local_file_names_it(git_repo, cli):
    (git_repo / ".mlv/config.local.yaml").write_text("cache:\n  link: nope\n")
    result = cli("status", code=2)
    assert "config.local.yaml" in result.stderr and "'cache.link'" in result.stderr


def test_unset_needs_no_value_and_a_key_that_is_set(git_repo, cli):
    cli("config", "--unset", "gc.grace", "5", code=2)
    cli("config", "--local", "--unset", "gc.grace", code=1)


def test_local_on_an_older_repo_adds_the_ignore(git_repo, cli):
    ignore = git_repo / ".mlv/.gitignore"
    ignore.write_text("/cache/\n/tmp/\n/runs/\n/state.db*\n/lock\n/run.lock\n")  # made before the local file existed
    cli("config", "--local", "cache.link", "copy")
    assert "/config.local.yaml" in ignore.read_text().splitlines()
