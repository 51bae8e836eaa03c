"""The issue's targets, each with its measured value and met / NOT met / not checked.

Ratios are always against peers measured in the same run: absolute figures drift between
machines and runs by 15 % or more.
"""

from __future__ import annotations

from typing import Any

V2_OVER_MLSERVER = {1: 5.0}  # concurrency -> at least this many times MLServer's best
V2_OVER_MLSERVER_ELSE = 3.0  # at any other concurrency (8)
PROTOCOL_SPREAD = 0.15  # V2 and /invocations within 15 % of /v1
READY_S = 1.5  # start to ready, one worker
WRK_P99_MS = 20.0  # at concurrency 8 under wrk
WORKERS_SUPERVISOR_MIB = 64.0  # N workers hold at most N x one worker's, plus this
SHADOW_P50 = 0.20  # a shadow adds at most 20 % to p50
MLFLOW_RATIO = 2.0  # /v1 requests/s against MLflow's (issue 9)
# issue 14: the whole command against raw predict_proba in memory, same run
BATCH_RATIO, BATCH_RATIO_10M, BATCH_PEAK_GIB, BATCH_STARTUP_S = 0.8, 1.0, 1.5, 1.5


def pick(rows: list[dict[str, Any]], **keys: Any) -> list[dict[str, Any]]:
    """The rows whose fields equal `keys`."""
    return [r for r in rows if all(r.get(k) == v for k, v in keys.items())]


def one(rows: list[dict[str, Any]], **keys: Any) -> dict[str, Any] | None:
    found = pick(rows, **keys)
    return found[0] if found else None


def mlserver_best(http: list[dict[str, Any]], model: str, conc: int) -> dict[str, Any] | None:
    """MLServer's configuration with the most requests/s at `conc` (its best, per concurrency)."""
    runs = pick(http, model=model, kind="mlserver", concurrency=conc)
    return max(runs, key=lambda r: r["rps"]) if runs else None


class Checks:
    """Collects target verdicts in order."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, target: str, value: str, ok: bool | None, why: str = "") -> None:
        status = why or ("met" if ok else "NOT met")
        self.rows.append({"target": target, "value": value, "status": status, "met": ok})


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target this run measured (see the module docstring)."""
    checks = Checks()
    http = results["http"]
    _against_mlserver(checks, http)
    _other_tasks(checks, http)
    _protocols(checks, http)
    _start_and_memory(checks, results["servers"])
    _tails(checks, results["wrk"])
    _shadow(checks, results.get("shadow"))
    _against_mlflow(checks, http)
    check_batch(checks, results.get("batch"))
    return checks.rows


def _against_mlserver(checks: Checks, http: list[dict[str, Any]]) -> None:
    if not pick(http, model="churn", kind="gitml", protocol="v2"):
        for v1 in pick(http, model="churn", kind="gitml", protocol="v1"):
            best = mlserver_best(http, "churn", v1["concurrency"])
            if best is not None:
                checks.add(
                    f"V2, {v1['workers']} worker(s), concurrency {v1['concurrency']}: "
                    "against MLServer's best",
                    f"/v1 instead: {v1['rps'] / best['rps']:.2f}x, p99 {v1['p99_ms']:.1f} ms",
                    None,
                    "V2 not on this gitml",
                )
    for run in pick(http, model="churn", kind="gitml", protocol="v2"):
        conc, workers = run["concurrency"], run["workers"]
        label = f"V2, {workers} worker(s), concurrency {conc}"
        need = V2_OVER_MLSERVER.get(conc, V2_OVER_MLSERVER_ELSE)
        best = mlserver_best(http, "churn", conc)
        if best is None:
            checks.add(f"{label}: >= {need:g}x MLServer's best", "", None, "peer not measured")
            continue
        ratio = run["rps"] / best["rps"]
        checks.add(
            f"{label}: req/s >= {need:g}x MLServer's best",
            f"{ratio:.2f}x ({run['rps']:.0f} vs {best['rps']:.0f}, {best['label']})",
            ratio >= need and run["errors"] == 0,
        )
        peers = pick(http, model="churn", kind="mlserver", concurrency=conc)
        peers += pick(http, model="churn", kind="mlflow", concurrency=conc, workers=workers)
        lowest = min(peers, key=lambda r: r["p99_ms"])
        checks.add(
            f"{label}: p99 below every peer's",
            f"{run['p99_ms']:.1f} ms vs {lowest['p99_ms']:.1f} ms ({lowest['label']})",
            run["p99_ms"] < lowest["p99_ms"],
        )


def _other_tasks(checks: Checks, http: list[dict[str, Any]]) -> None:
    """The lead beyond one model: no target of its own, shown beside the reference's."""
    for model in sorted({r["model"] for r in http} - {"churn"}):
        for run in pick(http, model=model, kind="gitml", protocol="v2", workers=1):
            best = mlserver_best(http, model, run["concurrency"])
            if best is not None:
                checks.add(
                    f"{model}: V2, concurrency {run['concurrency']}, against MLServer's best",
                    f"{run['rps'] / best['rps']:.2f}x ({run['rps']:.0f} vs {best['rps']:.0f}, "
                    f"{best['label']}); p99 {run['p99_ms']:.1f} vs {best['p99_ms']:.1f} ms",
                    None,
                    "shown (no target)",
                )


