"""MLflow's scoring protocol on a real `gitml serve`: MLflow's own code builds the requests
and reads the answers, and scores the whole test set as `/v1/predict` does; bad input gets
`/v1`'s refusals in MLflow's error shape.

One server runs for the module, and its two tests (few, so that pytest-xdist rarely splits
them over two workers and two servers); MLflow's client runs once, in its own environment
(`.venv-clients`, see `clients.py`).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from jsonschema import Draft202012Validator

from gitml import __version__
from gitml.config.compose import load_params
from tests.integration.clients import run_client
from tests.integration.serving import ServerProcess, project_serving
from tests.unit.test_serve_inputs import GOOD

MAX_RECORDS = 1000  # the default serve.max_records: the test set goes in two requests

# MLflow's own client, `ScoringServerClient.invoke` (a DataFrame, sent as dataframe_split),
# and more bodies built by MLflow's own code where it has some: `convert_input_example_to_
# serving_input` writes what `mlflow models predict` reads (records or columns as `inputs`);
# dataframe_records and CSV as MLflow's docs build them, sent as `invoke` sends its own.
MLFLOW_CLIENT = r"""
import json
import sys

import pandas as pd
import requests
from mlflow.deployments import PredictionsResponse
from mlflow.models import convert_input_example_to_serving_input as serving_input
from mlflow.pyfunc.scoring_server import CONTENT_TYPE_CSV, CONTENT_TYPE_JSON
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

port, rows, chunk = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
client = ScoringServerClient("127.0.0.1", port)
client.wait_server_ready(timeout=30)  # polls /ping
with open(rows) as handle:
    frame = pd.DataFrame(json.load(handle))
bodies = {
    "dataframe_split": lambda part: (serving_input(part), CONTENT_TYPE_JSON),
    "dataframe_records": lambda part: (
        json.dumps({"dataframe_records": part.to_dict(orient="records")}),
        CONTENT_TYPE_JSON,
    ),
    "inputs (records)": lambda part: (
        serving_input(part.to_dict(orient="records")), CONTENT_TYPE_JSON
    ),
    "inputs (columns)": lambda part: (
        serving_input({name: part[name].to_numpy() for name in part}), CONTENT_TYPE_JSON
    ),
    "csv": lambda part: (part.to_csv(index=False), CONTENT_TYPE_CSV),
}
out = {"version": client.get_version(), "scores": {}, "labels": {}}
answers = [
    client.invoke(frame.iloc[start : start + chunk]).get_predictions()
    for start in range(0, len(frame), chunk)
]
predictions = pd.concat(answers, ignore_index=True)
out["scores"]["invoke"] = predictions["score"].tolist()
out["labels"]["invoke"] = predictions["label"].tolist()
for name, body in bodies.items():
    answers = []
    for start in range(0, len(frame), chunk):
        data, content_type = body(frame.iloc[start : start + chunk])
        resp = requests.post(
            client.url_prefix + "/invocations", data=data, headers={"Content-Type": content_type}
        )
        if resp.status_code != 200:
            raise SystemExit(f"{name}: {resp.status_code} {resp.text[:2000]}")
        answers.append(PredictionsResponse.from_json(resp.text).get_predictions())
    predictions = pd.concat(answers, ignore_index=True)
    out["scores"][name] = predictions["score"].tolist()
    out["labels"][name] = predictions["label"].tolist()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def project(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_serving(built_repo, tmp_path_factory.mktemp("mlflow") / "project")


@pytest.fixture(scope="module")
def doc(client: httpx.Client) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def _check_documented(doc: dict[str, Any], path: str, method: str, resp: httpx.Response) -> None:
    """`resp` has a documented status and a body that conforms to its documented schema."""
    documented = doc["paths"][path][method]["responses"]
    assert str(resp.status_code) in documented, (path, resp.status_code, resp.text)
    content = documented[str(resp.status_code)]["content"]["application/json"]
    assert resp.headers["content-type"] == "application/json"
    validator = Draft202012Validator(content["schema"] | {"components": doc["components"]})
    validator.validate(resp.json())
    if "example" in content:
        validator.validate(content["example"])


def test_mlflow_clients_score_as_v1_does(
    client: httpx.Client, server: ServerProcess, project: Path, doc: dict[str, Any], tmp_path: Path
) -> None:
    features = load_params(project / "params.yaml").data.features
    records = pq.read_table(project / "data/processed/test.parquet").select(features).to_pylist()
    assert len(records) == 1409 and any(r["total_charges"] is None for r in records)
    v1: list[dict[str, Any]] = []
    for start in range(0, len(records), MAX_RECORDS):
        resp = client.post("/v1/predict", json={"records": records[start : start + MAX_RECORDS]})
        assert resp.status_code == 200, resp.text
        v1 += resp.json()["predictions"]
    expected = np.array([p["score"] for p in v1])
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(records))

    out = run_client(MLFLOW_CLIENT, str(server.port), str(rows), str(MAX_RECORDS))

    model = client.get("/v1/model").json()
    identity = {k: model[k] for k in ("name", "version", "commit")}
    assert json.loads(out["version"]) == {"gitml": __version__, "model": identity}
    assert set(out["scores"]) == {
        "invoke",
        "dataframe_split",
        "dataframe_records",
        "inputs (records)",
        "inputs (columns)",
        "csv",
    }
    for name, scores in out["scores"].items():
        assert len(scores) == len(records), name
        assert np.max(np.abs(np.array(scores) - expected)) <= 1e-12, name
        assert out["labels"][name] == [p["label"] for p in v1], name

    answer = client.post(
        "/invocations", json={"dataframe_records": [GOOD]}, headers={"x-request-id": "mlflow-1"}
    )
    one = client.post("/v1/predict", json={"records": [GOOD]}).json()["predictions"]
    assert answer.json() == {"predictions": one}  # MLflow's shape, /v1's records
    assert answer.headers["x-request-id"] == "mlflow-1"
    _check_documented(doc, "/invocations", "post", answer)

    examples = doc["paths"]["/invocations"]["post"]["requestBody"]["content"]
    for media_type, documented in examples.items():  # the documented examples, plain and gzip
        example = documented["example"]
        content = example.encode() if isinstance(example, str) else json.dumps(example).encode()
        resp = client.post("/invocations", content=content, headers={"content-type": media_type})
        assert resp.status_code == 200, (media_type, resp.text)
        _check_documented(doc, "/invocations", "post", resp)
        packed = client.post(
            "/invocations",
            content=gzip.compress(content),
            headers={"content-type": media_type, "content-encoding": "gzip"},
        )
        assert packed.json() == resp.json()
    for path in ("/ping", "/health", "/version"):
        resp = client.get(path)
        assert resp.status_code == 200, path
        _check_documented(doc, path, "get", resp)
    assert client.get("/ping").json() == {"status": "ready"}
    metrics = client.get("/metrics").text
    assert 'path="/invocations"' in metrics and 'path="/ping"' in metrics


