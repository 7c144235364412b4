"""The workspace: finding the repo, validating user paths, finding pointers, and the repo lock."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import fast_lock_clock, make_tree
from mlv.storage.errors import LockedError, NotARepoError, UsageError
from mlv.storage.workspace import Workspace


@pytest.fixture
def ws(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.chdir(root)
    return Workspace.init(root)[0]


@pytest.fixture
def fast_clock(monkeypatch):
    fast_lock_clock(monkeypatch)


def test_find_from_a_subdirectory(ws, monkeypatch):
    (ws.root / "a/b").mkdir(parents=True)
    monkeypatch.chdir(ws.root / "a/b")
    assert Workspace.find().root == ws.root


def test_find_outside_any_repo(tmp_path):
    with pytest.raises(NotARepoError, match="mlv init") as info:
        Workspace.find(tmp_path)
    assert info.value.exit_code == 2


def test_init_is_idempotent_and_refuses_to_nest(ws):
    again, created = Workspace.init(ws.root)
    assert not created and again.root == ws.root
    (ws.root / "sub").mkdir()
    with pytest.raises(NotARepoError, match="nested"):
        Workspace.init(ws.root / "sub")
    assert not (ws.root / "sub/.mlv").exists()


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("missing.csv", "does not exist"),
        ("../outside.csv", "outside the repo"),
        ("/", "outside the repo"),
        (".mlv/config.yaml", "'.mlv/'"),
        (".git/config", "'.git/'"),
    ],
)
def test_resolve_refuses_bad_paths(ws, path, fragment):
    (ws.root.parent / "outside.csv").write_text("x")
    with pytest.raises(UsageError, match=fragment):
        ws.resolve(path)


def test_resolve_is_relative_to_the_cwd(ws, monkeypatch):
    make_tree(ws.root, {"data/raw/a.csv": "a"})
    monkeypatch.chdir(ws.root / "data")
    assert ws.resolve("raw/a.csv") == ws.root / "data/raw/a.csv"
    assert ws.resolve("../data/raw") == ws.root / "data/raw"


def test_pointer_files_are_found_but_tracked_dirs_not_descended(ws):
    make_tree(ws.root, {
        "a.mlv": "", "data/raw.mlv": "", "data/raw/inner.mlv": "", "deep/er/m.pkl.mlv": "",
        ".mlv/x.mlv": "", "notes.txt": "",
    })
    assert [ws.rel(p) for p in ws.pointer_files()] == ["a.mlv", "data/raw.mlv", "deep/er/m.pkl.mlv"]


def test_shared_locks_coexist(ws):
    with ws.lock(), Workspace(ws.root).lock(wait=0):
        pass


def test_exclusive_lock_refuses_while_shared_is_held(ws, fast_clock):
    with ws.lock(), pytest.raises(LockedError, match="busy") as info, Workspace(ws.root).lock(exclusive=True):
        pass
    assert info.value.exit_code == 1
    with Workspace(ws.root).lock(exclusive=True):  # free again once released
        pass


def test_shared_lock_refuses_while_exclusive_is_held(ws, fast_clock):
    with ws.lock(exclusive=True), pytest.raises(LockedError, match="busy"), Workspace(ws.root).lock():
        pass


def test_exclusive_lock_waits_for_a_shared_holder(ws):
    held, release = threading.Event(), threading.Event()

    def holder():
        with Workspace(ws.root).lock():
            held.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    start = time.monotonic()
    with ws.lock(exclusive=True, wait=5):
        waited = time.monotonic() - start
    t.join()
    assert waited >= 0.2
