"""Open Inference Protocol V2 tensors: requests into records, outputs into responses, metadata
(`v2_tensors`, `v2_binary`, `v2_responses`, `v2_metadata`)."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from gitml.errors import InputError
from gitml.serve.errors import Refusal
from gitml.serve.v2_binary import encode_bytes
from gitml.serve.v2_metadata import model_metadata
from gitml.serve.v2_responses import encode_response, output_tensors
from gitml.serve.v2_tensors import (
    InferRequest,
    RequestedOutput,
    accepted_datatypes,
    parse_infer_request,
)
from tests.unit.test_serve_inputs import GOOD, SCHEMA, SIGNATURE

RULES = {r.name: r for r in SCHEMA.fields}
OTHER = GOOD | {"tenure": 3, "contract": "Month-to-month", "total_charges": None, "female": 1}
ROWS = [GOOD, OTHER]
OUTPUTS = ["score", "label"]


def _datatype(name: str) -> str:
    return {"category": "BYTES", "int": "INT64", "float": "FP64"}[RULES[name].type]


def _column(name: str, rows: list[dict[str, Any]]) -> list[Any]:
    return [row[name] for row in rows]


def json_request(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A V2 JSON request of `rows`, one input per column (null stays null)."""
    inputs = [
        {"name": n, "datatype": _datatype(n), "shape": [len(rows)], "data": _column(n, rows)}
        for n in SCHEMA.names
    ]
    return {"inputs": inputs, **extra}


def binary_request(rows: list[dict[str, Any]], **extra: Any) -> tuple[bytes, str]:
    """The same request with every input as binary tensor data (missing numbers: NaN), and
    its Inference-Header-Content-Length."""
    inputs, blobs = [], []
    for name in SCHEMA.names:
        values = _column(name, rows)
        datatype = _datatype(name)
        if datatype == "BYTES":
            raw = encode_bytes(values)
        else:
            dtype = "<i8" if datatype == "INT64" else "<f8"
            raw = np.array([np.nan if v is None else v for v in values], dtype=dtype).tobytes()
        blobs.append(raw)
        inputs.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": [len(rows)],
                "parameters": {"binary_data_size": len(raw)},
            }
        )
    header = json.dumps({"inputs": inputs, **extra}).encode()
    return header + b"".join(blobs), str(len(header))


def parse(body: Any, header_length: str | None = None, **options: Any) -> InferRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    options = {"output_names": OUTPUTS, "max_records": 100} | options
    return parse_infer_request(raw, header_length, SCHEMA, **options)


def refusal(body: Any, header_length: str | None = None, **options: Any) -> Refusal:
    with pytest.raises(Refusal) as info:
        parse(body, header_length, **options)
    return info.value


def test_json_and_binary_requests_become_the_records_v1_takes() -> None:
    from_json = parse(json_request(ROWS))
    assert from_json.records == ROWS
    assert from_json.outputs == () and not from_json.binary_output
    body, length = binary_request(ROWS)
    assert parse(body, length).records == ROWS  # NaN is missing, as JSON null
    columns = SCHEMA.check_records(from_json.records)
    assert math.isnan(columns.values["total_charges"][1])


def test_nested_data_ints_as_floats_bools_and_nan_are_taken() -> None:
    request = json_request(ROWS)
    for item in request["inputs"]:
        item["shape"] = [2, 1]
        item["data"] = [[v] for v in item["data"]]  # row-major nested
    request["inputs"][0] |= {"datatype": "BOOL", "data": [[False], [True]]}  # female, a flag
    request["inputs"][4] |= {"datatype": "FP32"}  # tenure
    assert parse(request).records == ROWS
    nan = json.dumps(json_request(ROWS)).replace("null", "NaN").encode()
    assert parse(nan).records == ROWS  # a NaN literal (tritonclient's JSON) is missing too