def _protocols(checks: Checks, http: list[dict[str, Any]]) -> None:
    for v1 in pick(http, model="churn", kind="gitml", protocol="v1"):
        conc, workers = v1["concurrency"], v1["workers"]
        for protocol in ("v2", "invocations"):
            other = one(
                http,
                model="churn",
                kind="gitml",
                protocol=protocol,
                workers=workers,
                concurrency=conc,
            )
            label = f"{protocol}, {workers} worker(s), concurrency {conc}: within 15 % of /v1"
            if other is None:
                checks.add(label, "", None, "route not on this gitml")
                continue
            ratio = other["rps"] / v1["rps"]
            checks.add(
                label,
                f"{ratio:.2f}x ({other['rps']:.0f} vs {v1['rps']:.0f} req/s)",
                ratio >= 1 - PROTOCOL_SPREAD,
            )


def _start_and_memory(checks: Checks, servers: list[dict[str, Any]]) -> None:
    single = one(servers, model="churn", kind="gitml", workers=1)
    if single is not None:
        checks.add(
            f"start to ready < {READY_S:g} s, 1 worker",
            f"{single['ready_s']:.2f} s",
            single["ready_s"] < READY_S,
        )
    for many in pick(servers, model="churn", kind="gitml"):
        if single is None or many["workers"] < 2:
            continue
        bound = many["workers"] * single["rss_mib"] + WORKERS_SUPERVISOR_MIB
        checks.add(
            f"{many['workers']} workers: memory <= {many['workers']} x one worker's + "
            f"{WORKERS_SUPERVISOR_MIB:.0f} MiB",
            f"{many['rss_mib']:.0f} MiB vs {bound:.0f} MiB",
            many["rss_mib"] <= bound,
        )


def _tails(checks: Checks, tails: list[dict[str, Any]]) -> None:
    for tail in pick(tails, model="churn", kind="gitml"):
        checks.add(
            f"wrk -c8 p99 <= {WRK_P99_MS:g} ms, {tail['protocol']}, {tail['workers']} worker(s)",
            f"{tail['p99_ms']:.1f} ms",
            tail["p99_ms"] <= WRK_P99_MS and tail["errors"] + tail["non2xx"] == 0,
        )


def _shadow(checks: Checks, shadow: dict[str, Any] | None) -> None:
    if not shadow:
        return
    checks.add(
        f"a shadow adds <= {SHADOW_P50:.0%} to /v1 p50 (concurrency 1)",
        f"{shadow['overhead']:+.1%} ({shadow['with']['p50_ms']:.2f} vs "
        f"{shadow['without']['p50_ms']:.2f} ms)",
        shadow["overhead"] <= SHADOW_P50,
    )


def _against_mlflow(checks: Checks, http: list[dict[str, Any]]) -> None:
    for run in pick(http, model="churn", kind="gitml", protocol="v1"):
        key = {"workers": run["workers"], "concurrency": run["concurrency"]}
        label = f"/v1, {run['workers']} worker(s), concurrency {run['concurrency']}"
        peer = one(http, model="churn", kind="mlflow", **key)
        if peer is None:
            continue
        ratio = run["rps"] / peer["rps"]
        checks.add(
            f"{label}: req/s >= {MLFLOW_RATIO:g}x MLflow",
            f"{ratio:.2f}x ({run['rps']:.0f} vs {peer['rps']:.0f})",
            ratio >= MLFLOW_RATIO and run["errors"] == 0,
        )
        checks.add(
            f"{label}: p99 below MLflow's",
            f"{run['p99_ms']:.1f} vs {peer['p99_ms']:.1f} ms",
            run["p99_ms"] < peer["p99_ms"],
        )


def check_batch(checks: Checks, batch: dict[str, Any] | None) -> None:
    if not batch:
        return
    warm = batch["warm"]
    checks.add(
        f"batch start-up (1,000 rows, whole command) < {BATCH_STARTUP_S:g} s",
        f"{warm['wall_s']:.2f} s at load {warm['load']:.1f} (cold, storing the fast path: "
        f"{batch['cold']['wall_s']:.2f} s)",
        warm["wall_s"] < BATCH_STARTUP_S,
    )
    for size in batch["sizes"]:
        rows = size["rows"]
        target = BATCH_RATIO_10M if rows >= 10_000_000 else BATCH_RATIO
        for fmt, run in size["gitml"].items():
            checks.add(
                f"batch {rows:,} rows {fmt}: rows/s >= {target:g}x raw predict_proba",
                f"{run['ratio']:.2f}x ({run['rps']:,.0f} vs {size['raw_rps']:,.0f}; "
                f"{run['ratio_to_category']:.2f}x of raw on categoricals; load "
                f"{run['load']:.1f})",
                run["ratio"] >= target if fmt == "parquet" else None,
                "" if fmt == "parquet" else "shown (the target is Parquet's)",
            )
            gib = run["peak_kib"] / 2**20
            checks.add(
                f"batch {rows:,} rows {fmt}: peak memory < {BATCH_PEAK_GIB:g} GiB",
                f"{gib:.2f} GiB",
                gib < BATCH_PEAK_GIB,
            )
