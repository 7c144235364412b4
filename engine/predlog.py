"""The prediction log of ``mlv serve``: the one owner of its format (segments and their catalog).

Every prediction the server answers is appended in memory, one buffer per package (arm),
and written as a Parquet **segment** when its buffer reaches ``rows`` rows or is
``seconds`` old, and at shutdown. A segment holds one package's predictions, in order::

    prediction_id  string                 p-<unix ms, 13 digits>-<8 hex per server>-<hex counter>
    time           timestamp[us, UTC]     when the prediction was answered
    package        string                 the package digest (xxh3-128:…)
    arm            string                 "main" or "canary"
    <feature>...   the package's input_schema types (numeric inputs as sent, cast to that type)
    prediction     the model's output
    proba_<class>  double, classifiers only

Each segment is put in the local store as an object, then described by a catalog file
``.mlv/predictions/<segment hex>.json`` (``segment``, ``package``, ``arm``, ``rows``,
``first_id``, ``last_id``, ``first_time``, ``last_time``) — object first, catalog second,
so a catalog never names bytes the store lacks. The catalog files are the durable index:
``engine.roots`` keeps their segments from ``mlv gc`` (and so ``mlv push`` sends them), and
``engine.lineage`` resolves a prediction id through them (``catalog_names``, ``entry``,
``read_segment``) (ids sort by time, so a segment is
found by its id range, then confirmed by reading its ``prediction_id`` column).

Invariant: a prediction is appended before its response is sent, and ``close`` writes
every buffer, so after a graceful shutdown the log holds exactly the answered predictions.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlv.storage.errors import StorageError, UsageError

CATALOG = "predictions"  # .mlv/predictions/<segment hex>.json
_ENTRY = re.compile(r"[0-9a-f]{32}\.json")
ROWS = 10_000
SECONDS = 60.0
BASE_COLUMNS = ("prediction_id", "time", "package", "arm")


class IdMaker:
    """Unique prediction ids that sort by time: ``p-<unix ms>-<8 hex, random per server>-<counter hex>``."""

    def __init__(self) -> None:
        self.server = secrets.token_hex(4)
        self.counter = 0
        self._lock = threading.Lock()

    def make(self, n: int, now: float) -> list[str]:
        with self._lock:
            start, self.counter = self.counter, self.counter + n
        head = f"p-{int(now * 1000):013d}-{self.server}-"
        return [f"{head}{i:06x}" for i in range(start, start + n)]


@dataclass
class _Buffer:
    package: str
    arm: str
    started: float = field(default_factory=time.monotonic)
    rows: int = 0
    batches: list = field(default_factory=list)  # (ids, unix time, inputs Table, outputs Table)


@dataclass(frozen=True, slots=True)
class Segment:
    """What the catalog records about one stored segment."""

    segment: str
    package: str
    arm: str
    rows: int
    first_id: str
    last_id: str
    first_time: float
    last_time: float

    def to_dict(self) -> dict:
        return {"segment": self.segment, "package": self.package, "arm": self.arm, "rows": self.rows,
                "first_id": self.first_id, "last_id": self.last_id, "first_time": self.first_time,
                "last_time": self.last_time}


class PredictionLog:
    """Buffers answered predictions and writes them as segments (see the module docstring).

    ``append`` is cheap (it keeps references); the Arrow and Parquet work happens at
    ``rotate``, which callers may run in a thread: buffers are swapped under a lock.
    """

    def __init__(self, ws, *, rows: int = ROWS, seconds: float = SECONDS) -> None:
        self.ws = ws
        self.rows = rows
        self.seconds = seconds
        self._buffers: dict[tuple[str, str], _Buffer] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.written: list[Segment] = []

    def append(self, package: str, arm: str, ids: list[str], when: float, inputs, outputs) -> bool:
        """Log one answered batch; True when a buffer is now due for ``rotate``."""
        with self._lock:
            buf = self._buffers.get((package, arm))
            if buf is None:
                buf = self._buffers[(package, arm)] = _Buffer(package, arm)
            buf.batches.append((ids, when, inputs, outputs))
            buf.rows += len(ids)
            return buf.rows >= self.rows

    def due(self) -> bool:
        """Whether some buffer is full or older than ``seconds``."""
        now = time.monotonic()
        with self._lock:
            return any(b.rows >= self.rows or (b.rows and now - b.started >= self.seconds)
                       for b in self._buffers.values())

    def rotate(self, *, everything: bool = False) -> list[Segment]:
        """Write the buffers that are due (``everything``: all non-empty ones) as stored segments."""
        now = time.monotonic()
        with self._lock:
            taken = [b for b in self._buffers.values()
                     if b.rows and (everything or b.rows >= self.rows or now - b.started >= self.seconds)]
            for b in taken:
                del self._buffers[(b.package, b.arm)]
        with self._write_lock:  # segments reach the store and catalog one at a time, in order
            done = [self._write(b) for b in taken]
        self.written.extend(done)
        return done

    def close(self) -> list[Segment]:
        """Write everything still buffered (at shutdown)."""
        return self.rotate(everything=True)

    def _write(self, buf: _Buffer) -> Segment:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from mlv.storage import atomic

        ids = [i for batch in buf.batches for i in batch[0]]
        times = [t for batch in buf.batches for t in [batch[1]] * len(batch[0])]
        inputs = pa.concat_tables([b[2] for b in buf.batches], promote_options="default")
        outputs = pa.concat_tables([b[3] for b in buf.batches], promote_options="default")
        n = len(ids)
        columns = {
            "prediction_id": pa.array(ids, pa.string()),
            "time": pa.array([int(t * 1_000_000) for t in times], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "package": pa.array([buf.package] * n, pa.string()),
            "arm": pa.array([buf.arm] * n, pa.string()),
        }
        for name in inputs.column_names:
            columns[name] = inputs.column(name)
        for name in outputs.column_names:
            columns[name] = outputs.column(name)
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table(columns), sink, compression="zstd")
        digest = self.ws.store.put_bytes(sink.getvalue().to_pybytes())
        segment = Segment(str(digest), buf.package, buf.arm, n, min(ids), max(ids), min(times), max(times))
        folder = catalog_dir(self.ws)
        folder.mkdir(parents=True, exist_ok=True)
        atomic.write_text(folder / f"{digest.hexdigest}.json", json.dumps(segment.to_dict(), indent=1) + "\n")
        return segment


def catalog_dir(ws) -> Path:
    return ws.dot / CATALOG


def catalog_names(ws) -> set[str]:
    """The hex digests of the segments the catalog names (its file names)."""
    folder = catalog_dir(ws)
    return {n[:-5] for n in os.listdir(folder) if _ENTRY.fullmatch(n)} if folder.is_dir() else set()


def entry(ws, name: str) -> Segment | None:
    """The catalog entry of segment ``name`` (hex), or None when it is half written or not one of ours."""
    try:
        return Segment(**json.loads((catalog_dir(ws) / f"{name}.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def segments(ws, package: str | None = None) -> list[Segment]:
    """The catalog's segments (of one package, when given), oldest first."""
    found = [e for name in catalog_names(ws) if (e := entry(ws, name)) is not None]
    return sorted((e for e in found if package is None or e.package == package), key=lambda s: (s.first_id, s.segment))


