"""mlv.yaml loading: the DESIGN.md example, interpolation, shell quoting, fan-out, and every error."""

from __future__ import annotations

import doctest
import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

import mlv.pipelines.interpolate
from mlv.engine.dag import Resources, StageSpec
from mlv.pipelines.kinds import Kind
from mlv.pipelines.schema import Pipeline, PipelineError, load_pipeline
from mlv.storage.errors import UsageError

DESIGN_EXAMPLE = """\
params:
  split: 0.2
  model: {n_estimators: 200, max_depth: 8}

stages:
  prepare:
    cmd: python src/prepare.py --split ${params.split}
    deps: [data/raw, src/prepare.py]
    outs: [data/prepared]
  train:
    kind: train                       # built-in kind; or `cmd:` for any command,
    estimator: sklearn.ensemble.RandomForestClassifier   # or `call: pkg.mod:func`
    params: ${params.model}
    data: data/prepared/train.parquet
    target: label
    out: models/rf
    metrics: metrics/train.json
    resources: {gpu: 1}               # scheduled on a Dask worker that has a GPU
"""


def load(tmp_path: Path, text: str) -> Pipeline:
    (tmp_path / "mlv.yaml").write_text(textwrap.dedent(text))
    return load_pipeline(tmp_path / "mlv.yaml", root=tmp_path)


def fails(tmp_path: Path, text: str, message: str) -> PipelineError:
    """Load ``text`` and expect a PipelineError whose message starts with ``message``."""
    with pytest.raises(PipelineError, match="^" + re.escape(message)) as caught:
        load(tmp_path, text)
    return caught.value


# -- the contract example -----------------------------------------------------


def test_design_example_parses_to_golden_specs(tmp_path):
    pipeline = load(tmp_path, DESIGN_EXAMPLE)

    assert pipeline.params == {"split": 0.2, "model": {"n_estimators": 200, "max_depth": 8}}
    assert list(pipeline.stages) == ["prepare", "train"]
    assert pipeline.stages["prepare"] == StageSpec(
        name="prepare",
        cmd=("python src/prepare.py --split 0.2",),
        deps=("data/raw", "src/prepare.py"),
        outs=("data/prepared",),
        params={"split": 0.2},
        line=6,
    )
    assert pipeline.stages["train"] == StageSpec(
        name="train",
        kind="train",
        settings={
            "estimator": "sklearn.ensemble.RandomForestClassifier",
            "data": "data/prepared/train.parquet",
            "target": "label",
            "out": "models/rf",
            "metrics": "metrics/train.json",
            "params": {"n_estimators": 200, "max_depth": 8},
        },
        deps=("data/prepared/train.parquet",),  # a kind's input setting is a dep
        outs=("models/rf",),
        metrics=("metrics/train.json",),
        params={"model.max_depth": 8, "model.n_estimators": 200},
        resources=Resources(gpu=1),
        line=10,
    )


def test_specs_round_trip_through_plain_data(tmp_path):
    pipeline = load(tmp_path, DESIGN_EXAMPLE)
    for spec in pipeline.stages.values():
        data = json.loads(json.dumps(spec.to_dict()))
        assert StageSpec.from_dict(data) == spec
        assert "name" not in spec.definition() and "line" not in spec.definition()
    assert json.loads(json.dumps(pipeline.to_dict()))["stages"]["train"]["resources"]["gpu"] == 1


# -- interpolation -----------------------------------------------------------


def test_interpolation_nested_whole_value_and_paths(tmp_path):
    pipeline = load(tmp_path, """\
        params:
          name: churn
          gpus: 2
          lrs: [0.1, 0.01]
          model: {depth: {max: 8}, kind: rf}
        stages:
          fit:
            cmd: python fit.py --depth ${params.model.depth.max} --lr ${ params.lrs.1 } --home \\${HOME}
            deps: ["data/${params.name}.csv"]
            outs:
              - models/${params.name}/${params.model.kind}
            resources: {gpu: "${params.gpus}", memory: 4GiB}
            desc: fits ${params.name} on ${params.gpus} GPUs
        """)
    fit = pipeline.stages["fit"]
    assert fit.cmd == ("python fit.py --depth 8 --lr 0.01 --home ${HOME}",)
    assert fit.deps == ("data/churn.csv",)
    assert fit.outs == ("models/churn/rf",)
    assert fit.resources == Resources(gpu=2, memory=4 * 2**30)
    assert fit.desc == "fits churn on 2 GPUs"
    # desc and resources say how to describe and where to run the stage, not what it computes
    assert fit.params == {"lrs.1": 0.01, "model.depth.max": 8, "model.kind": "rf", "name": "churn"}


