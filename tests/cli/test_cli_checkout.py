"""`mlv checkout`: bring back any committed version; never destroy unsaved bytes without --force."""

from __future__ import annotations

import os
import shutil

import pytest
from helpers import age, commit_all, git, loose_object, make_tree, snapshot

V1 = {"data/raw/a.csv": "x\n1\n", "data/raw/b.csv": "y\n2\n", "data/raw/sub/c.csv": "z\n3\n"}


def tree_of(path) -> dict[str, bytes]:
    """``{relative path: bytes}`` of the regular files under ``path``."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def two_versions(git_repo, cli):
    """data/raw committed at v1, then changed (edit, add, delete) and committed at v2."""
    make_tree(git_repo, V1)
    cli("add", "data/raw")
    commit_all(git_repo, "v1")
    v1 = tree_of(git_repo / "data/raw")
    (git_repo / "data/raw/a.csv").write_text("x\n1\n2\n")
    (git_repo / "data/raw/b.csv").unlink()
    make_tree(git_repo, {"data/raw/new/d.csv": "d\n", "data/raw/e.csv": "e\n"})
    cli("add", "data/raw")
    commit_all(git_repo, "v2")
    v2 = tree_of(git_repo / "data/raw")
    return git_repo, v1, v2


def test_older_version_comes_back_and_extra_files_go(two_versions, cli):
    repo, v1, v2 = two_versions
    git(repo, "checkout", "HEAD~1", "--", "data/raw.mlv")
    assert {e["state"] for e in cli.json("status")} == {"modified"}
    result = cli("checkout")  # v2's bytes are in the store, so no --force is needed
    assert "restored   data/raw" in result.stdout
    assert tree_of(repo / "data/raw") == v1
    assert not (repo / "data/raw/new").exists()  # emptied directories are pruned too
    assert cli.states() == {"data/raw": "unchanged"}

    git(repo, "checkout", "HEAD", "--", "data/raw.mlv")
    cli("checkout")
    assert tree_of(repo / "data/raw") == v2


def test_checkout_refuses_to_discard_an_unsaved_edit(two_versions, cli):
    repo, v1, _ = two_versions
    git(repo, "checkout", "HEAD~1", "--", "data/raw.mlv")
    (repo / "data/raw/a.csv").write_text("precious unsaved work\n")
    before = snapshot(repo)
    result = cli("checkout", code=2)
    assert "data/raw/a.csv" in result.stderr and "--force" in result.stderr
    assert snapshot(repo) == before
    cli("checkout", "--force")
    assert tree_of(repo / "data/raw") == v1


def test_checkout_refuses_to_delete_an_untracked_file_inside_a_tracked_dir(git_repo, cli):
    make_tree(git_repo, V1)
    cli("add", "data/raw")
    make_tree(git_repo, {"data/raw/notes.txt": "only copy of my notes\n"})
    before = snapshot(git_repo)
    result = cli("checkout", code=2)
    assert "data/raw/notes.txt" in result.stderr
    assert snapshot(git_repo) == before
    result = cli.json("checkout", "--force")
    assert result["removed"] == ["data/raw/notes.txt"]
    assert tree_of(git_repo / "data/raw") == {k[len("data/raw/"):]: v.encode() for k, v in V1.items()}


def test_checkout_refuses_to_overwrite_an_unsaved_single_file(repo, cli):
    make_tree(repo, {"model.bin": "v1"})
    cli("add", "model.bin")
    (repo / "model.bin").write_text("retrained, not added")
    before = snapshot(repo)
    assert "model.bin" in cli("checkout", code=2).stderr
    assert snapshot(repo) == before
    cli("checkout", "model.bin", "--force")
    assert (repo / "model.bin").read_text() == "v1"


def test_checkout_refuses_to_replace_an_unsaved_file_standing_where_the_directory_was(repo, cli):
    make_tree(repo, V1)
    cli("add", "data/raw")
    shutil.rmtree(repo / "data/raw")
    (repo / "data/raw").write_text("not in the store")
    before = snapshot(repo)
    cli("checkout", code=2)
    assert snapshot(repo) == before
    cli("checkout", "--force")
    assert (repo / "data/raw/sub/c.csv").read_text() == "z\n3\n"


def test_content_that_is_in_the_store_is_replaced_without_force(repo, cli):
    make_tree(repo, {"model.bin": "v1"})
    cli("add", "model.bin")
    v1_pointer = (repo / "model.bin.mlv").read_text()
    (repo / "model.bin").write_text("v2")
    cli("add", "model.bin")
    (repo / "model.bin.mlv").write_text(v1_pointer)
    cli("checkout")
    assert (repo / "model.bin").read_text() == "v1"


def test_missing_workspace_data_is_restored(repo, cli):
    big = os.urandom(600_000)
    make_tree(repo, {**V1, "model.bin": big})
    cli("add", "data/raw", "model.bin")
    shutil.rmtree(repo / "data/raw")
    (repo / "model.bin").unlink()
    report = cli.json("checkout")
    assert sorted(report["restored"]) == ["data/raw", "model.bin"]
    assert (repo / "model.bin").read_bytes() == big
    assert (repo / "data/raw/a.csv").read_text() == "x\n1\n"
    assert {e["state"] for e in cli.json("status")} == {"unchanged"}


def test_checkout_of_one_path_leaves_the_others_alone(repo, cli):
    make_tree(repo, {**V1, "model.bin": "m"})
    cli("add", "data/raw", "model.bin")
    shutil.rmtree(repo / "data/raw")
    (repo / "model.bin").unlink()
    cli("checkout", "model.bin")
    assert (repo / "model.bin").read_text() == "m"
    assert not (repo / "data/raw").exists()


def test_checkout_when_everything_matches_changes_nothing(repo, cli):
    make_tree(repo, V1)
    age(repo / "data")
    cli("add", "data/raw")
    before = snapshot(repo)
    assert "already matches" in cli("checkout").stdout
    assert snapshot(repo) == before


def test_checkout_restores_an_empty_directory(repo, cli):
    (repo / "data/empty").mkdir(parents=True)
    cli("add", "data/empty")
    (repo / "data/empty").rmdir()
    cli("checkout")
    assert (repo / "data/empty").is_dir()
    assert cli.json("status")[0]["state"] == "unchanged"


def test_missing_object_is_exit_1_and_changes_nothing(repo, cli):
    data = os.urandom(600_000)
    make_tree(repo, {"model.bin": data})
    (added,) = cli.json("add", "model.bin")
    (repo / "model.bin").unlink()
    loose_object(repo, added["digest"]).unlink()
    before = snapshot(repo)
    result = cli("checkout", code=1)
    assert "mlv pull" in result.stderr
    assert snapshot(repo) == before


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink", "auto"])
def test_every_link_mode_restores_the_bytes(repo, cli, mode):
    (repo / ".mlv/config.yaml").write_text(f"cache: {{link: {mode}}}\n")
    big = os.urandom(600_000)
    make_tree(repo, {**V1, "data/raw/big.bin": big})
    cli("add", "data/raw")
    shutil.rmtree(repo / "data/raw")
    cli("checkout")
    assert (repo / "data/raw/big.bin").read_bytes() == big
    assert (repo / "data/raw/sub/c.csv").read_text() == "z\n3\n"
    assert cli.json("status")[0]["state"] == "unchanged"
    cli("fsck")
