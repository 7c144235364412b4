"""``kind: label``: labels from rules and people, with their sources and a review queue."""

from __future__ import annotations

import re

from mlv.pipelines.kinds import SettingError

_RULE = re.compile(r"^([^:]+\.py|[A-Za-z_]\w*(\.[A-Za-z_]\w*)*):[A-Za-z_]\w*$")


def check(settings: dict) -> None:
    rules = settings.get("rules", [])
    if not isinstance(rules, list):
        raise SettingError("rules", f"must be a list of functions like src/rules.py:spam; got {rules!r}")
    for index, rule in enumerate(rules):
        if not isinstance(rule, str) or not _RULE.match(rule):
            raise SettingError(("rules", index), f"must name a function as file.py:function or "
                               f"package.module:function; got {rule!r}")
    if not rules and "human" not in settings:
        raise SettingError("rules", "a label stage needs 'rules', 'human' labels, or both")
    if "id" in settings and (not isinstance(settings["id"], str) or not settings["id"]):
        raise SettingError("id", "must name the column that identifies an item")
    review = settings.get("review")
    if review is not None:
        if not isinstance(review, dict) or "out" not in review or set(review) - {"size", "out", "format"}:
            raise SettingError("review", "must be a mapping like {size: 50, out: labels/review.csv}")
        size = review.get("size", 50)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise SettingError("review.size", f"must be a whole number ≥ 1, got {size!r}")
        if review.get("format", "csv") not in ("csv", "label-studio"):
            raise SettingError("review.format", f"must be csv or label-studio, got {review['format']!r}")
