"""Pack files: many small objects in one immutable file, found through a sorted index.

Creating a file costs far more than hashing its bytes, so objects below a threshold are
appended to a pack instead of getting a file each (as git and restic do). Layout under
the store root::

    packs/<name>.pack   the objects' bytes back to back, nothing else
    packs/<name>.idx    header + sorted fixed-width records (digest, offset, length)

``<name>`` is the xxh3-128 of the pack's bytes, so a whole pack can be verified in one
sequential read. A pack becomes visible only when its ``.idx`` exists; the ``.pack`` is
made durable and renamed into place first, so a crash leaves at worst a ``.pack`` with
no index (invisible, removed by ``gc``), never an index pointing at missing bytes.

The index is a plain binary format rather than Arrow so that ``mlv status`` can read it
without importing pyarrow: 16-byte header ``b"MLVIDX01" + uint64 count``, then ``count``
records of ``digest[16] + offset[u64] + length[u64]`` sorted by digest.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from mlv.storage.errors import StorageError

MAGIC = b"MLVIDX01"
_HEADER = struct.Struct(">8sQ")
_RECORD = struct.Struct(">16sQQ")


class PackEntry(NamedTuple):
    """Where one packed object lives (a named tuple: an index of 10⁵ entries builds one per object)."""

    pack: str  # pack name (hex), without suffix
    offset: int
    length: int


def encode_index(entries: dict[bytes, tuple[int, int]]) -> bytes:
    """Serialize ``{raw digest: (offset, length)}`` into index bytes, sorted by digest.

    >>> data = encode_index({b"\\x01" * 16: (0, 5)})
    >>> decode_index(data, "p") == {b"\\x01" * 16: PackEntry("p", 0, 5)}
    True
    """
    parts = [_HEADER.pack(MAGIC, len(entries))]
    parts.extend(_RECORD.pack(raw, off, length) for raw, (off, length) in sorted(entries.items()))
    return b"".join(parts)


def decode_index(data: bytes, pack: str) -> dict[bytes, PackEntry]:
    """Parse index bytes; a damaged index is a ``StorageError`` naming the pack."""
    if len(data) < _HEADER.size:
        raise StorageError(f"pack index '{pack}.idx' is truncated; run `mlv fsck`")
    magic, count = _HEADER.unpack_from(data)
    if magic != MAGIC or len(data) != _HEADER.size + count * _RECORD.size:
        raise StorageError(f"pack index '{pack}.idx' is damaged (bad header or length); run `mlv fsck`")
    new = tuple.__new__
    records = _RECORD.iter_unpack(memoryview(data)[_HEADER.size:])
    return {raw: new(PackEntry, (pack, off, length)) for raw, off, length in records}
