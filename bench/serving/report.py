"""The report: markdown tables on stdout (paste-ready for docs/benchmarks.md), every figure
beside the peer measured in the same run and its ratio, then the targets."""

from __future__ import annotations

import math
from typing import Any

from serving.targets import mlserver_best, one, pick

PROTOCOL_NAMES = {"v1": "/v1/predict", "v2": "V2 infer", "invocations": "/invocations"}
MODEL_ORDER = {"churn": 0, "wine": 1, "diabetes": 2}
KIND_ORDER = {"gitml": 0, "gitml-nofast": 1, "mlflow": 2, "mlserver": 3}


def ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f} ms"


def ratio(a: float, b: float | None) -> str:
    return "-" if not b else f"{a / b:.2f}x"


def table(title: str, columns: list[str], rows: list[list[str]], *, left: int = 1) -> str:
    """A markdown table under a bold title; the first `left` columns left-aligned (text), the
    rest right-aligned (figures)."""
    lines = [f"**{title}**", "", "| " + " | ".join(columns) + " |"]
    lines.append("| " + " | ".join(["---"] * left + ["---:"] * (len(columns) - left)) + " |")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _name(row: dict[str, Any]) -> str:
    if row["kind"] in ("gitml", "gitml-nofast"):
        return f"{row['label']} {PROTOCOL_NAMES.get(row['protocol'], row['protocol'])}"
    return row["label"]


def _sort_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["workers"],
        row.get("concurrency", 0),
        KIND_ORDER.get(row["kind"], 9),
        list(PROTOCOL_NAMES).index(row["protocol"]) if row["protocol"] in PROTOCOL_NAMES else 9,
        row["server"],
    )


def render_header(results: dict[str, Any]) -> str:
    meta = results["meta"]
    peers = ", ".join(f"{k} {v}" for k, v in meta.get("peers", {}).items()) or "none"
    text = (
        f"gitml serving benchmark, {meta['started']}: python {meta['python']}, "
        f"{meta['cpus']} CPUs, scikit-learn {meta['versions'].get('scikit-learn')}, pandas "
        f"{meta['versions'].get('pandas')}; peers: {peers}. 1-min load average "
        f"{meta['load_average_start'][0]:.2f} at start, {meta['load_average_end'][0]:.2f} at end.\n"
        f"One-row requests: median of {meta['runs']} runs of up to {meta['requests']:,} "
        f"(each run stops at {meta['time_limit_s']:g} s), after {meta['warmup']} warm-up; "
        "the servers of a group take turns in alternating order; client and servers share "
        f"the {meta['cpus']} CPUs.\n"
    )
    if meta["load_average_start"][0] > 0.5:
        text += (
            f"**warning:** 1-min load average {meta['load_average_start'][0]:.2f} before the "
            "benchmark started: other work was running; absolute figures are slowed, ratios "
            "less so (the servers of a group are measured interleaved).\n"
        )
    return text


def render_http(results: dict[str, Any], model: str) -> str:
    http = pick(results["http"], model=model)
    rows = []
    for run in sorted(http, key=_sort_key):
        conc = run["concurrency"]
        best = mlserver_best(results["http"], model, conc)
        v1 = one(http, kind="gitml", protocol="v1", workers=run["workers"], concurrency=conc)
        mlflow = one(http, kind="mlflow", workers=run["workers"], concurrency=conc)
        mine = run["kind"] in ("gitml", "gitml-nofast")
        rows.append(
            [
                _name(run),
                str(run["workers"]),
                str(conc),
                f"{run['rps']:,.0f}",
                ms(run["p50_ms"]),
                ms(run["p99_ms"]),
                str(run["errors"]),
                " ".join(f"{r['rps']:.0f}" for r in run["runs"])
                + (" (time-limited)" if run["time_limited"] else ""),
                ratio(run["rps"], best["rps"]) if mine and best else "",
                ratio(run["rps"], mlflow["rps"]) if mine and mlflow else "",
                ratio(run["rps"], v1["rps"]) if run["kind"] == "gitml" and v1 else "",
            ]
        )
    columns = ["server", "workers", "conc.", "req/s", "p50", "p99", "errors", "runs (req/s)"]
    columns += ["x MLServer's best", "x MLflow", "x /v1"]
    title = f"One-row requests, {model} model (same Python load generator for every server)"
    return table(title, columns, rows)


