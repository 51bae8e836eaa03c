"""The Python load generator: N keep-alive connections posting one-row bodies, and the median
of several runs."""

from __future__ import annotations

import http.client
import itertools
import math
import statistics
import threading
import time
from typing import Any

from serving.env import HOST, READY_TIMEOUT_S
from serving.servers import JSON_HEADERS


def run_load(
    port: int,
    path: str,
    bodies: list[bytes],
    *,
    concurrency: int,
    requests: int,
    warmup: int,
    time_limit: float,
) -> dict[str, Any]:
    """`concurrency` threads, one keep-alive connection each, `requests` one-row POSTs in all.

    Threads take request numbers from one shared counter, so the count is exact whatever the
    speed of each connection; the measured phase starts when every thread is connected and
    warmed up, and stops at `requests` or `time_limit` seconds.
    """
    state = {"started": 0.0, "deadline": math.inf}

    def open_gate() -> None:  # run by one thread once all have arrived, before any goes on
        state["started"] = time.perf_counter()
        state["deadline"] = state["started"] + time_limit

    barrier = threading.Barrier(concurrency + 1, action=open_gate)
    lock = threading.Lock()
    counter = itertools.count()
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    warm_each = max(1, warmup // concurrency) if warmup else 0

    def send(conn: http.client.HTTPConnection, body: bytes) -> int:
        conn.request("POST", path, body=body, headers=JSON_HEADERS)
        resp = conn.getresponse()
        resp.read()
        return resp.status

    def worker(slot: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        mine = latencies[slot]
        try:
            for i in range(warm_each):
                send(conn, bodies[(slot * 7919 + i) % len(bodies)])
        except (OSError, http.client.HTTPException) as err:
            with lock:
                errors.append(f"warm-up: {err!r}")
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
        barrier.wait()
        deadline = state["deadline"]
        while True:
            i = next(counter)
            if i >= requests:
                break
            started = time.perf_counter()
            if started > deadline:
                break
            try:
                status = send(conn, bodies[i % len(bodies)])
            except (OSError, http.client.HTTPException) as err:
                with lock:
                    errors.append(repr(err))
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=30)
                continue
            elapsed = time.perf_counter() - started
            if status == 200:
                mine.append(elapsed)
            else:
                with lock:
                    errors.append(f"HTTP {status}")
        conn.close()

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=READY_TIMEOUT_S)
    for thread in threads:
        thread.join(timeout=time_limit + 60)
    wall = time.perf_counter() - state["started"]
    done = [x * 1000 for lat in latencies for x in lat]
    return {
        "latencies_ms": done,
        "errors": errors,
        "wall_s": wall,
        "time_limited": len(done) + len(errors) < requests,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of the runs of one server and setting: requests/s, p50 and p99 each the
    median of the runs' own; every run's figures kept to show the spread."""
    import numpy as np

    per_run = []
    for run in runs:
        done = np.array(run["latencies_ms"])
        ok = len(done)
        per_run.append(
            {
                "requests": ok,
                "rps": ok / run["wall_s"] if run["wall_s"] > 0 else math.nan,
                "p50_ms": float(np.percentile(done, 50)) if ok else math.nan,
                "p99_ms": float(np.percentile(done, 99)) if ok else math.nan,
            }
        )
    errors = [e for r in runs for e in r["errors"]]

    def median(key: str) -> float:
        return statistics.median(r[key] for r in per_run) if per_run else math.nan

    return {
        "requests": sum(r["requests"] for r in per_run),
        "errors": len(errors),
        "first_errors": errors[:3],
        "time_limited": any(r["time_limited"] for r in runs),
        "rps": median("rps"),
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "runs": per_run,
    }
