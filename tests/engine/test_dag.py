"""The stage DAG: edges from deps and outputs, the errors that keep it valid, selection and drawings."""

from __future__ import annotations

import doctest
import re
from dataclasses import dataclass

import pytest

import mlv.engine.dag
from mlv.engine.dag import Graph, StageSpec, build_graph, normalise_path, parse_memory
from mlv.engine.errors import GraphError
from mlv.storage.errors import UsageError


def stage(name: str, deps=(), outs=(), metrics=(), line: int = 0) -> StageSpec:
    return StageSpec(name=name, cmd=("true",), deps=tuple(deps), outs=tuple(outs), metrics=tuple(metrics), line=line)


def everything_exists(path: str) -> bool:
    return True


def graph(*stages: StageSpec) -> Graph:
    return build_graph(stages, exists=everything_exists)


def example() -> Graph:
    """prepare → featurize → train → evaluate, plus report reading the metrics directory."""
    return graph(
        stage("prepare", deps=["data/raw"], outs=["data/prepared"], line=2),
        stage("featurize", deps=["data/prepared/train.csv"], outs=["features"], line=6),
        stage("train", deps=["features"], outs=["models/rf"], metrics=["metrics/train.json"], line=9),
        stage("evaluate", deps=["models/rf", "data/prepared"], metrics=["metrics/eval.json"], line=13),
        stage("report", deps=["metrics"], outs=["report.html"], line=16),
        stage("lint", deps=["src"], line=19),
    )


# -- edges -------------------------------------------------------------------


def test_a_dep_that_is_inside_or_contains_an_output_makes_an_edge():
    dag = example()
    assert dag.edges() == [
        ("evaluate", "report"),  # report reads metrics/, which holds metrics/eval.json
        ("featurize", "train"),  # dep == out
        ("prepare", "evaluate"),
        ("prepare", "featurize"),  # data/prepared/train.csv lies inside data/prepared
        ("train", "evaluate"),
        ("train", "report"),
    ]
    assert dag.topological_order() == ["lint", "prepare", "featurize", "train", "evaluate", "report"]
    assert list(dag) == dag.topological_order() and len(dag) == 6 and "lint" in dag


def test_any_object_with_name_deps_outs_metrics_will_do():
    @dataclass
    class Plain:
        name: str
        deps: tuple = ()
        outs: tuple = ()
        metrics: tuple = ()

    dag = build_graph([Plain("b", deps=("x/y",)), Plain("a", outs=("x",))], exists=everything_exists)
    assert dag.edges() == [("a", "b")]
    with pytest.raises(GraphError, match=r"^mlv\.yaml: stage 'b' reads 'q'"):
        build_graph([Plain("b", deps=("q",))], exists=lambda p: False)


# -- errors ------------------------------------------------------------------


def test_a_cycle_names_its_stages_in_order():
    with pytest.raises(GraphError) as caught:
        graph(
            stage("c", deps=["b.txt"], outs=["c.txt"], line=9),
            stage("b", deps=["a.txt"], outs=["b.txt"], line=5),
            stage("a", deps=["c.txt/part"], outs=["a.txt"], line=2),
        )
    message = str(caught.value)
    assert message.startswith("mlv.yaml:2: the stages form a cycle: a → b → c → a\n")
    assert "'b' reads 'a.txt' from 'a'" in message and "'a' reads 'c.txt/part' from 'c'" in message
    assert caught.value.stages == ("a", "b", "c") and caught.value.line == 2
    assert isinstance(caught.value, UsageError) and caught.value.exit_code == 2


def test_an_output_claimed_by_two_stages_is_refused():
    with pytest.raises(GraphError, match=re.escape(
        "mlv.yaml:3: 'models/rf' is an output of both 'train' and 'tune'; an output belongs to one stage"
    )) as caught:
        graph(stage("train", outs=["models/rf"], line=3), stage("tune", metrics=["models/rf"], line=8))
    assert caught.value.stages == ("train", "tune") and caught.value.artifact == "models/rf"


def test_nested_outputs_are_refused():
    with pytest.raises(GraphError, match=re.escape(
        "mlv.yaml:7: 'data/x', an output of 'b', lies inside 'data', the output of 'a'; outputs may not nest"
    )):
        graph(stage("a", outs=["data"], line=2), stage("b", outs=["data/x"], line=7))
    with pytest.raises(GraphError, match=re.escape("'data/x', an output of 'a', lies inside its own output")):
        graph(stage("a", outs=["data"], metrics=["data/x"]))


def test_a_stage_cannot_read_its_own_output():
    message = "mlv.yaml:4: stage 'a' reads 'data', which overlaps its own output"
    with pytest.raises(GraphError, match=re.escape(message)):
        graph(stage("a", deps=["data"], outs=["data/model"], line=4))


def test_a_missing_dep_suggests_the_nearest_output():
    stages = [
        stage("features", outs=["feature_table"], line=3),
        stage("labels", outs=["labels"], line=7),
        stage("train", deps=["features"], outs=["model"], line=14),
    ]
    with pytest.raises(GraphError) as caught:
        build_graph(stages, exists=lambda path: False, source="pipelines/churn.yaml")
    assert str(caught.value) == (
        "pipelines/churn.yaml:14: stage 'train' reads 'features', but no stage produces it and it does not exist.\n"
        "  Outputs in this pipeline: feature_table, labels, model. Did you mean 'feature_table'?"
    )
    assert caught.value.artifact == "features" and caught.value.stages == ("train",)
    assert caught.value.path == "pipelines/churn.yaml" and caught.value.line == 14


