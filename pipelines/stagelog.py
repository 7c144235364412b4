"""``mlv.api.log_metric`` / ``log_plot``: a running stage writes its declared metrics and plots files.

``mlv run`` starts every stage with ``MLV_STAGE`` (its name), ``MLV_RUN_ID`` and ``MLV_ROOT``
(the repo root) in the environment (``engine.execute``); the stage's ``metrics:`` and ``plots:``
paths come from ``mlv.yaml`` there, so code never repeats them. A stage's outputs are cleared
before it runs, so each run starts from empty files.

- ``log_metric(name, value)`` sets ``name`` in the stage's first metrics file (JSON or YAML by its
  extension; ``file=`` picks another declared one). The file always holds the latest value.
- With ``step``, the file also records ``step`` (as DVCLive does), and the history goes to the
  plots file the stage declares for that metric — the one whose name, without extension, is the
  metric's (``plots: [plots/loss.tsv]`` for ``loss``) — one row ``{step, name: value}`` per call.
  A step with no such plots file is an error: history that is not a declared output would not be
  versioned, so it is refused rather than dropped.
- ``log_plot(name, rows)`` appends records to the declared plots file ``name`` (its path, or its
  name without extension), as ``pipelines.plots.append_rows`` writes them.

Errors are ``StageLogError`` (a ``UsageError``): called outside a stage, a stage that declares no
such file, a value that is not a number, bool or text.
"""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path, PurePosixPath

from mlv.storage import atomic
from mlv.storage.errors import UsageError

STAGE_ENV, ROOT_ENV = "MLV_STAGE", "MLV_ROOT"


class StageLogError(UsageError):
    """``log_metric``/``log_plot`` cannot write: not in a stage, or the stage declares no such file."""


def _stage(doing: str):  # -> (root, StageSpec)
    stage = os.environ.get(STAGE_ENV)
    if not stage:
        raise StageLogError(f"{doing} works inside a stage that `mlv run` runs (it sets {STAGE_ENV}); here there is "
                            "none. Call it from the stage's code, or write the file yourself")
    root = Path(os.environ.get(ROOT_ENV) or _find_root())
    if not (root / "mlv.yaml").is_file():  # `workspace: remote`: the stage runs in a scratch copy of its deps
        raise StageLogError(f"{doing}: stage '{stage}' runs in '{root}', which has no mlv.yaml to say where its "
                            "metrics and plots go (a `workspace: remote` worker lays out only the stage's deps); "
                            "write the file yourself there, or run with `workspace: shared`")
    specs = _stages(root)
    if stage not in specs:
        raise StageLogError(f"{doing}: stage '{stage}' ({STAGE_ENV}) is not in {root / 'mlv.yaml'}")
    return root, specs[stage]


@functools.lru_cache(maxsize=4)
def _stages(root: Path) -> dict:
    """The stages of ``root/mlv.yaml``, parsed once per process: a training loop may log every step, and
    mlv.yaml does not change while its stage runs."""
    from mlv.pipelines.schema import load_pipeline

    return load_pipeline(root / "mlv.yaml", root=root).stages


def _find_root() -> Path:
    from mlv.storage.workspace import Workspace

    return Workspace.find().root


def log_metric(name: str, value: object, step: int | None = None, *, file: str | None = None) -> Path:
    """Record ``name = value`` in the running stage's metrics file; returns that file."""
    doing = f"log_metric({name!r})"
    if not isinstance(name, str) or not name:
        raise StageLogError(f"{doing}: a metric's name is a non-empty string")
    if isinstance(value, float) and not math.isfinite(value) or not isinstance(value, (int, float, str, bool)):
        raise StageLogError(f"{doing}: the value must be a finite number, a bool or text, got {value!r}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise StageLogError(f"{doing}: step must be a whole number, got {step!r}")
    root, spec = _stage(doing)
    path = _declared(spec.metrics, file, doing, spec.name, "metrics", "metrics/train.json")
    history = None
    if step is not None:
        history = next((p for p in getattr(spec, "plots", ()) if PurePosixPath(p).stem == name), None)
        if history is None:
            raise StageLogError(f"{doing}, step {step}: stage '{spec.name}' declares no plots file for '{name}' to "
                                f"keep its history; add `plots: [plots/{name}.tsv]` to the stage, or log without step")
    target = root / path
    values = _read(target, path)
    values[name] = value
    if step is not None:
        values["step"] = step
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(target, _dump(values, path))
    if history is not None:
        _append(root / history, [{"step": step, name: value}])
    return target


def log_plot(name: str, rows: list[dict] | dict) -> Path:
    """Append ``rows`` (records: column -> value) to the running stage's plots file ``name``; returns the file."""
    doing = f"log_plot({name!r})"
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, list) or not all(isinstance(r, dict) and r for r in rows):
        raise StageLogError(f"{doing}: rows are a list of records, e.g. [{{'step': 1, 'loss': 0.5}}]")
    root, spec = _stage(doing)
    plots = tuple(getattr(spec, "plots", ()))
    chosen = [p for p in plots if p == name or PurePosixPath(p).stem == name]
    if len(chosen) != 1:
        declared = ", ".join(plots) or "none"
        raise StageLogError(f"{doing}: stage '{spec.name}' declares {'several' if chosen else 'no'} plots file(s) "
                            f"named '{name}' (declared: {declared}); name one by its path, or add it under `plots:`")
    _append(root / chosen[0], rows)
    return root / chosen[0]


def _declared(paths: tuple[str, ...], file: str | None, doing: str, stage: str, field: str, example: str) -> str:
    if file is not None:
        if file not in paths:
            raise StageLogError(f"{doing}: '{file}' is not one of stage '{stage}''s {field} files "
                                f"({', '.join(paths) or 'none declared'})")
        return file
    if not paths:
        raise StageLogError(f"{doing}: stage '{stage}' declares no {field} file; add `{field}: [{example}]` to it "
                            "in mlv.yaml")
    return paths[0]


def _read(target: Path, shown: str) -> dict:
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    try:
        doc = json.loads(text) if target.suffix.lower() == ".json" else _yaml_load(text)
    except ValueError as exc:
        raise StageLogError(f"metrics file '{shown}' holds something other than metrics ({exc}); the stage wrote "
                            "it another way; let log_metric write it alone") from None
    if not isinstance(doc, dict):
        raise StageLogError(f"metrics file '{shown}' is not a mapping of names to values")
    return doc


def _yaml_load(text: str) -> object:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None


def _dump(values: dict, shown: str) -> str:
    if PurePosixPath(shown).suffix.lower() in (".yaml", ".yml"):
        import yaml

        return yaml.safe_dump(values, sort_keys=False)
    return json.dumps(values, indent=2) + "\n"


def _append(path: Path, rows: list[dict]) -> None:
    from mlv.pipelines.plots import append_rows

    path.parent.mkdir(parents=True, exist_ok=True)
    append_rows(path, rows)
