"""A worker's cache and scratch directories (``storage.scratch``), against a real folder remote.

The remote is filled by a real `mlv push`; the worker side has no repo, only its cache folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import make_tree, run_mlv
from mlv.storage.workspace import pointers
from mlv.storage.remote import scratch
from mlv.storage.workspace.config import RemoteConfig
from mlv.storage.errors import MlvError
from mlv.storage.remote.access import RemoteError

FILES = {f"raw/f{i:02d}.txt": f"row {i}\n" * (i + 1) for i in range(30)} | {"raw/sub/deep.bin": b"\x00\x01" * 9}


@pytest.fixture
def pushed(tmp_path) -> tuple[Path, dict, pointers.Pointer]:
    """A repo whose ``raw`` directory is pushed to a folder remote: the remote's job settings and raw's pointer."""
    repo = tmp_path / "repo"
    make_tree(repo, FILES)
    for args in (["init", "--no-scm"], ["add", "raw"], ["remote", "add", "origin", "../remote"], ["push"]):
        result = run_mlv(repo, *args)
        assert result.returncode == 0, result.stderr
    config = RemoteConfig("origin", "../remote")
    return repo, scratch.settings(config, repo), pointers.load(repo / "raw.mlv", root=repo)


def laid_out(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_settings_carry_no_repo_path_and_reach_the_remote(pushed, tmp_path):
    _, found, _ = pushed
    assert found == {"name": "origin", "url": str(tmp_path / "remote")}  # absolute: a worker has no repo
    remote = scratch.connect(found, scratch.open_cache(tmp_path / "worker"))
    assert remote.inventory().formatted


def test_a_dep_is_laid_out_verified_and_the_scratch_directory_goes_away(pushed, tmp_path):
    _, found, ptr = pushed
    cache = scratch.open_cache(tmp_path / "worker")
    with scratch.scratch(cache, "job") as space:
        n = scratch.materialize(space, [scratch.Input("data/raw", ptr.digest, True)], scratch.connect(found, cache))
        assert n == len(FILES)
        assert laid_out(space.root) == {f"data/{k}": v.encode() if isinstance(v, str) else v for k, v in FILES.items()}
        top = space.root.parent
    assert not top.exists()


def test_a_dep_already_in_the_worker_cache_is_not_fetched_again(pushed, tmp_path):
    _, found, ptr = pushed
    cache = scratch.open_cache(tmp_path / "worker")
    with scratch.scratch(cache, "first") as space:
        scratch.materialize(space, [scratch.Input("raw", ptr.digest, True)], scratch.connect(found, cache))
    shutil.rmtree(tmp_path / "remote")  # the remote is gone: only the cache can serve the second job
    with scratch.scratch(cache, "second") as space:
        assert scratch.materialize(space, [scratch.Input("raw", ptr.digest, True)], None) == len(FILES)
        assert len(laid_out(space.root)) == len(FILES)


def test_a_dep_the_remote_lacks_is_one_error_naming_it(pushed, tmp_path):
    _, found, _ = pushed
    cache = scratch.open_cache(tmp_path / "worker")
    other = scratch.open_cache(tmp_path / "elsewhere")
    digest = other.store.put_bytes(b"never pushed")
    with scratch.scratch(cache, "job") as space, pytest.raises(RemoteError, match="dep 'data/model.bin' needs object"):
        scratch.materialize(space, [scratch.Input("data/model.bin", digest, False)], scratch.connect(found, cache))


def test_a_dep_path_outside_the_scratch_directory_is_refused(pushed, tmp_path):
    _, found, ptr = pushed
    cache = scratch.open_cache(tmp_path / "worker")
    with scratch.scratch(cache, "job") as space, pytest.raises(MlvError, match="'../escape'"):
        scratch.materialize(space, [scratch.Input("../escape", ptr.digest, True)], scratch.connect(found, cache))
    assert not (tmp_path / "worker" / "jobs" / "escape").exists()
