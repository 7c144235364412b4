"""Digests: golden values, the text form, and streaming equals one-shot hashing."""

from __future__ import annotations

import doctest
import io
import re

import mlv.storage.store.digest
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlv.storage.store import digest as digests
from mlv.storage.store.digest import Digest
from mlv.storage.errors import ConfigError, UsageError


def test_doctests():
    assert doctest.testmod(mlv.storage.store.digest).failed == 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "xxh3-128:99aa06d3014798d86001c324468d497f"),
        (b"abc", "xxh3-128:06b05ab6733a618578af5f94892f3950"),
        (b"x\n1\n", "xxh3-128:c74fe6bd469ef209503a032e34e33690"),
    ],
)
def test_golden_digests(data, expected):
    """Pinned: a change here re-addresses every object ever stored, so it must be deliberate."""
    assert str(digests.of_bytes(data)) == expected
    assert str(digests.of_stream(io.BytesIO(data))[0]) == expected


def test_text_form_round_trips():
    d = digests.of_bytes(b"hello")
    assert re.fullmatch(r"xxh3-128:[0-9a-f]{32}", str(d))
    assert digests.parse(str(d)) == d
    assert Digest.from_raw(d.raw) == d
    assert len(d.raw) == 16
    assert d.short == d.hexdigest[:12]


@pytest.mark.parametrize(
    "text",
    [
        None,
        42,
        "",
        "99aa06d3014798d86001c324468d497f",  # no algorithm
        "md5:99aa06d3014798d86001c324468d497f",  # unknown algorithm
        "xxh3-128:99AA06D3014798D86001C324468D497F",  # upper case
        "xxh3-128:99aa06d3014798d86001c324468d497",  # 31 hex
        "xxh3-128:99aa06d3014798d86001c324468d497f0",  # 33 hex
        "xxh3-128:99aa06d3014798d86001c324468d497g",  # not hex
        "xxh3-128: 99aa06d3014798d86001c324468d497f",
        "xxh3-128:99aa06d3014798d86001c324468d497f\n",
    ],
)
def test_malformed_digests_are_config_errors(text):
    with pytest.raises(ConfigError, match=re.escape("where-it-was")) as info:
        digests.parse(text, where="where-it-was")
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2
    assert "xxh3-128:" in str(info.value)  # says what a valid one looks like


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3 * 4096), chunk=st.integers(1, 5000))
def test_streaming_digest_equals_one_shot(data, chunk):
    class Dribble(io.RawIOBase):
        """Hands out at most ``chunk`` bytes per read, like a slow network stream."""

        def __init__(self) -> None:
            self.pos = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            n = min(len(b), chunk, len(data) - self.pos)
            b[:n] = data[self.pos : self.pos + n]
            self.pos += n
            return n

    found, size = digests.of_stream(Dribble())
    assert found == digests.of_bytes(data)
    assert size == len(data)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=2048), where=st.data())
def test_changing_one_byte_changes_the_digest(data, where):
    i = where.draw(st.integers(0, len(data) - 1))
    delta = where.draw(st.integers(1, 255))
    changed = bytearray(data)
    changed[i] = (changed[i] + delta) % 256
    assert digests.of_bytes(bytes(changed)) != digests.of_bytes(data)


def test_of_file_streams_a_file_larger_than_a_chunk(tmp_path):
    data = bytes(range(256)) * (digests.CHUNK // 256 * 2 + 7)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert digests.of_file(path) == (digests.of_bytes(data), len(data))
