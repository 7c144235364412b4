"""pyarrow for manifests, without NumPy in the commands that only move bytes.

Manifests are Arrow IPC streams, so ``add`` and ``status`` need pyarrow; pyarrow imports
NumPy whenever it is installed, and NumPy costs as much to import as everything else
``mlv add`` loads. Manifests never touch NumPy (paths, digests, sizes and flags go in and
out as Python lists). So a command that moves bytes and nothing else (``mlv.cli.entry``
knows which) calls ``without_numpy()`` before anything imports pyarrow, and pyarrow then
loads as it would where NumPy is not installed. Such a process must not hand Arrow data to
NumPy afterwards (``to_numpy`` would raise); every other process imports pyarrow as usual.
"""

from __future__ import annotations

import sys

_lean = False


def without_numpy() -> None:
    """Declare that this process never converts Arrow data to NumPy; call before pyarrow is imported."""
    global _lean
    _lean = True


def pyarrow():
    """pyarrow with its IPC module loaded (NumPy left out after ``without_numpy()``)."""
    if not _lean or "pyarrow" in sys.modules or "numpy" in sys.modules:
        import pyarrow
        import pyarrow.ipc  # noqa: F401

        return pyarrow
    sys.modules["numpy"] = None  # what an absent NumPy looks like to pyarrow's optional import
    try:
        import pyarrow
        import pyarrow.ipc  # noqa: F401
    finally:
        del sys.modules["numpy"]
    return pyarrow

