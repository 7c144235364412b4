"""Fuzzing what a teammate's commit (or a remote) can put in front of mlv.

Each example copies a small, real repo (git, added data, a pipeline that ran, a folder
remote holding everything), overwrites one file mlv reads — a pointer (name and content),
``mlv.lock``, ``mlv.yaml`` or ``.mlv/config.yaml`` — with random bytes or with YAML built
from hostile paths (``..``, absolute, ``.git``, NUL, names near NAME_MAX), and runs one
command through the real CLI. Whatever happens:

- the exit code is 0, 1 or 2 and there is no traceback (``Cli`` fails the test on one);
- nothing outside the repo, and nothing in ``.git/``, was written or removed;
- inside the repo, every path written or removed is in ``.mlv/``, or is removed from inside a
  tracked path (``checkout --force`` discards what is not part of its version), or is a path
  the paths rule lets mlv write (``mlv.storage.paths.problem(path) is None``; inside a
  tracked directory, no ``.git``/``.mlv`` part), and mlv's own files (``mlv.yaml``,
  pointers, the config) are never rewritten by a command that only reads them.

``MLV_FUZZ_EXAMPLES`` sets the examples per target (CI runs the default; a few thousand in
all were run before this landed, see the closing note of issue 9).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import commit_all, git_init, make_tree, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlv.cli.main import app
from mlv.storage.paths import problem
from typer.testing import CliRunner

EXAMPLES = int(os.environ.get("MLV_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

PIPELINE = """\
stages:
  prep:
    cmd: mkdir -p out && cp data/raw/a.csv out/a.csv
    deps: [data/raw]
    outs: [out]
"""

# hostile and ordinary path parts; joined into paths of one to three parts
PARTS = st.sampled_from(["..", ".", "", ".git", ".GIT", ".mlv", "hooks", "pre-commit", "config.yaml", "mlv.yaml",
                         "mlv.lock", "x.mlv", "data", "raw", "out", "a.csv", "n" * 250, "é" * 127, "sp ace", "$(id)",
                         "a\0b", "~", "-rf", "*", "C:"])
PATHS = st.one_of(
    st.lists(PARTS, min_size=1, max_size=3).map("/".join),
    st.sampled_from(["/etc/passwd", "/tmp/mlv-fuzz-outside", "../outside/x", ".git/hooks/post-checkout",
                     "data/raw", "out", "data/raw/a.csv", "mlv.yaml"]),
    st.text(min_size=1, max_size=12),
)
# names a file may have in the repo (the fuzzer writes them, so they stay inside it)
FILE_PARTS = st.sampled_from([".git", ".mlv", ".GIT", "data", "raw", "out", "x", "mlv.yaml", "mlv.lock", "sub",
                              "n" * 240, "é" * 100, "sp ace"])
FILE_NAMES = st.lists(FILE_PARTS, min_size=1, max_size=3).map("/".join)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=20), PATHS)


def digests(store_digests: list[str]):
    return st.one_of(st.sampled_from(store_digests), st.just("xxh3-128:" + "0" * 32), SCALARS)


def yaml_or_bytes(structured):
    """YAML text of ``structured``, or random bytes, or a truncated/garbled version of it."""
    as_text = structured.map(lambda d: yaml.safe_dump(d, allow_unicode=True, default_flow_style=False))
    return st.one_of(
        as_text.map(lambda t: t.encode("utf-8", errors="surrogatepass")),
        st.binary(max_size=300),
        st.tuples(as_text, st.integers(0, 200)).map(lambda p: p[0][: p[1]].encode("utf-8", errors="surrogatepass")),
        st.just(b"a: &a [x, x, x, x, x, x, x, x]\n" + b"".join(
            f"b{i}: &b{i} [{', '.join(['*a' if i == 0 else f'*b{i - 1}'] * 8)}]\n".encode() for i in range(9))),
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, list[str]]:
    """A repo that ran its pipeline and pushed everything to a folder remote; and the digests it stores."""
    base = tmp_path_factory.mktemp("fuzz-template")
    repo = base / "repo"
    repo.mkdir()
    git_init(repo)
    old = os.getcwd()
    os.chdir(repo)
    try:
        cli = invoke
        cli("init")
        make_tree(repo, {"data/raw/a.csv": "1\n", "data/raw/b.csv": "2\n", "model.bin": "m" * 1000,
                         "mlv.yaml": PIPELINE, "src/keep.py": "print('mine')\n"})
        cli("add", "data/raw", "model.bin")
        cli("run")
        cli("remote", "add", "origin", "../remote")
        cli("push")
        commit_all(repo, "template")
        found = sorted({line.split("digest: ")[1].strip().strip("'")
                        for p in [*repo.glob("*.mlv"), *repo.glob("data/*.mlv"), repo / "mlv.lock"]
                        if p.is_file() for line in p.read_text().splitlines() if "digest: " in line})
    finally:
        os.chdir(old)
    (base / "outside").mkdir()
    (base / "outside/precious.txt").write_text("do not touch\n")
    return base, found


def invoke(*args: str) -> None:
    """Run ``mlv ARGS`` in-process and insist that it succeeded."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0 and result.exception is None or isinstance(result.exception, SystemExit), \
        (args, result.stdout, result.stderr)


