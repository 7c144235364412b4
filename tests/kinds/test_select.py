"""``kind: select`` through the real CLI: the best candidate by a metric of its train record, ``selected.yaml``,
and the trace of a package built from the choice through the select run to every candidate."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from mlfixtures import lock, table, train_stage

from mlv.api import load_package

DEPTHS = (1, 3, 8)
CANDIDATES = [f"models/d{d}" for d in DEPTHS]


def pipeline(repo: Path, *, metric: str = "accuracy", mode: str = "max") -> None:
    fits = "".join(train_stage(f"fit{d}", f"models/d{d}", d) for d in DEPTHS)
    rest = textwrap.dedent(f"""\
        best:
          kind: select
          models: [{', '.join(CANDIDATES)}]
          metric: {metric}
          mode: {mode}
          out: models/best
        package:
          kind: package
          model: models/best
          data: data/train.parquet
          out: models/pkg
        """)
    (repo / "mlv.yaml").write_text("stages:\n" + textwrap.indent(fits + rest, "  "))


def candidates_repo(repo: Path, cli) -> None:
    (repo / "data").mkdir()
    pq.write_table(table(), repo / "data/train.parquet")
    cli("add", "data/train.parquet")


def metric(repo: Path, model: str, name: str = "accuracy") -> float:
    return yaml.safe_load((repo / model / "model.yaml").read_text())["metrics"][name]


def first_best(values: list[float], pick) -> int:
    return values.index(pick(values))


def runs(graph: dict) -> dict[str, str]:
    return {n["stage"]: n["run_id"] for n in graph["nodes"] if n["type"] == "run"}


def artifacts(graph: dict) -> dict[str, str]:
    return {n["path"]: n["digest"] for n in graph["nodes"] if n["type"] == "artifact"}


def test_select_picks_the_best_for_max_and_min_and_the_trace_reaches_every_candidate(repo: Path, cli):
    candidates_repo(repo, cli)
    pipeline(repo)
    cli("run")
    values = [metric(repo, m) for m in CANDIDATES]
    best_max, best_min = first_best(values, max), first_best(values, min)
    assert best_max != best_min  # the data tells the depths apart
    stages = lock(repo)
    winner = CANDIDATES[best_max]
    selected = yaml.safe_load((repo / "models/best/selected.yaml").read_text())
    assert selected == {
        "model": winner, "metric": "accuracy", "mode": "max", "value": values[best_max],
        "candidates": [{"model": m, "value": v, "digest": stages[f"fit{d}"]["outs"][m]["digest"],
                        "run": stages[f"fit{d}"]["run_id"]} for m, v, d in zip(CANDIDATES, values, DEPTHS)],
    }
    assert list(selected) == ["model", "metric", "mode", "value", "candidates"]
    assert sorted(p.name for p in (repo / "models/best").iterdir()) == ["model.skops", "model.yaml", "selected.yaml"]
    for name in ("model.skops", "model.yaml"):
        assert (repo / "models/best" / name).read_bytes() == (repo / winner / name).read_bytes()

    lineage = yaml.safe_load((repo / "models/pkg/package.yaml").read_text())["lineage"]
    assert lineage["train_run"] == stages[f"fit{DEPTHS[best_max]}"]["run_id"]
    assert lineage["select_run"] == stages["best"]["run_id"]
    assert load_package("models/pkg").digest == stages["package"]["outs"]["models/pkg"]["digest"]

    graph = cli.json("trace", "models/pkg")
    assert runs(graph) == {name: stages[name]["run_id"] for name in ("package", "best", "fit1", "fit3", "fit8")}
    found = artifacts(graph)
    for m, d in zip(CANDIDATES, DEPTHS):
        assert found[m] == stages[f"fit{d}"]["outs"][m]["digest"]
    edges = {(e["source"], e["target"], e["type"]) for e in graph["edges"]}
    best_run = f"run:{stages['best']['run_id']}"
    for m, d in zip(CANDIDATES, DEPTHS):
        assert (f"artifact:{m}@{found[m]}", best_run, "input") in edges
        assert (f"run:{stages[f'fit{d}']['run_id']}", f"artifact:{m}@{found[m]}", "output") in edges
    assert (best_run, f"artifact:models/best@{found['models/best']}", "output") in edges
    assert "data/train.parquet" in found and found["data/train.parquet"] == \
        yaml.safe_load((repo / "data/train.parquet.mlv").read_text())["digest"]

    pipeline(repo, mode="min")
    cli("run")
    selected = yaml.safe_load((repo / "models/best/selected.yaml").read_text())
    assert (selected["model"], selected["mode"], selected["value"]) == (CANDIDATES[best_min], "min", values[best_min])
    assert {s: lock(repo)[s]["run_id"] for s in ("fit1", "fit3", "fit8")} == \
        {s: stages[s]["run_id"] for s in ("fit1", "fit3", "fit8")}  # the candidates did not run again


def test_a_candidate_without_the_metric_names_stage_and_candidate(repo: Path, cli):
    candidates_repo(repo, cli)
    pipeline(repo, metric="auc_pr")
    result = cli("run", code=1)
    out = result.stdout + result.stderr
    assert "best" in out and ("'models.0': 'models/d1' has no metric 'auc_pr' in its models/d1/model.yaml "
                              "(its metrics: accuracy, f1, n_test, n_train, roc_auc)") in out
    assert "Traceback" not in out and not (repo / "models/best").exists()

    # candidates no stage writes are checked before anything runs (exit 2, file and line)
    record = yaml.safe_load((repo / "models/d3/model.yaml").read_text())
    del record["metrics"]["accuracy"]
    (repo / "models/d3/model.yaml").write_text(yaml.safe_dump(record))
    (repo / "mlv.yaml").write_text(textwrap.dedent(f"""\
        stages:
          best:
            kind: select
            models: [{', '.join(CANDIDATES)}]
            metric: accuracy
            out: models/best
        """))
    result = cli("run", code=2)
    assert "mlv.yaml:2: stage 'best', 'models.1': 'models/d3' has no metric 'accuracy'" in result.stderr
    assert not (repo / "models/best").exists()
