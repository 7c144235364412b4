"""``kind: label`` through the real CLI: rules and people label items, every label says where it came
from, and the items no one could label go to a review queue that ``mlv label review`` or Label Studio
answers."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

RULES = '''
def refund(row):
    return "refund" if "refund" in row["text"] else None

def spam(row):
    return "spam" if "win" in row["text"] else None

def money(row):
    return "refund" if "money" in row["text"] else None
'''

TEXTS = {
    1: "please refund me",        # refund
    2: "win a prize",             # spam
    3: "win a refund now",        # refund and spam: conflict
    4: "hello there",             # nobody: unlabeled
    5: "where is my money",       # money -> refund
    6: "refund my money",         # refund and money agree: refund, source the first rule
    7: "good morning",            # unlabeled
    8: "win win refund",          # conflict
}


def items(repo: Path, texts: dict = TEXTS) -> None:
    (repo / "data").mkdir(exist_ok=True)
    pq.write_table(pa.table({"ticket_id": list(texts), "text": list(texts.values()),
                             "amount": [float(i * 10) for i in texts]}), repo / "data/tickets.parquet")
    (repo / "src").mkdir(exist_ok=True)
    (repo / "src/rules.py").write_text(RULES)


def pipeline(repo: Path, *, rules: str = "[src/rules.py:refund, src/rules.py:spam, src/rules.py:money]",
             human: str | None = "labels/human.csv", review: str = "{size: 50, out: labels/review.csv}",
             extra: str = "") -> None:
    lines = ["stages:", "  label:", "    kind: label", "    data: data/tickets.parquet", "    id: ticket_id",
             f"    rules: {rules}"]
    lines += [f"    human: {human}"] if human else []
    lines += [f"    review: {review}", "    out: data/labeled.parquet"]
    lines += [f"    {line}" for line in extra.splitlines()]
    (repo / "mlv.yaml").write_text("\n".join(lines) + "\n")


def human(repo: Path, text: str) -> None:
    (repo / "labels").mkdir(exist_ok=True)
    (repo / "labels/human.csv").write_text(textwrap.dedent(text))


def labeled(repo: Path) -> dict:
    """``{ticket_id: (label, label_source)}`` of the stage's output."""
    rows = pq.read_table(repo / "data/labeled.parquet").to_pylist()
    return {r["ticket_id"]: (r["label"], r["label_source"]) for r in rows}


def review_rows(repo: Path, path: str = "labels/review.csv") -> list[dict]:
    with open(repo / path, newline="") as f:
        return list(csv.DictReader(f))


def test_labels_carry_their_sources_and_human_labels_win(repo, cli):
    items(repo)
    human(repo, """\
        id,label,annotator,time
        1,spam,ann,2026-01-01T00:00:00Z
        3,refund,ann,2026-01-01T00:00:00Z
        42,spam,ann,2026-01-01T00:00:00Z
        """)
    pipeline(repo)
    cli("run")
    assert labeled(repo) == {
        1: ("spam", "human:labels/human.csv"),  # the person overrides the refund rule
        2: ("spam", "rule:spam"),
        3: ("refund", "human:labels/human.csv"),  # a conflict a person settled
        4: (None, None),
        5: ("refund", "rule:money"),
        6: ("refund", "rule:refund"),  # refund and money agree: the first rule that gave it
        7: (None, None),
        8: (None, None),  # refund and spam disagree: null, not a guess
    }
    table = pq.read_table(repo / "data/labeled.parquet")
    assert table.column_names == ["ticket_id", "text", "amount", "label", "label_source"]
    assert table.schema.field("label_source").type == pa.string()
    record = cli("show", "label").stdout
    assert "42" in record and "not in 'data/tickets.parquet'" in record  # the unknown id is a warning


def test_conflicts_are_left_null_and_queued_before_unlabeled_items_by_id(repo, cli):
    items(repo)
    pipeline(repo, human=None)
    cli("run")
    queue = review_rows(repo)
    assert [(r["ticket_id"], r["reason"], r["candidates"]) for r in queue] == [
        ("3", "conflict", "refund|spam"), ("8", "conflict", "refund|spam"),
        ("4", "unlabeled", ""), ("7", "unlabeled", "")]
    assert list(queue[0]) == ["ticket_id", "text", "amount", "reason", "candidates", "margin", "label"]
    assert queue[0]["text"] == "win a refund now" and queue[0]["margin"] == "" and queue[0]["label"] == ""
    pipeline(repo, human=None, review="{size: 3, out: labels/review.csv}")
    cli("run")
    assert [r["ticket_id"] for r in review_rows(repo)] == ["3", "8", "4"]


