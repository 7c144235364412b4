"""Damaged data is exit 1 and never served; `mlv fsck` names it and the pointers it breaks.

Objects of 512 KiB and more are loose files at `.mlv/cache/<2 hex>/<30 hex>`; smaller
ones live inside `.mlv/cache/packs/<name>.pack`, found through `<name>.idx`.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from helpers import flip_byte, loose_object, make_tree, snapshot, store_of
from mlv.storage.store import digest as digests
from mlv.storage.store.digest import Digest

BIG = 600_000
RAW = {"data/raw/a.csv": "x\n1\n", "data/raw/b.csv": "y\n2\n", "data/raw/sub/c.csv": "z\n3\n"}


def flip_packed(repo, content: bytes) -> None:
    """Corrupt the packed object holding ``content``: one byte of it, inside its pack."""
    store = store_of(repo)
    entry = store.packed(digests.of_bytes(content))
    assert entry is not None, "expected a packed object"
    flip_byte(repo / ".mlv/cache/packs" / f"{entry.pack}.pack", entry.offset)


def fsck_problems(cli) -> list[dict]:
    result = cli("fsck", "--json", code=1)
    assert result.stdout.strip(), f"fsck printed no report, only: {result.stderr}"
    report = json.loads(result.stdout)
    assert report["ok"] is False
    return report["problems"]


@pytest.fixture
def big(repo, cli):
    data = os.urandom(BIG)
    make_tree(repo, {"model.bin": data})
    (added,) = cli.json("add", "model.bin")
    return data, added["digest"]


def test_clean_store_passes_fsck(repo, cli):
    make_tree(repo, {**RAW, "model.bin": os.urandom(BIG)})
    cli("add", "data/raw", "model.bin")
    report = cli.json("fsck")
    assert report["ok"] is True and report["problems"] == []
    assert report["objects"] == 5  # three small files, a manifest, one large file
    assert "ok" in cli("fsck").stdout


@pytest.mark.parametrize("mode", ["auto", "copy", "hardlink", "symlink"])
def test_damaged_loose_object_is_never_served(repo, cli, big, mode):
    (repo / ".mlv/config.yaml").write_text(f"cache: {{link: {mode}}}\n")
    _, digest = big
    flip_byte(loose_object(repo, digest), 1000)
    (repo / "model.bin").unlink()
    result = cli("checkout", "--force", code=1)
    assert "model.bin" in result.stderr
    assert not (repo / "model.bin").exists() and not (repo / "model.bin").is_symlink()
    assert [p.name for p in repo.iterdir() if p.name.startswith(".model.bin")] == []  # no temp files left


def test_damaged_loose_object_leaves_the_old_workspace_file(repo, cli, big):
    _, digest = big
    flip_byte(loose_object(repo, digest), 0)
    (repo / "model.bin").write_bytes(b"my local edit")
    cli("checkout", "--force", code=1)
    assert (repo / "model.bin").read_bytes() == b"my local edit"


def test_damaged_packed_object_is_never_served(repo, cli):
    make_tree(repo, RAW)
    cli("add", "data/raw")
    flip_packed(repo, b"x\n1\n")
    (repo / "data/raw/a.csv").unlink()
    (repo / "data/raw/b.csv").unlink()
    result = cli("checkout", "--force", code=1)
    assert "data/raw/a.csv" in result.stderr
    assert not (repo / "data/raw/a.csv").exists()
    assert (repo / "data/raw/b.csv").read_text() == "y\n2\n"  # undamaged files are still restored


def test_fsck_names_a_damaged_packed_object_and_the_pointer_it_breaks(repo, cli):
    make_tree(repo, {**RAW, "other.csv": "o\n"})
    cli("add", "data/raw", "other.csv")
    flip_packed(repo, b"y\n2\n")
    (problem,) = fsck_problems(cli)
    assert problem["kind"] == "corrupt"
    assert problem["digest"] == str(digests.of_bytes(b"y\n2\n"))
    assert problem["breaks"] == ["data/raw.mlv"]
    human = cli("fsck", code=1).stdout
    assert "corrupt" in human and "data/raw.mlv" in human


def test_fsck_names_the_pointer_a_damaged_file_object_breaks(repo, cli, big):
    _, digest = big
    flip_byte(loose_object(repo, digest), 5)
    (problem,) = fsck_problems(cli)
    assert (problem["kind"], problem["digest"]) == ("corrupt", digest)
    assert problem["breaks"] == ["model.bin.mlv"]


def test_fsck_reports_a_truncated_loose_object(repo, cli, big):
    data, digest = big
    path = loose_object(repo, digest)
    os.chmod(path, 0o644)
    path.write_bytes(data[: BIG // 2])
    (problem,) = fsck_problems(cli)
    assert (problem["kind"], problem["digest"]) == ("corrupt", digest)


def test_fsck_reports_a_missing_object_and_its_pointer(repo, cli, big):
    _, digest = big
    loose_object(repo, digest).unlink()
    (problem,) = fsck_problems(cli)
    assert (problem["kind"], problem["digest"]) == ("missing", digest)
    assert "model.bin.mlv" in problem["where"] + " ".join(problem["breaks"])


def test_fsck_reports_a_missing_member_of_a_directory(repo, cli):
    big_member = os.urandom(BIG)
    make_tree(repo, {**RAW, "data/raw/big.bin": big_member})
    cli("add", "data/raw")
    loose_object(repo, str(digests.of_bytes(big_member))).unlink()
    (problem,) = fsck_problems(cli)
    assert problem["kind"] == "missing"
    assert problem["breaks"] == ["data/raw.mlv"] or problem["where"] == "data/raw.mlv"


@pytest.fixture
def damaged_manifest(repo, cli) -> str:
    """data/raw tracked, with one byte of its manifest object flipped; returns the manifest digest."""
    make_tree(repo, RAW)
    (added,) = cli.json("add", "data/raw")
    store = store_of(repo)
    entry = store.packed(Digest.from_hex(added["digest"].partition(":")[2]))
    flip_byte(repo / ".mlv/cache/packs" / f"{entry.pack}.pack", entry.offset + entry.length - 1)
    return added["digest"]


def test_fsck_names_the_pointer_a_damaged_manifest_breaks(repo, cli, damaged_manifest):
    problems = fsck_problems(cli)
    assert [(p["kind"], p["digest"]) for p in problems] == [("corrupt", damaged_manifest)]
    assert problems[0]["breaks"] == ["data/raw.mlv"]


def test_checkout_with_a_damaged_manifest_names_the_path(repo, cli, damaged_manifest):
    shutil.rmtree(repo / "data/raw")
    result = cli("checkout", "--force", code=1)
    assert "'data/raw'" in result.stderr
    assert not (repo / "data/raw").exists()


def test_readding_a_directory_whose_manifest_is_damaged(repo, cli, damaged_manifest):
    """The damaged old version must not block storing the directory again (the error advises re-adding)."""
    (repo / "data/raw/a.csv").write_text("new version\n")
    (added,) = cli.json("add", "data/raw")
    assert added["digest"] != damaged_manifest


def test_damaged_pack_index_is_reported_not_a_traceback(repo, cli):
    make_tree(repo, RAW)
    cli("add", "data/raw")
    (idx,) = (repo / ".mlv/cache/packs").glob("*.idx")
    idx.write_bytes(idx.read_bytes()[:-3])
    problems = fsck_problems(cli)
    assert any(p["kind"] == "unreadable" for p in problems)


def test_fsck_in_a_fresh_clone_without_a_cache(repo, cli, tmp_path, monkeypatch):
    """After `git clone` no `mlv init` is needed; fsck then reports the missing objects, no traceback."""
    make_tree(repo, {**RAW, "model.bin": "m"})
    cli("add", "data/raw", "model.bin")
    clone = tmp_path / "clone"
    shutil.copytree(repo, clone, ignore=shutil.ignore_patterns("cache", "state.db*", "lock"))
    monkeypatch.chdir(clone)
    problems = fsck_problems(cli)
    assert {p["kind"] for p in problems} == {"missing"}
    assert len(problems) == 2


def test_fsck_changes_nothing(repo, cli, big):
    _, digest = big
    flip_byte(loose_object(repo, digest), 0)
    before = snapshot(repo)
    cli("fsck", code=1)
    assert snapshot(repo) == before


def test_readding_the_data_repairs_a_damaged_object(repo, cli, big):
    """The checkout error says 'Restore good copies with `mlv pull` (or re-add the data), then run `mlv fsck`'."""
    data, digest = big
    flip_byte(loose_object(repo, digest), 0)
    (repo / "model.bin").unlink()
    assert "re-add" in cli("checkout", code=1).stderr
    (repo / "model.bin").write_bytes(data)  # the user still has a good copy
    cli("add", "model.bin")
    cli("fsck")
    (repo / "model.bin").unlink()
    cli("checkout")
    assert (repo / "model.bin").read_bytes() == data


def test_status_stays_available_with_a_damaged_object(repo, cli, big):
    _, digest = big
    flip_byte(loose_object(repo, digest), 0)
    cli("fsck", code=1)
    assert cli.json("status")[0]["path"] == "model.bin"
