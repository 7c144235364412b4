"""Damage on a remote, known to every clone: one small marker file per copy whose bytes proved wrong.

Layout, under the remote's root::

    damaged/<digest hex>.<pack name>   the object's entry in ``packs/<pack name>.pack`` is wrong
    damaged/<digest hex>.loose         the loose object ``<2 hex>/<30 hex>`` is wrong

A listing cannot see damage (names and sizes still match), and the clone that finds it is
rarely the one that can repair it: the clone that pushed has the good bytes. So the finding
goes on the remote itself, where the one listing every command makes picks it up
(``Inventory.damaged``). A marker holds one line: what was wrong, and which command found it when.

- ``fetch`` marks a copy it refuses, and tries the copies known bad last;
- ``fsck --remote`` marks every bad copy it finds, and removes a marker its check disproves;
- ``push`` counts an object as absent when each of its copies is known bad, and sends it again:
  a loose object over its bad copy (the marker then goes), a packed one in a new pack, or in its
  old pack re-sent whole (the pack is good again: its markers go);
- ``gc --remote`` drops a bad copy once the object has a good one elsewhere (rewriting its pack
  without it), and removes the markers of copies that are gone.

Writing a marker is best effort: where the remote refuses (a read-only credential), a warning
says so and the finding stays in this clone's ``state.db`` (``remote_state``), where it counts
the same for this clone's own commands.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mlv.storage.remote import state as remote_state
from mlv.storage.store.packs import PackEntry
from mlv.storage.remote.remotes import Inventory, Remote, RemoteError
from mlv.storage.remote.transfer import run_all

LOOSE = "loose"  # the copy that is the loose object, where a pack's name would be
Copy = tuple[bytes, str]  # (raw digest, pack name or LOOSE)


@dataclass(slots=True)
class Damage:
    """The copies known bad on one remote."""

    marked: set[Copy] = field(default_factory=set)  # markers on the remote
    local: set[Copy] = field(default_factory=set)  # found by this clone, not marked (the remote refused)

    @property
    def bad(self) -> set[Copy]:
        return self.marked | self.local


def key(copy: Copy) -> str:
    """The marker's key.

    >>> key((bytes(16), "loose"))
    'damaged/00000000000000000000000000000000.loose'
    """
    return f"damaged/{copy[0].hex()}.{copy[1]}"


def copies(inv: Inventory, packs: dict[str, dict[bytes, PackEntry]]) -> dict[bytes, list[str]]:
    """Every object's copies: the visible packs holding it (bytes and index both there), then LOOSE."""
    found: dict[bytes, list[str]] = {}
    for name in sorted(packs):
        if name in inv.packs:
            for raw in packs[name]:
                found.setdefault(raw, []).append(name)
    for raw in inv.loose:
        found.setdefault(raw, []).append(LOOSE)
    return found


def known(remote: Remote, inv: Inventory, packs: dict[str, dict[bytes, PackEntry]]) -> Damage:
    """The remote's markers, and this clone's own unmarked findings about copies still there."""
    seen = remote_state.load(remote.state_db, remote.config)
    held = copies(inv, packs)
    local = {c for c in (seen.damaged if seen is not None else ()) if c[1] in held.get(c[0], ())}
    return Damage(set(inv.damaged), local - inv.damaged)


def sound(inv: Inventory, packs: dict[str, dict[bytes, PackEntry]], damage: Damage) -> set[bytes]:
    """The objects with a copy not known bad: what the remote can serve."""
    bad = damage.bad
    return {raw for raw, where in copies(inv, packs).items() if any((raw, w) not in bad for w in where)}


def superseded(inv: Inventory, packs: dict[str, dict[bytes, PackEntry]], damage: Damage) -> set[Copy]:
    """Bad copies of objects that also have a copy not known bad: nothing is lost without them."""
    bad = damage.bad
    held = copies(inv, packs)
    return {(raw, w) for raw, w in bad if any((raw, other) not in bad for other in held.get(raw, ()) if other != w)}


def record(remote: Remote, damage: Damage, found: dict[Copy, str], *, by: str) -> None:
    """Mark each copy in ``found`` (copy -> what was wrong with it) on the remote; a copy the remote
    refuses to mark is kept in ``damage.local``, with a warning on ``remote.notes``."""
    new = sorted(c for c in found if c not in damage.marked)
    if not new:
        return
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def mark(copy: Copy) -> Callable[[], tuple[Copy, str | None]]:
        def job() -> tuple[Copy, str | None]:
            try:
                remote.put_bytes(key(copy), f"{found[copy]} (found by `mlv {by}`, {when})\n".encode())
            except RemoteError as exc:
                return copy, str(exc)
            return copy, None
        return job

    refused: list[str] = []
    for copy, error in run_all(remote, [mark(c) for c in new], collect=True):
        if error is None:
            damage.marked.add(copy)
            damage.local.discard(copy)
        else:
            damage.local.add(copy)
            refused.append(error)
    if refused:
        remote.notes.append(f"{len(refused)} damaged cop{'y' if len(refused) == 1 else 'ies'} could not be marked on "
                            f"the remote, so only this clone knows of {'it' if len(refused) == 1 else 'them'}: "
                            f"{refused[0]}")


def clear(remote: Remote, damage: Damage, gone: Iterable[Copy]) -> None:
    """Forget copies that are gone or good again: their markers leave the remote (best effort: a
    marker left behind only makes a push send a good copy once more), and this clone's record."""
    gone = set(gone)
    keys = [key(c) for c in sorted(gone & damage.marked)]
    damage.local -= gone
    if not keys:
        return
    try:
        remote.remove(keys)
    except RemoteError as exc:
        remote.notes.append(f"{len(keys)} stale damage marker(s) could not be removed: {exc}")
        return
    damage.marked -= gone
