"""Property: upstream and downstream traces agree, whatever history a pipeline went through.

For every pair of artifacts X, Y in the workspace (stage outputs and data added with
``mlv add``, compared by (path, digest)): Y is in ``mlv trace X`` iff X is in ``mlv
trace Y --downstream``. Hypothesis draws a small DAG of ``cmd`` stages over one or two
added files, then a history of forced reruns (``mlv run --force STAGE``), param flips
(a stage reruns; flipping back restores from the run cache), edits of the added data,
and new stages appearing, each followed by ``mlv run``.

Each stage writes its name, its param and its deps' bytes, so its output's bytes say
exactly what it read (equal (path, digest) pairs have equal histories). Real CLI
(in-process), real files in a temporary directory per example, no mocks.

``MLV_TRACE_EXAMPLES`` (default 15: about 15 s on two cores) runs more examples (the test's
timeout grows with it). The property is checked on the final workspace only: shorter
histories are other examples, so every intermediate state is some example's final one.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("MLV_TRACE_EXAMPLES", "15"))
RAW = ("raw/a.txt", "raw/b.txt")


@dataclass
class Pipeline:
    """The stages (name → deps) and params as they stand; ``yaml()`` is their ``mlv.yaml``."""

    stages: dict[str, list[str]] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)

    def yaml(self) -> str:
        stages = {
            name: {"cmd": f"(echo {name} ${{params.p.{name}}}; cat {' '.join(deps)}) > out/{name}.txt",
                   "deps": deps, "outs": [f"out/{name}.txt"]}
            for name, deps in self.stages.items()
        }
        return yaml.safe_dump({"params": {"p": self.params}, "stages": stages}, sort_keys=False)


@st.composite
def histories(draw) -> tuple[int, list[tuple]]:
    """(how many added files, steps): ``("stage", name, deps)``, ``("force" | "flip", name)``, ``("edit", path)``."""
    n_raw = draw(st.integers(1, 2))
    artifacts = list(RAW[:n_raw])
    steps: list[tuple] = []
    names: list[str] = []

    def new_stage() -> tuple:
        deps = draw(st.permutations(artifacts))[:draw(st.integers(1, min(3, len(artifacts))))]
        name = f"s{len(names)}"
        names.append(name)
        artifacts.append(f"out/{name}.txt")
        return ("stage", name, deps)

    for _ in range(draw(st.integers(1, 3))):
        steps.append(new_stage())
    steps.append(("run",))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["force", "force", "flip", "edit", "stage"]))
        if kind == "stage":
            steps.append(new_stage())
        elif kind == "edit":
            steps.append(("edit", draw(st.sampled_from(RAW[:n_raw]))))
        else:
            steps.append((kind, draw(st.sampled_from(names))))
    return n_raw, steps


@contextmanager
def fresh_repo():
    """A temporary directory with ``mlv init`` done, as the cwd."""
    before = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="mlv-trace-") as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(before)


def workspace_artifacts(repo: Path) -> set[tuple[str, str]]:
    """(path, digest) of every output in mlv.lock and every pointer in the workspace."""
    lock = yaml.safe_load((repo / "mlv.lock").read_text())["stages"]
    found = {(p, o["digest"]) for entry in lock.values() for p, o in entry["outs"].items()}
    for pointer in (repo / "raw").glob("*.mlv"):
        found.add((f"raw/{pointer.name[:-4]}", yaml.safe_load(pointer.read_text())["digest"]))
    return found


def traced(cli, path: str, *flags: str) -> set[tuple[str, str]]:
    graph = cli.json("trace", path, *flags)
    assert graph["problems"] == []
    return {(n["path"], n["digest"]) for n in graph["nodes"] if n["type"] == "artifact"}


def check_traces_agree(cli, repo: Path) -> None:
    artifacts = workspace_artifacts(repo)
    up = {x: traced(cli, x[0]) for x in artifacts}
    down = {y: traced(cli, y[0], "--downstream") for y in artifacts}
    for x in artifacts:
        assert x in up[x] and x in down[x], f"{x} is missing from its own trace"
        for y in artifacts - {x}:
            assert (y in up[x]) == (x in down[y]), (
                f"{y} {'is' if y in up[x] else 'is not'} upstream of {x}, "
                f"but {x} {'is' if x in down[y] else 'is not'} downstream of {y}\n"
                f"upstream of {x}: {sorted(up[x])}\ndownstream of {y}: {sorted(down[y])}")


@pytest.mark.timeout(max(300, 5 * EXAMPLES))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories())
def test_upstream_and_downstream_traces_agree_after_any_history(cli, history):
    n_raw, steps = history
    note(f"added files: {RAW[:n_raw]}; steps: {steps}")
    pipeline = Pipeline()
    versions = dict.fromkeys(RAW[:n_raw], 0)
    with fresh_repo() as repo:
        cli("init", "--no-scm")
        (repo / "raw").mkdir()
        for path in versions:
            (repo / path).write_text(f"{path} v0\n")
        cli("add", *versions)
        for step in steps:
            if step[0] == "stage":
                pipeline.stages[step[1]] = step[2]
                pipeline.params[step[1]] = 0
            elif step[0] == "flip":
                pipeline.params[step[1]] ^= 1
            elif step[0] == "edit":
                versions[step[1]] ^= 1
                (repo / step[1]).write_text(f"{step[1]} v{versions[step[1]]}\n")
                cli("add", step[1])
            (repo / "mlv.yaml").write_text(pipeline.yaml())
            if step[0] == "force":
                cli("run", "--force", step[1])
            elif step[0] != "stage":  # new stages run with the next step that runs
                cli("run")
        cli("run")  # stages added last
        check_traces_agree(cli, repo)
