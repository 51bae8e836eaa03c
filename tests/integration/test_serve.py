"""`gitml serve`: a real uvicorn server on 127.0.0.1, driven over HTTP.

One server runs for the module (with the prediction log on). Tests do not rely on each
other's requests: under pytest-xdist a module's tests may run on two workers, each with its
own server. The SIGTERM test stops a server of its own and checks that every accepted
prediction reached the log.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
import skops.io as sio
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitml.config.compose import load_params
from gitml.data.io import read_table
from gitml.model.persist import load_model
from gitml.model.scoring import score_frame
from tests.integration.serving import ServerProcess, serve_in_thread
from tests.support import copy_repo, gitml
from tests.unit.test_serve_inputs import GOOD

MAX_RECORDS = 100


def _logging_project(built_repo: Path, destination: Path) -> Path:
    """A copy of the built project whose params turn the prediction log on (small files)."""
    repo = copy_repo(built_repo, destination)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["serve"]["max_records"] = MAX_RECORDS
    params["serve"]["max_body_bytes"] = 65536
    params["serve"]["prediction_log"].update(
        enabled=True, flush_rows=50, flush_seconds=0.5, rotate_rows=400
    )
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo


@pytest.fixture(scope="module")
def project(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _logging_project(built_repo, tmp_path_factory.mktemp("serve") / "project")


@pytest.fixture(scope="module")
def server(project: Path) -> ServerProcess:
    proc = ServerProcess(project, "--model", "models/model.skops")
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def _post(client: httpx.Client, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/v1/predict", content=content, headers=headers)


def test_predict_answers_score_label_and_identity(client: httpx.Client) -> None:
    resp = _post(client, {"records": [GOOD, GOOD | {"contract": "Month-to-month"}]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == {"name": "churn-classifier", "version": "unreleased"}
    assert len(body["request_id"]) == 32 and resp.headers["x-request-id"] == body["request_id"]
    (a, b) = body["predictions"]
    assert 0 < a["score"] < b["score"] < 1  # month-to-month contracts churn more
    assert a["label"] == ("Yes" if a["score"] >= 0.5 else "No")
    assert (
        _post(client, {"records": [GOOD]}, **{"x-request-id": "abc-1"}).json()["request_id"]
        == "abc-1"
    )


def test_model_health_ready_and_metrics_endpoints(client: httpx.Client, project: Path) -> None:
    assert _post(client, {"records": [GOOD]}).status_code == 200  # something to count
    model = client.get("/v1/model").json()
    assert model["name"] == "churn-classifier" and model["version"] == "unreleased"
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
    )
    assert model["commit"] == head.stdout.strip()
    assert model["signature"] == json.loads((project / "models/signature.json").read_text())
    assert model["metrics"]["roc_auc"] > 0.8 and model["threshold"] == 0.5
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json() == {"status": "ready"}
    text = client.get("/metrics").text
    for name in (
        'gitml_http_requests_total{path="/v1/predict",status="200"}',
        "gitml_http_request_duration_seconds_bucket",
        "gitml_rows_scored_total",
        "gitml_prediction_score_bucket",
        "gitml_model_info",
    ):
        assert name in text


def test_openapi_document_is_generated_from_the_signature(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    request = doc["components"]["schemas"]["PredictRequest"]
    assert request["properties"]["records"]["maxItems"] == MAX_RECORDS
    record = request["properties"]["records"]["items"]
    assert record["properties"]["contract"]["enum"] == ["Month-to-month", "One year", "Two year"]
    assert record["properties"]["tenure"] == {"type": "integer", "minimum": 0, "maximum": 120}
    body = doc["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/PredictRequest"}


def _raw_body(member: str) -> bytes:
    """A request whose one record ends with `member`, as raw JSON text (NaN, Infinity)."""
    return b'{"records": [' + json.dumps(GOOD).encode()[:-1] + f", {member}}}]}}".encode()


@pytest.mark.parametrize(
    ("body", "status", "field", "rule"),
    [
        ({"records": [GOOD | {"tenure": -4}]}, 422, "tenure", "min"),
        ({"records": [GOOD | {"tenure": "ten"}]}, 422, "tenure", "type"),
        ({"records": [{k: v for k, v in GOOD.items() if k != "contract"}]}, 422, "contract", None),
        ({"records": [GOOD | {"contract": "Weekly"}]}, 422, "contract", "category"),
        ({"records": [GOOD | {"colour": "red"}]}, 422, "colour", "unknown_field"),
        (_raw_body('"tenure": NaN'), 422, "tenure", "finite"),
        (_raw_body('"tenure": -Infinity'), 422, "tenure", "finite"),
        ({"records": []}, 422, "records", "min_items"),
        ({"rows": [GOOD]}, 422, "records", "missing"),
        ([GOOD], 422, "body", "type"),
        ({"records": [GOOD] * (MAX_RECORDS + 1)}, 413, "records", "max_items"),
        (b'{"records": [', 400, "body", "json"),
        (b"", 400, "body", "json"),
    ],
)
def test_bad_input_is_refused_naming_the_record_and_field(
    client: httpx.Client, body: Any, status: int, field: str, rule: str | None
) -> None:
    resp = _post(client, body)
    assert resp.status_code == status, resp.text
    problems = resp.json()["problems"]
    assert any(p["field"] == field and (rule is None or p["rule"] == rule) for p in problems)
    if status == 422 and field not in ("records", "body"):
        assert problems[0]["record"] == 0
    assert problems[0]["reason"]


def test_lone_surrogates_get_a_4xx_and_metrics_stay_readable(client: httpx.Client) -> None:
    good = json.dumps(GOOD)
    for body in (
        '{"records": [' + good[:-1] + ', "contract": "\\ud800"}]}',  # in a value
        '{"records": [' + good[:-1] + ', "\\ud800": 1}]}',  # in a field name
        '{"\\udfff": 1, "records": []}',  # in a top-level key
    ):
        resp = _post(client, body.encode())
        assert resp.status_code == 400, resp.text
        assert resp.json()["problems"][0]["rule"] == "unicode"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "gitml_http_requests" in metrics.text


def test_client_field_names_never_grow_the_metrics(client: httpx.Client) -> None:
    def size() -> int:
        return len(client.get("/metrics").text)

    _post(client, {"records": [GOOD | {"first-unknown": 1}]})
    before = size()
    for i in range(300):
        resp = _post(client, {"records": [GOOD | {f"field-{i}-{'x' * 40}": i}]})
        assert resp.status_code == 422
        resp = _post(client, {"records": [GOOD], f"top-{i}": 1})
        assert resp.status_code == 422
    after = size()
    assert after - before < 2000, (before, after)  # counters grow in value, not in series
    assert "field-299" not in client.get("/metrics").text


def test_oversized_bodies_are_refused_before_being_read(client: httpx.Client) -> None:
    big = b'{"records": [' + b" " * 70_000 + b"]}"
    assert client.post("/v1/predict", content=big).status_code == 413  # Content-Length

    def stream():  # chunked: no Content-Length; counted while it streams
        for _ in range(100):
            yield b" " * 1024

    resp = client.post("/v1/predict", content=stream())
    assert resp.status_code == 413
    assert resp.json()["problems"][0]["rule"] == "max_bytes"


_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
_FIELDS = st.sampled_from([*GOOD, "extra", ""])
_RECORD = st.one_of(
    st.dictionaries(_FIELDS, _ANY, max_size=25),  # arbitrary values
    st.builds(lambda change: GOOD | change, st.dictionaries(_FIELDS, _ANY, max_size=3)),
    _ANY,
)
_BODY = st.one_of(
    st.builds(lambda records: {"records": records}, st.lists(_RECORD, max_size=4)),
    st.dictionaries(st.text(max_size=8), _ANY, max_size=2),
    _ANY,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=_BODY)
def test_fuzzed_requests_never_get_a_5xx(client: httpx.Client, body: Any) -> None:
    content = json.dumps(body).encode()  # NaN and Infinity go out as JSON's extensions
    resp = client.post("/v1/predict", content=content)
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        problems = resp.json()["problems"]
        assert problems and all(isinstance(p["field"], str) and p["reason"] for p in problems)
        records = body.get("records") if isinstance(body, dict) else None
        for p in problems:
            if p["record"] is not None:
                assert 0 <= p["record"] < len(records)
    else:
        assert len(resp.json()["predictions"]) == len(body["records"])


def test_concurrent_load_has_no_errors(client: httpx.Client, server: ServerProcess) -> None:
    total, threads, limit = 480, 8, 60.0
    statuses: list[int] = []
    body = json.dumps({"records": [GOOD]}).encode()

    def run() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(total // threads):
                statuses.append(http.post("/v1/predict", content=body).status_code)

    started = time.monotonic()
    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(limit)
    elapsed = time.monotonic() - started
    assert elapsed < limit
    assert len(statuses) == total and set(statuses) == {200}
    metrics = client.get("/metrics").text
    assert "gitml_scoring_batch_rows_count" in metrics


def test_evaluate_predict_and_api_give_identical_probabilities(
    client: httpx.Client, project: Path, tmp_path: Path
) -> None:
    """Parity: every test-set row scores the same through evaluate, `gitml predict` and HTTP.

    Evaluate's probabilities are recomputed in-process with the calls the stage makes
    (load_model, read_table with categories, score_frame): `reports/predictions.csv` keeps
    them rounded to 10 decimals, which the last check allows for.
    """
    params = load_params(project / "params.yaml")
    test = read_table(project / "data/processed/test.parquet", categories=params.data.categorical)
    evaluate = score_frame(
        load_model(project / "models/model.skops"),
        test,
        features=params.data.features,
        positive_class=params.data.positive_class,
    )
    out = tmp_path / "scores.parquet"
    gitml("predict", "data/processed/test.parquet", "-o", str(out), cwd=project)
    batch = pq.read_table(out).to_pandas()
    assert batch["_row"].tolist() == test.index.tolist()
    assert np.max(np.abs(batch["score"].to_numpy() - evaluate)) <= 1e-12

    records = (
        pq.read_table(project / "data/processed/test.parquet")
        .select(params.data.features)
        .to_pylist()
    )
    # requests of up to serve.fast_path_max_rows (64) take the fast path; larger ones (100)
    # the pipeline itself: both must agree with evaluate
    assert client.get("/v1/model").json()["fast_path_max_rows"] == 64
    for size in (MAX_RECORDS, 7):
        api = []
        for start in range(0, len(records), size):
            resp = _post(client, {"records": records[start : start + size]})
            assert resp.status_code == 200, resp.text
            api += [p["score"] for p in resp.json()["predictions"]]
        assert len(api) == len(test)
        assert np.max(np.abs(np.array(api) - evaluate)) <= 1e-12

    labels = np.where(evaluate >= 0.5, "Yes", "No")
    assert batch["label"].tolist() == labels.tolist()
    committed = np.genfromtxt(
        project / "reports/predictions.csv", delimiter=",", names=True, dtype=None, encoding="utf-8"
    )
    assert np.max(np.abs(committed["score"] - evaluate)) <= 1e-10


def test_accept_policies_count_unknown_categories_and_extra_fields(project: Path) -> None:
    """A second, in-process uvicorn server (in a thread) with both input policies `accept`."""
    from gitml.config.schema import ServeParams
    from gitml.serve.app import create_app
    from gitml.serve.bundle import load_project_model

    settings = ServeParams(unknown_category="accept", extra_fields="accept")
    app = create_app(load_project_model(project), settings, threshold=0.5)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        odd = GOOD | {"contract": "Weekly", "colour": "red"}
        resp = http.post("/v1/predict", json={"records": [odd, GOOD]})
        assert resp.status_code == 200, resp.text
        metrics = http.get("/metrics").text
        schema = http.get("/openapi.json").json()["components"]["schemas"]
    assert 'gitml_input_unknown_categories_total{field="contract"} 1.0' in metrics
    assert "gitml_input_extra_fields_total 1.0" in metrics
    record = schema["PredictRequest"]["properties"]["records"]["items"]
    assert record["additionalProperties"] is True and "enum" not in record["properties"]["contract"]


class _Untrusted:
    """A type outside the trusted list (the server process cannot even import it)."""

    def __init__(self) -> None:
        self.payload = "never built"


def _model_variant(project: Path, root: Path, name: str) -> Path:
    directory = root / name
    shutil.copytree(project / "models", directory)
    model = directory / "model.skops"
    if name == "missing":
        model.unlink()
    elif name in ("pickle", "untrusted"):  # metadata.json rewritten to match: the loader refuses
        if name == "pickle":
            model.write_bytes(pickle.dumps({"not": "a model"}))
        else:
            sio.dump({"model": _Untrusted()}, model)
        meta = json.loads((directory / "metadata.json").read_text())
        meta["model_file"]["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
        (directory / "metadata.json").write_text(json.dumps(meta))
    elif name == "hash":  # an untrusted archive, but refused for its hash before skops reads it
        sio.dump({"model": _Untrusted()}, model)
    elif name == "signature":
        sig = json.loads((directory / "signature.json").read_text())
        sig["inputs"] = sig["inputs"][1:]  # one input fewer than the pipeline reads
        (directory / "signature.json").write_text(json.dumps(sig))
    return model


def test_start_up_refuses_bad_models_before_binding_the_port(project: Path, tmp_path: Path) -> None:
    expected = {
        "missing": "model file not found",
        "pickle": "refusing to load: a pickle file",
        "untrusted": "holds types outside gitml's trusted list",
        "hash": "does not match metadata.json",
        "signature": "signature.json declares",
    }
    servers = {
        name: ServerProcess(project, "--model", str(_model_variant(project, tmp_path, name)))
        for name in expected
    }
    for name, server in servers.items():
        code = server.wait_exit(timeout=120)
        stderr = server.stderr
        assert code == 1, stderr
        assert stderr.startswith("error: ") and expected[name] in stderr, stderr
        assert "Traceback" not in stderr and "Uvicorn running" not in stderr


def test_sigterm_finishes_and_flushes_every_accepted_prediction(
    built_repo: Path, tmp_path: Path
) -> None:
    """A server of its own (and its own log): concurrent requests, then SIGTERM."""
    own = _logging_project(built_repo, tmp_path / "project")
    server = ServerProcess(own, "--model", "models/model.skops")
    try:
        server.wait_ready()
        body = json.dumps({"records": [GOOD] * 20}).encode()
        statuses: list[int] = []

        def send() -> None:  # 4 x 6 x 20 = 480 rows: past rotate_rows (400)
            with httpx.Client(base_url=server.url, timeout=30) as http:
                for _ in range(6):
                    statuses.append(_post(http, body).status_code)

        senders = [threading.Thread(target=send) for _ in range(4)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(60)
        assert statuses == [200] * 24
        ids = [f"last-{i}" for i in range(5)]
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for request_id in ids:  # under flush_rows: these wait in the buffer until shutdown
                assert _post(client, {"records": [GOOD]}, **{"x-request-id": request_id}).is_success
            scored = next(
                float(line.split()[-1])
                for line in client.get("/metrics").text.splitlines()
                if line.startswith("gitml_rows_scored_total")
            )
        assert scored == 485
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.stop()  # at once if an assertion above failed
    assert "stopped on SIGTERM" in server.stderr
    log_dir = own / "logs/predictions"
    assert not list(log_dir.glob("*.part"))
    files = sorted(log_dir.glob("*.parquet"))
    assert len(files) > 1  # rotated at 400 rows
    log = pq.read_table(files).to_pandas()
    assert len(log) == scored
    assert set(ids) <= set(log["request_id"])
    assert log["score"].between(0, 1).all() and not math.isnan(log["score"].sum())
    assert set(log["model_version"]) == {"unreleased"}
