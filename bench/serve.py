"""Benchmark `gitml serve` and `gitml predict` against MLServer, `mlflow models serve` and raw
scikit-learn.

Usage, from the project root with the project venv first on PATH (as `make bench` does) and a
trained model in models/model.skops (`make repro`):

    python bench/serve.py                  # everything: about 30 minutes (+5 the first time)
    python bench/serve.py --quick          # one short run of each: a few minutes
    python bench/serve.py --skip-mlserver --skip-mlflow --skip-batch   # gitml alone
    python bench/serve.py --tasks ''       # the reference model only

Everything talks to 127.0.0.1 only; every request loop is bounded by a request count and a
time limit. Nothing in the checkout changes except bench/out/ (git-ignored): serve.json (all
figures, or --json PATH), the servers' logs, the peers' environments and model copies, and
the projects made with `gitml init`. The report is markdown on stdout.

The parts (bench/serving/):
- models.py: the models served: the reference project's (binary), and a multiclass (wine)
  and a regression (diabetes) model made once with `gitml init` under bench/out/projects/.
- wire.py: each protocol's one-row request and how scores are read from its answer. gitml
  is measured over /v1/predict, the Open Inference Protocol V2 (`/v2/models/{name}/infer`,
  one input per column, BYTES/INT64/FP64) and MLflow's /invocations (`dataframe_split`);
  MLServer over V2 with the pandas content type; MLflow over /invocations.
- peers.py: MLflow 3.17 and MLServer 1.7.1 (+ mlserver-sklearn, uvloop 0.21.0) in their own
  venvs under bench/out/, created on first use with the project's exact scikit-learn,
  pandas, numpy, scipy and skops; the model exported inside each from the same skops file
  (MLflow: bench/mlflow_export.py; MLServer: joblib, bench/mlserver_export.py). MLServer runs
  in three configurations: parallel_workers 0, 1 parallel worker (1.7.1's default) and
  adaptive batching (8 rows, 5 ms; parallel_workers 0); its access log is off (debug: false),
  as gitml's and MLflow's are here.
- servers.py: start to ready (process start to the first 200 on the readiness endpoint:
  gitml /readyz, MLflow /ping, MLServer /v2/models/{name}/ready) and resident memory of the
  whole process tree from /proc, when ready and after the load.
- scenarios.py + load.py: per worker count, a group of servers is started; every route's
  answers to 20 test rows are checked against the raw pipeline (to 1e-9) and a 1,000-row
  request is timed; then per concurrency (1 and 8), --runs runs, each endpoint once per run
  in alternating order (A B C, C B A, ...), so they share the machine's background equally.
  A run is up to --requests one-row POSTs (keep-alive `http.client` connections, one per
  thread, bodies cycled from the test set and encoded before the clock) or --time-limit
  seconds; figures are the median of the runs' requests/s, p50 and p99. MLServer has no
  HTTP worker count: it is measured in the 1-worker group; the 2-worker gitml rows are
  compared with those figures.
- wrk.py: tail latency under wrk (-t2 -c8 --latency, a Lua script cycling the same one-row
  bodies) for gitml /v1 and V2 and MLServer's best configuration at concurrency 8.
- gitml_servers.py: `gitml serve` (all protocols), the same with `serve.fast_path_max_rows:
  0` (every request through the pipeline), and the shadow overhead: the in-process API
  (`Deployment`) serving the model with the same model file as its own shadow, against
  without, /v1 p50 at concurrency 1.
- inprocess.py: raw predict_proba on one-row frames and one request through gitml's ASGI
  app, to show what HTTP and gitml each add.
- batch.py: `gitml predict` on --batch-rows resampled rows (Parquet; CSV up to 1M) as a
  separate process, against raw predict_proba in memory (also alone: bench/predict.py).
- targets.py, report.py: the issue's targets (met / NOT met; exit code 0 whatever they say,
  non-zero only if a command fails), and the markdown report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from measured import measure
from serving import batch, inprocess, peers, report
from serving.env import OUT_DIR, RESULT_MARK, ROOT, progress
from serving.gitml_servers import (
    gitml_nofast_spec,
    gitml_spec,
    serve_deployment,
    shadow_spec,
)
from serving.models import Model, ensure_init_project, load_model_under_test
from serving.scenarios import Endpoint, measure_group
from serving.servers import Server, ServerSpec, http_request
from serving.targets import check_targets, mlserver_best, pick
from serving.wire import v1_body
from serving.wrk import wrk_available

SHADOW_METRIC = "gitml_shadow_requests_total"


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    from importlib import metadata as md

    names = ["scikit-learn", "pandas", "numpy", "skops", "fastapi", "uvicorn", "pyarrow"]
    versions = {}
    for name in names:
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "versions": versions,
        "peers": {},
        "load_average_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "requests": args.requests,
        "runs": args.runs,
        "warmup": args.warmup,
        "time_limit_s": args.time_limit,
        "wrk_seconds": args.wrk_seconds,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "tasks": args.tasks,
        "quick": args.quick,
    }


class Peers:
    """The peers' environments and model copies, made once per run (and per model)."""

    def __init__(self, args: argparse.Namespace, meta: dict[str, Any]) -> None:
        self.args = args
        self.mlflow_bin = self.mlserver_bin = None
        if not args.skip_mlflow:
            self.mlflow_bin = peers.ensure_venv(args.mlflow_venv, peers.MLFLOW_REQUIREMENTS)
            meta["peers"]["MLflow"] = peers.peer_version(self.mlflow_bin, "mlflow")
        if not args.skip_mlserver:
            venv = args.mlserver_venv
            self.mlserver_bin = peers.ensure_venv(venv, peers.MLSERVER_REQUIREMENTS)
            meta["peers"]["MLServer"] = peers.peer_version(self.mlserver_bin, "mlserver")
        self._exports: dict[tuple[str, str], Path] = {}

    def mlflow(self, model: Model, workers: int) -> list[ServerSpec]:
        if self.mlflow_bin is None:
            return []
        key = ("mlflow", model.key)
        if key not in self._exports:
            progress(f"{model.key}: exporting the model to MLflow's format")
            self._exports[key] = peers.export_mlflow_model(self.mlflow_bin, model)
        access_log = self.args.mlflow_access_log
        return [
            peers.mlflow_spec(self.mlflow_bin, self._exports[key], workers, access_log=access_log)
        ]

    def mlserver(self, model: Model, configs: list[str]) -> list[ServerSpec]:
        if self.mlserver_bin is None:
            return []
        key = ("mlserver", model.key)
        if key not in self._exports:
            progress(f"{model.key}: exporting the model for MLServer (joblib)")
            self._exports[key] = peers.export_mlserver_model(self.mlserver_bin, model)
        return [
            peers.mlserver_spec(self.mlserver_bin, self._exports[key], model, c) for c in configs
        ]


