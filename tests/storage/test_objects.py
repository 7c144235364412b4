"""The object store contract, run against a local (``file://``) and an in-memory (``memory://``) fsspec store.

A small ``pack_threshold`` (64 bytes) exercises both layouts cheaply: below it objects
are appended to packs, at or above it they are loose files at ``<2 hex>/<30 hex>``.
"""

from __future__ import annotations

import io
import os
import uuid

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlv.storage.store import digest as digests
from mlv.storage.store.digest import Digest
from mlv.storage.errors import ObjectCorrupt, ObjectMissing, StorageError
from mlv.storage.store.objects import FORMAT, ObjectStore

THRESHOLD = 64
HYPOTHESIS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(params=["file", "memory"])
def store(request, tmp_path):
    if request.param == "file":
        s = ObjectStore.local(tmp_path / "store", pack_threshold=THRESHOLD)
        s.create()
        yield s
    else:
        fs = fsspec.filesystem("memory")
        s = ObjectStore(fs, f"/store-{uuid.uuid4().hex}", pack_threshold=THRESHOLD)
        s.create()
        yield s
        fs.rm(s.root, recursive=True)


def fresh(store: ObjectStore) -> ObjectStore:
    """A second handle on the same store, as another process would open it (no cached index)."""
    return ObjectStore(store.fs, store.root, pack_threshold=store.pack_threshold)


def corrupt(store: ObjectStore, digest: Digest) -> None:
    """Flip one byte of ``digest``'s stored bytes, wherever they live."""
    entry = store.packed(digest)
    path = store.pack_path(entry.pack) if entry else store.loose_path(digest)
    offset = entry.offset if entry else 0
    data = bytearray(store.fs.cat_file(path))
    data[offset] ^= 0xFF
    if isinstance(store.fs, LocalFileSystem):
        os.chmod(path, 0o644)  # loose objects may be read-only
    store.fs.pipe_file(path, bytes(data))


class TestObjectStore:
    @HYPOTHESIS
    @given(data=st.one_of(st.binary(max_size=THRESHOLD - 1), st.binary(min_size=THRESHOLD, max_size=4096)))
    def test_any_bytes_round_trip(self, store, data):
        digest = store.put_bytes(data)
        assert digest == digests.of_bytes(data)
        assert digest in store
        assert store.read_bytes(digest) == data
        assert store.size(digest) == len(data)
        other = fresh(store)
        assert digest in other
        assert other.read_bytes(digest) == data

    @HYPOTHESIS
    @given(blobs=st.lists(st.binary(max_size=200), max_size=20))
    def test_a_batch_of_writes_round_trips(self, store, blobs):
        with store.writer() as w:
            found = [w.put_bytes(b) for b in blobs]
        other = fresh(store)
        for blob, digest in zip(blobs, found):
            assert other.read_bytes(digest) == blob

    def test_small_objects_are_packed_and_large_ones_loose(self, store):
        small, large = b"s" * (THRESHOLD - 1), b"L" * THRESHOLD
        ds, dl = store.put_bytes(small), store.put_bytes(large)
        assert store.packed(ds) is not None
        assert not store.fs.exists(store.loose_path(ds))
        assert store.packed(dl) is None
        assert store.fs.cat_file(store.loose_path(dl)) == large
        assert store.loose_path(dl) == f"{store.root}/{dl.hexdigest[:2]}/{dl.hexdigest[2:]}"
        assert {d for d, _ in store.iter_loose()} == {dl}
        assert {d for d, _ in store.iter_packed()} == {ds}

    def test_pack_is_named_by_its_bytes_and_visible_only_through_its_index(self, store):
        with store.writer() as w:
            a, b = w.put_bytes(b"alpha"), w.put_bytes(b"beta")
        (name,) = store.packs()
        pack = store.fs.cat_file(store.pack_path(name))
        assert pack == b"alphabeta"
        assert name == digests.of_bytes(pack).hexdigest
        entry_a, entry_b = store.packed(a), store.packed(b)
        assert (entry_a.offset, entry_a.length, entry_b.offset, entry_b.length) == (0, 5, 5, 4)
        store.fs.rm_file(store.pack_path(name, ".idx"))
        assert a not in fresh(store)

    def test_objects_are_written_once(self, store):
        for data in (b"tiny", b"x" * 500):
            with store.writer() as w:
                w.put_bytes(data)
            assert w.written == 1
            with store.writer() as w:
                w.put_bytes(data)
                w.put_bytes(data)
            assert w.written == 0
        assert len(store.packs()) == 1

    def test_aborted_writer_leaves_nothing_visible(self, store):
        with pytest.raises(RuntimeError), store.writer() as w:
            small = w.put_bytes(b"never sealed")
            raise RuntimeError("crash")
        assert small not in fresh(store)
        assert store.packs() == []
        assert store.fs.ls(f"{store.root}/tmp", detail=False) == []

    def test_put_file_streams_large_files(self, store, tmp_path):
        data = bytes(range(256)) * (digests.CHUNK // 256 + 3)  # more than one chunk
        path = tmp_path / "big.bin"
        path.write_bytes(data)
        digest, size = store.put_file(path)
        assert (digest, size) == (digests.of_bytes(data), len(data))
        with store.open(digest) as f:
            parts = []
            while chunk := f.read(100_000):
                parts.append(chunk)
        assert b"".join(parts) == data

    def test_missing_object(self, store):
        absent = digests.of_bytes(b"never stored")
        assert absent not in store
        with pytest.raises(ObjectMissing) as info:
            store.open(absent)
        assert info.value.digest == absent
        with pytest.raises(ObjectMissing):
            store.size(absent)

    @pytest.mark.parametrize("data", [b"packed bytes", b"loose " * 40], ids=["packed", "loose"])
    def test_damaged_bytes_are_never_served(self, store, data):
        digest = store.put_bytes(data)
        corrupt(store, digest)
        with pytest.raises(ObjectCorrupt) as info:
            store.read_bytes(digest)
        assert info.value.digest == digest
        with pytest.raises(ObjectCorrupt):
            fresh(store).read_bytes(digest)

    def test_verify_false_skips_the_check(self, store):
        digest = store.put_bytes(b"loose " * 40)
        corrupt(store, digest)
        with store.open(digest, verify=False) as f:
            assert f.read() != b"loose " * 40

    def test_truncated_loose_object_is_corrupt(self, store):
        digest = store.put_bytes(b"loose " * 40)
        store.fs.pipe_file(store.loose_path(digest), b"loose ")
        with pytest.raises(ObjectCorrupt):
            store.read_bytes(digest)

    def test_packed_reads_stop_at_the_object_end(self, store):
        with store.writer() as w:
            first = w.put_bytes(b"first")
            w.put_bytes(b"second")
        with store.open(first) as f:
            assert f.read() == b"first"

    def test_format_is_recorded_and_checked(self, store):
        assert store.fs.cat_file(f"{store.root}/FORMAT") == FORMAT.encode()
        store.check_format()
        store.fs.pipe_file(f"{store.root}/FORMAT", b"mlv-store 99\n")
        with pytest.raises(StorageError, match="mlv-store 99"):
            fresh(store).check_format()

    def test_create_is_idempotent(self, store):
        digest = store.put_bytes(b"kept")
        store.create()
        assert store.read_bytes(digest) == b"kept"

    def test_open_returns_a_binary_stream(self, store):
        digest = store.put_bytes(b"abc")
        with store.open(digest) as f:
            assert isinstance(f, io.IOBase)
            assert f.read(1) == b"a"
            assert f.read() == b"bc"
