"""`mlv add`: pointers, git ignores, and reading/storing only what changed."""

from __future__ import annotations

import os
import re
import shutil
import time

import yaml
from helpers import age, loose_object, make_tree, snapshot, store_of, stored_digests
from mlv.storage.store import digest as digests
from mlv.storage.store import manifest
from mlv.storage.store.digest import Digest

RAW = {"data/raw/a.csv": "x\n1\n", "data/raw/b.csv": "y\n2\n", "data/raw/sub/c.csv": "z\n3\n"}


def pointer(path) -> dict:
    return yaml.safe_load(path.read_text())


def test_add_a_file(repo, cli):
    make_tree(repo, {"model.pkl": b"\x80\x04model"})
    (result,) = cli.json("add", "model.pkl")
    digest = str(digests.of_bytes(b"\x80\x04model"))
    assert result.items() >= {
        "path": "model.pkl", "pointer": "model.pkl.mlv", "digest": digest,
        "size": 7, "nfiles": None, "stored": 1, "hashed": 1,
    }.items()
    assert pointer(repo / "model.pkl.mlv") == {"path": "model.pkl", "digest": digest, "size": 7}
    assert digest in stored_digests(repo)
    assert not (repo / ".gitignore").exists()  # not a git repo


def test_add_a_directory(repo, cli):
    make_tree(repo, RAW)
    (result,) = cli.json("add", "data/raw")
    ptr = pointer(repo / "data/raw.mlv")
    assert ptr == {"path": "raw", "digest": result["digest"], "size": 12, "nfiles": 3}
    assert re.fullmatch(r"xxh3-128:[0-9a-f]{32}", ptr["digest"])
    assert (result["stored"], result["hashed"]) == (4, 3)  # three files and the manifest
    m = manifest.load(store_of(repo).read_bytes(Digest.from_hex(ptr["digest"].partition(":")[2])))
    assert m.paths == ["a.csv", "b.csv", "sub/c.csv"]
    assert [str(Digest.from_raw(r)) for r in m.raw_digests] == [
        str(digests.of_bytes(c.encode())) for c in RAW.values()
    ]


def test_add_human_output_suggests_git_add(git_repo, cli):
    make_tree(git_repo, RAW)
    result = cli("add", "data/raw")
    assert "data/raw" in result.stdout and "3 files" in result.stdout
    assert "git add data/.gitignore data/raw.mlv" in result.stdout  # every file it changed, as dvc add does


def test_add_in_git_ignores_the_data_beside_it(git_repo, cli):
    make_tree(git_repo, {**RAW, "data/.gitignore": "*.tmp", "model.bin": "m"})  # no trailing newline
    cli("add", "data/raw", "model.bin")
    cli("add", "data/raw")  # re-adding does not repeat the line
    assert (git_repo / "data/.gitignore").read_text().splitlines() == ["*.tmp", "/raw"]
    assert (git_repo / ".gitignore").read_text().splitlines() == ["/model.bin"]


def test_add_relative_to_the_cwd(repo, cli, monkeypatch):
    make_tree(repo, RAW)
    monkeypatch.chdir(repo / "data")
    (result,) = cli.json("add", "raw")
    assert result["pointer"] == "data/raw.mlv"
    assert (repo / "data/raw.mlv").is_file()


def test_identical_files_are_stored_once(repo, cli):
    make_tree(repo, {"d/one.csv": "same\n", "d/two.csv": "same\n", "d/three.csv": "other\n"})
    (result,) = cli.json("add", "d")
    assert result["stored"] == 3  # two distinct files + manifest
    assert result["hashed"] == 3


def test_readding_an_untouched_directory_reads_and_stores_nothing(repo, cli):
    make_tree(repo, RAW)
    age(repo / "data")
    (first,) = cli.json("add", "data/raw")
    before = snapshot(repo)
    (second,) = cli.json("add", "data/raw")
    assert (second["hashed"], second["stored"]) == (0, 0)
    assert second["digest"] == first["digest"]
    assert snapshot(repo) == before


def test_readding_an_untouched_file_reads_nothing(repo, cli):
    make_tree(repo, {"model.bin": os.urandom(600_000)})
    age(repo / "model.bin")
    cli("add", "model.bin")
    (again,) = cli.json("add", "model.bin")
    assert (again["hashed"], again["stored"]) == (0, 0)


def test_readding_a_changed_directory_stores_only_the_changes(repo, cli):
    files = {f"data/raw/f{i:03d}.csv": f"row {i}\n" for i in range(50)}
    make_tree(repo, files)
    age(repo / "data")
    (first,) = cli.json("add", "data/raw")
    objects = stored_digests(repo)

    (repo / "data/raw/f007.csv").write_text("row 7 changed\n")
    (repo / "data/raw/new.csv").write_text("brand new\n")
    (repo / "data/raw/f010.csv").unlink()
    (second,) = cli.json("add", "data/raw")

    assert second["hashed"] == 2  # the changed file and the new one, not the 48 others
    assert second["stored"] == 3  # their two objects plus the new manifest
    assert second["nfiles"] == 50
    assert second["digest"] != first["digest"]
    assert len(stored_digests(repo) - objects) == 3
    assert objects <= stored_digests(repo)  # the old version stays restorable