def test_bool_is_taken_by_flags_only() -> None:
    assert "BOOL" in accepted_datatypes(RULES["female"])
    assert "BOOL" not in accepted_datatypes(RULES["tenure"])
    assert "BOOL" not in accepted_datatypes(RULES["monthly_charges"])
    assert accepted_datatypes(RULES["contract"]) == ("BYTES",)
    raw = np.array([False, True]).tobytes()
    header = json_request(ROWS)
    header["inputs"][0] = {
        "name": "female",
        "datatype": "BOOL",
        "shape": [2],
        "parameters": {"binary_data_size": 2},
    }
    encoded = json.dumps(header).encode()
    assert parse(encoded + raw, str(len(encoded))).records == ROWS


def _with_input(name: str, **changes: Any) -> dict[str, Any]:
    request = json_request(ROWS)
    for item in request["inputs"]:
        if item["name"] == name:
            item.update(changes)
    return request


def _without(key: str, name: str = "tenure") -> dict[str, Any]:
    request = json_request(ROWS)
    for item in request["inputs"]:
        if item["name"] == name:
            del item[key]
    return request


@pytest.mark.parametrize(
    ("body", "status", "field", "rule", "words"),
    [
        ([1, 2], 400, "body", "type", "JSON object"),
        (b"{", 400, "body", "json", "malformed JSON"),
        (b"", 400, "body", "json", "empty body"),
        (b'{"inputs": "\xff"}', 400, "body", "json", "UTF-8"),
        (b'{"inputs": ["\\ud800"]}', 400, "body", "unicode", "lone surrogate"),
        ({}, 400, "inputs", "missing", "one per input"),
        ({"inputs": []}, 400, "inputs", "min_items", "tenure"),
        ({"inputs": [1]}, 400, "inputs", "type", "inputs[0]"),
        ({"inputs": [{"datatype": "FP64"}]}, 400, "inputs", "missing", "no name"),
        ({"inputs": json_request(ROWS)["inputs"], "id": 7}, 400, "id", "type", "string"),
        (
            _with_input("contract", datatype="FP64", data=[1.0, 2.0]),
            400,
            "contract",
            "datatype",
            "datatype 'FP64', but the model's column 'contract' is a category (text): send BYTES",
        ),
        (
            _with_input("tenure", datatype="BYTES", data=["1", "2"]),
            400,
            "tenure",
            "datatype",
            "send INT64 (or INT8,",
        ),
        (_with_input("tenure", datatype="BOOL"), 400, "tenure", "datatype", "BOOL"),
        (_with_input("tenure", datatype="BF16"), 400, "tenure", "datatype", "unknown datatype"),
        (_without("datatype"), 400, "tenure", "datatype", "no datatype"),
        (_with_input("tenure", shape=[2, 3]), 400, "tenure", "shape", "[n] or [n, 1]"),
        (_with_input("tenure", shape=[-2]), 400, "tenure", "shape", "[n] or [n, 1]"),
        (_with_input("tenure", shape="2"), 400, "tenure", "shape", "[n] or [n, 1]"),
        (_with_input("tenure", shape=[1], data=[5]), 400, "tenure", "shape", "different numbers"),
        (_with_input("tenure", data=[5]), 400, "tenure", "shape", "needs 2 elements"),
        (_with_input("tenure", data=[[5], [6]]), 400, "tenure", "shape", "nested"),
        (_without("data"), 400, "tenure", "missing", "no data"),
        (_with_input("tenure", data={"a": 1}), 400, "tenure", "type", "no data"),
        (
            _with_input("tenure", parameters={"binary_data_size": 16}),
            400,
            "tenure",
            "binary",
            "both data and binary_data_size",
        ),
        (
            {"inputs": [*json_request(ROWS)["inputs"], json_request(ROWS)["inputs"][0]]},
            400,
            "female",
            "duplicate",
            "twice",
        ),
        (
            {
                "inputs": [
                    *json_request(ROWS)["inputs"],
                    {"name": "x", "datatype": "FP64", "shape": [2], "data": [1, 2]},
                ]
            },
            400,
            "x",
            "unknown_field",
            "is not an input of the model",
        ),
        (json_request([GOOD] * 101), 413, "records", "max_items", "at most 100"),
        (
            json_request(ROWS, outputs=[{"name": "proba"}]),
            400,
            "outputs",
            "unknown_output",
            "score, label",
        ),
        (
            json_request(ROWS, outputs=[{"name": "score"}, {"name": "score"}]),
            400,
            "outputs",
            "duplicate",
            "twice",
        ),
        (
            json_request(ROWS, outputs=[{"name": "label", "parameters": {"classification": 2}}]),
            400,
            "outputs",
            "unsupported",
            "classification",
        ),
        (
            _with_input(
                "tenure", parameters={"shared_memory_region": "r", "shared_memory_byte_size": 16}
            ),
            400,
            "tenure",
            "unsupported",
            "shared-memory extensions are not supported",
        ),
        (
            json_request(
                ROWS, outputs=[{"name": "score", "parameters": {"shared_memory_region": "r"}}]
            ),
            400,
            "outputs",
            "unsupported",
            "shared-memory",
        ),
        (json_request(ROWS, parameters=[]), 400, "parameters", "type", "JSON object"),
        (
            json_request(ROWS, parameters={"binary_data_output": "yes"}),
            400,
            "parameters",
            "type",
            "true or false",
        ),
    ],
)
def test_every_tensor_refusal_names_the_input_and_rule(
    body: Any, status: int, field: str, rule: str, words: str
) -> None:
    found = refusal(body)
    assert (found.status, found.problem["field"], found.problem["rule"]) == (status, field, rule)
    assert words in str(found), str(found)


