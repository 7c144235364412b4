"""Hardening: nothing in a committed or fetched file can make mlv write into .git/ or .mlv/,
escape the workspace, or crash with a traceback (issue 9's findings, each as a regression test)."""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import MLV, commit_all, make_tree, snapshot

DIGEST = "xxh3-128:" + "1" * 32


def locked(repo: Path, out: str, digest: str, size: int) -> None:
    """Write an mlv.lock whose one stage claims ``out`` holds the object ``digest``."""
    (repo / "mlv.lock").write_text(
        "schema: 1\nstages:\n  s:\n    fingerprint: xxh3-128:" + "0" * 32 + "\n    run_id: r1\n    deps: {}\n"
        f"    params: {{}}\n    outs:\n      {out}: {{digest: '{digest}', size: {size}}}\n"
    )


@pytest.fixture
def hook(git_repo, cli) -> tuple[str, int]:
    """An executable script in the store (as a teammate's push would leave it), not in the workspace."""
    make_tree(git_repo, {"payload.sh": "#!/bin/sh\ntouch pwned\n"})
    (added,) = cli.json("add", "payload.sh")
    (git_repo / "payload.sh").unlink()
    (git_repo / "payload.sh.mlv").unlink()
    return added["digest"], added["size"]


@pytest.mark.parametrize("out", [".git/hooks/pre-commit", ".git", ".mlv/config.yaml", "sub/.git/hooks/x",
                                 ".GIT/hooks/pre-commit", "mlv.yaml", "data.mlv", "/tmp/x", "../x"])
@pytest.mark.parametrize("command", [["checkout", "--force"], ["checkout"], ["status"]])
def test_a_lock_out_that_breaks_the_paths_rule_touches_nothing(git_repo, cli, hook, out, command):
    digest, size = hook
    (git_repo / "mlv.yaml").write_text("stages: {}\n")
    locked(git_repo, out, digest, size)
    before = snapshot(git_repo)
    hooks = sorted(os.listdir(git_repo / ".git/hooks"))
    result = cli(*command, code=2)
    assert "mlv.lock:" in result.stderr and f"'{out}'" in result.stderr
    assert snapshot(git_repo) == before
    assert sorted(os.listdir(git_repo / ".git/hooks")) == hooks


def test_pull_refuses_a_lock_out_into_git_before_fetching(git_repo, cli, hook, tmp_path):
    digest, size = hook
    cli("remote", "add", "origin", str(tmp_path / "remote"))
    cli("push")
    locked(git_repo, ".git/hooks/post-checkout", digest, size)
    subprocess.run(["rm", "-rf", str(git_repo / ".mlv/cache")], check=True)  # as in a fresh clone
    assert "'.git/hooks/post-checkout' is inside '.git/'" in cli("pull", "--force", code=2).stderr
    assert not (git_repo / ".git/hooks/post-checkout").exists()
    assert not (git_repo / ".mlv/cache").exists()  # refused before anything was fetched


@pytest.mark.parametrize("name", [".git", ".mlv", "mlv.yaml", "mlv.lock", "sub/.git", ".Mlv"])
def test_a_pointer_that_targets_git_or_mlv_is_refused_even_with_force(git_repo, cli, name):
    make_tree(git_repo, {"x": "bytes\n", "sub/keep": "k\n"})
    (added,) = cli.json("add", "x")
    (git_repo / f"{name}.mlv").write_text(f"path: {Path(name).name}\ndigest: {added['digest']}\nsize: 6\n")
    cli("remote", "add", "origin", str(git_repo.parent / "remote"))
    before = snapshot(git_repo)
    git_dir = sorted(os.listdir(git_repo / ".git"))
    for command in (["checkout", "--force"], ["checkout"], ["status"], ["pull", "--force"]):
        result = cli(*command, code=2)
        assert f"{name}.mlv: the pointer's target '{name}'" in result.stderr, result.stderr
    assert snapshot(git_repo) == before
    assert sorted(os.listdir(git_repo / ".git")) == git_dir


def test_checkout_never_writes_through_a_committed_symlink(git_repo, cli, hook, tmp_path):
    digest, size = hook
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, git_repo / "results")  # git commits symlinks as they are
    os.symlink(".git/hooks", git_repo / "tools")
    for out in ("results/run.sh", "tools/pre-commit"):
        locked(git_repo, out, digest, size)
        assert "through a symlink" in cli("checkout", "--force", code=2).stderr
    assert list(outside.iterdir()) == []
    assert not (git_repo / ".git/hooks/pre-commit").exists()


