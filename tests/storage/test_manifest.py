"""Directory manifests: canonical bytes (golden digest), order independence, round-trips."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.ipc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlv.storage.store import digest as digests
from mlv.storage.store import manifest
from mlv.storage.errors import StorageError
from mlv.storage.store.manifest import Entry

TWO_FILES = [
    Entry("raw/a.csv", digests.of_bytes(b"x\n1\n"), 4, False),
    Entry("raw/run.sh", digests.of_bytes(b"#!/bin/sh\necho hi\n"), 18, True),
]
#: Pinned: the dataset version id of TWO_FILES. If this changes, every directory ever
#: added gets a new version id; change it only together with a format version bump.
TWO_FILES_DIGEST = "xxh3-128:d4cafde460e59c6006dad5708f47d9f7"

path_st = st.lists(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0/"), min_size=1, max_size=8).filter(
        # no file is named so (a walk never yields them), and .git/.mlv are never stored (the paths rule)
        lambda part: part not in (".", "..") and part.lower() not in (".git", ".mlv")
    ),
    min_size=1,
    max_size=3,
).map("/".join)
entry_st = st.builds(
    Entry,
    path=path_st,
    digest=st.binary(min_size=16, max_size=16).map(digests.Digest.from_raw),
    size=st.integers(0, 2**64 - 1),
    executable=st.booleans(),
)
entries_st = st.lists(entry_st, max_size=25, unique_by=lambda e: e.path)


def test_golden_two_file_manifest():
    assert str(digests.of_bytes(manifest.dump(TWO_FILES))) == TWO_FILES_DIGEST
    assert str(digests.of_bytes(manifest.dump(reversed(TWO_FILES)))) == TWO_FILES_DIGEST


def test_golden_empty_manifest_is_stable():
    assert manifest.dump([]) == manifest.dump([])
    assert len(manifest.load(manifest.dump([]))) == 0


@settings(max_examples=60, deadline=None)
@given(entries=entries_st, data=st.data())
def test_digest_does_not_depend_on_entry_order(entries, data):
    shuffled = data.draw(st.permutations(entries))
    assert manifest.dump(shuffled) == manifest.dump(entries)


@settings(max_examples=60, deadline=None)
@given(entries=entries_st)
def test_round_trip_gives_entries_sorted_by_code_point(entries):
    loaded = manifest.load(manifest.dump(entries))
    expected = sorted(entries, key=lambda e: e.path)
    assert list(loaded) == expected
    assert loaded.paths == sorted(e.path for e in entries)
    assert len(loaded) == len(entries)
    assert loaded.total_size == sum(e.size for e in entries)
    for e in entries:
        assert loaded.get(e.path) == e
    assert loaded.get("no/such/path") is None


def test_utf8_paths_sort_by_code_point():
    names = ["b", "a", "Z", "é", "a/b", "a-b", "ä", "\U0001f600"]
    entries = [Entry(n, digests.of_bytes(n.encode()), 1) for n in names]
    assert manifest.load(manifest.dump(entries)).paths == sorted(names)
    assert sorted(names) == sorted(names, key=lambda n: n.encode("utf-8"))


@settings(max_examples=40, deadline=None)
@given(entries=st.lists(entry_st, min_size=1, max_size=10, unique_by=lambda e: e.path), data=st.data())
def test_changing_any_field_of_one_entry_changes_the_digest(entries, data):
    i = data.draw(st.integers(0, len(entries) - 1))
    e = entries[i]
    raw = bytearray(e.digest.raw)
    raw[data.draw(st.integers(0, 15))] ^= 1
    variants = [
        Entry(e.path, digests.Digest.from_raw(bytes(raw)), e.size, e.executable),
        Entry(e.path, e.digest, e.size ^ 1, e.executable),
        Entry(e.path, e.digest, e.size, not e.executable),
    ]
    before = digests.of_bytes(manifest.dump(entries))
    for v in variants:
        changed = entries[:i] + [v] + entries[i + 1 :]
        assert digests.of_bytes(manifest.dump(changed)) != before


def test_renaming_a_file_changes_the_digest():
    renamed = [TWO_FILES[0], Entry("raw/run2.sh", TWO_FILES[1].digest, 18, True)]
    assert digests.of_bytes(manifest.dump(renamed)) != digests.of_bytes(manifest.dump(TWO_FILES))


@pytest.mark.parametrize("data", [b"", b"not arrow at all", b"\xff\xff\xff\xff" + b"\0" * 20])
def test_unreadable_manifest_is_a_storage_error(data):
    with pytest.raises(StorageError, match="manifest"):
        manifest.load(data)


def test_a_different_schema_is_refused():
    table = pa.table({"path": pa.array(["a"], pa.string()), "size": pa.array([1], pa.uint64())})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    with pytest.raises(StorageError, match="schema"):
        manifest.load(sink.getvalue().to_pybytes())


@pytest.mark.parametrize("path", ["x/.git/hooks/pre-commit", ".mlv/config.yaml", "a/.GIT/x", "../up", "/abs", "a//b"])
def test_entries_that_break_the_paths_rule_are_refused_both_ways(path):
    with pytest.raises(StorageError, match="not a plain relative path"):
        manifest.check_paths([path])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(alphabet="ab./\n\0Gg", max_size=8), max_size=6))
def test_the_quick_screen_never_passes_what_the_full_check_refuses(paths):
    """check_paths' C-speed screen only lets through lists the per-path loop accepts too."""
    if manifest._plainly_fine(paths):
        previous = None
        for p in paths:  # the loop alone, as check_paths runs it when the screen says no
            framed = f"/{p}/"
            assert p and p[0] != "/" and "/../" not in framed and "/./" not in framed and "//" not in framed
            assert "\0" not in p and "/." not in framed
            assert previous is None or p > previous
            previous = p