def test_stage_params_hold_only_what_the_stage_uses(tmp_path):
    pipeline = load(tmp_path, """\
        params:
          split: 0.2
          seed: 1
          model: {n_estimators: 200, max_depth: 8}
        stages:
          prepare:
            cmd: python prepare.py --split ${params.split}
            params: [model.max_depth]
          report:
            cmd: python report.py
          evaluate:
            call: mypkg.evaluate:main
            params: ${params.model}
        """)
    assert pipeline.stages["prepare"].params == {"model.max_depth": 8, "split": 0.2}
    assert pipeline.stages["report"].params == {}
    assert pipeline.stages["evaluate"].params == {"model.max_depth": 8, "model.n_estimators": 200}
    assert pipeline.stages["evaluate"].settings == {"params": {"n_estimators": 200, "max_depth": 8}}


def test_list_cmd_wdir_and_path_normalisation(tmp_path):
    pipeline = load(tmp_path, """\
        stages:
          build:
            wdir: src/
            cmd: [make clean, make all]
            deps: [./main.c, ../data//raw/]
            outs: [build/out]
        """)
    build = pipeline.stages["build"]
    assert build.cmd == ("make clean", "make all")
    assert build.wdir == "src"
    assert build.deps == ("src/main.c", "data/raw")
    assert build.outs == ("src/build/out",)


def test_yaml_merge_keys_and_dates_stay_plain(tmp_path):
    pipeline = load(tmp_path, """\
        params:
          base: &base {lr: 0.1, depth: 3}
          tuned: {<<: *base, depth: 5}
          since: 2024-01-31
        stages:
          a: {cmd: "echo ${params.tuned.lr} ${params.tuned.depth} ${params.since}"}
        """)
    assert pipeline.params["tuned"] == {"depth": 5, "lr": 0.1}
    assert pipeline.stages["a"].cmd == ("echo 0.1 5 2024-01-31",)


# -- shell quoting -----------------------------------------------------------

