"""Tables the built-in kinds read and write: Parquet (a file or a directory of partitions) or CSV.

One way in and one way out, so every kind agrees on what a table path means: a ``.csv``
file is CSV, anything else is Parquet, and a directory is its ``.parquet``/``.csv`` files in
name order (hidden files and mlv's temp files skipped). pyarrow is imported here, in the
stage's process, never by the CLI.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

SUFFIXES = (".parquet", ".pq", ".csv")


class TableError(ValueError):
    """A table cannot be read or written; the message names the path."""


def partitions(path: str | os.PathLike) -> list[Path]:
    """The files a table path stands for, in order."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not found:
            raise TableError(f"{path}/ holds no .parquet or .csv files")
        return found
    if not path.exists():
        raise TableError(f"{path} does not exist")
    return [path]


def read(path: str | os.PathLike) -> pa.Table:
    """The whole table at ``path`` (partitions concatenated; their schemas must agree)."""
    parts = [read_file(p) for p in partitions(path)]
    try:
        return pa.concat_tables(parts, promote_options="default") if len(parts) > 1 else parts[0]
    except pa.ArrowInvalid as exc:
        raise TableError(f"the partitions of {path} do not share one schema: {exc}") from exc


def read_file(path: Path) -> pa.Table:
    try:
        if path.suffix.lower() == ".csv":
            from pyarrow import csv

            return csv.read_csv(path)
        import pyarrow.parquet as pq

        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TableError(f"{path} cannot be read as a {'CSV' if path.suffix.lower() == '.csv' else 'Parquet'} "
                         f"table: {exc}") from exc


def write(table: pa.Table, path: str | os.PathLike) -> None:
    """Write ``table`` to ``path``: CSV for ``.csv``, else one Parquet file (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        from pyarrow import csv

        csv.write_csv(table, path)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, path)
