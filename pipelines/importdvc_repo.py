"""The DVC repo ``mlv import-dvc`` reads: ``dvc.yaml``, ``dvc.lock``, every ``*.dvc`` file and ``.dvc/config``.

Read-only. YAML is read bounded and safe (``storage.yamlfile``); a file that is not YAML is a
``UsageError`` (exit 2) naming it. What these files hold that mlv has no equivalent for
(keys of ``.dvc`` files, remotes and other settings of ``.dvc/config``) becomes a ``Note``;
``.dvc/config.local`` (personal settings, credentials) is never read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlv.engine.dag import normalise_path
from mlv.pipelines.importdvc_convert import Note
from mlv.storage import yamlfile
from mlv.storage.errors import UsageError

DVC_DIR = ".dvc"
_SKIP_DIRS = {".git", ".dvc", ".mlv"}


@dataclass(frozen=True, slots=True)
class DvcRepo:
    """The parts of a DVC repo the import uses."""

    dvc_yaml: dict | None
    lock: dict  # stage -> dvc.lock entry
    outs: list[tuple[str, str, dict]]  # (.dvc file, target path, its out entry)
    cache_dir: Path
    notes: list[Note]  # what has no mlv equivalent (.dvc keys, .dvc/config settings)
    not_imported: list[dict]  # {path, why}: .dvc files that cannot be read


def read_repo(root: Path) -> DvcRepo:
    """What the DVC repo at ``root`` holds; ``UsageError`` if it is none, or its lock or a .dvc file is not YAML."""
    notes: list[Note] = []
    not_imported: list[dict] = []
    if not (root / DVC_DIR).is_dir():
        raise UsageError(f"'{root}' is not the root of a DVC repo (no {DVC_DIR}/ here); run `mlv import-dvc` "
                         "where `dvc init` was run")
    dvc_yaml = _yaml(root, "dvc.yaml")
    lock = _yaml(root, "dvc.lock") or {}
    stages = lock.get("stages") if isinstance(lock, dict) else None
    if lock and not isinstance(stages, dict):
        raise UsageError("dvc.lock: expected 'stages:' (DVC 2/3's lock format); regenerate it with `dvc repro`")
    outs = []
    for dvc_file in _dvc_files(root):
        doc = _yaml(root, dvc_file)
        if not isinstance(doc, dict):
            not_imported.append({"path": dvc_file, "why": "not a .dvc file (no mapping with 'outs:')"})
            continue
        base = dvc_file.rpartition("/")[0]
        for key in sorted(set(doc) - {"outs", "md5", "frozen", "deps", "wdir"}):
            notes.append(Note(dvc_file, f"key '{key}'", "mlv pointers have no such key; left out"))
        if doc.get("deps"):
            notes.append(Note(dvc_file, "deps (dvc import / import-url)", "the data is imported; where it came "
                              "from is not tracked by mlv (`mlv add` it again to update it)"))
        for out in doc.get("outs") or []:
            if not isinstance(out, dict) or not isinstance(out.get("path"), str) or not out.get("md5"):
                not_imported.append({"path": dvc_file, "why": f"out {out!r} has no path and md5"})
                continue
            try:
                target = normalise_path(out["path"], base or ".")
            except ValueError as exc:
                raise UsageError(f"{dvc_file}: out {exc}") from None
            outs.append((dvc_file, target, out))
    notes.extend(_config_notes(root))
    return DvcRepo(dvc_yaml if isinstance(dvc_yaml, dict) else None, stages or {}, outs, _cache_dir(root), notes,
                   not_imported)


def _yaml(root: Path, rel: str) -> object:
    try:
        return yamlfile.load(yamlfile.read_text(root / rel, source=rel, limit=yamlfile.LOCK_BYTES), source=rel)
    except FileNotFoundError:
        return None
    except yaml.YAMLError as exc:
        raise UsageError(f"{rel}: not valid YAML ({exc}); fix it with DVC first") from None


def _dvc_files(root: Path) -> list[str]:
    found = []
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        rel = Path(top).relative_to(root).as_posix()
        found += [name if rel == "." else f"{rel}/{name}" for name in sorted(files) if name.endswith(".dvc")]
    return found


def _config_lines(root: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) of ``.dvc/config`` (INI as DVC writes it; config.local is personal: not read)."""
    found, section = [], ""
    try:
        text = (root / DVC_DIR / "config").read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]'\" ")
        elif "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            found.append((section, key.strip(), value.strip()))
    return found


def _config_notes(root: Path) -> list[Note]:
    notes = []
    for section, key, value in _config_lines(root):
        if section.startswith("remote"):
            name = section.partition(" ")[2].strip("\"' ")
            if key == "url":
                notes.append(Note(".dvc/config", f"remote '{name}' ({value})", "not imported: add it with "
                                  f"`mlv remote add {name} URL` (mlv's remotes hold mlv's store, not DVC's)"))
        elif (section, key) not in (("core", "remote"), ("core", "autostage"), ("cache", "dir")):
            notes.append(Note(".dvc/config", f"{section}.{key} = {value}", "DVC setting with no mlv equivalent"))
    return notes


def _cache_dir(root: Path) -> Path:
    for section, key, value in _config_lines(root):
        if (section, key) == ("cache", "dir"):
            return (root / DVC_DIR / value).resolve()
    return root / DVC_DIR / "cache"
