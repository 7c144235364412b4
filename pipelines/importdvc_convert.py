"""``dvc.yaml`` → the data of an equivalent ``mlv.yaml``, and a note for everything that has no equivalent.

Pure: it takes the parsed ``dvc.yaml`` (and the params files its ``vars`` name, read by the
caller) and returns plain data; ``importdvc`` writes it. Nothing is dropped silently: every
key mlv has no equivalent for becomes a :class:`Note` naming where it was and what mlv does
instead.

Mapping (DVC 3 → mlv):

- ``${name}`` → ``${params.name}`` (``${item…}`` and ``${key}`` stay); ``vars:`` mappings
  become mlv.yaml's ``params:``; a ``vars:`` file other than ``params.yaml`` is copied in.
- ``cmd``, ``wdir``, ``deps``, ``desc``, ``foreach``/``do``, ``matrix`` keep their shape.
- ``params``: names and ``{file: [keys]}`` keep their shape (names are relative to the
  stage's ``wdir``, so a bare name in a stage with a ``wdir`` becomes ``{params.yaml: [name]}``).
- ``outs``: ``cache: false`` outs go to ``metrics:`` (outputs that stay visible to git, as
  DVC's uncached outs are); ``persist``, ``checkpoint``, ``remote``, ``push`` are notes.
- ``metrics`` stay ``metrics``; ``plots`` become the stage's ``plots:`` with ``x``, ``y``,
  ``template``, ``title``, ``x_label``, ``y_label``.
- ``frozen``, ``always_changed``, ``meta``, stage ``vars``, top-level ``plots``/``metrics``/
  ``params``/``artifacts``/``datasets`` and unknown keys are notes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlv.pipelines.paramfiles import PARAMS_FILE

_EXPRESSION = re.compile(r"(?<!\\)\$\{\s*([^{}]*?)\s*\}")
_PROP_KEYS = ("x", "y", "template", "title", "x_label", "y_label")
_LOOP_ROOTS = ("item", "key")


@dataclass(frozen=True, slots=True)
class Note:
    """Something of the DVC repo that mlv does not carry over as it was: where, what, and what mlv does."""

    where: str  # e.g. "dvc.yaml: stage 'train'", "data/raw.dvc"
    what: str  # e.g. "persist: true on out 'history.log'"
    why: str

    def to_dict(self) -> dict:
        return {"where": self.where, "what": self.what, "why": self.why}

    def __str__(self) -> str:
        return f"{self.where}: {self.what} — {self.why}"


@dataclass(slots=True)
class Converted:
    """The mlv.yaml data, and what did not carry over."""

    pipeline: dict
    notes: list[Note]


def rewrite(value: object) -> object:
    """DVC's ``${name}`` as mlv's ``${params.name}``, in every string of ``value``.

    >>> rewrite(["python t.py --lr ${train.lr} ${item} ${ key }", {"a": "${x}"}])
    ['python t.py --lr ${params.train.lr} ${item} ${key}', {'a': '${params.x}'}]
    """
    if isinstance(value, str):
        def one(match: re.Match) -> str:
            name = match.group(1)
            root = re.split(r"[.\[]", name, maxsplit=1)[0]
            return f"${{{name}}}" if root in _LOOP_ROOTS else f"${{params.{name}}}"
        return _EXPRESSION.sub(one, value)
    if isinstance(value, list):
        return [rewrite(v) for v in value]
    if isinstance(value, dict):
        return {k: rewrite(v) for k, v in value.items()}
    return value


def convert(dvc: dict, *, var_files: dict[str, dict]) -> Converted:
    """The mlv.yaml data of ``dvc`` (a parsed dvc.yaml); ``var_files``: the ``vars:`` files' contents by name."""
    notes: list[Note] = []
    params: dict = {}
    for key in dvc:
        if key not in ("stages", "vars"):
            why = {"plots": "mlv declares plots on the stage that writes them (`plots:`); add them there",
                   "metrics": "mlv reads metrics from the stages' `metrics:`; declare the file on its stage",
                   "params": "mlv reads params.yaml and the files stages name in `params:`",
                   "artifacts": "mlv has no model registry entries; the files stay tracked as data or outputs",
                   "datasets": "mlv has no dataset declarations; track the data with `mlv add`"}
            notes.append(Note("dvc.yaml", f"top-level '{key}'", why.get(key, "mlv has no such top-level key")))
    for entry in _as_list(dvc.get("vars")):
        params.update(_var(entry, var_files, notes))
    stages = {}
    for name, body in (dvc.get("stages") or {}).items():
        stages[str(name)] = _stage(str(name), body, notes)
    pipeline: dict = {}
    if params:
        pipeline["params"] = params
    pipeline["stages"] = stages
    return Converted(pipeline, notes)


