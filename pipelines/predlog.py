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
``engine.lineage`` resolves a prediction id through them (ids sort by time, so a segment is
found by its id range, then confirmed by reading its ``prediction_id`` column).

Invariant: a prediction is appended before its response is sent, and ``close`` writes
every buffer, so after a graceful shutdown the log holds exactly the answered predictions.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CATALOG = "predictions"  # .mlv/predictions/<segment hex>.json
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


def segments(ws, package: str | None = None) -> list[Segment]:
    """The catalog's segments (of one package, when given), oldest first."""
    folder = catalog_dir(ws)
    found = []
    for name in sorted(os.listdir(folder)) if folder.is_dir() else ():
        if name.endswith(".json"):
            entry = Segment(**json.loads((folder / name).read_text(encoding="utf-8")))
            if package is None or entry.package == package:
                found.append(entry)
    return sorted(found, key=lambda s: (s.first_id, s.segment))


def read(ws, package: str | None = None):
    """Every logged prediction (of one package digest, when given) as one pyarrow Table, oldest segment first:
    ``prediction_id``, ``time`` (UTC), ``package``, ``arm``, the input features, ``prediction`` and ``proba_<class>``."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlv.storage.store.digest import parse

    tables = [pq.read_table(io.BytesIO(ws.store.read_bytes(parse(s.segment))))
              for s in segments(ws, package)]
    if not tables:
        return pa.table({"prediction_id": pa.array([], pa.string()),
                         "time": pa.array([], pa.timestamp("us", tz="UTC")),
                         "package": pa.array([], pa.string()), "arm": pa.array([], pa.string())})
    return pa.concat_tables(tables, promote_options="default")
