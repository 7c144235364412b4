"""What the repo still needs: roots (digests something names) and their closure over manifests.

Storage knows one kind of root itself: the workspace's pointer files (and, with
``all_commits``, the pointer files of every git commit). The layers above add theirs —
``mlv.lock`` outputs, objects run records name — and hand the whole ``Roots`` to gc,
fsck and push (the engine builds it). Manifests are expanded to their members,
so the closure is everything a checkout of any kept version would read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlv.storage.workspace import gitfiles, pointers
from mlv.storage.store.digest import Digest
from mlv.storage.errors import ObjectMissing, StorageError
from mlv.storage.workspace import Workspace

if TYPE_CHECKING:  # roots need neither fsspec nor pyarrow: a no-op push must start fast
    from mlv.storage.store.objects import ObjectStore

DIGEST_RE = re.compile(rb"xxh3-128:([0-9a-f]{32})")
_ARROW_STREAM = b"\xff\xff\xff\xff"


@dataclass(slots=True)
class Roots:
    """Root references: ``where`` each digest is named, and which of the workspace's are directories."""

    where: dict[Digest, str] = field(default_factory=dict)
    current_dirs: set[Digest] = field(default_factory=set)  # manifests the workspace names today

    def items(self):
        return self.where.items()

    def __contains__(self, digest: Digest) -> bool:
        return digest in self.where

    def __getitem__(self, digest: Digest) -> str:
        return self.where[digest]

    def add(self, digest: Digest, where: str, *, is_dir: bool = False) -> None:
        """Name ``digest`` as a root (the first place that names it is kept); ``is_dir``: a directory version
        the workspace holds now, whose members must all be there."""
        self.where.setdefault(digest, where)
        if is_dir:
            self.current_dirs.add(digest)


def pointer_roots(ws: Workspace, *, all_commits: bool = False) -> Roots:
    """The digests the workspace's pointer files name (with ``all_commits``, any commit's pointer files too)."""
    result = Roots()
    for file in ws.pointer_files():
        ptr = pointers.load(file, root=ws.root)
        result.add(ptr.digest, ws.rel(file), is_dir=ptr.is_dir)
    if all_commits:
        for where, blob in gitfiles.blobs(ws.root, lambda path: path.endswith(pointers.SUFFIX)):
            for d in _digests_in(blob):  # an old pointer's digest, whatever else that old file held
                result.where.setdefault(d, where)
    return result


def pointer_root(ws: Workspace, target: str) -> tuple[str, Digest, bool] | None:
    """(tracked path, digest, is a directory) for a user-given path or its ``.mlv`` pointer, if tracked."""
    rel = ws.rel(ws.resolve(target, must_exist=False)).removesuffix(pointers.SUFFIX)
    pointer = ws.root / (rel + pointers.SUFFIX)
    if not pointer.is_file():
        return None
    ptr = pointers.load(pointer, root=ws.root)
    return rel, ptr.digest, ptr.is_dir


def run_ids(ws: Workspace) -> list[str]:
    """The run ids of the records in ``.mlv/runs/``."""
    runs = ws.dot / "runs"
    return [p.stem for p in runs.glob("*.json")] if runs.is_dir() else []


def closure(store: ObjectStore, roots: Roots, *, strict: bool = False,
            manifests: dict[Digest, list[bytes]] | None = None) -> dict[Digest, str]:
    """Roots plus the members of every root that is a manifest (``manifests`` gets each one's members).

    With ``strict`` (gc), a directory the workspace names whose manifest is missing or
    damaged is an error: its members are unknown, so nothing may be deleted on a guess.
    """
    from mlv.storage.store import manifest

    live = dict(roots.where)
    empty = strict and not store.index() and next(store.iter_loose(), None) is None
    for d, where in roots.items():
        required = strict and d in roots.current_dirs and not empty  # an empty store has nothing to lose
        try:
            if d not in store:
                if required:
                    raise ObjectMissing(f"object {d} is not in the store", digest=d)
                continue
            with store.open(d) as f:
                head = f.read(4)
            if head != _ARROW_STREAM and not required:
                continue
            m = manifest.load(store.read_bytes(d))
        except StorageError as exc:
            if required:
                raise StorageError(
                    f"'{where}' names the directory version {d}, whose manifest is missing or damaged ({exc}); "
                    "which objects it needs is unknown, so nothing was removed. Re-add the data or `mlv pull` it "
                    "(`mlv fsck` lists the damage), then run gc again"
                ) from exc
            continue  # not a manifest after all, or damaged: fsck reports it
        if manifests is not None:
            manifests[d] = m.raw_digests
        for raw in m.raw_digests:
            live.setdefault(Digest.from_raw(raw), where)
    return live


def _digests_in(data: bytes) -> list[Digest]:
    return [Digest.from_hex(m.decode()) for m in DIGEST_RE.findall(data)]
