"""Walking tracked directories: sorted regular files, .git/.mlv skipped, symlinks inside the repo followed."""

from __future__ import annotations

import os

import pytest
from helpers import make_tree
from mlv.storage.errors import UsageError
from mlv.storage.workspace.walk import fingerprint, stat_file, walk


def test_sorted_relative_posix_paths_with_sizes_and_exec_bits(tmp_path):
    make_tree(tmp_path, {"d/b.csv": "bb", "d/a/x.txt": "x", "d/a/y/z.bin": b"\0" * 5, "d/run.sh": "#!/bin/sh\n"})
    os.chmod(tmp_path / "d/run.sh", 0o755)
    files = walk(tmp_path / "d", repo_root=tmp_path)
    assert [(f.rel, f.size, f.executable) for f in files] == [
        ("a/x.txt", 1, False),
        ("a/y/z.bin", 5, False),
        ("b.csv", 2, False),
        ("run.sh", 10, True),
    ]
    assert all(os.path.isabs(f.path) for f in files)


def test_skips_git_and_mlv_dirs_and_ignores_empty_dirs(tmp_path):
    make_tree(tmp_path, {"d/.git/HEAD": "x", "d/.mlv/config.yaml": "x", "d/keep": "k"})
    (tmp_path / "d/empty").mkdir()
    assert [f.rel for f in walk(tmp_path / "d", repo_root=tmp_path)] == ["keep"]


def test_symlinks_inside_the_repo_are_followed(tmp_path):
    make_tree(tmp_path, {"shared/v.csv": "v", "shared/sub/w.csv": "w", "d/a": "a"})
    os.symlink(tmp_path / "shared/v.csv", tmp_path / "d/link.csv")
    os.symlink("../shared/sub", tmp_path / "d/linkdir")
    files = walk(tmp_path / "d", repo_root=tmp_path)
    assert [(f.rel, f.size) for f in files] == [("a", 1), ("link.csv", 1), ("linkdir/w.csv", 1)]


def test_symlink_loops_terminate(tmp_path):
    make_tree(tmp_path, {"d/sub/a": "a"})
    os.symlink("..", tmp_path / "d/sub/up")
    assert [f.rel for f in walk(tmp_path / "d", repo_root=tmp_path)] == ["sub/a"]


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_symlink_leading_outside_the_repo_is_refused(tmp_path, kind):
    outside = tmp_path / "outside"
    make_tree(outside, {"secret.csv": "s"})
    repo = tmp_path / "repo"
    make_tree(repo, {"d/a": "a"})
    os.symlink(outside / "secret.csv" if kind == "file" else outside, repo / "d/link")
    with pytest.raises(UsageError, match="outside the repo") as info:
        walk(repo / "d", repo_root=repo)
    assert "d/link" in str(info.value)


def test_broken_symlink_is_a_usage_error(tmp_path):
    make_tree(tmp_path, {"d/a": "a"})
    os.symlink(tmp_path / "d/nowhere", tmp_path / "d/dangling")
    with pytest.raises(UsageError, match="broken symlink"):
        walk(tmp_path / "d", repo_root=tmp_path)


def test_stat_file_refuses_a_link_outside(tmp_path):
    make_tree(tmp_path, {"outside/x": "x"})
    (tmp_path / "repo").mkdir()
    os.symlink(tmp_path / "outside/x", tmp_path / "repo/x")
    with pytest.raises(UsageError, match="outside the repo"):
        stat_file(tmp_path / "repo/x", repo_root=tmp_path / "repo")


def test_fingerprint_changes_when_any_stat_changes(tmp_path):
    make_tree(tmp_path, {"d/a": "a", "d/b": "b"})
    before = fingerprint(walk(tmp_path / "d", repo_root=tmp_path))
    assert fingerprint(walk(tmp_path / "d", repo_root=tmp_path)) == before
    os.utime(tmp_path / "d/a", ns=(0, 12345))
    assert fingerprint(walk(tmp_path / "d", repo_root=tmp_path)) != before
