"""What a person sees while ``mlv run`` works: stage states, the stages' own output, files to commit.

- Stage output (already masked on the worker, ``engine.liveoutput``) goes to **stdout** as it
  comes, as ``dvc repro`` lets its commands print there; each line is prefixed with its
  stage (``train@rf | epoch 1``) whenever another stage is running at that moment, and left
  bare when only one is. With ``--json`` it goes to stderr, so stdout stays one JSON document.
- Stage states (queued, running, cached, done, failed, with elapsed time) go to **stderr**: a
  live table on a terminal, one line per change otherwise.
- ``-q/--quiet``: neither, nor the notes and the summary, as ``dvc repro -q`` shows nothing
  but errors; a failed stage is still reported (stderr) and the exit code says the rest.

Listener calls arrive from several threads (stages on threads of this process, Dask's event
loop for stages on a cluster): one lock keeps lines whole and states consistent.
"""

from __future__ import annotations

import shlex
import sys
import threading
import time

from mlv.cli.main import err


class RunProgress:
    """The ``Listener`` of ``engine.runresults``: renders each (stage, state, detail) it is told."""

    STYLES = {"running": "cyan", "done": "green", "cached": "blue", "up-to-date": "dim", "failed": "bold red",
              "skipped": "yellow", "queued": "dim"}

    def __init__(self, stages: list[str], *, quiet: bool, json: bool = False) -> None:
        self.quiet = quiet
        self.show_states = not (quiet or json)
        self.output = sys.stderr if json else sys.stdout
        self.state = {s: ("queued", "") for s in stages}
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.changed: list[str] = []  # files to commit this run changed (engine.tocommit)
        self.lock = threading.RLock()
        self.live = None
        if self.show_states and err.is_terminal and stages:
            from rich.console import Console
            from rich.live import Live

            # no redirection: stage output is written (or printed above the table) by ``_line`` itself
            self.live = Live(get_renderable=self._table, console=Console(stderr=True), refresh_per_second=4,
                             transient=False, redirect_stdout=False, redirect_stderr=False)

    def __enter__(self) -> RunProgress:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def _elapsed(self, stage: str) -> str:
        if stage not in self.started:
            return ""
        return f"{self.ended.get(stage, time.monotonic()) - self.started[stage]:.1f}s"

    def _table(self):
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, show_header=False, pad_edge=False)
        # no lock here: rich's refresh thread calls this holding its own lock, which a line printed above the
        # table (holding ours) waits for; a copy of the states is consistent enough for one frame
        for stage, (state, detail) in list(self.state.items()):  # Text cells: drawn the same whatever markup
            table.add_row(Text(state, style=self.STYLES.get(state, "")), Text(stage), Text(self._elapsed(stage)),
                          Text(detail))
        return table

    def __call__(self, stage: str, state: str, detail: str) -> None:
        with self.lock:
            self._handle(stage, state, detail)

    def _handle(self, stage: str, state: str, detail: str) -> None:
        if state == "output":
            if not self.quiet:
                self._line(stage, detail)
            return
        if state == "changed":
            self.changed.append(detail)
            return
        if state in ("cluster", "note"):
            if detail and self.show_states:
                text = f"Dask dashboard: {detail}" if state == "cluster" else f"note: {detail}"
                if self.live is not None:
                    from rich.text import Text

                    self.live.console.print(Text(text), highlight=False, soft_wrap=True)
                else:
                    err.print(text)
            return
        now = time.monotonic()
        if state == "running":
            self.started[stage] = now
        elif stage in self.started:
            self.ended[stage] = now
        self.state[stage] = (state, detail)
        if not self.show_states or self.live is not None:
            return
        line = f"  {state:<11} {stage}"
        if state != "running":
            line += f"  {self._elapsed(stage)}" + (f"  — {detail}" if detail else "")
        err.print(line.rstrip())

    def _line(self, stage: str, line: str) -> None:
        """One line a stage printed: bare while it is the only stage running, else ``stage | line``."""
        running = [s for s, (state, _) in self.state.items() if state == "running"]
        text = line if running in ([stage], []) else f"{stage} | {line}"
        if self.live is not None and self.output.isatty():  # same terminal as the table: print above it
            from rich.text import Text

            self.live.console.print(Text(text), highlight=False, soft_wrap=True)
            return
        try:
            self.output.write(text + "\n")
            self.output.flush()  # a pipe is block-buffered: a reader sees each line when it is printed
        except BrokenPipeError:  # `mlv run | head`: the reader left; the stages go on, their logs keep it all
            self.quiet = True


def git_add_hint(paths: list[str]) -> str:
    """DVC's closing advice, for the files a command changed that belong in git.

    >>> print(git_add_hint(["mlv.lock", "data/.gitignore"]))
    To track the changes with git, run:
      git add data/.gitignore mlv.lock
    """
    return "To track the changes with git, run:\n  git add " + " ".join(shlex.quote(p) for p in sorted(set(paths)))
