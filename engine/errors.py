"""Errors the engine raises about the shape of a pipeline (not about running it).

A ``GraphError`` is a usage error (exit code 2): the pipeline as declared cannot be
built, so nothing was attempted. Its message already names the pipeline file and the
stage's line when the spec carries one (``mlv.yaml:14: stage 'train' reads …``).
"""

from __future__ import annotations

from mlv.storage.errors import UsageError


class GraphError(UsageError):
    """The stages do not form a valid DAG: a cycle, clashing outputs, a missing input.

    Attributes:
        stages: the stage names involved, in the order the message mentions them.
        path: the pipeline file, when known.
        line: the line of the first stage involved, when its spec carries one.
        artifact: the workspace path at issue (a dep or an out), when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        stages: tuple[str, ...] = (),
        path: str | None = None,
        line: int | None = None,
        artifact: str | None = None,
    ) -> None:
        super().__init__(message)
        self.stages = stages
        self.path = path
        self.line = line
        self.artifact = artifact