def test_undeclared_inputs_are_counted_when_the_policy_accepts_them() -> None:
    extra = {"name": "x", "datatype": "FP64", "shape": [2], "data": [1, 2]}
    request = {"inputs": [*json_request(ROWS)["inputs"], extra]}
    parsed = parse(request, extra_fields="accept")
    assert parsed.records == ROWS and parsed.extra_values == 2


def test_missing_columns_and_bad_values_are_left_to_the_input_contract() -> None:
    request = json_request(ROWS)
    request["inputs"] = [i for i in request["inputs"] if i["name"] != "tenure"]
    request["inputs"][-1]["data"] = [5.0, -1.0]  # total_charges below its minimum
    records = parse(request).records
    with pytest.raises(InputError) as info:
        SCHEMA.check_records(records)
    v1 = [{k: v for k, v in row.items() if k != "tenure"} for row in ROWS]
    v1[1]["total_charges"] = -1.0
    v1[0]["total_charges"] = 5.0
    with pytest.raises(InputError) as over_v1:
        SCHEMA.check_records(v1)
    assert info.value.problems == over_v1.value.problems  # the same problems as /v1
    assert {(p["field"], p["rule"]) for p in info.value.problems} == {
        ("tenure", "missing"),
        ("total_charges", "min"),
    }


def _binary_case(mutate: Any) -> tuple[bytes, str | None]:
    body, length = binary_request(ROWS)
    return mutate(body, length)


def _header(body: bytes, length: str) -> dict[str, Any]:
    return json.loads(body[: int(length)])


def _rebuild(header: dict[str, Any], blobs: bytes) -> tuple[bytes, str]:
    encoded = json.dumps(header).encode()
    return encoded + blobs, str(len(encoded))


def _grow_contract(body: bytes, length: str) -> tuple[bytes, str]:
    """Declare the last BYTES input (payment_method) one byte longer than its data."""
    header = _header(body, length)
    header["inputs"][16]["parameters"]["binary_data_size"] += 1
    return _rebuild(header, body[int(length) :])


