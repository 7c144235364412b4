"""Turn a churn table into a feature matrix and labels."""

import numpy as np
import pyarrow.parquet as pq

REGIONS = ["north", "south", "east", "west"]


def load(path):
    table = pq.read_table(path).to_pydict()
    region = np.array([[r == name for name in REGIONS] for r in table["region"]], dtype=float)
    numeric = np.column_stack([table["tenure_months"], table["monthly_charges"], table["support_calls"]])
    return np.hstack([numeric, region]), np.array(table["churned"])
