"""Edges of push / pull found in review: empty files, stage targets, foreign folders, stale memory,
an unreadable index, and the run cache fetching from a Dask worker thread. Folder remotes only."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from helpers import age, commit_all, git, make_tree


def clone(src: Path, name: str = "clone") -> Path:
    dst = src.parent / name
    git(src.parent, "clone", "-q", str(src), str(dst))
    return dst


def shared(repo: Path, cli, tmp_path: Path, files: dict, *add: str) -> Path:
    make_tree(repo, files)
    cli("add", *add)
    cli("remote", "add", "origin", str(tmp_path / "remote"))
    cli("push")
    commit_all(repo, "data")
    return tmp_path / "remote"


def test_empty_files_come_back(git_repo, cli, monkeypatch, tmp_path):
    shared(git_repo, cli, tmp_path, {"_SUCCESS": "", "d/a": "", "d/f": "x\n", "d/g": "more\n"}, "_SUCCESS", "d")
    other = clone(git_repo)
    monkeypatch.chdir(other)
    cli("pull")
    assert (other / "_SUCCESS").read_bytes() == b""
    assert {p.name: p.read_bytes() for p in (other / "d").iterdir()} == {"a": b"", "f": b"x\n", "g": b"more\n"}


def test_ranges_keep_an_empty_object_apart_from_its_neighbour():
    from mlv.storage.store.packs import PackEntry
    from mlv.storage.remote.transfer import spans

    entries = [(b"f" * 16, PackEntry("p", 0, 2)), (b"e" * 16, PackEntry("p", 0, 0)), (b"g" * 16, PackEntry("p", 2, 5))]
    grouped = spans(entries)
    assert [[raw for raw, _ in g] for g in grouped] == [[b"e" * 16, b"f" * 16, b"g" * 16]]


def test_a_big_manifest_waits_for_its_members(repo, cli):
    from mlv.storage.remote import push
    from mlv.storage.remote.state import TransferReport
    from mlv.storage.remote.remotes import Inventory
    from mlv.storage.workspace import Workspace

    store = Workspace(repo).store
    member = store.put_bytes(b"m" * 10)
    big_manifest = store.put_file(make_tree(repo, {"x.bin": os.urandom(600_000)}) / "x.bin")[0]
    phases = push._plan_push(store, {member: "d.mlv", big_manifest: "d.mlv"}, set(), {big_manifest.raw},
                             Inventory(), TransferReport("r", "push"), None)
    assert [u.key for u in phases[1]] == [f"{big_manifest.hexdigest[:2]}/{big_manifest.hexdigest[2:]}"]
    assert all(big_manifest.raw not in u.raws for u in phases[0])


PIPE = """\
stages:
  a:
    cmd: echo x >> .ran && cp src.txt a.txt
    deps: [src.txt]
    outs: [a.txt]
  b:
    cmd: echo y >> .ran && cat a.txt a.txt > b.txt
    deps: [a.txt]
    outs: [b.txt]
