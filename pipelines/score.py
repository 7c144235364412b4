"""``kind: score`` and ``mlv score``: a model package applied to a table, partition by partition, on Dask.

Settings: ``package`` (in: a package directory), ``data`` (in: a Parquet file or a directory
of partitions; CSV reads too), ``out`` (out: a directory). ``out`` receives one Parquet file
per input partition, in input order (``part-00000.parquet``, ``part-00001.parquet``, …), with::

    prediction       what the model predicts (the package's ``predict``)
    proba_<class>    float64, one per class, for classifiers that give probabilities
    mlv_package      string: the package's digest (of its directory, as mlv.lock records it)
    mlv_input        string: the digest of the input partition file (as a manifest or mlv.lock records it)
    mlv_row          int64: the row's number in that partition file, from 0

Invariants:
- Nothing is written before the input fits the package: every partition's schema (its
  Parquet footer) is checked against ``input_schema`` first, in ``mlv run``'s own process too
  (``preflight``) when neither input is made by a stage of the run. A missing or mistyped
  column is a ``SettingError`` on ``data`` naming the column and the partition.
- Memory stays bounded whatever the input's size: a partition is read ``BATCH_ROWS`` rows at
  a time (4x that for all-numeric features; its feature columns only), each batch scored and appended to its output file, and
  at most one batch per worker is in memory.
- The package is loaded and verified once per process, and must be the version the engine
  planned with (the stage's input digest); Dask's threaded scheduler shares it between its
  ``workers`` (the CPUs the stage may use), one task per partition.

``mlv score PACKAGE INPUT OUTPUT`` (``score_outside``) runs the same kind as a one-stage run
of the engine's own runner, named ``score:OUTPUT``: the same run record, stored outputs and
run cache as a pipeline stage, but no entry in ``mlv.lock`` (it is not a stage of ``mlv.yaml``).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mlv.pipelines.kinds import SettingError, input_of
from mlv.storage.errors import MlvError, UsageError

BATCH_ROWS = 16_384  # rows per batch: with object features a batch costs ~2 KB a row while it is scored
PROVENANCE = ("mlv_package", "mlv_input", "mlv_row")


def check(settings: dict) -> None:
    """Each of ``package``, ``data`` and ``out`` names one path."""
    for key in ("package", "data", "out"):
        if not isinstance(settings.get(key), str):
            raise SettingError(key, f"must be one path, got {settings.get(key)!r}")


def part_name(index: int) -> str:
    """The output file of input partition ``index``.

    >>> part_name(3)
    'part-00003.parquet'
    """
    return f"part-{index:05d}.parquet"


# -- the input against the package ------------------------------------------------------------


def input_schema(package_dir: str | os.PathLike, *, shown: str, key: str = "package") -> dict:
    """``input_schema`` of the ``package.yaml`` in ``package_dir`` (written ``shown``; read, not verified: ``run``
    verifies)."""
    import yaml
    from mlv.pipelines.package import PACKAGE_FILE

    path = Path(package_dir) / PACKAGE_FILE
    where = f"{shown.rstrip('/')}/{PACKAGE_FILE}"
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingError(key, f"'{shown}' is not a model package: it holds no {PACKAGE_FILE}; name the "
                           "'out' of a package stage") from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SettingError(key, f"{where} cannot be read: {exc}") from None
    schema = meta.get("input_schema") if isinstance(meta, dict) else None
    if not isinstance(schema, dict) or not schema:
        raise SettingError(key, f"{where} has no input_schema; rebuild the package with a package stage")
    return {str(k): str(v) for k, v in schema.items()}


def check_input(data: Path, parts: list[Path], schema: dict, *, where: str) -> None:
    """Every partition of ``data`` (written ``where``) has every column of ``schema`` with a compatible type;
    ``SettingError`` on ``data`` naming the column and the partition."""
    from mlv.pipelines.package import compatible

    for part in parts:
        found = _schema(part)
        name = where if part == data else f"{where.rstrip('/')}/{part.relative_to(data).as_posix()}"
        for column, expected in schema.items():
            if column not in found.names:
                raise SettingError("data", f"column '{column}' is missing from {name}; the package needs "
                                   f"{', '.join(schema)}")
            actual = str(found.field(column).type)
            if not compatible(expected, actual):
                raise SettingError("data", f"column '{column}' of {name} is {actual}, but the package expects "
                                   f"{expected}")


def _schema(part: Path):
    import pyarrow as pa

    try:
        if part.suffix.lower() == ".csv":
            from pyarrow import csv

            with csv.open_csv(part) as reader:
                return reader.schema
        import pyarrow.parquet as pq

        return pq.read_schema(part)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SettingError("data", f"{part} cannot be read as a table: {exc}") from None


def _partitions(data: str | os.PathLike) -> list[Path]:
    from mlv.pipelines import tables

    try:
        return tables.partitions(data)
    except tables.TableError as exc:
        raise SettingError("data", str(exc)) from None


# -- the stage ----------------------------------------------------------------------------------


def preflight(settings: dict, stage: dict) -> None:
    """Before anything runs: when no stage of the run makes the package or the data, they must fit now."""
    from mlv.pipelines.package import _produced

    wdir, root = Path(stage["wdir"]), Path(stage["root"])
    paths = {key: wdir / settings[key] for key in ("package", "data")}
    if any(_produced(root, p, stage.get("produced", ())) for p in paths.values()):
        return  # run() checks what an upstream stage writes
    if not paths["package"].exists():
        raise SettingError("package", f"'{settings['package']}' does not exist; name the 'out' of a package stage")
    schema = input_schema(paths["package"], shown=settings["package"])
    if paths["data"].exists():
        check_input(paths["data"], _partitions(paths["data"]), schema, where=settings["data"])


def run(settings: dict, stage: dict) -> None:
    """Verify the package, check the input, then score every partition into ``out``."""
    from mlv.pipelines.packages import PackageError, load_package

    parts = _partitions(settings["data"])
    try:
        package = load_package(settings["package"])
    except PackageError as exc:  # changed bytes or an untrusted type: one message, exit 1
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    planned = input_of(stage, settings["package"])["digest"]
    if planned is not None and planned != package.digest:
        print(f"error: package '{settings['package']}' is {package.digest}, but the run planned with {planned}; "
              "it changed while the run was on. Run again", file=sys.stderr)
        raise SystemExit(1)
    check_input(Path(settings["data"]), parts, package.meta["input_schema"], where=settings["data"])
    workers = max(1, min(int(stage.get("cpus") or _cpus()), len(parts)))
    began = time.perf_counter()
    rows = score_all(package, parts, Path(settings["out"]), workers=workers)
    seconds = time.perf_counter() - began
    print(f"scored {rows} rows of {len(parts)} partition(s) with {workers} Dask worker thread(s) in {seconds:.3f} s "
          f"({rows / seconds if seconds else 0:.0f} rows/s)")


def score_all(package, parts: list[Path], out: Path, *, workers: int) -> int:
    """Score ``parts`` into ``out/part-NNNNN.parquet`` with Dask's threaded scheduler; returns the row count."""
    import dask
    import dask.threaded
    from threadpoolctl import threadpool_limits

    out.mkdir(parents=True, exist_ok=True)
    tasks = [dask.delayed(score_partition, pure=False)(package, part, out / part_name(i))
             for i, part in enumerate(parts)]
    with threadpool_limits(limits=max(1, _cpus() // workers)):  # BLAS threads x Dask threads <= CPUs
        # the threaded scheduler by function: by name, dask imports distributed (~0.3 s) to look for a client
        counts = dask.compute(*tasks, scheduler=dask.threaded.get, num_workers=workers)
    return sum(counts)


def score_partition(package, source: Path, target: Path) -> int:
    """Score one input file into ``target``, ``BATCH_ROWS`` rows at a time; returns its row count."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from mlv.storage.store import digest as digests

    partition = str(digests.of_file(source)[0])
    values = (pa.array([package.digest]), pa.array([partition]))
    writer, start = None, 0
    try:
        for batch in _batches(source, package.features, _batch_rows(package)):
            if batch.num_rows == 0:
                continue
            scored = predict(package, batch)
            n = scored.num_rows
            same = pa.array(np.zeros(n, dtype=np.int32))  # one value repeated: written as a dictionary, no copies
            table = pa.Table.from_arrays(
                [*scored.columns, pa.DictionaryArray.from_arrays(same, values[0]),
                 pa.DictionaryArray.from_arrays(same, values[1]),
                 pa.array(np.arange(start, start + n, dtype=np.int64))],
                names=[*scored.column_names, *PROVENANCE])
            if writer is None:  # dictionaries where values repeat; random floats are not worth trying. No Arrow
                # schema stored: the digests read back as plain strings, not dictionaries
                repeat = [c for c in table.column_names if c in PROVENANCE[:2] or c == "prediction"
                          and package.task == "classification"]
                writer = pq.ParquetWriter(target, table.schema, use_dictionary=repeat, store_schema=False)
            elif table.schema != writer.schema:
                table = table.cast(writer.schema)
            writer.write_table(table)
            start += n
        if writer is None:  # no rows: an empty file with the columns a scored one has
            pq.write_table(_empty(package), target, store_schema=False)
    finally:
        if writer is not None:
            writer.close()
    return start


def predict(package, batch):
    """``package.predict(batch)``: one pass of the model for the classifiers whose prediction is their most
    probable class (``Package.predict``)."""
    return package.predict(batch)


def _batch_rows(package) -> int:
    """Rows per batch: ``BATCH_ROWS``, four times that when every feature is a number (a float matrix, no objects)."""
    from mlv.pipelines.package import family

    numeric = all(family(t) in ("numeric", "boolean") for t in package.meta["input_schema"].values())
    return 4 * BATCH_ROWS if numeric else BATCH_ROWS


def _batches(source: Path, columns: list[str], rows: int):
    """The feature columns of ``source`` as record batches of at most ``BATCH_ROWS`` rows (CSV: by block)."""
    if source.suffix.lower() == ".csv":
        from pyarrow import csv

        with csv.open_csv(source, convert_options=csv.ConvertOptions(include_columns=columns)) as reader:
            yield from reader
        return
    import pyarrow.parquet as pq

    with pq.ParquetFile(source) as f:
        yield from f.iter_batches(batch_size=rows, columns=columns)


def _empty(package):
    import pyarrow as pa

    classification = package.task == "classification"
    classes = package.classes if classification else None
    fields = [pa.field("prediction", pa.array(classes).type if classes else pa.float64())]
    if classification and hasattr(package.model, "predict_proba"):
        from mlv.pipelines.packages import _plain

        found = getattr(package.model, "classes_", None)
        fields += [pa.field(f"proba_{_plain(c)}", pa.float64()) for c in (found if found is not None else classes)]
    fields += [pa.field("mlv_package", pa.string()), pa.field("mlv_input", pa.string()),
               pa.field("mlv_row", pa.int64())]
    return pa.schema(fields).empty_table()


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# -- mlv score: the same kind outside a pipeline --------------------------------------------------


class ScoreFailed(MlvError):
    """``mlv score`` ran and failed (a package that fails verification, a model that raised): exit 1."""


@dataclass(frozen=True, slots=True)
class Scored:
    output: str
    state: str  # done | cached (restored from an earlier run with the same fingerprint)
    run_id: str
    package: dict  # {path, digest}
    input: dict  # {path, digest}
    digest: str  # of the output directory
    partitions: int
    rows: int

    def to_dict(self) -> dict:
        return {"output": self.output, "state": self.state, "run_id": self.run_id, "package": self.package,
                "input": self.input, "digest": self.digest, "partitions": self.partitions, "rows": self.rows}


def score_outside(ws, package: str, data: str, out: str, *, force: bool = False) -> Scored:
    """``mlv score``: run the score kind on paths given on the command line (relative to the working directory).

    Raises:
        UsageError: a path outside the repo or missing, a package path that holds no package, an input that does
            not fit it, or an output that a stage of mlv.yaml owns (exit 2; nothing was written).
        ScoreFailed: the scoring ran and failed, e.g. the package fails verification (exit 1).
    """
    from mlv.engine.cluster import FILE as CLUSTER_FILE
    from mlv.engine.cluster import load_config
    from mlv.engine.dag import StageSpec, build_graph
    from mlv.engine.records import RunIndex
    from mlv.engine.runlock import RunLock
    from mlv.engine.runner import Runner
    from mlv.engine.runresults import RunOptions
    from mlv.pipelines.kinds import Registry

    rels = {"package": ws.rel(ws.resolve(package)), "data": ws.rel(ws.resolve(data)),
            "out": ws.rel(ws.resolve(out, must_exist=False))}
    _refuse_overlaps(ws, rels)
    try:
        preflight(rels, {"name": f"score:{rels['out']}", "root": str(ws.root), "wdir": str(ws.root), "produced": ()})
    except SettingError as exc:
        raise UsageError(str(exc)) from None  # the message names the path
    spec = StageSpec(name=f"score:{rels['out']}", kind="score", settings=dict(rels),
                     deps=(rels["package"], rels["data"]), outs=(rels["out"],))
    graph = build_graph([spec], root=ws.root, source="mlv score")
    with RunLock(ws), ws.lock():
        runner = Runner(ws, graph, load_config(ws.root / CLUSTER_FILE), RunOptions(force=force, lock=False),
                        pipeline_stages=frozenset(), kinds=Registry())
        (result,) = runner.run()
    if result.state == "failed":
        lines = [line for line in result.log_tail.splitlines() if line.strip()]
        why = lines[-1].removeprefix("error: ") if lines else "; ".join(result.reasons) or "no output"
        raise ScoreFailed(f"scoring '{data}' with '{package}' failed (exit status {result.exit_code}): {why}. "
                          f"Full record: `mlv show {result.run_id}`")
    record = RunIndex(ws).read(result.run_id)
    files = sorted((ws.root / rels["out"]).glob("part-*.parquet"))
    return Scored(rels["out"], str(result.state), result.run_id,
                  {"path": rels["package"], "digest": record.deps[rels["package"]]},
                  {"path": rels["data"], "digest": record.deps[rels["data"]]},
                  record.outs[rels["out"]]["digest"], len(files), _rows(files))


def _refuse_overlaps(ws, rels: dict) -> None:
    """The output is neither the repo, an input, nor (inside) an output a stage of mlv.yaml owns."""
    from mlv.pipelines.project import PIPELINE_FILE
    from mlv.pipelines.schema import load_pipeline

    out = rels["out"]
    if not out:
        raise UsageError("OUTPUT is the repo root; name a directory for the predictions, e.g. predictions/batch")

    def overlap(a: str, b: str) -> bool:
        return a == b or a.startswith(b + "/") or b.startswith(a + "/")

    for key in ("package", "data"):
        if overlap(out, rels[key]):
            raise UsageError(f"OUTPUT '{out}' overlaps the {key} '{rels[key]}'; write the predictions elsewhere")
    if (ws.root / PIPELINE_FILE).exists():
        for spec in load_pipeline(ws.root / PIPELINE_FILE, root=ws.root).stages.values():
            for owned in (*spec.outs, *spec.metrics, *spec.plots):
                if overlap(out, owned):
                    raise UsageError(f"OUTPUT '{out}' overlaps '{owned}', an output of stage '{spec.name}' "
                                     f"({PIPELINE_FILE}:{spec.line}); write the predictions elsewhere")


def _rows(files: list[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in files)
