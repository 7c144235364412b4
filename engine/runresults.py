"""What ``mlv run`` is asked and what it answers: the options, each stage's result and final
``State``, and the ``Listener`` that hears about stages as they go (``engine.runner`` runs them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from mlv.engine.plan import CACHED, UP_TO_DATE, Fetch


@dataclass(frozen=True, slots=True)
class RunOptions:
    force: bool = False
    jobs: int | None = None
    fail_fast: bool = False
    fetch: Fetch | None = None  # gets outputs that ran before from a remote, instead of running the stage
    download: bool = True  # workspace: remote — check outputs out after each stage (False: --no-download)
    lock: bool = True  # False: runs are recorded but mlv.lock is not written (`mlv score`: not a stage of mlv.yaml)
    stream: bool = True  # stages' masked output reaches the listener line by line as it comes (False: `run -q`)


class State(str, Enum):
    """Where a stage ended up (the value is what ``--json`` and the progress display show)."""

    UP_TO_DATE = UP_TO_DATE
    CACHED = CACHED
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # an upstream stage failed (or --fail-fast stopped the run first)
    CANCELLED = "cancelled"  # stopped while running (--fail-fast, Ctrl-C)

    __str__ = str.__str__  # prints and formats as its value, as a StrEnum does (Python 3.11+)
    __format__ = str.__format__


@dataclass(slots=True)
class StageResult:
    stage: str
    state: str  # a State value
    reasons: list[str] = field(default_factory=list)
    run_id: str | None = None
    elapsed: float = 0.0
    exit_code: int | None = None
    log_tail: str = ""

    def to_dict(self) -> dict:
        return {"stage": self.stage, "state": self.state, "reasons": self.reasons, "run_id": self.run_id,
                "elapsed": round(self.elapsed, 3), "exit_code": self.exit_code}


# (stage, state, detail); also (stage, "output", a line it printed — masked), ("", "cluster", dashboard link),
# ("", "note", text) and, at the end, ("", "changed", path) for each file to commit that this run changed
Listener = Callable[[str, str, str], None]