HOSTILE = [
    "0.2; touch injected",
    "$(touch injected)",
    "`touch injected`",
    "x' ; touch injected ; echo '",
    'x" ; touch injected ; echo "',
    "a\nb && touch injected",
    "\\'; touch injected; echo \\'",
]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(
    "template",
    ["printf '%s\\n' ${params.split}", "printf '%s\\n' \"${params.split}\"", "printf '%s\\n' '${params.split}'",
     "printf '%s\\n' \"$(printf '%s' ${params.split})\"", "printf '%s\\n' ${params.split} # note ${params.split}"],
    ids=["bare", "double", "single", "subst", "comment"],
)
@pytest.mark.parametrize("shell", [s for s in ("/bin/sh", "/bin/bash") if Path(s).exists()])
def test_interpolated_values_cannot_inject_commands(tmp_path, value, template, shell):
    (tmp_path / "mlv.yaml").write_text(json.dumps({"params": {"split": value}, "stages": {"a": {"cmd": template}}}))
    try:
        pipeline = load_pipeline(tmp_path / "mlv.yaml", root=tmp_path)
    except PipelineError as exc:  # refusing is safe too, but only for a line break inside a comment
        assert "comment" in str(exc) and "\n" in value
        return
    (cmd,) = pipeline.stages["a"].cmd
    result = subprocess.run(cmd, shell=True, executable=shell, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert not (tmp_path / "injected").exists()
    assert result.stdout == value + "\n"  # and the value arrives intact, as one argument


def test_unquotable_contexts_and_non_scalars_are_refused(tmp_path):
    params = "params:\n  v: x\n  model: {a: 1}\nstages:\n"
    fails(tmp_path, params + "  a:\n    cmd: echo `cat ${params.v}`\n",
          "mlv.yaml:6:20: '${params.v}' inside `…` backticks cannot be quoted safely; use $(…)")
    fails(tmp_path, params + "  a:\n    cmd: echo $'${params.v}'\n",
          "mlv.yaml:6:17: '${params.v}' inside $'…' (bash-only quoting) cannot be quoted safely")
    fails(tmp_path, params + "  a:\n    cmd: |\n      cat <<EOF\n      ${params.v}\n      EOF\n",
          "mlv.yaml:8:7: '${params.v}' inside a here-document cannot be quoted safely")
    fails(tmp_path, params + "  a:\n    cmd: python x.py --m ${params.model}\n",
          "mlv.yaml:6:26: '${params.model}' is a mapping, which cannot be written into text; "
          "interpolate a single value such as '${params.model.a}'")


# -- foreach / matrix --------------------------------------------------------


def test_foreach_over_a_list_of_scalars_and_of_mappings(tmp_path):
    pipeline = load(tmp_path, """\
        stages:
          build:
            foreach: [us, eu]
            do:
              cmd: make ${item} --key ${key}
              outs: ["out/${item}"]
          fit:
            foreach: [{lr: 0.1}, {lr: 0.01}]
            cmd: fit --lr ${item.lr}
        """)
    assert list(pipeline.stages) == ["build@us", "build@eu", "fit@0", "fit@1"]
    assert pipeline.stages["build@eu"].cmd == ("make eu --key eu",)
    assert pipeline.stages["build@eu"].outs == ("out/eu",)
    assert pipeline.stages["fit@1"].cmd == ("fit --lr 0.01",)
    assert pipeline.stages["fit@1"].line == 7


def test_foreach_over_a_params_mapping_records_only_its_own_entry(tmp_path):
    pipeline = load(tmp_path, """\
        params:
          models: {rf: {depth: 8}, gb: {depth: 3}}
        stages:
          train:
            foreach: ${params.models}
            do:
              cmd: train --name ${key} --depth ${item.depth}
        """)
    assert pipeline.stages["train@gb"].cmd == ("train --name gb --depth 3",)
    assert pipeline.stages["train@rf"].params == {"models.rf.depth": 8}
    assert pipeline.stages["train@gb"].params == {"models.gb.depth": 3}


def test_matrix_generates_the_product_named_by_values(tmp_path):
    pipeline = load(tmp_path, """\
        stages:
          sweep:
            matrix:
              lr: [0.1, 0.01]
              model: [rf, {name: gb}]
            cmd: fit --lr ${item.lr} --m ${key}
            outs: ["models/${key}"]
        """)
    assert list(pipeline.stages) == ["sweep@0.1-rf", "sweep@0.1-model1", "sweep@0.01-rf", "sweep@0.01-model1"]
    assert pipeline.stages["sweep@0.01-rf"].cmd == ("fit --lr 0.01 --m 0.01-rf",)
    assert pipeline.stages["sweep@0.1-model1"].outs == ("models/0.1-model1",)


# -- errors ------------------------------------------------------------------


def test_errors_carry_file_line_column_and_stage(tmp_path):
    error = fails(tmp_path, "stages:\n  train:\n    cmd: x\n    dpes: [a]\n",
                  "mlv.yaml:4:5: unknown key 'dpes' in stage 'train'. Did you mean 'deps'?")
    assert (error.path, error.line, error.column, error.stage) == ("mlv.yaml", 4, 5, "train")
    assert isinstance(error, UsageError) and error.exit_code == 2
    assert "Valid keys: cmd, call, kind, deps, outs" in str(error)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "mlv.yaml:1:1: the file is empty; add a 'stages:' section"),
        ("# only a comment\n", "mlv.yaml:1:1: the file is empty"),
        ("stages: [a\n", "mlv.yaml:2:1: invalid YAML: expected ',' or ']'"),
        ("stages:\n  a: {deps: [${params.x}]}\n", "mlv.yaml:2:15: invalid YAML: "),
        ("- a\n", "mlv.yaml:1:1: expected a mapping with 'stages:' and 'params:', got a list"),
        ("stage: {}\n", "mlv.yaml:1:1: unknown top-level key 'stage'. Did you mean 'stages'?"),
        ("vars: {}\nstages: {}\n", "mlv.yaml:1:1: unknown top-level key 'vars' (mlv reads params from the 'params:'"),
        ("params: {}\n", "mlv.yaml:1:1: no 'stages:' section; add one"),
        ("params: {a.b: 1}\nstages: {}\n", "mlv.yaml:1:10: param name 'a.b' contains '.'"),
        ("params: {a: 1, a: 2}\nstages: {}\n", "mlv.yaml:1:16: duplicate key 'a' (first defined at line 1)"),
        ("stages:\n  a: {cmd: x}\n  a: {cmd: y}\n",
         "mlv.yaml:3:3: duplicate stage 'a' (first defined at line 2); rename"),
        ("stages:\n  a:\n    cmd: x\n    cmd: y\n", "mlv.yaml:4:5: duplicate key 'cmd' (first defined at line 3)"),
        ("stages:\n  a b: {cmd: x}\n", "mlv.yaml:2:3: stage name 'a b' may use only letters, digits"),
        ("stages:\n  a: echo hi\n", "mlv.yaml:2:6: stage 'a' must be a mapping (cmd:, deps:, outs:, …), got text"),
        ("stages:\n  a: {deps: [x]}\n", "mlv.yaml:2:3: stage 'a' has no 'cmd', 'call' or 'kind'; add one"),
        ("stages:\n  a: {cmd: x, kind: train}\n", "mlv.yaml:2:15: stage 'a' has both 'cmd' and 'kind'; keep one"),
        ("stages:\n  a: {call: pkg.mod.func}\n",
         "mlv.yaml:2:13: 'call' must name a function as 'package.module:function'"),
        ("stages:\n  a: {kind: trian}\n", "mlv.yaml:2:13: unknown stage kind 'trian'. Did you mean 'train'?"),
        ("stages:\n  a: {kind: train, out: m}\n",
         "mlv.yaml:2:3: stage 'a' (kind train) needs 'estimator'; add estimator: …"),
        ("stages:\n  a: {kind: package, model: m, data: d, out: p, outz: [m]}\n",
         "mlv.yaml:2:49: unknown key 'outz' in stage 'a'. Did you mean 'out'?"),
        ("stages:\n  a: {kind: train, dpes: [m]}\n",
         "mlv.yaml:2:20: unknown key 'dpes' in stage 'a'. Did you mean 'deps'?"),
        ("stages:\n  a: {cmd: x, outs: m}\n",
         "mlv.yaml:2:21: 'outs' must be a list of paths, got text; write outs: [m]"),
        ("stages:\n  a: {cmd: [x, 3]}\n", "mlv.yaml:2:16: each command must be non-empty text, got an integer"),
        ("stages:\n  a: {cmd: '  '}\n", "mlv.yaml:2:12: each command must be non-empty text"),
        ("stages:\n  a: {cmd: x, desc: 3}\n", "mlv.yaml:2:21: 'desc' must be text, got an integer"),
        ("stages:\n  a: {cmd: x, resources: {gpus: 1}}\n",
         "mlv.yaml:2:33: unknown resource 'gpus'. Did you mean 'gpu'?"),
        ("stages:\n  a: {cmd: x, resources: {gpu: -1}}\n", "mlv.yaml:2:32: resource 'gpu' must be a whole number ≥ 0"),
        ("stages:\n  a: {cmd: x, resources: {cpus: true}}\n", "mlv.yaml:2:33: resource 'cpus' must be a whole number"),
        ("stages:\n  a: {cmd: x, resources: {memory: 4 parsecs}}\n", "mlv.yaml:2:35: memory '4 parsecs' is not a size"),
        ("stages:\n  a: {cmd: x, resources: 2}\n", "mlv.yaml:2:26: 'resources' must be a mapping"),
    ],
)
def test_malformed_files_are_refused_with_where_and_how(tmp_path, text, message):
    fails(tmp_path, text, message)


