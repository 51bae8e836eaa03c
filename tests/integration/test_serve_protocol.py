"""The HTTP contract of `gitml serve`: one error shape, an OpenAPI document that matches the
server, `/docs` without a CDN, gzip bodies, and schemathesis run against the live server.

One real server (`gitml serve` on 127.0.0.1) runs for the module, with small limits so that
the size refusals are cheap to reach.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import socket
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.serving import ServerProcess, project_serving, serve_in_thread
from tests.unit.test_serve_inputs import GOOD

MAX_RECORDS = 100
MAX_BODY = 65536
BODY = json.dumps({"records": [GOOD, GOOD | {"contract": "Month-to-month"}]}).encode()
MLFLOW_RESPONSES = {  # MLflow's scoring protocol (routes_mlflow.py), beside EXPECTED_RESPONSES
    ("/invocations", "post"): {"200", "400", "413", "415", "500"},
    ("/ping", "get"): {"200", "503"},
    ("/health", "get"): {"200", "503"},
    ("/version", "get"): {"200"},
}


@pytest.fixture(scope="module")
def project(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_serving(
        built_repo,
        tmp_path_factory.mktemp("protocol") / "project",
        max_records=MAX_RECORDS,
        max_body_bytes=MAX_BODY,
    )


@pytest.fixture(scope="module")
def doc(client: httpx.Client) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for `schema`, with the document's `#/components/...` references."""
    return Draft202012Validator(schema | {"components": doc["components"]})


def _media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0].strip()


def _assert_error_shape(
    doc: dict[str, Any], resp: httpx.Response, *, request_id: str | None = None
) -> dict[str, Any]:
    """The documented error body: JSON, the Error schema, at least one problem, the id."""
    assert _media_type(resp) == "application/json", resp.headers
    body = resp.json()
    _validator(doc, {"$ref": "#/components/schemas/Error"}).validate(body)
    assert body["error"] and body["problems"] and body["problems"][0]["reason"]
    assert resp.headers["x-request-id"] == body["request_id"]
    if request_id is not None:
        assert body["request_id"] == request_id
    return body


def _bomb(size: int) -> bytes:
    """`size` bytes of JSON whitespace, gzip-compressed (about 1,000 : 1)."""
    return gzip.compress(b" " * size, compresslevel=9)


@pytest.mark.parametrize(
    ("method", "path", "headers", "content", "status", "field", "rule"),
    [
        ("GET", "/no/such/path", {}, b"", 404, "path", "not_found"),
        ("GET", "/docs/missing.js", {}, b"", 404, "path", "not_found"),
        ("DELETE", "/healthz", {}, b"", 405, "method", "method_not_allowed"),
        ("GET", "/v1/predict", {}, b"", 405, "method", "method_not_allowed"),
        (
            "POST",
            "/v1/predict",
            {"content-type": "text/csv"},
            b"a,b\n1,2\n",
            415,
            "content-type",
            "media_type",
        ),
        (
            "POST",
            "/v1/predict",
            {"content-encoding": "br"},
            BODY,
            415,
            "content-encoding",
            "encoding",
        ),
        ("POST", "/v1/predict", {}, b" " * (MAX_BODY + 1), 413, "body", "max_bytes"),
        ("POST", "/v1/predict", {"content-encoding": "gzip"}, b"not gzip", 400, "body", "gzip"),
        ("POST", "/v1/predict", {"content-type": "application/json"}, b"{", 400, "body", "json"),
    ],
)
def test_every_error_has_the_documented_shape(
    client: httpx.Client,
    doc: dict[str, Any],
    method: str,
    path: str,
    headers: dict[str, str],
    content: bytes,
    status: int,
    field: str,
    rule: str,
) -> None:
    request_id = f"protocol-{status}-{rule}"
    resp = client.request(
        method, path, content=content, headers=headers | {"x-request-id": request_id}
    )
    assert resp.status_code == status, resp.text
    body = _assert_error_shape(doc, resp, request_id=request_id)
    problem = body["problems"][0]
    assert (problem["field"], problem["rule"]) == (field, rule), body
    if status == 404:
        assert f"{method} {path}" in body["error"]
    if status == 405:  # the methods the path takes, in the header and in the message
        assert resp.headers["allow"] in ("GET", "POST") and resp.headers["allow"] in body["error"]