def render_servers(results: dict[str, Any]) -> str:
    rows = []
    servers = sorted(
        results["servers"],
        key=lambda s: (
            MODEL_ORDER.get(s["model"], 9),
            KIND_ORDER.get(s["kind"], 9),
            s["workers"],
            s["server"],
        ),
    )
    for s in servers:
        big = " ".join(f"{p} {v:.1f} ms" for p, v in s["rows1000_ms"].items())
        diff = max(s["max_score_diff"].values(), default=math.nan)
        rows.append(
            [
                s["label"],
                s["model"],
                str(s["workers"]),
                f"{s['ready_s']:.2f} s",
                f"{s['rss_idle_mib']:,.0f} MiB",
                f"{s['rss_mib']:,.0f} MiB",
                big or "-",
                f"{diff:.1e}",
                ", ".join(s["missing"]) or "",
            ]
        )
    columns = ["server", "model", "workers", "start to ready", "RSS ready", "RSS after load"]
    columns += ["1,000-row request", "max diff to raw", "routes missing (404)"]
    return table("Servers (RSS: the whole process tree, from /proc)", columns, rows)


def render_wrk(results: dict[str, Any]) -> str:
    rows = []
    for t in sorted(results["wrk"], key=_sort_key):
        rows.append(
            [
                _name(t),
                t["model"],
                str(t["workers"]),
                f"{t['rps']:,.0f}",
                ms(t["p50_ms"]),
                ms(t["p90_ms"]),
                ms(t["p99_ms"]),
                ms(t["max_ms"]),
                str(t["errors"] + t["non2xx"]),
            ]
        )
    meta = results["meta"]
    title = f"Tail latency under wrk -t2 -c8 --latency, {meta['wrk_seconds']:g} s each"
    columns = ["server", "model", "workers", "req/s", "p50", "p90", "p99", "max", "errors"]
    return table(title, columns, rows)


def render_shadow(shadow: dict[str, Any]) -> str:
    rows = [
        [
            label,
            f"{run['rps']:,.0f}",
            f"{run['p50_ms']:.2f} ms",
            ms(run["p99_ms"]),
            str(run["errors"]),
        ]
        for label, run in (("no shadow", shadow["without"]), ("with a shadow", shadow["with"]))
    ]
    title = (
        "Shadow overhead: /v1, 1 worker, concurrency 1, the same model as its own shadow "
        f"(in-process Deployment): p50 {shadow['overhead']:+.1%}"
    )
    return table(title, ["server", "req/s", "p50", "p99", "errors"], rows)


def render_overhead(over: dict[str, Any]) -> str:
    raw = over["raw"]["p50_ms"]
    rows = [["raw predict_proba, 1-row DataFrame (in this process)", ms(raw), "", "1.00x"]]
    named = [
        ("gitml: one /v1 request through the ASGI app, in-process", over.get("gitml_asgi")),
        ("gitml, fast path off: the same", over.get("gitml-nofast_asgi")),
        ("gitml /v1: HTTP round trip, 1 worker, concurrency 1", over.get("gitml_http_p50_ms")),
        ("MLflow: HTTP round trip, 1 worker, concurrency 1", over.get("mlflow_http_p50_ms")),
    ]
    for label, value in named:
        value = value["p50_ms"] if isinstance(value, dict) else value
        if value is not None:
            rows.append([label, ms(value), f"{value - raw:+.1f} ms", f"{value / raw:.2f}x"])
    return table(
        "In-process overhead (one row, p50)", ["measure", "p50", "over raw", "ratio"], rows
    )


def _runs(run: dict[str, Any]) -> str:
    """`(best of 2.1 s at load 3.0, ...)` when a figure is the best of several runs."""
    if len(run.get("runs", [])) < 2:
        return ""
    return " (best of " + ", ".join(f"{s:.2f} s at load {ld:.1f}" for s, ld in run["runs"]) + ")"