def test_flow_list_with_interpolation_gets_a_quoting_hint(tmp_path):
    fails(tmp_path, "stages:\n  a: {cmd: x, deps: [${params.x}]}\n", "mlv.yaml:2:")
    with pytest.raises(PipelineError, match=re.escape('quote values with \'${…}\': ["${params.a}"]')):
        load(tmp_path, "stages:\n  a: {cmd: x, deps: [${params.x}]}\n")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(PipelineError, match=r"^mlv\.yaml: no such file; create it") as caught:
        load_pipeline(tmp_path / "mlv.yaml", root=tmp_path)
    assert caught.value.line is None
    (tmp_path / "mlv.yaml").write_bytes(b"stages: {a: {cmd: \xff}}\n")
    with pytest.raises(PipelineError, match=r"^mlv\.yaml: not UTF-8 text \(byte 18 is b'\\xff'\)"):
        load_pipeline(tmp_path / "mlv.yaml", root=tmp_path)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etc/passwd", "mlv.yaml:3:16: out '/etc/passwd' is absolute; write it relative to the repository root"),
        ("../elsewhere", "mlv.yaml:3:16: out '../elsewhere' leads outside the repository"),
        ("a/../..", "mlv.yaml:3:16: out 'a/../..' leads outside the repository"),
        (".", "mlv.yaml:3:16: out '.' is the repository root itself"),
        (".mlv/cache", "mlv.yaml:3:16: out '.mlv/cache' is inside '.mlv/', which mlv manages"),
        ("src/.git/hooks", "mlv.yaml:3:16: out 'src/.git/hooks' is inside '.git/', which git manages"),
        (".GIT", "mlv.yaml:3:16: out '.GIT' is inside '.GIT/', which git manages"),
        ("mlv.lock", "mlv.yaml:3:16: out 'mlv.lock' is mlv's own file 'mlv.lock'"),
        ("params.yaml", "mlv.yaml:3:16: out 'params.yaml' is mlv's own file 'params.yaml'"),
        ("data/raw.mlv", "mlv.yaml:3:16: out 'data/raw.mlv' is a pointer file ('*.mlv')"),
    ],
)
def test_outputs_must_stay_inside_the_repository(tmp_path, path, message):
    fails(tmp_path, f"stages:\n  a:\n    outs: [ok, {path}]\n    cmd: x\n", message)


