#!/usr/bin/env bash
# The quick-start job: version the example data, run the example pipeline end to end on Dask —
# label (rules + a person) -> features -> a 4-model sweep -> select -> package -> batch scoring —,
# trace a prediction back to the raw data, read the experiments table, serve the package over HTTP and
# trace an online prediction, check for drift, change a param and rerun only what it affects, bring an
# old data version back, and share everything with a teammate through a remote.
# Runs in a throwaway copy of examples/churn so this checkout stays clean.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="$here/../.venv/bin:$PATH"
work=$(mktemp -d "${TMPDIR:-/tmp}/mlv-demo.XXXXXX")
trap 'rm -rf "$work" "$work-remote" "$work-clone"' EXIT
cp -r "$here/churn/." "$work"
rm -f "$work/src/generate.py"
cd "$work"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

git init -q && git config user.email demo@mlv.local && git config user.name "mlv demo"
step mlv init
step mlv add data/raw data/incoming
step mlv dag
step mlv run
step cat models/best/selected.yaml
step mlv exp show
git add -A && git commit -qm "raw data v1, pipeline run" && echo "(committed data/raw.mlv, mlv.yaml, mlv.lock)"

# the package verifies every byte before it loads, then predicts
step python -c "
import pyarrow.parquet as pq, mlv.api
pkg = mlv.api.load_package('models/pkg')
rows = pq.read_table('data/features.parquet').slice(0, 3)
print(pkg.digest, pkg.task, pkg.classes)
print(pkg.predict(rows).to_pylist())"

step mlv trace predictions/incoming --row 0

# online: serve the package, ask for a prediction, then trace that prediction back to the raw data
port=$(python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
mlv serve models/pkg --port "$port" & server=$!
for _ in $(seq 100); do python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/health')" \
  2>/dev/null && break; sleep 0.2; done
request='{"records": [{"region": "west", "tenure_months": 3, "monthly_charges": 99.5, "support_calls": 4, "charges_per_tenure": 24.9}]}'
if command -v curl >/dev/null; then
  printf '\n\033[1m$ curl -s -X POST http://127.0.0.1:%s/predict -d %s\033[0m\n' "$port" "'$request'"
  answer=$(curl -s -X POST "http://127.0.0.1:$port/predict" -H 'Content-Type: application/json' -d "$request")
else  # the same request without curl
  printf '\n\033[1m$ POST http://127.0.0.1:%s/predict %s\033[0m\n' "$port" "'$request'"
  answer=$(python -c "import sys, urllib.request as u; print(u.urlopen(u.Request('http://127.0.0.1:$port/predict', \
    sys.argv[1].encode(), {'Content-Type': 'application/json'})).read().decode())" "$request")
fi
echo "$answer"
kill -TERM "$server" && wait "$server"
step mlv trace "$(python -c "import json, sys; print(json.loads(sys.argv[1])['predictions'][0]['prediction_id'])" "$answer")"
step mlv monitor models/pkg --data data/incoming.parquet

step mlv run --set split.test=0.3
step mlv metrics show
step mlv exp show --sort roc_auc
git add -A && git commit -qm "a bigger test split" -q
step mlv log models/pkg

original=$(cat data/raw/customers-2026-01.csv | cksum)
echo "C2026019999,north,3,99.5,4,2,1" >> data/raw/customers-2026-01.csv
step mlv status
step mlv add data/raw data/incoming
git add -A && git commit -qm "raw data v2" && echo "(committed data/raw.mlv as v2)"

step git checkout -q HEAD~1 -- data/raw.mlv
step mlv checkout data/raw
step mlv status
step mlv fsck
[ "$(cat data/raw/customers-2026-01.csv | cksum)" = "$original" ] && printf '\nv1 of data/raw is back, byte for byte.\n'

# A teammate: share data, models and the run cache through a remote (a folder here; s3://… works the same)
step mlv remote add origin "$work-remote"
git add -A && git commit -qm "back to raw data v1; a remote" && echo "(committed data/raw.mlv and .mlv/config.yaml)"
step mlv push
step git clone -q "$work" "$work-clone"
cd "$work-clone"
step mlv pull
step mlv run
step mlv trace models/pkg
