"""Progress where a person waits, seen as a person sees it: the real `mlv` on a pseudo-terminal.

- `mlv add` of one big file moves its bar while the bytes go in (not `0.0/N MB` until done);
- the checkout step of `mlv pull` counts files and bytes;
- off a terminal there are no bars at all;
- Dask's "Port 8787 is already in use" warning never reaches mlv's output, and no dashboard
  link is printed when nothing can serve it (bokeh is not installed in the test environment).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import struct
import subprocess
import termios
from pathlib import Path

import pytest
from helpers import MLV, make_tree, run_mlv

BIG = 256 * 1024 * 1024


def on_tty(repo: Path, *args: str, timeout: float = 120) -> tuple[int, str]:
    """Run `mlv ARGS` with stdout and stderr on a 160-column pseudo-terminal; its exit code and all it drew."""
    import pty

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    proc = subprocess.Popen([os.fspath(MLV), *args], cwd=repo, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "160"}, close_fds=True)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError as exc:  # EIO: every writer of the terminal is gone
                if exc.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
        return proc.wait(timeout=timeout), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def amounts(text: str, unit: str = "MB") -> list[tuple[float, float]]:
    """Every ``done/total MB`` a byte bar drew."""
    return [(float(a), float(b)) for a, b in re.findall(rf"(\d+\.\d)/(\d+\.\d) {unit}", text)]


@pytest.fixture
def plain(tmp_path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    assert run_mlv(root, "init", "--no-scm").returncode == 0
    return root


def big_file(path: Path) -> None:
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as f:
        f.writelines(block[:-8] + i.to_bytes(8, "little") for i in range(BIG // len(block)))  # distinct blocks, like real data


def test_add_of_one_big_file_shows_bytes_as_they_go_on_a_terminal(plain):
    big_file(plain / "big.bin")
    code, drawn = on_tty(plain, "add", "big.bin")
    assert code == 0, drawn
    seen = amounts(drawn)
    assert seen, f"no byte bar was drawn:\n{drawn!r}"
    total = BIG / 1e6
    assert all(t == pytest.approx(total, abs=0.1) for _, t in seen)
    between = [d for d, _ in seen if 0 < d < total - 0.1]
    assert between, f"the bar never showed bytes between 0 and the total: {sorted(set(seen))}"
    assert "added big.bin" in drawn


def test_no_bar_off_a_terminal(plain):
    big_file(plain / "big.bin")
    done = run_mlv(plain, "add", "big.bin")
    assert done.returncode == 0 and amounts(done.stdout + done.stderr) == [] and done.stderr == ""


def test_the_checkout_step_of_pull_counts_files_and_bytes(plain, tmp_path):
    files = {f"data/part-{i:04d}.bin": os.urandom(512) + i.to_bytes(4, "little") for i in range(1200)}
    make_tree(plain, files)
    for args in (("add", "data"), ("remote", "add", "origin", str(tmp_path / "remote")), ("push",)):
        done = run_mlv(plain, *args)
        assert done.returncode == 0, done.stderr
    for path in (plain / "data").iterdir():
        path.unlink()
    code, drawn = on_tty(plain, "pull")
    assert code == 0, drawn
    counts = re.findall(r"(\d+)/1200 files", drawn)
    assert counts, f"the checkout bar did not count files:\n{drawn!r}"
    assert amounts(drawn, "kB"), f"the checkout bar did not show bytes:\n{drawn!r}"
    assert sorted(p.name for p in (plain / "data").iterdir()) == sorted(Path(p).name for p in files)


def test_a_taken_dashboard_port_never_leaks_a_warning_and_no_dead_link_is_printed(plain):
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        taken.bind(("127.0.0.1", 8787))
        taken.listen()
    except OSError:  # something already holds it: taken all the same
        taken.close()
        taken = None
    try:
        (plain / "dask-cluster.yaml").write_text("local: {processes: true, workers: 1}\n")
        (plain / "mlv.yaml").write_text("stages:\n  hello:\n    cmd: echo hi > out.txt\n    outs: [out.txt]\n")
        code, drawn = on_tty(plain, "run")
    finally:
        if taken is not None:
            taken.close()
    assert code == 0, drawn
    assert "1 done" in drawn
    assert "already in use" not in drawn and "8787" not in drawn, drawn
    if not _has_bokeh():  # nothing serves a dashboard: no link to it
        assert "dashboard" not in drawn.lower(), drawn


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def test_on_a_terminal_stage_lines_print_above_the_live_table_which_keeps_its_colours(plain):
    (plain / "mlv.yaml").write_text("stages:\n  hello:\n    cmd: echo 'line [dim]one[/]'; echo x > out.txt\n"
                                    "    outs: [out.txt]\n")
    code, drawn = on_tty(plain, "run")
    assert code == 0, drawn
    assert "line [dim]one[/]" in drawn  # the stage's text as it printed it, never read as markup
    assert "[green]" not in drawn and "[cyan]" not in drawn and "\x1b[32mdone" in drawn  # the table's own styles