def test_deps_and_wdir_keep_out_of_git_and_mlv_but_may_read_mlvs_own_files(tmp_path):
    fails(tmp_path, "stages:\n  a: {cmd: x, deps: [.git/HEAD]}\n",
          "mlv.yaml:2:22: dep '.git/HEAD' is inside '.git/', which git manages; read it from elsewhere")
    fails(tmp_path, "stages:\n  a: {cmd: x, wdir: .mlv}\n", "mlv.yaml:2:21: wdir '.mlv' is inside '.mlv/'")
    fails(tmp_path, "stages:\n  a: {cmd: x, wdir: .git, outs: [hooks/x]}\n", "mlv.yaml:2:21: wdir '.git' is inside '.git/'")
    (tmp_path / "params.yaml").write_text("lr: 1\n")
    assert load(tmp_path, "stages:\n  a: {cmd: x, deps: [params.yaml]}\n").stages["a"].deps == ("params.yaml",)


def test_paths_escaping_through_wdir_are_refused(tmp_path):
    fails(tmp_path, "stages:\n  a: {cmd: x, wdir: src, deps: [../../x]}\n",
          "mlv.yaml:2:33: dep '../../x' (from wdir 'src') leads outside the repository")
    fails(tmp_path, "stages:\n  a: {cmd: x, wdir: ../up}\n", "mlv.yaml:2:21: wdir '../up' leads outside")
    fails(tmp_path, "stages:\n  a: {cmd: x, outs: [m], metrics: [m]}\n",
          "mlv.yaml:2:35: 'm' is in both 'outs' and 'metrics'; keep it in one")
    fails(tmp_path, "stages:\n  a: {cmd: x, outs: [m, ./m]}\n", "mlv.yaml:2:25: './m' is listed twice in 'outs'")


def test_undefined_interpolation_points_at_the_expression_and_lists_neighbours(tmp_path):
    head = "params:\n  split: 0.2\n  model: {n_estimators: 200, max_depth: 8}\nstages:\n"
    error = fails(tmp_path, head + "  a:\n    cmd: python t.py --depth ${params.model.max_deph}\n",
                  "mlv.yaml:6:30: 'params.model' has no key 'max_deph'. Did you mean 'params.model.max_depth'? "
                  "Keys of 'params.model': max_depth, n_estimators")
    assert error.stage == "a"
    fails(tmp_path, head + "  a:\n    cmd: >-\n      python t.py\n      --split ${split}\n",
          "mlv.yaml:8:15: unknown name 'split'; names defined here: params. Did you mean '${params.split}'?")
    fails(tmp_path, head + "  a: {cmd: 'echo ${item}'}\n",
          "mlv.yaml:5:18: '${item}' is only defined in a stage with 'foreach:' or 'matrix:'")
    fails(tmp_path, head + "  a: {cmd: x, outs: ['m/${params.split.x}']}\n",
          "mlv.yaml:5:25: 'params.split' is a number, so it has no key 'x'")
    fails(tmp_path, head + "  a: {cmd: 'echo ${params.split'}\n", "mlv.yaml:5:18: unterminated or nested '${'")
    fails(tmp_path, head + "  a: {cmd: x, params: [model.depth]}\n",
          "mlv.yaml:5:24: param 'model.depth' is not defined: 'params.model' has no key 'depth'.")
    fails(tmp_path, head + "  a: {cmd: x, params: [params.split]}\n",
          "mlv.yaml:5:24: param 'params.split' is not defined: write 'split', as names here are relative")
    fails(tmp_path, head + "  a: {cmd: x, params: '${params.split}'}\n",
          "mlv.yaml:5:23: 'params' must be a list of param names, e.g. params: [model.max_depth]")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("foreach: []\n    cmd: x", "mlv.yaml:3:14: 'foreach' needs a non-empty list or mapping, got a list"),
        ("foreach: 3\n    cmd: x", "mlv.yaml:3:14: 'foreach' needs a non-empty list or mapping, got an integer"),
        ("foreach: [1]\n    matrix: {a: [1]}\n    cmd: x", "mlv.yaml:4:5: stage 'a' has both 'foreach' and 'matrix'"),
        ("matrix: {lr: 0.1}\n    cmd: x", "mlv.yaml:3:18: matrix axis 'lr' must be a non-empty list, got a number"),
        ("foreach: [1, '1']\n    cmd: x", "mlv.yaml:2:3: stage 'a@1' is generated twice"),
        ("foreach: [1]\n    cmd: x\n    do: {cmd: y}", "mlv.yaml:4:5: with 'do:', put 'cmd' inside 'do:'"),
        ("cmd: x\n    do: {cmd: y}", "mlv.yaml:4:5: 'do' cannot be used here ('do' goes with 'foreach')"),
    ],
)
def test_foreach_and_matrix_errors(tmp_path, body, message):
    fails(tmp_path, f"stages:\n  a:\n    {body}\n", message)


