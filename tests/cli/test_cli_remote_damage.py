"""Damage on a remote that one clone finds and any other repairs: markers under ``damaged/``, the
push that re-sends, the fetch that tries bad copies last, fsck that calls superseded damage harmless,
gc that removes it. Real CLI, folder and S3 (moto) remotes, bytes flipped behind mlv's back.

A "clone" is a `git clone` of the repo: pointers, `mlv.lock` and `.mlv/config.yaml`, no store.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import commit_all, git, make_tree
from mlv.storage.store import digest as digests
from mlv.storage.store.packs import decode_index

SMALL = {f"data/f{i:02d}.txt": f"row {i}\n" * (i + 1) for i in range(20)}
BIG = os.urandom(700 * 1024)  # over the pack threshold: a loose object


def d(content: str | bytes) -> str:
    return str(digests.of_bytes(content.encode() if isinstance(content, str) else content))


class Files:
    """The remote's files as a bystander sees them (plain file I/O, or boto3 straight to moto)."""

    def __init__(self, kind: str, tmp_path: Path, request) -> None:
        self.kind = kind
        if kind == "file":
            self.root = tmp_path / "remote"
            self.args = ["origin", str(self.root)]
        else:
            import boto3

            endpoint = request.getfixturevalue("s3_endpoint")
            self.bucket = request.getfixturevalue("s3_bucket")
            self.s3 = boto3.client("s3", endpoint_url=endpoint)
            self.args = ["origin", f"s3://{self.bucket}/store", "--endpoint-url", endpoint]

    def listing(self) -> set[str]:
        if self.kind == "file":
            return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()}
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix="store/")
        return {o["Key"].removeprefix("store/") for page in pages for o in page.get("Contents", [])}

    def read(self, key: str) -> bytes:
        if self.kind == "file":
            return (self.root / key).read_bytes()
        return self.s3.get_object(Bucket=self.bucket, Key=f"store/{key}")["Body"].read()

    def flip(self, key: str, offset: int) -> None:
        data = bytearray(self.read(key))
        data[offset] ^= 0xFF
        if self.kind == "file":
            (self.root / key).write_bytes(bytes(data))
        else:
            self.s3.put_object(Bucket=self.bucket, Key=f"store/{key}", Body=bytes(data))

    def pack_of(self, digest: str) -> tuple[str, int]:
        """The first pack (key) holding ``digest``, and its offset there."""
        for key in sorted(self.listing()):
            if key.endswith(".idx"):
                name = key.removeprefix("packs/").removesuffix(".idx")
                for raw, e in decode_index(self.read(key), name).items():
                    if str(digests.Digest.from_raw(raw)) == digest:
                        return f"packs/{name}.pack", e.offset
        raise AssertionError(f"{digest} is in no pack")

    def markers(self) -> set[str]:
        return {k for k in self.listing() if k.startswith("damaged/")}


@pytest.fixture(params=["file", "s3"])
def remote(request, tmp_path) -> Files:
    return Files(request.param, tmp_path, request)


def clone(src: Path, name: str) -> Path:
    dst = src.parent / name
    git(src.parent, "clone", "-q", str(src), str(dst))
    return dst


def shared(repo: Path, cli, remote: Files) -> None:
    """A directory of small files and a big file, added, pushed and committed."""
    make_tree(repo, {**SMALL, "big.bin": BIG})
    cli("add", "data", "big.bin")
    cli("remote", "add", *remote.args)
    cli("push")
    commit_all(repo, "data")


def with_the_data(repo: Path, name: str) -> Path:
    """A fresh clone that has the data: the files copied in beside the pointers and added again."""
    other = clone(repo, name)
    shutil.copytree(repo / "data", other / "data")
    shutil.copy(repo / "big.bin", other / "big.bin")
    return other


# -- damage found in one clone, repaired from another --------------------------------------------
def test_damage_one_clone_finds_is_repaired_by_any_push_and_cleaned_by_gc(git_repo, cli, remote, monkeypatch):
    shared(git_repo, cli, remote)
    victim = d(SMALL["data/f07.txt"])
    pack, offset = remote.pack_of(victim)
    remote.flip(pack, offset)

    reader = clone(git_repo, "reader")
    monkeypatch.chdir(reader)
    result = cli("pull", code=1)
    assert victim in result.stderr and "damaged or tampered" in result.stderr and "`mlv push`" in result.stderr
    assert not (reader / "data").exists() or not (reader / "data/f07.txt").exists()
    marker = f"damaged/{victim.partition(':')[2]}.{pack.removeprefix('packs/').removesuffix('.pack')}"
    assert remote.markers() == {marker}  # every clone sees it at its next listing

    writer = with_the_data(git_repo, "writer")  # never saw the damage itself
    monkeypatch.chdir(writer)
    cli("add", "data", "big.bin")
    assert cli.json("push")["objects"] == 1  # only the object whose copies are all bad

    monkeypatch.chdir(reader)
    cli("pull")
    assert {p.name: p.read_bytes() for p in (reader / "data").iterdir()} == \
           {p.name: p.read_bytes() for p in (git_repo / "data").iterdir()}

    report = cli.json("fsck", "--remote", "origin")  # the bad copy breaks nothing now: exit 0
    assert report["ok"] and report["problems"] == []
    [superseded] = report["superseded"]
    assert superseded["digest"] == victim and superseded["where"] == f"{pack}@{offset}"
    assert "mlv gc --remote origin" in superseded["detail"]

    gc = cli.json("gc", "--remote", "origin")  # default grace: the bad copy goes whatever its age
    assert gc["removed"] == [] and gc["damaged_removed"] == [f"{victim} in {pack}"] and gc["markers_cleared"] == 1
    assert pack not in remote.listing() and remote.markers() == set()
    report = cli.json("fsck", "--remote", "origin")
    assert report["ok"] and report["problems"] == [] and report["superseded"] == []
    third = clone(git_repo, "third")
    monkeypatch.chdir(third)
    cli("pull")
    assert (third / "data/f07.txt").read_text() == SMALL["data/f07.txt"]