def test_a_same_size_edit_within_the_same_second_is_not_missed(repo, cli):
    """The stat cache must not trust a file modified so recently that its mtime can't move ("racy git")."""
    make_tree(repo, {"data/raw/a.csv": "aaaa\n", "data/raw/b.csv": "bbbb\n"})
    # "modified within a second of being hashed", whatever the machine's speed: an mtime the
    # first add's scan can't be a second past (a slow machine might otherwise settle the file)
    soon = time.time_ns() + 2 * 10**9
    for name in ("a.csv", "b.csv"):
        os.utime(repo / "data/raw" / name, ns=(soon, soon))
    (first,) = cli.json("add", "data/raw")
    path = repo / "data/raw/a.csv"
    st = os.stat(path)
    with open(path, "r+b") as f:  # same inode, same size ...
        f.write(b"AAAA\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and the same mtime
    assert cli.states() == {"data/raw": "modified"}
    (second,) = cli.json("add", "data/raw")
    assert second["digest"] != first["digest"]
    assert cli.states() == {"data/raw": "unchanged"}


def test_a_large_file_is_a_loose_object(repo, cli):
    data = os.urandom(512 * 1024 + 1)
    make_tree(repo, {"big.bin": data})
    (result,) = cli.json("add", "big.bin")
    assert loose_object(repo, result["digest"]).read_bytes() == data


def test_executable_bit_is_recorded_and_restored(repo, cli):
    make_tree(repo, {"tools/run.sh": "#!/bin/sh\necho hi\n", "tools/data.txt": "d"})
    os.chmod(repo / "tools/run.sh", 0o755)
    cli("add", "tools")
    (repo / "tools/run.sh").unlink()
    (repo / "tools/data.txt").unlink()
    cli("checkout")
    assert os.access(repo / "tools/run.sh", os.X_OK)
    assert not os.access(repo / "tools/data.txt", os.X_OK)
    assert (repo / "tools/run.sh").read_text() == "#!/bin/sh\necho hi\n"


def test_symlink_inside_the_repo_is_stored_as_its_content(repo, cli):
    make_tree(repo, {"shared/lookup.csv": "k,v\n", "data/raw/a.csv": "a\n"})
    os.symlink("../../shared/lookup.csv", repo / "data/raw/lookup.csv")
    (result,) = cli.json("add", "data/raw")
    assert result["nfiles"] == 2
    os.unlink(repo / "data/raw/lookup.csv")
    cli("checkout")
    restored = repo / "data/raw/lookup.csv"
    assert restored.read_text() == "k,v\n"


def test_several_paths_in_one_command(repo, cli):
    make_tree(repo, {**RAW, "model.bin": "m", "other/x.csv": "x"})
    results = cli.json("add", "data/raw", "model.bin", "other")
    assert [r["pointer"] for r in results] == ["data/raw.mlv", "model.bin.mlv", "other.mlv"]
    assert all((repo / r["pointer"]).is_file() for r in results)


def test_readding_after_the_cache_was_wiped_stores_everything_again(repo, cli):
    """`rm -rf .mlv/cache` loses only cached bytes; `mlv add` must put them back, not fail."""
    make_tree(repo, RAW)
    age(repo / "data")
    (first,) = cli.json("add", "data/raw")
    shutil.rmtree(repo / ".mlv/cache")
    (second,) = cli.json("add", "data/raw")
    assert second["digest"] == first["digest"]
    assert cli("fsck").exit_code == 0
    shutil.rmtree(repo / "data/raw")
    cli("checkout")
    assert (repo / "data/raw/sub/c.csv").read_text() == "z\n3\n"


def test_add_in_a_fresh_clone_creates_the_cache_on_first_use(repo, cli, tmp_path, monkeypatch):
    """After `git clone` there is no .mlv/cache and no `mlv init` is needed."""
    make_tree(repo, RAW)
    cli("add", "data/raw")
    clone = tmp_path / "clone"
    shutil.copytree(repo, clone, ignore=shutil.ignore_patterns("cache", "state.db*", "lock"))
    monkeypatch.chdir(clone)
    make_tree(clone, {"features/f.csv": "f\n", "model.bin": os.urandom(600_000)})
    cli("add", "features", "model.bin")
    assert {e["path"]: e["state"] for e in cli.json("status", "features", "model.bin")} == {
        "features": "unchanged", "model.bin": "unchanged",
    }


def test_unusual_file_names_round_trip(repo, cli):
    names = {"data/raw/with space.csv": "s", "data/raw/ünïcødé/ß.csv": "u", "data/raw/emoji-\U0001f600.txt": "e",
             "data/raw/inner.mlv": "not a pointer", "data/raw/.hidden": "h", "data/raw/-dash": "d"}
    make_tree(repo, names)
    (added,) = cli.json("add", "data/raw")
    assert added["nfiles"] == len(names)
    shutil.rmtree(repo / "data/raw")
    cli("checkout")
    for rel, content in names.items():
        assert (repo / rel).read_text() == content
    assert [e["path"] for e in cli.json("status")] == ["data/raw"]