def test_unsafe_yaml_tags_are_refused_without_running_anything(tmp_path):
    text = "stages:\n  a: {cmd: !!python/object/apply:os.system ['touch pwned']}\n"
    fails(tmp_path, text, "mlv.yaml:2:12: unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'")
    assert not (tmp_path / "pwned").exists()


def test_kind_settings_and_custom_kinds(tmp_path):
    (tmp_path / "mlv.yaml").write_text("stages:\n  s: {kind: rank, data: [a.parquet, b], top: 5}\n")
    pipeline = load_pipeline(tmp_path / "mlv.yaml", root=tmp_path,
                             kinds={"rank": Kind("rank", inputs=("data",), keys=("top",))})
    assert pipeline.stages["s"].settings == {"data": ["a.parquet", "b"], "top": 5}
    assert pipeline.stages["s"].deps == ("a.parquet", "b")
    fails(tmp_path, "stages:\n  s: {kind: package, model: m, out: p, data: 3}\n",
          "mlv.yaml:2:46: 'data' must be a path or a list of paths, got an integer")


def test_a_kinds_check_points_at_the_setting_it_refuses(tmp_path):
    train = "stages:\n  t:\n    kind: train\n    estimator: sklearn.linear_model.Ridge\n    data: d.csv\n" \
            "    target: y\n    out: m\n"
    fails(tmp_path, train + "    device: tpu\n", "mlv.yaml:8:13: 'device': must be one of cpu, gpu, auto; got 'tpu'")
    fails(tmp_path, train + "    split: {test: 1.5}\n", "mlv.yaml:8:19: 'split.test': must be a fraction between 0 and 1")
    fails(tmp_path, "stages:\n  l: {kind: label, data: d.csv, out: o.csv, rules: [r.py:a, 'r.py']}\n",
          "mlv.yaml:2:61: 'rules.1': must name a function as file.py:function")
    spec = load(tmp_path, train + "    device: gpu\n    metrics: met.json\n").stages["t"]
    assert spec.resources.gpu == 1 and spec.outs == ("m",) and spec.metrics == ("met.json",)
    assert spec.settings["metrics"] == "met.json"  # the kind reads where to write its metrics


def test_a_nested_output_setting_is_an_out_and_a_functions_file_is_a_dep(tmp_path):
    spec = load(tmp_path, "stages:\n  l:\n    kind: label\n    data: d.csv\n    rules: [src/r.py:a, src/r.py:b, "
                          "pkg.mod:c]\n    out: o.parquet\n    review: {size: 5, out: q.csv}\n").stages["l"]
    assert spec.deps == ("d.csv", "src/r.py") and spec.outs == ("o.parquet", "q.csv")


def test_pure_helpers_doctests():
    assert doctest.testmod(mlv.pipelines.interpolate).failed == 0


def test_design_example_builds_a_dag_through_the_kind_input(tmp_path):
    from mlv.engine.dag import build_graph

    pipeline = load(tmp_path, DESIGN_EXAMPLE)
    dag = build_graph(pipeline.stages.values(), exists=lambda path: path in {"data/raw", "src/prepare.py"})
    assert dag.edges() == [("prepare", "train")]


def test_foreach_keys_that_cannot_name_a_stage_are_refused_with_the_key(tmp_path):
    text = 'params:\n  keys: {"a b": 1, "$(touch pwned)": 2}\nstages:\n  s:\n    foreach: ${params.keys}\n' \
           '    do: {cmd: "echo ${item}", outs: ["o-${key}"]}\n'
    fails(tmp_path, text, "mlv.yaml:5:14: foreach key 'a b' names the stage 's@a b', so it may use only letters")
    assert not (tmp_path / "pwned").exists()


def test_foreach_list_values_that_cannot_name_a_stage_are_numbered(tmp_path):
    spec = load(tmp_path, 'stages:\n  s:\n    foreach: ["a b", "data/x.csv", 0.5]\n    do: {cmd: "echo ${item}"}\n')
    assert list(spec.stages) == ["s@0", "s@1", "s@0.5"]
    assert spec.stages["s@1"].cmd == ("echo data/x.csv",)