def _bytes_input(raw: bytes) -> tuple[bytes, str]:
    request = json_request(ROWS)
    for item in request["inputs"]:
        if item["name"] == "contract":
            del item["data"]
            item["parameters"] = {"binary_data_size": len(raw)}
    return _rebuild(request, raw)


@pytest.mark.parametrize(
    ("mutate", "field", "rule", "words"),
    [
        (lambda b, n: (b, str(len(b) + 1)), "inference-header-content-length", "binary", "only"),
        (lambda b, n: (b, "12a"), "inference-header-content-length", "binary", "not a number"),
        (lambda b, n: (b + b"\0", n), "body", "binary", "add up to"),
        (lambda b, n: (b[:-1], n), "total_charges", "binary", "past the end"),
        (_grow_contract, "payment_method", "binary", "bytes are left"),
        (
            lambda b, n: _bytes_input(struct.pack("<I", 8) + b"One year"),
            "contract",
            "binary",
            "ends before element 1",
        ),
        (
            lambda b, n: _bytes_input(struct.pack("<I", 8) + b"One year" + struct.pack("<I", 99)),
            "contract",
            "binary",
            "element 1 declares 99 bytes",
        ),
        (
            lambda b, n: _bytes_input(encode_bytes(["One year"]) + b"\x03\0\0\0\xff\xfe\xfd"),
            "contract",
            "unicode",
            "element 1 is not valid UTF-8",
        ),
    ],
)
def test_malformed_binary_data_is_refused_naming_the_input(
    mutate: Any, field: str, rule: str, words: str
) -> None:
    body, length = _binary_case(mutate)
    found = refusal(body, length)
    assert (found.status, found.problem["field"], found.problem["rule"]) == (400, field, rule)
    assert words in str(found), str(found)


def test_numeric_binary_size_must_fit_the_shape() -> None:
    body, length = binary_request(ROWS)
    header = _header(body, length)
    blobs = body[int(length) :]
    tenure = header["inputs"][4]
    tenure["datatype"] = "INT32"  # 2 x 4 bytes, but 16 bytes sent
    found = refusal(*_rebuild(header, blobs))
    assert found.problem["field"] == "tenure" and "take 8 bytes" in str(found)


# -- outputs --------------------------------------------------------------------------------


@dataclass
class Model:
    """What the output encoders read of a served model (gitml.serve.outputs.Served)."""

    task: str
    classes: list[str] = field(default_factory=list)
    positive_class: str = "Yes"
    negative_class: str = "No"
    signature: dict[str, Any] = field(default_factory=lambda: {"output": {"target": "churn"}})


BINARY = Model("binary", ["No", "Yes"])
MULTICLASS = Model("multiclass", ["a", "b", "c"])
REGRESSION = Model("regression")


def decode(body: bytes, header_length: int | None) -> dict[str, Any]:
    """A V2 response with every output's data in JSON (binary outputs decoded per the
    extension: numbers little-endian, BYTES length-prefixed)."""
    if header_length is None:
        return json.loads(body)
    response = json.loads(body[:header_length])
    position = header_length
    for output in response["outputs"]:
        size = output.get("parameters", {}).pop("binary_data_size", None)
        if size is None:
            continue
        raw = body[position : position + size]
        position += size
        if output["datatype"] == "BYTES":
            texts, k = [], 0
            while k < len(raw):
                (length,) = struct.unpack_from("<I", raw, k)
                texts.append(raw[k + 4 : k + 4 + length].decode())
                k += 4 + length
            output["data"] = texts
        else:
            output["data"] = np.frombuffer(raw, "<f8").tolist()
        if not output["parameters"]:
            del output["parameters"]
    assert position == len(body)
    return response


def _respond(model: Model, outputs: np.ndarray, request: InferRequest) -> dict[str, Any]:
    body, length = encode_response(
        model, outputs, 0.5, request, model_name="m", model_version="v1", response_id="r1"
    )
    if length is None:
        assert body == json.dumps(json.loads(body), separators=(",", ":")).encode()
    return decode(body, length)


