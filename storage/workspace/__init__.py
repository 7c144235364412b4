"""The workspace layer: a repo root with ``.mlv/`` — its config, pointer files, stat cache
and ``state.db``, walking and snapshotting paths, ``add``/``status``/``checkout``, ``fsck``
and ``gc`` of the local store, and what git knows. Built on ``mlv.storage.store``.

``Workspace`` (in ``repo``) is its entry point.
"""

from mlv.storage.workspace.repo import DOT, DOT_GITIGNORE, Workspace

__all__ = ["DOT", "DOT_GITIGNORE", "Workspace"]
