"""Loading a model package (what ``kind: package`` writes), re-exported by ``mlv.api``.

``load_package`` verifies a model package before a byte of it is deserialized: every
file is re-hashed against ``package.yaml``, and inside a workspace the whole directory
against the digest ``mlv.lock`` (or a pointer) records for it. Only then is the model
loaded with skops, trusting scikit-learn, NumPy and SciPy types and the types the package
lists in ``trusted``; anything else is refused. What is hashed is what is loaded: each
file is read once into memory.

Light at import: scikit-learn, skops, numpy and pyarrow load on first use.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlv.storage.errors import MlvError

TRUSTED_MODULES = ("sklearn", "numpy", "scipy")


class PackageError(MlvError):
    """A model package cannot be used: changed bytes, an untrusted type, or input that does not fit it."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | None = None, column: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.column = column


class Package:
    """A verified, loaded model package: ``digest`` (of its directory, as ``mlv.lock`` records it), ``meta``
    (``package.yaml``), and ``predict``."""

    def __init__(self, *, digest: str, meta: dict, model: object, source: str) -> None:
        self.digest = digest
        self.meta = meta
        self.model = model
        self.source = source  # the path or digest it was loaded from

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def classes(self) -> list | None:
        return self.meta.get("classes")

    @property
    def features(self) -> list[str]:
        return list(self.meta["input_schema"])

    def __repr__(self) -> str:
        return f"Package({self.source!r}, digest={self.digest!r}, task={self.task!r})"

    def predict(self, table):
        """Predictions for ``table`` (a pyarrow Table, a pandas DataFrame or a mapping of columns) as a pyarrow
        Table: ``prediction``, and ``proba_<class>`` per class for classifiers that give probabilities.

        Raises:
            PackageError: a feature column is missing or of a type the model was not trained on.
        """
        import numpy as np
        import pyarrow as pa

        table = _as_table(table)
        matrix = features_matrix(table, self.meta["input_schema"])
        if self.task != "classification" or not hasattr(self.model, "predict_proba"):
            return pa.table({"prediction": _column(self.model.predict(matrix))})
        proba = np.asarray(self.model.predict_proba(matrix), dtype=float)
        classes = getattr(self.model, "classes_", None)
        if classes is not None and _predicts_by_argmax(self.model):  # one pass of the model, not two
            prediction = np.asarray(classes).take(proba.argmax(axis=1))
        else:
            prediction = self.model.predict(matrix)
        classes = list(classes) if classes is not None else self.classes or range(proba.shape[1])
        columns = {"prediction": _column(prediction)}
        for j, cls in enumerate(classes):
            columns[f"proba_{_plain(cls)}"] = pa.array(proba[:, j])
        return pa.table(columns)


# scikit-learn classifiers whose predict() is exactly classes_[argmax(predict_proba())]: their probabilities are
# the class scores, or a monotone map of them (sigmoid/softmax), ties broken toward the first class alike
_ARGMAX = {"LogisticRegression", "RandomForestClassifier", "ExtraTreesClassifier", "DecisionTreeClassifier",
           "ExtraTreeClassifier", "GaussianNB", "LinearDiscriminantAnalysis", "GradientBoostingClassifier",
           "HistGradientBoostingClassifier"}


def _predicts_by_argmax(model) -> bool:
    final = model.steps[-1][1] if hasattr(model, "steps") else model  # a Pipeline predicts with its last step
    cls = type(final)
    return cls.__module__.startswith("sklearn.") and cls.__name__ in _ARGMAX


def _column(values):
    """A model's predictions as an Arrow column, without a detour through Python objects where numpy has a type."""
    import numpy as np
    import pyarrow as pa

    values = np.asarray(values)
    return pa.array(values.tolist() if values.dtype.kind == "O" else values)


def features_matrix(table, schema: dict):
    """The 2-D array a packaged model takes: the ``schema``'s columns of ``table``, in order (float when every
    column is numeric, else object with nulls as None); ``PackageError`` naming a missing or mistyped column."""
    import numpy as np
    import pyarrow as pa
    from mlv.pipelines.package import compatible, family

    for column, expected in schema.items():
        if column not in table.column_names:
            raise PackageError(f"input has no column '{column}'; the package needs {', '.join(schema)}",
                               column=column)
        actual = str(table.schema.field(column).type)
        if not compatible(str(expected), actual):
            raise PackageError(f"input column '{column}' is {actual}, but the package expects {expected}",
                               column=column)
    numeric = all(family(str(t)) in ("numeric", "boolean") for t in schema.values())
    matrix = np.empty((table.num_rows, len(schema)), dtype=float if numeric else object)
    for j, column in enumerate(schema):
        values = table.column(column)
        if family(str(values.type)) in ("numeric", "boolean"):
            matrix[:, j] = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
        else:
            matrix[:, j] = values.to_pylist()
    return matrix


