"""Make the example's data (run once; the CSVs are committed): three months of synthetic customer records,
a person's labels for some of them, and a fourth month of new customers to score.

    python src/generate.py data/raw labels/human.csv data/incoming
"""

import csv
import pathlib
import sys

import numpy as np

out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(2026)
REGIONS = ["north", "south", "east", "west"]
truth = []
for month in (1, 2, 3):
    rows = []
    for i in range(300):
        region = REGIONS[rng.integers(4)]
        tenure = int(rng.integers(1, 73))
        charges = round(float(rng.uniform(15, 120)), 2)
        calls = int(rng.poisson(1.2))
        login = int(rng.exponential(20))
        logit = -1.2 + 0.035 * (charges - 60) - 0.04 * (tenure - 36) + 0.45 * calls + 0.03 * login \
            + (0.6 if region == "west" else 0)
        churn = int(rng.random() < 1 / (1 + np.exp(-logit)))
        cancel = int(churn and rng.random() < 0.35) or int(not churn and rng.random() < 0.03)
        rows.append([f"C2026{month:02d}{i:04d}", region, tenure, charges, calls, login, cancel])
        truth.append((rows[-1][0], churn))
    with open(out / f"customers-2026-{month:02d}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", "region", "tenure_months", "monthly_charges", "support_calls",
                    "days_since_login", "cancel_requested"])
        w.writerows(rows)
# a person labeled a few customers by hand (every 25th, answers from the ground truth)
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "label", "annotator", "time"])
    for cid, churn in truth[::25]:
        w.writerow([cid, churn, "ana", "2026-04-02T10:00:00Z"])
# a fourth month: new customers, to score with the packaged model (drawn after the rest: months 1-3 stay as they were)
incoming = pathlib.Path(sys.argv[3])
incoming.mkdir(parents=True, exist_ok=True)
with open(incoming / "customers-2026-04.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "region", "tenure_months", "monthly_charges", "support_calls", "days_since_login",
                "cancel_requested"])
    for i in range(300):
        w.writerow([f"C202604{i:04d}", REGIONS[rng.integers(4)], int(rng.integers(1, 73)),
                    round(float(rng.uniform(15, 120)), 2), int(rng.poisson(1.2)), int(rng.exponential(20)),
                    int(rng.random() < 0.1)])
