"""Content addresses: the ``Digest`` value and the streaming hashers that make them.

A digest names its algorithm so a stronger one can follow; today every object is
addressed by xxh3-128 (fast, catches corruption, not tampering). The text form is
``xxh3-128:<32 lowercase hex>`` everywhere a digest is written down.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from collections.abc import Callable
from typing import BinaryIO

import xxhash
from mlv.storage.errors import ConfigError

ALGORITHM = "xxh3-128"
CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small enough to keep memory flat
_HEX = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A content address, printed as ``xxh3-128:<32 hex chars>``."""

    algorithm: str
    hexdigest: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"

    @property
    def short(self) -> str:
        """The first 12 hex characters, for people.

        >>> Digest("xxh3-128", "0123456789abcdef0123456789abcdef").short
        '0123456789ab'
        """
        return self.hexdigest[:12]

    @property
    def raw(self) -> bytes:
        return bytes.fromhex(self.hexdigest)

    @classmethod
    def from_raw(cls, raw: bytes) -> Digest:
        return cls(ALGORITHM, raw.hex())

    @classmethod
    def from_hex(cls, hexdigest: str) -> Digest:
        return cls(ALGORITHM, hexdigest)


def parse(text: object, *, where: str = "digest") -> Digest:
    """Parse ``xxh3-128:<hex>``; anything else is a ``ConfigError`` naming ``where``.

    >>> str(parse("xxh3-128:" + "ab" * 16))[:14]
    'xxh3-128:ababa'
    """
    if isinstance(text, str) and ":" in text:
        algorithm, _, hexdigest = text.partition(":")
        if algorithm == ALGORITHM and _HEX.fullmatch(hexdigest):
            return Digest(algorithm, hexdigest)
    raise ConfigError(
        f"{where}: {text!r} is not a valid digest; expected '{ALGORITHM}:' followed by 32 lowercase hex characters"
    )


def hasher() -> xxhash.xxh3_128:
    return xxhash.xxh3_128()


def of_bytes(data: bytes | memoryview) -> Digest:
    """Digest of an in-memory byte string.

    >>> str(of_bytes(b""))
    'xxh3-128:99aa06d3014798d86001c324468d497f'
    """
    return Digest(ALGORITHM, xxhash.xxh3_128_hexdigest(data))


def of_stream(stream: BinaryIO, *, progress: Callable[[int], None] | None = None) -> tuple[Digest, int]:
    """Digest and length of everything left in ``stream``, read in bounded chunks (each told to ``progress``)."""
    h = xxhash.xxh3_128()
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := stream.readinto(buf):
        h.update(view[:n])
        size += n
        if progress is not None:
            progress(n)
    return Digest(ALGORITHM, h.hexdigest()), size


def of_file(path: str | os.PathLike[str], *, progress: Callable[[int], None] | None = None) -> tuple[Digest, int]:
    """Digest and size of a local file."""
    with open(path, "rb", buffering=0) as f:
        return of_stream(f, progress=progress)