def load_package(path_or_digest: str | os.PathLike, *, root: str | os.PathLike | None = None) -> Package:
    """The package at a path (relative to ``root`` when given, else the working directory), or the package
    directory stored under a digest (``xxh3-128:…``) in the local store of the repo at ``root`` (or the one
    around the working directory), verified and loaded.

    Raises:
        PackageError: a file changed since it was recorded, the model holds an untrusted type, or it is not a
            package.
    """
    text = os.fspath(path_or_digest)
    if text.startswith("xxh3-128:"):
        return _from_store(text, root)
    base = Path(root) if root is not None else Path.cwd()
    directory = Path(os.path.abspath(base / text))
    return _load(directory, source=text, workspace=_workspace(directory, root), expected=None)


# -- where the expected digests come from --------------------------------------------------


def _workspace(directory: Path, root):
    from mlv.storage.errors import NotARepoError
    from mlv.storage.workspace import Workspace

    if root is not None:
        return Workspace(Path(root).resolve())
    try:
        return Workspace.find(directory if directory.is_dir() else directory.parent)
    except NotARepoError:
        return None


def _recorded(ws, directory: Path):
    """The digest ``mlv.lock`` (or else a pointer file) records for ``directory``, and which file says so."""
    from mlv.engine import lockfile
    from mlv.storage.workspace import pointers

    try:
        rel = directory.relative_to(ws.root).as_posix()
    except ValueError:
        return None, None
    for name, entry in lockfile.load(ws.root).items():
        if rel in entry.outs:
            return entry.outs[rel].digest, f"{lockfile.NAME} (stage '{name}')"
    pointer = pointers.pointer_path(directory)
    if pointer.is_file():
        return pointers.load(pointer, root=ws.root).digest, ws.rel(pointer)
    return None, None


