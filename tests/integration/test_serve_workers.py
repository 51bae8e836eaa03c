"""`gitml serve --workers N`: the workers load the models, the supervisor does not; a scrape
of /metrics adds up every worker; a worker that cannot load stops the whole server; and no
process of the server imports Hydra, DVC, GTO or matplotlib.

Real servers of two workers on 127.0.0.1, driven over HTTP.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import yaml

from tests.integration.serving import ServerProcess, port_is_bound
from tests.support import copy_repo
from tests.unit.test_serve_inputs import GOOD

ROTATE_ROWS = 4


@pytest.fixture(scope="module")
def project(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built project with the prediction log on: small files, written at once."""
    repo = copy_repo(built_repo, tmp_path_factory.mktemp("workers") / "project")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["serve"]["prediction_log"].update(
        enabled=True, flush_rows=1, flush_seconds=0.1, rotate_rows=ROTATE_ROWS
    )
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _maps_sklearn(pid: int) -> bool:
    """Whether scikit-learn's compiled modules are mapped in the process: it loaded models."""
    return "/sklearn/" in Path(f"/proc/{pid}/maps").read_text()


def _samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def _writers(log_dir: Path) -> set[str]:
    """The pids of the workers with a complete prediction log file."""
    return {path.name.split("-")[2] for path in log_dir.glob("predictions-*.parquet")}


def _logged_rows(log_dir: Path) -> dict[int, int]:
    """Rows in complete prediction log files, by the pid of the worker that wrote them."""
    rows: dict[int, int] = {}
    for path in log_dir.glob("predictions-*.parquet"):
        pid = int(path.stem.split("-")[2])
        rows[pid] = rows.get(pid, 0) + pq.read_metadata(path).num_rows
    return rows


def _imported(stderr: str) -> set[str]:
    """Modules imported by any process of the server (`PYTHONPROFILEIMPORTTIME` lines)."""
    return {m.group(1).strip() for m in re.finditer(r"^import time: .*\| (.+)$", stderr, re.M)}


