"""Benchmark `gitml serve` and `gitml predict` against `mlflow models serve` and raw scikit-learn.

Usage, from the project root with the project venv first on PATH (as `make bench` does) and a
trained model in models/model.skops (`make repro`):

    python bench/serve.py                   # everything: about 9 minutes (+2 the first time)
    python bench/serve.py --skip-mlflow     # no peer server (its cells say "peer not measured")
    python bench/serve.py --skip-batch      # HTTP only
    python bench/serve.py --requests 1000 --rows 200000 --workers 1   # a quicker look

Everything talks to 127.0.0.1 only; every request loop is bounded by a request count and a
time limit. Nothing in the checkout is modified except bench/out/ (git-ignored): serve.json
(all figures, or --json PATH), the servers' logs, the MLflow environment and model copy.

What it measures:
- HTTP, one-row requests, with 1 and with 2 uvicorn workers (`--workers`). Both servers
  are started, then loaded one at a time in alternating rounds (gitml then MLflow, MLflow
  then gitml, ...; default 3 rounds), so both share whatever else the machine is doing.
  The load generator is the same for both: N threads (concurrency 1 and 8), each with one
  keep-alive `http.client` connection, sending one-row POSTs cycled from the real test set
  (data/processed/test.parquet), bodies encoded before the clock starts. A warm-up (default
  200 requests, first round only) is not recorded, then a fixed number of requests
  (default 3,000 per server and setting, split between the rounds) or the time limit,
  whichever comes first: requests/s (over the rounds' summed wall time), p50 and p99
  latency (over all requests), errors, and each round's ratio to show the spread.
  gitml: `gitml serve --model models/model.skops --workers N`, POST /v1/predict
  {"records": [{...}]}, ready on GET /readyz. MLflow: the same pipeline exported with
  bench/mlflow_export.py (skops, predict_proba, with a signature so it validates input as
  gitml does), `mlflow models serve --env-manager local --workers N`, POST /invocations
  {"dataframe_split": ...}, ready on GET /ping; its uvicorn access log is off
  (UVICORN_ACCESS_LOG=false), as gitml's is by default, unless --mlflow-access-log. Both
  answers are checked against raw predict_proba before the clock starts. A third server,
  gitml with `serve.fast_path_max_rows: 0` (every request through the pipeline; a scratch
  project under bench/out/ holds that params.yaml), runs in the same rounds unless
  --skip-fast-path-off, so the fast path's share is measured, not assumed. Also: start to
  ready, resident memory of the server's process tree after the load, and a 1,000-row
  request (median of 10).
- In-process overhead: the p50 of one request driven straight through gitml's ASGI app in
  this process (create_app as `gitml serve` builds it; no socket, no client: body, JSON,
  signature checks, the micro-batcher's scoring thread, predict_proba, the answer) against
  the p50 of raw `pipeline.predict_proba` on a one-row DataFrame read as evaluate reads the
  test set (gitml.data.io.read_table, categoricals), also in this process. The HTTP round
  trip p50 at concurrency 1 (1 worker; adds the client and loopback TCP) is shown beside
  it, for gitml and MLflow.
- Batch: N rows (default 1,000,000) resampled with replacement (seed 42) from the typed
  Telco data, written as Parquet and CSV in a temp dir. `gitml predict IN -o OUT` runs as a
  separate process under a measuring wrapper: whole-command wall time (start-up, model
  load, read, validate, score, write) and peak RSS (getrusage RUSAGE_CHILDREN). The same
  command on 1,000 rows gives the fixed start-up cost, so rows/s "excl. start-up" is also
  shown. Raw: a separate process reads the Parquet file with pandas and times
  `pipeline.predict_proba` on the whole frame in memory (median of 3, read excluded). The
  target's baseline is that very DataFrame (string columns as pandas reads them: object);
  the same frame with categorical columns (faster to encode) is shown beside it.

Targets (met / NOT met is printed; the exit code is 0 whatever they say, non-zero only if a
command fails): one-row requests/s >= 2x MLflow's and p99 lower, at concurrency 1 and 8 and
every worker count; batch rows/s (whole command) >= 0.8x raw predict_proba; batch peak
memory < 1.5 GiB.

The MLflow environment is the benchmark's own (bench/out/venv-mlflow, or --mlflow-venv),
never the project's: created on first use with MLflow 3.17.2 and the project's exact
scikit-learn, pandas, numpy, scipy and skops versions, plus gitml itself without
dependencies (the pipeline contains gitml's CategoryEncoder).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measured import MEASURE_MARK, measure  # bench/measured.py

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "bench" / "out"
MODEL = "models/model.skops"
SIGNATURE = ROOT / "models" / "signature.json"
TEST_DATA = ROOT / "data" / "processed" / "test.parquet"
BATCH_SOURCES = [ROOT / "data" / "raw" / "telco_churn.parquet", TEST_DATA]
MLFLOW_REQUIREMENT = "mlflow==3.17.2"
# The MLflow venv gets the project's exact versions of what touches the model.
MLFLOW_PINNED = ["scikit-learn", "pandas", "numpy", "scipy", "skops"]
HOST, SEED = "127.0.0.1", 42
TARGET_THROUGHPUT_RATIO, TARGET_BATCH_RATIO, TARGET_PEAK_GIB = 2.0, 0.8, 1.5
READY_TIMEOUT_S = 120.0
RESULT_MARK = "@@bench-result "
JSON_HEADERS = {"Content-Type": "application/json"}
NOFAST = "gitml-fast-path-off"  # gitml with serve.fast_path_max_rows: 0


_STARTED = time.perf_counter()


def progress(message: str) -> None:
    elapsed = time.perf_counter() - _STARTED
    print(
        f"bench: [{elapsed // 60:.0f}:{elapsed % 60:04.1f}] {message}", file=sys.stderr, flush=True
    )


def bench_env(venv_bin: Path | None = None) -> dict[str, str]:
    """This interpreter's venv (or `venv_bin`) first on PATH; unbuffered; no DVC analytics."""
    env = dict(os.environ)
    first = venv_bin or Path(sys.executable).parent
    env["PATH"] = f"{first}{os.pathsep}{env.get('PATH', '')}"
    env.update(DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1")
    if venv_bin is not None:
        env["VIRTUAL_ENV"] = str(venv_bin.parent)
    return env


# --- child modes: measuring wrapper and raw batch scoring ----------------------------------------


def raw_batch(path: str, dtypes: str, repeats: int = 3) -> dict[str, Any]:
    """Read `path` with pandas, then time predict_proba on the whole frame (read excluded)."""
    import pandas as pd

    from gitml.model.persist import load_model

    features, categorical = signature_columns()
    pipeline = load_model(ROOT / MODEL)
    started = time.perf_counter()
    frame = pd.read_parquet(path, columns=features)
    if dtypes == "category":
        frame = frame.astype({c: "category" for c in categorical})
    read_s = time.perf_counter() - started
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        pipeline.predict_proba(frame)
        timings.append(time.perf_counter() - started)
    return {
        "rows": len(frame),
        "dtypes": dtypes,
        "read_s": read_s,
        "score_s": statistics.median(timings),
        "score_runs": timings,
        "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


# --- inputs --------------------------------------------------------------------------------------


def signature_columns() -> tuple[list[str], list[str]]:
    """The model's input columns, and which of them are categorical, from signature.json."""
    inputs = json.loads(SIGNATURE.read_text())["inputs"]
    return [c["name"] for c in inputs], [c["name"] for c in inputs if c["type"] == "category"]


def positive_class() -> str:
    return json.loads(SIGNATURE.read_text())["output"]["positive_class"]


def _plain(value: Any) -> Any:
    """A JSON value for one cell: numpy scalars to Python, NaN to null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def test_records(features: list[str]) -> list[dict[str, Any]]:
    """Every test-set row as a request record: signature names, categories as strings."""
    import pandas as pd

    frame = pd.read_parquet(TEST_DATA, columns=features)
    return [
        {c: _plain(v) for c, v in zip(features, row, strict=True)}
        for row in frame.itertuples(index=False)
    ]


def gitml_body(records: list[dict[str, Any]], features: list[str]) -> bytes:
    return json.dumps({"records": records}).encode()


def mlflow_body(records: list[dict[str, Any]], features: list[str]) -> bytes:
    data = [[r[c] for c in features] for r in records]
    return json.dumps({"dataframe_split": {"columns": features, "data": data}}).encode()


# --- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class ServerSpec:
    """How to start one server and talk to it."""

    name: str
    command: list[str]  # without host, port and workers
    env: dict[str, str]
    ready_path: str
    predict_path: str
    encode: Any  # (records, features) -> bytes

    def start_command(self, port: int, workers: int) -> list[str]:
        if self.name == "mlflow":
            return [*self.command, "-h", HOST, "-p", str(port), "--workers", str(workers)]
        return [*self.command, "--host", HOST, "--port", str(port), "--workers", str(workers)]


class Server:
    """A server process we started, in its own session so the whole tree stops together."""

    def __init__(self, spec: ServerSpec, workers: int) -> None:
        self.spec, self.workers, self.port = spec, workers, free_port()
        self.log_path = OUT_DIR / f"serve-{spec.name}-w{workers}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s = math.nan

    def start(self) -> None:
        cmd = self.spec.start_command(self.port, self.workers)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        # a file, not a pipe: a chatty server (MLflow logs every request) never blocks
        with open(self.log_path, "wb") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            started = time.perf_counter()
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=self.spec.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while time.perf_counter() - started < READY_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"bench: {self.spec.name} exited {self.proc.returncode} before "
                    f"it was ready:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                if http_request(self.port, "GET", self.spec.ready_path, timeout=2)[0] == 200:
                    self.ready_s = time.perf_counter() - started
                    return
            time.sleep(0.05)
        self.stop()
        raise SystemExit(
            f"bench: {self.spec.name} not ready after {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}"
        )

    def rss_mib(self) -> float:
        """Resident memory of the server's whole process tree (main process and workers)."""
        import psutil

        assert self.proc is not None
        main = psutil.Process(self.proc.pid)
        return sum(p.memory_info().rss for p in [main, *main.children(recursive=True)]) / 2**20

    def stop(self) -> None:
        """SIGTERM to the process group we created (workers too), SIGKILL after 15 s."""
        if self.proc is None:
            return
        group = self.proc.pid  # start_new_session: the group id is the leader's pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.perf_counter() + 15
            while time.perf_counter() < deadline:
                self.proc.poll()  # reap the leader
                try:
                    os.killpg(group, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                continue  # still there: SIGKILL
            break
        self.proc.wait(timeout=5)
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http_request(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 30
) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=JSON_HEADERS if body else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def response_scores(server: str, payload: Any, positive_column: int) -> list[float]:
    """The positive-class probability per row from a server's JSON answer."""
    if server == "mlflow":
        return [row[positive_column] for row in payload["predictions"]]
    return [row["score"] for row in payload["predictions"]]


# --- load generator ------------------------------------------------------------------------------


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
    warm_each = max(1, warmup // concurrency)

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


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the rounds of one server and setting: requests/s over the summed wall time,
    percentiles over every latency; each round's requests/s kept to show the spread."""
    import numpy as np

    done = np.array([x for r in rounds for x in r["latencies_ms"]])
    errors = [e for r in rounds for e in r["errors"]]
    wall = sum(r["wall_s"] for r in rounds)
    ok = len(done)
    return {
        "requests": ok,
        "errors": len(errors),
        "first_errors": errors[:3],
        "wall_s": wall,
        "time_limited": any(r["time_limited"] for r in rounds),
        "rps": ok / wall if wall > 0 else math.nan,
        "round_rps": [len(r["latencies_ms"]) / r["wall_s"] for r in rounds],
        "p50_ms": float(np.percentile(done, 50)) if ok else math.nan,
        "p99_ms": float(np.percentile(done, 99)) if ok else math.nan,
        "mean_ms": float(done.mean()) if ok else math.nan,
    }


# --- MLflow: its own environment and its copy of the model ---------------------------------------


def ensure_mlflow_venv(venv: Path) -> Path:
    """Create the MLflow venv on first use; return its bin directory."""
    from importlib import metadata

    bin_dir = venv / "bin"
    stamp = venv / ".bench-installed"
    pins = [f"{name}=={metadata.version(name)}" for name in MLFLOW_PINNED]
    wanted = " ".join([MLFLOW_REQUIREMENT, *pins])
    if stamp.is_file() and stamp.read_text().strip() == wanted:
        return bin_dir
    progress(f"creating the MLflow environment in {venv} ({wanted}); once, 1-3 minutes")
    if not (bin_dir / "python").exists():
        run_checked([sys.executable, "-m", "venv", str(venv)])
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet"]
    pip.append("--disable-pip-version-check")
    run_checked([*pip, MLFLOW_REQUIREMENT, *pins])
    run_checked([*pip, "--no-deps", "-e", str(ROOT)])
    stamp.write_text(wanted + "\n")
    return bin_dir


def export_mlflow_model(bin_dir: Path, features: list[str]) -> Path:
    """The same model file, saved as an MLflow model by bench/mlflow_export.py."""
    out = OUT_DIR / "mlflow-model"
    run_checked(
        [
            str(bin_dir / "python"),
            str(ROOT / "bench" / "mlflow_export.py"),
            str(ROOT / MODEL),
            str(TEST_DATA),
            str(out),
            "--features",
            ",".join(features),
        ],
        env=bench_env(bin_dir),
    )
    return out


def run_checked(cmd: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, env=env or bench_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            f"bench: `{' '.join(cmd)}` exited {proc.returncode}:\n"
            f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    return proc.stdout


# --- HTTP scenarios ------------------------------------------------------------------------------


def check_answers(
    server: Server,
    records: list[dict[str, Any]],
    features: list[str],
    expected: list[float],
    positive_column: int,
) -> float:
    """Largest difference between the server's scores and raw predict_proba on 20 rows."""
    status, body = http_request(
        server.port, "POST", server.spec.predict_path, server.spec.encode(records, features)
    )
    if status != 200:
        raise SystemExit(
            f"bench: {server.spec.name} answered {status} to 20 test rows: {body[:500]!r}"
        )
    got = response_scores(server.spec.name, json.loads(body), positive_column)
    if len(got) != len(expected):
        raise SystemExit(
            f"bench: {server.spec.name} returned {len(got)} scores for {len(expected)} rows"
        )
    return max(abs(a - b) for a, b in zip(got, expected, strict=True))


def time_big_request(server: Server, body: bytes, repeats: int = 10) -> float:
    """Median milliseconds of one 1,000-row request (fresh connection each time)."""
    timings = []
    for i in range(repeats + 2):
        started = time.perf_counter()
        status, _ = http_request(server.port, "POST", server.spec.predict_path, body)
        if status != 200:
            raise SystemExit(f"bench: {server.spec.name} answered {status} to a 1,000-row request")
        if i >= 2:
            timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def http_runs(
    specs: list[ServerSpec],
    args: argparse.Namespace,
    features: list[str],
    records: list[dict[str, Any]],
    expected: list[float],
    positive_column: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per worker count: start every server, check its answers, time a 1,000-row request,
    then at each concurrency run the servers in alternating rounds (A B, B A, ...), so that
    both see the same background load; only the server under load does any work."""
    loads, servers = [], []
    bodies = {spec.name: [spec.encode([r], features) for r in records] for spec in specs}
    per_round = math.ceil(args.requests / args.rounds)
    for workers in args.workers:
        with contextlib.ExitStack() as stack:
            running = []
            for spec in specs:
                progress(f"{spec.name}, {workers} worker(s): starting")
                server = stack.enter_context(Server(spec, workers))
                diff = check_answers(server, records[:20], features, expected, positive_column)
                big_ms = time_big_request(server, spec.encode(records[:1000], features))
                running.append((server, diff, big_ms))
            for concurrency in args.concurrency:
                rounds: dict[str, list[dict[str, Any]]] = {spec.name: [] for spec in specs}
                for n in range(args.rounds):
                    progress(
                        f"{workers} worker(s), concurrency {concurrency}: round {n + 1} of "
                        f"{args.rounds}, {per_round:,} requests each"
                    )
                    order = running if n % 2 == 0 else running[::-1]
                    for server, _, _ in order:
                        name = server.spec.name
                        rounds[name].append(
                            run_load(
                                server.port,
                                server.spec.predict_path,
                                bodies[name],
                                concurrency=concurrency,
                                requests=per_round,
                                warmup=args.warmup if n == 0 else 0,
                                time_limit=args.time_limit / args.rounds,
                            )
                        )
                for name, parts in rounds.items():
                    summary = summarize(parts)
                    loads.append(
                        {"server": name, "workers": workers, "concurrency": concurrency, **summary}
                    )
            for server, diff, big_ms in running:
                servers.append(
                    {
                        "server": server.spec.name,
                        "workers": workers,
                        "ready_s": server.ready_s,
                        "rss_mib": server.rss_mib(),
                        "rows1000_ms": big_ms,
                        "max_score_diff": diff,
                        "log": str(server.log_path.relative_to(ROOT)),
                    }
                )
    return loads, servers


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


# --- batch ---------------------------------------------------------------------------------------


def write_batch_inputs(tmp: Path, rows: int, features: list[str]) -> dict[str, Path]:
    """`rows` rows resampled with replacement from the typed data, as Parquet and CSV."""
    import pandas as pd

    source = next(p for p in BATCH_SOURCES if p.is_file())
    frame = pd.read_parquet(source, columns=features)
    big = frame.sample(n=rows, replace=True, random_state=SEED).reset_index(drop=True)
    paths = {
        "parquet": tmp / f"rows-{rows}.parquet",
        "csv": tmp / f"rows-{rows}.csv",
        "small": tmp / "rows-1000.parquet",
    }
    big.to_parquet(paths["parquet"], index=False)
    big.to_csv(paths["csv"], index=False)
    big.head(1000).to_parquet(paths["small"], index=False)
    return paths


def run_measured(cmd: list[str], log_name: str) -> dict[str, Any]:
    """Run `cmd` under the measuring wrapper; its wall time, peak RSS and output."""
    wrapper = [sys.executable, str(Path(__file__).resolve()), "--measure", "--", *cmd]
    proc = subprocess.run(wrapper, cwd=ROOT, env=bench_env(), capture_output=True, text=True)
    lines = proc.stdout.splitlines()
    marks = [ln for ln in lines if ln.startswith(MEASURE_MARK)]
    output = "\n".join(ln for ln in lines if not ln.startswith(MEASURE_MARK)) + proc.stderr
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / f"{log_name}.log").write_text(f"$ {' '.join(cmd)}\n{output}\n")
    if not marks or json.loads(marks[-1][len(MEASURE_MARK) :])["returncode"] != 0:
        raise SystemExit(f"bench: `{' '.join(cmd)}` failed:\n{output[-3000:]}")
    return {**json.loads(marks[-1][len(MEASURE_MARK) :]), "output": output.strip()[-2000:]}


def gitml_predict(
    src: Path, dst: Path, rows: int, chunk_size: int | None, log_name: str
) -> dict[str, Any]:
    """`gitml predict` under the measuring wrapper; stop if it wrote the wrong row count."""
    cmd = [sys.executable, "-m", "gitml", "predict", str(src), "-o", str(dst), "--model", MODEL]
    if chunk_size:
        cmd += ["--chunk-size", str(chunk_size)]
    run = run_measured(cmd, log_name)
    written = count_rows(dst)
    if written != rows:
        raise SystemExit(f"bench: `{' '.join(cmd)}` wrote {written:,} rows for {rows:,}")
    return run


def check_batch_scores(src: Path, out: Path, features: list[str]) -> float:
    """Largest difference between `gitml predict`'s scores and raw predict_proba on `src`."""
    import pandas as pd

    from gitml.model.persist import load_model

    pipeline = load_model(ROOT / MODEL)
    column = [str(c) for c in pipeline.classes_].index(positive_class())
    expected = pipeline.predict_proba(pd.read_parquet(src, columns=features))[:, column]
    got = pd.read_parquet(out, columns=["score"])["score"].to_numpy()
    return float(abs(got - expected).max())


def count_rows(path: Path) -> int:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 22), b"")) - 1


def raw_batch_child(path: Path, dtypes: str) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--raw-batch", str(path), dtypes]
    out = run_checked(cmd)
    line = next(ln for ln in out.splitlines() if ln.startswith(RESULT_MARK))
    return json.loads(line[len(RESULT_MARK) :])


def batch_runs(args: argparse.Namespace, features: list[str]) -> dict[str, Any]:
    """gitml predict on Parquet and CSV, its fixed cost on 1,000 rows, and raw predict_proba."""
    tmp = Path(tempfile.mkdtemp(prefix="gitml-bench-serve-"))
    try:
        progress(f"batch: writing {args.rows:,} resampled rows (Parquet and CSV)")
        started = time.perf_counter()
        inputs = write_batch_inputs(tmp, args.rows, features)
        write_s = time.perf_counter() - started
        result: dict[str, Any] = {
            "rows": args.rows,
            "write_s": write_s,
            "chunk_size": args.chunk_size,
            "gitml": {},
            "raw": {},
        }
        progress("batch: gitml predict on 1,000 rows, twice (fixed start-up cost)")
        # twice, the faster kept: the first run may also write bytecode caches
        result["gitml"]["small"] = min(
            (
                gitml_predict(
                    inputs["small"],
                    tmp / "out-small.parquet",
                    1000,
                    args.chunk_size,
                    "predict-1000",
                )
                for _ in range(2)
            ),
            key=lambda run: run["wall_s"],
        )
        result["max_score_diff"] = check_batch_scores(
            inputs["small"], tmp / "out-small.parquet", features
        )
        for fmt in ("parquet", "csv"):
            progress(f"batch: gitml predict, {args.rows:,} rows, {fmt}")
            result["gitml"][fmt] = gitml_predict(
                inputs[fmt], tmp / f"out.{fmt}", args.rows, args.chunk_size, f"predict-{fmt}"
            )
            (tmp / f"out.{fmt}").unlink(missing_ok=True)
        for dtypes in ("object", "category"):
            progress(f"batch: raw predict_proba in memory, {dtypes} strings")
            result["raw"][dtypes] = raw_batch_child(inputs["parquet"], dtypes)
        result["input_bytes"] = {k: inputs[k].stat().st_size for k in ("parquet", "csv")}
        fixed = result["gitml"]["small"]["wall_s"]
        # The target's baseline is the very DataFrame pandas reads (object strings); the
        # categorical one is shown beside it because it is what a tuned caller would pass.
        raw = result["raw"]
        result["raw_rps"] = raw["object"]["rows"] / raw["object"]["score_s"]
        result["raw_rps_category"] = raw["category"]["rows"] / raw["category"]["score_s"]
        result["raw_baseline"] = "object"
        for fmt in ("parquet", "csv"):
            run = result["gitml"][fmt]
            run["rps"] = args.rows / run["wall_s"]
            run["rps_excl_startup"] = args.rows / max(run["wall_s"] - fixed, 1e-9)
            run["ratio"] = run["rps"] / result["raw_rps"]
            run["ratio_excl_startup"] = run["rps_excl_startup"] / result["raw_rps"]
            run["ratio_to_category"] = run["rps"] / result["raw_rps_category"]
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- targets and report --------------------------------------------------------------------------


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured value and met / NOT met / not checked."""
    checks: list[dict[str, Any]] = []

    def add(name: str, value: str, ok: bool | None, why: str = "") -> None:
        status = why or ("met" if ok else "NOT met")
        checks.append({"target": name, "value": value, "status": status, "met": ok})

    peer = {(r["workers"], r["concurrency"]): r for r in results["http"] if r["server"] == "mlflow"}
    for run in (r for r in results["http"] if r["server"] == "gitml"):
        key = (run["workers"], run["concurrency"])
        label = f"{run['workers']} worker(s), concurrency {run['concurrency']}"
        other = peer.get(key)
        if other is None:
            add(
                f"{label}: req/s >= {TARGET_THROUGHPUT_RATIO:g}x MLflow",
                f"{run['rps']:.0f} req/s",
                None,
                "peer not measured",
            )
            add(
                f"{label}: p99 below MLflow's", f"{run['p99_ms']:.1f} ms", None, "peer not measured"
            )
            continue
        ratio = run["rps"] / other["rps"]
        add(
            f"{label}: req/s >= {TARGET_THROUGHPUT_RATIO:g}x MLflow",
            f"{ratio:.2f}x ({run['rps']:.0f} vs {other['rps']:.0f})",
            ratio >= TARGET_THROUGHPUT_RATIO and run["errors"] == 0,
        )
        add(
            f"{label}: p99 below MLflow's",
            f"{run['p99_ms']:.1f} vs {other['p99_ms']:.1f} ms",
            run["p99_ms"] < other["p99_ms"],
        )
    batch = results.get("batch")
    if batch:
        for fmt in ("parquet", "csv"):
            run = batch["gitml"][fmt]
            add(
                f"batch {batch['rows']:,} rows {fmt}: rows/s >= {TARGET_BATCH_RATIO:g}x raw",
                f"{run['ratio']:.2f}x ({run['rps']:,.0f} vs {batch['raw_rps']:,.0f}; "
                f"{run['ratio_to_category']:.2f}x of raw on categoricals)",
                run["ratio"] >= TARGET_BATCH_RATIO,
            )
            gib = run["peak_kib"] / 2**20
            add(
                f"batch {batch['rows']:,} rows {fmt}: peak memory < {TARGET_PEAK_GIB:g} GiB",
                f"{gib:.2f} GiB",
                gib < TARGET_PEAK_GIB,
            )
    return checks


def _note_nagle(runs: list[dict[str, Any]], console: Any) -> None:
    """Point out the 40 ms delayed-ACK stall when more workers make concurrency 1 slower.

    uvicorn --workers N binds the listening socket itself with proto 0, so asyncio never sets
    TCP_NODELAY on accepted connections; a response written in two parts then waits for the
    client's delayed ACK (about 40 ms on Linux). Kludex/uvicorn issue #3149.
    """
    single = {r["server"]: r for r in runs if r["workers"] == 1 and r["concurrency"] == 1}
    for run in runs:
        base = single.get(run["server"])
        slower = base is not None and run["p50_ms"] - base["p50_ms"] > 30
        if run["workers"] > 1 and run["concurrency"] == 1 and slower:
            console.print(
                f"  note: {run['server']} with {run['workers']} workers: p50 "
                f"{run['p50_ms']:.1f} ms against {base['p50_ms']:.1f} ms with 1, the "
                "signature of Nagle + delayed ACK (uvicorn --workers N leaves TCP_NODELAY "
                "off: Kludex/uvicorn#3149)",
                highlight=False,
            )


def _ms(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f} ms"


def _table(title: str, columns: list[str]) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right")
    return table


def _render_header(results: dict[str, Any], console: Any) -> None:
    meta = results["meta"]
    console.print(
        f"gitml serving benchmark: python {meta['python']}, {meta['cpus']} CPUs, "
        f"scikit-learn {meta['versions'].get('scikit-learn')}, pandas "
        f"{meta['versions'].get('pandas')}, MLflow {meta.get('mlflow') or 'not measured'}; "
        f"1-min load average {meta['load_average_start'][0]:.2f} at start, "
        f"{meta['load_average_end'][0]:.2f} at end"
    )
    if results["http"]:
        console.print(
            f"{meta['requests']:,} measured requests per server and setting in {meta['rounds']} "
            f"alternating rounds, after {meta['warmup']} warm-up; {meta['time_limit_s']:g} s "
            f"limit; client and servers share the {meta['cpus']} CPUs",
            highlight=False,
        )
    busy = meta["load_average_start"][0]  # at the end it counts this benchmark's own work
    if busy > 0.5:
        console.print(
            f"[bold]warning:[/bold] 1-min load average {busy:.2f} before the benchmark started: "
            "other work was running on this machine; absolute figures are slowed, ratios less "
            "so (both servers are measured in the same window, interleaved)"
        )


def _render_http(results: dict[str, Any], console: Any) -> None:
    runs = results["http"]
    columns = "workers|conc.|gitml req/s|p50|p99|err|MLflow req/s|p50|p99|err|req/s ratio"
    table = _table(
        "One-row requests (keep-alive, same load generator for both)",
        [*columns.split("|"), "per round", "p99 ratio"],
    )
    by_key = {(r["server"], r["workers"], r["concurrency"]): r for r in runs}
    for workers, conc in sorted({(r["workers"], r["concurrency"]) for r in runs}):
        g, m = by_key.get(("gitml", workers, conc)), by_key.get(("mlflow", workers, conc))
        cells = [str(workers), str(conc)]
        for run, missing in ((g, "not measured"), (m, "peer not measured")):
            cells += (
                [f"{run['rps']:.0f}", _ms(run["p50_ms"]), _ms(run["p99_ms"]), str(run["errors"])]
                if run
                else [missing, "", "", ""]
            )
        if g and m:
            rounds = zip(g["round_rps"], m["round_rps"], strict=True)
            cells += [
                f"{g['rps'] / m['rps']:.2f}x",
                " ".join(f"{a / b:.1f}" for a, b in rounds),
                f"{g['p99_ms'] / m['p99_ms']:.2f}x",
            ]
        table.add_row(*cells)
    console.print(table)
    _note_nagle(runs, console)
    for r in runs:
        where = f"{r['server']} w{r['workers']} c{r['concurrency']}"
        if r["time_limited"]:
            console.print(f"  note: {where} hit the time limit after {r['requests']:,} requests")
        if r["errors"]:
            console.print(f"  errors: {where}: {r['first_errors']}")

    table = _table(
        "Servers",
        [
            "server",
            "workers",
            "start to ready",
            "RSS after load",
            "1,000-row request",
            "max |score - raw|",
        ],
    )
    for s in results["servers"]:
        table.add_row(
            s["server"],
            str(s["workers"]),
            f"{s['ready_s']:.1f} s",
            f"{s['rss_mib']:,.0f} MiB",
            _ms(s["rows1000_ms"]),
            f"{s['max_score_diff']:.1e}",
        )
    console.print(table)


def _render_fast_path(results: dict[str, Any], console: Any) -> None:
    """gitml with and without the small-input fast path, same run, with MLflow beside."""
    by_key = {(r["server"], r["workers"], r["concurrency"]): r for r in results["http"]}
    keys = sorted(
        {(r["workers"], r["concurrency"]) for r in results["http"] if r["server"] == NOFAST}
    )
    if not keys:
        return
    table = _table(
        "Fast path off (serve.fast_path_max_rows: 0), same run",
        [
            "workers",
            "conc.",
            "req/s",
            "p50",
            "p99",
            "err",
            "fast path on: req/s",
            "on / off",
            "off / MLflow",
        ],
    )
    for workers, conc in keys:
        off = by_key[(NOFAST, workers, conc)]
        on = by_key.get(("gitml", workers, conc))
        peer = by_key.get(("mlflow", workers, conc))
        table.add_row(
            str(workers),
            str(conc),
            f"{off['rps']:.0f}",
            _ms(off["p50_ms"]),
            _ms(off["p99_ms"]),
            str(off["errors"]),
            f"{on['rps']:.0f}" if on else "-",
            f"{on['rps'] / off['rps']:.2f}x" if on else "-",
            f"{off['rps'] / peer['rps']:.2f}x" if peer else "peer not measured",
        )
    console.print(table)


def _render_overhead(results: dict[str, Any], console: Any) -> None:
    over = results["overhead"]
    table = _table("In-process overhead (one row, p50)", ["measure", "p50", "over raw", "ratio"])
    raw = over["raw"]["p50_ms"]
    table.add_row("raw predict_proba, 1-row DataFrame (in this process)", _ms(raw), "", "1.00x")
    rows = [("gitml: one request through the ASGI app, in-process", over.get("gitml_asgi"))]
    rows += [("gitml, fast path off: the same", over.get(f"{NOFAST}_asgi"))]
    rows += [
        (f"{name}: HTTP round trip, 1 worker, concurrency 1", over.get(f"{name}_http_p50_ms"))
        for name in ("gitml", "mlflow")
    ]
    for label, value in rows:
        value = value["p50_ms"] if isinstance(value, dict) else value
        if value is not None:
            table.add_row(label, _ms(value), f"{value - raw:+.1f} ms", f"{value / raw:.2f}x")
    if results["meta"]["skip_mlflow"]:
        table.add_row("mlflow: HTTP round trip", "peer not measured", "", "")
    console.print(table)
    console.print(
        "  ASGI: the app called directly (JSON, checks, scoring thread, answer); HTTP adds "
        "the client (http.client) and loopback TCP.\n  Raw one-row frames come from "
        "read_table (categoricals), as evaluate reads the test set."
    )


def _render_batch(batch: dict[str, Any], console: Any) -> None:
    table = _table(
        f"Batch scoring, {batch['rows']:,} rows",
        ["what", "wall", "rows/s", "ratio to raw", "excl. start-up rows/s", "ratio", "peak RSS"],
    )
    small = batch["gitml"]["small"]
    table.add_row(
        "gitml predict, 1,000 rows (fixed cost)",
        f"{small['wall_s']:.2f} s",
        *[""] * 4,
        f"{small['peak_kib'] / 1024:,.0f} MiB",
    )
    for fmt in ("parquet", "csv"):
        run = batch["gitml"][fmt]
        size = batch["input_bytes"][fmt] / 2**20
        table.add_row(
            f"gitml predict {fmt} ({size:,.0f} MiB in), whole command",
            f"{run['wall_s']:.2f} s",
            f"{run['rps']:,.0f}",
            f"{run['ratio']:.2f}x",
            f"{run['rps_excl_startup']:,.0f}",
            f"{run['ratio_excl_startup']:.2f}x",
            f"{run['peak_kib'] / 1024:,.0f} MiB",
        )
    for dtypes, raw in batch["raw"].items():
        base = " (baseline)" if dtypes == batch["raw_baseline"] else ""
        rps = raw["rows"] / raw["score_s"]
        table.add_row(
            f"raw predict_proba in memory, {dtypes} strings{base}",
            f"{raw['score_s']:.2f} s",
            f"{rps:,.0f}",
            f"{rps / batch['raw_rps']:.2f}x",
            "",
            "",
            f"{raw['peak_kib'] / 1024:,.0f} MiB",
        )
    console.print(table)
    console.print(
        "  gitml = whole `gitml predict` process (start-up, model load, read, check, score, "
        "write); excl. start-up subtracts the 1,000-row run. raw = predict_proba only, "
        f"median of 3, after reading the Parquet file (read "
        f"{batch['raw']['object']['read_s']:.1f} s, not counted); its peak RSS is the whole "
        "raw process.",
        highlight=False,
    )
    console.print(
        f"  1,000-row output checked against raw predict_proba: max |score - raw| "
        f"{batch['max_score_diff']:.1e}",
        highlight=False,
    )


def render(results: dict[str, Any], console: Any) -> None:
    """Every measure with its peer figure and ratio, then the targets."""
    _render_header(results, console)
    if results["http"]:
        _render_http(results, console)
        _render_fast_path(results, console)
        _render_overhead(results, console)
    if results.get("batch"):
        _render_batch(results["batch"], console)
    console.print("\nTargets:")
    if not results["targets"]:
        console.print("  none checked: gitml was not measured")
    for check in results["targets"]:
        console.print(
            f"  {check['status']:>17}  {check['target']:58} {check['value']}", highlight=False
        )
    checked = [c for c in results["targets"] if c["met"] is not None]
    if checked:
        met = sum(1 for c in checked if c["met"])
        console.print(f"  {met} of {len(checked)} targets met", highlight=False)
    console.print(f"\ntotal benchmark time {results['meta']['total_s'] / 60:.1f} min")


# --- main ----------------------------------------------------------------------------------------


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
        "load_average_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "skip_mlflow": args.skip_mlflow,
        "requests": args.requests,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "time_limit_s": args.time_limit,
        "workers": args.workers,
        "concurrency": args.concurrency,
    }


def gitml_spec() -> ServerSpec:
    return ServerSpec(
        name="gitml",
        command=[sys.executable, "-m", "gitml", "serve", "--model", MODEL],
        env=bench_env(),
        ready_path="/readyz",
        predict_path="/v1/predict",
        encode=gitml_body,
    )


def gitml_nofast_spec(scratch: Path) -> ServerSpec:
    """`gitml serve` with `serve.fast_path_max_rows: 0`: every request through the pipeline.

    The server reads its settings from a project's params.yaml; this one is a scratch copy of
    the project's conf/ and params.yaml (under bench/out/) with that one value changed.
    """
    import yaml

    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(ROOT / "conf", scratch / "conf")
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params.setdefault("serve", {})["fast_path_max_rows"] = 0
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return ServerSpec(
        name=NOFAST,
        command=[
            sys.executable,
            "-m",
            "gitml",
            "serve",
            "--model",
            str(ROOT / MODEL),
            "--project",
            str(scratch),
        ],
        env=bench_env(),
        ready_path="/readyz",
        predict_path="/v1/predict",
        encode=gitml_body,
    )


def mlflow_spec(bin_dir: Path, model_dir: Path, *, access_log: bool) -> ServerSpec:
    env = bench_env(bin_dir)
    if not access_log:
        # gitml serve logs no requests unless --access-log; MLflow's uvicorn logs each one.
        # uvicorn reads UVICORN_* settings from the environment: both do the same work.
        env["UVICORN_ACCESS_LOG"] = "false"
    return ServerSpec(
        name="mlflow",
        command=[
            str(bin_dir / "mlflow"),
            "models",
            "serve",
            "-m",
            str(model_dir),
            "--env-manager",
            "local",
        ],
        env=env,
        ready_path="/ping",
        predict_path="/invocations",
        encode=mlflow_body,
    )


def bench(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": metadata(args), "http": [], "servers": []}
    features, categorical = signature_columns()
    if not (ROOT / MODEL).is_file() or not TEST_DATA.is_file():
        raise SystemExit(
            f"bench: needs {MODEL} and {TEST_DATA.relative_to(ROOT)}: run "
            "`make repro` (or `dvc pull`) first"
        )
    from gitml.model.persist import load_model

    pipeline = load_model(ROOT / MODEL)
    positive_column = [str(c) for c in pipeline.classes_].index(positive_class())
    specs = [] if args.skip_gitml else [gitml_spec()]
    if not args.skip_gitml and not args.skip_fast_path_off:
        specs.append(gitml_nofast_spec(OUT_DIR / "project-fast-path-off"))
    if not args.skip_mlflow:
        bin_dir = ensure_mlflow_venv(args.mlflow_venv)
        progress("exporting the model to MLflow's format")
        model_dir = export_mlflow_model(bin_dir, features)
        results["meta"]["mlflow"] = run_checked(
            [str(bin_dir / "python"), "-c", "import mlflow; print(mlflow.__version__)"],
            env=bench_env(bin_dir),
        ).strip()
        specs.append(mlflow_spec(bin_dir, model_dir, access_log=args.mlflow_access_log))
    if not args.skip_http and args.concurrency and args.workers and specs:
        records = test_records(features)
        import pandas as pd

        head = pd.read_parquet(TEST_DATA, columns=features).head(20)
        expected = list(pipeline.predict_proba(head)[:, positive_column])
        progress("raw predict_proba on one-row frames")
        results["overhead"] = {"raw": raw_one_row(pipeline, features, categorical)}
        if not args.skip_gitml:
            progress("gitml app in-process (ASGI, no HTTP) on one-row requests")
            one_row = [gitml_body([r], features) for r in records]
            results["overhead"]["gitml_asgi"] = asgi_one_row(one_row)
            if not args.skip_fast_path_off:
                results["overhead"][f"{NOFAST}_asgi"] = asgi_one_row(one_row, fast_path=False)
        loads, servers = http_runs(specs, args, features, records, expected, positive_column)
        results["http"], results["servers"] = loads, servers
        for load in loads:
            if load["workers"] == min(args.workers) and load["concurrency"] == 1:
                results["overhead"][f"{load['server']}_http_p50_ms"] = load["p50_ms"]
    if not args.skip_batch and not args.skip_gitml:
        results["batch"] = batch_runs(args, features)
    results["targets"] = check_targets(results)
    results["meta"]["load_average_end"] = os.getloadavg()
    results["meta"]["total_s"] = time.perf_counter() - started
    return results


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests",
        type=int,
        default=3000,
        help="measured one-row requests per server, worker count and concurrency",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternating rounds per setting; --requests is split between them",
    )
    parser.add_argument(
        "--warmup", type=int, default=200, help="unrecorded requests per setting (first round)"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=40.0,
        help="seconds at most per server and setting, split between the rounds",
    )
    parser.add_argument(
        "--concurrency",
        type=_int_list,
        default=[1, 8],
        help="comma-separated client connections (default 1,8)",
    )
    parser.add_argument(
        "--workers",
        type=_int_list,
        default=[1, 2],
        help="comma-separated server worker counts (default 1,2)",
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for batch scoring")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="passed to `gitml predict --chunk-size` (default: its own)",
    )
    parser.add_argument("--skip-mlflow", action="store_true", help="no peer server")
    parser.add_argument(
        "--skip-gitml",
        action="store_true",
        help="measure the peers only (MLflow, raw); no gitml server or batch",
    )
    parser.add_argument(
        "--skip-fast-path-off",
        action="store_true",
        help="no second gitml server with serve.fast_path_max_rows: 0",
    )
    parser.add_argument("--skip-http", action="store_true", help="no HTTP serving")
    parser.add_argument("--skip-batch", action="store_true", help="no batch scoring")
    parser.add_argument(
        "--mlflow-venv",
        type=Path,
        default=OUT_DIR / "venv-mlflow",
        help="MLflow's own environment, created on first use",
    )
    parser.add_argument(
        "--mlflow-access-log",
        action="store_true",
        help="keep MLflow's per-request access log (its default; off here, as gitml's is)",
    )
    parser.add_argument(
        "--json", type=Path, default=OUT_DIR / "serve.json", help="where to write all figures"
    )
    parser.epilog = (
        "(internal) --measure -- CMD...: run CMD, print its wall time and peak RSS; "
        "--raw-batch PATH DTYPES: raw predict_proba timing"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--measure"]:
        return measure(argv[2:] if argv[1:2] == ["--"] else argv[1:])
    if argv[:1] == ["--raw-batch"]:
        print(RESULT_MARK + json.dumps(raw_batch(argv[1], argv[2])), flush=True)
        return 0
    args = parse_args(argv)
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 150)
    results = bench(args)
    render(results, console)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    console.print(f"figures: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
