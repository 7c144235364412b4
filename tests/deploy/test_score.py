"""``kind: score``, ``mlv score`` and ``mlv trace --row`` through the real CLI, on a real package.

The package comes from real ``kind: train`` and ``kind: package`` stages (built once per module,
copied into each test's repo); scoring runs the real Dask threaded scheduler in the stage's process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skops.io as sio
import xxhash
import yaml
from helpers import MLV
from mlfixtures import (
    built_repo,
    lock,
    matrix,
    package_stage,
    table,
    train_stage,
)

from mlv.api import load_package

PACKAGE_STAGES = train_stage("fit", "models/rf", 4) + package_stage("package", "models/rf", "models/pkg")
SCORE_STAGE = textwrap.dedent("""\
    score:
      kind: score
      package: models/pkg
      data: data/incoming
      out: predictions/incoming
    """)
SIZES = (70, 0, 130, 45)  # rows per input partition; an empty one too


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repo with models/pkg built by `mlv run` (train + package); each test works on a copy."""
    return built_repo(tmp_path_factory.mktemp("score") / "repo", PACKAGE_STAGES)


@pytest.fixture
def packaged(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(built, repo, symlinks=True)
    monkeypatch.chdir(repo)
    return repo


def incoming(repo: Path, cli, *, sizes=SIZES, name: str = "data/incoming", add: bool = True) -> list[Path]:
    """A directory of Parquet partitions (other seeds than the training data), added with `mlv add`."""
    folder = repo / name
    folder.mkdir(parents=True)
    files = []
    for i, rows in enumerate(sizes):
        part = table(max(rows, 2), seed=100 + i).drop_columns(["label"]).slice(0, rows)
        files.append(folder / f"p{i}.parquet")
        pq.write_table(part, files[-1], row_group_size=32)  # several row groups: batches cross them
    if add:
        cli("add", name)
    return files


def xxh3(data: bytes) -> str:
    return "xxh3-128:" + xxhash.xxh3_128_hexdigest(data)


def estimator(repo: Path):
    path = repo / "models/pkg/model.skops"
    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


def pipeline(repo: Path, extra: str = SCORE_STAGE) -> None:
    (repo / "mlv.yaml").write_text("stages:\n" + textwrap.indent(PACKAGE_STAGES + extra, "  "))


def check_predictions(repo: Path, out: str, files: list[Path], package_digest: str) -> None:
    """Each output part equals the package's and the model's own predictions, with the right provenance."""
    package = load_package(repo / "models/pkg")
    model = estimator(repo)
    parts = sorted((repo / out).iterdir())
    assert [p.name for p in parts] == [f"part-{i:05d}.parquet" for i in range(len(files))]
    for source, part in zip(files, parts):
        got = pq.read_table(part)
        data = pq.read_table(source)
        assert got.column_names == ["prediction", "proba_no", "proba_yes", "mlv_package", "mlv_input", "mlv_row"]
        assert got.num_rows == data.num_rows
        assert got.column("mlv_row").to_pylist() == list(range(data.num_rows))
        assert set(got.column("mlv_package").to_pylist()) <= {package_digest}
        assert set(got.column("mlv_input").to_pylist()) <= {xxh3(source.read_bytes())}
        if data.num_rows == 0:
            continue
        expected = package.predict(data)
        assert got.select(expected.column_names).equals(expected)
        assert got.column("prediction").to_pylist() == model.predict(matrix(data)).tolist()
        assert np.array_equal(np.column_stack([got.column("proba_no"), got.column("proba_yes")]),
                              model.predict_proba(matrix(data)))


# -- kind: score in a pipeline ---------------------------------------------------------------------


def test_score_stage_predicts_as_the_model_with_provenance_and_a_rerun_is_up_to_date(packaged: Path, cli):
    repo = packaged
    files = incoming(repo, cli)
    pipeline(repo)
    cli("run")
    stages = lock(repo)
    package_digest = stages["package"]["outs"]["models/pkg"]["digest"]
    assert stages["score"]["deps"]["models/pkg"] == package_digest
    check_predictions(repo, "predictions/incoming", files, package_digest)

    # mlv_input is the digest mlv records for that partition: the added directory's manifest entry
    from mlv.engine.provenance import member_digest
    from mlv.storage.store.digest import parse
    from mlv.storage.workspace import Workspace

    pointer = yaml.safe_load((repo / "data/incoming.mlv").read_text())["digest"]
    ws = Workspace(repo)
    for i, source in enumerate(files):
        recorded = str(member_digest(ws, parse(pointer), source.name))
        got = set(pq.read_table(repo / f"predictions/incoming/part-{i:05d}.parquet").column("mlv_input").to_pylist())
        assert got <= {recorded}
    record = json.loads((repo / ".mlv/runs" / f"{stages['score']['run_id']}.json").read_text())
    assert record["deps"] == {"models/pkg": package_digest, "data/incoming": pointer}
    log = ws.store.read_bytes(parse(record["log"])).decode()
    assert f"scored {sum(SIZES)} rows of 4 partition(s)" in log

    states = {r["stage"]: r["state"] for r in cli.json("run")}
    assert states == {"fit": "up-to-date", "package": "up-to-date", "score": "up-to-date"}


def test_a_single_file_input_is_one_partition_whose_digest_the_lock_records(packaged: Path, cli):
    repo = packaged
    pq.write_table(table(90, seed=7).drop_columns(["label"]), repo / "data/one.parquet")
    cli("add", "data/one.parquet")
    pipeline(repo, SCORE_STAGE.replace("data/incoming", "data/one.parquet"))
    cli("run")
    stages = lock(repo)
    check_predictions(repo, "predictions/incoming", [repo / "data/one.parquet"],
                      stages["package"]["outs"]["models/pkg"]["digest"])
    inputs = set(pq.read_table(repo / "predictions/incoming/part-00000.parquet").column("mlv_input").to_pylist())
    assert inputs == {stages["score"]["deps"]["data/one.parquet"]}


def test_a_missing_or_mistyped_column_is_exit_2_naming_it_before_anything_is_written(packaged: Path, cli):
    repo = packaged
    files = incoming(repo, cli, sizes=(20, 20), add=False)
    pq.write_table(pq.read_table(files[1]).drop_columns(["age"]), files[1])
    cli("add", "data/incoming")
    missing = "column 'age' is missing from data/incoming/p1.parquet; the package needs amount, age, channel"
    runs = repo / ".mlv/runs"
    before = sorted(p.name for p in runs.iterdir())

    # a package that no stage of mlv.yaml makes (added): checked before anything runs, exit 2
    shutil.copytree(repo / "models/pkg", repo / "vendor/pkg")
    cli("add", "vendor/pkg")
    (repo / "mlv.yaml").write_text("stages:\n" + textwrap.indent(SCORE_STAGE.replace("models/pkg", "vendor/pkg"), "  "))
    result = cli("run", code=2)
    assert f"mlv.yaml:2: stage 'score', 'data': {missing}" in result.stderr
    assert not (repo / "predictions").exists()
    assert sorted(p.name for p in runs.iterdir()) == before

    # a package the pipeline makes: the stage checks before it writes anything, and fails naming the column
    pipeline(repo)
    result = cli("run", code=1)
    assert f"error: 'data': {missing}" in result.stderr
    assert not (repo / "predictions/incoming").exists()

    wrong = table(10, seed=9).drop_columns(["label"])
    wrong = wrong.set_column(wrong.column_names.index("age"), "age", wrong.column("age").cast(pa.string()))
    (repo / "data/typed").mkdir()
    pq.write_table(wrong, repo / "data/typed/x.parquet")
    before = sorted(p.name for p in runs.iterdir())
    result = cli("score", "models/pkg", "data/typed", "predictions/typed", code=2)
    assert ("error: column 'age' of data/typed/x.parquet is string, but the package expects int64"
            in result.stderr)
    assert not (repo / "predictions/typed").exists()
    assert sorted(p.name for p in runs.iterdir()) == before


# -- mlv score ----------------------------------------------------------------------------------------


def test_mlv_score_records_a_run_whose_trace_reaches_the_raw_training_data(packaged: Path, cli):
    repo = packaged
    files = incoming(repo, cli)
    lock_before = (repo / "mlv.lock").read_bytes()
    result = cli.json("score", "models/pkg", "data/incoming", "predictions/batch")
    stages = lock(repo)
    package_digest = stages["package"]["outs"]["models/pkg"]["digest"]
    pointer = yaml.safe_load((repo / "data/incoming.mlv").read_text())["digest"]
    assert result["state"] == "done" and result["output"] == "predictions/batch"
    assert (result["rows"], result["partitions"]) == (sum(SIZES), len(SIZES))
    assert result["package"] == {"path": "models/pkg", "digest": package_digest}
    assert result["input"] == {"path": "data/incoming", "digest": pointer}
    check_predictions(repo, "predictions/batch", files, package_digest)
    assert (repo / "mlv.lock").read_bytes() == lock_before  # not a stage of mlv.yaml

    record = json.loads((repo / ".mlv/runs" / f"{result['run_id']}.json").read_text())
    assert record["stage"] == "score:predictions/batch" and record["status"] == "succeeded"
    assert record["outs"]["predictions/batch"]["digest"] == result["digest"]
    assert record["producers"]["models/pkg"] == {"run": stages["package"]["run_id"]}

    graph = cli.json("trace", "predictions/batch")
    runs = {n["stage"]: n["run_id"] for n in graph["nodes"] if n["type"] == "run"}
    assert runs == {"score:predictions/batch": result["run_id"], "package": stages["package"]["run_id"],
                    "fit": stages["fit"]["run_id"]}
    raw = [n for n in graph["nodes"] if n["type"] == "artifact" and n.get("origin") == "added"]
    assert {(n["path"], n["pointer"]) for n in raw} == {("data/train.parquet", "data/train.parquet.mlv"),
                                                        ("data/incoming", "data/incoming.mlv")}

    again = cli.json("score", "models/pkg", "data/incoming", "predictions/batch")
    assert (again["state"], again["run_id"], again["digest"]) == ("cached", result["run_id"], result["digest"])


def test_mlv_score_refuses_a_bad_package_with_exit_2_and_a_changed_one_with_exit_1(packaged: Path, cli):
    repo = packaged
    incoming(repo, cli, sizes=(10,))
    result = cli("score", "models/nope", "data/incoming", "predictions/x", code=2)
    assert "'models/nope' does not exist" in result.stderr
    result = cli("score", "models/rf", "data/incoming", "predictions/x", code=2)
    assert "error: 'models/rf' is not a model package: it holds no package.yaml" in result.stderr

    meta = repo / "models/pkg/package.yaml"
    text = meta.read_text()
    meta.unlink()  # a new file: the workspace copy may share its inode with the store
    meta.write_text(text.replace("task: classification", "task: classification\n# edited"))
    result = cli("score", "models/pkg", "data/incoming", "predictions/x", code=1)
    assert "'models/pkg/package.yaml' was changed: package 'models/pkg' no longer matches" in result.stderr
    assert not (repo / "predictions/x").exists()


# -- mlv trace --row -------------------------------------------------------------------------------------


def test_trace_row_reaches_the_input_partition_the_package_run_and_raw_data(packaged: Path, cli):
    repo = packaged
    files = incoming(repo, cli)
    result = cli.json("score", "models/pkg", "data/incoming", "predictions/batch")
    stages = lock(repo)
    n = SIZES[0] + 17  # across partitions: the 18th row of the third file (the second is empty)
    graph = cli.json("trace", "predictions/batch", "--row", str(n))
    root = graph["nodes"][0]
    assert graph["nodes"][0]["id"] == "row:predictions/batch/part-00002.parquet#17" and root["type"] == "row"
    predicted = pq.read_table(repo / "predictions/batch/part-00002.parquet").slice(17, 1).to_pylist()[0]
    assert (root["row"], root["input_row"], root["prediction"]) == (17, 17, predicted["prediction"])
    partition = xxh3(files[2].read_bytes())
    assert (root["package"], root["input"]) == (stages["package"]["outs"]["models/pkg"]["digest"], partition)

    nodes = {n["id"]: n for n in graph["nodes"]}
    into_row = {e["source"] for e in graph["edges"] if e["target"] == root["id"]}
    part_id = f"artifact:data/incoming/p2.parquet@{partition}"
    package_id = f"artifact:models/pkg@{root['package']}"
    assert into_row == {f"run:{result['run_id']}", part_id, package_id}
    pointer = yaml.safe_load((repo / "data/incoming.mlv").read_text())["digest"]
    assert {"source": f"artifact:data/incoming@{pointer}", "target": part_id, "type": "member"} in graph["edges"]
    runs = {n["stage"]: n["run_id"] for n in graph["nodes"] if n["type"] == "run"}
    assert runs["fit"] == stages["fit"]["run_id"] and runs["package"] == stages["package"]["run_id"]
    assert nodes["artifact:data/train.parquet@" + yaml.safe_load(
        (repo / "data/train.parquet.mlv").read_text())["digest"]]["origin"] == "added"
    assert graph["problems"] == []

    same = cli.json("trace", "predictions/batch/part-00002.parquet", "--row", "17")  # one file: its own rows
    assert {n["id"] for n in same["nodes"]} == set(nodes)
    text = cli("trace", "predictions/batch", "--row", str(n)).stdout
    assert text.splitlines()[0].startswith("row 17 of predictions/batch/part-00002.parquet  prediction ")
    assert "data/incoming/p2.parquet" in text and "added (data/train.parquet.mlv)" in text


def test_trace_row_out_of_range_or_without_provenance_is_exit_2(packaged: Path, cli):
    repo = packaged
    incoming(repo, cli, sizes=(10, 5))
    cli("score", "models/pkg", "data/incoming", "predictions/batch")
    result = cli("trace", "predictions/batch", "--row", "15", code=2)
    assert "row 15 is out of range: 'predictions/batch' has rows 0–14" in result.stderr
    result = cli("trace", "data/incoming/p0.parquet", "--row", "0", code=2)
    assert "'data/incoming/p0.parquet' has no mlv_package, mlv_input, mlv_row column(s)" in result.stderr


# -- bounded memory --------------------------------------------------------------------------------------

RSS_WRAPPER = """\
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
sys.exit(code)
"""


@pytest.mark.slow
def test_an_input_larger_than_the_memory_limit_is_scored_in_bounded_memory(packaged: Path, cli):
    """The limit: the peak RSS of scoring a 200-row table (the libraries, the model) plus BUDGET. The input, as one
    Arrow table, is larger than that whole limit; scoring it stays under it, and every row is scored."""
    repo = packaged
    folder = repo / "data/big"
    folder.mkdir(parents=True)
    rows, files, budget = 1_000_000, 2, 200
    rng = np.random.default_rng(0)
    channels = pa.array(["web", "store", "phone"])
    notes = pa.array([f"{i:03d}" + "x" * 250 for i in range(50)])  # a wide column the model does not read
    for i in range(files):  # dictionary-encoded on disk (small files), plain strings once read
        part = pa.table({"amount": rng.integers(0, 50, rows).astype(np.float64), "age": rng.integers(18, 80, rows),
                         "channel": channels.take(rng.integers(0, 3, rows)),
                         "note": pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 50, rows, dtype=np.int32)),
                                                                notes)})
        pq.write_table(part, folder / f"p{i}.parquet", row_group_size=200_000, store_schema=False)
    first = pq.ParquetFile(folder / "p0.parquet").read_row_group(0)
    whole = first.nbytes / first.num_rows * files * rows / 2**20  # MiB, the input as one Arrow table
    baseline = _peak_mb(repo, ["score", "models/pkg", "data/train.parquet", "predictions/base"])
    peak = _peak_mb(repo, ["score", "models/pkg", "data/big", "predictions/big"])
    print(f"input {whole:.0f} MiB as Arrow data; limit {baseline + budget} MiB; peak RSS {peak} MiB")
    assert whole > baseline + budget
    assert peak < baseline + budget
    written = sum(pq.read_metadata(p).num_rows for p in (repo / "predictions/big").iterdir())
    assert written == files * rows


def _peak_mb(repo: Path, args: list[str]) -> int:
    """Peak RSS (MiB) of the largest process `mlv ARGS` runs (the stage's own process included)."""
    done = subprocess.run([sys.executable, "-c", RSS_WRAPPER, str(MLV), *args], cwd=repo, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])