def _wrk_chooser(endpoints: list[Endpoint], loads: list[dict[str, Any]]) -> list[Endpoint]:
    """gitml /v1 and V2, and MLServer's configuration with the most requests/s at 8."""
    chosen = [e for e in endpoints if e.spec.kind == "gitml" and e.protocol in ("v1", "v2")]
    best = mlserver_best(loads, "churn", 8)
    chosen += [e for e in endpoints if best is not None and e.spec.name == best["server"]]
    return chosen


def _merge(results: dict[str, Any], group: dict[str, list[dict[str, Any]]]) -> None:
    for key in ("http", "servers", "wrk"):
        results[key] += group[key]


def http_benchmark(args: argparse.Namespace, results: dict[str, Any], churn: Model) -> None:
    """The reference model per worker count, the shadow overhead, then the other tasks."""
    peer = Peers(args, results["meta"])
    use_wrk = not args.skip_wrk and wrk_available()
    if not args.skip_wrk and not use_wrk:
        results["notes"].append("wrk not installed (apt-get install wrk): no tail latency")
    for workers in args.workers:
        specs = [gitml_spec(churn, workers)]
        if not args.skip_fast_path_off:
            specs.append(gitml_nofast_spec(churn, workers))
        specs += peer.mlflow(churn, workers)
        if workers == min(args.workers):
            specs += peer.mlserver(churn, list(peers.MLSERVER_CONFIGS))
        group = measure_group(
            churn,
            specs,
            args,
            concurrency=args.concurrency,
            choose_wrk=_wrk_chooser if use_wrk and 8 in args.concurrency else None,
        )
        _merge(results, group)
    for load in pick(results["http"], workers=min(args.workers), concurrency=1):
        if load["kind"] == "mlflow" or (load["kind"] == "gitml" and load["protocol"] == "v1"):
            results["overhead"][f"{load['kind']}_http_p50_ms"] = load["p50_ms"]
    if not args.skip_shadow:
        results["shadow"] = shadow_benchmark(args, results, churn)
    for key in args.tasks:
        model = load_model_under_test(key, ensure_init_project(key))
        specs = [gitml_spec(model, 1), *peer.mlserver(model, args.task_mlserver)]
        _merge(results, measure_group(model, specs, args, concurrency=args.concurrency))


