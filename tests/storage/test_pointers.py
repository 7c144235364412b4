"""Pointer files (`<path>.mlv`): round-trip, and every way a hand-edit can break one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from mlv.storage.store import digest as digests
from mlv.storage.workspace import pointers
from mlv.storage.errors import ConfigError
from mlv.storage.workspace.pointers import Pointer

DIGEST = "xxh3-128:" + "ab" * 16


def write(tmp_path: Path, text: str, name: str = "raw.mlv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_round_trip_directory(tmp_path):
    ptr = Pointer(tmp_path / "raw.mlv", digests.parse(DIGEST), 1234, 20)
    pointers.dump(ptr)
    assert yaml.safe_load((tmp_path / "raw.mlv").read_text()) == {
        "path": "raw", "digest": DIGEST, "size": 1234, "nfiles": 20,
    }
    loaded = pointers.load(tmp_path / "raw.mlv", root=tmp_path)
    assert loaded == ptr
    assert loaded.is_dir and loaded.target == tmp_path / "raw"


def test_round_trip_file_has_no_nfiles(tmp_path):
    ptr = Pointer(tmp_path / "model.pkl.mlv", digests.parse(DIGEST), 0)
    pointers.dump(ptr)
    assert "nfiles" not in yaml.safe_load(ptr.file.read_text())
    loaded = pointers.load(ptr.file, root=tmp_path)
    assert loaded == ptr and not loaded.is_dir
    assert loaded.target == tmp_path / "model.pkl"


def test_dump_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    ptr = Pointer(tmp_path / "raw.mlv", digests.parse(DIGEST), 1, 1)
    pointers.dump(ptr)
    pointers.dump(Pointer(ptr.file, digests.of_bytes(b""), 2, 2))
    assert [p.name for p in tmp_path.iterdir()] == ["raw.mlv"]
    assert pointers.load(ptr.file, root=tmp_path).size == 2


def test_pointer_path():
    assert pointers.pointer_path(Path("data/raw")) == Path("data/raw.mlv")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("path: raw\ndigest: [unclosed\n", "not valid YAML", id="bad-yaml"),
        pytest.param("path: raw\n  digest: x: y\n", "not valid YAML", id="bad-indent"),
        pytest.param("", "must be a mapping", id="empty"),
        pytest.param("- path: raw\n", "must be a mapping", id="a-list"),
        pytest.param("just text\n", "must be a mapping", id="a-string"),
        pytest.param(f"path: raw\ndigest: {DIGEST}\nsize: 1\nmd5: abc\n", "unknown key 'md5'", id="unknown-key"),
        pytest.param(f"digest: {DIGEST}\nsize: 1\n", "'path'", id="no-path"),
        pytest.param(f"path: other\ndigest: {DIGEST}\nsize: 1\n", "'other'", id="wrong-path"),
        pytest.param(f"path: ../raw\ndigest: {DIGEST}\nsize: 1\n", "'path'", id="path-escapes"),
        pytest.param("path: raw\nsize: 1\n", "'digest'", id="no-digest"),
        pytest.param("path: raw\ndigest: xxh3-128:abc\nsize: 1\n", "'digest'", id="short-digest"),
        pytest.param(f"path: raw\ndigest: {DIGEST.upper()}\nsize: 1\n", "'digest'", id="upper-digest"),
        pytest.param("path: raw\ndigest: md5:" + "ab" * 16 + "\nsize: 1\n", "'digest'", id="md5-digest"),
        pytest.param(f"path: raw\ndigest: {DIGEST}\n", "'size'", id="no-size"),
        pytest.param(f"path: raw\ndigest: {DIGEST}\nsize: -1\n", "'size'", id="negative-size"),
        pytest.param(f"path: raw\ndigest: {DIGEST}\nsize: '12'\n", "'size'", id="string-size"),
        pytest.param(f"path: raw\ndigest: {DIGEST}\nsize: true\n", "'size'", id="bool-size"),
        pytest.param(f"path: raw\ndigest: {DIGEST}\nsize: 1.5\n", "'size'", id="float-size"),
        pytest.param(f"path: raw\ndigest: {DIGEST}\nsize: 1\nnfiles: -2\n", "'nfiles'", id="negative-nfiles"),
        pytest.param(f"path: raw\ndigest: {DIGEST}\nsize: 1\nnfiles: many\n", "'nfiles'", id="string-nfiles"),
    ],
)
def test_load_errors_name_the_file_and_the_problem(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(fragment)) as info:
        pointers.load(path, root=tmp_path)
    assert str(path) in str(info.value)
    assert info.value.exit_code == 2


def test_yaml_error_names_the_line(tmp_path):
    path = write(tmp_path, f"path: raw\ndigest: {DIGEST}\nsize: [1\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}:")) as info:
        pointers.load(path, root=tmp_path)
    assert re.search(re.escape(str(path)) + r":\d+:", str(info.value))
    assert "mlv add" in str(info.value) or "git checkout" in str(info.value)  # says how to fix
