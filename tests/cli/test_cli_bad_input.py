"""Bad requests exit 2 with one clear message, and NOTHING changes on disk.

"Nothing" is checked byte for byte: every path under the repo with its content,
`.mlv/cache` included (only `.mlv/state.db*`, a cache of stats, and `.git/` are left out).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import make_tree, snapshot

RAW = {"data/raw/a.csv": "x\n1\n", "data/raw/b.csv": "y\n2\n", "data/raw/sub/c.csv": "z\n3\n"}
DIGEST = "xxh3-128:" + "ab" * 16


def base(repo: Path, cli) -> None:
    """A repo with a tracked directory, a tracked file, untracked data, and one unreferenced object."""
    make_tree(repo, {**RAW, "model.bin": "weights", "fresh/new.csv": "n\n", "scratch.csv": "s\n"})
    cli("add", "data/raw", "model.bin", "scratch.csv")
    (repo / "scratch.csv.mlv").unlink()  # its object stays in the store, referenced by nothing


def nothing(repo: Path) -> None:
    pass


def outside_file(repo: Path) -> None:
    (repo.parent / "outside.csv").write_text("o\n")


def symlink_out(repo: Path) -> None:
    outside_file(repo)
    os.symlink(repo.parent / "outside.csv", repo / "fresh/link.csv")


def symlinked_dir_out(repo: Path) -> None:
    make_tree(repo.parent, {"elsewhere/x.csv": "x"})
    os.symlink(repo.parent / "elsewhere", repo / "fresh/elsewhere")


def dangling_symlink(repo: Path) -> None:
    os.symlink(repo / "fresh/nowhere.csv", repo / "fresh/dangling.csv")


def write_pointer(text: str):
    def setup(repo: Path) -> None:
        (repo / "data/raw.mlv").write_text(text)

    return setup


def write_config(text: str):
    def setup(repo: Path) -> None:
        (repo / ".mlv/config.yaml").write_text(text)

    return setup


BAD_POINTERS = {
    "bad-yaml": write_pointer("path: raw\ndigest: [xxh3-128:\nsize: 1\n"),
    "unknown-key": write_pointer(f"path: raw\ndigest: {DIGEST}\nsize: 12\nnfiles: 3\nowner: me\n"),
    "malformed-digest": write_pointer("path: raw\ndigest: xxh3-128:not-hex\nsize: 12\nnfiles: 3\n"),
    "not-a-mapping": write_pointer("raw\n"),
}

CASES = [
    pytest.param(nothing, ["add", "no/such/path"], "does not exist", id="add-nonexistent"),
    pytest.param(nothing, ["add", "fresh", "no/such/path"], "does not exist", id="add-good-and-nonexistent"),
    pytest.param(outside_file, ["add", "../outside.csv"], "outside the repo", id="add-relative-outside"),
    pytest.param(outside_file, ["add", "ABS_OUTSIDE"], "outside the repo", id="add-absolute-outside"),
    pytest.param(symlink_out, ["add", "fresh"], "outside the repo", id="add-dir-with-symlink-out"),
    pytest.param(symlink_out, ["add", "model.bin", "fresh"], "outside the repo", id="add-good-and-symlink-out"),
    pytest.param(symlinked_dir_out, ["add", "fresh"], "outside the repo", id="add-dir-with-dir-symlink-out"),
    pytest.param(dangling_symlink, ["add", "fresh"], "dangling.csv", id="add-dir-with-broken-symlink"),
    pytest.param(nothing, ["add", "data/raw/a.csv"], "inside the tracked directory 'data/raw'", id="add-inside-tracked"),
    pytest.param(nothing, ["add", "data/raw/sub"], "inside the tracked directory", id="add-subdir-of-tracked"),
    pytest.param(nothing, ["add", "data"], "data/raw", id="add-parent-of-tracked"),
    pytest.param(nothing, ["add", ".mlv/config.yaml"], ".mlv", id="add-mlv-internals"),
    pytest.param(nothing, ["add", "data/raw.mlv"], "pointer", id="add-a-pointer-file"),
    pytest.param(nothing, ["add", "."], "repo root", id="add-repo-root"),
    pytest.param(nothing, ["add"], "", id="add-no-paths"),
    pytest.param(nothing, ["add", "--no-such-option", "fresh"], "no-such-option", id="add-unknown-option"),
    pytest.param(nothing, ["status", "fresh"], "not tracked", id="status-untracked"),
    pytest.param(nothing, ["checkout", "fresh"], "not tracked", id="checkout-untracked"),
    pytest.param(nothing, ["checkout", "../outside.csv"], "outside the repo", id="checkout-outside"),
    pytest.param(nothing, ["gc", "--grace", "-1"], "grace", id="gc-negative-grace"),
    pytest.param(write_config("cache: {linkk: copy}\n"), ["add", "fresh"], "cache.linkk", id="config-unknown-key"),
    pytest.param(write_config("gc: {grace: -3}\n"), ["gc"], "gc.grace", id="config-bad-grace"),
    *[
        pytest.param(setup, [command], "data/raw.mlv", id=f"{command}-{name}-pointer")
        for name, setup in BAD_POINTERS.items()
        for command in ("status", "checkout", "gc", "fsck")
    ],
]


@pytest.mark.parametrize(("setup", "args", "fragment"), CASES)
def test_bad_input_exits_2_and_changes_nothing(git_repo, cli, setup, args, fragment):
    base(git_repo, cli)
    setup(git_repo)
    args = [str(git_repo.parent / "outside.csv") if a == "ABS_OUTSIDE" else a for a in args]
    before = snapshot(git_repo)
    result = cli(*args, code=2)
    assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert snapshot(git_repo) == before


def test_add_before_init_changes_nothing(tmp_path, monkeypatch, cli):
    make_tree(tmp_path, RAW)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    result = cli("add", "data/raw", code=2)
    assert "mlv init" in result.stderr
    assert snapshot(tmp_path) == before


def test_error_message_is_one_line_of_what_where_and_how(git_repo, cli):
    base(git_repo, cli)
    result = cli("add", "data/raw/a.csv", code=2)
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("error:") == 1
    assert "re-add 'data/raw'" in result.stderr  # how to fix
    assert result.stdout == ""
