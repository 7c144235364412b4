"""The files an ``mlv run`` changed that belong in git: what ``git add`` should be told afterwards.

``dvc repro`` ends with "To track the changes with git, run: git add …"; so does ``mlv run``.
The candidates are the files a run may write that stay visible to git — ``mlv.lock``, the
pointers of tracked data its stages read (re-added when that data changed), the
``.gitignore`` beside each out, and every metrics file — and one is named only when its
bytes differ from before the run (a lock rewritten with the same entries is not news).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mlv.engine.dag import StageSpec
from mlv.engine.lockfile import NAME as LOCK_FILE
from mlv.storage.store import digest as digests
from mlv.storage.workspace import Workspace, pointers


class Watch:
    """The content of each candidate file before the run, to compare with after it."""

    def __init__(self, ws: Workspace, specs: Iterable[StageSpec], *, lock: bool) -> None:
        self.root = ws.root
        names: set[str] = {LOCK_FILE} if lock else set()
        for spec in specs:
            for out in spec.outs:
                parent = str(Path(out).parent)
                names.add(".gitignore" if parent == "." else f"{parent}/.gitignore")
            names.update((*spec.metrics, *spec.plots))
            for dep in spec.deps:
                parts = dep.split("/")
                names.update("/".join(parts[:n]) + pointers.SUFFIX for n in range(1, len(parts) + 1))
        self.before = {name: self._content(name) for name in sorted(names)}

    def _content(self, name: str) -> str | None:
        path = self.root / name
        if not path.is_file():
            return None
        return str(digests.of_file(path)[0])

    def changed(self) -> list[str]:
        """Candidates whose bytes are not what they were (created ones included, deleted ones not)."""
        found = []
        for name, before in self.before.items():
            now = self._content(name)
            if now is not None and now != before:
                found.append(name)
        return found