def shadow_benchmark(
    args: argparse.Namespace, results: dict[str, Any], churn: Model
) -> dict[str, Any] | None:
    """/v1 p50 at concurrency 1 with the model as its own shadow and without, same runs."""
    specs = [shadow_spec(churn, shadow=False), shadow_spec(churn, shadow=True)]
    group = measure_group(churn, specs, args, concurrency=[1], probe=_shadow_outcomes)
    alone, shadowed = group["http"]
    outcomes = group["servers"][1]["probe"]
    if not outcomes:
        results["notes"].append(
            f"the shadow server's /metrics has no {SHADOW_METRIC}: this gitml's Deployment "
            "does not score with its shadow yet, so the shadow overhead is not measured"
        )
        return None
    return {
        "without": alone,
        "with": shadowed,
        "shadow_outcomes": outcomes,
        "overhead": shadowed["p50_ms"] / alone["p50_ms"] - 1,
        "servers": group["servers"],
    }


def _shadow_outcomes(server: Server) -> dict[str, float]:
    """The shadow's requests by outcome (ok, failed, timeout, skipped), from /metrics."""
    status, body = http_request(server.port, "GET", "/metrics")
    outcomes: dict[str, float] = {}
    for line in body.decode().splitlines() if status == 200 else []:
        if line.startswith(SHADOW_METRIC + "{"):
            labels, _, value = line.rpartition(" ")
            outcome = labels.partition('outcome="')[2].partition('"')[0]
            outcomes[outcome] = outcomes.get(outcome, 0.0) + float(value)
    return outcomes


