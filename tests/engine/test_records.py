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
    from mlv.storage.store.digest import parse
    from mlv.storage.store.objects import ObjectStore

    listed = json_.loads(ObjectStore.local(git_repo / ".mlv/cache").read_bytes(parse(packages)))
    assert "fakepandas==1.2" in listed and not any(p.lower().startswith("pyarrow==") for p in listed)
    assert "pyarrow" in env["other"]["mlv"]  # mlv's own versions are still there, apart
    assert env["plain"]["interpreter"] is None  # it ran no Python
    assert env["called"]["interpreter"]["path"] == sys_.executable
    cli("gc", "--grace", "0")  # the package list is kept while a record names it
    assert ObjectStore.local(git_repo / ".mlv/cache").read_bytes(parse(packages))


def test_changed_tracked_data_is_saved_before_a_stage_consumes_it(git_repo, cli):
    from helpers import commit_all, stored_digests
    import xxhash

    (git_repo / "data").mkdir()
    (git_repo / "data/x.csv").write_text("v1\n")
    cli("add", "data/x.csv")
    (git_repo / "mlv.yaml").write_text("stages:\n  s: {cmd: 'cp data/x.csv y.csv', deps: [data/x.csv], outs: [y.csv]}\n")
    cli("run")
    commit_all(git_repo, "v1")
    (git_repo / "data/x.csv").write_text("v2, never added\n")
    result = cli("run")
    assert "note: 'data/x.csv' changed since it was added; saved as a new version" in result.stderr
    assert "commit data/x.csv.mlv" in result.stderr
    assert f"xxh3-128:{xxhash.xxh3_128_hexdigest(b'v2, never added' + bytes([10]))}" in stored_digests(git_repo)
    assert cli.states("data/x.csv") == {"data/x.csv": "unchanged"}  # the pointer names the new version
    trace = cli.json("trace", "y.csv", "--verify")
    added = [n for n in trace["nodes"] if n.get("path") == "data/x.csv"]
    assert added and added[0]["origin"] == "added" and not trace["problems"]


def test_untracked_and_uncommitted_deps_are_stored_before_the_run(git_repo, cli):
    from helpers import commit_all, stored_digests
    import xxhash

    (git_repo / "src.py").write_text("print('committed')\n")
    (git_repo / "mlv.yaml").write_text("stages:\n  s: {cmd: 'cat src.py loose.txt > y.txt', deps: [src.py, loose.txt],"
                                       " outs: [y.txt]}\n")
    commit_all(git_repo, "code")
    (git_repo / "loose.txt").write_text("never added, never committed\n")
    (git_repo / "src.py").write_text("print('edited, not committed')\n")
    cli("run")
    stored = stored_digests(git_repo)
    for data in (b"never added, never committed\n", b"print('edited, not committed')\n"):
        assert f"xxh3-128:{xxhash.xxh3_128_hexdigest(data)}" in stored


def test_committed_source_is_not_copied_into_the_store(git_repo, cli):
    from helpers import commit_all, stored_digests
    import xxhash

    (git_repo / "src.py").write_text("print('committed')\n")
    (git_repo / "mlv.yaml").write_text("stages:\n  s: {cmd: 'tr a-z A-Z < src.py > y.txt', deps: [src.py], outs: [y.txt]}\n")
    commit_all(git_repo, "code")
    cli("run")
    assert f"xxh3-128:{xxhash.xxh3_128_hexdigest(b'print(' + repr('committed').encode() + b')' + bytes([10]))}" \
        not in stored_digests(git_repo)
