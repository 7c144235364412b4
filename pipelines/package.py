"""``kind: package``: a trained model, its input schema and training statistics, as a verifiable directory."""

from __future__ import annotations


def check(settings: dict) -> None:
    """Nothing beyond the paths the schema checks: ``model``, ``data`` and ``out``."""
