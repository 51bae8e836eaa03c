"""`gitml serve` under real faults: a full disk, a log directory it may not write, a stuck
write, and a request whose scoring fails inside a shared micro-batch.

Each test runs a server of its own (a subprocess on 127.0.0.1), with the fault set up by the
kernel (see `faults.py`), and checks what an operator would watch: predictions keep their
answers, `/healthz` answers at once, `/metrics` counts the trouble, `/readyz` follows
`serve.prediction_log.on_error`, SIGTERM stops the server within `serve.shutdown_timeout_s`,
and every file with a final `.parquet` name is whole.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from gitml.serve.bundle import load_project_model
from tests.integration.faults import file_size_limit, lift_file_size_limit, mode_abiding
from tests.integration.serving import ServerProcess
from tests.support import copy_repo
from tests.unit.test_serve_inputs import GOOD

SHUTDOWN_TIMEOUT = 2.0
RECORDS = [GOOD | {"tenure": t} for t in range(0, 100, 10)]  # 10 rows a request


def _project(built_repo: Path, destination: Path, **log: Any) -> Path:
    """A copy of the built project with the prediction log on, small and quick."""
    repo = copy_repo(built_repo, destination)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["serve"]["shutdown_timeout_s"] = SHUTDOWN_TIMEOUT
    params["serve"]["prediction_log"].update(
        enabled=True, flush_rows=10, flush_seconds=0.2, max_buffer_rows=100, **log
    )
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / "logs/predictions").mkdir(parents=True)
    return repo


def _expected(project: Path) -> np.ndarray:
    served = load_project_model(project)
    return served.score(served.schema.to_frame(served.schema.check_records(RECORDS)))


def _predict(http: httpx.Client, request_id: str, expected: np.ndarray) -> None:
    resp = http.post("/v1/predict", json={"records": RECORDS}, headers={"x-request-id": request_id})
    assert resp.status_code == 200, resp.text
    scores = [p["score"] for p in resp.json()["predictions"]]
    assert np.max(np.abs(np.array(scores) - expected)) <= 1e-12


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.1)


def _healthz_is_prompt(http: httpx.Client) -> None:
    started = time.monotonic()
    assert http.get("/healthz", timeout=2).status_code == 200
    assert time.monotonic() - started < 1


def _readiness(http: httpx.Client) -> tuple[int, str]:
    resp = http.get("/readyz", timeout=2)
    return resp.status_code, resp.json().get("reason", "")


def _stop_within_bound(server: ServerProcess) -> None:
    started = time.monotonic()
    assert server.stop(signal.SIGTERM, timeout=30) == 0, server.stderr
    elapsed = time.monotonic() - started
    assert elapsed < SHUTDOWN_TIMEOUT + 1, (elapsed, server.stderr)  # 1 s: a busy machine
    assert "stopped on SIGTERM" in server.stderr


def _whole_files(directory: Path) -> set[str]:
    """Request ids in the log; fails if any file with a final name is not a whole Parquet file."""
    ids: set[str] = set()
    for path in directory.glob("*.parquet"):
        table = pq.read_table(path)  # a truncated file has no footer: this raises
        assert table.num_rows == pq.read_metadata(path).num_rows > 0
        ids |= set(table.column("request_id").to_pylist())
    return ids


@pytest.mark.parametrize("fault", ["disk full", "permission denied"])
def test_a_failing_log_never_stops_serving_and_recovers(
    built_repo: Path, tmp_path: Path, fault: str
) -> None:
    """Disk full (RLIMIT_FSIZE: EFBIG) with on_error=unready; permission denied (a 0555
    directory) with on_error=degrade. The fault is lifted while the server runs."""
    policy = "unready" if fault == "disk full" else "degrade"
    project = _project(built_repo, tmp_path / "project", on_error=policy, rotate_rows=1000)
    log_dir = project / "logs/predictions"
    expected = _expected(project)
    if fault == "disk full":  # the first file grows past 16 KiB within a few row groups
        preexec, kind, reason = file_size_limit(16 * 1024), "disk_full", "File too large"
    else:
        log_dir.chmod(0o555)
        preexec, kind, reason = mode_abiding(), "permission", "Permission denied"
    server = ServerProcess(project, preexec_fn=preexec)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for i in range(30):
                _predict(http, f"during-{i}", expected)
            errors = f'gitml_prediction_log_errors_total{{kind="{kind}"}}'

            def retried() -> bool:  # the writer retries once it has rows again
                _predict(http, "more", expected)
                return _metric(http.get("/metrics").text, errors) >= 2

            _wait_for(retried, "retried write")
            _healthz_is_prompt(http)
            metrics = http.get("/metrics").text
            assert _metric(metrics, "gitml_prediction_log_failing") == 1
            dropped = 'gitml_prediction_log_dropped_rows_total{reason="write_error"}'
            assert _metric(metrics, dropped) > 0
            status, why = _readiness(http)
            if policy == "unready":
                assert status == 503 and why.startswith("prediction log: cannot write")
                assert why.endswith(reason)
            else:
                assert (status, why) == (200, "")
            # logged once for the episode, not once per attempt or per row
            assert server.stderr.count(f": {reason}; ") == 1, server.stderr

            if fault == "disk full":
                lift_file_size_limit(server.proc.pid)
            else:
                log_dir.chmod(0o755)
            # writing again once a file is complete (1,000 rows) or writes succeeded for 10 s
            sent = 0

            def recovered() -> bool:
                nonlocal sent
                _predict(http, f"recovering-{sent}", expected)
                sent += 1
                return _metric(http.get("/metrics").text, "gitml_prediction_log_failing") == 0

            _wait_for(recovered, "recovery")
            assert _readiness(http) == (200, "")
            for i in range(10):
                _predict(http, f"after-{i}", expected)
        _stop_within_bound(server)
    finally:
        log_dir.chmod(0o755)
        server.stop()
    assert "prediction log: writing again" in server.stderr
    ids = _whole_files(log_dir)
    assert {f"after-{i}" for i in range(10)} <= ids  # everything after the recovery
    assert not [p for p in log_dir.iterdir() if p.suffix != ".parquet"]  # failed files removed


def test_a_stuck_write_never_blocks_predictions_or_shutdown(
    built_repo: Path, tmp_path: Path
) -> None:
    """The writer's first file is a FIFO nobody reads: its open() never returns."""
    project = _project(built_repo, tmp_path / "project", on_error="unready", stall_seconds=1)
    log_dir = project / "logs/predictions"
    expected = _expected(project)
    server = ServerProcess(project)
    stuck = log_dir / "not yet"
    try:
        server.wait_ready()  # its first file is opened with the first predictions: none yet
        stuck = log_dir / f".predictions-{server.proc.pid}-00001.parquet.part"
        os.mkfifo(stuck)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            started = time.monotonic()
            for i in range(30):  # 300 rows: the buffer holds 100
                _predict(http, f"stuck-{i}", expected)
            assert time.monotonic() - started < 20
            _healthz_is_prompt(http)
            metrics = http.get("/metrics").text
            dropped = 'gitml_prediction_log_dropped_rows_total{reason="buffer_full"}'
            assert _metric(metrics, dropped) >= 100
            assert _metric(metrics, "gitml_prediction_log_failing") == 1
            status, why = _readiness(http)
            assert status == 503 and why.startswith("prediction log: "), why
        _stop_within_bound(server)
    finally:
        server.stop()
        stuck.unlink(missing_ok=True)
    assert "did not finish within" in server.stderr and "not logged" in server.stderr
    assert not list(log_dir.glob("*.parquet"))  # nothing got a final name


