"""The stat cache: trusted hits skip hashing; racy entries, changed stats and other prefixes don't hit."""

from __future__ import annotations

import doctest
import os
import time

import mlv.storage.workspace.hashing
import pytest
from helpers import age, make_tree
from mlv.storage.store import digest as digests
from mlv.storage.workspace import hashing
from mlv.storage.workspace.statcache import RACY_NS, StatCache
from mlv.storage.workspace.walk import walk

D1 = "xxh3-128:" + "11" * 16
D2 = "xxh3-128:" + "22" * 16
OLD = time.time_ns() - 3600 * 10**9
NOW = time.time_ns()


@pytest.fixture
def state(tmp_path):
    s = StatCache(tmp_path / "state.db")
    yield s
    s.close()


def test_hashing_doctests():
    assert doctest.testmod(mlv.storage.workspace.hashing).failed == 0


def test_recorded_rows_are_found_under_their_prefix(state):
    state.record([("data/raw/a.csv", 1, OLD, 10, D1), ("data/raw/sub/b.csv", 2, OLD, 20, D2)], NOW)
    assert state.lookup_under("data/raw") == {
        "data/raw/a.csv": (1, OLD, 10, D1, 0),
        "data/raw/sub/b.csv": (2, OLD, 20, D2, 0),
    }
    assert state.lookup_under("data/raw/sub") == {"data/raw/sub/b.csv": (2, OLD, 20, D2, 0)}


@pytest.mark.parametrize("neighbour", ["data/raw2/a", "data/raw-x/a", "data/raw.csv", "data/raw0", "data/ra", "data"])
def test_prefix_does_not_match_neighbours(state, neighbour):
    state.record([(neighbour, 1, OLD, 1, D1), ("data/raw", 2, OLD, 2, D2)], NOW)
    assert state.lookup_under("data/raw") == {"data/raw": (2, OLD, 2, D2, 0)}


def test_racy_entries_are_not_trusted(state):
    """A file modified within a second of its stat being taken may change again without its mtime moving."""
    state.record([("fresh", 1, NOW - RACY_NS + 10**6, 3, D1), ("settled", 2, NOW - RACY_NS, 3, D2)], NOW)
    assert set(state.lookup_under("fresh")) == set()
    assert set(state.lookup_under("settled")) == {"settled"}


def test_record_replaces(state):
    state.record([("a", 1, OLD, 1, D1)], NOW)
    state.record([("a", 1, OLD + 5, 2, D2)], NOW)
    assert state.lookup_under("a") == {"a": (1, OLD + 5, 2, D2, 0)}


def test_survives_reopening(tmp_path):
    first = StatCache(tmp_path / "state.db")
    first.record([("a", 1, OLD, 1, D1)], NOW)
    first.record_dir("d", "walk-1", D2)
    first.mark_complete(D1)
    first.close()
    second = StatCache(tmp_path / "state.db")
    assert second.lookup_under("a") == {"a": (1, OLD, 1, D1, 0)}
    assert second.dir_digest("d", "walk-1") == D2
    assert second.is_complete(D1)
    second.close()


def test_dirs_match_only_the_same_walk(state):
    state.record_dir("data/raw", "walk-1", D1)
    assert state.dir_digest("data/raw", "walk-1") == D1
    assert state.dir_digest("data/raw", "walk-2") is None
    assert state.dir_digest("data/other", "walk-1") is None
    state.record_dir("data/raw", "walk-2", D2)
    assert state.dir_digest("data/raw", "walk-1") is None


def test_stored_flag_is_kept_until_objects_may_have_left(state):
    state.record([("a", 1, OLD, 1, D1)], NOW, stored=True)
    state.record([("b", 2, OLD, 1, D2)], NOW)
    assert state.lookup_under("a")["a"][4] == 1 and state.lookup_under("b")["b"][4] == 0
    state.forget_complete()  # gc, fsck damage or a wiped cache
    assert state.lookup_under("a")["a"][4] == 0


def test_complete_set(state):
    assert not state.is_complete(D1)
    state.mark_complete(D1)
    state.mark_complete(D1)
    assert state.is_complete(D1) and not state.is_complete(D2)
    state.forget_complete()
    assert not state.is_complete(D1)


def test_cached_hits_only_files_whose_stat_is_unchanged(tmp_path, state):
    make_tree(tmp_path, {"d/a.csv": "a\n", "d/b.csv": "b\n", "d/c.csv": "c\n"})
    age(tmp_path / "d")
    files = walk(tmp_path / "d", repo_root=tmp_path)
    found = hashing.digest_all(files)
    assert found == {f.rel: digests.of_bytes(f.rel[0].encode() + b"\n") for f in files}
    state.record(hashing.stat_rows(files, found, "d"), time.time_ns())

    hits, misses, _ = hashing.cached(walk(tmp_path / "d", repo_root=tmp_path), state, "d")
    assert hits == found and misses == []

    (tmp_path / "d/a.csv").write_text("A\n")  # same size, new mtime
    os.utime(tmp_path / "d/b.csv", ns=(OLD, OLD + 1))  # only the mtime moves
    (tmp_path / "d/c.csv").unlink()
    (tmp_path / "d/c.csv").write_text("c\n")  # same bytes, new inode
    hits, misses, _ = hashing.cached(walk(tmp_path / "d", repo_root=tmp_path), state, "d")
    assert hits == {}
    assert sorted(f.rel for f in misses) == ["a.csv", "b.csv", "c.csv"]


def test_digest_all_handles_small_and_large_files(tmp_path):
    big = os.urandom(hashing.SMALL + 1)
    files = {f"f{i:03d}": os.urandom(i * 7) for i in range(40)} | {"zbig.bin": big}
    make_tree(tmp_path / "d", files)
    found = hashing.digest_all(walk(tmp_path / "d", repo_root=tmp_path))
    assert found == {rel: digests.of_bytes(data) for rel, data in files.items()}
