"""`gitml serve` over the Open Inference Protocol V2, driven by unmodified ecosystem clients.

One real server (`gitml serve` on 127.0.0.1) runs for the module. tritonclient[http] and
kserve's InferenceRESTClient run in one subprocess in `.venv-clients` (`clients.run_client`):
health, metadata, infer with and without binary tensor data, and the whole test set, whose
scores must equal `/v1/predict`'s. Bad input over V2 must get the refusals `/v1` gives.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.clients import run_client
from tests.integration.serving import ServerProcess, project_serving, serve_in_thread
from tests.unit.test_serve_inputs import GOOD, SIGNATURE

MAX_RECORDS = 1500  # the whole test set (1,409 rows) in one request
MAX_BODY = 1048576
NAME = "churn-classifier"
HEADER = "Inference-Header-Content-Length"
DATATYPES = {"category": "BYTES", "int": "INT64", "float": "FP64"}
COLUMNS = [(item["name"], DATATYPES[item["type"]]) for item in SIGNATURE["inputs"]]


@pytest.fixture(scope="module")
def project(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_serving(
        built_repo,
        tmp_path_factory.mktemp("v2") / "project",
        max_records=MAX_RECORDS,
        max_body_bytes=MAX_BODY,
    )


@pytest.fixture(scope="module")
def test_rows(project: Path) -> list[dict[str, Any]]:
    """The built project's test set, as /v1 records (null where missing)."""
    path = project / "data/processed/test.parquet"
    return pq.read_table(path, columns=[name for name, _ in COLUMNS]).to_pylist()


def v2_request(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    inputs = [
        {"name": n, "datatype": d, "shape": [len(rows)], "data": [r.get(n) for r in rows]}
        for n, d in COLUMNS
    ]
    return {"inputs": inputs, **extra}


def _infer(client: httpx.Client, body: Any, path: str = f"/v2/models/{NAME}/infer", **headers: str):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=content, headers=headers)


