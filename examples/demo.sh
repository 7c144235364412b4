#!/usr/bin/env bash
# The quick-start job: version the example data, run the example pipeline end to end on Dask,
# trace the metrics back to the raw data, change a param and rerun only what it affects,
# then bring an old data version back.
# Runs in a throwaway copy of examples/churn so this checkout stays clean.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="$here/../.venv/bin:$PATH"
work=$(mktemp -d "${TMPDIR:-/tmp}/mlv-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$here/churn/." "$work"
cd "$work"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

git init -q && git config user.email demo@mlv.local && git config user.name "mlv demo"
step mlv init
step mlv add data/raw
step mlv dag
step mlv run
step cat metrics/eval.json
step mlv trace metrics/eval.json
git add -A && git commit -qm "raw data v1, pipeline run" && echo "(committed data/raw.mlv, mlv.yaml, mlv.lock)"

sed -i 's/max_depth: 6/max_depth: 8/' mlv.yaml
step mlv status
step mlv run
step mlv show evaluate
step mlv metrics diff
git add -A && git commit -qm "deeper model" -q
step mlv log models/rf

original=$(cat data/raw/customers-2026-01.csv | cksum)
echo "C2026019999,north,3,99.5,4,1" >> data/raw/customers-2026-01.csv
echo "C2026049999,east,12,40.0,0,0" > data/raw/customers-2026-04.csv
step mlv status
step mlv add data/raw
git add -A && git commit -qm "raw data v2" && echo "(committed data/raw.mlv as v2)"

step git checkout -q HEAD~1 -- data/raw.mlv
step mlv checkout data/raw
step mlv status
step mlv fsck
[ "$(cat data/raw/customers-2026-01.csv | cksum)" = "$original" ] && [ ! -e data/raw/customers-2026-04.csv ] \
  && printf '\nv1 of data/raw is back, byte for byte.\n'

# A teammate: share data, models and the run cache through a remote (a folder here; s3://… works the same)
step mlv remote add origin "$work-remote"
git add -A && git commit -qm "back to raw data v1; a remote" && echo "(committed data/raw.mlv and .mlv/config.yaml)"
step mlv push
step git clone -q "$work" "$work-clone"
trap 'rm -rf "$work" "$work-remote" "$work-clone"' EXIT
cd "$work-clone"
step mlv pull
step mlv run
step mlv trace metrics/eval.json