def test_a_rerun_is_up_to_date_and_a_changed_human_file_reruns(repo, cli):
    items(repo)
    human(repo, "id,label\n4,greeting\n")
    pipeline(repo)
    cli("run")
    records = sorted((repo / ".mlv/runs").iterdir())
    cli("run")
    assert sorted((repo / ".mlv/runs").iterdir()) == records  # nothing ran
    assert labeled(repo)[4] == ("greeting", "human:labels/human.csv")
    assert [r["ticket_id"] for r in review_rows(repo)] == ["3", "8", "7"]  # human-labeled items never queue
    human(repo, "id,label\n4,greeting\n7,greeting\n")
    cli("run")
    assert labeled(repo)[7] == ("greeting", "human:labels/human.csv")


def test_labels_of_mixed_types_become_text_and_the_stage_says_so(repo, cli):
    items(repo)
    (repo / "src/rules.py").write_text("def long(row):\n    return 1 if len(row['text']) > 12 else None\n")
    human(repo, "id,label\n2,short\n")
    pipeline(repo, rules="[src/rules.py:long]")
    cli("run")
    got = labeled(repo)
    assert got[1] == ("1", "rule:long") and got[2] == ("short", "human:labels/human.csv")
    assert "label column is text" in cli("show", "label").stdout
    human(repo, "id,label\n")
    cli("run")
    assert pq.read_table(repo / "data/labeled.parquet").schema.field("label").type == pa.int64()
    human(repo, "id,label\n2,0\n")  # a person's "0" in a CSV is the rules' 0, not text
    cli("run")
    assert pq.read_table(repo / "data/labeled.parquet").schema.field("label").type == pa.int64()
    assert labeled(repo)[2] == (0, "human:labels/human.csv")


def test_a_rule_that_raises_fails_the_stage_naming_the_rule_and_the_item(repo, cli):
    items(repo)
    (repo / "src/rules.py").write_text(RULES + "\ndef broken(row):\n    return 1 / (row['ticket_id'] - 5)\n")
    pipeline(repo, rules="[src/rules.py:refund, src/rules.py:broken]", human=None)
    result = cli("run", code=1)
    output = result.stdout + result.stderr + cli("show", "label").stdout
    assert "ZeroDivisionError" in output  # the rule's own traceback
    assert "rule src/rules.py:broken raised on the item ticket_id=5" in output
    assert "stage 'label' (mlv.yaml:2)" in output
    assert not (repo / "data/labeled.parquet").exists()


@pytest.mark.parametrize(("rules", "message"), [
    ("[src/rules.py:refund, src/rules.py:spamm]", "'rules.1': 'src/rules.py' defines no function 'spamm'; did you mean"),
    # a missing rule file is a missing dep, which the pipeline names before any preflight
    ("[src/rules.py:refund, src/nope.py:spam]", "reads 'src/nope.py', but no stage produces it"),
    ("[src/rules.py:refund, src.rules:nope]", "'rules.1': 'src.rules' defines no function 'nope'"),
    ("[nosuchpkg.rules:spam]", "'rules.0': module 'nosuchpkg' cannot be found"),
])
def test_a_rule_that_does_not_exist_is_exit_2_naming_stage_setting_and_line(repo, cli, rules, message):
    items(repo)
    pipeline(repo, rules=rules, human=None)
    result = cli("run", code=2)
    assert f"mlv.yaml:2: stage 'label'{'' if message.startswith('reads') else ','} {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (repo / "mlv.lock").exists()  # nothing ran


def test_rules_by_module_run_from_the_repo_root(repo, cli):
    items(repo)
    (repo / "src/__init__.py").write_text("")
    pipeline(repo, rules="[src.rules:refund, src.rules:spam]", human=None)
    cli("run")
    assert labeled(repo)[1] == ("refund", "rule:refund") and labeled(repo)[3] == (None, None)


def test_a_missing_id_column_is_named(repo, cli):
    items(repo)
    pipeline(repo, human=None)
    (repo / "mlv.yaml").write_text((repo / "mlv.yaml").read_text().replace("id: ticket_id", "id: ticket"))
    result = cli("run", code=2)
    assert "mlv.yaml:2: stage 'label', 'id': 'ticket' is not a column of 'data/tickets.parquet'" in result.stderr


