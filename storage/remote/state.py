"""What this clone last saw on each remote, so that a push with nothing to send costs no request.

Reaching S3 from Python costs more than half a second before the first byte moves
(importing the AWS client stack, loading its service models). Yet most pushes send
nothing. So every push and fetch that lists a remote leaves here (in ``state.db``) the
digests it found there, plus what it sent, the directory versions whose every member
is there, and the run ids the remote's catalogs name. ``mlv push`` asks this first:
when every root and run record is known to be on the remote, it is done, without
importing fsspec or pyarrow.

Objects on a remote are immutable and only ``mlv gc --remote`` removes them. The clone
that runs it forgets this record; other clones cannot know, so the record is trusted for
``FRESH`` seconds after the listing it came from, and any later push lists the remote
again. Any listing (``push``, ``fetch``, ``pull``, ``fsck --remote``) replaces it. Copies
whose remote bytes proved wrong are marked on the remote itself (``remote_damage``), so
every clone's listing shows them; ``damaged`` here holds only the copies this clone found
but could not mark (the remote refused the write), until a push replaces them. A remote
emptied behind mlv's back is the one case it cannot see: ``mlv fsck --remote`` then names
what is gone and the next push re-sends it.

Also here: ``TransferReport``, what a push or fetch did, so the fast path reports like
the slow one without importing the transfer machinery.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mlv.storage.workspace import statedb
from mlv.storage.workspace.config import RemoteConfig
from mlv.storage.store.digest import Digest
from mlv.storage.workspace.references import Roots

FRESH = 15 * 60  # seconds a listing is trusted for the no-op shortcut: another clone's gc may act after it


@dataclass(slots=True)
class TransferReport:
    remote: str
    direction: str  # push | fetch
    dry_run: bool = False
    objects: int = 0  # objects sent or received
    bytes: int = 0
    files: int = 0  # remote files written or read (packs, indexes, loose objects, catalogs)
    records: int = 0  # run records sent or received
    present: int = 0  # objects needed that were already there
    missing: dict[str, str] = field(default_factory=dict)  # digest -> where it is named; absent at the source
    rejected: dict[str, str] = field(default_factory=dict)  # digest or run id -> why its bytes were refused
    notes: list[str] = field(default_factory=list)  # what was passed over on the remote (fsck --remote says more)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.rejected

    def to_dict(self) -> dict:
        return {"remote": self.remote, "direction": self.direction, "dry_run": self.dry_run, "ok": self.ok,
                "objects": self.objects, "bytes": self.bytes, "files": self.files, "records": self.records,
                "present": self.present, "missing": self.missing, "rejected": self.rejected, "notes": self.notes}


@dataclass(slots=True)
class Seen:
    """One remote as last listed (plus what was sent since)."""

    objects: set[bytes] = field(default_factory=set)  # raw digests
    complete: set[bytes] = field(default_factory=set)  # manifests whose members are all there too
    runs: set[str] = field(default_factory=set)
    listed: float = 0.0
    # copies (digest, pack name or "loose") found bad but not marked on the remote (see ``remote_damage``)
    damaged: set[tuple[bytes, str]] = field(default_factory=set)


def key(config: RemoteConfig) -> str:
    """Which remote: its URL and endpoint (a name may be re-pointed; a URL names the bytes)."""
    return f"{config.url}|{config.endpoint_url or ''}"


def load(state_db: Path, config: RemoteConfig) -> Seen | None:
    if not state_db.exists():
        return None
    with _connect(state_db) as db:
        row = db.execute("SELECT listed, objects, complete, runs, damaged FROM remote_seen WHERE remote = ?",
                         (key(config),)).fetchone()
    if row is None:
        return None
    listed, objects, complete, runs, damaged = row
    return Seen(_split(objects), _split(complete), set(filter(None, runs.split("\n"))), listed, _copies(damaged))


def save(state_db: Path, config: RemoteConfig, seen: Seen) -> None:
    if not state_db.parent.is_dir():
        return
    with _connect(state_db) as db:
        db.execute("INSERT OR REPLACE INTO remote_seen VALUES (?, ?, ?, ?, ?, ?)",
                   (key(config), seen.listed or time.time(), b"".join(sorted(seen.objects)),
                    b"".join(sorted(seen.complete)), "\n".join(sorted(seen.runs)),
                    "".join(f"{raw.hex()} {where}\n" for raw, where in sorted(seen.damaged))))


def forget(state_db: Path, config: RemoteConfig) -> None:
    if state_db.exists():
        with _connect(state_db) as db:
            db.execute("DELETE FROM remote_seen WHERE remote = ?", (key(config),))


def has_everything(state_db: Path, config: RemoteConfig, roots: Roots, run_ids: Iterable[str]) -> bool:
    """Whether the last listing, if under ``FRESH`` seconds old (plus what was sent since), shows every
    root — each directory complete — and every run record on the remote: then a push has nothing to send."""
    seen = load(state_db, config)
    if seen is None or not 0 <= time.time() - seen.listed < FRESH:
        return False
    for d in roots.where:
        if d.raw not in seen.objects or (d in roots.current_dirs and d.raw not in seen.complete):
            return False
    return set(run_ids) <= seen.runs


def complete_manifests(manifests: dict[Digest, Iterable[bytes]], there: set[bytes]) -> set[bytes]:
    """The manifests (digest -> member digests) that are on the remote with every member."""
    return {d.raw for d, members in manifests.items() if d.raw in there and all(m in there for m in members)}


def _copies(text: str | bytes | None) -> set[tuple[bytes, str]]:
    """Damaged copies as saved: ``<hex> <pack name|loose>`` lines (a blob of digests from before: unknown copies,
    dropped; ``mlv fsck --remote`` finds them again).

    >>> _copies("00" * 15 + "01 loose" + chr(10)) == {(bytes(15) + bytes([1]), "loose")}, _copies(bytes(16))
    (True, set())
    """
    if not isinstance(text, str):
        return set()
    return {(bytes.fromhex(h), where) for h, _, where in (line.partition(" ") for line in text.splitlines())}


def _split(blob: bytes | None) -> set[bytes]:
    blob = blob or b""
    return {blob[i : i + 16] for i in range(0, len(blob), 16)}


@contextmanager
def _connect(state_db: Path) -> Iterator[sqlite3.Connection]:
    with closing(statedb.connect(state_db)) as db:
        yield db