@pytest.mark.parametrize(
    "request_bytes",
    [b"NOT HTTP AT ALL\r\n\r\n", b"GET /healthz HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n"],
)
def test_unparseable_requests_get_the_error_body(
    server: ServerProcess, doc: dict[str, Any], request_bytes: bytes
) -> None:
    """uvicorn answers these itself, before the app sees them."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request_bytes)
        raw = b""
        while chunk := sock.recv(65536):  # the server closes the connection
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert lines[0].startswith("HTTP/1.1 400"), raw
    assert headers["content-type"] == "application/json"
    problem = json.loads(body)["problems"][0]
    _validator(doc, {"$ref": "#/components/schemas/Error"}).validate(json.loads(body))
    assert problem["field"] == "request" and "could not be parsed" in problem["reason"]
    assert json.loads(body)["request_id"] == headers["x-request-id"]


def test_gzip_bodies_are_decoded_and_the_limit_applies_to_the_decoded_size(
    client: httpx.Client, server: ServerProcess, doc: dict[str, Any]
) -> None:
    plain = client.post("/v1/predict", content=BODY)
    assert plain.status_code == 200, plain.text
    scores = [p["score"] for p in plain.json()["predictions"]]
    half = len(BODY) // 2
    for encoding, content in (
        ("gzip", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("GZIP, identity", gzip.compress(BODY)),
        ("gzip", gzip.compress(BODY[:half]) + gzip.compress(BODY[half:])),  # two members
    ):
        resp = client.post("/v1/predict", content=content, headers={"content-encoding": encoding})
        assert resp.status_code == 200, (encoding, resp.text)
        assert [p["score"] for p in resp.json()["predictions"]] == scores

    # a body that is small compressed but over the limit once decoded
    over = client.post(
        "/v1/predict", content=_bomb(MAX_BODY + 1), headers={"content-encoding": "gzip"}
    )
    assert over.status_code == 413
    assert _assert_error_shape(doc, over)["problems"][0]["rule"] == "max_bytes"
    assert "decompressed" in over.json()["error"]

    # a gzip bomb: 60 KB that inflates to 60 MB is refused without being inflated
    bomb = _bomb(60_000_000)
    assert len(bomb) < MAX_BODY
    peak_before = _peak_rss(server)
    started = time.monotonic()
    resp = client.post("/v1/predict", content=bomb, headers={"content-encoding": "gzip"})
    assert resp.status_code == 413, resp.text
    assert time.monotonic() - started < 10
    assert _peak_rss(server) - peak_before < 16 * 2**20  # far from the 60 MB inflated
    assert client.get("/healthz").status_code == 200

    corrupt = bytearray(gzip.compress(BODY))
    corrupt[len(corrupt) // 2] ^= 0xFF
    for content in (gzip.compress(BODY)[:-12], bytes(corrupt)):  # truncated, then damaged
        resp = client.post("/v1/predict", content=content, headers={"content-encoding": "gzip"})
        assert resp.status_code == 400, resp.text
        assert _assert_error_shape(doc, resp)["problems"][0]["rule"] == "gzip"


@pytest.mark.parametrize("encoding", ["br", "deflate", "zstd", "gzip, br", "x-unknown"])
def test_other_content_encodings_get_415_naming_the_encoding(
    client: httpx.Client, doc: dict[str, Any], encoding: str
) -> None:
    content = zlib.compress(BODY) if encoding == "deflate" else BODY
    resp = client.post("/v1/predict", content=content, headers={"content-encoding": encoding})
    assert resp.status_code == 415, resp.text
    body = _assert_error_shape(doc, resp)
    assert repr(encoding) in body["error"] and "gzip" in body["error"]
    assert resp.headers["accept-encoding"] == "gzip"  # RFC 7694: what the server takes


def _peak_rss(server: ServerProcess) -> int:
    """The server process's peak resident memory (VmHWM), in bytes."""
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) * 1024