def var_file_names(dvc: dict) -> list[str]:
    """The files ``vars:`` names, besides the default ``params.yaml`` (``file.yaml:key,key`` → ``file.yaml``).

    >>> var_file_names({"vars": ["params.yaml", "conf.yaml:a,b", {"x": 1}]})
    ['conf.yaml']
    """
    found = []
    for entry in _as_list(dvc.get("vars")):
        if isinstance(entry, str) and entry.split(":", 1)[0] != PARAMS_FILE:
            found.append(entry.split(":", 1)[0])
    return found


def _var(entry: object, var_files: dict[str, dict], notes: list[Note]) -> dict:
    if isinstance(entry, dict):
        return dict(entry)
    if not isinstance(entry, str):
        notes.append(Note("dvc.yaml", f"vars entry {entry!r}", "not a mapping or a file name; left out"))
        return {}
    file, _, keys = entry.partition(":")
    if file == PARAMS_FILE:
        return {}  # mlv reads params.yaml beside mlv.yaml as DVC does
    data = var_files.get(file) or {}
    chosen = {k: data[k] for k in keys.split(",") if k in data} if keys else dict(data)
    notes.append(Note("dvc.yaml", f"vars file '{file}'", "its values are copied into mlv.yaml's `params:` (mlv "
                      "interpolates only params.yaml and `params:`); edit them there from now on"))
    return chosen


def _stage(name: str, body: object, notes: list[Note]) -> dict:
    where = f"dvc.yaml: stage '{name}'"
    if not isinstance(body, dict):
        notes.append(Note(where, "the stage", f"is not a mapping ({body!r}); mlv.yaml will refuse it"))
        return body  # the generated mlv.yaml then fails to load, naming the stage
    if "foreach" in body:
        out = {"foreach": rewrite(body["foreach"]), "do": _body(body.get("do") or {}, where, notes)}
        for key in body:
            if key not in ("foreach", "do"):
                notes.append(Note(where, f"'{key}' beside 'foreach'", "left out; DVC puts a foreach stage's keys "
                                  "in 'do:'"))
        return out
    if "matrix" in body:
        return {"matrix": rewrite(body["matrix"]), **_body({k: v for k, v in body.items() if k != "matrix"},
                                                           where, notes)}
    return _body(body, where, notes)


def _body(body: dict, where: str, notes: list[Note]) -> dict:
    out: dict = {}
    wdir = body.get("wdir")
    metrics: list = []
    for key, value in body.items():
        if key in ("cmd", "wdir", "desc"):
            out[key] = rewrite(value)
        elif key == "deps":
            out["deps"] = [d for d in _as_list(rewrite(value)) if _local(d, "dep", where, notes)]
        elif key == "params":
            out["params"] = _params(_readable_params(rewrite(value), where, notes), wdir)
        elif key == "outs":
            out["outs"] = _outs(rewrite(value), where, notes, metrics)
        elif key == "metrics":
            metrics[:0] = [_path_of(m, "metric", where, notes) for m in _as_list(rewrite(value))]
        elif key == "plots":
            out["plots"] = [_plot(p, where, notes) for p in _as_list(rewrite(value))]
        elif key == "frozen":
            if value:
                notes.append(Note(where, "frozen: true", "mlv has no frozen stages: it runs this one when its "
                                  "deps, params or command change (`mlv run STAGE` runs only chosen stages)"))
        elif key == "always_changed":
            if value:
                notes.append(Note(where, "always_changed: true", "mlv runs a stage only when its inputs change; "
                                  "`mlv run --force STAGE` runs it anyway"))
        elif key == "meta":
            notes.append(Note(where, "meta", "mlv keeps no free-form stage metadata; use `desc:` or a comment"))
        elif key == "vars":
            notes.append(Note(where, "stage-level vars", "left out: mlv interpolates only params.yaml and "
                              "`params:`; move these values there"))
        else:
            notes.append(Note(where, f"key '{key}'", "mlv stages have no such key; left out"))
    if metrics:
        out["metrics"] = [m for m in metrics if m is not None]
    out["outs"] = [o for o in out.get("outs", []) if o is not None]
    if not out["outs"]:
        del out["outs"]
    return out


