"""Plots: stage outputs drawn by `mlv plots show|diff` into one self-contained HTML page of inline SVG,
and `mlv trace --html` drawing the lineage graph the same way. The pages are parsed, not grepped:
the charts must hold the series' points where the data puts them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

from helpers import GIT_ENV, commit_all, git, make_tree

SVG = "{http://www.w3.org/2000/svg}"

TRAIN = """\
import os, sys
rate = float(sys.argv[1])
os.makedirs("plots", exist_ok=True)
with open("plots/loss.csv", "w") as f:
    f.write("step,loss\\n")
    for i in range(5):
        f.write(f"{i},{1.0 / (1 + rate * i):.4f}\\n")
with open("plots/cm.csv", "w") as f:
    f.write("actual,predicted\\n")
    pairs = [("cat", "cat"), ("cat", "dog"), ("dog", "dog"), ("dog", "dog"), ("bird", "cat")]
    f.writelines(f"{a},{p}\\n" for a, p in pairs)
"""

PIPELINE = """\
params:
  rate: 0.5
stages:
  train:
    cmd: python train.py ${params.rate}
    deps: [train.py]
    plots:
      - plots/loss.csv: {x: step, y: loss, title: Training loss}
      - plots/cm.csv: {template: confusion, x: actual, y: predicted}
"""


def project(repo: Path) -> None:
    make_tree(repo, {"train.py": TRAIN, "mlv.yaml": PIPELINE})


def page(repo: Path, printed: str) -> tuple[ET.Element, dict[str, ET.Element]]:
    """The page mlv printed the path of, parsed; and each chart's <svg> by its section caption."""
    path = Path(printed.strip())
    assert path.is_absolute() and path.is_file() and path.is_relative_to(repo)
    text = path.read_text()
    assert "<script" not in text.lower() and "http://" not in text.replace(
        "http://www.w3.org/", "").replace("https://vega.github.io/", "")  # nothing to load from elsewhere
    root = ET.fromstring(text.split("\n", 1)[1])  # after <!DOCTYPE html>
    charts = {}
    for section in root.iter("section"):
        charts[section.find("h2").text] = section.find(f"{SVG}svg")
    return root, charts


def marks(svg: ET.Element, role: str) -> list[ET.Element]:
    """The data marks of a kind (``mark-symbol``, ``mark-line``, ``mark-rect``, …), not axes' or legends'."""
    return [child for group in svg.iter(f"{SVG}g") if {role, "role-mark"} <= set((group.get("class") or "").split())
            for child in group]


def point_positions(svg: ET.Element) -> list[tuple[float, float]]:
    found = []
    for p in marks(svg, "mark-symbol"):
        x, y = re.match(r"translate\(([-\d.]+),([-\d.]+)\)", p.get("transform")).groups()
        found.append((float(x), float(y)))
    return sorted(found)


def loss_rows(repo: Path) -> list[tuple[int, float]]:
    lines = (repo / "plots/loss.csv").read_text().split()[1:]
    return [(int(a), float(b)) for a, b in (line.split(",") for line in lines)]


def test_plots_are_stage_outputs_locked_and_left_visible_to_git(git_repo, cli):
    project(git_repo)
    cli("run")
    lock = (git_repo / "mlv.lock").read_text()
    assert "plots/loss.csv:" in lock and "plots/cm.csv:" in lock
    ignored = subprocess.run(["git", "check-ignore", "-q", "plots/loss.csv"], cwd=git_repo, env=GIT_ENV)
    assert ignored.returncode == 1  # not ignored: committed and diffed like metrics
    (git_repo / "plots/loss.csv").unlink()
    assert cli.json("run")[0]["state"] == "cached"  # restored from the store by the digest in the lock
    assert loss_rows(git_repo)[1] == (1, 0.6667)


