"""bench: `mlv serve` against a minimal aiohttp server around the same model, in the same run.

The model is StandardScaler + LogisticRegression on four numeric features, saved with skops
as a train stage would, added with `mlv add`, and packaged by a real `kind: package` stage.
Both servers run as subprocesses on loopback; a client process per concurrency level drives
them over keep-alive connections (aiohttp). Figures: requests/s, p50/p99 latency at 1, 16
and 64 clients for one-record requests, server CPU per request (utime+stime of the server pid
from /proc), the time of one 1,000-record request (median of 20), and `mlv serve`'s time to
ready. MLflow is compared only if it is already installed in bench/.work/mlflow-venv.

    .venv/bin/python bench/bench_serve.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from common import MLV, WORK, log

FEATURES = ["a", "b", "c", "d"]
MINIMAL = textwrap.dedent('''\
    """The floor: aiohttp + the model, no validation, no ids, no log, no metrics."""
    import json, sys
    import numpy as np
    import skops.io as sio
    from aiohttp import web

    path, port = sys.argv[1], int(sys.argv[2])
    model = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    features = %r

    async def predict(request):
        records = json.loads(await request.read())["records"]
        x = np.array([[r[f] for f in features] for r in records], dtype=float)
        labels, proba = model.predict(x).tolist(), model.predict_proba(x).tolist()
        classes = [str(c) for c in model.classes_]
        out = [{"prediction": p, "probabilities": dict(zip(classes, ps))} for p, ps in zip(labels, proba)]
        return web.Response(body=json.dumps({"predictions": out}).encode(), content_type="application/json")

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/predict", predict)
    print("ready", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
    ''') % (FEATURES,)


def build(root: Path) -> None:
    """A repo with models/lr (scaler + logistic regression, added) packaged into models/pkg by a package stage."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import skops.io as sio
    import yaml
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root.mkdir(parents=True)
    subprocess.run([MLV, "init"], cwd=root, check=True, capture_output=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, len(FEATURES))) * [1, 10, 100, 0.1]
    y = np.where(x @ [1, 0.1, 0.01, 10] + rng.normal(size=5000) > 0, "yes", "no")
    (root / "data").mkdir()
    pq.write_table(pa.table({**{f: x[:, j] for j, f in enumerate(FEATURES)}, "label": y}), root / "data/train.parquet")
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    (root / "models/lr").mkdir(parents=True)
    sio.dump(model, root / "models/lr/model.skops")
    (root / "models/lr/model.yaml").write_text(yaml.safe_dump({
        "task": "classification", "features": FEATURES, "feature_types": {f: "double" for f in FEATURES},
        "classes": ["no", "yes"], "metrics": {}, "estimator": "sklearn.pipeline.Pipeline", "params": {},
        "trusted": []}, sort_keys=False))
    for path in ("data/train.parquet", "models/lr"):
        subprocess.run([MLV, "add", path], cwd=root, check=True, capture_output=True)
    (root / "mlv.yaml").write_text("stages:\n  package:\n    kind: package\n    model: models/lr\n"
                                   "    data: data/train.parquet\n    out: models/pkg\n")
    subprocess.run([MLV, "run"], cwd=root, check=True, capture_output=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(url: str, clients: int, seconds: float, body: bytes) -> list[float]:
    import aiohttp

    latencies: list[float] = []
    end = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def client() -> None:
            while time.perf_counter() < end:
                t = time.perf_counter()
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    assert r.status == 200, r.status
                latencies.append(time.perf_counter() - t)

        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


def measure(url: str, pid: int, clients: int, seconds: float) -> dict:
    body = json.dumps({"records": [{f: 0.5 * (j + 1) for j, f in enumerate(FEATURES)}]}).encode()
    asyncio.run(drive(url, clients, 0.5, body))  # warm up
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    lat = sorted(asyncio.run(drive(url, clients, seconds, body)))
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    return {"rps": len(lat) / wall, "p50_ms": lat[len(lat) // 2] * 1e3, "p99_ms": lat[int(len(lat) * 0.99)] * 1e3,
            "cpu_ms": cpu / len(lat) * 1e3}


def big_request(url: str) -> float:
    import numpy as np

    rng = np.random.default_rng(1)
    body = json.dumps({"records": [dict(zip(FEATURES, map(float, row))) for row in rng.normal(size=(1000, 4))]}).encode()
    times = []
    for _ in range(21):
        t = time.perf_counter()
        asyncio.run(drive_once(url, body))
        times.append(time.perf_counter() - t)
    return sorted(times[1:])[10] * 1e3


async def drive_once(url: str, body: bytes) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
            await r.read()
            assert r.status == 200


def start(argv: list[str], cwd: Path) -> tuple[subprocess.Popen, str, float]:
    t = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    ready = time.perf_counter() - t
    if not line:
        raise SystemExit(f"{argv[0]} did not start: {proc.stderr.read()}")
    return proc, line, ready


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    root = WORK / f"serve-{os.getpid()}"
    log(f"building the package in {root}")
    build(root)
    (root / "minimal.py").write_text(MINIMAL)
    results: dict[str, dict] = {}
    for name in ("mlv", "minimal"):
        if name == "mlv":
            proc, line, ready = start([str(MLV), "serve", "models/pkg", "--port", "0"], root)
            url = line.rsplit(" ", 1)[1].strip() + "/predict"
        else:
            proc, line, ready = start([sys.executable, "minimal.py", "models/lr/model.skops", "18931"], root)
            url = "http://127.0.0.1:18931/predict"
            time.sleep(0.3)
        log(f"{name}: ready in {ready:.2f} s")
        row = {"ready_s": ready}
        try:
            for clients in (1, 16, 64):
                row[clients] = measure(url, proc.pid, clients, args.seconds)
                log(f"{name} {clients:>2} clients: " + ", ".join(f"{k} {v:.3g}" for k, v in row[clients].items()))
            row["1000_records_ms"] = big_request(url)
            log(f"{name} 1,000-record request: {row['1000_records_ms']:.1f} ms")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        results[name] = row
    mlflow = WORK / "mlflow-venv" / "bin" / "mlflow"
    if not mlflow.exists():
        log("MLflow: not installed in bench/.work/mlflow-venv; skipped (issue 12 quotes mlflow models serve 3.17, "
            "1 worker: ~84 req/s at 16 clients, p99 ~360 ms, ~12 ms CPU/request)")
    m, f = results["mlv"], results["minimal"]
    summary = {
        "cpu_per_request_ratio_16": m[16]["cpu_ms"] / f[16]["cpu_ms"],
        "rps_ratio_16": m[16]["rps"] / f[16]["rps"],
        "1000_records_ratio": m["1000_records_ms"] / f["1000_records_ms"],
        "ready_s": m["ready_s"],
    }
    print(json.dumps({"results": {k: {str(c): v for c, v in r.items()} for k, r in results.items()},
                      "summary": summary, "targets": {"cpu_per_request_ratio_16": "<= 1.5", "rps_ratio_16": ">= 0.7",
                                                      "1000_records_ratio": "<= 1.2", "ready_s": "< 2"}}, indent=2))


if __name__ == "__main__":
    main()