def _split(records: list[dict[str, Any]]) -> dict[str, Any]:
    names = list(dict.fromkeys(k for r in records for k in r))
    return {"dataframe_split": {"columns": names, "data": [[r[n] for n in names] for r in records]}}


BAD_RECORDS = {
    "missing column": [{k: v for k, v in GOOD.items() if k != "contract"}],
    "wrong type": [GOOD, GOOD | {"tenure": "two years"}],
    "unknown category": [GOOD | {"contract": "Weekly"}],
    "below the minimum": [GOOD | {"tenure": -4, "monthly_charges": "29.85"}],
}
CSV = {"content-type": "text/csv"}
BAD_BODIES = {  # content, headers, status, error_code, field, rule
    "lone surrogate": (
        b'{"inputs": [{"contract": "\\ud800"}]}',
        {},
        400,
        "BAD_REQUEST",
        "body",
        "unicode",
    ),
    "invalid UTF-8": (b"contract\n\xff\n", CSV, 400, "BAD_REQUEST", "body", "unicode"),
    "a /v1 body": (b'{"records": []}', {}, 400, "BAD_REQUEST", "records", "unknown_field"),
    "oversized": (b"x" * (2**20 + 1), {}, 413, "REQUEST_LIMIT_EXCEEDED", "body", "max_bytes"),
    "too many": (
        json.dumps({"dataframe_records": [GOOD] * (MAX_RECORDS + 1)}).encode(),
        {},
        413,
        "REQUEST_LIMIT_EXCEEDED",
        "records",
        "max_items",
    ),
    "text/plain": (
        b"{}",
        {"content-type": "text/plain"},
        415,
        "BAD_REQUEST",
        "content-type",
        "media_type",
    ),
}


def test_bad_input_gets_v1s_refusals_in_mlflows_error_shape(
    client: httpx.Client, doc: dict[str, Any]
) -> None:
    for case, records in BAD_RECORDS.items():
        refused = client.post("/v1/predict", json={"records": records})
        assert refused.status_code == 422, case
        csv_body = "\n".join(
            [",".join(records[0]), *(",".join(str(v) for v in r.values()) for r in records)]
        )
        for form, body in (
            ("dataframe_split", _split(records)),
            ("dataframe_records", {"dataframe_records": records}),
            ("instances", {"instances": records}),
            ("csv", csv_body),
        ):
            resp = client.post(
                "/invocations",
                content=body.encode() if isinstance(body, str) else json.dumps(body).encode(),
                headers=CSV if isinstance(body, str) else {"content-type": "application/json"},
            )
            assert resp.status_code == 400, (case, form, resp.text)
            _check_documented(doc, "/invocations", "post", resp)
            answer = resp.json()
            assert answer["error_code"] == "INVALID_PARAMETER_VALUE", (case, form)
            # the same problems (CSV sends every value as text), and the message names them
            expected = refused.json()["problems"]
            shown = answer["problems"]
            if form == "csv":
                shown = [p | {"value": None} for p in shown]
                expected = [p | {"value": None} for p in expected]
            assert shown == expected, (case, form)
            assert answer["message"] == refused.json()["error"], (case, form)

    for case, (content, headers, status, code, field, rule) in BAD_BODIES.items():
        resp = client.post(
            "/invocations",
            content=content,
            headers={"content-type": "application/json", "x-request-id": f"bad-{rule}"} | headers,
        )
        assert resp.status_code == status, (case, resp.text)
        _check_documented(doc, "/invocations", "post", resp)
        answer = resp.json()
        assert answer["error_code"] == code and answer["request_id"] == f"bad-{rule}", case
        assert (answer["problems"][0]["field"], answer["problems"][0]["rule"]) == (field, rule)
        assert answer["problems"][0]["reason"] in answer["message"], case