def bench(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {
        "meta": metadata(args),
        "http": [],
        "servers": [],
        "wrk": [],
        "notes": [],
        "overhead": {},
    }
    if not (ROOT / batch.MODEL).is_file() or not batch.TEST_DATA.is_file():
        raise SystemExit(
            f"bench: needs {batch.MODEL} and {batch.TEST_DATA.relative_to(ROOT)}: run "
            "`make repro` (or `dvc pull`) first"
        )
    if not args.skip_http:
        from gitml.model.persist import load_model

        churn = load_model_under_test("churn", ROOT)
        features, categorical = batch.signature_columns()
        progress("raw predict_proba on one-row frames")
        pipeline = load_model(churn.path)
        results["overhead"]["raw"] = inprocess.raw_one_row(pipeline, features, categorical)
        progress("gitml app in-process (ASGI, no HTTP) on one-row requests")
        one_row = [v1_body(churn, [r]) for r in churn.records]
        results["overhead"]["gitml_asgi"] = inprocess.asgi_one_row(one_row)
        if not args.skip_fast_path_off:
            nofast = inprocess.asgi_one_row(one_row, fast_path=False)
            results["overhead"]["gitml-nofast_asgi"] = nofast
        http_benchmark(args, results, churn)
    if not args.skip_batch:
        results["batch"] = batch.batch_runs(args, batch.signature_columns()[0])
    results["targets"] = check_targets(results)
    results["meta"]["load_average_end"] = os.getloadavg()
    results["meta"]["total_s"] = time.perf_counter() - started
    return results


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add(
        "--quick",
        action="store_true",
        help="one short run per setting (300 requests, 5 s), 3 s of wrk, no batch",
    )
    add("--requests", type=int, default=3000, help="one-row requests per run (default 3000)")
    add("--runs", type=int, default=3, help="runs per endpoint and setting; the median is kept")
    add("--warmup", type=int, default=200, help="unrecorded requests before the first run")
    add("--time-limit", type=float, default=20.0, help="seconds at most per run (default 20)")
    add("--concurrency", type=_int_list, default=[1, 8], help="client connections (1,8)")
    add("--workers", type=_int_list, default=[1, 2], help="gitml and MLflow workers (1,2)")
    add("--wrk-seconds", type=float, default=10.0, help="duration of each wrk run")
    add(
        "--tasks",
        type=_names,
        default=["wine", "diabetes"],
        help="models made with gitml init, served against MLServer (default wine,diabetes)",
    )
    add(
        "--task-mlserver",
        type=_names,
        default=["mlserver-pw0", "mlserver-batch"],
        help="MLServer configurations for those models",
    )
    add(
        "--batch-rows",
        type=_int_list,
        default=[1_000_000],
        help="rows for batch scoring, one or more sizes (default 1000000; bench/predict.py "
        "runs 1M and 10M)",
    )
    add("--chunk-size", type=int, default=None, help="`gitml predict --chunk-size`")
    add("--rounds", type=int, default=None, help="batch: raw-then-gitml rounds per size")
    add("--skip-mlflow", action="store_true", help="no MLflow server")
    add("--skip-mlserver", action="store_true", help="no MLServer")
    add("--skip-fast-path-off", action="store_true", help="no gitml with the fast path off")
    add("--skip-shadow", action="store_true", help="no shadow overhead")
    add("--skip-wrk", action="store_true", help="no tail latency under wrk")
    add("--skip-http", action="store_true", help="no HTTP serving")
    add("--skip-batch", action="store_true", help="no batch scoring")
    add(
        "--mlflow-venv",
        type=Path,
        default=OUT_DIR / "venv-mlflow",
        help="MLflow's own environment, created on first use",
    )
    add(
        "--mlserver-venv",
        type=Path,
        default=OUT_DIR / "venv-mlserver",
        help="MLServer's own environment, created on first use",
    )
    add(
        "--mlflow-access-log",
        action="store_true",
        help="keep MLflow's per-request access log (its default; off here, as gitml's is)",
    )
    add("--json", type=Path, default=OUT_DIR / "serve.json", help="where to write all figures")
    parser.epilog = (
        "(internal) --measure -- CMD...: run CMD, print its wall time and peak RSS; "
        "--raw-batch PATH DTYPES: raw predict_proba timing; --shadow-server MODEL PROJECT "
        "PORT [--with-shadow]: the shadow overhead's server"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.runs, args.warmup = 300, 1, 50
        args.time_limit, args.wrk_seconds, args.skip_batch = 5.0, 3.0, True
    return args


def _shadow_server(argv: list[str]) -> int:
    """Child mode: serve MODEL with (or without) itself as its shadow."""
    model, project, port = Path(argv[0]), Path(argv[1]), int(argv[2])
    return serve_deployment(model, project, port, with_shadow="--with-shadow" in argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--measure"]:
        return measure(argv[2:] if argv[1:2] == ["--"] else argv[1:])
    if argv[:1] == ["--raw-batch"]:
        repeats = int(argv[3]) if len(argv) > 3 else 3
        print(RESULT_MARK + json.dumps(batch.raw_batch(argv[1], argv[2], repeats)), flush=True)
        return 0
    if argv[:1] == ["--shadow-server"]:
        return _shadow_server(argv[1:])
    args = parse_args(argv)
    results = bench(args)
    print(report.render(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"figures: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
