"""What the repo still needs: the digests that pointers and ``mlv.lock`` reference.

Roots come from the workspace's pointer files, the outs named in ``mlv.lock``, and the
logs named by run records; with ``all_commits``, from pointers and locks in every git commit.
Manifests are expanded to their members, so the result is closed: everything a
checkout of any kept version would read.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from mlv.storage import gitfiles, paths, pointers, yamlfile
from mlv.storage.digest import Digest, parse
from mlv.storage.errors import ConfigError, ObjectMissing, StorageError, UsageError
from mlv.storage.workspace import Workspace

if TYPE_CHECKING:  # roots need neither fsspec nor pyarrow: a no-op push must start fast
    from mlv.storage.objects import ObjectStore

DIGEST_RE = re.compile(rb"xxh3-128:([0-9a-f]{32})")
_LOG_RE = re.compile(rb'"(?:log|packages)": "xxh3-128:([0-9a-f]{32})"')  # objects a run record names
LOCK_FILE = "mlv.lock"
_ARROW_STREAM = b"\xff\xff\xff\xff"


@dataclass(slots=True)
class Roots:
    """Root references: ``where`` each digest is named, and which of the workspace's are directories."""

    where: dict[Digest, str] = field(default_factory=dict)
    current_dirs: set[Digest] = field(default_factory=set)  # manifests named by today's pointers and mlv.lock

    def items(self):
        return self.where.items()

    def __contains__(self, digest: Digest) -> bool:
        return digest in self.where

    def __getitem__(self, digest: Digest) -> str:
        return self.where[digest]


def roots(ws: Workspace, *, all_commits: bool = False) -> Roots:
    """Every root reference, with where it is named."""
    result = Roots()
    found = result.where
    for file in ws.pointer_files():
        ptr = pointers.load(file, root=ws.root)
        found.setdefault(ptr.digest, ws.rel(file))
        if ptr.is_dir:
            result.current_dirs.add(ptr.digest)
    lock = ws.root / LOCK_FILE
    if lock.exists():
        outputs = lock_outputs(lock.read_bytes())
        if outputs is None:
            raise ConfigError(
                f"{LOCK_FILE} cannot be read (malformed YAML or layout, e.g. merge-conflict markers), so what it "
                f"references is unknown; fix it (`git checkout -- {LOCK_FILE}` or resolve the conflict) and retry",
                path=str(lock),
            )
        for d, is_dir in outputs:
            found.setdefault(d, LOCK_FILE)
            if is_dir:
                result.current_dirs.add(d)
    for d in _run_logs(ws):
        found.setdefault(d, "run record")
    if all_commits:
        for where, blob in _git_blobs(ws.root):
            outputs = lock_outputs(blob) if where.endswith(LOCK_FILE) else None
            for d in [d for d, _ in outputs] if outputs is not None else _digests_in(blob):  # else: keep all named
                found.setdefault(d, where)
    return result


def lock_outputs(data: bytes) -> list[tuple[Digest, bool]] | None:
    """(digest, is a directory) of every out ``mlv.lock`` names; None if the lock is unreadable.

    Dep digests and fingerprints are not objects mlv stores, so they are not references.
    """
    stages = lock_stages(data, check_paths=False)  # only digests are wanted here: nothing is written
    return None if stages is None else [out for outs in stages.values() for out in outs.values()]


def lock_stages(data: bytes, *, check_paths: bool = True) -> dict[str, dict[str, tuple[Digest, bool]]] | None:
    """``{stage: {out path: (digest, is a directory)}}`` from ``mlv.lock``; None if it is unreadable.

    With ``check_paths`` an out path that breaks the paths rule is a ``PathError``."""
    try:
        doc = yamlfile.load(data, source=LOCK_FILE) or {}
        stages = doc.get("stages") or {}
        check = paths.check if check_paths else (lambda path, **_: path)
        return {name: {check(path, source=LOCK_FILE, what=f"stage '{name}': out"):
                       (parse(out["digest"]), out.get("nfiles") is not None)
                       for path, out in (entry.get("outs") or {}).items()}
                for name, entry in stages.items()}
    except paths.PathError:
        raise  # a path that breaks the rule is named, not taken for an unreadable lock
    except (yaml.YAMLError, AttributeError, TypeError, KeyError, ConfigError):
        return None


