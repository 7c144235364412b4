"""Planning a run: for each stage, is it up to date, restorable from the run cache, or to run — and why.

``mlv run --dry-run``, ``mlv status`` and ``mlv run`` itself share this logic. A
stage's fingerprint needs the digests of its deps, so it can only be computed once
every upstream stage is settled; a stage downstream of one that will run is planned as
``run`` with the reason "upstream 'x' will run", or ``maybe`` when only that could change it.

With ``workspace: remote`` (``engine.remote_run``) deps need not be in the workspace: a
``known`` lookup gives their digests (outputs workers returned, pointers of data never
pulled), and with ``--no-download`` an output absent from the workspace is on the remote,
not missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mlv.engine import lockfile
from mlv.engine.dag import StageSpec
from mlv.engine.fingerprint import fingerprint
from mlv.engine.lockfile import LockEntry, Output
from mlv.engine.outputs import check_overlaps
from mlv.engine.records import RunIndex
from mlv.storage.workspace import snapshot
from mlv.storage.store.digest import Digest, parse
from mlv.storage.workspace.tracking import in_cache
from mlv.storage.workspace import Workspace

UP_TO_DATE, CACHED, RUN, MAYBE = "up-to-date", "cached", "run", "maybe"  # maybe: runs if an upstream output changes


@dataclass(slots=True)
class Decision:
    stage: str
    action: str  # up-to-date | cached | run
    reasons: list[str] = field(default_factory=list)
    fingerprint: Digest | None = None
    deps: dict[str, Digest] = field(default_factory=dict)
    source: tuple[str, dict[str, Output]] | None = None  # (run id, outs) to restore, for "cached"

    def to_dict(self) -> dict:
        return {"stage": self.stage, "action": self.action, "reasons": self.reasons,
                "fingerprint": str(self.fingerprint) if self.fingerprint else None}


def identify(ws: Workspace, path: str) -> Digest | None:
    """The current digest of a workspace path, or None if it does not exist."""
    target = ws.root / path
    if not target.exists():
        return None
    return snapshot.identify(ws, snapshot.scan(ws, target)).digest


#: makes outputs that ran before usable from elsewhere (a remote); True if they now are (in the local store,
#: or with ``--no-download`` on the remote)
Fetch = Callable[[dict[str, Output]], bool]
#: a dep's digest known without reading the workspace, or None
Known = Callable[[str], Digest | None]


def decide(ws: Workspace, spec: StageSpec, lock: dict[str, LockEntry], index: RunIndex, *, force: bool,
           known: Known | None = None, fetch: Fetch | None = None, no_download: bool = False) -> Decision:
    """Plan one stage whose upstream is settled (its deps are final).

    ``known``: digests of deps that are not in the workspace (yet), e.g. outputs an upstream
    stage restores from the cache, so a dry run predicts what a run does.
    ``fetch``: asked for outputs that ran before but are not in the local store (``mlv run``
    passes one that gets them from the default remote), before deciding the stage must run.
    ``no_download``: outputs live on the remote; one absent from the workspace is not a change.
    """
    def restorable(outs: dict[str, Output]) -> bool:
        return _restorable(ws, outs) or (fetch is not None and fetch(outs))

    def current(path: str, out: Output) -> bool:
        return (no_download and not (ws.root / path).exists() and not (ws.root / path).is_symlink()) \
            or identify(ws, path) == out.digest

    deps = {}
    missing = []
    for path in spec.deps:
        d = (known(path) if known else None) or identify(ws, path)
        if d is None:
            missing.append(path)
        else:
            deps[path] = d
    decision = Decision(spec.name, RUN, deps=deps)
    if missing:
        decision.reasons.append(f"dep '{missing[0]}' does not exist")
        return decision
    fp = fingerprint(spec, deps)
    decision.fingerprint = fp
    entry = lock.get(spec.name)
    if force:
        decision.reasons.append("--force")
        return decision
    if entry is not None and entry.fingerprint == fp:
        changed = [p for p, out in entry.outs.items() if not current(p, out)]
        if not changed:
            decision.action = UP_TO_DATE
            return decision
        if restorable(entry.outs):
            decision.action, decision.source = CACHED, (entry.run_id, entry.outs)
            decision.reasons.append(f"output '{changed[0]}' is missing or modified; restoring it from the cache")
            return decision
    for record in index.by_fingerprint(str(fp)):
        outs = {p: Output(parse(o["digest"]), o["size"], o.get("nfiles"))
                for p, o in record.outs.items()}
        if set(outs) == set(spec.outs) | set(spec.metrics) | set(spec.plots) and restorable(outs):
            decision.action, decision.source = CACHED, (record.run_id, outs)
            decision.reasons.append(f"ran before as {record.run_id}")
            return decision
    decision.reasons.extend(why_stale(spec, entry, deps, fp))
    return decision


def why_stale(spec: StageSpec, entry: LockEntry | None, deps: dict[str, Digest], fp: Digest) -> list[str]:
    if entry is None:
        return ["never ran (no entry in mlv.lock)"]
    reasons = []
    for path, d in deps.items():
        old = entry.deps.get(path)
        if old is None:
            reasons.append(f"new dep '{path}'")
        elif old != d:
            reasons.append(f"dep '{path}' changed: {old.short} → {d.short}")
    for path in set(entry.deps) - set(deps):
        reasons.append(f"dep '{path}' removed")
    for name in sorted(set(spec.params) | set(entry.params)):
        if spec.params.get(name) != entry.params.get(name):
            reasons.append(f"param '{name}' changed: {entry.params.get(name)!r} → {spec.params.get(name)!r}")
    if not reasons and entry.fingerprint != fp:
        reasons.append("stage definition changed (cmd, call, outs or settings)")
    if not reasons:
        reasons.append("outputs are missing or modified and not in the cache")
    return reasons


def _restorable(ws: Workspace, outs: dict[str, Output]) -> bool:
    return all(in_cache(ws, o.digest, o.nfiles is not None) for o in outs.values())


def plan(ws: Workspace, specs: list[StageSpec], upstream: dict[str, set[str]], *, force: bool,
         fetch: Fetch | None = None, known: Known | None = None, no_download: bool = False) -> list[Decision]:
    """Decide every stage in ``specs`` (topological order) without running or restoring anything.

    Outputs that overlap tracked data or git-tracked files are a ``GraphError`` first."""
    check_overlaps(ws, specs)
    lock = lockfile.load(ws.root)
    index = RunIndex(ws)
    decided: dict[str, Decision] = {}
    restored: dict[str, Digest] = {}  # outputs that cached upstream stages will bring back

    def lookup(path: str) -> Digest | None:
        return restored.get(path) or (known(path) if known else None)

    for spec in specs:
        ups = [u for u in sorted(upstream.get(spec.name, ())) if u in decided]
        waiting = [u for u in ups if decided[u].action in (RUN, MAYBE)]
        unknown = [u for u in ups if decided[u].action == CACHED and not _resolvable(spec.deps, restored)]
        if waiting:  # whether it runs depends on what the upstream run writes: say so, don't promise a run
            now = decide(ws, spec, lock, index, force=force, known=lookup,  # as if that output stays as it is
                         no_download=no_download)
            if now.action == RUN:
                decided[spec.name] = Decision(spec.name, RUN, [*now.reasons, f"upstream '{waiting[0]}' will run"])
            else:
                decided[spec.name] = Decision(spec.name, MAYBE, [f"runs if the output of '{waiting[0]}' changes"])
            continue
        if unknown:
            decided[spec.name] = Decision(spec.name, RUN, [f"upstream '{unknown[0]}' is restored first"])
            continue
        decided[spec.name] = decision = decide(ws, spec, lock, index, force=force, known=lookup, fetch=fetch,
                                               no_download=no_download)
        if decision.action == CACHED:
            restored.update({p: o.digest for p, o in decision.source[1].items()})
    return list(decided.values())


def _resolvable(deps: tuple[str, ...], restored: dict[str, Digest]) -> bool:
    """Whether every dep touching a restored output is exactly that output (so its digest is known)."""
    return all(dep in restored or not any(dep.startswith(o + "/") or o.startswith(dep + "/") for o in restored)
               for dep in deps)
