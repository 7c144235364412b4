"""``mlv import-dvc``: a DVC repo becomes an mlv repo in one command.

Reads ``dvc.yaml``, ``dvc.lock``, ``.dvc/config`` and every ``*.dvc`` file (``importdvc_repo``;
``params.yaml`` is read in place, as mlv reads it like DVC does); writes ``mlv.yaml`` (``importdvc_convert``), a
``<path>.mlv`` pointer per ``.dvc`` out, and — for each stage whose ``dvc.lock`` entry still
describes the workspace — an ``mlv.lock`` entry and a run record, so ``mlv run`` finds it up to
date. The data is re-hashed into mlv's store from DVC's cache (``importdvc_data``), every
byte checked against DVC's md5 first. DVC's own files are left as they were.

Invariants:

- Everything that can make the request wrong is checked before anything is written (exit 2):
  no DVC repo, an existing ``mlv.yaml`` or pointer without ``force``, a path that breaks the
  paths rule, a converted pipeline that mlv would refuse.
- A stage is locked only when its command, params, deps and outs are what ``dvc.lock`` says
  (deps by the md5 of the workspace's bytes, outs found in DVC's cache or the workspace with
  that md5); its fingerprint is the engine's own (``engine.fingerprint``), over the deps'
  mlv digests. Any other stage is not locked, and the report says why it will run.
- Nothing is dropped silently: what has no equivalent is a note in the report; an md5
  mismatch is reported and that version is not imported.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from mlv.engine import lockfile, provenance
from mlv.engine.dag import StageSpec, build_graph, normalise_path, pointer_aware_exists
from mlv.engine.fingerprint import fingerprint
from mlv.engine.lockfile import LockEntry, Output
from mlv.engine.plan import identify
from mlv.engine.records import (
    RunIndex,
    RunRecord,
    environment,
    git_state,
    host,
    new_run_id,
)
from mlv.pipelines import paramfiles
from mlv.pipelines.importdvc_convert import Note, convert, var_file_names
from mlv.pipelines.importdvc_data import DvcData, Mismatch, listing_of, md5_matches
from mlv.pipelines.importdvc_repo import DvcRepo, read_repo
from mlv.pipelines.schema import Pipeline, load_pipeline
from mlv.storage import atomic, paths
from mlv.storage.errors import MlvError, UsageError
from mlv.storage.workspace import Workspace
from mlv.storage.workspace.pointers import Pointer, dump, pointer_path
from mlv.storage.workspace.tracking import ignore_in_git

PIPELINE_FILE = "mlv.yaml"


@dataclass(slots=True)
class Report:
    """What import-dvc did: pointers written, each stage's state, notes, md5 mismatches."""

    pipeline: str | None = None
    pointers: list[dict] = field(default_factory=list)
    stages: list[dict] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    not_imported: list[dict] = field(default_factory=list)  # {path, why}: data that stayed behind
    initialized: bool = False

    def to_dict(self) -> dict:
        return {"pipeline": self.pipeline, "initialized": self.initialized, "pointers": self.pointers,
                "stages": self.stages, "not_imported": self.not_imported,
                "notes": [n.to_dict() for n in self.notes], "mismatches": [m.to_dict() for m in self.mismatches]}