def roots_of(ws: Workspace, targets: list[str]) -> Roots:
    """The roots of some targets: tracked paths (or their ``.mlv`` pointers), stage names in
    ``mlv.lock`` (all their outs), or paths of stage outs; anything else is a ``UsageError``."""
    result = Roots()
    lock = ws.root / LOCK_FILE
    stages = (lock_stages(lock.read_bytes()) if lock.exists() else {}) or {}
    outs = {path: version for entries in stages.values() for path, version in entries.items()}
    for target in targets:
        if target in stages:
            chosen = stages[target]
        else:
            path = ws.resolve(target, must_exist=False)
            rel = ws.rel(path).removesuffix(pointers.SUFFIX)
            pointer = ws.root / (rel + pointers.SUFFIX)
            if pointer.is_file():
                ptr = pointers.load(pointer, root=ws.root)
                chosen = {rel: (ptr.digest, ptr.is_dir)}
            elif rel in outs:
                chosen = {rel: outs[rel]}
            else:
                raise UsageError(f"'{target}' is neither a tracked path (no '{rel}{pointers.SUFFIX}'), "
                                 f"nor a stage or an out in {LOCK_FILE}; `mlv status` lists what is tracked")
        for rel, (digest, is_dir) in chosen.items():
            result.where.setdefault(digest, rel)
            if is_dir:
                result.current_dirs.add(digest)
    return result


def run_ids(ws: Workspace) -> list[str]:
    """The run ids of the records in ``.mlv/runs/``."""
    runs = ws.dot / "runs"
    return [p.stem for p in runs.glob("*.json")] if runs.is_dir() else []


def _run_logs(ws: Workspace) -> list[Digest]:
    """Objects run records name: captured stage output (so `mlv show` can print it) and the package list
    of the interpreter a stage ran with."""
    runs = ws.dot / "runs"
    found = []
    for path in runs.glob("*.json") if runs.is_dir() else ():
        found += [Digest.from_hex(m.group(1).decode()) for m in _LOG_RE.finditer(path.read_bytes())]
    return found


def closure(store: ObjectStore, roots: Roots, *, strict: bool = False,
            manifests: dict[Digest, list[bytes]] | None = None) -> dict[Digest, str]:
    """Roots plus the members of every root that is a manifest (``manifests`` gets each one's members).

    With ``strict`` (gc), a directory the workspace names whose manifest is missing or
    damaged is an error: its members are unknown, so nothing may be deleted on a guess.
    """
    from mlv.storage import manifest

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


def _git_blobs(root: Path) -> list[tuple[str, bytes]]:
    """(commit:path, content) of every pointer file and mlv.lock in any commit."""
    commits = gitfiles.run(root, "rev-list", "--all").split()
    blobs: dict[str, str] = {}
    for commit in commits:
        for line in gitfiles.run(root, "ls-tree", "-r", commit).splitlines():
            meta, _, path = line.partition("\t")
            if path.endswith(pointers.SUFFIX) or path == LOCK_FILE or path.endswith("/" + LOCK_FILE):
                blobs.setdefault(meta.split()[2], f"{commit[:8]}:{path}")
    if not blobs:
        return []
    batch = subprocess.run(
        ["git", "cat-file", "--batch"], cwd=root, input="\n".join(blobs).encode() + b"\n",
        capture_output=True, check=True,
    ).stdout
    out, pos = [], 0
    for oid, where in blobs.items():
        header_end = batch.index(b"\n", pos)
        size = int(batch[pos:header_end].split()[2])
        out.append((where, batch[header_end + 1 : header_end + 1 + size]))
        pos = header_end + 1 + size + 1
    return out
