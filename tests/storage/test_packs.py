"""Pack index encode/decode: a fixed binary layout, round-trips, damage is a named StorageError."""

from __future__ import annotations

import doctest
import struct

import mlv.storage.store.packs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlv.storage.errors import StorageError
from mlv.storage.store.packs import MAGIC, PackEntry, decode_index, encode_index

entries_st = st.dictionaries(
    st.binary(min_size=16, max_size=16),
    st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
    max_size=50,
)


def test_doctests():
    assert doctest.testmod(mlv.storage.store.packs).failed == 0


@settings(max_examples=100, deadline=None)
@given(entries=entries_st)
def test_index_round_trips(entries):
    decoded = decode_index(encode_index(entries), "p" * 32)
    assert decoded == {raw: PackEntry("p" * 32, off, n) for raw, (off, n) in entries.items()}


@settings(max_examples=50, deadline=None)
@given(entries=entries_st)
def test_index_bytes_are_canonical_and_sorted(entries):
    data = encode_index(entries)
    assert data == encode_index(dict(reversed(list(entries.items()))))
    assert data[:8] == MAGIC
    assert struct.unpack_from(">Q", data, 8)[0] == len(entries)
    assert len(data) == 16 + 32 * len(entries)
    raws = [data[16 + 32 * i : 32 + 32 * i] for i in range(len(entries))]
    assert raws == sorted(entries)


def test_known_layout():
    """Pinned byte layout: the index is read by other mlv versions and by remotes."""
    data = encode_index({b"\x02" * 16: (7, 9), b"\x01" * 16: (0, 7)})
    assert data == (
        b"MLVIDX01" + (2).to_bytes(8, "big")
        + b"\x01" * 16 + (0).to_bytes(8, "big") + (7).to_bytes(8, "big")
        + b"\x02" * 16 + (7).to_bytes(8, "big") + (9).to_bytes(8, "big")
    )


def test_empty_index():
    assert decode_index(encode_index({}), "empty") == {}


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda d: b"", id="empty-file"),
        pytest.param(lambda d: d[:10], id="truncated-header"),
        pytest.param(lambda d: d[:-1], id="truncated-record"),
        pytest.param(lambda d: d + b"\0", id="trailing-byte"),
        pytest.param(lambda d: b"MLVIDX02" + d[8:], id="bad-magic"),
        pytest.param(lambda d: d[:8] + (5).to_bytes(8, "big") + d[16:], id="count-too-large"),
    ],
)
def test_damaged_index_is_a_storage_error_naming_the_pack(damage):
    good = encode_index({b"\x01" * 16: (0, 3), b"\x02" * 16: (3, 4)})
    with pytest.raises(StorageError, match="'abc123.idx'"):
        decode_index(damage(good), "abc123")