def test_foreach_over_number_keys_names_stages_and_params_by_them(tmp_path):
    spec = load(tmp_path, "params:\n  sizes: {10: a, 20: b}\nstages:\n  s:\n    foreach: ${params.sizes}\n"
                          "    do: {cmd: \"echo ${key} ${item}\"}\n")
    assert list(spec.stages) == ["s@10", "s@20"]
    assert spec.stages["s@10"].params == {"sizes.10": "a"}


def test_a_matrix_too_big_to_run_is_refused_before_it_is_expanded(tmp_path):
    axes = ", ".join(f"a{i}: [{', '.join(map(str, range(10)))}]" for i in range(6))
    fails(tmp_path, f"stages:\n  s:\n    matrix: {{{axes}}}\n    cmd: echo\n",
          "mlv.yaml:3:13: 'matrix' would make 1,000,000 stages; at most 10,000 are allowed")


def test_nested_aliases_that_explode_are_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = "params:\n" + "".join(f"  {line}\n" for line in lines) + "stages:\n  s: {cmd: echo}\n"
    (tmp_path / "mlv.yaml").write_text(text)
    with pytest.raises(UsageError, match="too many aliases"):
        load_pipeline(tmp_path / "mlv.yaml", root=tmp_path)


def test_a_recursive_alias_is_refused(tmp_path):
    (tmp_path / "mlv.yaml").write_text("params:\n  a: &a [1, *a]\nstages:\n  s: {cmd: echo}\n")
    with pytest.raises(UsageError, match="refers to itself"):
        load_pipeline(tmp_path / "mlv.yaml", root=tmp_path)


def test_a_users_stage_kind_registers_through_the_mlv_kinds_entry_point_group(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "userkind-1.0.dist-info").mkdir(parents=True)
    (site / "userkind-1.0.dist-info/METADATA").write_text("Metadata-Version: 2.1\nName: userkind\nVersion: 1.0\n")
    (site / "userkind-1.0.dist-info/entry_points.txt").write_text("[mlv.kinds]\nfeaturize = userkind_mod:FEATURIZE\n")
    (site / "userkind_mod.py").write_text("from mlv.pipelines.kinds import Kind\n"
                                         "FEATURIZE = Kind('featurize', inputs=('data', 'vocab'), outputs=('table',))\n")
    monkeypatch.syspath_prepend(str(site))
    (tmp_path / "x.csv").write_text("a\n")
    spec = load(tmp_path, "stages:\n  f: {kind: featurize, data: x.csv, vocab: v.txt, table: y.parquet}\n").stages["f"]
    assert spec.kind == "featurize" and spec.deps == ("x.csv", "v.txt")  # the kind's input settings are deps
    error = fails(tmp_path, "stages:\n  f: {kind: featurise, data: x.csv}\n", "mlv.yaml:2:13: unknown stage kind")
    assert "Did you mean 'featurize'?" in str(error) and "label" in str(error)  # built-ins register the same way


def test_a_broken_kind_plugin_is_named_not_a_traceback(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "brokenkind-2.0.dist-info").mkdir(parents=True)
    (site / "brokenkind-2.0.dist-info/METADATA").write_text("Metadata-Version: 2.1\nName: brokenkind\nVersion: 2.0\n")
    (site / "brokenkind-2.0.dist-info/entry_points.txt").write_text("[mlv.kinds]\nbad = no_such_module:KIND\n")
    monkeypatch.syspath_prepend(str(site))
    (tmp_path / "mlv.yaml").write_text("stages:\n  f: {kind: bad}\n")
    with pytest.raises(UsageError, match=r"entry point 'bad = no_such_module:KIND' \(group mlv.kinds, from brokenkind"):
        load_pipeline(tmp_path / "mlv.yaml", root=tmp_path)


# -- sweeps record their values (issue 11) -------------------------------------


def test_matrix_and_foreach_stages_record_the_item_values_they_use_as_params(tmp_path):
    pipeline = load(tmp_path, """\
        params:
          lr: 0.1
        stages:
          sweep:
            matrix:
              depth: [2, 3]
              seed: [7]
            cmd: fit --depth ${item.depth} --lr ${params.lr}
            desc: "seed ${item.seed}"
          each:
            foreach: [us, eu]
            do:
              cmd: make ${item}
              outs: ["out/${key}"]
          grid:
            foreach: [{lr: 0.1, n: 5}]
            do: {call: "pkg.mod:fit", params: "${item}"}
        """)
    assert pipeline.stages["sweep@3-7"].params == {"item.depth": 3, "lr": 0.1}  # desc is not what it computes
    assert pipeline.stages["each@eu"].params == {"item": "eu", "key": "eu"}
    assert pipeline.stages["grid@0"].params == {"item.lr": 0.1, "item.n": 5}


