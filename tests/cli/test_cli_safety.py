"""Regression tests from a data-safety review: each would have caught a real bug."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from helpers import flip_byte, make_tree, snapshot, store_of

from mlv.storage.store import manifest
from mlv.storage.workspace import pointers
from mlv.storage.workspace.pointers import Pointer


def _forged_manifest(path: str, digest, size: int) -> bytes:
    """Manifest bytes as a tampered remote or commit could supply them (``manifest.dump`` won't)."""
    import pyarrow as pa

    table = pa.table([pa.array([path], pa.large_string()), pa.array([digest.raw], pa.binary(16)),
                      pa.array([size], pa.uint64()), pa.array([False])], schema=manifest.SCHEMA)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, manifest.SCHEMA) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_a_manifest_entry_escaping_its_directory_is_refused(repo, cli, tmp_path):
    """A tampered manifest (from a remote or a commit) must never make checkout write outside."""
    make_tree(repo, {"d/a": "ok\n"})
    cli("add", "d")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    store = store_of(repo)
    bad = store.put_bytes(b"owned\n")
    m = store.put_bytes(_forged_manifest("../../victim.txt", bad, 6))  # mlv itself refuses to write this
    pointers.dump(Pointer(repo / "d.mlv", m, 6, 1))
    result = cli("checkout", code=1)
    assert "not a plain relative path" in result.stderr
    assert victim.read_text() == "precious\n" and (repo / "d/a").read_text() == "ok\n"


def test_gc_keeps_a_directorys_objects_when_its_manifest_is_damaged(repo, cli):
    make_tree(repo, {"d/1": os.urandom(600_000), "d/2": os.urandom(600_000)})
    cli("add", "d")
    store = store_of(repo)
    entry = store.packed(pointers.load(repo / "d.mlv", root=repo).digest)
    flip_byte(Path(store.pack_path(entry.pack)), entry.offset + entry.length - 1)
    before = snapshot(repo)
    assert "manifest is missing or damaged" in cli("gc", "--grace", "0", code=1).stderr
    assert snapshot(repo) == before


def test_checkout_keeps_workspace_bytes_whose_stored_copy_is_damaged(repo, cli):
    (repo / "f.txt").write_text("v1\n")
    cli("add", "f.txt")
    v1 = (repo / "f.txt.mlv").read_text()
    (repo / "f.txt").write_text("v2\n")
    cli("add", "f.txt")
    store = store_of(repo)
    entry = store.packed(pointers.load(repo / "f.txt.mlv", root=repo).digest)
    flip_byte(Path(store.pack_path(entry.pack)), entry.offset)  # silent rot of v2's only stored copy
    (repo / "f.txt.mlv").write_text(v1)
    assert "not in the store" in cli("checkout", code=2).stderr
    assert (repo / "f.txt").read_text() == "v2\n"


def test_adding_a_symlink_is_refused_so_data_is_never_tracked_twice(repo, cli):
    make_tree(repo, {"real/x": "x\n"})
    cli("add", "real")
    (repo / "alias").symlink_to("real")
    assert "is a symlink" in cli("add", "alias", code=2).stderr
    assert not (repo / "alias.mlv").exists()


def test_pointer_files_are_readable_by_others(repo, cli):
    (repo / "f.txt").write_text("x\n")
    cli("add", "f.txt")
    mode = stat.S_IMODE((repo / "f.txt.mlv").stat().st_mode)
    assert mode & 0o044 == 0o044, oct(mode)


def test_a_stage_that_writes_no_output_fails_saying_so_not_exit_0(repo, cli):
    (repo / "mlv.yaml").write_text("stages:\n  train:\n    cmd: echo working\n    outs: [result.txt]\n")
    result = cli("run", code=1)
    assert "declared output 'result.txt' was not produced" in result.stderr
    assert "exit status 0" not in result.stderr and "exit 0" not in result.stderr


def test_an_mlv_lock_out_outside_the_repo_is_refused(repo, cli):
    (repo / "mlv.lock").write_text(
        "schema: 1\nstages:\n  s:\n    fingerprint: xxh3-128:" + "0" * 32 + "\n    run_id: r1\n    deps: {}\n"
        "    params: {}\n    outs:\n      ../x.txt: {digest: xxh3-128:" + "1" * 32 + ", size: 1}\n"
    )
    assert "mlv.lock:9: stage 's': out '../x.txt' leads outside the repo" in cli("checkout", code=2).stderr
