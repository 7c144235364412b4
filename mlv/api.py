"""mlv's Python API for notebooks and scripts.

- ``load_package(path_or_digest) -> Package``: a model package, verified before a byte of it is
  deserialized (``mlv.pipelines.packages``); ``Package.predict(table)``.

Light at import: nothing heavy (scikit-learn, skops, numpy, pyarrow) loads until it is used.
"""

from __future__ import annotations

from mlv.pipelines.packages import TRUSTED_MODULES, Package, PackageError, load_package

__all__ = ["TRUSTED_MODULES", "Package", "PackageError", "load_package"]
