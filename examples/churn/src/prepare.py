"""Combine the monthly CSVs and split them into train/test Parquet tables."""

import argparse
import pathlib
import zlib

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

parser = argparse.ArgumentParser()
parser.add_argument("--split", type=float, required=True)
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("raw")
parser.add_argument("out")
args = parser.parse_args()

tables = [pacsv.read_csv(p) for p in sorted(pathlib.Path(args.raw).glob("*.csv"))]
table = pa.concat_tables(tables).sort_by("customer_id")
# a stable split: hash of the customer id and the seed, not row order
keys = [zlib.crc32(f"{args.seed}:{cid}".encode()) % 1000 / 1000 for cid in table.column("customer_id").to_pylist()]
is_test = pa.array([k < args.split for k in keys])
out = pathlib.Path(args.out)
out.mkdir(parents=True, exist_ok=True)
pq.write_table(table.filter(pa.compute.invert(is_test)), out / "train.parquet")
pq.write_table(table.filter(is_test), out / "test.parquet")
print(f"{table.num_rows} rows -> {out}/train.parquet, {out}/test.parquet")
