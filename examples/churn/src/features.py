"""Feature engineering (a `call:` stage): the labeled customers, plus charges per month of tenure."""

import pathlib

import pyarrow.compute as pc
import pyarrow.parquet as pq


def build(deps, outs, params):
    table = pq.read_table(deps[0])
    table = table.filter(pc.is_valid(table["label"]))  # only what is labeled trains a model
    per_month = pc.divide(table["monthly_charges"], pc.add(table["tenure_months"], 1.0))
    table = table.append_column("charges_per_tenure", per_month)
    pathlib.Path(outs[0]).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, outs[0])
    print(f"{table.num_rows} labeled customers, {table.num_columns} columns -> {outs[0]}")


def incoming(deps, outs, params):
    """Next month's customers (CSV files), with the same derived feature: what the model will score."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pa.concat_tables([pacsv.read_csv(p) for p in sorted(pathlib.Path(deps[0]).glob("*.csv"))])
    per_month = pc.divide(table["monthly_charges"], pc.add(table["tenure_months"], 1.0))
    table = table.append_column("charges_per_tenure", per_month)
    pathlib.Path(outs[0]).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, outs[0])
    print(f"{table.num_rows} new customers -> {outs[0]}")
