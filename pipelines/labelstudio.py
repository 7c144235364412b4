"""Label Studio's JSON, both ways, for ``kind: label`` (no dependency on the label-studio package).

Read: a project's JSON export (``human: labels/export.json``) is a list of tasks, each with
``data`` (the item, as imported) and ``annotations``; an annotation's ``result`` holds
``{"type": "choices", "value": {"choices": [LABEL]}}`` entries. Cancelled annotations
(``was_cancelled: true``) are skipped; of the others, the newest (``updated_at``, else
``created_at``, else the last listed) gives the item's label. The item is keyed by
``data[<id column>]``. A task nobody annotated carries no label.

Write: the review queue as tasks to import (``review.format: label-studio``): one task per
item, ``data`` is the item's columns plus ``mlv_reason``, ``mlv_candidates`` and
``mlv_margin`` (sortable in the Data Manager), and ``predictions`` holds one pre-annotation
per candidate label (``model_version`` ``rule:<function>``) and the model's top class when
a model ranked the queue (``model_version`` ``model``, ``score`` its probability). The
pre-annotations name ``from_name: label`` and ``to_name: item``, so the project's labeling
config should be, for a text column ``text``::

    <View>
      <Text name="item" value="$text"/>
      <Choices name="label" toName="item"><Choice value="spam"/><Choice value="refund"/></Choices>
    </View>
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
from pathlib import Path

from mlv.pipelines.kinds import SettingError

FROM_NAME = "label"  # the <Choices name=...> of the labeling config
TO_NAME = "item"  # the object tag the choices label


def read_export(path: str | Path, id_column: str, *, setting: str = "human") -> dict[str, str]:
    """``{str(item id): label}`` from a Label Studio JSON export; a malformed one is a ``SettingError``."""
    try:
        tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SettingError(setting, f"'{path}' cannot be read as a Label Studio JSON export: {exc}") from exc
    if not isinstance(tasks, list):
        raise SettingError(setting, f"'{path}' must hold a list of tasks (Label Studio's JSON export), "
                           f"not a {type(tasks).__name__}")
    labels: dict[str, str] = {}
    for index, task in enumerate(tasks):
        where = f"'{path}', task {index}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise SettingError(setting, f"{where} has no 'data' mapping; is it a Label Studio JSON export?")
        if id_column not in task["data"]:
            raise SettingError(setting, f"{where} has no '{id_column}' in its data (keys: "
                               f"{', '.join(map(str, task['data'])) or 'none'}); import tasks that carry the "
                               f"item's id, as review.format: label-studio writes them")
        label = _annotated(task.get("annotations") or [], where, setting)
        if label is not None:
            labels[str(task["data"][id_column])] = label
    return labels


def _annotated(annotations: list, where: str, setting: str) -> str | None:
    """The label of the newest annotation that was not cancelled, or None."""
    kept = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    kept.sort(key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))  # stable: ties keep list order
    for annotation in reversed(kept):
        choices = [c for r in annotation.get("result") or [] if isinstance(r, dict)
                   for c in ((r.get("value") or {}).get("choices") or [])]
        if len(choices) > 1:
            raise SettingError(setting, f"{where}: an annotation chose {len(choices)} labels ({', '.join(map(str, choices))}); "
                               "a label stage takes one choice per item (choice=\"single\")")
        if choices:
            return str(choices[0])
    return None


def write_tasks(items: list[dict], path: str | Path) -> None:
    """Write review items as importable tasks.

    Each item is ``{"row": {...}, "reason": str, "candidates": [(label, rule name), ...],
    "margin": float | None, "top": (class, probability) | None}``.
    """
    tasks = []
    for item in items:
        data = {**{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in item["row"].items()},  # NaN: not JSON
                "mlv_reason": item["reason"],
                "mlv_candidates": "|".join(str(label) for label, _ in item["candidates"]),
                "mlv_margin": item["margin"]}
        predictions = [_prediction([label], f"rule:{rule}") for label, rule in item["candidates"]]
        if item.get("top") is not None:
            predictions.append({**_prediction([item["top"][0]], "model"), "score": item["top"][1]})
        tasks.append({"data": data, "predictions": predictions} if predictions else {"data": data})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tasks, indent=1, default=_plain, ensure_ascii=False) + "\n", encoding="utf-8")


def _prediction(choices: list, version: str) -> dict:
    return {"model_version": version, "result": [
        {"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [str(c) for c in choices]}}]}


def _plain(value: object) -> object:
    """JSON for what a Parquet row may hold beyond JSON's types (dates, decimals, bytes)."""
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return str(value)
