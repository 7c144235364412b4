"""The two files people edit for ``kind: label``: the human labels CSV and the review queue CSV.

- human labels: ``id,label[,annotator,time]`` (the id column may also carry the stage's ``id``
  name); a later line for an id wins, an empty label is none; ``mlv label review`` only
  ever appends to it.
- review queue: the id column first, the item's other columns, then ``reason``
  (conflict|unlabeled), ``candidates`` (the rules' labels joined by ``|``), ``margin`` (empty
  without a model) and an empty ``label``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from mlv.pipelines.kinds import SettingError

REVIEW_COLUMNS = ("reason", "candidates", "margin", "label")


def read_human_csv(path: str | Path, id_column: str = "id") -> dict[str, str]:
    """``{id: label}`` of a human labels CSV (a later line for an id wins; an empty label is none)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            key = "id" if "id" in header else id_column
            if key not in header or "label" not in header:
                raise SettingError("human", f"'{path}' must be a CSV with columns id,label[,annotator,time]; its "
                                   f"header is {','.join(header) or 'empty'}")
            labels = {}
            for line in reader:
                if line.get(key) and line.get("label"):
                    labels[line[key]] = line["label"]
            return labels
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SettingError("human", f"'{path}' cannot be read as a CSV: {exc}") from exc


HUMAN_HEADER = ("id", "label", "annotator", "time")


def append_human(path: str | Path, answers: list[dict]) -> None:
    """Append ``{id, label, annotator, time}`` lines to a human labels CSV, never rewriting a line.

    A new (or empty) file gets the header ``id,label,annotator,time``; an existing one keeps its
    own header, and each answer fills the columns it names (an id column named otherwise, like
    the stage's ``id``, is the first one).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    header = next(csv.reader([text.splitlines()[0]]), []) if text.strip() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if not header:
            header = list(HUMAN_HEADER)
            writer.writerow(header)
        elif not text.endswith("\n"):
            f.write("\n")  # the last line had no end: the next one must not join it
        for answer in answers:
            values = {**answer, header[0]: answer["id"]}
            writer.writerow([values.get(column, "") for column in header])
        f.flush()


def read_queue(path: str | Path) -> tuple[str, list[dict]]:
    """The id column and the items of a review CSV, as ``review`` wrote it."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if len(header) < 2 or any(c not in header for c in REVIEW_COLUMNS):
            raise SettingError("review", f"'{path}' is not a review queue: it needs an id column first and "
                               f"{', '.join(REVIEW_COLUMNS)}; its header is {','.join(header) or 'empty'}")
        return header[0], list(reader)


def write_review_csv(items: list[dict], columns: list[str], id_column: str, path: str) -> None:
    clash = [c for c in REVIEW_COLUMNS if c in columns]
    if clash:
        raise SettingError("review", f"the data has a column '{clash[0]}', which the review CSV adds; use "
                           "format: label-studio or rename the column")
    header = [id_column, *(c for c in columns if c != id_column), *REVIEW_COLUMNS]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for item in items:
            extra = {"reason": item["reason"], "candidates": "|".join(str(label) for label, _ in item["candidates"]),
                     "margin": "" if item["margin"] is None else repr(float(item["margin"])), "label": ""}
            writer.writerow([_cell(item["row"].get(c)) if c in item["row"] else extra[c] for c in header])


def _cell(value: object) -> str:
    if value is None:
        return ""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
