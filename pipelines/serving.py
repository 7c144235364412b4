"""``mlv serve``: a verified model package behind HTTP (aiohttp), every answered prediction logged.

Routes (JSON shapes pinned in DESIGN "Serving"):

- ``POST /predict`` ``{"records": [{feature: value, ...}, ...], "key": "..."?}`` →
  ``{"package": "<digest>", "predictions": [{"prediction_id", "prediction", "probabilities"?,
  "package"? (with a canary)}]}``;
- ``GET /health`` → ``{"status": "ok", "package": "<digest>"}``;
- ``GET /metadata`` → ``package.yaml`` as JSON, plus ``digest`` (and ``canary``: its digest and fraction);
- ``GET /metrics`` → Prometheus text (a private registry: requests by endpoint, status and package,
  latency, errors by kind, predictions by package and arm).

Invariants:
- A bad request (not JSON, not an object, no ``records``, a missing, extra or mistyped field, a
  body over ``max_body``) is a 4xx ``{"error": "<what and where>"}``; nothing a client sends is a
  500. The body is parsed once and turned into an Arrow table column by column, typed as the
  package's ``input_schema`` says; the whole batch is predicted at once.
- A prediction is appended to the log before its response is sent; on SIGTERM or SIGINT the
  server stops accepting, finishes the requests in flight, then writes the log (``predlog``).
- Canary: with ``--canary PKG:F``, a request that carries a key (header ``X-Request-Key`` or
  ``"key"`` in the body) goes wholly to one arm, chosen by a hash of the key (sticky across
  requests and restarts); without a key each record goes to the canary with probability F.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass

from mlv.engine.predlog import ROWS, SECONDS, IdMaker, PredictionLog
from mlv.pipelines.package import family
from mlv.pipelines.packages import Package, PackageError
from mlv.storage.errors import UsageError

MAX_BODY = 8 << 20
KEY_HEADER = "X-Request-Key"
TOP_LEVEL = frozenset({"records", "key"})
ROUTES = {"/predict": "POST", "/health": "GET", "/metadata": "GET", "/metrics": "GET"}
_WHAT = {"numeric": "a number", "integer": "an integer", "string": "a string", "boolean": "true or false"}


@dataclass(frozen=True, slots=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    canary: str | None = None  # a package path or digest
    fraction: float = 0.0
    max_body: int = MAX_BODY
    log_rows: int = ROWS
    log_seconds: float = SECONDS


def parse_canary(text: str) -> tuple[str, float]:
    """``PKG:FRACTION`` → (PKG, FRACTION); a digest keeps its own colon.

    >>> parse_canary("models/pkg2:0.1"), parse_canary("xxh3-128:ab12:0.25")
    (('models/pkg2', 0.1), ('xxh3-128:ab12', 0.25))
    """
    package, _, fraction = text.rpartition(":")
    try:
        value = float(fraction)
    except ValueError:
        value = -1.0
    if not package or not 0.0 < value < 1.0:
        raise UsageError(f"--canary '{text}': expected PACKAGE:FRACTION with a fraction between 0 and 1, "
                         "e.g. models/pkg-new:0.1")
    return package, value


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a message saying what and where."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- validation -------------------------------------------------------------------------------


class Validator:
    """Turns a parsed ``/predict`` body into an Arrow table typed as the package's ``input_schema``."""

    def __init__(self, schema: dict) -> None:
        import pyarrow as pa

        self.features = list(schema)
        self.keys = dict.fromkeys(self.features).keys()  # compared with each record's keys, in C
        self.types, self.kinds = {}, {}
        for name, text in schema.items():
            kind = family(str(text))
            try:
                arrow = pa.type_for_alias(str(text))
            except ValueError:
                arrow = {"numeric": pa.float64(), "boolean": pa.bool_()}.get(kind, pa.string())
            self.types[name] = arrow
            self.kinds[name] = "integer" if pa.types.is_integer(arrow) else kind
        self.schema = pa.schema([(n, t) for n, t in self.types.items()])

    def parse(self, payload) -> tuple[object, str | None]:
        """(the records as a Table, the request key or None); ``RequestError`` naming the first problem."""
        import pyarrow as pa

        if not isinstance(payload, dict):
            raise RequestError(400, f'the body must be a JSON object {{"records": [...]}}, not {_kind(payload)}')
        if "records" not in payload:
            raise RequestError(400, "the body has no 'records': send {\"records\": [{" +
                               ", ".join(f'"{f}": ...' for f in self.features) + "}]}")
        extra = payload.keys() - TOP_LEVEL
        if extra:
            raise RequestError(400, f"unknown field '{sorted(extra)[0]}' in the body; it takes 'records' and "
                               "optionally 'key'")
        records, key = payload["records"], payload.get("key")
        if key is not None and not isinstance(key, str):
            raise RequestError(400, f"key: expected a string, got {_show(key)}")
        if not isinstance(records, list):
            raise RequestError(400, f"records: expected a list of objects, got {_kind(records)}")
        if not records:
            raise RequestError(400, "records: the list is empty; send at least one record")
        keys = self.keys
        for i, record in enumerate(records):
            if type(record) is not dict or record.keys() != keys:
                raise RequestError(400, self._shape_error(i, record))
        columns = [self._column(name, [r[name] for r in records]) for name in self.features]
        return pa.Table.from_arrays(columns, schema=self.schema), key

    def _shape_error(self, i: int, record) -> str:
        if not isinstance(record, dict):
            return f"records[{i}]: expected an object of {', '.join(self.features)}, got {_kind(record)}"
        missing = [f for f in self.features if f not in record]
        if missing:
            return f"records[{i}]: missing field '{missing[0]}'; the package needs {', '.join(self.features)}"
        extra = sorted(k for k in record if k not in self.keys)
        return f"records[{i}]: unknown field '{extra[0]}'; the package takes {', '.join(self.features)}"

    def _column(self, name: str, values: list):
        """An Arrow array of ``values`` in the feature's type: inferred in C, checked, cast safely."""
        import pyarrow as pa

        target, kind = self.types[name], self.kinds[name]
        try:
            array = pa.array(values)
            got = family(str(array.type))
            if got == "null" or got == kind or (kind == "integer" and got == "numeric"):
                return array.cast(target, safe=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            pass
        ok = _CHECKS.get(kind, lambda v: True)
        for i, value in enumerate(values):
            if value is not None and not ok(value):
                raise RequestError(400, f"records[{i}].{name}: expected {_WHAT.get(kind, str(target))}, "
                                   f"got {_show(value)}")
        raise RequestError(400, f"records: field '{name}' cannot be read as {target}")


_CHECKS = {
    "numeric": lambda v: type(v) in (int, float),
    "integer": lambda v: (type(v) is int and -(1 << 63) <= v < 1 << 63) or (type(v) is float and v.is_integer()),
    "string": lambda v: type(v) is str,
    "boolean": lambda v: type(v) is bool,
}


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- the app ----------------------------------------------------------------------------------


class Server:
    """The packages, validator, log and metrics one ``mlv serve`` process holds."""

    def __init__(self, main: Package, log: PredictionLog, *, canary: Package | None = None,
                 fraction: float = 0.0) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.main, self.canary, self.fraction = main, canary, fraction
        self.validator = Validator(main.meta["input_schema"])
        if canary is not None and list(canary.meta["input_schema"]) != self.validator.features:
            raise UsageError(f"canary package '{canary.source}' takes {', '.join(canary.features)}, but "
                             f"'{main.source}' takes {', '.join(main.features)}; both arms must take the same fields")
        self.log = log
        self.ids = IdMaker()
        self.registry = CollectorRegistry()
        self._requests = Counter("mlv_requests", "HTTP requests answered", ["endpoint", "status", "package"],
                                 registry=self.registry)
        self._latency = Histogram("mlv_request_seconds", "Time to answer a request", ["endpoint"],
                                  registry=self.registry,
                                  buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
        self._errors = Counter("mlv_errors", "Requests answered with an error", ["endpoint", "status"],
                               registry=self.registry)
        self._predictions = Counter("mlv_predictions", "Predictions answered", ["package", "arm"],
                                    registry=self.registry)
        self._children: dict = {}
        self._rotating: set[asyncio.Future] = set()
        self.meta_body = _dumps({**main.meta, "digest": main.digest, **(
            {"canary": {"package": canary.digest, "fraction": fraction}} if canary is not None else {})})
        self.health_body = _dumps({"status": "ok", "package": main.digest})

    def count(self, endpoint: str, status: int, started: float) -> None:
        """Metrics for one answered request (label children cached: ``labels`` is slow on the hot path)."""
        key = (endpoint, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = (self._requests.labels(endpoint, str(status), self.main.digest),
                                           self._latency.labels(endpoint),
                                           self._errors.labels(endpoint, str(status)) if status >= 400 else None)
        child[0].inc()
        child[1].observe(time.perf_counter() - started)
        if child[2] is not None:
            child[2].inc()

    def app(self, max_body: int):
        from aiohttp import web

        self.max_body = max_body
        app = web.Application(client_max_size=max_body)
        app.router.add_post("/predict", self.predict)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metadata", self.metadata)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_route("*", "/{tail:.*}", self.unknown)
        return app

    # -- handlers --

    async def predict(self, request):
        from aiohttp import web

        started = time.perf_counter()
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise RequestError(413, f"the body is over the limit of {self.max_body} bytes; "
                                   "send fewer records per request (or start the server with a larger --max-body)")
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise RequestError(400, f"the body is not valid JSON: {exc}") from None
            table, key = self.validator.parse(payload)
            answer = self._answer(table, key or request.headers.get(KEY_HEADER))
        except RequestError as exc:
            self.count("/predict", exc.status, started)
            return _json(exc.status, _dumps({"error": exc.message}))
        if self.log.due() and not self._rotating:
            self._rotate()
        self.count("/predict", 200, started)
        return _json(200, answer)

    def _answer(self, table, key: str | None) -> bytes:
        """Predict every record, log, and the response body."""
        n, now = table.num_rows, time.time()
        ids = self.ids.make(n, now)
        if self.canary is None:
            rows = self._arm(self.main, "main", table, ids, now)
            return _dumps({"package": self.main.digest, "predictions": rows})
        import numpy as np

        if key is not None:
            to_canary = np.full(n, _bucket(key) < self.fraction)
        else:
            to_canary = np.random.random(n) < self.fraction
        rows: list = [None] * n
        for package, arm, mask in ((self.main, "main", ~to_canary), (self.canary, "canary", to_canary)):
            where = np.flatnonzero(mask)
            if len(where) == 0:
                continue
            part = table if len(where) == n else table.take(where)
            answered = self._arm(package, arm, part, [ids[i] for i in where], now)
            for i, row in zip(where.tolist(), answered):
                row["package"] = package.digest
                rows[i] = row
        return _dumps({"package": self.main.digest, "predictions": rows})

    def _arm(self, package: Package, arm: str, table, ids: list[str], now: float) -> list[dict]:
        try:
            out = package.predict(table)
        except PackageError as exc:
            raise RequestError(400, str(exc)) from None
        except Exception as exc:  # what the model refuses (a NaN, an unseen category) is the request's problem
            raise RequestError(422, f"the model cannot predict these records: {exc}") from None
        self.log.append(package.digest, arm, ids, now, table, out)
        self._predictions.labels(package.digest, arm).inc(len(ids))
        predictions = out.column("prediction").to_pylist()
        probas = [(name[len("proba_"):], out.column(name).to_pylist())
                  for name in out.column_names if name.startswith("proba_")]
        if not probas:
            return [{"prediction_id": i, "prediction": p} for i, p in zip(ids, predictions)]
        classes = [c for c, _ in probas]
        return [{"prediction_id": i, "prediction": p, "probabilities": dict(zip(classes, ps))}
                for i, p, ps in zip(ids, predictions, zip(*(v for _, v in probas)))]

    async def health(self, request):
        started = time.perf_counter()
        self.count("/health", 200, started)
        return _json(200, self.health_body)

    async def metadata(self, request):
        started = time.perf_counter()
        self.count("/metadata", 200, started)
        return _json(200, self.meta_body)

    async def metrics(self, request):
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        started = time.perf_counter()
        self.count("/metrics", 200, started)
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def unknown(self, request):
        started = time.perf_counter()
        allowed = ROUTES.get(request.path)
        status = 404 if allowed is None else 405
        self.count("other", status, started)
        if allowed is not None:
            return _json(405, _dumps({"error": f"{request.method} {request.path}: use {allowed}"}))
        return _json(404, _dumps({"error": f"no route {request.method} {request.path}; the server answers "
                                  "POST /predict, GET /health, GET /metadata and GET /metrics"}))

    # -- the log --

    def _rotate(self, *, everything: bool = False) -> asyncio.Future:
        """Write due segments in a thread, so the loop keeps answering."""
        future = asyncio.get_running_loop().run_in_executor(None, lambda: self.log.rotate(everything=everything))
        self._rotating.add(future)
        future.add_done_callback(self._rotated)
        return future

    def _rotated(self, future: asyncio.Future) -> None:
        self._rotating.discard(future)
        if future.exception() is not None:
            print(f"warning: the prediction log could not be written: {future.exception()}", file=sys.stderr)

    async def tick(self) -> None:
        """Rotate by age: buffers older than ``log_seconds`` are written even when traffic is light."""
        while True:
            await asyncio.sleep(1.0)
            if self.log.due() and not self._rotating:
                self._rotate()

    async def drain(self) -> None:
        """Wait for rotations in flight, then write everything left."""
        while self._rotating:
            await asyncio.gather(*self._rotating, return_exceptions=True)
        await self._rotate(everything=True)


def _bucket(key: str) -> float:
    """Where a request key falls in [0, 1): the same key, the same arm, in every process."""
    import xxhash

    return xxhash.xxh3_64_intdigest(key.encode("utf-8")) / 2.0**64


def _dumps(payload) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def _json(status: int, body: bytes):
    from aiohttp import web

    return web.Response(status=status, body=body, content_type="application/json")


# -- running ----------------------------------------------------------------------------------


def serve(ws, package: str, options: ServeOptions, *, say=print) -> list:
    """Load and verify the package(s), answer HTTP until SIGTERM/SIGINT, then write the log; the segments
    written. ``say`` gets the ready line (with the bound port: ``--port 0`` picks a free one)."""
    from mlv.pipelines.packages import load_package

    main = load_package(package)
    canary = load_package(options.canary) if options.canary else None
    log = PredictionLog(ws, rows=options.log_rows, seconds=options.log_seconds)
    server = Server(main, log, canary=canary, fraction=options.fraction)
    asyncio.run(_run(server, options, say))
    return log.written


async def _run(server: Server, options: ServeOptions, say) -> None:
    from aiohttp import web

    runner = web.AppRunner(server.app(options.max_body), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port, backlog=1024, shutdown_timeout=30.0)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise UsageError(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}; pick another "
                         "--port (0 picks a free one) or stop what is using it") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host, port = runner.addresses[0][:2]
    canary = f" (canary {server.canary.digest} at {server.fraction:g})" if server.canary else ""
    say(f"serving {server.main.digest}{canary} on http://{host}:{port}")
    ticker = asyncio.create_task(server.tick())
    try:
        await stop.wait()
    finally:
        ticker.cancel()
        await runner.cleanup()  # stop accepting, let the requests in flight finish
        await server.drain()
