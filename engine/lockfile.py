"""``mlv.lock``: what each stage last ran with and produced, committed beside ``mlv.yaml``.

Per stage: fingerprint, run id, the digest of every dep, the params it used, and the
digest (size, file count) of every out and metrics file. Keys are written in a fixed
order and paths sorted, so diffs stay small; the file is replaced atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mlv.storage import atomic
from mlv.storage.digest import Digest, parse
from mlv.storage.errors import ConfigError

NAME = "mlv.lock"
# libyaml's safe loader and dumper when present: a 50-stage lock parses several times faster
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
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
    path = root / NAME
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SafeLoader)
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
        for out in (raw.get("outs") or {}) if isinstance(raw, dict) else ():
            _check_path(out, where, path)
        try:
            entries[name] = LockEntry(
                fingerprint=parse(raw["fingerprint"], where=f"{where}: 'fingerprint'"),
                run_id=str(raw["run_id"]),
                deps={p: parse(d, where=f"{where}: dep '{p}'") for p, d in (raw.get("deps") or {}).items()},
                params=dict(raw.get("params") or {}),
                outs={
                    p: Output(parse(o["digest"], where=f"{where}: out '{p}'"), int(o["size"]), o.get("nfiles"))
                    for p, o in (raw.get("outs") or {}).items()
                },
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ConfigError(
                f"{where} is malformed ({exc!r}); restore {NAME} from git or delete the entry and re-run `mlv run`",
                path=str(path),
            ) from exc
    return entries


def _check_path(out: object, where: str, path: Path) -> None:
    """An out must be a repo-relative path: checkout writes there."""
    parts = str(out).split("/")
    if not isinstance(out, str) or not out or out.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ConfigError(
            f"{where}: out {out!r} is not a path inside the repo; restore {NAME} from git or delete the entry "
            "and re-run `mlv run`",
            path=str(path),
        )


def dump(root: Path, entries: dict[str, LockEntry]) -> None:
    data = {"schema": SCHEMA, "stages": {name: entries[name].to_dict() for name in sorted(entries)}}
    text = yaml.dump(data, Dumper=_SafeDumper, sort_keys=False, default_flow_style=False)
    atomic.write_text(root / NAME, HEADER + text)
