"""The stage-kind registry: what ``kind: NAME`` in ``mlv.yaml`` means.

A kind is a stage written as settings instead of code. Kinds register through the entry
point group ``mlv.kinds``: each entry point names a ``Kind``. mlv's built-in kinds (label,
train, package, select, ...) are declared in its own ``pyproject.toml`` exactly as a user's
package declares its own::

    [project.entry-points."mlv.kinds"]
    featurize = "my_pkg.kinds:FEATURIZE"

    # my_pkg/kinds.py
    FEATURIZE = Kind("featurize", inputs=("data",), outputs=("out",), keys=("columns",),
                     required=("data", "out"), run="my_pkg.featurize:run")

A kind declares every setting it accepts — which name input paths (they join the stage's
deps, so it waits for whatever writes them), which name outputs (outs) and metrics files,
and which are plain values — so ``mlv.yaml`` errors name the file, line and column with
the nearest valid key. A dotted name (``review.out``) is a path inside a mapping setting.
``device: gpu`` asks for a GPU worker, as ``resources: {gpu: 1}`` does.

Two functions, both named ``package.module:function`` and imported only when needed:

- ``check(settings)`` runs whenever the pipeline is read (``status`` too), so it must be
  cheap: the shape of the values, no imports of heavy libraries, no file reads. It raises
  :class:`SettingError` naming the setting.
- ``run(settings, stage)`` carries the stage out, in the stage's own child process on a
  worker, with the stage's ``wdir`` as working directory (paths in ``settings`` are as the
  user wrote them, relative to it). ``stage`` is plain data: ``name``, ``file``, ``line``,
  ``run_id``, ``gpu`` (a device is pinned for it), ``wdir`` (relative to the repo root), and
  ``inputs``: for each input path (relative to the repo root) its ``digest`` and the ``run``
  that produced it (or None for added data) — ``input_of(stage, path)`` looks one up. A :class:`SettingError` it raises fails the stage with one message (no
  traceback) naming the stage, the setting and the line; anything else fails it with the
  traceback.
- ``preflight(settings, stage)`` (optional) runs in ``mlv run``'s own process before any
  stage starts, for the checks that need imports or file reads (does the estimator import,
  does the target column exist). ``stage`` has ``name``, ``root`` and ``wdir`` (absolute)
  and ``produced``: the repo-relative outputs of every stage of the pipeline — inputs
  under those may not exist yet and are checked by ``run``. A :class:`SettingError` is
  exit 2, naming the stage, the setting and the line, before anything changed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from mlv.storage.errors import UsageError

GROUP = "mlv.kinds"


class SettingError(Exception):
    """A kind's setting is wrong: ``key`` is the setting (``split.test`` or ``("rules", 1)`` for an item)."""

    def __init__(self, key: str | tuple, message: str) -> None:
        super().__init__(message)
        self.key = tuple(key.split(".")) if isinstance(key, str) else tuple(key)
        self.message = message
        self.mlv_setting = ".".join(map(str, self.key))  # what callstage.py looks for (it imports nothing of mlv)


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    inputs: tuple[str, ...] = ()  # settings that name input paths (a path or a list): the stage's deps
    outputs: tuple[str, ...] = ()  # settings that name output paths: the stage's outs
    metrics: tuple[str, ...] = ()  # settings that name metrics files: outs that stay visible to git
    keys: tuple[str, ...] = ()  # every other setting it accepts (plain values)
    required: tuple[str, ...] = ()  # settings that must be given
    check: str | None = None  # "package.module:function"(settings) -> None, raising SettingError
    run: str | None = None  # "package.module:function"(settings, stage) run in the stage's process
    preflight: str | None = None  # "package.module:function"(settings, stage) run by `mlv run` before any stage

    def check_before_run(self, settings: dict, stage: dict) -> None:
        """Its ``preflight``, if it has one (``mlv run`` calls this before any stage starts)."""
        if self.preflight is not None:
            load(self.preflight)(settings, stage)

    @property
    def settings(self) -> tuple[str, ...]:
        """Every top-level setting name it accepts, in declaration order."""
        names = (*self.inputs, *self.outputs, *self.metrics, *self.keys, *self.required)
        return tuple(dict.fromkeys(name.split(".")[0] for name in names))


# Built-in kinds, registered through mlv's own entry points. Their code lives in modules of
# their own, imported only in the stage's process (scikit-learn and pyarrow are not mlv's to pay).
LABEL = Kind("label", inputs=("data", "rules", "human", "model"), outputs=("out", "review.out"),
             keys=("id", "review"), required=("data", "out"),
             check="mlv.pipelines.label:check", run="mlv.pipelines.label:run",
             preflight="mlv.pipelines.label:preflight")
TRAIN = Kind("train", inputs=("data", "eval"), outputs=("out",), metrics=("metrics",),
             keys=("estimator", "params", "target", "features", "id", "split", "device", "trusted"),
             required=("estimator", "data", "target", "out"),
             check="mlv.pipelines.train:check", run="mlv.pipelines.train:run",
             preflight="mlv.pipelines.train:preflight")
PACKAGE = Kind("package", inputs=("model", "data"), outputs=("out",), required=("model", "data", "out"),
               check="mlv.pipelines.package:check", run="mlv.pipelines.package:run",
               preflight="mlv.pipelines.package:preflight")
SELECT = Kind("select", inputs=("models",), outputs=("out",), keys=("metric", "mode"),
              required=("models", "metric", "out"), check="mlv.pipelines.selection:check",
              run="mlv.pipelines.selection:run", preflight="mlv.pipelines.selection:preflight")
SCORE = Kind("score", inputs=("package", "data"), outputs=("out",), required=("package", "data", "out"),
             check="mlv.pipelines.score:check", run="mlv.pipelines.score:run", preflight="mlv.pipelines.score:preflight")


def input_of(stage: dict, path: str) -> dict:
    """``{"digest", "run"}`` of the input a setting names (``path`` as written, relative to the stage's wdir);
    both None for a path that is not one of the stage's inputs."""
    import posixpath

    key = posixpath.normpath(posixpath.join(stage.get("wdir") or ".", path))
    return (stage.get("inputs") or {}).get(key) or {"digest": None, "run": None}


def load(ref: str):
    """The function ``package.module:function`` names (imported now)."""
    import importlib

    module, _, qualname = ref.partition(":")
    found = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


class Registry(Mapping[str, Kind]):
    """Kind name -> ``Kind``; entry points are read on first use."""

    def __init__(self) -> None:
        self._kinds: dict[str, Kind] | None = None

    def __getitem__(self, name: str) -> Kind:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def _load(self) -> dict[str, Kind]:
        if self._kinds is None:
            from importlib import (
                metadata,  # ~0.1 s to import: only for pipelines that use kind:
            )

            found: dict[str, Kind] = {}
            for entry in metadata.entry_points(group=GROUP):
                where = f"entry point '{entry.name} = {entry.value}' (group {GROUP}, from {_dist(entry)})"
                try:
                    kind = entry.load()
                except Exception as exc:
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