def test_a_pointer_file_reached_through_a_symlinked_folder_is_not_followed(git_repo, cli, tmp_path):
    make_tree(git_repo, {"x": "bytes\n"})
    (added,) = cli.json("add", "x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.mlv").write_text(f"path: data\ndigest: {added['digest']}\nsize: 6\n")
    os.symlink(outside, git_repo / "link")
    assert "through a symlink" in cli("checkout", "--force", "link/data", code=2).stderr
    assert sorted(p.name for p in outside.iterdir()) == ["data.mlv"]


def test_cache_dir_outside_mlv_is_refused(git_repo, cli, tmp_path):
    for value in ("/tmp/elsewhere", "../..", "../.git", "runs", "cache/../../x"):
        (git_repo / ".mlv/config.yaml").write_text(f"cache: {{dir: '{value}'}}\n")
        assert "'cache.dir'" in cli("status", code=2).stderr


# -- temp files and long names ------------------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_temp_files_a_killed_checkout_left_are_not_changes_and_are_removed(repo, cli):
    make_tree(repo, {"data/raw/a.csv": "1\n", "data/raw/b.csv": "2\n", "model.bin": "m\n"})
    cli("add", "data/raw", "model.bin")
    leftovers = [repo / f"data/raw/.mlv-{dead_pid():x}-0123abcd.tmp", repo / f".mlv-{dead_pid():x}-89abcdef.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    live = repo / f"data/raw/.mlv-{os.getppid():x}-00000000.tmp"  # a live process's: never removed
    live.write_bytes(b"in flight")
    assert cli.states() == {"data/raw": "unchanged", "model.bin": "unchanged"}
    cli("add", "data/raw")  # following the old advice records nothing new
    assert cli.json("status")[0].get("added") is None
    cli("checkout")
    assert not any(p.exists() for p in leftovers)
    assert live.exists()


def test_a_really_killed_checkout_leaves_nothing_the_next_one_reports(repo, cli):
    (repo / ".mlv/config.yaml").write_text("cache: {link: copy}\n")
    make_tree(repo, {f"data/f{i:03}.bin": os.urandom(600_000) for i in range(60)})
    cli("add", "data")
    for attempt in range(20):
        subprocess.run(["rm", "-rf", str(repo / "data")], check=True)
        proc = subprocess.Popen([os.fspath(MLV), "checkout"], cwd=repo, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            if (repo / "data").is_dir() and any(n.endswith(".tmp") for n in os.listdir(repo / "data")):
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait()
        if proc.returncode == -signal.SIGKILL:
            break
    else:
        pytest.skip("checkout always finished before it could be killed")  # the fast path: nothing to test
    assert cli.states()["data"] == "modified"  # files missing, no temp file taken for data
    assert not cli.json("status")[0].get("added")
    cli("checkout")
    assert cli.states()["data"] == "unchanged"
    assert not [n for n in os.listdir(repo / "data") if n.endswith(".tmp")]


def test_names_near_name_max_round_trip(repo, cli):
    names = {"a" * 250 + ".csv", "é" * 127, "b" * 255}
    make_tree(repo, {f"data/{n}": n[:10] for n in names} | {"data/z.csv": "z\n"})
    cli("add", "data")
    subprocess.run(["rm", "-rf", str(repo / "data")], check=True)
    cli("checkout")
    assert set(os.listdir(repo / "data")) == names | {"z.csv"}
    make_tree(repo, {"c" * 253: "x"})
    assert "too long" in cli("add", "c" * 253, code=2).stderr


# -- what used to be a traceback --------------------------------------------------------------


def test_a_name_that_is_not_utf8_is_refused_with_its_path(repo, cli):
    (repo / "d").mkdir()
    (repo / os.fsdecode(b"d/caf\xe9.csv")).write_text("x")
    result = cli("add", "d", code=2)
    assert "caf\\xe9.csv" in result.stderr and "not UTF-8" in result.stderr
    assert not (repo / "d.mlv").exists()


def test_a_symlink_loop_is_refused_with_its_path(repo, cli):
    (repo / "e").mkdir()
    os.symlink("loop", repo / "e/loop1")
    os.symlink("loop1", repo / "e/loop")
    assert "symlink loop" in cli("add", "e", code=2).stderr


def test_a_symlink_into_git_is_refused(git_repo, cli):
    (git_repo / "d").mkdir()
    os.symlink("../.git/config", git_repo / "d/config")
    assert "through a symlink" in cli("add", "d", code=2).stderr


@pytest.mark.parametrize("command", [["status"], ["checkout", "--force"], ["trace", "d", "--verify"], ["fsck"]])
def test_a_pack_deleted_while_its_index_remains_is_one_message(repo, cli, command):
    make_tree(repo, {"d/a": "a\n", "d/b": "b\n"})
    cli("add", "d")
    for pack in (repo / ".mlv/cache/packs").glob("*.pack"):
        pack.unlink()
    subprocess.run(["rm", "-rf", str(repo / "d")], check=True)
    result = cli.runner.invoke(cli.app, command)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 1)
    if command[0] == "checkout":
        assert result.exit_code == 1 and "is not in the store" in result.stderr


@pytest.mark.parametrize("file", ["d.mlv", "mlv.lock", ".mlv/config.yaml", "mlv.yaml", "dask-cluster.yaml"])
def test_binary_bytes_in_a_file_mlv_reads_are_one_message(repo, cli, file):
    make_tree(repo, {"d/a": "a\n"})
    cli("add", "d")
    (repo / "mlv.yaml").write_text("stages: {}\n")
    (repo / file).write_bytes(b"path: d\n\x80\xff\xfe binary")
    result = cli("run" if file == "dask-cluster.yaml" else "status", code=2)
    assert "not UTF-8" in result.stderr and Path(file).name in result.stderr


@pytest.mark.parametrize("out", ["null", "[a]", "{size: 3}"])
@pytest.mark.parametrize("command", [["trace", "out"], ["log", "out"], ["status"]])
def test_a_lock_out_of_the_wrong_shape_is_one_message(repo, cli, out, command):
    """Found by the fuzzer: an out that is not a mapping with a digest crashed `trace` with a traceback."""
    (repo / "mlv.yaml").write_text("stages: {}\n")
    (repo / "mlv.lock").write_text(f"schema: 1\nstages:\n  s:\n    run_id: r1\n    outs:\n      out: {out}\n")
    assert "mlv.lock" in cli(*command, code=2).stderr


LAUGHS = "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))


@pytest.mark.parametrize("file", ["d.mlv", "mlv.lock", ".mlv/config.yaml", "mlv.yaml"])
def test_a_billion_laughs_is_refused_at_once(repo, cli, file):
    make_tree(repo, {"d/a": "a\n"})
    cli("add", "d")
    (repo / "mlv.yaml").write_text("stages: {}\n")
    (repo / file).write_text("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + LAUGHS)
    started = time.monotonic()
    assert "too many aliases" in cli("status", code=2).stderr
    assert time.monotonic() - started < 5


def test_a_huge_pipeline_file_is_refused_before_it_is_parsed(repo, cli):
    with open(repo / "mlv.yaml", "w") as f:
        f.write("stages:\n")
        for i in range(700_000):
            f.write(f"  s{i}: {{cmd: echo {i}, outs: [o{i}]}}\n")
    started = time.monotonic()
    assert "larger than" in cli("run", "--dry-run", code=2).stderr
    assert time.monotonic() - started < 5


@pytest.mark.skipif(sys.platform != "linux", reason="resource limits and uids as on Linux")
def test_disk_full_in_add_and_checkout_is_one_message_and_keeps_the_repo_consistent(repo, cli):
    make_tree(repo, {"small.txt": "s\n", "big.bin": os.urandom(3_000_000)})
    cli("add", "small.txt")

    def limited() -> None:  # writes past 1 MB fail with EFBIG, as a full disk fails with ENOSPC
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    before = snapshot(repo)
    proc = subprocess.run([os.fspath(MLV), "add", "big.bin"], cwd=repo, capture_output=True, text=True,
                          preexec_fn=limited, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "the filesystem refused a write" in proc.stderr
    after = snapshot(repo)
    assert {k for k in after if not k.startswith(".mlv/cache/tmp")} == {k for k in before if not k.startswith(".mlv/cache/tmp")}
    cli("add", "big.bin")  # with room again, the same command completes
    (repo / "big.bin").unlink()
    proc = subprocess.run([os.fspath(MLV), "checkout", "--force"], cwd=repo, capture_output=True, text=True,
                          preexec_fn=limited, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "big.bin" in proc.stderr
    assert not [n for n in os.listdir(repo) if n.endswith(".tmp")]
    cli("checkout")
    assert cli.states() == {"small.txt": "unchanged", "big.bin": "unchanged"}


def _read_only_mounts_work(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    script = f"mount --bind {probe} {probe} && mount -o remount,bind,ro {probe} && ! touch {probe}/x"
    return subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True).returncode == 0


def test_a_read_only_cache_in_add_and_run_is_one_message(repo, cli, tmp_path):
    if not _read_only_mounts_work(tmp_path):
        pytest.skip("this machine cannot make a read-only mount (needs `unshare --mount` as root)")
    make_tree(repo, {"a.txt": "a\n", "mlv.yaml": "stages:\n  s: {cmd: cp a.txt b.txt, deps: [a.txt], outs: [b.txt]}\n"})
    cache = repo / ".mlv/cache"
    before = snapshot(repo)
    for args in (["add", "a.txt"], ["run"]):
        script = f"mount --bind {cache} {cache} && mount -o remount,bind,ro {cache} && exec {MLV} {' '.join(args)}"
        proc = subprocess.run(["unshare", "--mount", "sh", "-c", script], cwd=repo, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and "refused a write" in proc.stderr, proc.stderr
    assert not (repo / "a.txt.mlv").exists() and not (repo / "mlv.lock").exists()
    cached = lambda snap: {k: v for k, v in snap.items() if k.startswith(".mlv/cache/")}  # noqa: E731
    assert cached(snapshot(repo)) == cached(before)  # the store is as it was
    cli("add", "a.txt")  # writable again: the same command completes


# -- links as root ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hardlink", "symlink"])
def test_as_root_linked_files_cannot_damage_the_store(repo, cli, monkeypatch, mode):
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # what root sees, whoever runs the tests
    (repo / ".mlv/config.yaml").write_text(f"cache: {{link: {mode}}}\n")
    make_tree(repo, {"big.bin": os.urandom(700_000)})
    cli("add", "big.bin")
    (repo / "big.bin").unlink()
    result = cli("checkout")
    assert f"warning: `cache.link: {mode}` cannot protect the store when mlv runs as root" in result.stderr
    assert not (repo / "big.bin").is_symlink() and os.stat(repo / "big.bin").st_nlink == 1
    with open(repo / "big.bin", "ab") as f:
        f.write(b"x\n")
    cli("fsck")  # the stored copy is intact


@pytest.mark.parametrize("mode", ["hardlink", "symlink"])
def test_as_a_user_linked_files_are_links_to_read_only_store_files(repo, cli, monkeypatch, mode):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    (repo / ".mlv/config.yaml").write_text(f"cache: {{link: {mode}}}\n")
    make_tree(repo, {"big.bin": os.urandom(700_000)})
    cli("add", "big.bin")
    (repo / "big.bin").unlink()
    assert "warning" not in cli("checkout").stderr
    linked = (repo / "big.bin").is_symlink() if mode == "symlink" else os.stat(repo / "big.bin").st_nlink == 2
    assert linked
    assert not os.stat(repo / "big.bin").st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


# -- gc removes only what mlv wrote ----------------------------------------------------------


def test_gc_refuses_a_cache_dir_that_is_not_an_mlv_store(repo, cli):
    notes = repo / ".mlv/notes"
    make_tree(notes, {"tmp/notes.txt": "mine", "packs/notes.pack": "mine", "ab/" + "c" * 30: "mine"})
    (repo / ".mlv/config.yaml").write_text("cache: {dir: notes}\n")
    before = snapshot(repo)
    for args in (["gc", "--grace", "0"], ["gc", "--grace", "0", "--dry-run"]):
        assert "no mlv store" in cli(*args, code=2).stderr
    assert snapshot(repo) == before


def test_gc_inside_a_store_removes_only_names_it_writes(repo, cli):
    make_tree(repo, {"a.txt": "a\n"})
    cli("add", "a.txt")
    cache = repo / ".mlv/cache"
    foreign = ["tmp/notes.txt", "packs/notes.pack", "packs/README", "ab/not-a-digest", "zz/" + "z" * 30, "notes"]
    make_tree(cache, {name: "mine" for name in foreign})
    old = time.time() - 10 * 3600
    for name in foreign:
        os.utime(cache / name, (old, old))
    cli("gc", "--grace", "0")
    assert all((cache / name).read_text() == "mine" for name in foreign)
    assert cli.states() == {"a.txt": "unchanged"}


# -- mlv run never destroys unsaved bytes ----------------------------------------------------


def pipeline(repo: Path, stages: str) -> None:
    (repo / "mlv.yaml").write_text("stages:\n" + stages)


def content(repo: Path) -> dict:
    """The repo's files, less the lock files a command takes (they hold no data)."""
    return {k: v for k, v in snapshot(repo).items() if k not in (".mlv/lock", ".mlv/run.lock")}


def test_an_output_over_uncommitted_source_blocks_the_run(repo, cli):
    make_tree(repo, {"src/train.py": "print('my work')\n", "in.txt": "x\n"})
    pipeline(repo, "  s: {cmd: mkdir -p src && cp in.txt src/out.txt, deps: [in.txt], outs: [src]}\n")
    before = content(repo)
    error = cli("run", code=2).stderr
    assert "src/train.py" in error and "neither in the store nor committed to git" in error
    assert content(repo) == before
    cli("run", "--force")  # the user said so
    assert not (repo / "src/train.py").exists()


def test_an_output_over_git_tracked_files_is_a_pipeline_error(git_repo, cli):
    make_tree(git_repo, {"src/train.py": "print('my work')\n", "in.txt": "x\n"})
    commit_all(git_repo, "code")
    pipeline(git_repo, "  s: {cmd: mkdir -p src && cp in.txt src/out.txt, deps: [in.txt], outs: [src]}\n")
    for command in (["run"], ["run", "--force"], ["status"], ["run", "--dry-run"]):
        error = cli(*command, code=2).stderr
        assert "mlv.yaml:2: output 'src' of stage 's' holds 'src/train.py', which is tracked by git" in error
    assert (git_repo / "src/train.py").read_text() == "print('my work')\n"


def test_committed_metrics_may_be_rewritten(git_repo, cli):
    make_tree(git_repo, {"in.txt": "x\n"})
    pipeline(git_repo, "  s: {cmd: wc -l < in.txt > m.json, deps: [in.txt], metrics: [m.json]}\n")
    cli("run")
    commit_all(git_repo, "metrics")
    (git_repo / "in.txt").write_text("x\ny\n")
    cli("run")
    assert (git_repo / "m.json").read_text().strip() == "2"


def test_an_output_of_mlvs_own_file_is_refused(repo, cli):
    pipeline(repo, "  s: {cmd: echo > mlv.yaml, outs: [mlv.yaml]}\n")
    before = content(repo)
    assert "is mlv's own file 'mlv.yaml'" in cli("run", "--force", code=2).stderr
    assert content(repo) == before


@pytest.mark.parametrize("out", ["data", "data/raw", "data/raw/sub"])
def test_an_output_over_added_data_is_a_pipeline_error(repo, cli, out):
    make_tree(repo, {"data/raw/a.csv": "1\n", "data/raw/sub/b.csv": "2\n", "in.txt": "x\n"})
    cli("add", "data/raw")
    pipeline(repo, f"  s: {{cmd: 'mkdir -p {out} && cp in.txt {out}/x', deps: [in.txt], outs: [{out}]}}\n")
    before = content(repo)
    error = cli("run", "--force", code=2).stderr
    assert f"output '{out}' of stage 's'" in error and "data/raw.mlv" in error
    assert content(repo) == before


def test_a_failed_stages_partial_output_does_not_block_the_next_run(repo, cli):
    make_tree(repo, {"in.txt": "x\n"})
    pipeline(repo, "  s: {cmd: 'cp in.txt out.txt && test -e ok', deps: [in.txt], outs: [out.txt]}\n")
    cli("run", code=1)
    (repo / "ok").write_text("")
    cli("run")
    assert (repo / "out.txt").read_text() == "x\n"


def test_adding_a_declared_output_names_the_stage(repo, cli):
    make_tree(repo, {"in.txt": "x\n", "models/rf/w.bin": "w", "metrics.json": "{}"})
    pipeline(repo, "  train: {cmd: 'true', deps: [in.txt], outs: [models/rf], metrics: [metrics.json]}\n")
    for path, how in (("models/rf", "is"), ("models/rf/w.bin", "lies inside"), ("models", "holds"),
                      ("metrics.json", "is")):
        error = cli("add", path, code=2).stderr
        assert f"'{path}' {how} '" in error and "an output of stage 'train' (mlv.yaml:2)" in error
    assert not [p for p in repo.rglob("*.mlv") if p.is_file()]


def test_a_stage_output_that_is_a_symlink_out_of_the_repo_fails_that_stage_only(repo, cli, tmp_path):
    outside = tmp_path / "outside"
    make_tree(outside, {"secret/key.pem": "PRIVATE", "file.txt": "outside bytes"})
    make_tree(repo, {"in.txt": "x\n"})
    pipeline(repo, f"  dirlink: {{cmd: 'ln -s {outside}/secret out', deps: [in.txt], outs: [out]}}\n"
                   f"  filelink: {{cmd: 'ln -s {outside}/file.txt f.txt', deps: [in.txt], outs: [f.txt]}}\n"
                   "  fine: {cmd: 'cp in.txt fine.txt', deps: [in.txt], outs: [fine.txt]}\n")
    results = {r["stage"]: r for r in cli.json("run", code=1)}
    assert {name: r["state"] for name, r in results.items()} == {"dirlink": "failed", "filelink": "failed",
                                                                  "fine": "done"}
    assert "through a symlink, outside the repo" in results["dirlink"]["reasons"][0]
    from helpers import stored_digests
    import xxhash
    stored = stored_digests(repo)
    assert not {f"xxh3-128:{xxhash.xxh3_128_hexdigest(b)}" for b in (b"PRIVATE", b"outside bytes")} & stored
    assert (outside / "secret/key.pem").read_text() == "PRIVATE"
    cli("run", code=1)  # the links are the stage's own output: the next run clears them without a fuss
    assert (outside / "secret/key.pem").read_text() == "PRIVATE"


# -- secrets in captured output ---------------------------------------------------------------

PLANTED = {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTED1", "GITHUB_TOKEN": "ghp_plantedtoken1234",
           "DB_URL": "postgres://app:hunter2-planted@db/prod"}


def test_secret_values_never_leave_the_stage_unmasked(repo, cli, monkeypatch, tmp_path):
    for name, value in PLANTED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # a setting, not a credential: shown as it is
    (repo / ".mlv/config.yaml").write_text("core: {mask: [DB_URL]}\n")
    make_tree(repo, {"in.txt": "x\n", "steps/leak.py": "import os\n\ndef run(deps, outs, params):\n"
                     "    print('call sees', os.environ['GITHUB_TOKEN'])\n    open(outs[0], 'w').write('ok')\n"})
    half = len(PLANTED["GITHUB_TOKEN"]) // 2
    split = f"printf '%s' {PLANTED['GITHUB_TOKEN'][:half]}; sleep 0.3; printf '%s\\n' {PLANTED['GITHUB_TOKEN'][half:]}"
    pipeline(repo, "  leak:\n    cmd:\n      - echo key=$AWS_SECRET_ACCESS_KEY db=$DB_URL region=$AWS_DEFAULT_REGION\n"
                   f"      - \"{split}\"\n      - exit 3\n    deps: [in.txt]\n    outs: [o.txt]\n"
                   "  py: {call: 'steps.leak:run', deps: [in.txt], outs: [p.txt]}\n")
    result = cli("run", code=1)
    assert "key=*** db=*** region=us-east-1" in result.stderr and "***" in result.stderr
    cli("remote", "add", "origin", str(tmp_path / "remote"))
    cli("push")
    shown = cli("show", "leak").stdout + cli("show", "py").stdout
    assert "key=***" in shown and "call sees ***" in shown
    everything = b"".join(p.read_bytes() for p in (*repo.rglob("*"), *(tmp_path / "remote").rglob("*"))
                          if p.is_file())
    for value in PLANTED.values():
        assert value.encode() not in everything and value not in result.stderr + shown
