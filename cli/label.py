"""`mlv label review`: a person answers a label stage's review queue at the terminal.

Each answer is appended to the stage's ``human`` file at once (``id,label,annotator,time``),
so quitting or an interrupt loses nothing answered; the file is a dep of the label stage,
so the next ``mlv run`` relabels with the answers (``label_source`` ``human:<file>``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from mlv.cli.main import app, command, group, out, workspace
from mlv.storage.errors import UsageError

label_app = group()
app.add_typer(label_app, name="label", help="Label items by hand: answer a label stage's review queue.")


@command("review", group=label_app)
def review(
    queue: Annotated[Path, typer.Argument(help="The review CSV a label stage wrote (its review.out).")],
    human: Annotated[Path | None, typer.Option("--human", help="Append to this CSV instead of the human "
                                                  "file of the label stage whose review.out is QUEUE.")] = None,
) -> None:
    """Ask for each queued item's label (empty: skip, q: quit) and append the answers to the human file."""
    from mlv.pipelines import humanfiles
    from mlv.pipelines.kinds import SettingError

    if queue.suffix.lower() == ".json":
        raise UsageError(f"'{queue}' is a Label Studio queue: import it into Label Studio, and name the project's "
                         "JSON export as the stage's human: file")
    if not queue.is_file():
        raise UsageError(f"'{queue}' does not exist; `mlv run` writes the review queue of a label stage")
    target = human or _human_file(queue)
    try:
        id_column, items = humanfiles.read_queue(queue)
        answered = set(humanfiles.read_human_csv(target, id_column)) if target.exists() and target.stat().st_size else set()
    except (OSError, SettingError) as exc:
        raise UsageError(f"{getattr(exc, 'message', exc)}") from exc
    todo = [item for item in items if item[id_column] not in answered]
    out.print(f"{len(todo)} of {len(items)} items to label ({len(items) - len(todo)} already in {target}); "
              "type a label, or press Enter to skip, q to quit")
    who, saved = _annotator(), 0
    for number, item in enumerate(todo, 1):
        answer = _ask(item, id_column, number, len(todo))
        if answer is None:
            break
        if answer:
            humanfiles.append_human(target, [{"id": item[id_column], "label": answer, "annotator": who,
                                         "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}])
            saved += 1
    out.print(f"appended {saved} label(s) to {target}" + ("; `mlv run` relabels with them" if saved else ""))


def _ask(item: dict, id_column: str, number: int, total: int) -> str | None:
    """One item shown, one line read: the label, '' to skip, or None to stop (q or end of input)."""
    from mlv.pipelines.humanfiles import REVIEW_COLUMNS

    out.print(f"\n[{number}/{total}] {id_column}={item[id_column]}  ({item['reason']}"
              + (f", margin {float(item['margin']):.3f}" if item.get("margin") else "") + ")")
    for column, value in item.items():
        if column != id_column and column not in REVIEW_COLUMNS:
            out.print(f"  {column}: {value}")
    if item.get("candidates"):
        out.print(f"  candidates: {item['candidates'].replace('|', ', ')}")
    sys.stdout.write("label> ")
    sys.stdout.flush()
    line = sys.stdin.readline()
    answer = line.strip()
    return None if not line or answer == "q" else answer


def _human_file(queue: Path) -> Path:
    """The ``human`` file of the label stage whose ``review.out`` is ``queue``."""
    from mlv.pipelines.project import PIPELINE_FILE
    from mlv.pipelines.schema import load_pipeline

    ws = workspace()
    wanted = queue.resolve()
    for spec in load_pipeline(ws.root / PIPELINE_FILE, root=ws.root).stages.values():
        review = spec.settings.get("review") if spec.kind == "label" else None
        if not isinstance(review, dict) or (ws.root / spec.wdir / str(review.get("out"))).resolve() != wanted:
            continue
        if not spec.settings.get("human"):
            raise UsageError(f"{PIPELINE_FILE}:{spec.line}: stage '{spec.name}' has no 'human' file to append "
                             "to; add human: labels/human.csv to it, or pass --human FILE")
        found = Path(os.path.relpath(ws.root / spec.wdir / spec.settings["human"]))
        if found.suffix.lower() == ".json":
            raise UsageError(f"stage '{spec.name}' reads its human labels from a Label Studio export ('{found}'); "
                             "answer the queue in Label Studio, or pass --human FILE.csv")
        return found
    raise UsageError(f"no label stage in {PIPELINE_FILE} writes its review queue to '{queue}'; name the queue "
                     "of one (its review.out), or pass --human FILE")


def _annotator() -> str:
    """Who is answering: git's user.name, else $USER."""
    try:
        name = subprocess.run(["git", "config", "user.name"], check=False, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        name = ""
    return name or os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"
