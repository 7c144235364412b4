"""Stage fingerprints: what a stage's result depends on, as one digest.

fingerprint = xxh3-128 of canonical JSON of {the stage's definition (cmd/call/kind,
settings, the params it uses, dep and out paths, wdir), the digest of every dep}.
Names, descriptions and resources are left out (see ``StageSpec.definition``), so a
renamed stage or a move to another worker still hits the run cache.
"""

from __future__ import annotations

import json

from mlv.engine.dag import StageSpec
from mlv.storage.store import digest as digests
from mlv.storage.store.digest import Digest

VERSION = 1  # bump when the canonical form changes, so old fingerprints stop matching


def canonical(data: object) -> bytes:
    """Deterministic JSON bytes.

    >>> canonical({"b": 1, "a": [1.0, "x"]})
    b'{"a":[1.0,"x"],"b":1}'
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def fingerprint(spec: StageSpec, deps: dict[str, Digest]) -> Digest:
    payload = {
        "mlv-fingerprint": VERSION,
        "definition": spec.definition(),
        "deps": {path: str(d) for path, d in sorted(deps.items())},
    }
    return digests.of_bytes(canonical(payload))
