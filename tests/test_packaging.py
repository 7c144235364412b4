"""The package layout DESIGN.md promises: folders mapped into `mlv`, nothing generic at top level."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    on_disk = {"mlv"}
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([name, *rel.parts]))
    assert listed == on_disk
    assert all(name == "mlv" or name.startswith("mlv.") for name in listed)


def test_help_starts_without_heavy_imports():
    code = (
        "import sys; from typer.testing import CliRunner; from mlv.cli.main import app;"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output;"
        "heavy = [m for m in ('dask', 'distributed', 'pyarrow', 'sklearn', 'fsspec') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""


def test_storage_imports_nothing_above_it():
    for path in (ROOT / "storage").glob("*.py"):
        text = path.read_text()
        for upper in ("mlv.engine", "mlv.pipelines", "mlv.cli"):
            assert upper not in text, f"{path.name} imports {upper}"
