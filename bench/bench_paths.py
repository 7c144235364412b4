"""What the paths rule costs on a big directory: every entry of a 10⁶-file manifest is checked.

Run from the repo root with the project's venv::

    .venv/bin/python bench/bench_paths.py [--entries N] [--reps N] [--json]

Measures, in this process, on ``--entries`` paths shaped like a real dataset
(``part-<k>/day=<d>/file-<i>.parquet``, 1 % of them with a dot-file part such as
``.hidden`` or ``_SUCCESS``-like names, which take the rule's slow path):

- ``check_paths``: the manifest validator as it runs on load and dump (relative,
  normalised, sorted, unique, no ``.git``/``.mlv`` part);
- the floor: the same loop without the ``.git``/``.mlv`` test (what it was before the paths rule);
- ``manifest.load`` of the whole manifest (Arrow IPC decode + the validator), the figure
  ``status``, ``checkout`` and ``push`` pay per directory version.

Median of ``--reps`` (default 5) runs of each, interleaved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from mlv.storage.store import manifest
from mlv.storage.store.digest import Digest
from mlv.storage.errors import StorageError


def paths_of(n: int) -> list[str]:
    out = []
    for i in range(n):
        name = f".hidden-{i}" if i % 100 == 0 else f"file-{i:07d}.parquet"
        out.append(f"part-{i % 1000:03d}/day={i % 31:02d}/{name}")
    return sorted(out)


def floor(paths: list[str]) -> None:
    """The validator without the paths rule's ``.git``/``.mlv`` test (as before the rule)."""
    previous = None
    for p in paths:
        framed = f"/{p}/"
        if not p or p[0] == "/" or "/../" in framed or "/./" in framed or "//" in framed or "\0" in p:
            raise StorageError(p)
        if previous is not None and p <= previous:
            raise StorageError(p)
        previous = p


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    paths = paths_of(args.entries)
    digest = Digest.from_raw(bytes(16))
    data = manifest.dump(manifest.Entry(p, digest, 1) for p in paths)
    runs: dict[str, list[float]] = {"check_paths": [], "floor": [], "load": []}
    for _ in range(args.reps):
        runs["floor"].append(timed(floor, paths))
        runs["check_paths"].append(timed(manifest.check_paths, paths))
        runs["load"].append(timed(manifest.load, data))
    med = {k: statistics.median(v) for k, v in runs.items()}
    result = {"entries": args.entries, "seconds": med, "rule_overhead": med["check_paths"] / med["floor"],
              "per_entry_ns": {k: v / args.entries * 1e9 for k, v in med.items()}}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.entries:,} manifest entries, median of {args.reps}:")
    print(f"  check_paths (paths rule)   {med['check_paths']:.3f} s  ({result['per_entry_ns']['check_paths']:.0f} ns/entry)")
    print(f"  floor (no .git/.mlv test)  {med['floor']:.3f} s  ({result['per_entry_ns']['floor']:.0f} ns/entry)")
    print(f"  ratio                      {result['rule_overhead']:.2f}x")
    print(f"  manifest.load (whole)      {med['load']:.3f} s")


if __name__ == "__main__":
    main()
