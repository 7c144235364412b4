"""`mlv push / fetch / pull` end to end, against a folder and against a real S3 server (moto, server mode).

A "clone" is a real `git clone` of a repo whose pointers, mlv.lock and .mlv/config.yaml are
committed: no `mlv init`, no cache, exactly what a teammate starts from.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers import (
    GIT_ENV, MLV, commit_all, flip_byte, git, loose_object, make_tree, run_mlv, snapshot, store_of, stored_digests,
)

SMALL = {f"data/f{i:03d}.txt": f"row {i}\n" * (i + 1) for i in range(60)}
BIG = os.urandom(700 * 1024)  # over the pack threshold: a loose object


@pytest.fixture(params=["file", "s3"])
def remote_args(request, tmp_path) -> list[str]:
    """`mlv remote add` arguments for an empty remote of each kind."""
    if request.param == "file":
        return ["origin", str(tmp_path / "remote")]
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return ["origin", f"s3://{bucket}/store", "--endpoint-url", endpoint]


@pytest.fixture
def shared(git_repo, cli, remote_args) -> Path:
    """A git repo with a directory and a big file added, a remote configured, all committed."""
    make_tree(git_repo, SMALL)
    (git_repo / "big.bin").write_bytes(BIG)
    cli("add", "data", "big.bin")
    cli("remote", "add", *remote_args)
    commit_all(git_repo, "data")
    return git_repo


def clone(src: Path, name: str = "clone") -> Path:
    dst = src.parent / name
    git(src.parent, "clone", "-q", str(src), str(dst))
    return dst


def files_of(root: Path, *rels: str) -> dict[str, object]:
    return {rel: snapshot(root / rel) if (root / rel).is_dir() else (root / rel).read_bytes() for rel in rels}


def test_push_then_pull_into_a_fresh_clone_restores_identical_bytes(shared, cli, monkeypatch):
    pushed = cli.json("push")
    assert pushed["ok"] and pushed["objects"] == len(SMALL) + 2  # files, the manifest, big.bin
    assert pushed["files"] <= 6, "small objects travel in packs, not one file each"
    other = clone(shared)
    monkeypatch.chdir(other)
    assert not (other / ".mlv" / "cache").exists()
    pulled = cli.json("pull")
    assert pulled["ok"] and pulled["objects"] == len(SMALL) + 2
    assert files_of(other, "data", "big.bin") == files_of(shared, "data", "big.bin")
    assert cli.states() == {"data": "unchanged", "big.bin": "unchanged"}
    cli("fsck")
    again = cli.json("pull")
    assert again["objects"] == 0 and again["checkout"]["restored"] == []


def test_a_second_push_transfers_nothing_even_after_forgetting_what_it_saw(shared, cli):
    cli("push")
    assert cli.json("push")["objects"] == 0
    (shared / ".mlv" / "state.db").unlink()  # no memory of the remote: the listing must say the same
    second = cli.json("push")
    assert second["objects"] == 0 and second["files"] == 0 and second["present"] == len(SMALL) + 2


def test_push_sends_new_versions_only(shared, cli):
    cli("push")
    (shared / "data/f000.txt").write_text("changed\n")
    cli("add", "data")
    pushed = cli.json("push")
    assert pushed["objects"] == 2  # the changed file and the new manifest


def test_dry_runs_transfer_nothing(shared, cli, monkeypatch):
    plan = cli.json("push", "--dry-run")
    assert plan["dry_run"] and plan["objects"] == len(SMALL) + 2
    assert cli.json("push", "--dry-run")["objects"] == len(SMALL) + 2  # still all: nothing was sent
    assert not any((shared / ".mlv" / "cache" / "tmp").iterdir()), "a dry run builds no packs"
    cli("push")
    other = clone(shared)
    monkeypatch.chdir(other)
    before = snapshot(other)
    assert cli.json("pull", "--dry-run")["objects"] == len(SMALL) + 2
    after = snapshot(other)
    after.pop(".mlv/lock", None)  # the repo lock file, created empty by any command that takes the lock
    assert after == before


def test_push_and_pull_of_named_targets(shared, cli, monkeypatch):
    assert cli.json("push", "big.bin")["objects"] == 1
    other = clone(shared)
    monkeypatch.chdir(other)
    result = cli("pull", code=1)  # data/ is not on the remote yet
    assert "not on remote 'origin'" in result.stderr or "are not in remote 'origin'" in result.stderr
    assert (other / "big.bin").read_bytes() == BIG and not (other / "data").exists()
    monkeypatch.chdir(shared)
    cli("push", "data.mlv")
    monkeypatch.chdir(other)
    cli("pull", "data")
    assert files_of(other, "data") == files_of(shared, "data")


def test_a_bad_target_is_refused_before_anything_moves(shared, cli):
    result = cli("push", "nope", code=2)
    assert "'nope' is neither a tracked path" in result.stderr
    assert cli.json("push", "--dry-run")["objects"] == len(SMALL) + 2


def test_a_tampered_remote_object_is_rejected_and_never_stored(git_repo, cli, monkeypatch, tmp_path):
    (git_repo / "big.bin").write_bytes(BIG)
    make_tree(git_repo, {"small.txt": "tiny\n"})
    cli("add", "big.bin", "small.txt")
    cli("remote", "add", "origin", str(tmp_path / "remote"))
    commit_all(git_repo, "data")
    cli("push")
    big = json.loads(cli("add", "big.bin", "--json").stdout)[0]["digest"].partition(":")[2]
    victim = tmp_path / "remote" / big[:2] / big[2:]
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))  # same name, other bytes: tampered with
    other = clone(git_repo)
    monkeypatch.chdir(other)
    result = cli("pull", code=1)
    assert f"xxh3-128:{big}" in result.stderr and "damaged or tampered" in result.stderr
    assert f"xxh3-128:{big}" not in stored_digests(other)
    assert not (other / "big.bin").exists()
    assert (other / "small.txt").read_text() == "tiny\n"  # what is sound is still restored


def test_a_tampered_pack_entry_is_rejected(git_repo, cli, monkeypatch, tmp_path):
    make_tree(git_repo, {"a.txt": "alpha\n" * 50, "b.txt": "beta\n" * 50})
    cli("add", "a.txt", "b.txt")
    cli("remote", "add", "origin", str(tmp_path / "remote"))
    commit_all(git_repo, "data")
    cli("push")
    for pack in (tmp_path / "remote" / "packs").glob("*.pack"):
        data = bytearray(pack.read_bytes())
        data[3] ^= 0xFF  # inside the first object of each pack
        pack.write_bytes(bytes(data))
    other = clone(git_repo)
    monkeypatch.chdir(other)
    result = cli("pull", code=1)
    assert "damaged or tampered" in result.stderr
    good = [p for p in ("a.txt", "b.txt") if (other / p).exists()]
    for p in good:
        assert (other / p).read_bytes() == (git_repo / p).read_bytes()
    assert len(good) < 2


def test_a_damaged_local_object_is_not_pushed_nor_what_names_it(git_repo, cli, tmp_path):
    make_tree(git_repo, {"d/big.bin": BIG, "d/small.txt": "small\n"})
    cli("add", "d")
    cli("remote", "add", "origin", str(tmp_path / "remote"))
    store = store_of(git_repo)
    (big,) = [d for d, _ in store.iter_loose()]
    flip_byte(loose_object(git_repo, str(big)), 10)
    result = cli("push", code=1)
    assert "damaged" in result.stderr and "mlv fsck" in result.stderr
    remote = tmp_path / "remote"
    assert not (remote / big.hexdigest[:2] / big.hexdigest[2:]).exists()
    manifest_digest = (git_repo / "d.mlv").read_text().split("digest: ")[1].split()[0]
    pending = cli.json("push", "--dry-run")  # nothing went up: the manifest waits for its members
    assert pending["objects"] == 3 and manifest_digest.startswith("xxh3-128:")


def test_an_interrupted_push_completes_when_run_again(git_repo, cli, monkeypatch, s3_endpoint, s3_bucket):
    make_tree(git_repo, {f"big/{i}.bin": os.urandom(600 * 1024) for i in range(10)} | SMALL)
    cli("add", "big", "data")
    cli("remote", "add", "origin", f"s3://{s3_bucket}/store", "--endpoint-url", s3_endpoint)
    commit_all(git_repo, "data")
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    proc = subprocess.Popen([os.fspath(MLV), "push", "-j", "1"], cwd=git_repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill it once some, not all, objects are there
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
        if sum(len(k.split("/")[-1]) == 30 for k in keys) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert not any(k.endswith(".list") for k in keys) and len([k for k in keys if len(k.split("/")[-1]) == 30]) < 10
    again = cli.json("push")
    assert again["ok"] and 0 < again["objects"] < 10 + len(SMALL) + 2
    assert cli.json("push")["objects"] == 0
    other = clone(git_repo)
    monkeypatch.chdir(other)
    cli("pull")
    assert files_of(other, "big", "data") == files_of(git_repo, "big", "data")


def test_a_big_file_goes_up_in_parts_and_comes_back_whole(git_repo, cli, monkeypatch, s3_endpoint, s3_bucket):
    import boto3

    big = os.urandom(1024 * 1024) * 19 + b"tail"  # 19 MiB: three 8 MiB parts
    (git_repo / "huge.bin").write_bytes(big)
    cli("add", "huge.bin")
    cli("remote", "add", "origin", f"s3://{s3_bucket}/store", "--endpoint-url", s3_endpoint)
    commit_all(git_repo, "huge")
    assert cli.json("push", "-j", "2")["objects"] == 1
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    assert not s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads"), "no upload left open"
    other = clone(git_repo)
    monkeypatch.chdir(other)
    cli("pull")
    assert (other / "huge.bin").read_bytes() == big
    s3.create_multipart_upload(Bucket=s3_bucket, Key="store/ab/" + "c" * 30)  # as a push killed mid-upload leaves
    s3.create_multipart_upload(Bucket=s3_bucket, Key="elsewhere/x")  # not mlv's
    assert cli.json("gc", "--remote", "origin", "--grace", "0", "--dry-run")["aborted_uploads"] == 1
    assert cli.json("gc", "--remote", "origin", "--grace", "0")["aborted_uploads"] == 1
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]] == ["elsewhere/x"]


def test_a_damaged_big_file_is_checked_while_it_goes_up_and_never_appears(git_repo, cli, s3_endpoint, s3_bucket):
    import boto3

    (git_repo / "huge.bin").write_bytes(os.urandom(17 * 1024 * 1024))
    cli("add", "huge.bin")
    cli("remote", "add", "origin", f"s3://{s3_bucket}/store", "--endpoint-url", s3_endpoint)
    (big,) = [d for d, _ in store_of(git_repo).iter_loose()]
    flip_byte(loose_object(git_repo, str(big)), 9 * 1024 * 1024)  # in the second part
    result = cli("push", code=1)
    assert "damaged" in result.stderr
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert not any(k.endswith(big.hexdigest[2:]) for k in keys)
    assert not s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads"), "the upload was aborted"


def test_an_unreachable_remote_is_a_clear_error_in_bounded_time(git_repo, cli):
    shared = git_repo
    make_tree(shared, SMALL)
    cli("add", "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    cli("remote", "add", "dead", "s3://bucket/x", "--endpoint-url", f"http://127.0.0.1:{port}")
    before = snapshot(shared)
    started = time.monotonic()
    result = run_mlv(shared, "push", "-r", "dead", timeout=120)
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 60
    assert "remote 'dead'" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(shared) == before


def test_a_missing_bucket_is_a_clear_error(shared, cli, s3_endpoint):
    cli("remote", "add", "nobucket", "s3://no-such-bucket-here/x", "--endpoint-url", s3_endpoint)
    result = cli("push", "-r", "nobucket", code=1)
    assert "remote 'nobucket'" in result.stderr and "bucket" in result.stderr


def test_a_fetch_reads_just_the_byte_ranges_it_needs(git_repo, cli, tmp_path):
    from mlv.storage.remote import fetch, remotes
    from mlv.storage.workspace import references
    from mlv.storage.workspace import Workspace

    make_tree(git_repo, {f"many/{i:03d}.txt": os.urandom(20_000).hex() for i in range(100)})
    cli("add", "many")
    cli("remote", "add", "origin", str(tmp_path / "remote"))
    cli("push")
    other = tmp_path / "other"
    other.mkdir()
    (other / ".mlv").mkdir()
    (other / ".mlv" / "config.yaml").write_text((git_repo / ".mlv" / "config.yaml").read_text())
    ws = Workspace(other)
    src = Workspace(git_repo)
    members = list(references.closure(src.store, references.pointer_roots(src)))[:3]
    roots = references.Roots({d: "pick" for d in members})
    report = fetch.fetch(ws, remotes.connect(ws), lambda: roots, records=False)
    assert report.ok and report.objects == 3
    assert report.bytes < 3 * 41_000  # three objects' ranges, not the 4 MB pack
    assert {str(d) for d in members} <= stored_digests(other)


PIPE = """\
params:
  p: 1