def tree_digest(root: Path, *, skip: tuple[str, ...] = ()) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if rel in skip:
                continue
            h.update(rel.encode(errors="surrogateescape") + b"\0")
            h.update(os.readlink(path).encode() if path.is_symlink() else path.read_bytes())
    return h.hexdigest()


def attempt(template, tmp_path: Path, writes: dict[str, bytes], command: list[str], *, reads_only: bool) -> None:
    """Copy the template, apply ``writes`` (repo-relative path -> bytes), run ``command``, check the invariants."""
    base, _ = template
    work = Path(os.path.realpath(tmp_path)) / f"case-{os.urandom(4).hex()}"
    shutil.copytree(base, work, symlinks=True)
    repo = work / "repo"
    for rel, data in writes.items():
        path = repo / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.rmtree(path)
            path.write_bytes(data)
        except OSError:
            shutil.rmtree(work)
            return  # the fuzzer asked for a file the filesystem cannot hold: nothing to test
    outside = tree_digest(work / "outside")
    git_dir = tree_digest(repo / ".git", skip=("index",))
    before = snapshot(repo)
    old = os.getcwd()
    os.chdir(repo)
    try:
        result = CliRunner().invoke(app, command)
    finally:
        os.chdir(old)
    try:
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            tb = "".join(traceback.format_exception(*result.exc_info))
            pytest.fail(f"`mlv {' '.join(command)}` raised with {writes!r}:\n{tb}")
        assert result.exit_code in (0, 1, 2), (command, writes, result.exit_code, result.stderr)
        assert tree_digest(work / "outside") == outside, (command, writes)
        assert tree_digest(repo / ".git", skip=("index",)) == git_dir, (command, writes)
        after = snapshot(repo)
        changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
        made = {"run": "mlv.lock", "add": "src.mlv"}.get(command[0])  # the one own file the command writes
        for path in changed:
            if path.startswith(".mlv/") and path not in (".mlv/config.yaml", ".mlv/.gitignore"):
                continue
            inside = path in TRACKED or path.startswith(tuple(f"{t}/" for t in TRACKED))
            if inside and path not in after:
                continue  # checkout --force discards what is not part of a tracked directory's version
            if reads_only or path != made:
                assert problem(path, written=not inside) is None, (command, writes, path, result.stderr)
    finally:
        shutil.rmtree(work)


TRACKED = ("data/raw", "model.bin", "out")  # the template's tracked paths: added data and a stage's output
READERS = [["status"], ["checkout", "--force"], ["checkout"], ["pull", "--force"], ["fsck"], ["gc", "--grace", "0"],
           ["trace", "out"], ["run", "--dry-run"], ["push"]]


@FUZZ
@given(data=st.data())
def test_fuzzed_pointer_files(template, tmp_path, data):
    _, found = template
    pointer = st.fixed_dictionaries({"path": PATHS, "digest": digests(found), "size": SCALARS},
                                    optional={"nfiles": SCALARS, "extra": SCALARS})
    name = data.draw(st.one_of(FILE_NAMES, st.sampled_from(["data/raw", "model.bin", ".git", ".mlv", "mlv.yaml"])))
    content = data.draw(yaml_or_bytes(pointer))
    command = data.draw(st.sampled_from(READERS))
    attempt(template, tmp_path, {f"{name}.mlv": content}, command, reads_only=True)