def test_plots_show_draws_every_point_where_the_data_puts_it(git_repo, cli):
    project(git_repo)
    cli("run")
    result = cli("plots", "show", "-o", "report")
    assert result.stdout.strip() == str(git_repo / "report" / "index.html")
    _, charts = page(git_repo, result.stdout)
    assert set(charts) == {"plots/loss.csv", "plots/cm.csv"}
    points = point_positions(charts["plots/loss.csv"])
    rows = loss_rows(git_repo)
    assert len(points) == len(rows) == 5
    # x grows with step; the loss falls, so each point sits lower on the page (larger SVG y) than the last
    assert [x for x, _ in points] == sorted(x for x, _ in points) and len({x for x, _ in points}) == 5
    ys = [y for _, y in points]
    assert ys == sorted(ys) and ys[0] < ys[-1]
    # the y pixel is linear in the loss: equal loss gaps give equal pixel gaps
    (l0, l1, l4), (y0, y1, y4) = (rows[0][1], rows[1][1], rows[4][1]), (ys[0], ys[1], ys[4])
    assert abs((y1 - y0) / (y4 - y0) - (l1 - l0) / (l4 - l0)) < 0.01
    line = marks(charts["plots/loss.csv"], "mark-line")
    assert len(line) == 1 and len(re.findall(r"[ML]", line[0].get("d"))) == 5
    text = " ".join(t.text or "" for t in charts["plots/loss.csv"].iter(f"{SVG}text"))
    assert "Training loss" in text


def test_confusion_template_counts_each_actual_predicted_pair(git_repo, cli):
    project(git_repo)
    cli("run")
    _, charts = page(git_repo, cli("plots", "show", "plots/cm.csv").stdout)
    assert list(charts) == ["plots/cm.csv"]
    cells = marks(charts["plots/cm.csv"], "mark-rect")
    pairs = [line.split(",") for line in (git_repo / "plots/cm.csv").read_text().split()[1:]]
    assert len(cells) == len(set(map(tuple, pairs))) == 4  # one cell per distinct (actual, predicted)
    counts = sorted(int(t.text) for t in marks(charts["plots/cm.csv"], "mark-text"))
    assert counts == sorted([pairs.count(p) for p in map(list, set(map(tuple, pairs)))]) == [1, 1, 1, 2]


def test_plots_diff_overlays_head_and_the_workspace(git_repo, cli):
    project(git_repo)
    cli("run")
    commit_all(git_repo, "rate 0.5")
    (git_repo / "mlv.yaml").write_text(PIPELINE.replace("rate: 0.5", "rate: 2.0"))
    cli("run")
    assert cli("plots", "diff", "HEAD").stdout == cli("plots", "diff").stdout  # HEAD vs the workspace by default
    _, charts = page(git_repo, cli("plots", "diff").stdout)
    chart = charts["plots/loss.csv"]
    assert len(point_positions(chart)) == 10  # five points of each revision
    lines = marks(chart, "mark-line")
    assert len(lines) == 2 and {line.get("stroke") for line in lines}.__len__() == 2  # a colour each
    legend = {t.text for t in chart.iter(f"{SVG}text")}
    assert {"HEAD", "workspace"} <= legend
    # the steeper decay of the workspace (rate 2.0) ends lower on the page than HEAD's (rate 0.5)
    ends = sorted(float(re.findall(r"([-\d.]+),([-\d.]+)", line.get("d"))[-1][1]) for line in lines)
    assert ends[0] < ends[1]
    confusion = charts["plots/cm.csv"]
    assert len(marks(confusion, "mark-rect")) == 8  # the matrix of each revision, side by side

    commit_all(git_repo, "rate 2.0")
    assert "'nope' is not a commit" in cli("plots", "diff", "nope", code=2).stderr
    _, charts = page(git_repo, cli("plots", "diff", "HEAD~1", "HEAD", "-o", "two").stdout)
    assert {"HEAD~1", "HEAD"} <= {t.text for t in charts["plots/loss.csv"].iter(f"{SVG}text")}
    assert len(point_positions(charts["plots/loss.csv"])) == 10