def test_a_damaged_loose_object_is_replaced_in_place_and_its_marker_goes(git_repo, cli, remote, monkeypatch):
    shared(git_repo, cli, remote)
    big = d(BIG)
    key = f"{big[9:11]}/{big[11:]}"
    remote.flip(key, 1000)
    reader = clone(git_repo, "reader")
    monkeypatch.chdir(reader)
    assert big in cli("pull", code=1).stderr
    assert remote.markers() == {f"damaged/{big[9:]}.loose"}
    assert (reader / "data/f00.txt").exists()  # the rest landed

    monkeypatch.chdir(git_repo)  # the clone that pushed, within 15 minutes of its own listing:
    assert "as this clone saw it" in cli("push").stdout  # it says whose word "nothing to push" is
    cli("fetch")  # a listing shows it the marker
    pushed = cli.json("push")
    assert pushed["objects"] == 1 and pushed["bytes"] == len(BIG)
    assert remote.read(key) == BIG and remote.markers() == set()
    monkeypatch.chdir(reader)
    cli("pull")
    assert (reader / "big.bin").read_bytes() == BIG
    assert cli.json("fsck", "--remote", "origin")["ok"]


def test_fsck_remote_marks_what_it_finds_so_a_clone_that_never_looked_repairs_it(git_repo, cli, tmp_path,
                                                                                 monkeypatch):
    remote = Files("file", tmp_path, None)
    shared(git_repo, cli, remote)
    victim = d(SMALL["data/f03.txt"])
    pack, offset = remote.pack_of(victim)
    remote.flip(pack, offset)
    auditor = clone(git_repo, "auditor")
    monkeypatch.chdir(auditor)
    [problem] = cli.json("fsck", "--remote", "origin", code=1)["problems"]
    assert problem["digest"] == victim and problem["kind"] == "corrupt"
    assert len(remote.markers()) == 1
    writer = with_the_data(git_repo, "writer")
    monkeypatch.chdir(writer)
    cli("add", "data", "big.bin")
    assert cli.json("push")["objects"] == 1
    monkeypatch.chdir(auditor)
    assert cli.json("fsck", "--remote", "origin")["ok"]  # superseded, not a problem
    cli("gc", "--remote", "origin")
    assert remote.markers() == set() and cli.json("fsck", "--remote", "origin")["superseded"] == []


def test_a_fetch_tries_a_copy_known_bad_last(git_repo, cli, tmp_path, monkeypatch):
    remote = Files("file", tmp_path, None)
    shared(git_repo, cli, remote)
    victim = d(SMALL["data/f05.txt"])
    pack, offset = remote.pack_of(victim)
    remote.flip(pack, offset)
    first = clone(git_repo, "first")
    monkeypatch.chdir(first)
    cli("pull", code=1)  # finds and marks the damage
    writer = with_the_data(git_repo, "writer")
    monkeypatch.chdir(writer)
    cli("add", "data", "big.bin")
    cli("push")
    second = clone(git_repo, "second")
    monkeypatch.chdir(second)
    result = cli("pull")  # the good copy first: nothing refused, no warning
    assert result.stderr == "" and (second / "data/f05.txt").read_text() == SMALL["data/f05.txt"]


def test_a_remote_that_refuses_the_marker_gives_a_warning_and_this_clone_remembers(git_repo, cli, tmp_path,
                                                                                   monkeypatch):
    remote = Files("file", tmp_path, None)
    shared(git_repo, cli, remote)
    big = d(BIG)
    remote.flip(f"{big[9:11]}/{big[11:]}", 10)
    (remote.root / "damaged").write_text("a file where the markers' folder would go: every marker write fails\n")
    reader = clone(git_repo, "reader")
    monkeypatch.chdir(reader)
    result = cli("pull", code=1)
    assert big in result.stderr and "could not be marked on the remote, so only this clone knows" in result.stderr
    assert remote.markers() == set()
    from mlv.storage.workspace import config as configs
    from mlv.storage.remote import state as remote_state

    seen = remote_state.load(reader / ".mlv/state.db", configs.load(reader / ".mlv/config.yaml").remotes["origin"])
    assert seen is not None and seen.damaged == {(bytes.fromhex(big[9:]), "loose")}
    [problem] = cli.json("fsck", "--remote", "origin", code=1)["problems"]  # still known here, and said so
    assert problem["digest"] == big and "known to this clone only" in problem["detail"]
