"""`mlv gc`: removes what nothing references once older than the grace period; never what is live."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest
from helpers import (
    age,
    commit_all,
    fast_lock_clock,
    git,
    make_tree,
    snapshot,
    stored_digests,
)
from mlv.storage.store import digest as digests
from mlv.storage.workspace import Workspace

BIG_V1, BIG_V2 = os.urandom(600_000), os.urandom(600_000)
V1 = {"data/raw/a.csv": "x\n1\n", "data/raw/b.csv": "y\n2\n", "data/raw/keep.csv": "same in both\n"}


def d(content: bytes | str) -> str:
    return str(digests.of_bytes(content.encode() if isinstance(content, str) else content))


def two_versions(repo, cli, *, commit: bool = False) -> dict[str, str]:
    """Track v1 of a directory and a big file, then replace both with v2. Returns version digests."""
    make_tree(repo, {**V1, "model.bin": BIG_V1})
    dir_v1, file_v1 = (r["digest"] for r in cli.json("add", "data/raw", "model.bin"))
    if commit:
        commit_all(repo, "v1")
    (repo / "data/raw/a.csv").write_text("x\n1\nchanged\n")
    (repo / "data/raw/b.csv").unlink()
    (repo / "model.bin").write_bytes(BIG_V2)
    dir_v2, file_v2 = (r["digest"] for r in cli.json("add", "data/raw", "model.bin"))
    if commit:
        commit_all(repo, "v2")
    return {"dir_v1": dir_v1, "file_v1": file_v1, "dir_v2": dir_v2, "file_v2": file_v2}


ONLY_V1 = [d("x\n1\n"), d("y\n2\n"), d(BIG_V1)]


def live_v2(v) -> list[str]:
    return [v["dir_v2"], d("x\n1\nchanged\n"), d("same in both\n"), d(BIG_V2)]


@pytest.fixture
def fast_clock(monkeypatch):
    fast_lock_clock(monkeypatch)


def test_removes_unreferenced_objects_older_than_grace(repo, cli):
    v = two_versions(repo, cli)
    age(repo / ".mlv/cache")
    report = cli.json("gc", "--grace", "60")
    left = stored_digests(repo)
    for digest in [*ONLY_V1, v["dir_v1"]]:
        assert digest not in left
    for digest in live_v2(v):
        assert digest in left
    assert report["removed"] == 4 and report["dry_run"] is False
    assert report["freed_bytes"] >= len(BIG_V1)
    cli("fsck")
    (repo / "data/raw/keep.csv").unlink()  # a live object from a rewritten pack still checks out
    (repo / "model.bin").unlink()
    cli("checkout")
    assert (repo / "data/raw/keep.csv").read_text() == "same in both\n"
    assert (repo / "model.bin").read_bytes() == BIG_V2


def test_spares_young_unreferenced_objects(repo, cli):
    v = two_versions(repo, cli)
    before = snapshot(repo)
    report = cli.json("gc")  # default grace: one hour
    assert report["removed"] == 0
    assert snapshot(repo) == before
    assert {*ONLY_V1, v["dir_v1"]} <= stored_digests(repo)


def test_grace_is_per_object(repo, cli):
    make_tree(repo, {"old.bin": os.urandom(600_000), "new.bin": os.urandom(600_000)})
    old, new = (r["digest"] for r in cli.json("add", "old.bin", "new.bin"))
    age(repo / ".mlv/cache")
    (repo / "old.bin.mlv").unlink()
    (repo / "new.bin.mlv").unlink()
    loose_new = repo / ".mlv/cache" / new.partition(":")[2][:2] / new.partition(":")[2][2:]
    os.utime(loose_new)  # stored just now, e.g. by an `mlv add` that has not written its pointer yet
    cli("gc", "--grace", "600")
    left = stored_digests(repo)
    assert old not in left
    assert left == {new}


def test_grace_from_config(repo, cli):
    v = two_versions(repo, cli)
    age(repo / ".mlv/cache", 120)
    (repo / ".mlv/config.yaml").write_text("gc: {grace: 3600}\n")
    assert cli.json("gc")["removed"] == 0
    (repo / ".mlv/config.yaml").write_text("gc: {grace: 60}\n")
    assert cli.json("gc")["removed"] == 4
    assert not set(ONLY_V1) & stored_digests(repo)
    assert set(live_v2(v)) <= stored_digests(repo)


def test_dry_run_reports_and_removes_nothing(repo, cli):
    v = two_versions(repo, cli)
    age(repo / ".mlv/cache")
    before = snapshot(repo)
    report = cli.json("gc", "--grace", "60", "--dry-run")
    assert report["dry_run"] is True and report["removed"] == 4
    assert sorted(report["digests"]) == sorted([*ONLY_V1, v["dir_v1"]])
    assert snapshot(repo) == before
    assert "would free" in cli("gc", "--grace", "60", "--dry-run").stdout
    assert snapshot(repo) == before


def lock_naming(out_digest: str) -> str:
    """An `mlv.lock` whose one stage has one out (``stages.<name>.outs.<path>.digest``)."""
    return f"stages:\n  train:\n    outs:\n      model.bin:\n        digest: {out_digest}\n"


def test_outputs_named_in_mlv_lock_are_kept(repo, cli):
    two_versions(repo, cli)
    age(repo / ".mlv/cache")
    (repo / "mlv.lock").write_text(lock_naming(d(BIG_V1)))
    cli("gc", "--grace", "60")
    left = stored_digests(repo)
    assert d(BIG_V1) in left
    assert d("y\n2\n") not in left


def test_gc_refuses_when_mlv_lock_is_unreadable(repo, cli):
    """A lock left with merge-conflict markers must not read as 'references nothing' and lose outputs."""
    two_versions(repo, cli)
    age(repo / ".mlv/cache")
    (repo / "mlv.lock").write_text(
        "<<<<<<< HEAD\n" + lock_naming(d(BIG_V1)) + "=======\n" + lock_naming(d(BIG_V2)) + ">>>>>>> branch\n"
    )
    before = snapshot(repo)
    result = cli("gc", "--grace", "60", code=2)
    assert "mlv.lock" in result.stderr
    assert snapshot(repo) == before


def test_all_commits_keeps_what_any_commit_references(git_repo, cli):
    v = two_versions(git_repo, cli, commit=True)
    age(git_repo / ".mlv/cache")
    cli("gc", "--grace", "60", "--all-commits")
    assert {*ONLY_V1, v["dir_v1"], *live_v2(v)} <= stored_digests(git_repo)
    git(git_repo, "checkout", "HEAD~1", "--", "data/raw.mlv", "model.bin.mlv")
    cli("checkout")
    assert (git_repo / "data/raw/b.csv").read_text() == "y\n2\n"
    assert (git_repo / "model.bin").read_bytes() == BIG_V1


def test_without_all_commits_old_commits_are_not_kept(git_repo, cli):
    two_versions(git_repo, cli, commit=True)
    age(git_repo / ".mlv/cache")
    cli("gc", "--grace", "60")
    assert not set(ONLY_V1) & stored_digests(git_repo)
    git(git_repo, "checkout", "HEAD~1", "--", "model.bin.mlv")
    (git_repo / "model.bin").unlink()
    result = cli("checkout", "model.bin", code=1)
    assert "mlv pull" in result.stderr
    assert not (git_repo / "model.bin").exists()


def test_all_commits_outside_git_is_a_usage_error(repo, cli):
    two_versions(repo, cli)
    before = snapshot(repo)
    cli("gc", "--all-commits", code=2)
    assert snapshot(repo) == before


def test_gc_refuses_while_another_process_holds_the_lock(repo, cli, fast_clock):
    two_versions(repo, cli)
    age(repo / ".mlv/cache")
    before = snapshot(repo)
    with Workspace(repo).lock():  # e.g. an `mlv add` or `mlv checkout` in progress
        result = cli("gc", "--grace", "0", code=1)
    assert "busy" in result.stderr
    assert snapshot(repo) == before


def test_add_refuses_while_gc_holds_the_lock(repo, cli, fast_clock):
    make_tree(repo, V1)
    with Workspace(repo).lock(exclusive=True):
        before = snapshot(repo)
        result = cli("add", "data/raw", code=1)
    assert "busy" in result.stderr
    assert snapshot(repo) == before


def test_gc_waits_for_a_short_lock(repo, cli):
    two_versions(repo, cli)
    age(repo / ".mlv/cache")
    held, release = threading.Event(), threading.Event()

    def holder():
        with Workspace(repo).lock():
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    start = time.monotonic()
    report = cli.json("gc", "--grace", "60")
    t.join()
    assert time.monotonic() - start >= 0.25
    assert report["removed"] == 4


def test_gc_removes_old_leftovers_of_killed_processes(repo, cli):
    make_tree(repo, V1)
    cli("add", "data/raw")
    tmp = repo / ".mlv/cache/tmp"
    (tmp / ("de" * 16)).write_bytes(b"half an object")  # names as the store's temp files have them
    (tmp / ("ca" * 16 + ".pack")).write_bytes(b"half a pack")
    orphan = repo / ".mlv/cache/packs" / ("0" * 32 + ".pack")  # sealed, but its index never written
    orphan.write_bytes(b"orphan")
    age(repo / ".mlv/cache")
    (tmp / ("0f" * 16)).write_bytes(b"another add is writing this right now")
    cli("fsck")  # leftovers are not objects, so not damage
    cli("gc", "--grace", "60")
    assert sorted(p.name for p in tmp.iterdir()) == ["0f" * 16]
    assert not orphan.exists()
    cli("fsck")


def test_gc_with_nothing_to_do(repo, cli):
    make_tree(repo, V1)
    cli("add", "data/raw")
    age(repo / ".mlv/cache")
    before = snapshot(repo)
    assert cli.json("gc", "--grace", "0")["removed"] == 0
    assert snapshot(repo) == before


def test_gc_in_a_fresh_clone_without_a_cache(repo, cli, tmp_path, monkeypatch):
    make_tree(repo, V1)
    cli("add", "data/raw")
    clone = tmp_path / "clone"
    shutil.copytree(repo, clone, ignore=shutil.ignore_patterns("cache", "state.db*", "lock"))
    monkeypatch.chdir(clone)
    assert cli.json("gc", "--grace", "0")["removed"] == 0


def test_gc_merges_the_small_packs_each_add_leaves(repo, cli):
    """Every add writes a pack; gc puts the objects of small ones into one, so commands stop reading an index per add."""
    packs = repo / ".mlv/cache/packs"
    for i in range(5):
        make_tree(repo, {f"data{i}/f.txt": f"version {i}\n", f"data{i}/g.txt": f"other {i}\n"})
        cli("add", f"data{i}")
    before = sorted(p.name for p in packs.glob("*.idx"))
    assert len(before) == 5
    stored = stored_digests(repo)
    planned = cli.json("gc", "--dry-run", "--grace", "0")
    assert planned["merged_packs"] == 5 and sorted(p.name for p in packs.glob("*.idx")) == before
    done = cli.json("gc", "--grace", "0")
    assert done["merged_packs"] == 5 and done["removed"] == 0
    assert len(list(packs.glob("*.idx"))) == 1 and len(list(packs.glob("*.pack"))) == 1
    assert stored_digests(repo) == stored
    cli("fsck")  # exit 0 (the fixture checks it): every object there, every byte verified
    for i in range(5):
        shutil.rmtree(repo / f"data{i}")
    cli("checkout")
    assert (repo / "data3/g.txt").read_text() == "other 3\n"
    assert cli.json("gc", "--grace", "0")["merged_packs"] == 0  # one pack: nothing to merge