def test_plots_diff_reads_an_old_revision_from_the_store(git_repo, cli):
    project(git_repo)
    cli("run")
    git(git_repo, "add", "-A")
    git(git_repo, "rm", "-q", "--cached", "plots/loss.csv")
    git(git_repo, "commit", "-q", "-m", "v1, its plot file not in git")
    assert "plots/loss.csv" not in git(git_repo, "ls-files")
    (git_repo / "mlv.yaml").write_text(PIPELINE.replace("rate: 0.5", "rate: 2.0"))
    cli("run")
    _, charts = page(git_repo, cli("plots", "diff", "HEAD").stdout)
    assert len(point_positions(charts["plots/loss.csv"])) == 10  # HEAD's version came from the store
    specs = {p["path"]: p["spec"] for p in cli.json("plots", "diff", "HEAD", "--json")}
    values = specs["plots/loss.csv"]["data"]["values"]
    assert len(values) == 10 and {v["rev"] for v in values} == {"HEAD", "workspace"}


def test_show_json_gives_the_specs_with_the_data(git_repo, cli):
    project(git_repo)
    cli("run")
    found = cli.json("plots", "show", "train")
    assert [p["path"] for p in found] == ["plots/loss.csv", "plots/cm.csv"]
    values = found[0]["spec"]["data"]["values"]
    assert [(v["step"], v["loss"]) for v in values] == loss_rows(git_repo)
    assert found[0]["spec"]["encoding"]["x"]["field"] == "step"
    assert not (git_repo / "mlv_plots").exists()
    (git_repo / "plots/cm.csv").unlink()
    result = cli("plots", "show")
    assert "note: plot file 'plots/cm.csv' is not on disk" in result.stderr
    assert set(page(git_repo, result.stdout)[1]) == {"plots/loss.csv"}


def test_json_series_in_dvcs_shape_and_default_columns(repo, cli):
    make_tree(repo, {
        "mlv.yaml": "stages:\n  eval:\n    cmd: python eval.py\n    plots: [roc.json]\n",
        "eval.py": "import json\njson.dump({'roc': [{'fpr': f / 4, 'tpr': min(1, f / 2)} for f in range(5)]}, "
                   "open('roc.json', 'w'))\n",
    })
    cli("run")
    found = cli.json("plots", "show")
    spec = found[0]["spec"]
    assert spec["encoding"]["x"]["field"] == "step" and spec["encoding"]["y"]["field"] == "tpr"  # DVC's defaults
    assert [v["step"] for v in spec["data"]["values"]] == [0, 1, 2, 3, 4]
    _, charts = page(repo, cli("plots", "show").stdout)
    assert len(point_positions(charts["roc.json"])) == 5


def test_a_bad_plots_entry_is_exit_2_naming_the_line(repo, cli):
    make_tree(repo, {"mlv.yaml": textwrap.dedent("""\
        stages:
          train:
            cmd: python train.py
            plots:
              - plots/loss.csv: {x: step, template: lineal}
        """)})
    result = cli("plots", "show", code=2)
    assert "mlv.yaml:5:" in result.stderr and "template 'lineal'" in result.stderr and "'linear'" in result.stderr
    (repo / "mlv.yaml").write_text("stages:\n  t:\n    cmd: x\n    plots:\n      - a.csv: {colour: red}\n")
    result = cli("run", code=2)
    assert "mlv.yaml:5:17:" in result.stderr and "unknown plot prop 'colour'" in result.stderr
    (repo / "mlv.yaml").write_text("stages:\n  t:\n    cmd: x\n    outs: [a.csv]\n    plots: [a.csv]\n")
    assert "mlv.yaml:5:" in cli("run", code=2).stderr
    assert not (repo / "mlv.lock").exists() and not (repo / "mlv_plots").exists()