def test_two_workers_answer_and_one_scrape_counts_them_all(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gitml.model import skops_import

    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setenv("TMPDIR", str(private))  # where the supervisor keeps the metric files
    # skops' trusted-type lists, cached as an earlier start would have left them
    monkeypatch.setenv(skops_import.CACHE_DIR_ENV, str(tmp_path / "cache"))
    skops_import.import_skops()
    trusted = vars(sys.modules["skops.io._trusted_types"])
    skops_import._write(skops_import._cache_file(), skops_import._constants(trusted))
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # every process lists its imports
    server = ServerProcess(project, "--workers", "2")
    log_dir = project / "logs/predictions"
    try:
        server.wait_ready()  # the first worker is ready; the second may still be loading
        sent = 0
        fresh = httpx.Limits(max_keepalive_connections=0)  # a new connection per request
        with (
            httpx.Client(base_url=server.url, timeout=30, limits=fresh) as http,
            ThreadPoolExecutor(4) as pool,
        ):

            def post(_: int) -> None:
                answer = http.post("/v1/predict", json={"records": [GOOD, GOOD]})
                assert answer.status_code == 200, answer.text

            deadline = time.monotonic() + 60
            while len(_writers(log_dir)) < 2:  # until both workers have answered
                assert time.monotonic() < deadline, f"one worker answered all {sent} requests"
                list(pool.map(post, range(8)))
                sent += 8
                time.sleep(0.1)
        supervisor = server.proc.pid
        assert not _maps_sklearn(supervisor), "the supervisor must not load the models"
        assert sum(_maps_sklearn(pid) for pid in _children(supervisor)) == 2

        deadline = time.monotonic() + 10
        while True:  # other workers publish their log counters once a second
            scraped = _samples(httpx.get(f"{server.url}/metrics", timeout=10).text)
            on_disk = sum(_logged_rows(log_dir).values())
            if scraped.get("gitml_prediction_log_rows_total") == on_disk:
                break
            assert time.monotonic() < deadline, (scraped, on_disk)
            time.sleep(0.3)
        assert scraped['gitml_http_requests_total{path="/v1/predict",status="200"}'] == sent
        assert scraped['gitml_http_request_duration_seconds_count{path="/v1/predict"}'] == sent
        assert scraped["gitml_rows_scored_total"] == 2 * sent
        info = {k: v for k, v in scraped.items() if k.startswith("gitml_model_info")}
        assert list(info.values()) == [1.0], info  # one version, one series, not one per pid
        assert 'name="churn-classifier"' in next(iter(info)) and "pid=" not in next(iter(info))
    finally:
        assert server.stop() == 0, server.stderr
    imported = _imported(server.stderr)
    # the workers' imports are listed too: only they import scikit-learn and skops' loader
    assert {"sklearn.base", "skops.io"} <= imported
    heavy = {"hydra", "omegaconf", "dvc", "gto", "matplotlib", "scmrepo"}
    packages = {name.split(".")[0] for name in imported}
    assert heavy.isdisjoint(packages), sorted(heavy & packages)
    # the cached lists were used: no walk over every scikit-learn module
    assert "sklearn.gaussian_process" not in imported
    assert sum(_logged_rows(log_dir).values()) == 2 * sent  # every row logged by the end
    assert list(private.iterdir()) == []  # the metric files went with the supervisor


def test_a_worker_that_cannot_load_the_model_stops_the_server(
    project: Path, tmp_path: Path
) -> None:
    """The supervisor's checks need no pipeline; this model passes them, and its pipeline's
    classes then contradict the signature in every worker."""
    models = shutil.copytree(project / "models", tmp_path / "models")
    signature = json.loads((models / "signature.json").read_text())
    signature["output"]["classes"].reverse()
    (models / "signature.json").write_text(json.dumps(signature))
    server = ServerProcess(project, "--workers", "2", "--model", str(models / "model.skops"))
    code = server.wait_exit(90)
    assert code == 1, server.stderr
    assert "error: a worker could not start: " in server.stderr
    assert "classes ['No', 'Yes'] do not match signature.json" in server.stderr
    assert not port_is_bound(server.port)
    deadline = time.monotonic() + 10  # multiprocessing's resource tracker exits just after
    while alive := _processes_in(project):
        assert time.monotonic() < deadline, f"processes outlive the supervisor: {alive}"
        time.sleep(0.1)


def test_a_worker_that_exits_while_it_is_pinged_is_seen_gone_at_once() -> None:
    """uvicorn's supervisor pings a worker and waits up to its health-check timeout (gitml's
    is 120 s) for the answer; the worker here exits with a ping unanswered. With uvicorn's
    own worker class the supervisor waits out the whole timeout (checked by hand: 60 s of
    60), because it holds the other end of the pipe open; `ClosingWorker` sees it at once."""
    from uvicorn.config import Config

    from gitml.serve.supervisor import ClosingWorker

    sock = socket.create_server(("127.0.0.1", 0))
    config = Config(
        "tests.integration.worker_apps:hold_the_lock_then_exit", factory=True, log_level="error"
    )
    worker = ClosingWorker(config, [sock])
    worker.start()
    try:
        started = time.monotonic()
        while worker.is_alive(timeout=60):  # answered at once until the worker holds the lock
            assert time.monotonic() - started < 60, "the worker never stopped answering"
            time.sleep(0.05)
        waited = time.monotonic() - started
    finally:
        worker.kill()
        worker.join()
        sock.close()
    assert waited < 30, f"the supervisor waited {waited:.1f} s for a worker that had exited"
    assert worker.exitcode == 3


def _processes_in(directory: Path) -> list[Path]:
    """The processes whose working directory is `directory`."""
    return [p for p in Path("/proc").iterdir() if p.name.isdigit() and _runs_in(p, directory)]


def _runs_in(proc: Path, directory: Path) -> bool:
    try:
        return Path(os.readlink(proc / "cwd")) == directory
    except OSError:
        return False