def test_a_sweeps_values_enter_the_definition_once(tmp_path):
    pipeline = load(tmp_path, "stages:\n  s:\n    matrix: {a: [1, 2]}\n    cmd: echo ${item.a}\n")
    one, two = pipeline.stages["s@1"].definition(), pipeline.stages["s@2"].definition()
    assert one["params"] == {"item.a": 1} and two["params"] == {"item.a": 2}
    assert {k: v for k, v in one.items() if k not in ("params", "cmd")} == \
           {k: v for k, v in two.items() if k not in ("params", "cmd")}


def test_a_param_named_like_the_sweep_value_is_refused(tmp_path):
    fails(tmp_path, "params:\n  item: {a: 1}\nstages:\n  s:\n    foreach: [x]\n    do: {cmd: \"echo ${params.item.a} "
          "${item}\"}\n", "mlv.yaml:4:3: the param 'item.a' would be recorded under the same name as '${item}'")


def test_a_kind_under_matrix_gets_its_params_mapping_resolved(tmp_path):
    (tmp_path / "mlv.yaml").write_text(textwrap.dedent("""\
        stages:
          t:
            matrix: {max_depth: [2, 3]}
            kind: k
            params: {max_depth: "${item.max_depth}", fixed: 1}
            data: in.csv
        """))
    kind = Kind("k", inputs=("data",), keys=("params",))
    pipeline = load_pipeline(tmp_path / "mlv.yaml", root=tmp_path, kinds={"k": kind})
    assert pipeline.stages["t@3"].settings["params"] == {"max_depth": 3, "fixed": 1}
    assert pipeline.stages["t@3"].params == {"item.max_depth": 3}


def test_matrix_with_do_says_to_write_the_keys_beside_matrix(tmp_path):
    """The README once showed ``matrix:`` + ``do:``; it failed with "stage 'sweep@2' has no 'cmd'"."""
    error = fails(tmp_path, "stages:\n  sweep:\n    matrix: {d: [2, 3]}\n    do:\n      cmd: echo ${item.d}\n",
                  "mlv.yaml:4:5: 'do' goes with 'foreach'; with 'matrix', write the stage's keys next to it, "
                  "as DVC does: matrix: {...}\n    cmd: ...")
    assert "has no 'cmd'" not in str(error)


def test_a_kinds_input_pattern_is_the_stage_outputs_and_files_it_matches(tmp_path):
    text = ("stages:\n  train:\n    matrix: {d: [3, 8]}\n    cmd: echo\n    outs: [\"models/rf-${item.d}\"]\n"
            "  best:\n    kind: select\n    models: [models/rf-*, models/old]\n    metric: auc\n    out: models/best\n")
    (tmp_path / "models/rf-1").mkdir(parents=True)  # added data matches (its pointer says so) ...
    (tmp_path / "models/rf-1.mlv").write_text("")
    (tmp_path / "models/rf-2").mkdir()  # ... a leftover folder no stage writes does not
    spec = load(tmp_path, text).stages["best"]
    assert spec.settings["models"] == ["models/rf-1", "models/rf-3", "models/rf-8", "models/old"]
    assert spec.deps == ("models/old", "models/rf-1", "models/rf-3", "models/rf-8")
    assert "models/best" not in spec.deps  # its own output never matches
    fails(tmp_path, text.replace("rf-*", "gbm-*"),
          "mlv.yaml:8:14: 'models' pattern 'models/gbm-*' matches no stage output and no added data")


def test_a_pattern_never_crosses_a_slash(tmp_path):
    text = ("stages:\n  a: {cmd: echo, outs: [m/x/deep]}\n  b: {cmd: echo, outs: [m/y]}\n"
            "  best: {kind: select, models: ['m/*'], metric: auc, out: best}\n")
    assert load(tmp_path, text).stages["best"].settings["models"] == ["m/y"]
    for outside in ("/tmp/*", "../*"):
        fails(tmp_path, text.replace("m/*", outside), f"mlv.yaml:4:33: 'models' pattern '{outside}' leads outside")


def test_a_pattern_matches_metrics_and_plots_files_as_the_outputs_they_are(tmp_path):
    text = ("stages:\n  a: {cmd: echo, metrics: [r/a.json]}\n  b: {cmd: echo, plots: [r/b.csv]}\n"
            "  c: {cmd: echo, outs: [r/c]}\n  best: {kind: select, models: ['r/*'], metric: auc, out: best}\n")
    assert load(tmp_path, text).stages["best"].settings["models"] == ["r/a.json", "r/b.csv", "r/c"]
