"""Run records describe the stage: the interpreter that ran it, not mlv's."""

from __future__ import annotations


def test_the_record_describes_the_interpreter_that_ran_the_stage(git_repo, cli, tmp_path):
    import json as json_
    import subprocess as sp
    import sys as sys_

    venv = tmp_path / "other-venv"
    sp.run([sys_.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "fakepandas-1.2.dist-info").mkdir()
    (site / "fakepandas-1.2.dist-info/METADATA").write_text("Metadata-Version: 2.1\nName: fakepandas\nVersion: 1.2\n")
    (git_repo / "in.txt").write_text("x\n")
    (git_repo / "steps.py").write_text("def copy(deps, outs, params):\n    open(outs[0], 'w').write('c')\n")
    (git_repo / "mlv.yaml").write_text(
        "stages:\n"
        f"  other: {{cmd: '{venv}/bin/python -c \"print(1)\" > o.txt', deps: [in.txt], outs: [o.txt]}}\n"
        "  plain: {cmd: 'cp in.txt p.txt', deps: [in.txt], outs: [p.txt]}\n"
        "  called: {call: 'steps:copy', deps: [in.txt], outs: [c.txt]}\n")
    results = {r["stage"]: r for r in cli.json("run")}
    env = {name: json_.loads((git_repo / ".mlv/runs" / f"{r['run_id']}.json").read_text())["environment"]
           for name, r in results.items()}
    assert env["other"]["interpreter"]["path"] == f"{venv}/bin/python"
    packages = json_.loads(cli("show", "other", "--json").stdout)["environment"]["interpreter"]["packages"]
    from mlv.storage.digest import parse
    from mlv.storage.objects import ObjectStore

    listed = json_.loads(ObjectStore.local(git_repo / ".mlv/cache").read_bytes(parse(packages)))
    assert "fakepandas==1.2" in listed and not any(p.lower().startswith("pyarrow==") for p in listed)
    assert "pyarrow" in env["other"]["mlv"]  # mlv's own versions are still there, apart
    assert env["plain"]["interpreter"] is None  # it ran no Python
    assert env["called"]["interpreter"]["path"] == sys_.executable
    cli("gc", "--grace", "0")  # the package list is kept while a record names it
    assert ObjectStore.local(git_repo / ".mlv/cache").read_bytes(parse(packages))
