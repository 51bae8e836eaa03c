"""What a shadow model (`gitml serve --shadow`) costs the primary: p50 and p99 latency of
one-row `/v1/predict` requests at concurrency 1 and 8, with and without a shadow.

Usage, from the project root with the project venv first on PATH and a trained model in
models/model.skops:

    python bench/shadow.py                  # 3 rounds of 2,000 requests per server and setting
    python bench/shadow.py --requests 500   # a quicker look

Two servers run side by side on 127.0.0.1: the project's model alone, and the same model with
a second copy of it as the shadow (role "shadow", version "candidate": it scores every request
after the answer, in its own thread, as `--shadow REF` does). They are loaded in alternating
rounds (plain, shadow, then shadow, plain, ...) so both share whatever else the machine does.
The load generator: N threads, one keep-alive `http.client` connection each, one-row POSTs
cycled from the test set. Prints one JSON object; the target is p50 with a shadow within
+20 % of p50 without, at concurrency 1.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
HEADERS = {"Content-Type": "application/json"}


def _serve(project: Path, port: int, shadow: bool) -> None:
    """The server process: the project's model, with (or without) a copy of it as shadow."""
    from dataclasses import replace

    from gitml.config.compose import load_params
    from gitml.serve.bundle import load_project_model
    from gitml.serve.deployment import Deployment
    from gitml.serve.runtime import ModelRuntime
    from gitml.serve.server import run_server

    params = load_params(project / "params.yaml")
    settings = params.serve
    threshold = params.threshold_for(None)
    served = load_project_model(project)
    candidate = None
    if shadow:
        twin = replace(load_project_model(project), version="candidate")
        candidate = ModelRuntime(twin, settings, threshold=threshold, role="shadow")
    deployment = Deployment([ModelRuntime(served, settings, threshold=threshold)], shadow=candidate)
    run_server(deployment, settings, port=port)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _bodies(project: Path, count: int = 500) -> list[bytes]:
    import pyarrow.parquet as pq

    signature = json.loads((project / "models" / "signature.json").read_text())
    names = [c["name"] for c in signature["inputs"]]
    frame = pq.read_table(project / "data" / "processed" / "test.parquet").to_pandas()
    rows = frame[names].head(count).astype(object).where(frame[names].notna().head(count), None)
    return [
        json.dumps({"records": [{k: _plain(v) for k, v in row.items()}]}).encode()
        for row in rows.to_dict("records")
    ]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("server not ready")


def _load(port: int, bodies: list[bytes], concurrency: int, requests: int) -> list[float]:
    """Latencies (ms) of `requests` POSTs from `concurrency` keep-alive connections."""
    counter = itertools.count()
    latencies: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        mine = []
        while (i := next(counter)) < requests:
            started = time.perf_counter()
            conn.request("POST", "/v1/predict", body=bodies[i % len(bodies)], headers=HEADERS)
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                raise SystemExit(f"HTTP {answer.status}")
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def _summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", choices=["plain", "shadow"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    project = Path.cwd()
    if args.serve:
        _serve(project, args.port, args.serve == "shadow")
        return
    servers: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    try:
        for kind in ("plain", "shadow"):
            port = _free_port()
            cmd = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
            proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
            servers[kind] = (port, proc)
        for port, proc in servers.values():
            _wait_ready(port, proc)
        bodies = _bodies(project)
        results: dict[str, Any] = {}
        for concurrency in (1, 8):
            seen: dict[str, list[float]] = {"plain": [], "shadow": []}
            for round_ in range(args.rounds):
                order = ["plain", "shadow"] if round_ % 2 == 0 else ["shadow", "plain"]
                for kind in order:
                    port = servers[kind][0]
                    _load(port, bodies, concurrency, 200)  # warm-up, not recorded
                    seen[kind] += _load(port, bodies, concurrency, args.requests)
            plain, shadow = _summary(seen["plain"]), _summary(seen["shadow"])
            results[f"concurrency {concurrency}"] = {
                "without shadow": plain,
                "with shadow": shadow,
                "p50 ratio": round(shadow["p50_ms"] / plain["p50_ms"], 3),
            }
        conn = http.client.HTTPConnection(HOST, servers["shadow"][0], timeout=30)
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        results["shadow outcomes"] = {
            line.split('"')[1]: float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("gitml_shadow_requests_total{")
        }
        print(json.dumps(results, indent=2))
    finally:
        for _, proc in servers.values():
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
