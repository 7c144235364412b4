"""``mlv.lock``: what each stage last ran with and produced, committed beside ``mlv.yaml``.

Per stage: fingerprint, run id, the digest of every dep, the params it used, and the
digest (size, file count) of every out and metrics file. Keys are written in a fixed
order and paths sorted, so diffs stay small; the file is replaced atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mlv.storage import atomic, paths, yamlfile
from mlv.storage.store.digest import Digest, parse
from mlv.storage.errors import ConfigError

NAME = "mlv.lock"
# libyaml's dumper when present: a 50-stage lock is written several times faster
_SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
SCHEMA = 1
HEADER = "# Written by `mlv run`: the inputs and outputs of each stage's last run. Commit it with mlv.yaml.\n"


@dataclass(frozen=True, slots=True)
class Output:
    digest: Digest
    size: int
    nfiles: int | None = None  # directories only

    def to_dict(self) -> dict:
        d: dict = {"digest": str(self.digest), "size": self.size}
        if self.nfiles is not None:
            d["nfiles"] = self.nfiles
        return d


@dataclass(frozen=True, slots=True)
class LockEntry:
    fingerprint: Digest
    run_id: str
    deps: dict[str, Digest] = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    outs: dict[str, Output] = field(default_factory=dict)  # outs and metrics alike

    def to_dict(self) -> dict:
        return {
            "fingerprint": str(self.fingerprint),
            "run_id": self.run_id,
            "deps": {p: str(d) for p, d in sorted(self.deps.items())},
            "params": self.params,
            "outs": {p: o.to_dict() for p, o in sorted(self.outs.items())},
        }


def load(root: Path) -> dict[str, LockEntry]:
    """The stages of ``root``'s lock; ``ConfigError`` (exit 2) naming what is wrong, including any out
    or dep path that breaks the paths rule (checkout writes where the outs say)."""
    path = root / NAME
    try:
        text = yamlfile.read_text(path, source=NAME, limit=yamlfile.LOCK_BYTES)
        data = yamlfile.load(text, source=NAME)
    except FileNotFoundError:
        return {}
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{NAME}: not valid YAML ({exc}). Restore it with `git checkout -- {NAME}` or delete it and re-run `mlv run`.",
            path=str(path),
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
        raise ConfigError(f"{NAME}: expected a mapping with 'schema' and 'stages'", path=str(path))
    if data.get("schema", SCHEMA) != SCHEMA:
        raise ConfigError(f"{NAME}: schema {data.get('schema')!r} is not supported by this mlv (expects {SCHEMA})")
    entries = {}
    for name, raw in (data.get("stages") or {}).items():
        where = f"{NAME}: stage '{name}'"
        for key in ("outs", "deps"):
            listed = raw.get(key) if isinstance(raw, dict) else None
            for p in listed if isinstance(listed, dict) else ():
                if paths.problem(p, written=key == "outs") is not None:  # the line is looked up only for the error
                    paths.check(p, source=NAME, what=f"stage '{name}': {key[:-1]}",
                                line=paths.line_of(text, f"{p}:"), written=key == "outs")
        try:
            entries[str(name)] = LockEntry(
                fingerprint=parse(raw["fingerprint"], where=f"{where}: 'fingerprint'"),
                run_id=_run_id(raw["run_id"]),
                deps={p: parse(d, where=f"{where}: dep '{p}'") for p, d in (raw.get("deps") or {}).items()},
                params=dict(raw.get("params") or {}),
                outs={
                    p: Output(parse(o["digest"], where=f"{where}: out '{p}'"), _count(o["size"]), _nfiles(o))
                    for p, o in (raw.get("outs") or {}).items()
                },
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ConfigError(
                f"{where} is malformed ({exc!r}); restore {NAME} from git or delete the entry and re-run `mlv run`",
                path=str(path),
            ) from exc
    return entries


def read(data: bytes | str, *, where: str = NAME) -> dict[str, dict]:
    """A lock as it was in any commit, read leniently (older layouts): ``{stage: {"run_id", "deps", "outs"}}``
    with ``deps`` path -> digest text and ``outs`` path -> ``{digest, size, nfiles?}``; ``ConfigError`` if
    it cannot be read at all. Nothing is written from it, so paths are not checked here (``load`` does)."""
    try:
        doc = yamlfile.load(data, source=where) or {}
        found = {str(name): {"run_id": None if raw.get("run_id") is None else str(raw["run_id"]),
                             "deps": dict(raw.get("deps") or {}), "outs": dict(raw.get("outs") or {})}
                 for name, raw in (doc.get("stages") or {}).items()}
        for entry in found.values():  # every reader may use an out's fields: their shape is checked once, here
            for path, out in entry["outs"].items():
                if not isinstance(out, dict) or not isinstance(out.get("digest"), str):
                    raise ValueError(f"out {path!r} needs a mapping with a 'digest', got {out!r}")
        return found
    except (yaml.YAMLError, AttributeError, TypeError, KeyError, ValueError) as exc:
        raise ConfigError(f"{where} cannot be read ({exc!r}); fix it (`git checkout -- {NAME}`, or resolve a "
                          "merge conflict) and retry", path=NAME) from exc


def outputs(data: bytes | str, *, where: str = NAME) -> list[tuple[Digest, bool]]:
    """(digest, is a directory) of every out a lock's content names (dep digests are not stored objects)."""
    found = []
    for entry in read(data, where=where).values():
        for out in entry["outs"].values():
            try:
                found.append((parse(out["digest"], where=where), out.get("nfiles") is not None))
            except (TypeError, KeyError, AttributeError, ValueError) as exc:
                raise ConfigError(f"{where}: an out is malformed ({exc!r})", path=NAME) from exc
    return found


def _run_id(value: object) -> str:
    if not isinstance(value, str) or not paths.RUN_ID.match(value):
        raise ValueError(f"run_id {value!r} is not a run id")
    return value


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a size")
    return value


def _nfiles(out: dict) -> int | None:
    return None if out.get("nfiles") is None else _count(out["nfiles"])


def dump(root: Path, entries: dict[str, LockEntry]) -> None:
    data = {"schema": SCHEMA, "stages": {name: entries[name].to_dict() for name in sorted(entries)}}
    text = yaml.dump(data, Dumper=_SafeDumper, sort_keys=False, default_flow_style=False)
    atomic.write_text(root / NAME, HEADER + text)
