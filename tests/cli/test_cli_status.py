"""`mlv status`: unchanged / modified (with file lists) / missing / not-in-cache; --json; --exit-code."""

from __future__ import annotations

import os
import shutil

from helpers import age, make_tree, snapshot

RAW = {"data/raw/a.csv": "x\n1\n", "data/raw/b.csv": "y\n2\n", "data/raw/sub/c.csv": "z\n3\n"}


def tracked(repo, cli):
    make_tree(repo, {**RAW, "model.bin": "weights"})
    age(repo / "data")
    age(repo / "model.bin")
    cli("add", "data/raw", "model.bin")


def test_unchanged(repo, cli):
    tracked(repo, cli)
    report = cli.json("status")
    assert [(e["path"], e["state"], e["in_cache"]) for e in report] == [
        ("data/raw", "unchanged", True), ("model.bin", "unchanged", True),
    ]
    assert all(not e.get(k) for e in report for k in ("added", "changed", "deleted"))
    cli("status", "--exit-code")
    human = cli("status").stdout
    assert "unchanged  data/raw" in human and "unchanged  model.bin" in human


def test_status_reads_and_writes_nothing_in_the_workspace(repo, cli):
    tracked(repo, cli)
    (repo / "data/raw/a.csv").write_text("edited\n")
    before = snapshot(repo)
    cli("status")
    assert snapshot(repo) == before


def test_modified_directory_lists_added_changed_deleted(repo, cli):
    tracked(repo, cli)
    (repo / "data/raw/a.csv").write_text("x\n1\n2\n")
    (repo / "data/raw/sub/c.csv").unlink()
    make_tree(repo, {"data/raw/new/d.csv": "d\n"})
    os.chmod(repo / "data/raw/b.csv", 0o755)
    (entry, _) = cli.json("status")
    assert entry.items() >= {
        "path": "data/raw", "state": "modified", "in_cache": True,
        "added": ["new/d.csv"], "changed": ["a.csv", "b.csv"], "deleted": ["sub/c.csv"],
    }.items()
    human = cli("status").stdout
    assert "modified  data/raw" in human
    for line in ("added: new/d.csv", "changed: a.csv", "deleted: sub/c.csv"):
        assert line in human
    cli("status", "--exit-code", code=1)
    cli("status", "model.bin", "--exit-code")  # only the path asked about


def test_modified_file(repo, cli):
    tracked(repo, cli)
    (repo / "model.bin").write_text("weights v2")
    assert cli.states("model.bin") == {"model.bin": "modified"}


def test_file_replaced_by_directory_and_back(repo, cli):
    tracked(repo, cli)
    (repo / "model.bin").unlink()
    make_tree(repo, {"model.bin/part0": "p"})
    shutil.rmtree(repo / "data/raw")
    (repo / "data/raw").write_text("now a file")
    states = {e["path"]: e["state"] for e in cli.json("status")}
    assert states == {"data/raw": "modified", "model.bin": "modified"}


def test_missing(repo, cli):
    tracked(repo, cli)
    shutil.rmtree(repo / "data/raw")
    (repo / "model.bin").unlink()
    states = {e["path"]: e["state"] for e in cli.json("status")}
    assert states == {"data/raw": "missing", "model.bin": "missing"}
    cli("status", "--exit-code", code=1)
    assert "missing  data/raw" in cli("status").stdout


def test_not_in_cache_after_a_clone(repo, cli, tmp_path, monkeypatch):
    """A teammate's pointers and data arrived, but this cache has never seen the bytes."""
    tracked(repo, cli)
    clone = tmp_path / "clone"
    shutil.copytree(repo, clone, ignore=shutil.ignore_patterns("cache", "state.db*", "lock"))
    monkeypatch.chdir(clone)
    states = {e["path"]: (e["state"], e["in_cache"]) for e in cli.json("status")}
    assert states == {"data/raw": ("not-in-cache", False), "model.bin": ("not-in-cache", False)}
    cli("status", "--exit-code", code=1)


def test_not_in_cache_after_the_cache_was_wiped(repo, cli):
    tracked(repo, cli)
    cli("status")
    shutil.rmtree(repo / ".mlv/cache")
    states = {e["path"]: e["state"] for e in cli.json("status")}
    assert states == {"data/raw": "not-in-cache", "model.bin": "not-in-cache"}


def test_edit_then_revert_is_unchanged(repo, cli):
    tracked(repo, cli)
    (repo / "data/raw/a.csv").write_text("something else\n")
    assert cli.json("status", "data/raw")[0]["state"] == "modified"
    (repo / "data/raw/a.csv").write_text("x\n1\n")
    assert cli.json("status", "data/raw")[0]["state"] == "unchanged"


def test_from_a_subdirectory_and_by_pointer_name(repo, cli, monkeypatch):
    tracked(repo, cli)
    monkeypatch.chdir(repo / "data")
    assert [e["path"] for e in cli.json("status")] == ["data/raw", "model.bin"]
    assert [e["path"] for e in cli.json("status", "raw.mlv")] == ["data/raw"]
    assert [e["path"] for e in cli.json("status", "raw")] == ["data/raw"]


def test_nothing_tracked(repo, cli):
    assert "nothing tracked" in cli("status").stdout
    assert cli.json("status") == []
    cli("status", "--exit-code")
