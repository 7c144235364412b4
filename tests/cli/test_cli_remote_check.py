"""`mlv fsck --remote` and `mlv gc --remote`, against a folder and against a real S3 server (moto).

The remote's files are damaged, removed or forged behind mlv's back (plain file writes, or
boto3), then the CLI is asked what it sees. A "clone" is a new folder holding only what git
would carry: `.mlv/config.yaml` and the pointer files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import commit_all, make_tree
from mlv.storage.workspace import config as configs
from mlv.storage.store import digest as digests
from mlv.storage.remote import state as remote_state
from mlv.storage.store.packs import decode_index, encode_index

BIG_V1, BIG_V2 = os.urandom(600_000), os.urandom(600_000)  # over the pack threshold: loose objects
V1 = {"data/a.csv": "x\n1\n", "data/b.csv": "y\n2\n", "data/keep.csv": "same in both\n"}


def d(content: bytes | str) -> str:
    return str(digests.of_bytes(content.encode() if isinstance(content, str) else content))


def loose_key(digest: str) -> str:
    hexdigest = digest.partition(":")[2]
    return f"{hexdigest[:2]}/{hexdigest[2:]}"


class RemoteFiles:
    """The remote's files as a bystander sees them: list, read, write, delete by key."""

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

    def listing(self) -> dict[str, int]:
        """``{key: size}`` of every file (ID and FORMAT included)."""
        if self.kind == "file":
            return {p.relative_to(self.root).as_posix(): p.stat().st_size for p in self.root.rglob("*") if p.is_file()}
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix="store/")
        return {o["Key"].removeprefix("store/"): o["Size"] for page in pages for o in page.get("Contents", [])}

    def read(self, key: str) -> bytes:
        if self.kind == "file":
            return (self.root / key).read_bytes()
        return self.s3.get_object(Bucket=self.bucket, Key=f"store/{key}")["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        if self.kind == "file":
            (self.root / key).parent.mkdir(parents=True, exist_ok=True)
            (self.root / key).write_bytes(data)
        else:
            self.s3.put_object(Bucket=self.bucket, Key=f"store/{key}", Body=data)

    def delete(self, key: str) -> None:
        if self.kind == "file":
            (self.root / key).unlink()
        else:
            self.s3.delete_object(Bucket=self.bucket, Key=f"store/{key}")

    def flip(self, key: str, offset: int) -> None:
        data = bytearray(self.read(key))
        data[offset] ^= 0xFF
        self.write(key, bytes(data))

    def packs(self) -> dict[str, dict[str, int]]:
        """``{pack key: {digest: offset}}`` from every index."""
        found = {}
        for key in self.listing():
            if key.endswith(".idx"):
                name = key.removeprefix("packs/").removesuffix(".idx")
                entries = decode_index(self.read(key), name)
                found[f"packs/{name}.pack"] = {str(digests.Digest.from_raw(r)): e.offset for r, e in entries.items()}
        return found

    def pack_of(self, digest: str) -> tuple[str, int]:
        return next((key, entries[digest]) for key, entries in self.packs().items() if digest in entries)


@pytest.fixture(params=["file", "s3"])
def remote(request, tmp_path) -> RemoteFiles:
    return RemoteFiles(request.param, tmp_path, request)


@pytest.fixture
def file_remote(tmp_path, request) -> RemoteFiles:
    return RemoteFiles("file", tmp_path, request)


def pushed(repo: Path, cli, remote: RemoteFiles) -> dict[str, str]:
    """A directory of three small files and a big file, added and pushed. Returns their digests."""
    make_tree(repo, {**V1, "big.bin": BIG_V1})
    dir_v1, big = (r["digest"] for r in cli.json("add", "data", "big.bin"))
    cli("remote", "add", *remote.args)
    cli("push")
    return {"dir": dir_v1, "big": big}


def problems(cli) -> list[dict]:
    report = cli.json("fsck", "--remote", "origin", code=1)
    assert report["ok"] is False and report["remote"] == "origin"
    return report["problems"]


# -- fsck --remote ---------------------------------------------------------------------------
def test_fsck_remote_is_clean_after_push(repo, cli, remote):
    pushed(repo, cli, remote)
    result = cli("fsck", "--remote", "origin")
    total = len(BIG_V1) + sum(len(v) for v in V1.values())
    assert result.stdout.startswith("checked 5 objects (") and result.stdout.endswith("on remote 'origin': ok\n")
    report = cli.json("fsck", "--remote", "origin")
    assert report["ok"] and report["problems"] == [] and report["objects"] == 5 and report["bytes"] > total


def test_fsck_remote_names_a_damaged_loose_object(repo, cli, remote):
    v = pushed(repo, cli, remote)
    remote.flip(loose_key(v["big"]), 1000)
    result = cli("fsck", "--remote", "origin", code=1)
    assert v["big"] in result.stdout and result.stdout.endswith("on remote 'origin': 1 problem(s)\n")
    [problem] = problems(cli)
    assert problem["kind"] == "corrupt" and problem["digest"] == v["big"]
    assert problem["where"] == loose_key(v["big"]) and problem["breaks"] == ["big.bin.mlv"]
    seen = remote_state.load(repo / ".mlv/state.db", configs.load(repo / ".mlv/config.yaml").remotes["origin"])
    assert seen is not None and bytes.fromhex(v["big"][9:]) not in seen.objects  # push must not trust it
    assert bytes.fromhex(d("same in both\n")[9:]) in seen.objects


def test_fsck_remote_names_a_damaged_packed_object_and_its_pack(repo, cli, remote):
    pushed(repo, cli, remote)
    victim = d("y\n2\n")
    pack, offset = remote.pack_of(victim)
    remote.flip(pack, offset + 1)
    [problem] = problems(cli)
    assert problem["kind"] == "corrupt" and problem["digest"] == victim
    assert problem["where"] == f"{pack}@{offset}" and problem["breaks"] == ["data.mlv"]


def test_a_deleted_pack_is_missing_and_the_next_push_sends_it_again(repo, cli, remote):
    v = pushed(repo, cli, remote)
    [pack] = remote.packs()
    remote.delete(pack)
    found = problems(cli)
    assert {p["digest"] for p in found} == {v["dir"], *(d(c) for c in V1.values())}
    assert {(p["kind"], p["where"]) for p in found} == {("missing", pack)}
    cli("push")
    assert cli.json("fsck", "--remote", "origin")["ok"]


def test_a_deleted_loose_object_is_missing_and_the_next_push_sends_it_again(repo, cli, remote):
    v = pushed(repo, cli, remote)
    remote.delete(loose_key(v["big"]))
    [problem] = problems(cli)
    assert (problem["kind"], problem["digest"], problem["where"]) == ("missing", v["big"], "big.bin.mlv")
    assert cli.json("push")["objects"] == 1
    assert cli.json("fsck", "--remote", "origin")["ok"]


def test_push_after_fsck_replaces_a_damaged_loose_object(repo, cli, remote):
    v = pushed(repo, cli, remote)
    remote.flip(loose_key(v["big"]), 1000)
    problems(cli)
    assert cli.json("push")["objects"] == 1  # fsck's finding outlives the listing, which cannot see damage
    assert cli.json("fsck", "--remote", "origin")["ok"]


def test_push_after_fsck_sends_a_damaged_packed_object_again_and_clones_get_the_good_copy(repo, cli, remote,
                                                                                         monkeypatch, tmp_path):
    v = pushed(repo, cli, remote)
    victim = d(V1["data/a.csv"])
    key, offset = remote.pack_of(victim)
    remote.flip(key, offset)
    assert victim in {p["digest"] for p in problems(cli)}
    assert cli.json("push")["objects"] == 1  # packed anew beside the damaged copy
    clone = tmp_path / "clone"
    (clone / ".mlv").mkdir(parents=True)
    shutil.copy(repo / ".mlv" / "config.yaml", clone / ".mlv" / "config.yaml")
    for pointer in (repo / "data.mlv", repo / "big.bin.mlv"):
        shutil.copy(pointer, clone / pointer.name)
    monkeypatch.chdir(clone)
    cli("pull")  # the damaged copy is tried, refused, and the good one taken
    assert (clone / "data/a.csv").read_text() == V1["data/a.csv"]
    assert v["dir"]


def test_fsck_remote_reports_a_damaged_index_and_catalog_and_ignores_leftovers(repo, cli, file_remote):
    make_tree(repo, {"mlv.yaml": "stages:\n  hello:\n    cmd: echo building && echo hi > out.txt\n"
                                 "    outs: [out.txt]\n"})
    pushed(repo, cli, file_remote)
    cli("run")
    cli("push")
    assert cli.json("fsck", "--remote", "origin")["ok"]
    file_remote.write("packs/" + "0" * 32 + ".pack", b"an interrupted push")  # no index: not a pack yet
    file_remote.write("tmp/upload-in-flight", b"partial")
    assert cli.json("fsck", "--remote", "origin")["ok"]
    [catalog] = [k for k in file_remote.listing() if k.startswith("runs/")]
    file_remote.write(catalog, file_remote.read(catalog) + b"not a line\n")
    index = next(k for k in file_remote.listing() if k.endswith(".idx"))
    file_remote.write(index, file_remote.read(index)[:-3])
    found = {(p["kind"], p["where"]) for p in problems(cli)}
    assert ("unreadable", index) in found and ("corrupt", catalog) in found and ("unreadable", f"{catalog}:2") in found


def test_fsck_remote_names_what_the_workspace_needs_and_the_remote_lacks(repo, cli, file_remote):
    pushed(repo, cli, file_remote)
    make_tree(repo, {"new.txt": "not pushed yet\n"})
    cli("add", "new.txt")
    [problem] = problems(cli)
    assert (problem["kind"], problem["digest"], problem["where"]) == ("missing", d("not pushed yet\n"), "new.txt.mlv")


# -- gc --remote -----------------------------------------------------------------------------
def two_versions(repo: Path, cli, remote: RemoteFiles) -> dict[str, str]:
    """v1 of a directory and a big file, committed and pushed; then v2 of both, committed and pushed."""
    v = pushed(repo, cli, remote)
    commit_all(repo, "v1")
    (repo / "data/a.csv").write_text("x\n1\nchanged\n")
    (repo / "data/b.csv").unlink()
    (repo / "big.bin").write_bytes(BIG_V2)
    dir_v2, big_v2 = (r["digest"] for r in cli.json("add", "data", "big.bin"))
    commit_all(repo, "v2")
    cli("push")
    return {"dir_v1": v["dir"], "big_v1": v["big"], "dir_v2": dir_v2, "big_v2": big_v2}


def clone_of(repo: Path, name: str = "clone") -> Path:
    """What git would carry: the config and the pointer files."""
    other = repo.parent / name
    (other / ".mlv").mkdir(parents=True)
    shutil.copy(repo / ".mlv/config.yaml", other / ".mlv/config.yaml")
    for pointer in (p for p in repo.glob("*.mlv") if p.is_file()):
        shutil.copy(pointer, other / pointer.name)
    return other


def test_gc_remote_removes_old_versions_and_keeps_what_is_referenced(git_repo, cli, remote, monkeypatch):
    v = two_versions(git_repo, cli, remote)
    before = remote.listing()
    plan = cli.json("gc", "--remote", "origin", "--dry-run", "--grace", "0")
    assert remote.listing() == before
    only_v1 = sorted([v["dir_v1"], v["big_v1"], d("x\n1\n"), d("y\n2\n")])
    assert plan["dry_run"] and plan["removed"] == only_v1 and plan["repacked"] == 1  # `keep` shares v1's pack
    assert cli.json("gc", "--remote", "origin", "--all-commits", "--grace", "0")["removed"] == []
    assert cli.json("gc", "--remote", "origin", "--grace", "86400")["removed"] == []
    assert remote.listing() == before

    other = clone_of(git_repo)  # nothing in its store: the manifests are read from the remote
    monkeypatch.chdir(other)
    result = cli("gc", "--remote", "origin", "--grace", "0")
    assert result.stdout == (f"removed 4 objects ({plan['freed_bytes']} bytes) from remote 'origin'; "
                             f"rewrote 1 packs; kept {plan['kept']}\n")
    after = remote.listing()
    assert loose_key(v["big_v1"]) not in after and loose_key(v["big_v2"]) in after
    assert sum(before.values()) - sum(after.values()) == plan["freed_bytes"]
    assert cli.json("fsck", "--remote", "origin")["ok"]
    assert cli.json("gc", "--remote", "origin", "--grace", "0")["removed"] == []
    cli("pull")
    assert (other / "data/keep.csv").read_text() == "same in both\n"  # from the rewritten pack
    assert (other / "data/a.csv").read_text() == "x\n1\nchanged\n" and not (other / "data/b.csv").exists()
    assert (other / "big.bin").read_bytes() == BIG_V2


def test_gc_remote_in_a_clone_reads_a_large_manifest_from_the_remote(repo, cli, file_remote, monkeypatch):
    long = "x" * 230  # long names: 2100 entries make a manifest over the pack threshold, a loose object
    make_tree(repo, {f"many/{long}{i:05d}": str(i) for i in range(2100)} | {"extra.txt": "nobody needs me\n"})
    [many, extra] = (r["digest"] for r in cli.json("add", "many", "extra.txt"))
    cli("remote", "add", *file_remote.args)
    cli("push")
    assert loose_key(many) in file_remote.listing()
    (repo / "extra.txt.mlv").unlink()
    other = clone_of(repo)
    monkeypatch.chdir(other)
    assert cli.json("gc", "--remote", "origin", "--grace", "0")["removed"] == [extra]
    assert cli.json("fsck", "--remote", "origin")["ok"]


def test_gc_remote_all_commits_keeps_every_committed_version(git_repo, cli, file_remote, monkeypatch):
    v = two_versions(git_repo, cli, file_remote)
    report = cli.json("gc", "--remote", "origin", "--all-commits", "--grace", "0")
    assert report["removed"] == [] and report["repacked"] == 0
    other = clone_of(git_repo)
    monkeypatch.chdir(other)
    (other / "data.mlv").write_text((other / "data.mlv").read_text().replace(v["dir_v2"], v["dir_v1"]))
    cli("pull", "data")
    assert sorted(p.name for p in (other / "data").iterdir()) == ["a.csv", "b.csv", "keep.csv"]


def test_gc_remote_keeps_run_records_and_their_logs_from_other_clones(repo, cli, file_remote, monkeypatch):
    make_tree(repo, {"mlv.yaml": "stages:\n  hello:\n    cmd: echo building && echo hi > out.txt\n"
                                 "    outs: [out.txt]\n"})
    cli("remote", "add", *file_remote.args)
    cli("run")
    cli("push")
    [record] = (repo / ".mlv/runs").glob("*.json")
    kept = {d(record.read_bytes()), d("building\n")}
    out = d("hi\n")
    other = clone_of(repo)  # no mlv.lock, no run records: only the catalog names them
    monkeypatch.chdir(other)
    report = cli.json("gc", "--remote", "origin", "--grace", "0")
    assert report["removed"] == [out]
    left = {digest for entries in file_remote.packs().values() for digest in entries}
    assert kept <= left and out not in left


def forge_pack(remote: RemoteFiles, *objects: bytes) -> str:
    """Put a pack of ``objects`` on the remote as another clone's push would; returns its key."""
    body, entries = b"", {}
    for data in objects:
        entries[bytes.fromhex(d(data)[9:])] = (len(body), len(data))
        body += data
    name = d(body)[9:]
    remote.write(f"packs/{name}.pack", body)
    remote.write(f"packs/{name}.idx", encode_index(entries))
    return f"packs/{name}.pack"


def test_gc_remote_never_drops_a_live_object_that_also_sits_in_dead_packs(git_repo, cli, file_remote, monkeypatch):
    two_versions(git_repo, cli, file_remote)  # v1's pack: `keep` is its only live entry
    keep, dead = b"same in both\n", b"nobody names this\n"
    mixed = forge_pack(file_remote, dead, keep)  # the same live object beside a dead one, in another pack
    all_dead = forge_pack(file_remote, b"nor this\n", b"nor that\n")
    same_bytes = forge_pack(file_remote, b"", keep)  # a dead empty object: without it, the same bytes
    report = cli.json("gc", "--remote", "origin", "--grace", "0")
    assert {d(dead), d("nor this\n"), d("nor that\n"), d(b"")} <= set(report["removed"])
    assert d(keep) not in report["removed"] and report["repacked"] == 3
    left = file_remote.listing()
    assert mixed not in left and all_dead not in left and all_dead.replace(".pack", ".idx") not in left
    assert same_bytes in left and file_remote.packs()[same_bytes] == {d(keep): 0}
    assert any(d(keep) in entries for entries in file_remote.packs().values())
    assert cli.json("fsck", "--remote", "origin")["ok"]
    other = clone_of(git_repo)
    monkeypatch.chdir(other)
    cli("pull")
    assert (other / "data/keep.csv").read_bytes() == keep


def test_gc_remote_removes_leftovers_of_interrupted_pushes_after_the_grace_period(repo, cli, file_remote):
    pushed(repo, cli, file_remote)
    orphan, partial = "packs/" + "0" * 32 + ".pack", "tmp/upload-in-flight"
    file_remote.write(orphan, b"an interrupted push")
    file_remote.write(partial, b"partial")
    cli("gc", "--remote", "origin")
    assert {orphan, partial} <= set(file_remote.listing())  # young: a push may still be writing them
    cli("gc", "--remote", "origin", "--grace", "0")
    assert not {orphan, partial} & set(file_remote.listing())


def test_gc_remote_refuses_when_a_directory_version_cannot_be_read(repo, cli, file_remote):
    make_tree(repo, {**V1, "big.bin": BIG_V1})
    cli("add", "data", "big.bin")
    cli("remote", "add", *file_remote.args)
    cli("push", "big.bin")  # data/'s manifest is only in the local store
    (repo / "big.bin").write_bytes(BIG_V2)
    cli("add", "big.bin")
    cli("push", "big.bin")  # BIG_V1 is dead on the remote now
    shutil.rmtree(repo / ".mlv/cache")
    before = file_remote.listing()
    result = cli("gc", "--remote", "origin", "--grace", "0", code=1)
    assert "'data.mlv' names the directory version" in result.stderr and "nothing was removed" in result.stderr
    assert file_remote.listing() == before


def test_gc_remote_keeps_a_pack_whose_live_object_is_damaged(git_repo, cli, file_remote):
    two_versions(git_repo, cli, file_remote)
    pack, offset = file_remote.pack_of(d("same in both\n"))
    file_remote.flip(pack, offset)
    before = file_remote.listing()
    result = cli("gc", "--remote", "origin", "--grace", "0", code=1)
    assert f"warning: {pack} on remote 'origin' was kept" in result.stderr
    after = file_remote.listing()
    assert pack in after and len([k for k in after if not k.startswith("damaged/")]) < len(before)  # the rest went
    digest = d("same in both\n").partition(":")[2]
    marker = f"damaged/{digest}.{pack.removeprefix('packs/').removesuffix('.pack')}"
    assert marker in after  # what gc found, every clone now knows