def _from_store(text: str, root) -> Package:
    """Lay the directory the digest names out of the local store into a temp dir, then load it from there."""
    import shutil
    import tempfile

    from mlv.storage.errors import StorageError
    from mlv.storage.store import digest as digests
    from mlv.storage.store import manifest
    from mlv.storage.workspace import Workspace

    try:
        wanted = digests.parse(text, where="package digest")
    except MlvError as exc:
        raise PackageError(str(exc)) from exc
    ws = Workspace(Path(root).resolve()) if root is not None else Workspace.find()
    try:
        entries = list(manifest.load(ws.store.read_bytes(wanted)))
    except StorageError as exc:
        raise PackageError(f"package {wanted} cannot be read from the store at '{ws.cache_dir}': {exc}") from exc
    scratch = Path(tempfile.mkdtemp(prefix="mlv-package-"))
    try:
        for entry in entries:
            target = scratch / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                target.write_bytes(ws.store.read_bytes(entry.digest))  # verified against its digest as it is read
            except StorageError as exc:
                raise PackageError(f"package {wanted}: '{entry.path}' cannot be read from the store: {exc}",
                                   path=entry.path) from exc
            if entry.executable:
                target.chmod(0o755)
        return _load(scratch, source=text, workspace=None, expected=(wanted, "the digest asked for"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# -- verify, then load ---------------------------------------------------------------------


def _load(directory: Path, *, source: str, workspace, expected) -> Package:
    from mlv.pipelines.package import MODEL_FILE, PACKAGE_FILE

    if not (directory / PACKAGE_FILE).is_file():
        raise PackageError(f"'{source}' is not a model package: it holds no {PACKAGE_FILE}; name the 'out' of a "
                           "package stage", path=source)
    if expected is None and workspace is not None:
        digest, said_by = _recorded(workspace, directory)
        expected = (digest, said_by) if digest is not None else None
    contents = _read_all(directory, source, workspace)
    digest = _directory_digest(contents)
    if expected is not None and digest != expected[0]:
        raise _changed(source, contents, expected, workspace)
    meta = _meta(contents, source)
    model = meta["model"]
    name = model.get("file", MODEL_FILE) if isinstance(model, dict) else None
    if name not in contents:
        raise PackageError(f"'{source}/{PACKAGE_FILE}' names model file {name!r}, which the package does not hold",
                           path=f"{source}/{PACKAGE_FILE}")
    data = contents[name][0]
    from mlv.storage.store import digest as digests

    actual = digests.of_bytes(data)
    if str(actual) != model.get("digest"):
        raise PackageError(f"'{source}/{name}' was changed: its bytes hash to {actual}, but {PACKAGE_FILE} records "
                           f"{model.get('digest')}. Restore the package (`mlv checkout {source}`) or rebuild it; "
                           "nothing was loaded", path=f"{source}/{name}")
    return Package(digest=str(digest), meta=meta, model=_deserialize(data, meta, f"{source}/{name}"), source=source)


def _read_all(directory: Path, source: str, workspace) -> dict:
    """``{relative path: (bytes, executable)}`` of every file the directory's digest covers, as the workspace walks it."""
    from mlv.storage.errors import UsageError
    from mlv.storage.workspace.walk import walk

    try:
        files = walk(directory, repo_root=workspace.root if workspace is not None else directory)
    except UsageError as exc:
        raise PackageError(f"package '{source}' cannot be read: {exc}", path=source) from exc
    return {f.rel: (Path(f.path).read_bytes(), f.executable) for f in files}


def _directory_digest(contents: dict):
    """The digest of the directory's manifest: what ``mlv.lock`` records for it."""
    from mlv.storage.store import digest as digests
    from mlv.storage.store import manifest

    return digests.of_bytes(manifest.dump(_entries(contents)))


def _entries(contents: dict) -> list:
    from mlv.storage.store import digest as digests
    from mlv.storage.store import manifest

    return [manifest.Entry(rel, digests.of_bytes(data), len(data), executable)
            for rel, (data, executable) in contents.items()]


def _changed(source: str, contents: dict, expected, workspace) -> PackageError:
    """Name what changed since the recorded version (from its manifest, when the store has it)."""
    from mlv.storage.errors import StorageError
    from mlv.storage.store import manifest

    recorded, said_by = expected
    names: list[str] = []
    if workspace is not None:
        try:
            before = {e.path: e.digest for e in manifest.load(workspace.store.read_bytes(recorded))}
        except StorageError:
            before = None
        if before is not None:
            now = {e.path: e.digest for e in _entries(contents)}
            names = sorted(p for p in before.keys() | now.keys() if before.get(p) != now.get(p))
    what = ", ".join(f"'{source}/{n}'" for n in names) if names else f"a file of '{source}'"
    return PackageError(f"{what} was changed: package '{source}' no longer matches the version {said_by} records "
                        f"({recorded}). Restore it (`mlv checkout {source}`) or rebuild it; nothing was loaded",
                        path=f"{source}/{names[0]}" if names else source)


def _meta(contents: dict, source: str) -> dict:
    import yaml
    from mlv.pipelines.package import PACKAGE_FILE

    where = f"{source}/{PACKAGE_FILE}"
    try:
        meta = yaml.safe_load(contents[PACKAGE_FILE][0].decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PackageError(f"'{where}' is not valid YAML: {exc}", path=where) from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict) or meta.get("format") != "skops" \
            or not isinstance(meta.get("input_schema"), dict) or "task" not in meta:
        raise PackageError(f"'{where}' is not a package description (it needs model, format: skops, task and "
                           "input_schema); rebuild it with a package stage", path=where)
    return meta


def _deserialize(data: bytes, meta: dict, where: str):
    import skops.io as sio

    trusted = meta.get("trusted") or []
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # anything skops cannot parse is not a model we load
        raise PackageError(f"'{where}' is not a readable skops file: {exc}", path=where) from exc
    refused = [t for t in untrusted if t.split(".")[0] not in TRUSTED_MODULES and t not in trusted]
    if refused:
        raise PackageError(f"'{where}' holds types outside scikit-learn, NumPy and SciPy that the package does not "
                           f"trust: {', '.join(refused)}. If you trust their code, list them in the train stage's "
                           "'trusted:' and rebuild; nothing was loaded", path=where)
    try:
        return sio.loads(data, trusted=list(untrusted))
    except Exception as exc:  # a model that fails to load is the package's fault: named, not a traceback
        raise PackageError(f"'{where}' cannot be loaded: {exc!r}", path=where) from exc


def _as_table(table):
    import pyarrow as pa

    if isinstance(table, pa.Table):
        return table
    if isinstance(table, pa.RecordBatch):
        return pa.Table.from_batches([table])
    if isinstance(table, dict):
        return pa.table(table)
    if type(table).__module__.startswith("pandas"):
        return pa.Table.from_pandas(table, preserve_index=False)
    raise TypeError(f"predict takes a pyarrow Table, a pandas DataFrame or a mapping of columns, not "
                    f"{type(table).__name__}")


def _plain(value) -> str:
    """A class label as column-name text (numpy scalars as their Python value)."""
    return str(value.item() if hasattr(value, "item") else value)