def read_segment(ws, segment: str):
    """One stored segment as a pyarrow Table (``StorageError`` if the store lacks it or it is damaged)."""
    import io

    import pyarrow.parquet as pq
    from mlv.storage.store.digest import parse

    return pq.read_table(io.BytesIO(ws.store.read_bytes(parse(segment))))


def read(ws, package: str | None = None):
    """Every logged prediction (of one package digest, when given) as one pyarrow Table, oldest segment first:
    ``prediction_id``, ``time`` (UTC), ``package``, ``arm``, the input features, ``prediction`` and ``proba_<class>``."""
    import pyarrow as pa

    tables = [read_segment(ws, s.segment) for s in segments(ws, package)]
    if not tables:
        return pa.table({"prediction_id": pa.array([], pa.string()),
                         "time": pa.array([], pa.timestamp("us", tz="UTC")),
                         "package": pa.array([], pa.string()), "arm": pa.array([], pa.string())})
    return pa.concat_tables(tables, promote_options="default")


# -- finding one prediction (`mlv trace <prediction-id>`) ----------------------------------


def find(ws, prediction_id: str) -> dict:
    """The logged row of ``prediction_id``: ``prediction_id``, ``time``, ``package``, ``arm``, ``segment``,
    ``row`` (its number in the segment) and ``record`` (inputs and outputs); ``UsageError`` if no log has it."""
    import pyarrow.compute as pc

    candidates = _segments_holding(ws, prediction_id)
    for segment in candidates:
        try:
            table = read_segment(ws, segment)
        except StorageError as exc:
            raise UsageError(f"prediction '{prediction_id}' may be in log segment {segment}, which cannot be "
                             f"read from the store ({exc}); `mlv pull` fetches it from a remote") from exc
        hits = pc.index(table.column("prediction_id"), prediction_id).as_py()
        if hits >= 0:
            row = table.slice(hits, 1).to_pylist()[0]
            base = {k: row.pop(k) for k in BASE_COLUMNS}
            return {**base, "time": base["time"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "segment": segment,
                    "row": hits, "record": row}
    folder = ws.rel(catalog_dir(ws))
    raise UsageError(f"prediction '{prediction_id}' is in no prediction log of this repo "
                     f"({len(candidates)} segment(s) in its time range). The log is written to {folder}/ when "
                     "`mlv serve` rotates it or stops; trace from the repo that served it")


def _segments_holding(ws, prediction_id: str) -> list[str]:
    """Segments whose id range holds ``prediction_id``, after syncing state.db with the catalog files."""
    from mlv.storage.workspace import statedb

    db = statedb.connect(ws.dot / "state.db")
    try:
        names = catalog_names(ws)
        have = {s for (s,) in db.execute("SELECT segment FROM prediction_segments")}
        rows = [(name, e.first_id, e.last_id, e.package, e.arm, e.rows)
                for name in names - have if (e := entry(ws, name)) is not None]
        db.execute("BEGIN")
        db.executemany("DELETE FROM prediction_segments WHERE segment = ?", [(s,) for s in have - names])
        db.executemany("INSERT OR REPLACE INTO prediction_segments VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
        found = db.execute("SELECT segment FROM prediction_segments WHERE first_id <= ? AND last_id >= ? "
                           "ORDER BY first_id", (prediction_id, prediction_id)).fetchall()
    finally:
        db.close()
    return [f"xxh3-128:{s}" for (s,) in found]