def test_one_failing_request_never_fails_the_others_in_its_micro_batch(
    built_repo: Path, tmp_path: Path
) -> None:
    """A signature looser than its pipeline: `tenure` declared nullable, which the pipeline
    cannot score (no imputer for it). One request sends a null tenure; four others, sent at
    the same moment, share its micro-batch and get their normal answers."""
    project = copy_repo(built_repo, tmp_path / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["serve"].update(batch_wait_ms=500, fast_path_max_rows=0)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    signature = json.loads((project / "models/signature.json").read_text())
    for item in signature["inputs"]:
        if item["name"] == "tenure":
            item["nullable"] = True
    (project / "models/signature.json").write_text(json.dumps(signature))
    expected = _expected(project)

    bodies = {f"good-{i}": {"records": RECORDS} for i in range(4)}
    bodies["poisoned"] = {"records": [GOOD | {"tenure": None}]}
    answers: dict[str, httpx.Response] = {}
    server = ServerProcess(project)
    try:
        server.wait_ready()
        barrier = threading.Barrier(len(bodies))

        def send(request_id: str) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                barrier.wait()
                answers[request_id] = http.post(
                    "/v1/predict", json=bodies[request_id], headers={"x-request-id": request_id}
                )

        threads = [threading.Thread(target=send, args=(rid,)) for rid in bodies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            metrics = http.get("/metrics").text
            assert http.get("/readyz").status_code == 200
    finally:
        server.stop()
    for i in range(4):
        resp = answers[f"good-{i}"]
        assert resp.status_code == 200, resp.text
        scores = [p["score"] for p in resp.json()["predictions"]]
        assert np.max(np.abs(np.array(scores) - expected)) <= 1e-12
    poisoned = answers["poisoned"]
    body = poisoned.json()
    assert body["request_id"] == "poisoned" and body["error"]
    if poisoned.status_code == 422:  # scoring refused the record, naming it
        assert body["problems"][0]["field"] == "tenure"
    else:  # the model itself failed: this request's 500, and only this one's
        assert poisoned.status_code == 500
        assert "request poisoned: scoring failed" in server.stderr
    # they shared one call into the model (41 rows), which failed and was split
    assert _metric(metrics, "gitml_scoring_batch_splits_total") == 1
    below = _metric(metrics, 'gitml_scoring_batch_rows_bucket{le="32.0"}')
    assert _metric(metrics, 'gitml_scoring_batch_rows_bucket{le="64.0"}') - below == 1