def test_plot_file_problems_are_clear_errors(repo, cli):
    make_tree(repo, {"mlv.yaml": "stages:\n  t:\n    cmd: python t.py\n    plots:\n      - p.csv: {y: loss}\n",
                     "t.py": "open('p.csv', 'w').write('step,acc\\n1,0.5\\n2\\n')\n"})
    assert "run the stage" in cli("plots", "show", code=1).stderr  # not written yet
    cli("run")
    assert "'p.csv':3: 1 values for 2 columns" in cli("plots", "show", code=1).stderr
    (repo / "p.csv").write_text("step,acc\n1,0.5\n")
    assert "no column 'loss'; its columns: step, acc" in cli("plots", "show", code=1).stderr
    assert "'nope.csv' is not a plot file" in cli("plots", "show", "nope.csv", code=2).stderr
    assert "not a git repo" in cli("plots", "diff", code=2).stderr
    assert not (repo / "mlv_plots").exists()


def test_trace_html_draws_the_lineage_graph_with_its_labels(git_repo, cli):
    project(git_repo)
    cli("run")
    lineage = cli.json("trace", "plots/loss.csv")
    printed = cli("trace", "plots/loss.csv", "--html", "lineage/trace.html").stdout
    root, _ = page(git_repo, printed)
    assert printed.strip().endswith("lineage/trace.html")
    svg = root.find(f".//{SVG}svg")
    labels = [t for t in marks(svg, "mark-text")]
    shown = {"".join(t.itertext()) for t in labels}
    runs = [n for n in lineage["nodes"] if n["type"] == "run"]
    artifacts = [n for n in lineage["nodes"] if n["type"] == "artifact"]
    assert len(labels) == len(lineage["nodes"]) == 3
    for node in artifacts:
        assert any(node["path"] in s and node["digest"][9:21] in s for s in shown)
    assert any(f"stage {runs[0]['stage']}" in s and runs[0]["run_id"] in s for s in shown)
    assert len(marks(svg, "mark-rule")) == len(lineage["edges"]) == 2
    assert len(marks(svg, "mark-symbol")) == 3
    # layered: train.py, then the run, then the plot, left to right
    x = {}
    for t in labels:
        text = "".join(t.itertext())
        name = "run" if text.startswith("stage") else next(n["path"] for n in artifacts if text.startswith(n["path"]))
        x[name] = float(re.match(r"translate\(([-\d.]+)", t.get("transform")).group(1))
    assert x["train.py"] < x["run"] < x["plots/loss.csv"]


def test_append_rows_grows_a_plot_file_row_by_row_inside_a_stage(repo, cli):
    # what mlv.api.log_plot builds on: a stage appends rows as it goes, each append a whole file
    make_tree(repo, {
        "mlv.yaml": f"stages:\n  fit:\n    cmd: {sys.executable} fit.py\n    plots: [curve.csv, curve.json]\n",
        "fit.py": textwrap.dedent("""\
            from mlv.pipelines.plots import append_rows
            for epoch in range(4):
                append_rows("curve.csv", [{"epoch": epoch, "acc": 0.5 + epoch / 10}])
                append_rows("curve.json", [{"epoch": epoch, "acc": 0.5 + epoch / 10}])
            try:
                append_rows("curve.csv", [{"acc": 1.0}])
            except Exception as exc:
                print("refused:", exc)
            """),
    })
    cli("run")
    assert (repo / "curve.csv").read_text() == "epoch,acc\n0,0.5\n1,0.6\n2,0.7\n3,0.8\n"
    assert json.loads((repo / "curve.json").read_text()) == [{"epoch": e, "acc": 0.5 + e / 10} for e in range(4)]
    assert "has columns epoch, acc" in cli("show", "fit").stdout
    specs = {p["path"]: p["spec"] for p in cli.json("plots", "show")}
    assert [v["acc"] for v in specs["curve.csv"]["data"]["values"]] == [0.5, 0.6, 0.7, 0.8]