stages:
  make:
    cmd: echo x >> .ran && echo value=${params.p} > out.txt
    deps: [input.txt]
    outs: [out.txt]
"""


def test_the_run_cache_works_across_clones(git_repo, cli, monkeypatch, remote_args):
    make_tree(git_repo, {"input.txt": "in\n", "mlv.yaml": PIPE, ".gitignore": ".ran\n"})
    cli("remote", "add", *remote_args)
    assert [r["state"] for r in cli.json("run")] == ["done"]
    commit_all(git_repo, "p=1")
    cli("push")
    (git_repo / "mlv.yaml").write_text(PIPE.replace("p: 1", "p: 2"))
    assert [r["state"] for r in cli.json("run")] == ["done"]
    commit_all(git_repo, "p=2")
    cli("push")
    assert (git_repo / ".ran").read_text() == "x\nx\n"
    assert cli.json("push")["records"] == 0  # both runs' records went up with their pushes

    other = clone(git_repo)
    monkeypatch.chdir(other)
    cli("pull")
    assert (other / "out.txt").read_text() == "value=2\n"
    assert [r["state"] for r in cli.json("run")] == ["up-to-date"]
    (other / "mlv.yaml").write_text(PIPE)  # back to p=1: it ran in the other clone, its output is on the remote
    assert [r["state"] for r in cli.json("run")] == ["cached"]
    assert (other / "out.txt").read_text() == "value=1\n"
    assert not (other / ".ran").exists(), "nothing ran in this clone"
    trace = cli.json("trace", "out.txt")
    runs = [n for n in trace["nodes"] if n["type"] == "run"]
    assert runs and runs[0]["stage"] == "make"


def test_a_tampered_run_record_is_neither_pushed_nor_fetched(git_repo, cli, monkeypatch, tmp_path):
    make_tree(git_repo, {"input.txt": "in\n", "mlv.yaml": PIPE, ".gitignore": ".ran\n"})
    cli("remote", "add", "origin", str(tmp_path / "remote"))
    cli("run")
    (record,) = (git_repo / ".mlv" / "runs").glob("*.json")
    good = record.read_bytes()
    record.write_bytes(good.replace(b'"stage": "make"', b'"stage": "fake"'))
    result = cli("push", code=1)
    assert record.stem in result.stderr and "record_digest" in result.stderr
    record.write_bytes(good)
    assert cli.json("push")["records"] == 1
    catalog = next((tmp_path / "remote" / "runs").glob("*.list"))
    for pack in (tmp_path / "remote" / "packs").glob("*.pack"):
        data = pack.read_bytes()
        if good in data:  # the record's bytes, forged on the remote
            pack.write_bytes(data.replace(b'"stage": "make"', b'"stage": "fake"'))
    commit_all(git_repo, "ran")
    other = clone(git_repo)
    monkeypatch.chdir(other)
    result = cli("pull", code=1)
    assert "damaged or tampered" in result.stderr and catalog.exists()
    assert not (other / ".mlv" / "runs" / record.name).exists()


def test_run_without_pull_fetches_locked_outputs_instead_of_running(git_repo, cli, monkeypatch, tmp_path):
    make_tree(git_repo, {"input.txt": "in\n", "mlv.yaml": PIPE, ".gitignore": ".ran\n"})
    cli("remote", "add", "origin", str(tmp_path / "remote"))
    cli("run")
    commit_all(git_repo, "ran")
    cli("push")
    other = clone(git_repo)
    monkeypatch.chdir(other)
    assert [r["state"] for r in cli.json("run")] == ["cached"]
    assert (other / "out.txt").read_text() == "value=1\n" and not (other / ".ran").exists()


SECRET_ID = "AKIAPLANTEDKEY7777777"
SECRET_KEY = "planted/Secret+Value/0123456789abcdefXYZ"


def test_credentials_never_reach_any_file_or_message(git_repo, cli, monkeypatch, s3_endpoint, s3_bucket):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SECRET_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    make_tree(git_repo, {"input.txt": "in\n", "mlv.yaml": PIPE, ".gitignore": ".ran\n"} | SMALL)
    cli("add", "data")
    outputs = [cli("remote", "add", "origin", f"s3://{s3_bucket}/store", "--endpoint-url", s3_endpoint)]
    outputs += [cli("run"), cli("push"), cli("remote", "list", "--json"), cli("fsck")]
    commit_all(git_repo, "all")
    other = clone(git_repo)
    monkeypatch.chdir(other)
    outputs += [cli("pull"), cli("run"), cli("push")]
    cli("remote", "add", "dead", "s3://b/x", "--endpoint-url", "http://127.0.0.1:9")
    outputs.append(cli("push", "-r", "dead", code=1))
    for result in outputs:
        assert SECRET_ID not in result.stdout + result.stderr
        assert SECRET_KEY not in result.stdout + result.stderr
    for root in (git_repo, other):
        for path in root.rglob("*"):
            if path.is_file() and ".git" not in path.relative_to(root).parts:
                data = path.read_bytes()
                assert SECRET_ID.encode() not in data and SECRET_KEY.encode() not in data, path


def test_pull_without_a_remote_says_how_to_add_one(repo, cli):
    result = cli("pull", code=2)
    assert "mlv remote add" in result.stderr


def test_subprocess_push_and_pull_through_the_console_script(shared, cli):
    result = run_mlv(shared, "push")
    assert result.returncode == 0, result.stderr
    assert "pushed" in result.stdout
    other = clone(shared, "clone2")
    env = dict(os.environ)
    proc = subprocess.run([os.fspath(MLV), "pull"], cwd=other, capture_output=True, text=True, env=env | GIT_ENV)
    assert proc.returncode == 0, proc.stderr
    assert (other / "big.bin").read_bytes() == BIG
