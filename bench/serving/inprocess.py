"""In-process figures: raw `predict_proba` on one-row frames, and one request driven straight
through gitml's ASGI app (no socket, no client), to show what HTTP adds and what gitml adds."""

from __future__ import annotations

import time
from typing import Any

from serving.batch import MODEL, TEST_DATA
from serving.env import HOST, ROOT


def raw_one_row(pipeline: Any, features: list[str], categorical: list[str]) -> dict[str, float]:
    """p50 of predict_proba on one-row frames read as evaluate reads the test set."""
    import numpy as np

    from gitml.data.io import read_table

    frame = read_table(TEST_DATA, categories=categorical)[features]
    rows = [frame.iloc[[i]] for i in range(min(len(frame), 500))]
    for row in rows[:50]:
        pipeline.predict_proba(row)
    timings = []
    for row in rows:
        started = time.perf_counter()
        pipeline.predict_proba(row)
        timings.append(time.perf_counter() - started)
    ms = np.array(timings) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "calls": len(ms),
    }


def asgi_one_row(
    bodies: list[bytes], calls: int = 500, warm: int = 50, *, fast_path: bool = True
) -> dict[str, Any] | None:
    """p50 of one-row requests driven straight through gitml's ASGI app: no socket, no client.

    The app is built as `gitml serve` builds it (create_app with the default serve params),
    its lifespan started (micro-batcher thread), then each request is one ASGI call: body
    read, JSON, signature checks, the hop to the scoring thread, predict_proba, the answer.
    With `fast_path=False` the app is built with `serve.fast_path_max_rows: 0`, so every
    request goes through the pipeline. None if this gitml has no serve package.
    """
    import asyncio

    import numpy as np

    try:
        from gitml.config.schema import ServeParams
        from gitml.serve.app import create_app
        from gitml.serve.bundle import load_served_model
    except ImportError:
        return None
    settings = ServeParams() if fast_path else ServeParams(fast_path_max_rows=0)
    app = create_app(load_served_model(ROOT / MODEL), settings, threshold=0.5)

    async def drive() -> list[float]:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        task = asyncio.create_task(app(lifespan, inbox.get, outbox.put))
        await inbox.put({"type": "lifespan.startup"})
        started_msg = await outbox.get()
        if started_msg["type"] != "lifespan.startup.complete":
            raise SystemExit(f"bench: gitml app failed to start in-process: {started_msg}")
        timings = []
        for i in range(warm + calls):
            body = bodies[i % len(bodies)]
            sent: list[dict[str, Any]] = []
            delivered = False

            async def receive(body: bytes = body) -> dict[str, Any]:
                nonlocal delivered
                if delivered:  # nothing more will come; wait like a quiet client
                    await asyncio.Event().wait()
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any], sent: list[Any] = sent) -> None:
                sent.append(message)

            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": "/v1/predict",
                "raw_path": b"/v1/predict",
                "query_string": b"",
                "root_path": "",
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
                "client": (HOST, 50000),
                "server": (HOST, 8000),
                "state": {},
            }
            started = time.perf_counter()
            await app(scope, receive, send)
            elapsed = time.perf_counter() - started
            status = next(m["status"] for m in sent if m["type"] == "http.response.start")
            if status != 200:
                raise SystemExit(f"bench: in-process gitml request answered {status}: {sent}")
            if i >= warm:
                timings.append(elapsed)
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task
        return timings

    ms = np.array(asyncio.run(drive())) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "calls": len(ms),
    }