@FUZZ
@given(data=st.data())
def test_fuzzed_lock_files(template, tmp_path, data):
    _, found = template
    out = st.fixed_dictionaries({"digest": digests(found), "size": SCALARS}, optional={"nfiles": SCALARS})
    stage = st.fixed_dictionaries({"fingerprint": digests(found), "run_id": SCALARS,
                                   "deps": st.dictionaries(PATHS, digests(found), max_size=2),
                                   "params": st.dictionaries(st.text(max_size=5), SCALARS, max_size=2),
                                   "outs": st.dictionaries(PATHS, out, max_size=3)})
    lock = st.fixed_dictionaries({"schema": st.sampled_from([1, 1, 2, "x"]),
                                  "stages": st.dictionaries(st.sampled_from(["prep", "other", "x y"]), stage,
                                                            max_size=2)})
    content = data.draw(yaml_or_bytes(lock))
    command = data.draw(st.sampled_from([*READERS, ["run"]]))
    attempt(template, tmp_path, {"mlv.lock": content}, command, reads_only=command != ["run"])


@FUZZ
@given(data=st.data())
def test_fuzzed_pipelines(template, tmp_path, data):
    paths = st.lists(PATHS, max_size=2)
    stage = st.fixed_dictionaries(
        {"cmd": st.sampled_from(["true", "false", "echo hi"])},
        optional={"deps": paths, "outs": paths, "metrics": paths, "wdir": PATHS, "params": st.lists(SCALARS, max_size=2),
                  "foreach": st.one_of(st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=6), SCALARS,
                                                                                     max_size=3))})
    pipeline = st.fixed_dictionaries({"stages": st.dictionaries(st.text(min_size=1, max_size=6), stage, max_size=3)},
                                     optional={"params": st.dictionaries(st.text(max_size=6), SCALARS, max_size=3)})
    content = data.draw(yaml_or_bytes(pipeline))
    if data.draw(st.booleans()):  # commands that write their outputs, to any path the YAML names
        text = content.decode("utf-8", errors="replace")
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("stages"), dict):
            for spec in doc["stages"].values():
                listed = spec.get("outs") if isinstance(spec, dict) else None
                outs = [o for o in listed if isinstance(o, str) and "\0" not in o] if isinstance(listed, list) else []
                if outs:
                    spec["cmd"] = " && ".join(f"mkdir -p $(dirname {shlex.quote(o)}) && echo x > {shlex.quote(o)}"
                                              for o in outs)
            content = yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", errors="surrogatepass")
    command = data.draw(st.sampled_from([["status"], ["run", "--dry-run"], ["run"], ["run", "--force"], ["dag"],
                                         ["add", "src"], ["checkout", "--force"]]))
    attempt(template, tmp_path, {"mlv.yaml": content}, command, reads_only=command[0] not in ("run", "add"))


@FUZZ
@given(data=st.data())
def test_fuzzed_config(template, tmp_path, data):
    remote = st.fixed_dictionaries({"url": st.one_of(PATHS, st.sampled_from(["../remote", "file://../remote", "memory://x"]))},
                                   optional={"endpoint_url": SCALARS, "region": SCALARS, "profile": SCALARS})
    config = st.fixed_dictionaries(
        {},
        optional={"cache": st.fixed_dictionaries({}, optional={"dir": PATHS, "link": st.sampled_from(
                      ["auto", "copy", "hardlink", "symlink", "reflink", "x"]), "verify": SCALARS}),
                  "gc": st.fixed_dictionaries({}, optional={"grace": SCALARS}),
                  "remotes": st.dictionaries(st.sampled_from(["origin", "o t", ""]), remote, max_size=2),
                  "core": st.fixed_dictionaries({}, optional={"remote": SCALARS, "mask": st.lists(SCALARS, max_size=2)})})
    content = data.draw(yaml_or_bytes(config))
    command = data.draw(st.sampled_from(READERS))
    attempt(template, tmp_path, {".mlv/config.yaml": content}, command, reads_only=True)
