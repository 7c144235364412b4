"""The stage-kind registry: what ``kind: NAME`` in ``mlv.yaml`` means.

A kind is a stage written as settings instead of code. Kinds register through the entry
point group ``mlv.kinds``: each entry point names a ``Kind``. mlv's built-in kinds (label,
train, package, score, serve) are declared in its own ``pyproject.toml`` exactly as a
user's package declares its own::

    [project.entry-points."mlv.kinds"]
    featurize = "my_pkg.kinds:FEATURIZE"     # FEATURIZE = Kind("featurize", inputs=("data",), ...)

A kind says which of its settings name input paths (they join the stage's deps, so the
stage waits for whatever writes them) and which name outputs, and which function a
worker runs, in the stage's own process, to carry it out. The registry is read only
when a pipeline uses ``kind:`` (reading entry points costs milliseconds ``mlv status``
should not pay otherwise).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from mlv.storage.errors import UsageError

GROUP = "mlv.kinds"


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    inputs: tuple[str, ...] = ()  # settings that name input paths: the stage's deps
    outputs: tuple[str, ...] = ()  # settings that name output paths: the stage's outs
    run: str | None = None  # "package.module:function" a worker calls; None: mlv cannot run it yet


# Built-in kinds, registered through mlv's own entry points (their runners arrive with the ML stage kinds).
LABEL = Kind("label", inputs=("data",))
TRAIN = Kind("train", inputs=("data",))
PACKAGE = Kind("package", inputs=("model",))
SCORE = Kind("score", inputs=("data", "package"))
SERVE = Kind("serve", inputs=("package",))


class Registry(Mapping[str, tuple[str, ...]]):
    """Kind name -> the settings that name its inputs (what the pipeline schema needs); ``kind(name)`` for the
    whole ``Kind``. Entry points are read on first use."""

    def __init__(self) -> None:
        self._kinds: dict[str, Kind] | None = None

    def kind(self, name: str) -> Kind:
        return self._load()[name]

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return self._load()[name].inputs

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def _load(self) -> dict[str, Kind]:
        if self._kinds is None:
            from importlib import metadata  # ~0.1 s to import: only for pipelines that use kind:

            found: dict[str, Kind] = {}
            for entry in metadata.entry_points(group=GROUP):
                where = f"entry point '{entry.name} = {entry.value}' (group {GROUP}, from {_dist(entry)})"
                try:
                    kind = entry.load()
                except Exception as exc:  # noqa: BLE001 - a broken plugin is named, not a traceback
                    raise UsageError(f"stage kind from {where} cannot be loaded: {exc!r}; fix or uninstall that "
                                     "package") from exc
                if not isinstance(kind, Kind) or kind.name != entry.name:
                    raise UsageError(f"{where} must name a mlv.pipelines.kinds.Kind called '{entry.name}'")
                found.setdefault(kind.name, kind)
            self._kinds = found
        return self._kinds


def _dist(entry) -> str:
    dist = getattr(entry, "dist", None)
    return f"{dist.metadata['Name']} {dist.version}" if dist is not None else "an installed package"