def test_label_review_appends_answers_from_stdin_and_the_rerun_uses_them(repo, cli, monkeypatch):
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(repo / "no-gitconfig"))  # no user.name: $USER names the annotator
    monkeypatch.setenv("USER", "ana")
    items(repo)
    human(repo, "id,label,annotator,time\n1,spam,bo,2026-01-01T00:00:00Z\n")
    pipeline(repo)
    cli("run")
    before = (repo / "labels/human.csv").read_text()
    assert [r["ticket_id"] for r in review_rows(repo)] == ["3", "8", "4", "7"]
    result = cli.runner.invoke(cli.app, ["label", "review", "labels/review.csv"], input="spam\n\ngreeting\nq\n")
    assert result.exit_code == 0, result.output
    assert "ticket_id=3" in result.stdout and "text: win a refund now" in result.stdout
    assert "candidates: refund, spam" in result.stdout and "[4/4] ticket_id=7" in result.stdout  # then q
    text = (repo / "labels/human.csv").read_text()
    assert text.startswith(before)  # appended; nothing rewritten
    added = list(csv.DictReader(text.splitlines()))[1:]
    assert [(r["id"], r["label"], r["annotator"]) for r in added] == [("3", "spam", "ana"), ("4", "greeting", "ana")]
    assert all(r["time"].endswith("Z") and r["time"][:4].isdigit() for r in added)
    cli("run")  # the human file is a dep: the stage runs again
    got = labeled(repo)
    assert got[3] == ("spam", "human:labels/human.csv") and got[4] == ("greeting", "human:labels/human.csv")
    assert [r["ticket_id"] for r in review_rows(repo)] == ["8", "7"]
    # a second session: what is answered is not asked again; end of input stops like q
    result = cli.runner.invoke(cli.app, ["label", "review", "labels/review.csv"], input="refund\n")
    assert result.exit_code == 0 and "ticket_id=8" in result.stdout and "ticket_id=7" in result.stdout
    assert (repo / "labels/human.csv").read_text().splitlines()[-1].startswith("8,refund,ana,")


def test_label_review_creates_the_file_named_by_human_and_names_a_queue_no_stage_writes(repo, cli):
    items(repo)
    pipeline(repo, human=None)
    cli("run")
    result = cli("label", "review", "labels/review.csv", code=2)
    assert "stage 'label' has no 'human' file" in result.stderr
    result = cli.runner.invoke(cli.app, ["label", "review", "labels/review.csv", "--human", "labels/new.csv"],
                               input="refund\n")
    assert result.exit_code == 0, result.output
    lines = (repo / "labels/new.csv").read_text().splitlines()
    assert lines[0] == "id,label,annotator,time" and lines[1].startswith("3,refund,")
    (repo / "other.csv").write_text("ticket_id,reason,candidates,margin,label\n")
    assert "no label stage in mlv.yaml writes its review queue to 'other.csv'" in cli(
        "label", "review", "other.csv", code=2).stderr


def test_a_label_studio_round_trip(repo, cli):
    items(repo)
    pipeline(repo, human=None, review="{out: labels/review.json, format: label-studio}")
    cli("run")
    tasks = json.loads((repo / "labels/review.json").read_text())
    assert [t["data"]["ticket_id"] for t in tasks] == [3, 8, 4, 7]
    assert tasks[0]["data"]["text"] == "win a refund now" and tasks[0]["data"]["mlv_reason"] == "conflict"
    assert [(p["model_version"], p["result"][0]["value"]["choices"]) for p in tasks[0]["predictions"]] == [
        ("rule:refund", ["refund"]), ("rule:spam", ["spam"])]
    assert tasks[0]["predictions"][0]["result"][0]["type"] == "choices" and "predictions" not in tasks[2]
    # what Label Studio exports once a person has worked through the imported tasks
    export = []
    for number, task in enumerate(tasks, 1):
        annotations = []
        if task["data"]["ticket_id"] == 3:
            annotations = [_annotation(number, "refund", "2026-03-01T10:00:00Z"),
                           _annotation(number, "spam", "2026-03-02T10:00:00Z")]  # changed their mind: newest wins
        elif task["data"]["ticket_id"] == 4:
            annotations = [_annotation(number, "greeting", "2026-03-01T10:00:00Z")]
        elif task["data"]["ticket_id"] == 8:
            annotations = [{**_annotation(number, "refund", "2026-03-01T10:00:00Z"), "was_cancelled": True,
                            "result": []}]  # skipped in Label Studio
        export.append({"id": 100 + number, "data": task["data"], "annotations": annotations,
                       "predictions": task.get("predictions", []), "project": 1,
                       "created_at": "2026-02-28T09:00:00Z", "updated_at": "2026-03-02T10:00:00Z"})
    (repo / "labels/export.json").write_text(json.dumps(export))
    pipeline(repo, human="labels/export.json", review="{out: labels/review.json, format: label-studio}")
    cli("run")
    got = labeled(repo)
    assert got[3] == ("spam", "human:labels/export.json") and got[4] == ("greeting", "human:labels/export.json")
    assert got[8] == (None, None) and got[2] == ("spam", "rule:spam")
    assert [t["data"]["ticket_id"] for t in json.loads((repo / "labels/review.json").read_text())] == [8, 7]


