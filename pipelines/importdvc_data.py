"""DVC's data, re-hashed into mlv's store: objects found by md5 in DVC's cache (or in the workspace).

DVC 3 keeps a file at ``.dvc/cache/files/md5/<2 hex>/<30 hex>`` and a directory as a
``<md5>.dir`` JSON listing (``[{"md5", "relpath", "isexec"?}, …]``) next to its files; DVC 2
used ``.dvc/cache/<2 hex>/<30 hex>``. Every byte is checked against the md5 DVC recorded
before it is stored: a mismatch is reported (:class:`Mismatch`) and that version is not
imported. Where DVC's cache lacks an object (never pushed there, or ``cache: false``), the
workspace copy is used if its md5 is the recorded one.

Invariants: nothing here writes outside mlv's store; objects are stored through one
``Writer`` (small files go into packs), a directory's manifest after its files.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mlv.engine.lockfile import Output
from mlv.storage import paths
from mlv.storage.store import manifest
from mlv.storage.workspace import Workspace

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Bytes whose md5 is not the one DVC recorded (a damaged cache file, or an edited workspace file)."""

    path: str  # the workspace path (a file inside a directory: dir/relpath)
    expected: str
    actual: str
    source: str  # the file read

    def to_dict(self) -> dict:
        return {"path": self.path, "expected_md5": self.expected, "actual_md5": self.actual, "source": self.source}


@dataclass(slots=True)
class Found:
    """An object looked up by md5: imported (``output``), or why not."""

    output: Output | None = None
    why: str | None = None
    mismatches: list[Mismatch] = field(default_factory=list)