"""


def test_pull_of_a_stage_and_a_run_cache_fetch_from_a_worker_thread(git_repo, cli, monkeypatch, tmp_path):
    make_tree(git_repo, {"src.txt": "s\n", "mlv.yaml": PIPE, ".gitignore": ".ran\n"})
    cli("remote", "add", "origin", str(tmp_path / "remote"))
    cli("run")
    cli("push", "b")  # a's output stays behind: in a clone, a must run, then b is decided on a worker
    commit_all(git_repo, "ran")
    other = clone(git_repo)
    monkeypatch.chdir(other)
    assert {r["stage"]: r["state"] for r in cli.json("run")} == {"a": "done", "b": "cached"}
    assert (other / ".ran").read_text() == "x\n" and (other / "b.txt").read_text() == "s\ns\n"
    third = clone(git_repo, "third")
    monkeypatch.chdir(third)
    cli("pull", "b")  # a stage name: its outs
    assert (third / "b.txt").read_text() == "s\ns\n" and not (third / "a.txt").exists()


def test_gc_remote_refuses_a_folder_that_is_not_an_mlv_store(repo, cli, tmp_path):
    foreign = make_tree(tmp_path / "foreign", {"tmp/project/notes.txt": "important\n", "ab/" + "c" * 30: "x"})
    age(foreign, 2 * 86400)
    cli("remote", "add", "elsewhere", str(foreign))
    result = cli("gc", "--remote", "elsewhere", "--grace", "0", code=1)
    assert "no mlv store" in result.stderr
    assert (foreign / "tmp/project/notes.txt").read_text() == "important\n"


def test_a_pull_from_an_empty_place_says_nothing_was_pushed_there(git_repo, cli, monkeypatch, tmp_path):
    make_tree(git_repo, {"f.txt": "f\n"})
    cli("add", "f.txt")
    cli("remote", "add", "origin", str(tmp_path / "nowhere"))
    commit_all(git_repo, "f")
    other = clone(git_repo)
    monkeypatch.chdir(other)
    result = cli("pull", code=1)
    assert "nothing was ever pushed there" in result.stderr


def test_the_no_op_shortcut_trusts_a_listing_only_for_a_while(git_repo, cli, tmp_path):
    remote = shared(git_repo, cli, tmp_path, {"big.bin": os.urandom(600_000)}, "big.bin")
    (loose,) = [p for p in remote.glob("??/*") if p.is_file()]
    loose.unlink()  # as another clone's gc might
    assert cli.json("push")["objects"] == 0  # within the window: not asked
    db = sqlite3.connect(git_repo / ".mlv" / "state.db")
    with db:
        db.execute("UPDATE remote_seen SET listed = ?", (time.time() - 3600,))
    db.close()
    assert cli.json("push")["objects"] == 1  # an old listing is asked again
    cli("fsck", "--remote", "origin")


def test_an_unreadable_index_does_not_block_push_and_push_repairs_it(git_repo, cli, monkeypatch, tmp_path):
    remote = shared(git_repo, cli, tmp_path, {"d/a.txt": "a\n", "d/b.txt": "b\n"}, "d")
    (idx,) = remote.glob("packs/*.idx")
    good = idx.read_bytes()
    idx.write_bytes(b"garbage")
    (git_repo / ".mlv" / "state.db").unlink()
    result = cli("push", "--json")
    assert "truncated" in result.stderr or "damaged" in result.stderr
    assert idx.read_bytes() == good  # the same pack, already there: only its index went up again
    cli("fsck", "--remote", "origin")
    other = clone(git_repo)
    monkeypatch.chdir(other)
    cli("pull")
    assert (other / "d/b.txt").read_text() == "b\n"


def test_a_relative_file_url_typed_in_a_subdirectory_is_kept_relative_to_the_root(repo, cli, monkeypatch):
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")
    cli("remote", "add", "a", "file://../../store")
    remotes = {r["name"]: r["url"] for r in cli.json("remote", "list")}
    assert remotes == {"a": "file://../store"}


def test_a_directory_with_files_missing_here_is_not_pushed_as_complete(git_repo, cli, tmp_path):
    from mlv.storage.workspace import Workspace

    remote = shared(git_repo, cli, tmp_path, {"keep.txt": "k\n"}, "keep.txt")
    make_tree(git_repo, {"d/big.bin": os.urandom(600_000), "d/small.txt": "s\n"})
    cli("add", "d")
    store = Workspace(git_repo).store
    (big,) = [path for _, path in store.iter_loose()]
    os.chmod(big, 0o644)
    os.unlink(big)  # lost here before it was ever pushed
    result = cli("push", code=1)
    assert "not in the local store" in result.stderr
    from mlv.storage.store.packs import decode_index

    manifest = bytes.fromhex((git_repo / "d.mlv").read_text().split("digest: xxh3-128:")[1].split()[0])
    on_remote = {raw for idx in remote.glob("packs/*.idx") for raw in decode_index(idx.read_bytes(), idx.stem)}
    assert manifest not in on_remote, "a directory must not look complete on the remote"
    assert len(on_remote) >= 2  # keep.txt, and d/small.txt went up