def _request(*outputs: RequestedOutput, binary: bool = False) -> InferRequest:
    return InferRequest("r1", [], tuple(outputs), binary)


@pytest.mark.parametrize(
    ("model", "outputs", "expected"),
    [
        (
            BINARY,
            np.array([0.25, 0.75]),
            [("score", "FP64", [2], [0.25, 0.75]), ("label", "BYTES", [2], ["No", "Yes"])],
        ),
        (
            MULTICLASS,
            np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]),
            [
                ("label", "BYTES", [2], ["b", "a"]),
                ("probabilities", "FP64", [2, 3], [0.2, 0.5, 0.3, 0.6, 0.1, 0.3]),
                ("score:a", "FP64", [2], [0.2, 0.6]),
                ("score:b", "FP64", [2], [0.5, 0.1]),
                ("score:c", "FP64", [2], [0.3, 0.3]),
            ],
        ),
        (REGRESSION, np.array([1.5, -2.0]), [("value", "FP64", [2], [1.5, -2.0])]),
    ],
)
def test_every_output_by_task_in_json_and_binary(
    model: Model, outputs: np.ndarray, expected: list[tuple[str, str, list[int], list[Any]]]
) -> None:
    assert [(n, d) for n, d, _, _ in expected] == output_tensors(model)
    want = [{"name": n, "datatype": d, "shape": s, "data": v} for n, d, s, v in expected]
    for binary in (False, True):
        response = _respond(model, outputs, _request(binary=binary))
        assert response == {"model_name": "m", "model_version": "v1", "id": "r1", "outputs": want}


def test_requested_outputs_choose_names_order_and_binary_each() -> None:
    request = _request(RequestedOutput("label", True), RequestedOutput("score", False))
    body, length = encode_response(
        BINARY,
        np.array([0.5, 0.1]),
        0.5,
        request,
        model_name="m",
        model_version="v1",
        response_id="r1",
    )
    assert length is not None
    header = json.loads(body[:length])
    assert [o["name"] for o in header["outputs"]] == ["label", "score"]
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 4 + 3 + 4 + 2}
    assert header["outputs"][1]["data"] == [0.5, 0.1]
    assert body[length:] == encode_bytes(["Yes", "No"])  # the threshold is inclusive


def test_encoded_bytes_are_length_prefixed_utf8() -> None:
    assert encode_bytes(["é", ""]) == b"\x02\0\0\0\xc3\xa9\x00\0\0\0"


def test_metadata_is_the_signature() -> None:
    meta = model_metadata(BINARY, SCHEMA, name="churn", versions=["v1", "v2"], threshold=0.4)
    assert meta["name"] == "churn" and meta["versions"] == ["v1", "v2"]
    assert [i["name"] for i in meta["inputs"]] == [i["name"] for i in SIGNATURE["inputs"]]
    by_name = {i["name"]: i for i in meta["inputs"]}
    assert by_name["contract"]["datatype"] == "BYTES"
    assert by_name["contract"]["parameters"]["categories"] == list(RULES["contract"].categories)
    assert by_name["tenure"] | {"parameters": None} == {
        "name": "tenure",
        "datatype": "INT64",
        "shape": [-1],
        "parameters": None,
    }
    assert by_name["total_charges"]["parameters"]["nullable"] is True
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("score", "FP64", [-1]),
        ("label", "BYTES", [-1]),
    ]
    assert "score >= 0.4" in meta["outputs"][1]["parameters"]["description"]
    multiclass = model_metadata(MULTICLASS, SCHEMA, name="m", versions=["v"], threshold=0.5)
    assert multiclass["outputs"][1]["shape"] == [-1, 3]
    assert multiclass["outputs"][1]["parameters"]["classes"] == ["a", "b", "c"]