EXPECTED_RESPONSES = {
    ("/v1/predict", "post"): {"200", "400", "413", "415", "422", "500"},
    ("/v1/model", "get"): {"200"},
    ("/healthz", "get"): {"200"},
    ("/readyz", "get"): {"200", "503"},
    ("/metrics", "get"): {"200"},
    ("/v2", "get"): {"200"},
    ("/v2/health/live", "get"): {"200"},
    ("/v2/health/ready", "get"): {"200", "503"},
    ("/v2/models/{name}", "get"): {"200", "404"},
    ("/v2/models/{name}/versions/{version}", "get"): {"200", "404"},
    ("/v2/models/{name}/ready", "get"): {"200", "404", "503"},
    ("/v2/models/{name}/versions/{version}/ready", "get"): {"200", "404", "503"},
    ("/v2/models/{name}/infer", "post"): {"200", "400", "404", "413", "415", "500"},
    ("/v2/models/{name}/versions/{version}/infer", "post"): {
        "200",
        "400",
        "404",
        "413",
        "415",
        "500",
    },
}
V2_MODEL = "/v2/models/churn-classifier"


def _check_documented(doc: dict[str, Any], path: str, method: str, resp: httpx.Response) -> None:
    """`resp` has a documented status, a documented media type, and a conforming body."""
    responses = doc["paths"][path][method]["responses"]
    assert str(resp.status_code) in responses, (path, resp.status_code)
    content = responses[str(resp.status_code)]["content"]
    media = {key.split(";")[0].strip(): key for key in content}
    assert _media_type(resp) in media, (path, resp.headers["content-type"], list(content))
    documented = content[media[_media_type(resp)]]
    if _media_type(resp) == "application/json":
        _validator(doc, documented["schema"]).validate(resp.json())
        if "example" in documented:
            _validator(doc, documented["schema"]).validate(documented["example"])