def _params(value: object, wdir: object) -> object:
    if not isinstance(value, list) or not wdir or wdir == ".":
        return value
    names = [v for v in value if isinstance(v, str)]
    files = [v for v in value if not isinstance(v, str)]
    return ([{PARAMS_FILE: names}] if names else []) + files  # DVC reads bare names from wdir's params.yaml


def _local(path: object, role: str, where: str, notes: list[Note]) -> bool:
    if isinstance(path, str) and "://" in path:
        notes.append(Note(where, f"{role} '{path}'", "a URL: mlv stages read files in the repo; left out (fetch it "
                          "in a stage of its own, or `mlv add` a copy)"))
        return False
    return True


def _readable_params(value: object, where: str, notes: list[Note]) -> object:
    """Entries naming TOML or Python params files are left out with a note: mlv reads YAML and JSON only."""
    if not isinstance(value, list):
        return value
    kept = []
    for entry in value:
        if isinstance(entry, dict):
            files = {f: k for f, k in entry.items() if str(f).endswith((".yaml", ".yml", ".json"))}
            for file in sorted(set(map(str, entry)) - set(map(str, files))):
                notes.append(Note(where, f"params file '{file}'", "mlv reads params from YAML and JSON files only; "
                                  "left out, so changing it does not rerun the stage"))
            entry = files or None
        if entry is not None:
            kept.append(entry)
    return kept


def _outs(value: object, where: str, notes: list[Note], metrics: list) -> list:
    found = []
    for entry in _as_list(value):
        path = _path_of(entry, "out", where, notes)
        if path is None:
            continue
        props = next(iter(entry.values())) if isinstance(entry, dict) else None
        props = props if isinstance(props, dict) else {}
        if props.get("cache") is False:
            metrics.append(path)
            notes.append(Note(where, f"cache: false on out '{path}'", "declared under `metrics:`: mlv's outputs "
                              "that stay visible to git (mlv also stores a copy, as it stores every output)"))
        else:
            found.append(path)
        if props.get("persist"):
            notes.append(Note(where, f"persist: true on out '{path}'", "mlv removes a stage's outputs before it "
                              "runs: the next run starts without the old content"))
        for key in sorted(set(props) - {"cache", "persist", "desc", "type", "labels"}):
            notes.append(Note(where, f"'{key}' on out '{path}'", "mlv outs have no such setting; left out"
                              + (" (remotes are set with `mlv remote add`)" if key in ("remote", "push") else "")))
        for key in sorted(set(props) & {"desc", "type", "labels"}):
            notes.append(Note(where, f"'{key}' on out '{path}'", "mlv keeps no annotations on outs; left out"))
    return found


def _plot(entry: object, where: str, notes: list[Note]) -> object:
    path = _path_of(entry, "plot", where, notes)
    props = next(iter(entry.values())) if isinstance(entry, dict) else None
    if not isinstance(props, dict):
        return path
    kept = {k: v for k, v in props.items() if k in _PROP_KEYS and isinstance(v, str)}
    for key in sorted(set(props) - set(kept) - {"cache"}):
        notes.append(Note(where, f"'{key}' on plot '{path}'", "mlv plots take x, y, template, title, x_label, "
                          "y_label only; left out"))
    return {path: kept} if kept else path


def _path_of(entry: object, role: str, where: str, notes: list[Note]) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and len(entry) == 1 and isinstance(next(iter(entry)), str):
        return next(iter(entry))
    notes.append(Note(where, f"{role} {entry!r}", "not a path or {path: settings}; left out"))
    return None


def _as_list(value: object) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
