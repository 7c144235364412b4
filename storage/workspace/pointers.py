"""Pointer files (``<path>.mlv``): the small, git-committed record of tracked data.

Format (YAML)::

    path: raw                        # relative to the pointer's directory
    digest: xxh3-128:<32 hex>        # file object, or manifest for a directory
    size: 123456                     # total bytes
    nfiles: 20000                    # directories only

Unknown keys and malformed values are ``ConfigError`` (exit 2) naming the file, and so
is a pointer whose target breaks the paths rule (``mlv.storage.paths``): a committed
``.git.mlv`` must never make checkout replace ``.git``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from mlv.storage import atomic, paths, yamlfile
from mlv.storage.store.digest import Digest
from mlv.storage.store.digest import parse as parse_digest
from mlv.storage.errors import ConfigError

SUFFIX = ".mlv"
_KEYS = ("path", "digest", "size", "nfiles")


@dataclass(frozen=True, slots=True)
class Pointer:
    """What one pointer file says; ``file`` is where it lives, ``target`` the data path."""

    file: Path
    digest: Digest
    size: int
    nfiles: int | None = None

    @property
    def target(self) -> Path:
        return self.file.with_name(self.file.name[: -len(SUFFIX)])

    @property
    def is_dir(self) -> bool:
        return self.nfiles is not None


def pointer_path(target: Path) -> Path:
    return target.with_name(target.name + SUFFIX)


def load(file: Path, *, root: Path) -> Pointer:
    """Read and validate the pointer file ``file`` of the repo at ``root``."""
    rel = file.relative_to(root).as_posix() if file.is_relative_to(root) else file.name
    paths.check(rel[: -len(SUFFIX)], source=rel, what="the pointer's target")
    where = str(file)
    digest, size, nfiles = parse(yamlfile.read_text(file, source=where, limit=yamlfile.POINTER_BYTES),
                                 name=file.name, where=where)
    return Pointer(file, digest, size, nfiles)


def parse(data: bytes | str, *, name: str, where: str) -> tuple[Digest, int, int | None]:
    """(digest, size, nfiles) from a pointer's content (a file, or a blob of an old commit) named ``name``."""
    try:
        data = yamlfile.load(yamlfile.decode(data, source=where), source=where)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{where}{line}: pointer file is not valid YAML ({getattr(exc, 'problem', exc)}). "
            f"Restore it with `git checkout -- {where}` or re-run `mlv add`.",
            path=where,
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: pointer file must be a mapping with keys {', '.join(_KEYS)}", path=where)
    unknown = sorted(str(k) for k in set(data) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'; a pointer has only {', '.join(_KEYS)}", path=where)
    expected_name = name[: -len(SUFFIX)]
    if data.get("path") != expected_name:
        raise ConfigError(
            f"{where}: 'path' is {data.get('path')!r} but this pointer tracks {expected_name!r}; "
            "fix the key or re-run `mlv add`",
            path=where,
        )
    digest = parse_digest(data.get("digest"), where=f"{where}: 'digest'")
    size = data.get("size")
    nfiles = data.get("nfiles")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ConfigError(f"{where}: 'size' must be a non-negative integer, got {size!r}", path=where)
    if nfiles is not None and (not isinstance(nfiles, int) or isinstance(nfiles, bool) or nfiles < 0):
        raise ConfigError(f"{where}: 'nfiles' must be a non-negative integer, got {nfiles!r}", path=where)
    return digest, size, nfiles


def dump(pointer: Pointer) -> None:
    """Atomically write ``pointer`` to its file."""
    data: dict[str, object] = {"path": pointer.target.name, "digest": str(pointer.digest), "size": pointer.size}
    if pointer.nfiles is not None:
        data["nfiles"] = pointer.nfiles
    atomic.write_text(pointer.file, yaml.safe_dump(data, sort_keys=False))
