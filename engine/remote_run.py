"""The client's side of ``workspace: remote``: stages planned by digest, data kept on the remote.

Workers share nothing with the client but the repo's default remote (``engine.worker``,
``storage.scratch``). So the client:

- plans every dep by digest without needing its bytes: an output settled in this run by
  the digest its worker returned (or a file or folder inside it, through its manifest); data
  ``mlv add`` tracks that is not in the workspace (a fresh clone that never pulled) by its
  pointer; an output of a stage outside this run by ``mlv.lock``; anything else from the
  workspace, as in shared mode (``locate``);
- before submitting a stage, makes sure the remote holds every dep no worker of this run
  pushed (``ensure``): what the remote lacks is pushed from the local store, where
  ``engine.inputs`` saved it; data in neither place is an error naming it;
- after a stage, fetches its log (and, unless ``--no-download``, its outputs) and checks the
  outputs out into the workspace (``collect``). With ``--no-download`` they stay on the
  remote; ``mlv.lock`` and the run record name them all the same.

Raw data therefore moves only between the remote and the workers. Nothing secret travels:
a job carries the remote's committed settings (``storage.scratch.settings``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from mlv.engine.dag import Graph, StageSpec
from mlv.engine.lockfile import LockEntry, Output
from mlv.engine.plan import identify
from mlv.storage.workspace import pointers
from mlv.storage.store.digest import Digest
from mlv.storage.errors import MlvError, ObjectMissing, StorageError, UsageError
from mlv.storage.workspace import Workspace

Note = Callable[[str], None]


def required(ws: Workspace, source: str) -> None:
    """``workspace: remote`` needs a default remote: ``UsageError`` (exit 2) saying how to add one."""
    if ws.config.default_remote is None:
        how = ("pick one with `mlv remote default NAME`" if ws.config.remotes else
               "add one with `mlv remote add NAME URL` (the first remote becomes the default)")
        raise UsageError(f"{source}: 'workspace: remote' runs stages on workers that share only this repo's default "
                         f"remote, and no default remote is configured; {how}, push the data stages read "
                         "(`mlv push`), then run again. Nothing ran.")


class RemoteRun:
    """One ``mlv run``'s dealings with the default remote (connected on first use)."""

    def __init__(self, ws: Workspace, lock: dict[str, LockEntry], *, download: bool, note: Note) -> None:
        from mlv.storage.remote import scratch
        from mlv.storage.workspace.config import remote_for

        self.ws, self.download, self.note = ws, download, note
        self.config = remote_for(ws.config, None)
        self.settings = scratch.settings(self.config, ws.root)
        self.outs: dict[str, Output] = {}  # outputs settled in this run (up to date, restored, run)
        self.locked = {path: out for entry in lock.values() for path, out in entry.outs.items()}
        self.on_remote: set[Digest] = set()  # known to be on the remote in this run (pushed or returned)
        self.kinds: dict[str, bool] = {}  # dep path -> is a directory, for the digests ``locate`` gave
        self._remote = None
        self._manifests: dict[Digest, object] = {}
        self._made: dict[Digest, bytes] = {}  # manifests of folders inside directory versions, stored when sent
        self._unreachable = False  # the run cache's look at the remote failed once: not again

    @property
    def remote(self):  # -> storage.remotes.Remote
        if self._remote is None:
            from mlv.storage.remote import remotes

            self._remote = remotes.connect(self.ws)
        return self._remote

    # -- digests --------------------------------------------------------------------
    def settle(self, outs: dict[str, Output]) -> None:
        """A stage settled with these outputs: downstream stages are planned with their digests."""
        self.outs.update(outs)

    def digest(self, path: str) -> Digest | None:
        """The ``known`` lookup of ``plan.decide``: a dep's digest without its bytes, or None (then the
        workspace is read)."""
        found = self.locate(path)
        return None if found is None else found[0]

    def locate(self, path: str) -> tuple[Digest, bool] | None:
        """``(digest, is a directory)`` of dep ``path`` when it need not be read from the workspace."""
        found = self._within(path, self.outs)
        if found is None and not (self.ws.root / path).exists():
            found = self._pointed(path) or self._within(path, self.locked)
        if found is not None:
            self.kinds[path] = found[1]
        return found

    def sources(self, graph: Graph, specs: list[StageSpec]) -> dict[str, tuple[Digest, bool]]:
        """The deps of ``specs`` that no stage of ``graph`` produces, with their digests: what goes up first."""
        found = {}
        for dep in sorted({d for spec in specs for d in spec.deps if graph.producer_of(d) is None}):
            if (digest := self.digest(dep) or identify(self.ws, dep)) is not None:
                found.update(self.inputs({dep: digest}))
        return found

    def inputs(self, deps: dict[str, Digest]) -> dict[str, tuple[Digest, bool]]:
        """The deps a stage was planned with, each with whether it is a directory."""
        return {p: (d, self.kinds[p] if p in self.kinds else (self.ws.root / p).is_dir()) for p, d in deps.items()}

    def _pointed(self, path: str) -> tuple[Digest, bool] | None:
        """Tracked data (or a file or folder inside it) by its pointer."""
        parts = path.split("/")
        for n in range(len(parts), 0, -1):
            file = self.ws.root / ("/".join(parts[:n]) + pointers.SUFFIX)
            if file.is_file():
                ptr = pointers.load(file, root=self.ws.root)
                version = {"/".join(parts[:n]): Output(ptr.digest, ptr.size, ptr.nfiles)}
                return self._within(path, version)
        return None

    def _within(self, path: str, versions: dict[str, Output]) -> tuple[Digest, bool] | None:
        """``path`` in ``versions`` (path -> version): one of them, or a file or folder inside a directory one."""
        if path in versions:
            return versions[path].digest, versions[path].nfiles is not None
        for top, version in versions.items():
            if version.nfiles is not None and path.startswith(top + "/"):
                return self._member(version.digest, path[len(top) + 1:])
        return None

    def _member(self, directory: Digest, rel: str) -> tuple[Digest, bool] | None:
        """A file inside a directory version, or a folder inside it as a directory version of its own (its
        manifest is stored here when ``ensure`` sends it; its members are the directory's)."""
        from mlv.storage.store import manifest
        from mlv.storage.store.digest import of_bytes

        if directory not in self._manifests:
            self._manifests[directory] = manifest.load(self._manifest_bytes(directory))
        m = self._manifests[directory]
        if (entry := m.get(rel)) is not None:
            return entry.digest, False
        inside = [manifest.Entry(e.path[len(rel) + 1:], e.digest, e.size, e.executable)
                  for e in m if e.path.startswith(rel + "/")]
        if not inside:
            return None
        data = manifest.dump(inside)
        self._made[digest := of_bytes(data)] = data
        return digest, True

    def _manifest_bytes(self, directory: Digest) -> bytes:
        if directory not in self.ws.store:  # only the manifest comes here, never the files it lists
            from mlv.storage.remote.fetch import fetch
            from mlv.storage.workspace.references import Roots

            fetch(self.ws, self.remote, lambda: Roots(where={directory: "a dep's directory"}), records=False)
        try:
            return self.ws.store.read_bytes(directory)
        except ObjectMissing:
            raise ObjectMissing(f"directory version {directory} is neither in this clone's store nor on "
                                f"{self.remote.where}; push it from a clone that has it (`mlv push`)",
                                digest=directory) from None

    # -- moving data ----------------------------------------------------------------
    def ensure(self, inputs: dict[str, tuple[Digest, bool]]) -> None:
        """Make sure the remote holds every input: push what it lacks from the local store. Data in neither
        place is ``ObjectMissing`` naming it; a remote that cannot be reached, a ``RemoteError``."""
        todo = {p: v for p, v in inputs.items() if v[0] not in self.on_remote}
        if not todo:
            return
        from mlv.storage.remote.push import push
        from mlv.storage.workspace.references import Roots

        roots = Roots()
        for path, (digest, _) in sorted(todo.items()):
            roots.where.setdefault(digest, path)
            if digest in self._made and digest not in self.ws.store:
                self.ws.store.put_bytes(self._made[digest])
        report = push(self.ws, self.remote, roots, records=False)
        if report.missing:
            digest, named = next(iter(report.missing.items()))
            raise ObjectMissing(f"'{named}' needs object {digest}, which is neither in this clone's store nor on "
                                f"{self.remote.where}; `mlv push` it from a clone that has it (or `mlv add` the "
                                "data again here)")
        if report.rejected:
            digest, why = next(iter(report.rejected.items()))
            raise StorageError(f"object {digest} could not be pushed to {self.remote.where}: {why}")
        self.on_remote.update(d for d, _ in todo.values())

    def available(self, outs: dict[str, Output]) -> bool:
        """The run cache: outputs of an earlier run are usable — in the local store (fetched from the remote
        when it has them), or with ``--no-download`` on the remote. A remote that cannot be reached is
        reported once; the stages then run."""
        if self._unreachable:
            return False
        try:
            if not self.download:
                self.ensure({p: (o.digest, o.nfiles is not None) for p, o in outs.items()})
                return True
            report = self._fetch(outs, [])
            return (report is None or report.ok) and all(self._complete(o) for o in outs.values())
        except ObjectMissing:
            return False
        except MlvError as exc:
            self._unreachable = True
            sys.stderr.write(f"note: {exc}\n  stages whose outputs are only on the remote will run instead\n")
            return False

    def collect(self, outs: dict[str, Output], named: list[str], *, force: bool) -> None:
        """After a stage ran: fetch the objects its record names (``named``: log, package list) and, unless
        ``--no-download``, its outputs, and check those out into the workspace."""
        self.on_remote.update(o.digest for o in outs.values())
        self.settle(outs)
        report = self._fetch(outs if self.download else {}, named)
        if report is not None and not report.ok:
            digest, why = next(iter({**report.missing, **report.rejected}.items()))
            raise StorageError(f"object {digest} ({why}) could not be fetched from {self.remote.where}")
        if self.download and outs:
            from mlv.storage.workspace.checkout import Version, restore

            restore(self.ws, [Version(self.ws.root / p, o.digest, o.nfiles is not None, o.size)
                              for p, o in outs.items()], force=force)

    def _fetch(self, outs: dict[str, Output], named: list[str]):  # -> TransferReport | None (nothing to get)
        from mlv.storage.store.digest import parse
        from mlv.storage.remote.fetch import fetch
        from mlv.storage.workspace.references import Roots

        roots = Roots()
        for path, out in outs.items():
            roots.where.setdefault(out.digest, path)
            if out.nfiles is not None:
                roots.current_dirs.add(out.digest)
        for digest in named:
            roots.where.setdefault(parse(digest), "run record")
        if not roots.where:
            return None
        return fetch(self.ws, self.remote, lambda: roots, records=False)

    def _complete(self, out: Output) -> bool:
        from mlv.storage.workspace.tracking import in_cache

        return in_cache(self.ws, out.digest, out.nfiles is not None)
