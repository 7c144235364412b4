"""The installed `mlv` console script, run for real: exit codes, stderr, start-up cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import MLV, make_tree, run_mlv


def test_the_script_is_installed_next_to_the_interpreter():
    assert MLV.is_file(), f"no console script at {MLV}; run `pip install -e .`"


def test_help_lists_the_data_commands():
    proc = run_mlv(MLV.parent, "--help")
    assert proc.returncode == 0
    for name in ("init", "add", "status", "checkout", "fsck", "gc"):
        assert name in proc.stdout


def test_help_does_not_import_heavy_libraries():
    """`mlv --help` must start fast: Dask, pyarrow and scikit-learn load only in commands that need them."""
    code = (
        "import sys\n"
        "from mlv.cli.main import app\n"
        "try:\n    app(['--help'])\n"
        "except SystemExit:\n    pass\n"
        "heavy = ('dask', 'distributed', 'pyarrow', 'sklearn', 'pandas')\n"
        "print('HEAVY=' + ','.join(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY="


def test_end_to_end_through_the_script(tmp_path):
    repo = tmp_path / "repo"
    make_tree(repo, {"data/raw/a.csv": "x\n1\n", "data/raw/b.csv": "y\n2\n"})
    assert run_mlv(repo, "init", "--no-scm").returncode == 0
    added = run_mlv(repo, "add", "data/raw", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)[0]["nfiles"] == 2
    status = run_mlv(repo, "status", "--json", "--exit-code")
    assert status.returncode == 0
    assert json.loads(status.stdout)[0]["state"] == "unchanged"
    (repo / "data/raw/a.csv").unlink()
    assert run_mlv(repo, "status", "--exit-code").returncode == 1
    assert run_mlv(repo, "checkout").returncode == 0
    assert (repo / "data/raw/a.csv").read_text() == "x\n1\n"
    assert run_mlv(repo, "fsck").returncode == 0


def test_errors_are_one_message_and_exit_2(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    proc = run_mlv(repo, "add", "nothing-here")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "mlv init" in proc.stderr
    run_mlv(repo, "init", "--no-scm")
    proc = run_mlv(repo, "add", "nothing-here")
    assert proc.returncode == 2
    assert "'nothing-here' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def _max_rss_kb(repo, *args: str) -> int:
    """Run the script and return its peak resident memory (KiB), asserting it succeeded."""
    proc = subprocess.Popen([str(MLV), *args], cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.stderr.read().decode()
    proc.stderr.close()
    return usage.ru_maxrss


def test_large_files_stream_with_bounded_memory(tmp_path):
    """Memory stays flat whatever the file size: add, checkout and status never hold a whole file."""
    repo = tmp_path / "repo"
    repo.mkdir()
    run_mlv(repo, "init", "--no-scm")
    (repo / "small.bin").write_bytes(b"s")
    baseline = _max_rss_kb(repo, "add", "small.bin")
    size = 96 * 1024 * 1024
    with open(repo / "big.bin", "wb") as f:  # sparse: cheap to make, still 96 MiB to read and copy
        f.truncate(size)
    limit = baseline + 48 * 1024
    assert _max_rss_kb(repo, "add", "big.bin") < limit
    (repo / "big.bin").unlink()
    assert _max_rss_kb(repo, "checkout", "big.bin") < limit
    assert (repo / "big.bin").stat().st_size == size
    assert _max_rss_kb(repo, "status", "big.bin") < limit