def import_dvc(root: Path, *, force: bool = False) -> Report:
    """Import the DVC repo at ``root`` (see the module docstring); ``UsageError`` (exit 2) before any write."""
    root = root.resolve()
    report = Report()
    repo = read_repo(root)
    report.notes += repo.notes
    report.not_imported += repo.not_imported
    if (root / PIPELINE_FILE).exists() and repo.dvc_yaml is not None and not force:
        raise UsageError(f"'{PIPELINE_FILE}' exists already; pass --force to replace it with the pipeline of dvc.yaml")
    for dvc_file, target, _ in repo.outs:
        if (why := paths.problem(target)) is not None:
            raise UsageError(f"{dvc_file}: out '{target}' {why}; fix the .dvc file first")
        if pointer_path(root / target).exists() and not force:
            raise UsageError(f"'{target}.mlv' exists already; pass --force to replace it with {dvc_file}'s version")
    pipeline, text = _pipeline(root, repo, report) if repo.dvc_yaml is not None else (None, None)
    report.initialized = not (root / ".mlv").is_dir()
    ws, _ = Workspace.init(root) if report.initialized else (Workspace(root), False)
    with ws.lock(), ws.store.writer() as writer:
        data = DvcData(ws, writer, cache_dir=repo.cache_dir)
        pointers = _pointers(ws, repo, data, report)
        locked = _stages(ws, repo, pipeline, data, report) if pipeline is not None else {}
    for pointer in pointers:  # objects first, then what names them
        dump(pointer)
        if ws.in_git:
            ignore_in_git(pointer.target)
    if text is not None:
        atomic.write_text(root / PIPELINE_FILE, text)
        report.pipeline = PIPELINE_FILE
        _commit(ws, pipeline, locked)
    report.mismatches = sorted({m for f in data.found.values() for m in f.mismatches}, key=lambda m: m.path)
    if pipeline is not None:
        _plan(ws, report)
    return report


def _plan(ws: Workspace, report: Report) -> None:
    """What `mlv run` will do with each stage now, by the engine's own plan (as `mlv status` shows it)."""
    from mlv.pipelines import project

    try:
        decisions = {d.stage: d for d in project.dry_run(ws, project.Selection())}
    except MlvError as exc:  # e.g. a dep whose data was not imported: mlv run refuses until it is there
        why = str(exc).splitlines()[0]
        for row in report.stages:
            row["action"] = "blocked"
            row["reasons"] = [*row["reasons"], f"mlv run refuses the pipeline as it is: {why}"]
        return
    absent = [p["path"] for p in report.pointers if not (ws.root / p["path"]).exists()]
    for row in report.stages:
        decision = decisions.get(row["stage"])
        row["action"] = decision.action if decision else "run"
        if decision and decision.action != "up-to-date":
            extra = [r for r in decision.reasons if r not in row["reasons"]]
            if row["reasons"]:  # the import said why it has no mlv.lock entry
                extra = [r for r in extra if not r.startswith("never ran")]
            row["reasons"] = row["reasons"] + extra
            if any(f"dep '{path}" in r for r in decision.reasons for path in absent):
                row["reasons"].append("`mlv checkout` first: the data is in mlv's store, not yet in the workspace")


# -- the pipeline -----------------------------------------------------------------------------


def _pipeline(root: Path, repo: DvcRepo, report: Report) -> tuple[Pipeline, str]:
    var_files = {}
    for name in var_file_names(repo.dvc_yaml):
        try:
            var_files[name] = paramfiles.read(root, name)
        except paramfiles.ParamFileError as exc:
            raise UsageError(f"dvc.yaml: vars: {exc}") from None
    converted = convert(repo.dvc_yaml, var_files=var_files)
    report.notes[:0] = converted.notes
    text = ("# Written by `mlv import-dvc` from dvc.yaml; mlv reads params.yaml beside it, as DVC does.\n"
            + yaml.safe_dump(converted.pipeline, sort_keys=False, default_flow_style=False, allow_unicode=True))
    tmp = root / f".mlv-{os.getpid()}-import.tmp"
    try:
        atomic.write_text(tmp, text)
        pipeline = load_pipeline(tmp, root=root)
        build_graph(pipeline.stages.values(), root=root, source=PIPELINE_FILE, exists=_exists(root, repo))
    except MlvError as exc:
        message = str(exc).replace(tmp.name, PIPELINE_FILE)
        raise UsageError(f"dvc.yaml converts to an mlv.yaml that mlv refuses: {message}\n  (Lines are those of the "
                         "mlv.yaml it would write.) Fix dvc.yaml, or write mlv.yaml by hand; nothing was written") from None
    finally:
        tmp.unlink(missing_ok=True)
    return pipeline, text


def _exists(root: Path, repo: DvcRepo):
    """A dep is there if it is in the workspace, tracked by a pointer, or inside data a .dvc file tracks
    (its pointer is written by this import; the bytes may be only in DVC's cache)."""
    on_disk = pointer_aware_exists(root)
    targets = [target for _, target, _ in repo.outs]
    return lambda path: on_disk(path) or any(path == t or path.startswith(t + "/") for t in targets)