def render_batch(batch: dict[str, Any]) -> str:
    """Start-up, then per size: gitml predict (whole command) against raw predict_proba."""
    cold, warm = batch["cold"], batch["warm"]
    rows = [
        [
            "gitml predict, 1,000 rows, cold (fast path derived and stored)",
            f"{cold['wall_s']:.2f} s",
            "",
            "",
            f"{cold['peak_kib'] / 1024:,.0f} MiB",
            f"{cold['load']:.1f}",
        ],
        [
            "gitml predict, 1,000 rows, warm (best of "
            + ", ".join(f"{w:.2f}" for w in batch["warm_runs"])
            + " s)",
            f"{warm['wall_s']:.2f} s",
            "",
            "",
            f"{warm['peak_kib'] / 1024:,.0f} MiB",
            f"{warm['load']:.1f}",
        ],
    ]
    dtypes = ""
    for size in batch["sizes"]:
        for fmt, run in size["gitml"].items():
            mib = size["input_bytes"][fmt] / 2**20
            rows.append(
                [
                    f"gitml predict, {size['rows']:,} rows, {fmt} ({mib:,.0f} MiB), whole command"
                    + _runs(run),
                    f"{run['wall_s']:.2f} s",
                    f"{run['rps']:,.0f}",
                    f"{run['ratio']:.2f}x",
                    f"{run['peak_kib'] / 1024:,.0f} MiB",
                    f"{run['load']:.1f}",
                ]
            )
        for kind, raw in size["raw"].items():
            base = " (baseline)" if kind == batch["raw_baseline"] else ""
            rps = raw["rows"] / raw["score_s"]
            what = "as read" if kind == "object" else "strings as categoricals"
            rows.append(
                [
                    f"raw predict_proba in memory, {size['rows']:,} rows, {what}{base}"
                    + _runs(raw),
                    f"{raw['score_s']:.2f} s",
                    f"{rps:,.0f}",
                    f"{rps / size['raw_rps']:.2f}x",
                    f"{raw['peak_kib'] / 1024:,.0f} MiB",
                    f"{raw['load']:.1f}",
                ]
            )
            if kind == "object":
                dtypes = raw["frame_dtypes"]
    columns = ["what", "wall", "rows/s", "ratio to raw", "peak RSS", "load"]
    text = table("Batch scoring: gitml predict against raw predict_proba", columns, rows)
    return text + (
        f"raw predict_proba: the frame `pd.read_parquet` gives ({dtypes}), read excluded; "
        f"gitml predict: process start, imports, reading, checking, scoring and writing.\n"
        f"1,000-row output checked against raw predict_proba: max |score - raw| "
        f"{batch['max_score_diff']:.1e}\n"
    )


def render_targets(checks: list[dict[str, Any]]) -> str:
    rows = [[c["target"], c["value"], c["status"]] for c in checks]
    checked = [c for c in checks if c["met"] is not None]
    met = sum(1 for c in checked if c["met"])
    title = f"Targets: {met} of {len(checked)} met"
    return table(title, ["target", "measured", "verdict"], rows, left=3)


def render(results: dict[str, Any]) -> str:
    """Every section this run measured, in order, as markdown."""
    parts = [render_header(results)]
    models = sorted({r["model"] for r in results["http"]}, key=lambda m: MODEL_ORDER.get(m, 9))
    parts += [render_http(results, m) for m in models]
    for r in results["http"]:
        if r["errors"]:
            where = f"{r['server']} {r['protocol']} c{r['concurrency']}"
            parts.append(f"errors: {where}: {r['first_errors']}\n")
    if results["servers"]:
        parts.append(render_servers(results))
    if results["wrk"]:
        parts.append(render_wrk(results))
    if results.get("shadow"):
        parts.append(render_shadow(results["shadow"]))
    for note in results["notes"]:
        parts.append(f"note: {note}\n")
    if results.get("overhead"):
        parts.append(render_overhead(results["overhead"]))
    if results.get("batch"):
        parts.append(render_batch(results["batch"]))
    parts.append(render_targets(results["targets"]))
    parts.append(f"total benchmark time {results['meta']['total_s'] / 60:.1f} min\n")
    return "\n".join(parts)