def _annotation(task: int, choice: str, when: str) -> dict:
    return {"id": task * 10, "completed_by": 1, "was_cancelled": False, "ground_truth": False, "task": task,
            "created_at": when, "updated_at": when, "lead_time": 3.2,
            "result": [{"id": "r1", "from_name": "label", "to_name": "item", "type": "choices", "origin": "manual",
                        "value": {"choices": [choice]}}]}


def test_the_review_queue_is_the_models_least_confident_items(repo, cli):
    api = pytest.importorskip("mlv.api", reason="mlv.api (load_package) is not in this tree yet")
    import random

    rng = random.Random(7)
    (repo / "data").mkdir()
    train = [(rng.uniform(0, 100), rng.uniform(-1, 1)) for _ in range(90)]
    pq.write_table(pa.table({"amount": [a for a, _ in train], "x": [x for _, x in train],
                             "label": ["refund" if a + 20 * x + rng.gauss(0, 15) > 60 else
                                       "spam" if a + rng.gauss(0, 15) < 30 else "other" for a, x in train]}),
                   repo / "data/train.parquet")
    words = ["please refund", "win big", "win a refund", "hello", "good day", "my money back"]
    texts = {i: words[i % len(words)] for i in range(1, 31)}
    pq.write_table(pa.table({"ticket_id": list(texts), "text": list(texts.values()),
                             "amount": [rng.uniform(0, 100) for _ in texts], "x": [rng.uniform(-1, 1) for _ in texts]}),
                   repo / "data/tickets.parquet")
    (repo / "src").mkdir()
    (repo / "src/rules.py").write_text(RULES)
    human(repo, "id,label\n4,other\n")
    (repo / "mlv.yaml").write_text(textwrap.dedent("""\
        stages:
          train:
            kind: train
            estimator: sklearn.linear_model.LogisticRegression
            data: data/train.parquet
            target: label
            features: [amount, x]
            out: models/lr
          package:
            kind: package
            model: models/lr
            data: data/train.parquet
            out: models/pkg
          label:
            kind: label
            data: data/tickets.parquet
            id: ticket_id
            rules: [src/rules.py:refund, src/rules.py:spam, src/rules.py:money]
            human: labels/human.csv
            model: models/pkg
            review: {size: 6, out: labels/review.csv}
            out: data/labeled.parquet
        """))
    cli("run")
    # recomputed here from the model's own probabilities: unlabeled or conflicting, not human-labeled
    tickets = pq.read_table(repo / "data/tickets.parquet")
    got = labeled(repo)
    eligible = [i for i, row in enumerate(tickets.to_pylist()) if got[row["ticket_id"]] == (None, None)]
    assert len(eligible) > 6 and 4 not in [tickets["ticket_id"][i].as_py() for i in eligible]
    predicted = api.load_package(repo / "models/pkg").predict(tickets.take(eligible))
    probabilities = [c for c in predicted.column_names if c.startswith("proba_")]
    assert len(probabilities) == 3
    margins = []
    for position, i in enumerate(eligible):
        top = sorted((predicted[c][position].as_py() for c in probabilities), reverse=True)
        margins.append((top[0] - top[1], tickets["ticket_id"][i].as_py()))
    expected = sorted(margins)[:6]
    queue = review_rows(repo)
    assert [int(r["ticket_id"]) for r in queue] == [ticket for _, ticket in expected]
    assert [float(r["margin"]) for r in queue] == pytest.approx([margin for margin, _ in expected])
    assert {r["reason"] for r in queue} <= {"conflict", "unlabeled"}
    # the same queue as Label Studio tasks: the model's top class is a pre-annotation with its probability
    (repo / "mlv.yaml").write_text((repo / "mlv.yaml").read_text().replace("labels/review.csv", "labels/review.json"))
    cli("run")
    tasks = json.loads((repo / "labels/review.json").read_text())
    assert [t["data"]["ticket_id"] for t in tasks] == [ticket for _, ticket in expected]
    model = [p for p in tasks[0]["predictions"] if p["model_version"] == "model"]
    top = max(probabilities, key=lambda c: predicted[c][eligible.index(
        tickets["ticket_id"].to_pylist().index(expected[0][1]))].as_py())
    assert model[0]["result"][0]["value"]["choices"] == [top[len("proba_"):]] and 0 < model[0]["score"] <= 1


def test_a_later_human_line_wins_and_the_id_column_may_keep_its_name(repo, cli):
    items(repo)
    human(repo, "ticket_id,label\n2,refund\n5,spam\n2,greeting\n6,\n")
    pipeline(repo)
    cli("run")
    got = labeled(repo)
    assert got[2] == ("greeting", "human:labels/human.csv") and got[5] == ("spam", "human:labels/human.csv")
    assert got[6] == ("refund", "rule:refund")  # an empty label is no label