# -- data and stages --------------------------------------------------------------------------


def _pointers(ws: Workspace, repo: DvcRepo, data: DvcData, report: Report) -> list[Pointer]:
    pointers = []
    for dvc_file, target, out in repo.outs:
        found = data.get(target, str(out["md5"]), cached=out.get("cache", True) is not False)
        if found.output is None:
            report.not_imported.append({"path": target, "why": found.why})
            continue
        o = found.output
        pointers.append(Pointer(pointer_path(ws.root / target), o.digest, o.size, o.nfiles))
        report.pointers.append({"path": target, "pointer": f"{target}.mlv", "from": dvc_file, "digest": str(o.digest),
                                "size": o.size, "nfiles": o.nfiles})
    return pointers


def _stages(ws: Workspace, repo: DvcRepo, pipeline: Pipeline, data: DvcData, report: Report) -> dict[str, LockEntry]:
    graph = build_graph(pipeline.stages.values(), root=ws.root, source=PIPELINE_FILE, exists=_exists(ws.root, repo))
    by_md5 = {md5: f.output for (_, md5), f in data.found.items() if f.output is not None}
    locked: dict[str, LockEntry] = {}
    aliases = _list_foreach_names(repo, pipeline, report)
    for name in graph.topological_order():
        spec = pipeline.stages[name]
        entry, reasons = _lock_stage(ws, spec, repo.lock.get(aliases.get(name, name)), data, by_md5)
        if entry is not None:
            locked[name] = entry
            by_md5.update({md5: f.output for (_, md5), f in data.found.items() if f.output is not None})
        report.stages.append({"stage": name, "imported": entry is not None, "reasons": reasons})
    return locked


def _list_foreach_names(repo: DvcRepo, pipeline: Pipeline, report: Report) -> dict[str, str]:
    """mlv name → dvc.lock name of the stages of a foreach over a list: DVC names them by index
    (``clean@0``), mlv by value (``clean@raw1``); both generate them in the list's order."""
    aliases: dict[str, str] = {}
    for base, body in (repo.dvc_yaml.get("stages") or {}).items():
        if not isinstance(body, dict) or "foreach" not in body:
            continue
        generated = [name for name in pipeline.stages if name.startswith(f"{base}@")]
        by_index = [f"{base}@{i}" for i in range(len(generated))]
        if generated != by_index and all(n not in repo.lock for n in generated) and \
                any(n in repo.lock for n in by_index):
            aliases.update(zip(generated, by_index))
            report.notes.append(Note(f"dvc.yaml: stage '{base}'", "foreach over a list", "DVC names the stages by "
                                     f"index ({by_index[0]}), mlv by value ({generated[0]}); dvc.lock's entries "
                                     "were matched in order"))
    return aliases