def test_a_missing_dep_with_nothing_near_says_how_to_get_it():
    with pytest.raises(GraphError, match=re.escape("Add it with `mlv add data/raw`, fetch it with `mlv pull`")):
        build_graph([stage("a", deps=["data/raw"])], exists=lambda path: False)


def test_default_exists_checks_the_workspace_and_pointer_files(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print()\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw.mlv").write_text("path: raw\n")  # added, not yet pulled
    stages = [stage("a", deps=["src/train.py", "data/raw", "data/raw/part-0.csv"])]
    assert len(build_graph(stages, root=tmp_path)) == 1
    with pytest.raises(GraphError, match="reads 'src/missing.py'"):
        build_graph([stage("a", deps=["src/missing.py"])], root=tmp_path)


# -- selection and scheduling ------------------------------------------------


def test_upstream_downstream_and_select():
    dag = example()
    assert dag.upstream_of(["evaluate"]) == {"evaluate", "train", "featurize", "prepare"}
    assert dag.downstream_of(["featurize"]) == {"featurize", "train", "evaluate", "report"}
    assert dag.select(["train"]).topological_order() == ["prepare", "featurize", "train"]
    assert dag.select(["train"], downstream=True).edges() == [("evaluate", "report"), ("train", "evaluate"),
                                                            ("train", "report")]
    assert dag.select(["train"]).producer_of("report.html") is None


def test_targets_may_be_groups_or_output_paths():
    dag = graph(stage("prep", outs=["data"]), stage("fit@a", deps=["data"]), stage("fit@b", deps=["data"]))
    assert dag.resolve(["fit"]) == {"fit@a", "fit@b"}
    assert dag.resolve(["data/part.csv"]) == {"prep"}
    assert dag.upstream_of(["fit@b"]) == {"fit@b", "prep"}
    message = "no stage named 'fitt' and no stage writes it. Did you mean 'fit'?"
    with pytest.raises(GraphError, match=re.escape(message)):
        dag.resolve(["fitt"])


def test_ready_submits_stages_as_their_inputs_complete():
    dag = example()
    assert dag.ready(set(), set()) == ["lint", "prepare"]
    assert dag.ready({"prepare"}, {"lint"}) == ["featurize"]
    assert dag.ready({"prepare", "featurize", "train", "lint"}, set()) == ["evaluate"]
    assert dag.ready(set(dag.topological_order()), set()) == []


def test_producer_of_finds_the_stage_writing_a_path():
    dag = example()
    assert dag.producer_of("data/prepared") == "prepare"
    assert dag.producer_of("./data/prepared/train.csv") == "prepare"
    assert dag.producer_of("metrics/eval.json") == "evaluate"
    assert dag.producer_of("metrics") is None and dag.producer_of("data/raw") is None


# -- drawings ----------------------------------------------------------------


def test_dot_mermaid_ascii_and_json_show_every_edge():
    dag = example()
    dot = dag.to_dot()
    assert dot.startswith("digraph mlv {") and '"prepare" -> "featurize";' in dot and '"lint";' in dot
    mermaid = dag.to_mermaid()
    assert mermaid.startswith("flowchart TD\n") and "  prepare --> featurize\n" in mermaid
    assert mermaid.count("-->") == len(dag.edges())
    assert dag.to_ascii() == (
        "[1]  lint\n"
        "     prepare\n"
        "[2]  featurize  <- prepare\n"
        "[3]  train      <- featurize\n"
        "[4]  evaluate   <- prepare, train\n"
        "[5]  report     <- evaluate, train\n"
    )
    data = dag.to_dict()
    assert {"source": "prepare", "target": "featurize", "paths": ["data/prepared/train.csv"]} in data["edges"]
    assert data["nodes"][1] == {"id": "prepare", "line": 2}


def test_drawings_escape_awkward_names():
    dag = graph(stage('say "hi"', outs=["o"]), stage("fit@0.1-rf", deps=["o"]), stage("end", deps=["o"]))
    assert '"say \\"hi\\"" -> "fit@0.1-rf";' in dag.to_dot()
    mermaid = dag.to_mermaid()
    assert 'fit_0_1_rf["fit@0.1-rf"]' in mermaid and '["say #quot;hi#quot;"]' in mermaid
    assert "\n  end[" not in mermaid  # 'end' would close a Mermaid block
    assert build_graph([], exists=everything_exists).to_ascii() == "(no stages)\n"


# -- spec helpers ------------------------------------------------------------


def test_normalise_path_and_parse_memory():
    assert normalise_path("a/./b/../c/", "src") == "src/a/c"
    assert normalise_path(".", "src", allow_root=True) == "src"
    for bad in ("/abs", "C:\\x", "../up", "."):
        with pytest.raises(ValueError):
            normalise_path(bad)
    assert parse_memory("1.5 GiB") == 3 * 2**29 and parse_memory("2k") == 2000 and parse_memory("7b") == 7
    with pytest.raises(ValueError, match="not a size"):
        parse_memory("lots")


def test_engine_doctests():
    assert doctest.testmod(mlv.engine.dag).failed == 0