class DvcData:
    """Looks up DVC objects by md5 and stores them in mlv's store through ``writer`` (memoised by md5)."""

    def __init__(self, ws: Workspace, writer, *, cache_dir: Path) -> None:
        self.ws, self.writer, self.cache_dir = ws, writer, cache_dir
        self.found: dict[tuple[str, str], Found] = {}
        self.files_read = 0

    def cache_file(self, md5: str) -> Path | None:
        """Where DVC's cache holds ``md5`` (DVC 3's layout, then DVC 2's), or None."""
        if len(md5) < 3 or not all(c in "0123456789abcdef" for c in md5.removesuffix(".dir")):
            return None
        for base in (self.cache_dir / "files" / "md5", self.cache_dir):
            path = base / md5[:2] / md5[2:]
            if path.is_file():
                return path
        return None

    def get(self, rel: str, md5: str, *, cached: bool = True) -> Found:
        """The version ``md5`` of workspace path ``rel`` in mlv's store; ``cached``: look in DVC's cache first."""
        key = (rel, md5)
        if key not in self.found:
            self.found[key] = self._directory(rel, md5) if md5.endswith(".dir") else self._file(rel, md5, cached)
        return self.found[key]

    def _file(self, rel: str, md5: str, cached: bool) -> Found:
        sources = ([self.cache_file(md5)] if cached else []) + [self.ws.root / rel]
        mismatches, edited = [], False
        for source in sources:
            if source is None or not source.is_file():
                continue
            stored = self._put(source, rel, md5)
            if isinstance(stored, Mismatch):
                edited = edited or source == self.ws.root / rel
                mismatches += [stored] if source != self.ws.root / rel else []  # a workspace edit is no damage
                continue
            digest, size, _ = stored
            return Found(Output(digest, size), mismatches=mismatches)
        if mismatches:
            why = f"'{rel}' (md5 {md5}) is damaged in DVC's cache" + (", and edited in the workspace" if edited else "")
        elif edited:
            why = f"'{rel}' in the workspace is not the version DVC recorded (md5 {md5}), and DVC's cache lacks it"
        else:
            why = f"'{rel}' (md5 {md5}) is neither in DVC's cache nor in the workspace"
        return Found(why=why, mismatches=mismatches)

    def _directory(self, rel: str, md5: str) -> Found:
        listing_file = self.cache_file(md5)
        if listing_file is None:
            return Found(why=f"the listing of directory '{rel}' ({md5}) is not in DVC's cache; `dvc pull` it first")
        try:
            listing = json.loads(listing_file.read_bytes())
            entries = [(str(e["relpath"]), str(e["md5"]), bool(e.get("isexec", False))) for e in listing]
        except (ValueError, TypeError, KeyError) as exc:
            return Found(why=f"the listing of directory '{rel}' in DVC's cache ({listing_file}) is damaged ({exc})")
        found = Found()
        rows = []
        for relpath, file_md5, isexec in entries:
            if (why := paths.problem(relpath, written=False)) is not None or relpath.startswith("/"):
                return Found(why=f"directory '{rel}' lists '{relpath}', which {why or 'is absolute'}")
            member = f"{rel}/{relpath}"
            sources = [self.cache_file(file_md5), self.ws.root / member]
            stored = None
            for source in sources:
                if source is None or not source.is_file():
                    continue
                stored = self._put(source, member, file_md5)
                if not isinstance(stored, Mismatch):
                    break
                if source != self.ws.root / member:  # a workspace edit is no damage
                    found.mismatches.append(stored)
                stored = None
            if stored is None:
                found.why = found.why or f"'{member}' (md5 {file_md5}) is neither in DVC's cache nor, unchanged, in " \
                                         "the workspace"
                continue
            digest, size, executable = stored
            rows.append(manifest.Entry(relpath, digest, size, executable or isexec))
        if found.why or found.mismatches:
            found.why = found.why or f"{len(found.mismatches)} file(s) of '{rel}' do not match their md5"
            return found
        top = self.writer.put_bytes(manifest.dump(rows))
        self.ws.state.mark_complete(str(top))
        found.output = Output(top, sum(r.size for r in rows), len(rows))
        return found

    def _put(self, source: Path, rel: str, md5: str) -> tuple | Mismatch:
        """(digest, size, executable) of ``source`` stored, if its md5 is ``md5``."""
        self.files_read += 1
        size = source.stat().st_size
        member = self.ws.root / rel  # the exec bit is the workspace file's, as `mlv add` would see it
        executable = member.is_file() and os.access(member, os.X_OK)
        if size < self.writer.store.pack_threshold:
            data = source.read_bytes()
            actual = _md5(data)
            if actual != md5 and _legacy_md5(data) != md5:
                return Mismatch(rel, md5, actual, self.ws.rel(source) if source.is_relative_to(self.ws.root)
                                else str(source))
            return self.writer.put_bytes(data), len(data), executable
        h = hashlib.md5()
        with open(source, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        if h.hexdigest() != md5:
            return Mismatch(rel, md5, h.hexdigest(), str(source))
        digest, size = self.writer.put_file(source)
        return digest, size, executable


def md5_matches(root: Path, rel: str, md5: str, listing: list[tuple[str, str, bool]] | None) -> bool:
    """Whether workspace path ``rel`` holds the version ``md5`` (a directory: ``listing``, every file and no other)."""
    target = root / rel
    if not md5.endswith(".dir"):
        if not target.is_file():
            return False
        data = target.read_bytes()
        return md5 in (_md5(data), _legacy_md5(data))
    if listing is None or not target.is_dir():
        return False
    present = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    if present != sorted(relpath for relpath, _, _ in listing):
        return False
    return all(md5_matches(root, f"{rel}/{relpath}", file_md5, None) for relpath, file_md5, _ in listing)


def listing_of(data: DvcData, md5: str) -> list[tuple[str, str, bool]] | None:
    path = data.cache_file(md5)
    if path is None:
        return None
    try:
        return [(str(e["relpath"]), str(e["md5"]), bool(e.get("isexec", False))) for e in json.loads(path.read_bytes())]
    except (ValueError, TypeError, KeyError):
        return None


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _legacy_md5(data: bytes) -> str:
    """DVC 2's md5 of a text file: line endings normalised to LF (binary files: the plain md5)."""
    if b"\0" in data[:8192]:
        return _md5(data)
    return _md5(data.replace(b"\r\n", b"\n"))
