"""Combine the monthly CSVs into one Parquet table of customers."""

import pathlib
import sys

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

raw, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
table = pa.concat_tables([pacsv.read_csv(p) for p in sorted(raw.glob("*.csv"))]).sort_by("customer_id")
out.parent.mkdir(parents=True, exist_ok=True)
pq.write_table(table, out)
print(f"{table.num_rows} customers from {len(list(raw.glob('*.csv')))} files -> {out}")