_CLIENTS = r"""
import asyncio, json, sys
import numpy as np
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

url, name, rows_path = sys.argv[1:]
columns = json.load(open(rows_path))
out = {}
client = triton.InferenceServerClient(url.removeprefix("http://"))
out["live"] = client.is_server_live()
out["ready"] = client.is_server_ready()
out["model_ready"] = client.is_model_ready(name)
meta = client.get_model_metadata(name)
version = meta["versions"][0]
out["version_ready"] = client.is_model_ready(name, version)
out["unknown_ready"] = client.is_model_ready("no-such-model")
out["server"] = client.get_server_metadata()
out["metadata"] = meta

def arrays(n=None):
    found = {}
    for tensor in meta["inputs"]:
        values = columns[tensor["name"]][:n]
        if tensor["datatype"] == "BYTES":
            found[tensor["name"]] = np.array(values, dtype=object)
        elif tensor["datatype"] == "INT64":
            found[tensor["name"]] = np.array(values, dtype=np.int64)
        else:
            found[tensor["name"]] = np.array([np.nan if v is None else v for v in values])
    return found

def triton_inputs(n=None, binary=True, skip=()):
    inputs = []
    for tensor_name, array in arrays(n).items():
        if tensor_name in skip:
            continue
        datatype = next(t["datatype"] for t in meta["inputs"] if t["name"] == tensor_name)
        tensor = triton.InferInput(tensor_name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs

def text(value):  # BYTES: bytes from binary data, str from JSON
    return value.decode() if isinstance(value, bytes) else value

small = {}
for binary_in in (True, False):
    for binary_out in (None, True, False):  # None: no outputs named (binary_data_output)
        outputs = None
        if binary_out is not None:
            outputs = [
                triton.InferRequestedOutput(o, binary_data=binary_out) for o in ("score", "label")
            ]
        result = client.infer(name, triton_inputs(5, binary_in), outputs=outputs, request_id="tc-1")
        response = result.get_response()
        small[f"{binary_in}-{binary_out}"] = {
            "score": result.as_numpy("score").tolist(),
            "label": [text(v) for v in result.as_numpy("label").tolist()],
            "binary": [o["name"] for o in response["outputs"] if "parameters" in o],
            "id": response["id"],
            "version": response["model_version"],
        }
out["small"] = small
whole = client.infer(name, triton_inputs(), model_version=version)
out["triton_scores"] = whole.as_numpy("score").tolist()
try:
    client.infer(name, triton_inputs(2, skip=("tenure",)))
    out["missing_error"] = None
except InferenceServerException as err:
    out["missing_error"] = [err.status(), err.message()]

async def with_kserve():
    rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    try:
        found = {"live": await rest.is_server_live(url), "ready": await rest.is_server_ready(url),
                 "model_ready": await rest.is_model_ready(url, name)}
        for binary in (False, True):
            inputs = []
            for tensor_name, array in arrays().items():
                datatype = next(t["datatype"] for t in meta["inputs"] if t["name"] == tensor_name)
                tensor = InferInput(tensor_name, list(array.shape), datatype)
                tensor.set_data_from_numpy(array, binary_data=binary)
                inputs.append(tensor)
            request = InferRequest(model_name=name, infer_inputs=inputs, request_id="ks-1")
            response = await rest.infer(url, request, model_name=name)
            scores = next(o for o in response.outputs if o.name == "score")
            found[f"scores_{binary}"] = scores.as_numpy().tolist()
            found[f"id_{binary}"] = response.id
        return found
    finally:
        await rest.close()

out["kserve"] = asyncio.run(with_kserve())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def clients(server: ServerProcess, test_rows: list[dict[str, Any]], tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("v2-clients") / "columns.json"
    path.write_text(json.dumps({n: [r[n] for r in test_rows] for n, _ in COLUMNS}))
    return run_client(_CLIENTS, server.url, NAME, str(path))


@pytest.fixture(scope="module")
def v1_scores(client: httpx.Client, test_rows: list[dict[str, Any]]) -> list[float]:
    resp = client.post("/v1/predict", json={"records": test_rows})
    assert resp.status_code == 200, resp.text
    return [p["score"] for p in resp.json()["predictions"]]


def test_tritonclient_health_metadata_and_infer(clients: dict, v1_scores: list[float]) -> None:
    assert [clients[k] for k in ("live", "ready", "model_ready", "version_ready")] == [True] * 4
    assert clients["unknown_ready"] is False
    assert clients["server"]["name"] == "gitml"
    assert "binary_tensor_data" in clients["server"]["extensions"]
    meta = clients["metadata"]
    assert meta["name"] == NAME and meta["platform"] == "gitml-sklearn"
    assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == COLUMNS
    assert [(t["name"], t["datatype"]) for t in meta["outputs"]] == [
        ("score", "FP64"),
        ("label", "BYTES"),
    ]
    expected_binary = {"None": ["score", "label"], "True": ["score", "label"], "False": []}
    for key, answer in clients["small"].items():
        assert answer["score"] == pytest.approx(v1_scores[:5], abs=1e-12), key
        assert answer["label"] == ["Yes" if s >= 0.5 else "No" for s in answer["score"]], key
        assert answer["binary"] == expected_binary[key.split("-")[1]], key
        assert answer["id"] == "tc-1" and answer["version"] == meta["versions"][0]
    scores = np.array(clients["triton_scores"])
    assert len(scores) == 1409  # the whole test set, nulls (NaN) included
    np.testing.assert_allclose(scores, v1_scores, rtol=0, atol=1e-12)
    status, message = clients["missing_error"]
    assert status == "400" and "field 'tenure': required field is missing" in message


def test_kserve_client_health_and_infer(clients: dict, v1_scores: list[float]) -> None:
    found = clients["kserve"]
    assert found["live"] is True and found["ready"] is True and found["model_ready"] is True
    for binary in (False, True):
        np.testing.assert_allclose(found[f"scores_{binary}"], v1_scores, rtol=0, atol=1e-12)
        assert found[f"id_{binary}"] == "ks-1"


def _v1_problems(client: httpx.Client, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    resp = client.post("/v1/predict", json={"records": records})
    assert resp.status_code == 422, resp.text
    return resp.json()["problems"]


def _refused(resp: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["error"] and body["problems"] and body["request_id"]
    return body


def test_value_problems_are_refused_as_over_v1(client: httpx.Client) -> None:
    rows = [GOOD, GOOD | {"contract": "Weekly", "tenure": -4, "total_charges": None}]
    missing = [{k: v for k, v in r.items() if k != "tenure"} for r in rows]
    for records in (rows, missing, [r | {"monthly_charges": None} for r in rows]):
        request = v2_request(records)
        request["inputs"] = [t for t in request["inputs"] if any(t["name"] in r for r in records)]
        body = _refused(_infer(client, request))
        assert body["problems"] == _v1_problems(client, records)  # same record, field, rule
        assert body["error"].startswith("record ")
    body = _refused(_infer(client, v2_request([GOOD, GOOD | {"contract": "Weekly"}])))
    assert body["error"].startswith("record 1: field 'contract': must be one of 'Month-to-month'")


def _binary_body(rows: list[dict[str, Any]], contract: bytes | None = None) -> tuple[bytes, str]:
    """`rows` with every category input as binary tensor data (`contract`: its raw bytes)."""
    request = v2_request(rows)
    blobs = []
    for tensor in request["inputs"]:
        if tensor["datatype"] != "BYTES":
            continue
        raw = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in tensor["data"])
        if tensor["name"] == "contract" and contract is not None:
            raw = contract
        del tensor["data"]
        tensor["parameters"] = {"binary_data_size": len(raw)}
        blobs.append(raw)
    header = json.dumps(request).encode()
    return header + b"".join(blobs), str(len(header))


@pytest.mark.parametrize(
    ("case", "status", "field", "rule", "words"),
    [
        ("wrong datatype", 400, "contract", "datatype", "is a category (text): send BYTES"),
        ("shape mismatch", 400, "tenure", "shape", "needs 2 elements"),
        ("rows mismatch", 400, "tenure", "shape", "different numbers of rows"),
        ("unknown input", 400, "colour", "unknown_field", "is not an input of the model"),
        ("lone surrogate", 400, "body", "unicode", "lone surrogate"),
        ("invalid utf-8 json", 400, "body", "json", "UTF-8"),
        ("invalid utf-8 binary", 400, "contract", "unicode", "not valid UTF-8"),
        ("bytes past the end", 400, "contract", "binary", "past the end"),
        ("header past the body", 400, "inference-header-content-length", "binary", "only"),
        ("oversized body", 413, "body", "max_bytes", "exceeds 1048576 bytes"),
        ("too many rows", 413, "records", "max_items", "at most 1500 records"),
        ("media type", 415, "content-type", "media_type", "'text/csv' is not taken"),
        ("unknown output", 400, "outputs", "unknown_output", "its outputs: score, label"),
    ],
)
def test_bad_tensors_are_refused_naming_the_input(
    client: httpx.Client, case: str, status: int, field: str, rule: str, words: str
) -> None:
    rows = [GOOD, GOOD]
    request = v2_request(rows)
    by_name = {t["name"]: t for t in request["inputs"]}
    headers: dict[str, str] = {}
    content: bytes | None = None
    if case == "wrong datatype":
        by_name["contract"] |= {"datatype": "FP64", "data": [1.0, 2.0]}
    elif case == "shape mismatch":
        by_name["tenure"]["data"] = [1, 2, 3]
    elif case == "rows mismatch":
        by_name["tenure"] |= {"shape": [3], "data": [1, 2, 3]}
    elif case == "unknown input":
        request["inputs"].append(
            {"name": "colour", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}
        )
    elif case == "lone surrogate":
        content = json.dumps(request).replace('"One year"', '"One \\ud800year"', 1).encode()
    elif case == "invalid utf-8 json":
        content = json.dumps(request).replace('"One year"', '"One \xff"', 1).encode("latin-1")
    elif case == "invalid utf-8 binary":
        content, headers[HEADER] = _binary_body(rows, (struct.pack("<I", 2) + b"\xff\xfe") * 2)
    elif case == "bytes past the end":
        content, headers[HEADER] = _binary_body(rows, struct.pack("<I", 200) + b"One year")
    elif case == "header past the body":
        content, _ = _binary_body(rows)
        headers[HEADER] = str(len(content) + 10)
    elif case == "oversized body":
        content = b" " * (MAX_BODY + 1)
    elif case == "too many rows":
        request = v2_request([GOOD] * (MAX_RECORDS + 1))
    elif case == "media type":
        headers["content-type"] = "text/csv"
    elif case == "unknown output":
        request["outputs"] = [{"name": "probability"}]
    resp = _infer(client, content if content is not None else request, **headers)
    body = _refused(resp, status)
    assert (body["problems"][0]["field"], body["problems"][0]["rule"]) == (field, rule), body
    assert words in body["error"], body["error"]
    assert client.get("/v2/health/ready").status_code == 200


_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=3),
)
_DATATYPES = st.sampled_from(["BYTES", "BOOL", "INT8", "UINT64", "FP16", "FP64", "BF16", "", "x"])
_CHANGE = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.sampled_from([n for n, _ in COLUMNS]), _ANY),
        "datatype": st.one_of(_DATATYPES, _ANY),
        "shape": st.one_of(st.lists(st.integers(-2, 3), max_size=3), _ANY),
        "data": st.one_of(st.lists(_ANY, max_size=3), _ANY),
        "parameters": st.one_of(
            st.fixed_dictionaries({"binary_data_size": st.integers(-1, 40)}), _ANY
        ),
    },
)


def _mutated(changes: dict[int, dict[str, Any]], drop: list[int], extra: dict[str, Any]) -> Any:
    request = v2_request([GOOD, GOOD | {"total_charges": None}])
    for position, change in changes.items():
        request["inputs"][position % len(COLUMNS)].update(change)
    request["inputs"] = [t for k, t in enumerate(request["inputs"]) if k not in drop]
    return request | extra


_V2_BODY = st.one_of(
    st.builds(
        _mutated,
        st.dictionaries(st.integers(0, 30), _CHANGE, max_size=3),
        st.lists(st.integers(0, 20), max_size=2),
        st.fixed_dictionaries(
            {},
            optional={
                "id": _ANY,
                "outputs": st.one_of(
                    st.lists(st.fixed_dictionaries({"name": st.sampled_from(["score", "x"])})),
                    _ANY,
                ),
                "parameters": st.one_of(st.fixed_dictionaries({"binary_data_output": _ANY}), _ANY),
            },
        ),
    ),
    st.dictionaries(st.sampled_from(["inputs", "outputs", "id", "x"]), _ANY, max_size=2),
    _ANY,
)


def _assert_refusal_or_answer(resp: httpx.Response) -> None:
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        body = resp.json()
        assert body["error"] and body["problems"]
        assert all(isinstance(p["field"], str) and p["reason"] for p in body["problems"])


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=_V2_BODY)
def test_fuzzed_tensors_never_get_a_5xx(client: httpx.Client, body: Any) -> None:
    _assert_refusal_or_answer(_infer(client, body))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    cut=st.integers(0, 400),
    flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=3),
    length_change=st.integers(-40, 40),
)
def test_fuzzed_binary_data_never_gets_a_5xx(
    client: httpx.Client, cut: int, flips: list[tuple[int, int]], length_change: int
) -> None:
    content, length = _binary_body([GOOD, GOOD | {"contract": "Two year"}])
    damaged = bytearray(content[: len(content) - cut])
    for position, value in flips:
        if damaged:
            damaged[position % len(damaged)] = value
    header = str(max(0, int(length) + length_change))
    _assert_refusal_or_answer(_infer(client, bytes(damaged), **{HEADER: header}))


def test_health_metadata_versions_and_unknown_models(client: httpx.Client) -> None:
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    version = client.get("/v1/model").json()["version"]
    meta = client.get(f"/v2/models/{NAME}").json()
    assert meta == client.get(f"/v2/models/{NAME}/versions/{version}").json()
    assert meta["versions"] == [version]
    ready = client.get(f"/v2/models/{NAME}/versions/{version}/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    for path, field in (
        ("/v2/models/nope", "model"),
        ("/v2/models/nope/ready", "model"),
        (f"/v2/models/{NAME}/versions/v9.9.9/ready", "version"),
        (f"/v2/models/{NAME}/versions/v9.9.9", "version"),
    ):
        body = _refused(client.get(path), 404)
        assert body["problems"][0]["field"] == field
    body = _refused(_infer(client, v2_request([GOOD]), f"/v2/models/{NAME}/versions/v9/infer"), 404)
    assert f"versions: ['{version}']" in body["error"]


def test_gzip_nested_data_and_the_request_id(client: httpx.Client) -> None:
    request = v2_request([GOOD], id="req-7")
    for tensor in request["inputs"]:
        tensor |= {"shape": [1, 1], "data": [tensor["data"]]}
    plain = _infer(client, request)
    assert plain.status_code == 200, plain.text
    assert plain.json()["id"] == "req-7"
    zipped = _infer(
        client, gzip.compress(json.dumps(request).encode()), **{"content-encoding": "gzip"}
    )
    assert zipped.json()["outputs"] == plain.json()["outputs"]
    unnamed = _infer(client, v2_request([GOOD]), **{"x-request-id": "trace-1"})
    assert unnamed.json()["id"] == "trace-1" == unnamed.headers["x-request-id"]
    metrics = client.get("/metrics").text
    assert 'path="/v2/models/{name}/infer"' in metrics


def test_each_version_answers_at_its_own_path(project: Path) -> None:
    """Two versions of one model in one app (thresholds 0.5 and 0.1): a bare name routes to
    the first given, a version to its own runtime, metadata and readiness."""
    from gitml.config.compose import load_params
    from gitml.serve.app import create_app
    from gitml.serve.bundle import load_served_model
    from gitml.serve.deployment import Deployment
    from gitml.serve.runtime import ModelRuntime

    settings = load_params(project / "params.yaml").serve
    runtimes = [
        ModelRuntime(
            load_served_model(project / "models/model.skops", name=NAME, version=version),
            settings,
            threshold=threshold,
        )
        for version, threshold in (("v1.0.0", 0.5), ("v2.0.0", 0.1))
    ]
    request = v2_request([GOOD])  # scores 0.17: "No" at 0.5, "Yes" at 0.1
    with (
        serve_in_thread(create_app(Deployment(runtimes), settings)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        labels = {}
        for path in ("", "/versions/v1.0.0", "/versions/v2.0.0"):
            answer = _infer(http, request, f"/v2/models/{NAME}{path}/infer").json()
            labels[path] = (answer["model_version"], answer["outputs"][1]["data"])
            meta = http.get(f"/v2/models/{NAME}{path}").json()
            assert meta["versions"] == ["v1.0.0", "v2.0.0"]
            assert http.get(f"/v2/models/{NAME}{path}/ready").json()["ready"] is True
        assert labels == {
            "": ("v1.0.0", ["No"]),
            "/versions/v1.0.0": ("v1.0.0", ["No"]),
            "/versions/v2.0.0": ("v2.0.0", ["Yes"]),
        }
        assert "score >= 0.1" in http.get(f"/v2/models/{NAME}/versions/v2.0.0").text
        missing = http.get(f"/v2/models/{NAME}/versions/v3.0.0/ready")
        assert missing.status_code == 404
        assert "versions: ['v1.0.0', 'v2.0.0']" in missing.json()["error"]
