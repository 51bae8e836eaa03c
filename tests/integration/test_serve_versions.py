"""Several versions in one `gitml serve`, a shadow, and SIGHUP reloads after `gitml promote`.

Real registry tags (GTO), a real DVC cache, SHA-256 verified on fetch, a real `gitml serve`
process, real signals. `gitml release` runs the promotion gate, which is slow; what serving
needs from a release is its tag, with the model's SHA-256 in the message, on a commit whose
model is in the DVC cache: the module tags three versions of the built model so, as
`gto register` does (test_registry.py makes real releases).

The shadow's fault isolation is shown in-process: a test-only runtime whose scoring raises,
or hangs, served as the shadow of the real model under a real uvicorn.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from gitml.config.compose import load_params
from gitml.project import find_project
from gitml.registry.catalog import MODEL_SHA_KEY
from gitml.registry.promotion import promote, rollback
from gitml.serve.app import create_app
from gitml.serve.bundle import load_project_model
from gitml.serve.deployment import Deployment
from gitml.serve.inputs import Columns
from gitml.serve.runtime import ModelRuntime
from tests.integration.serving import ServerProcess, serve_in_thread
from tests.support import copy_repo, dvc, git, gitml
from tests.unit.test_serve_inputs import GOOD

NAME = "churn-classifier"


def _metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def _records(n: int) -> list[dict[str, Any]]:
    return [GOOD | {"tenure": 1 + i % 70, "monthly_charges": 20.0 + i} for i in range(n)]


# -- several versions, a shadow and SIGHUP reloads, in a real `gitml serve` ------------------


@pytest.fixture(scope="module")
def released(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the built project with versions v1.0.0 (in dev), v1.1.0 and v1.2.0 of its
    model registered, a private DVC remote, and the prediction log on (quick row groups)."""
    base = tmp_path_factory.mktemp("versions")
    repo = base / "project"
    copy_repo(built_repo, repo)
    dvc("remote", "modify", "local", "url", str(base / "dvc-remote"), cwd=repo)
    git("commit", "-qam", "private DVC remote", cwd=repo)
    metadata = json.loads((repo / "models" / "metadata.json").read_text())
    message = f"{MODEL_SHA_KEY}: {metadata['model_file']['sha256']}"  # what fetch verifies
    for version in ("v1.0.0", "v1.1.0", "v1.2.0"):
        git("commit", "-q", "--allow-empty", "-m", f"towards {version}", cwd=repo)
        # the annotated tag `gto register NAME HEAD --version V --message M` writes
        git("tag", "-a", f"{NAME}@{version}", "-m", message, cwd=repo)
    project = find_project(repo)
    promote(project, NAME, "v1.0.0", "dev")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["serve"]["prediction_log"].update(enabled=True, flush_rows=20, flush_seconds=0.2)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo


class _Traffic:
    """A client sending one-record requests back to back until stopped, noting every status
    (or error) and the version that answered."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: list[int | str] = []
        self.versions: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                try:
                    answer = http.post("/v1/predict", json={"records": [GOOD]})
                except httpx.HTTPError as err:
                    self.statuses.append(repr(err))
                    continue
                self.statuses.append(answer.status_code)
                if answer.status_code == 200:
                    self.versions.append(answer.json()["model"]["version"])
                time.sleep(0.005)  # steady traffic, leaving the reload its share of 2 cores

    def wait_for(self, more: int, timeout: float = 30) -> None:
        target, deadline = len(self.statuses) + more, time.monotonic() + timeout
        while len(self.statuses) < target and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _cached_model(repo: Path) -> Path:
    """The model's file in the project's DVC cache (every version here has the same model; the
    project's own DVC remote is empty)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    md5 = next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"].endswith(".skops"))
    return repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def _tamper(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))


