"""The HTTP scenarios: start a group of servers, check every route's answers against the raw
pipeline, then measure each (server, route) at each concurrency in alternating runs, so that
all of them share whatever else the machine is doing."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serving.env import ROOT, progress
from serving.load import run_load, summarize
from serving.models import CHECK_ROWS, Model
from serving.servers import Server, ServerSpec, http_request
from serving.wire import AnswerError, Route
from serving.wrk import run_wrk, write_script

# A server whose answers differ from the raw pipeline's by more serves another model.
SCORE_TOLERANCE = 1e-9


@dataclass
class Endpoint:
    """One route of one running server."""

    server: Server
    protocol: str
    route: Route
    bodies: list[bytes]

    @property
    def spec(self) -> ServerSpec:
        return self.server.spec

    def row(self, model: Model) -> dict[str, Any]:
        """The keys every figure of this endpoint carries."""
        return {
            "model": model.key,
            "server": self.spec.name,
            "label": self.spec.label,
            "kind": self.spec.kind,
            "protocol": self.protocol,
            "workers": self.spec.workers,
        }


def check_route(server: Server, route: Route, model: Model) -> float | None:
    """Largest difference between the route's scores and the raw pipeline's on the first
    rows; None if the server does not have the route (404: not on this gitml yet)."""
    records = model.records[:CHECK_ROWS]
    status, body = http_request(server.port, "POST", route.path, route.encode(model, records))
    if status == 404:
        return None
    name = f"{server.spec.name} {route.protocol}"
    if status != 200:
        raise SystemExit(f"bench: {name} answered {status} to {len(records)} rows: {body[:500]!r}")
    try:
        got = route.decode(model, json.loads(body))
    except (AnswerError, KeyError, TypeError, ValueError) as err:
        raise SystemExit(f"bench: {name}: cannot read its answer ({err}): {body[:500]!r}") from err
    if len(got) != len(model.expected):
        raise SystemExit(f"bench: {name} returned {len(got)} rows for {len(model.expected)}")
    diff = max(
        abs(a - b)
        for row, want in zip(got, model.expected, strict=True)
        for a, b in zip(row, want, strict=True)
    )
    if not diff <= SCORE_TOLERANCE:
        raise SystemExit(f"bench: {name}'s scores differ from the raw pipeline's by {diff:.2e}")
    return diff


def time_big_request(server: Server, route: Route, body: bytes, repeats: int = 10) -> float:
    """Median milliseconds of one 1,000-row request (fresh connection each time)."""
    timings = []
    for i in range(repeats + 2):
        started = time.perf_counter()
        status, _ = http_request(server.port, "POST", route.path, body)
        if status != 200:
            raise SystemExit(f"bench: {server.spec.name} answered {status} to 1,000 rows")
        if i >= 2:
            timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


WrkChooser = Callable[[list[Endpoint], list[dict[str, Any]]], list[Endpoint]]


def measure_group(
    model: Model,
    specs: list[ServerSpec],
    args: argparse.Namespace,
    *,
    concurrency: list[int],
    choose_wrk: WrkChooser | None = None,
    probe: Callable[[Server], Any] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Start every server of `specs`, check and time each route, then run the load: per
    concurrency, `args.runs` runs, each endpoint once per run, in alternating order (A B C,
    C B A, ...). Then wrk on the endpoints `choose_wrk` picks from the loads; `probe`, if
    given, reads each server once more before it stops (its answer kept as "probe")."""
    loads: list[dict[str, Any]] = []
    servers: list[dict[str, Any]] = []
    tails: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        endpoints: list[Endpoint] = []
        running: list[Server] = []
        for spec in specs:
            progress(f"{model.key}: {spec.name}: starting")
            server = stack.enter_context(Server(spec))
            running.append(server)
            info: dict[str, Any] = {
                "model": model.key,
                "server": spec.name,
                "label": spec.label,
                "kind": spec.kind,
                "workers": spec.workers,
                "ready_s": server.ready_s,
                "rss_idle_mib": server.rss_mib(),
                "max_score_diff": {},
                "rows1000_ms": {},
                "missing": [],
                "log": str(server.log_path.relative_to(ROOT)),
            }
            for protocol, route in spec.routes.items():
                diff = check_route(server, route, model)
                if diff is None:
                    progress(f"{spec.name}: no {route.path} here (404): not measured")
                    info["missing"].append(protocol)
                    continue
                info["max_score_diff"][protocol] = diff
                if len(model.records) >= 1000:
                    big = route.encode(model, model.records[:1000])
                    info["rows1000_ms"][protocol] = time_big_request(server, route, big)
                bodies = [route.encode(model, [r]) for r in model.records]
                endpoints.append(Endpoint(server, protocol, route, bodies))
            servers.append(info)
        per_run = args.requests
        for conc in concurrency:
            runs: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(endpoints))}
            for n in range(args.runs):
                progress(
                    f"{model.key}: concurrency {conc}, run {n + 1} of {args.runs}: "
                    f"{len(endpoints)} endpoints, up to {per_run:,} requests each"
                )
                order = list(range(len(endpoints)))
                for i in order if n % 2 == 0 else order[::-1]:
                    ep = endpoints[i]
                    runs[i].append(
                        run_load(
                            ep.server.port,
                            ep.route.path,
                            ep.bodies,
                            concurrency=conc,
                            requests=per_run,
                            warmup=args.warmup if n == 0 else 0,
                            time_limit=args.time_limit,
                        )
                    )
            for i, ep in enumerate(endpoints):
                loads.append({**ep.row(model), "concurrency": conc, **summarize(runs[i])})
        if choose_wrk is not None:
            for ep in choose_wrk(endpoints, loads):
                what = f"{ep.spec.name} {ep.protocol}"
                progress(f"{model.key}: wrk -t2 -c8 for {args.wrk_seconds:g} s on {what}")
                script = write_script(f"{ep.spec.name}-{ep.protocol}", ep.bodies[:200])
                figures = run_wrk(ep.server.port, ep.route.path, script, seconds=args.wrk_seconds)
                tails.append({**ep.row(model), **figures})
        for info, server in zip(servers, running, strict=True):
            info["rss_mib"] = server.rss_mib()  # after the load
            if probe is not None:
                info["probe"] = probe(server)
    return {"http": loads, "servers": servers, "wrk": tails}
