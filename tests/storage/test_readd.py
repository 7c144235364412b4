"""Re-adding a directory: the column comparison against its last stored version (``dir_files``)
gives the digest a full re-read gives, whatever happened to the files in between."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from helpers import age, make_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlv.storage.store import digest as digests
from mlv.storage.store import manifest
from mlv.storage.workspace import Workspace, snapshot, tracking


def _truth(data: Path) -> str:
    """The directory's digest from its bytes alone: no stat cache, no store."""
    files = sorted(p for p in data.rglob("*") if p.is_file())
    entries = [manifest.Entry(p.relative_to(data).as_posix(), digests.of_file(p)[0], p.stat().st_size,
                              bool(p.stat().st_mode & 0o100)) for p in files]
    return str(digests.of_bytes(manifest.dump(entries)))


def _add(ws: Workspace) -> tracking.Added:
    (added,) = tracking.add(ws, [str(ws.root / "data")])
    return added


def _repo(tmp_path: Path, n: int = 30) -> Workspace:
    root = tmp_path / "repo"
    make_tree(root, {f"data/d{i % 3}/f{i:02d}.txt": f"file {i}\n" for i in range(n)})
    age(root / "data")
    ws = Workspace.init(root)[0]
    _add(ws)
    return ws


def test_one_changed_file_is_the_only_one_read(tmp_path):
    ws = _repo(tmp_path)
    target = ws.root / "data/d1/f04.txt"
    target.write_text("changed, same length? no\n")
    age(target)
    raws, changed = snapshot._same_files(ws, snapshot.scan(ws, ws.root / "data"))  # the column comparison applies
    assert [f.rel for f in changed] == ["d1/f04.txt"] and raws.count(None) == 1
    added = _add(ws)
    assert added.hashed == 1
    assert str(added.pointer.digest) == _truth(ws.root / "data")
    assert ws.state.dir_files("data")[0] == str(added.pointer.digest)


def test_a_file_replaced_by_rename_with_the_same_size_and_mtime_is_read(tmp_path):
    ws = _repo(tmp_path)
    target = ws.root / "data/d2/f05.txt"
    st_before = target.stat()
    other = ws.root / "f05.new"
    other.write_text("file X\n")  # same length as "file 5\n"
    os.utime(other, ns=(st_before.st_atime_ns, st_before.st_mtime_ns))
    os.replace(other, target)  # a new inode: that alone says the bytes may differ
    added = _add(ws)
    assert added.hashed == 1
    assert str(added.pointer.digest) == _truth(ws.root / "data")


def test_an_executable_bit_changes_the_manifest(tmp_path):
    ws = _repo(tmp_path)
    (ws.root / "data/d0/f03.txt").chmod(0o755)
    assert str(_add(ws).pointer.digest) == _truth(ws.root / "data")


def test_after_gc_forgets_completeness_the_general_path_restores_missing_objects(tmp_path):
    ws = _repo(tmp_path)
    cache = Path(ws.store.root)
    for entry in cache.iterdir():  # every object gone, as after a gc of everything
        if entry.is_dir() and entry.name != "tmp":
            shutil.rmtree(entry)
    ws.state.forget_complete()  # what gc does when it deletes objects
    del ws.store  # a fresh view of the store (its pack index was cached)
    (ws.root / "data/d0/f00.txt").write_text("new\n")
    added = _add(ws)
    assert str(added.pointer.digest) == _truth(ws.root / "data")
    assert added.hashed == 30  # every object left the store: all bytes read again


_OPS = st.lists(st.tuples(st.sampled_from(["write", "touch", "chmod", "create", "delete", "replace", "add"]),
                          st.integers(0, 40), st.binary(max_size=20)), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_every_re_add_gives_the_digest_of_the_bytes(tmp_path_factory, ops):
    ws = _repo(tmp_path_factory.mktemp("readd"), n=12)
    data = ws.root / "data"
    for op, k, payload in ops:
        files = sorted(p for p in data.rglob("*") if p.is_file())
        path = files[k % len(files)] if files else data / "f.txt"
        if op == "write":
            path.write_bytes(payload)  # often within the racy second of the last add: must still be seen
        elif op == "touch":
            os.utime(path)
        elif op == "chmod" and path.exists():
            path.chmod(path.stat().st_mode ^ 0o100)
        elif op == "create":
            (data / f"new{k}.bin").write_bytes(payload)
        elif op == "delete" and len(files) > 1:
            path.unlink()
        elif op == "replace":
            tmp = ws.root / "tmp.swap"
            tmp.write_bytes(payload)
            os.replace(tmp, path)
        elif op == "add":
            assert str(_add(ws).pointer.digest) == _truth(data)
    assert str(_add(ws).pointer.digest) == _truth(data)
    assert str(snapshot.identify(ws, snapshot.scan(ws, data)).digest) == _truth(data)