def _until(check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {check}")


def test_sighup_reloads_promoted_versions_without_dropping_a_request(released: Path) -> None:
    server = ServerProcess(
        released,
        *("--ref", f"{NAME}#dev", "--ref", f"{NAME}@v1.2.0", "--shadow", f"{NAME}@v1.2.0"),
    )
    try:
        server.wait_ready()
        http = httpx.Client(base_url=server.url, timeout=30)
        assert http.get("/v1/model").json()["version"] == "v1.0.0"  # the first --ref
        v2 = f"/v2/models/{NAME}"
        assert http.get(v2).json()["versions"] == ["v1.0.0", "v1.2.0"]
        for version in ("v1.0.0", "v1.2.0"):
            assert http.get(f"{v2}/versions/{version}/ready").json()["ready"] is True
        shown = http.get("/metrics").text
        for version in ("v1.0.0", "v1.2.0"):
            assert 'gitml_model_info{commit="' in shown and f'version="{version}"' in shown

        traffic = _Traffic(server.url)
        traffic.wait_for(30)
        gitml("promote", NAME, "v1.1.0", "--stage", "dev", cwd=released)
        server.proc.send_signal(signal.SIGHUP)
        _until(lambda: http.get("/v1/model").json()["version"] == "v1.1.0")
        traffic.wait_for(30)

        # dev rolled back to v1.0.0, whose model now fails verification: v1.1.0 stays
        _tamper(_cached_model(released))
        rollback(find_project(released), NAME, "dev")  # `gitml rollback`, without its start-up
        server.proc.send_signal(signal.SIGHUP)
        _until(lambda: _metric(http.get("/metrics").text, "gitml_reloads_total", outcome="failed"))
        traffic.wait_for(30)
        traffic.stop()

        assert traffic.statuses and set(traffic.statuses) == {200}, set(traffic.statuses)
        switched = traffic.versions.index("v1.1.0")
        assert set(traffic.versions[:switched]) == {"v1.0.0"}
        assert set(traffic.versions[switched:]) == {"v1.1.0"}  # never back, even on failure
        assert http.get("/v1/model").json()["version"] == "v1.1.0"
        assert http.get("/readyz").status_code == 200
        assert http.get(v2).json()["versions"] == ["v1.1.0", "v1.2.0"]  # V2 metadata follows
        assert http.get(f"{v2}/versions/v1.1.0/ready").status_code == 200
        assert http.get(f"{v2}/versions/v1.0.0/ready").status_code == 404  # no longer served
        shown = http.get("/metrics").text
        assert _metric(shown, "gitml_reloads_total", outcome="ok") == 1
        assert 'version="v1.0.0"' not in shown  # no longer served
        _until(
            lambda: _metric(http.get("/metrics").text, "gitml_shadow_requests_total", outcome="ok")
        )
        http.close()
        assert server.stop() == 0
    finally:
        server.stop()
    assert f"reloaded: serving {NAME}@v1.1.0, {NAME}@v1.2.0 (shadow {NAME}@v1.2.0)" in server.stderr
    assert "reload failed; still serving" in server.stderr and "SHA-256" in server.stderr

    # one log per version, side by side; the shadow's in shadow/, paired by request id
    log_dir = released / "logs" / "predictions"
    primary = pq.read_table(sorted(log_dir.glob("predictions-*.parquet"))).to_pandas()
    assert len(primary) == len(traffic.versions)
    assert set(primary["model_version"]) == {"v1.0.0", "v1.1.0"}
    shadow = pq.read_table(sorted((log_dir / "shadow").glob("predictions-*.parquet"))).to_pandas()
    assert set(shadow["model_version"]) == {"v1.2.0"} and 0 < len(shadow) <= len(primary)
    paired = shadow.merge(primary, on=["request_id", "record"], suffixes=("_shadow", ""))
    assert len(paired) == len(shadow)
    np.testing.assert_allclose(paired["score_shadow"], paired["score"], rtol=0, atol=1e-12)


# -- the shadow's faults stay its own ----------------------------------------------------------


class _FaultyShadow(ModelRuntime):
    """A shadow (test-only) whose scoring works, raises, or hangs far past
    `serve.shadow_timeout_s`, as `fault` says; the real model otherwise."""

    fault = "none"

    def score_batch(
        self, requests: list[tuple[str, Columns, float]]
    ) -> list[np.ndarray | Exception]:
        if self.fault == "raise":
            raise RuntimeError("the candidate's scoring is broken")
        if self.fault == "hang":
            time.sleep(3)
        return super().score_batch(requests)


def _outcomes(http: httpx.Client) -> dict[str, float]:
    shown = http.get("/metrics").text
    return {
        outcome: _metric(shown, "gitml_shadow_requests_total", outcome=outcome)
        for outcome in ("ok", "failed", "timeout", "skipped")
    }


def test_a_failing_or_hanging_shadow_changes_nothing_for_the_primary(built_repo: Path) -> None:
    params = load_params(built_repo / "params.yaml")
    settings = params.serve.model_copy(update={"shadow_timeout_s": 0.2, "shadow_max_pending": 2})
    served = load_project_model(built_repo)
    threshold = params.threshold_for(None)
    primary = ModelRuntime(served, settings, threshold=threshold)
    candidate = replace(served, version="candidate")
    shadow = _FaultyShadow(candidate, settings, threshold=threshold, role="shadow")
    app = create_app(Deployment([primary], shadow=shadow), settings)
    records = _records(20)

    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:

        def answers() -> tuple[list[Any], list[float]]:
            found, took = [], []
            for record in records:
                started = time.perf_counter()
                answer = http.post("/v1/predict", json={"records": [record]})
                took.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
                found.append(answer.json()["predictions"])
            return found, took

        healthy, _ = answers()
        _until(lambda: _outcomes(http)["ok"] == len(records))
        shadow.fault = "raise"
        broken, _ = answers()
        _until(lambda: _outcomes(http)["failed"] == len(records))
        shadow.fault = "hang"
        hung, took = answers()
        assert broken == healthy and hung == healthy
        assert max(took) < 1.5  # each hang lasts 3 s: no answer waited for one
        assert http.get("/readyz").status_code == 200  # a shadow never makes the server unready
        # two wait for the hung thread (and time out); the others are not even queued
        _until(lambda: _outcomes(http)["timeout"] == 2)
        assert _outcomes(http) == {"ok": 20, "failed": 20, "timeout": 2, "skipped": 18}
