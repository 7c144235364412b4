#!/usr/bin/env bash
# The quick-start job: version the example data, run the example pipeline end to end on Dask —
# label (rules + a person) -> features -> a 4-model sweep -> select -> package —, trace the package
# back to the raw data, read the experiments table, change a param and rerun only what it affects,
# bring an old data version back, and share everything with a teammate through a remote.
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
step mlv add data/raw
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

step mlv run --set split.test=0.3
step mlv metrics show
step mlv exp show --sort roc_auc
git add -A && git commit -qm "a bigger test split" -q
step mlv log models/pkg

original=$(cat data/raw/customers-2026-01.csv | cksum)
echo "C2026019999,north,3,99.5,4,2,1" >> data/raw/customers-2026-01.csv
step mlv status
step mlv add data/raw
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
