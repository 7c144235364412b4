"""What the repo still needs: the digests that pointers and ``mlv.lock`` reference.

Roots come from the workspace's pointer files, the outs named in ``mlv.lock``, and the
logs named by run records; with ``all_commits``, from pointers and locks in every git commit.
Manifests are expanded to their members, so the result is closed: everything a
checkout of any kept version would read.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from mlv.storage import manifest, pointers
from mlv.storage.digest import Digest, parse
from mlv.storage.errors import ConfigError, StorageError, UsageError
from mlv.storage.objects import ObjectStore
from mlv.storage.workspace import Workspace

DIGEST_RE = re.compile(rb"xxh3-128:([0-9a-f]{32})")
_LOG_RE = re.compile(rb'"log": "xxh3-128:([0-9a-f]{32})"')
LOCK_FILE = "mlv.lock"
_ARROW_STREAM = b"\xff\xff\xff\xff"


def roots(ws: Workspace, *, all_commits: bool = False) -> dict[Digest, str]:
    """``{digest: where it is referenced}`` for every root reference."""
    found: dict[Digest, str] = {}
    for file in ws.pointer_files():
        found.setdefault(pointers.load(file).digest, ws.rel(file))
    lock = ws.root / LOCK_FILE
    if lock.exists():
        outputs = lock_outputs(lock.read_bytes())
        if outputs is None:
            raise ConfigError(
                f"{LOCK_FILE} cannot be read (malformed YAML or layout, e.g. merge-conflict markers), so what it "
                f"references is unknown; fix it (`git checkout -- {LOCK_FILE}` or resolve the conflict) and retry",
                path=str(lock),
            )
        for d in outputs:
            found.setdefault(d, LOCK_FILE)
    for d in _run_logs(ws):
        found.setdefault(d, "run record")
    if all_commits:
        for where, blob in _git_blobs(ws.root):
            digests = lock_outputs(blob) if where.endswith(LOCK_FILE) else None
            for d in digests if digests is not None else _digests_in(blob):  # unparsable: keep all it names
                found.setdefault(d, where)
    return found


def lock_outputs(data: bytes) -> list[Digest] | None:
    """The out digests ``mlv.lock`` names (``stages.<name>.outs.<path>.digest``); None if unreadable.

    Dep digests and fingerprints are not objects mlv stores, so they are not references.
    """
    try:
        doc = yaml.safe_load(data) or {}
        stages = doc.get("stages") or {}
        return [parse(out["digest"]) for entry in stages.values() for out in (entry.get("outs") or {}).values()]
    except (yaml.YAMLError, AttributeError, TypeError, KeyError, ConfigError):
        return None


def _run_logs(ws: Workspace) -> list[Digest]:
    """Captured stage output named by run records, kept so `mlv show` can print it."""
    runs = ws.dot / "runs"
    found = []
    for path in runs.glob("*.json") if runs.is_dir() else ():
        m = _LOG_RE.search(path.read_bytes())
        if m:
            found.append(Digest.from_hex(m.group(1).decode()))
    return found


def closure(store: ObjectStore, root_digests: dict[Digest, str]) -> dict[Digest, str]:
    """Roots plus the members of every root that is a manifest."""
    live = dict(root_digests)
    for d, where in root_digests.items():
        if d not in store:
            continue
        try:
            with store.open(d) as f:
                head = f.read(4)
        except StorageError:
            continue
        if head != _ARROW_STREAM:
            continue
        try:
            m = manifest.load(store.read_bytes(d))
        except StorageError:
            continue  # not a manifest after all, or damaged: fsck reports it
        for raw in m.raw_digests:
            live.setdefault(Digest.from_raw(raw), where)
    return live


def _digests_in(data: bytes) -> list[Digest]:
    return [Digest.from_hex(m.decode()) for m in DIGEST_RE.findall(data)]


def _git_blobs(root: Path) -> list[tuple[str, bytes]]:
    """(commit:path, content) of every pointer file and mlv.lock in any commit."""
    try:
        commits = _git(root, "rev-list", "--all").split()
    except FileNotFoundError:
        raise UsageError("--all-commits needs git, which is not installed") from None
    blobs: dict[str, str] = {}
    for commit in commits:
        for line in _git(root, "ls-tree", "-r", commit).splitlines():
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


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError(f"git {' '.join(args)} failed in '{root}': {proc.stderr.strip()}; is this a git repo?")
    return proc.stdout