def test_openapi_document_matches_every_route(
    client: httpx.Client, doc: dict[str, Any], project: Path
) -> None:
    operations = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert operations == set(EXPECTED_RESPONSES | MLFLOW_RESPONSES)
    for (path, method), statuses in (EXPECTED_RESPONSES | MLFLOW_RESPONSES).items():
        assert set(doc["paths"][path][method]["responses"]) == statuses, path

    for path in ("/v1/model", "/healthz", "/readyz", "/metrics"):
        resp = client.get(path)
        assert resp.status_code == 200
        _check_documented(doc, path, "get", resp)
    version = client.get("/v1/model").json()["version"]
    for path, template, status in (
        ("/v2", "/v2", 200),
        ("/v2/health/live", "/v2/health/live", 200),
        ("/v2/health/ready", "/v2/health/ready", 200),
        (V2_MODEL, "/v2/models/{name}", 200),
        (f"{V2_MODEL}/versions/{version}", "/v2/models/{name}/versions/{version}", 200),
        (f"{V2_MODEL}/ready", "/v2/models/{name}/ready", 200),
        ("/v2/models/other/ready", "/v2/models/{name}/ready", 404),
        (f"{V2_MODEL}/versions/v0/ready", "/v2/models/{name}/versions/{version}/ready", 404),
    ):
        resp = client.get(path)
        assert resp.status_code == status, (path, resp.text)
        _check_documented(doc, template, "get", resp)
    v2_request = doc["components"]["schemas"]["V2InferenceRequest"]["example"]
    for content, headers, status in (
        (json.dumps(v2_request).encode(), {}, 200),
        (b"{", {}, 400),
        (b" " * (MAX_BODY + 1), {}, 413),
        (b"{}", {"content-type": "text/plain"}, 415),
    ):
        resp = client.post(f"{V2_MODEL}/infer", content=content, headers=headers)
        assert resp.status_code == status, resp.text
        _check_documented(doc, "/v2/models/{name}/infer", "post", resp)

    model = doc["paths"]["/v1/model"]["get"]["responses"]["200"]["content"]["application/json"]
    assert model["example"] == client.get("/v1/model").json()  # the example is the real answer
    properties = doc["components"]["schemas"]["ModelInfo"]["properties"]
    assert set(client.get("/v1/model").json()) == set(properties)

    metrics = client.get("/metrics")  # Prometheus text format 0.0.4, which the parser reads
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert (
        "text/plain; version=0.0.4"
        in doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    )
    names = {family.name for family in text_string_to_metric_families(metrics.text)}
    assert {"gitml_http_requests", "gitml_rows_scored", "gitml_model_info"} <= names

    for content, headers, status in (
        (BODY, {"content-type": "application/json"}, 200),
        (b"{", {}, 400),
        (b" " * (MAX_BODY + 1), {}, 413),
        (BODY, {"content-type": "text/plain"}, 415),
        (json.dumps({"records": [GOOD | {"tenure": -4}]}).encode(), {}, 422),
    ):
        resp = client.post("/v1/predict", content=content, headers=headers)
        assert resp.status_code == status, resp.text
        _check_documented(doc, "/v1/predict", "post", resp)

    with _unready_server(project) as url:  # /readyz's 503, from a server that never started
        for path in ("/ping", "/health"):  # MLflow's health checks say the same
            resp = httpx.get(f"{url}{path}", timeout=30)
            assert resp.status_code == 503, path
            _check_documented(doc, path, "get", resp)
        resp = httpx.get(f"{url}/readyz", timeout=30)
        assert resp.status_code == 503
        _check_documented(doc, "/readyz", "get", resp)
        for path, template in (
            ("/v2/health/ready", "/v2/health/ready"),
            (f"{V2_MODEL}/ready", "/v2/models/{name}/ready"),
        ):
            resp = httpx.get(f"{url}{path}", timeout=30)
            assert resp.status_code == 503, resp.text
            _check_documented(doc, template, "get", resp)
        # a fault of the server's own (nothing scores yet) still answers with the error body
        resp = httpx.post(f"{url}/v1/predict", content=BODY, timeout=30)
        assert resp.status_code >= 500
        _assert_error_shape(doc, resp, request_id=None)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def test_docs_page_loads_everything_from_the_server(client: httpx.Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and _media_type(page) == "text/html"
    assert not re.search(r"(https?:)?//", page.text), page.text  # no URL of another host
    links = _Links()
    links.feed(page.text)
    assets = {url: client.get(url) for url in links.urls}
    assert {"text/css", "text/javascript", "image/png"} <= {_media_type(a) for a in assets.values()}
    for url, asset in assets.items():
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert "SwaggerUIBundle" in assets["/docs/swagger-ui-bundle.js"].text
    assert "url: '/openapi.json'" in page.text and client.get("/openapi.json").is_success
    assert '"validatorUrl": null' in page.text  # no call to Swagger's online validator


def test_explain_true_adds_additive_explanations_and_false_changes_nothing(
    client: httpx.Client, doc: dict[str, Any], project: Path
) -> None:
    records = [
        GOOD,
        GOOD | {"contract": "Month-to-month", "tenure": 2, "monthly_charges": 20.5},
        GOOD | {"internet_service": "No", "online_security": "No internet service"},
    ]
    body = json.dumps({"records": records}).encode()
    same_id = {"x-request-id": "explain-test"}
    plain = client.post("/v1/predict", content=body, headers=same_id)
    off = client.post("/v1/predict?explain=false", content=body, headers=same_id)
    assert plain.status_code == 200 and off.content == plain.content  # unchanged bytes
    resp = client.post("/v1/predict?explain=true", content=body)
    assert resp.status_code == 200, resp.text
    _check_documented(doc, "/v1/predict", "post", resp)
    signature = json.loads((project / "models/signature.json").read_text())
    inputs = [i["name"] for i in signature["inputs"]]
    for before, after in zip(plain.json()["predictions"], resp.json()["predictions"], strict=True):
        why = after.pop("explanation")
        assert after == before  # the prediction itself is unchanged
        assert why["output"] == "log_odds" and why["reference"] == "training_mean"
        assert why["baseline"] == signature["explanation"]["baseline"]
        assert list(why["contributions"]) == inputs
        assert abs(why["baseline"] + sum(why["contributions"].values()) - why["value"]) <= 1e-9
        assert abs(1 / (1 + math.exp(-why["value"])) - before["score"]) <= 1e-12
    assert client.get("/v1/model").json()["explanation"] == signature["explanation"]
    parameter = doc["paths"]["/v1/predict"]["post"]["parameters"][0]
    assert parameter["name"] == "explain" and parameter["schema"]["type"] == "boolean"
    assert "log_odds" in parameter["description"] and "baseline" in parameter["description"]
    for bad in ("maybe", "yes please", ""):
        resp = client.post("/v1/predict", params={"explain": bad}, content=body)
        assert resp.status_code == 422, bad
        found = _assert_error_shape(doc, resp)["problems"][0]
        assert (found["field"], found["rule"]) == ("explain", "query_parameter")
        assert f"query parameter 'explain' must be true or false (got {bad!r})" == found["reason"]


def test_schemathesis_finds_no_failures(server: ServerProcess) -> None:
    """Stateless schemathesis against the live server: valid requests for every operation,
    and schema-breaking requests for every POST, with the four conformance checks."""
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
        content_type_conformance,
    ]
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures: list[str] = []
    runs: list[tuple[str, str]] = []
    calls: dict[str, int] = {}
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if operation.method.lower() == "post":
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @settings(
                max_examples=_EXAMPLES.get(operation.label, 10),
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                label = case.operation.label
                calls[label] = calls.get(label, 0) + 1
                if "explain" in (case.query or {}):
                    calls["explain"] = calls.get("explain", 0) + 1
                case.call_and_validate(base_url=server.url, checks=checks, timeout=30)

            try:
                run()
            except Exception as err:  # each operation's failure, reported together
                failures.append(f"{operation.label} ({mode.value}): {err}")
            runs.append((operation.label, mode.value))
    elapsed = time.monotonic() - started
    operations = [method for path in schema.raw_schema["paths"].values() for method in path]
    assert len(runs) == len(operations) + operations.count("post"), runs  # and negative bodies
    assert calls["POST /v1/predict"] >= 80, calls  # the examples were really sent
    assert calls.get("explain", 0) >= 10, calls  # the explain parameter too
    assert calls["POST /v2/models/{name}/infer"] >= 20, calls
    assert not failures, "\n\n".join(failures)
    assert calls["POST /invocations"] >= 10, calls  # MLflow's scoring protocol was covered
    assert elapsed < 120, elapsed


_EXAMPLES = {  # per operation and generation mode; GETs without parameters need few
    "POST /v1/predict": 50,
    "POST /invocations": 50,
    "POST /v2/models/{name}/infer": 15,
    "POST /v2/models/{name}/versions/{version}/infer": 5,
}


@contextmanager
def _unready_server(project: Path) -> Iterator[str]:
    """The app under a real uvicorn on 127.0.0.1 with its lifespan off: it never becomes
    ready, like a server that is still starting (or already stopping)."""
    from gitml.config.compose import load_params
    from gitml.serve.app import create_app
    from gitml.serve.bundle import load_project_model

    params = load_params(project / "params.yaml").serve
    app = create_app(load_project_model(project), params, threshold=0.5)
    with serve_in_thread(app, lifespan="off") as url:
        yield url