def _lock_stage(ws: Workspace, spec: StageSpec, entry: dict | None, data: DvcData,
                by_md5: dict[str, Output]) -> tuple[LockEntry | None, list[str]]:
    """The mlv.lock entry of ``spec`` if ``entry`` (its dvc.lock entry) still describes it, else why not."""
    if not isinstance(entry, dict):
        return None, ["not in dvc.lock (it never ran under DVC): it will run"]
    reasons = []
    locked_cmd = entry.get("cmd")
    locked_cmd = tuple(locked_cmd) if isinstance(locked_cmd, list) else (locked_cmd,)
    if not _same_commands(spec.cmd or (), locked_cmd):
        reasons.append(f"its command differs from dvc.lock's ({' && '.join(map(str, locked_cmd))!r}): it will run")
    reasons += _param_changes(spec, entry.get("params") or {})
    wdir = spec.wdir
    try:
        deps = {normalise_path(str(d.get("path")), wdir): str(d.get("md5") or "") for d in entry.get("deps") or []}
        outs = {normalise_path(str(o.get("path")), wdir): str(o.get("md5") or "") for o in entry.get("outs") or []}
    except (ValueError, AttributeError, TypeError) as exc:
        return None, [f"its dvc.lock entry cannot be read ({exc}): it will run"]
    if set(deps) != set(spec.deps):
        reasons.append(f"its deps ({', '.join(sorted(spec.deps))}) are not dvc.lock's ({', '.join(sorted(deps))})")
    declared = {*spec.outs, *spec.metrics, *spec.plots}
    if set(outs) != declared:
        reasons.append(f"its outputs ({', '.join(sorted(declared))}) are not dvc.lock's ({', '.join(sorted(outs))})")
    stored, missing = {}, []
    for path, md5 in outs.items():  # stored even if the stage will run: its outputs are then not unsaved bytes
        if path not in declared:
            continue
        found = data.get(path, md5)
        if found.output is None:
            missing.append(f"output {found.why}: it will run")
        else:
            stored[path] = found.output
    if reasons:
        return None, reasons
    reasons = missing
    digests = {}
    for path, md5 in deps.items():
        if (ws.root / path).exists():
            listing = listing_of(data, md5) if md5.endswith(".dir") else None
            if not md5_matches(ws.root, path, md5, listing):
                reasons.append(f"dep '{path}' changed since dvc.lock (its md5 is not {md5}): it will run")
                continue
            digests[path] = identify(ws, path)
        elif md5 in by_md5:
            digests[path] = by_md5[md5].digest
        else:
            reasons.append(f"dep '{path}' is missing, and md5 {md5} is not in DVC's cache: it will run")
    if reasons:
        return None, reasons
    return LockEntry(fingerprint(spec, digests), new_run_id(), digests, dict(spec.params), stored), []


def _same_commands(ours: tuple[str, ...], theirs: tuple) -> bool:
    """mlv quotes interpolated values for the shell, DVC pastes them: the same words are the same command."""
    if len(ours) != len(theirs):
        return False
    for a, b in zip(ours, theirs):
        if a == b:
            continue
        try:
            if not isinstance(b, str) or shlex.split(a) != shlex.split(b):
                return False
        except ValueError:
            return False
    return True


def _param_changes(spec: StageSpec, locked: dict) -> list[str]:
    """Params dvc.lock recorded that differ from the stage's params now (names as mlv records them)."""
    changes = []
    named = {}
    for file, values in locked.items() if isinstance(locked, dict) else ():
        rel = normalise_path(str(file), spec.wdir)
        for key, value in (values if isinstance(values, dict) else {}).items():
            for leaf, v in paramfiles.leaves(str(key), value).items():
                named[leaf if rel == "params.yaml" else f"{rel}{paramfiles.SEPARATOR}{leaf}"] = v
    for name, value in sorted(named.items()):
        if spec.params.get(name, _MISSING) != value:
            now = spec.params.get(name, "(not used now)")
            changes.append(f"param '{name}' changed since dvc.lock: {value!r} → {now!r}: it will run")
    for name in sorted(n for n in spec.params if paramfiles.SEPARATOR in n and n not in named):
        changes.append(f"param '{name}' is not in dvc.lock: it will run")
    return changes


_MISSING = object()


def _commit(ws: Workspace, pipeline: Pipeline, locked: dict[str, LockEntry]) -> None:
    """A run record per locked stage (as the runner writes them, marked as imported), then mlv.lock."""
    if not locked:
        return
    index = RunIndex(ws)
    context = (git_state(ws.root), environment())
    lock = {**{n: e for n, e in lockfile.load(ws.root).items() if n in pipeline.stages}, **locked}
    for name, entry in locked.items():
        spec = pipeline.stages[name]
        now = time.time()
        index.write(RunRecord(
            run_id=entry.run_id, stage=name, fingerprint=str(entry.fingerprint), definition=spec.definition(),
            params=dict(spec.params), deps={p: str(d) for p, d in entry.deps.items()},
            outs={p: o.to_dict() for p, o in entry.outs.items()}, status="succeeded", exit_code=0, started=now,
            ended=now, host=host(), worker=None, gpu=None, log=None, git=context[0],
            environment={"mlv": context[1], "interpreter": None, "imported": "dvc.lock, by `mlv import-dvc`"},
            producers=provenance.input_producers(ws, entry.deps, lock),
        ))
        if ws.in_git:
            for out in spec.outs:
                ignore_in_git(ws.root / out)
    lockfile.dump(ws.root, lock)
