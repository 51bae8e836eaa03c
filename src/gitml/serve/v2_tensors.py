"""The Open Inference Protocol V2's tensors: an infer request into records, checked against
a model's signature. Pure: bytes in, values out (`v2_responses` encodes the answer,
`v2_metadata` describes the model).

A V2 request carries one input tensor per signature column, named as the column, of shape
`[n]` or `[n, 1]`, with its data in JSON (flat or nested, row-major) or, with Triton's binary
tensor data extension, as raw little-endian bytes after a JSON header of
`Inference-Header-Content-Length` bytes (`v2_binary` reads the framing). This module checks
the tensors themselves (names, datatypes, shapes) and turns them into JSON-like records; the
values are then checked by the one input contract (`ServeContext.check`), so every value
problem is reported exactly as over `/v1`.

Two choices of the wire format, documented in docs/serving-protocols.md:
- NaN in a numeric tensor is a missing value (JSON `null` too): a tensor has no other way to
  say "missing", and numpy and pandas clients send missing numbers as NaN. A nullable column
  takes it; any other column refuses it as `null`. Infinity stays a number (`finite`).
- BOOL is accepted for an integer column whose allowed values are 0 and 1 (a flag): a
  client's boolean column is such a flag, and true/false cannot mean anything else there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gitml.serve.errors import Refusal
from gitml.serve.inputs import FieldRule, InputSchema, Policy
from gitml.serve.request_body import parse_json, too_many_records
from gitml.serve.v2_binary import NUMPY_TYPES, read_bytes, read_numbers, split_body

INTEGER_TYPES = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
FLOAT_TYPES = ("FP16", "FP32", "FP64")
_NUMBERS = (*INTEGER_TYPES, *FLOAT_TYPES)
_NUMBER_SET = frozenset(_NUMBERS)
_SHOWN = 60  # characters of a client's name echoed in a message


@dataclass(frozen=True)
class RequestedOutput:
    """An output the request asks for, and whether its data comes back as binary."""

    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """A V2 infer request, its tensors turned into records (not yet checked)."""

    id: str | None
    records: list[dict[str, Any]]
    outputs: tuple[RequestedOutput, ...]  # empty: every output
    binary_output: bool  # `parameters.binary_data_output`: the default of every output
    extra_values: int = 0  # values of undeclared inputs taken by `serve.extra_fields: accept`


# -- datatypes --------------------------------------------------------------------------------


def is_flag(rule: FieldRule) -> bool:
    """An integer column that only takes 0 and 1, which a BOOL tensor can fill."""
    return rule.type == "int" and rule.allowed is not None and set(rule.allowed) <= {0.0, 1.0}


def declared_datatype(rule: FieldRule) -> str:
    """The datatype the metadata declares for `rule`'s input."""
    return {"category": "BYTES", "int": "INT64", "float": "FP64"}[rule.type]


def accepted_datatypes(rule: FieldRule) -> tuple[str, ...]:
    """Every datatype an input of `rule`'s column may arrive as: BYTES for a category; any
    integer or floating-point type for a number (the values are then checked as numbers:
    2.5 in an int column is refused as not whole); BOOL too for a flag (`is_flag`)."""
    if rule.type == "category":
        return ("BYTES",)
    return ("BOOL", *_NUMBERS) if is_flag(rule) else _NUMBERS


def _takes(rule: FieldRule, datatype: str) -> bool:
    """`datatype in accepted_datatypes(rule)`, without building the tuple (per input)."""
    if rule.type == "category":
        return datatype == "BYTES"
    return datatype in _NUMBER_SET or (datatype == "BOOL" and is_flag(rule))


# -- requests -------------------------------------------------------------------------------


def parse_infer_request(
    body: bytes,
    header_length: str | None,
    schema: InputSchema,
    *,
    output_names: Sequence[str],
    max_records: int,
    extra_fields: Policy = "reject",
) -> InferRequest:
    """A V2 infer request's records and requested outputs, or a `Refusal` naming the input
    (400; 413 for more than `max_records` rows)."""
    header, binary = split_body(body, header_length)
    payload = parse_json(header)
    if type(payload) is not dict:
        raise Refusal(400, "body", "type", 'expected a JSON object {"inputs": [...]}')
    request_id = payload.get("id")
    if request_id is not None and type(request_id) is not str:
        raise Refusal(400, "id", "type", "the request's id must be a string")
    parameters = _check_parameters(payload.get("parameters"), "parameters")
    binary_output = _flag(parameters, "binary_data_output", "parameters")
    outputs = _read_requested_outputs(payload.get("outputs"), output_names, binary_output)
    tensors = payload.get("inputs")
    if type(tensors) is not list:
        raise Refusal(
            400,
            "inputs",
            "missing" if tensors is None else "type",
            'expected "inputs": a list of tensors, one per input of the model: '
            + ", ".join(schema.names),
        )
    if not tensors:
        raise Refusal(
            400,
            "inputs",
            "min_items",
            "no inputs: the model takes one input per column: " + ", ".join(schema.names),
        )

    rules = {r.name: r for r in schema.fields}
    found = [_read_tensor(item, k) for k, item in enumerate(tensors)]
    seen: set[str] = set()
    for tensor in found:
        if tensor.name in seen:
            raise Refusal(
                400, tensor.name, "duplicate", f"input {_shown(tensor.name)} is given twice"
            )
        seen.add(tensor.name)
        if tensor.name not in rules and extra_fields == "reject":
            raise Refusal(
                400,
                tensor.name,
                "unknown_field",
                f"input {_shown(tensor.name)} is not an input of the model; its inputs: "
                + ", ".join(schema.names),
            )
    rows = {t.name: t.shape[0] for t in found}
    n = found[0].shape[0]
    if any(count != n for count in rows.values()):
        counts = ", ".join(f"{name!r}: {count}" for name, count in list(rows.items())[:5])
        raise Refusal(
            400,
            next(name for name, count in rows.items() if count != n),
            "shape",
            f"the inputs hold different numbers of rows ({counts}); every input is one column "
            "of the same n rows",
        )
    if n > max_records:
        raise too_many_records(n, max_records)

    columns: dict[str, list[Any]] = {}
    offset = 0
    extra = 0
    for tensor in found:
        raw: bytes | None = None
        if tensor.binary_size is not None:
            end = offset + tensor.binary_size
            if end > len(binary):
                raise Refusal(
                    400,
                    tensor.name,
                    "binary",
                    f"input {_shown(tensor.name)}: binary_data_size {tensor.binary_size} "
                    f"runs past the end of the binary data ({len(binary)} bytes after the "
                    f"JSON header, {offset} taken by the inputs before it)",
                )
            raw = binary[offset:end]
            offset = end
        rule = rules.get(tensor.name)
        if rule is None:  # accepted by policy, then ignored
            extra += n
            continue
        _check_datatype(tensor, rule)
        count = n  # shape [n] or [n, 1]
        if raw is not None:
            columns[rule.name] = _read_binary_values(raw, tensor, count)
        else:
            columns[rule.name] = _read_json_values(tensor, count)
    if offset != len(binary):
        raise Refusal(
            400,
            "body",
            "binary",
            f"{len(binary)} bytes of binary data follow the JSON header, but the inputs' "
            f"binary_data_size add up to {offset}",
        )
    names = list(columns)
    records = [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
    if not names:  # only undeclared inputs: n records without fields, for the contract to name
        records = [{} for _ in range(n)]
    return InferRequest(request_id, records, outputs, binary_output, extra)


@dataclass(slots=True)
class _Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: Any
    binary_size: int | None


def _read_tensor(item: Any, position: int) -> _Tensor:
    if type(item) is not dict:
        raise Refusal(400, "inputs", "type", f"inputs[{position}] must be a JSON object")
    name = item.get("name")
    if type(name) is not str:
        raise Refusal(400, "inputs", "missing", f"inputs[{position}] has no name (a string)")
    datatype = item.get("datatype")
    if type(datatype) is not str:
        raise Refusal(
            400, name, "datatype", f"input {_shown(name)} has no datatype (e.g. FP64, BYTES)"
        )
    shape = item.get("shape")
    if not (type(shape) is list and len(shape) == 1 and type(shape[0]) is int and shape[0] >= 0):
        shape = _checked_shape(name, shape)  # the common case, [n], is checked inline
    parameters = item.get("parameters")
    size = None
    if parameters is not None:
        parameters = _check_parameters(parameters, f"input {_shown(name)}: parameters")
        _refuse_shared_memory(parameters, name, f"input {_shown(name)}")
        size = parameters.get("binary_data_size")
    data = item.get("data")
    if size is not None:
        if type(size) is not int or size < 0:
            raise Refusal(
                400,
                name,
                "binary",
                f"input {_shown(name)}: binary_data_size must be a number of bytes",
            )
        if "data" in item:
            raise Refusal(
                400, name, "binary", f"input {_shown(name)} has both data and binary_data_size"
            )
    elif type(data) is not list:
        raise Refusal(
            400,
            name,
            "missing" if data is None else "type",
            f"input {_shown(name)} has no data (a JSON list, or binary_data_size with the "
            "binary tensor data extension)",
        )
    return _Tensor(name, datatype if datatype.isupper() else datatype.upper(), shape, data, size)


def _checked_shape(name: str, shape: Any) -> list[int]:
    if (
        type(shape) is not list
        or not 1 <= len(shape) <= 2
        or any(type(d) is not int or d < 0 for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise Refusal(
            400,
            name,
            "shape",
            f"input {_shown(name)}: shape {_shown(shape)} is not [n] or [n, 1]: each input is "
            "one column of n rows",
        )
    return shape


def _check_datatype(tensor: _Tensor, rule: FieldRule) -> None:
    if _takes(rule, tensor.datatype):
        return
    accepted = accepted_datatypes(rule)
    what = {"category": "a category (text)", "int": "an integer", "float": "a number"}[rule.type]
    known = "" if tensor.datatype in NUMPY_TYPES or tensor.datatype == "BYTES" else "unknown "
    others = [d for d in accepted if d != declared_datatype(rule)]
    also = f" (or {', '.join(others)})" if others else ""
    raise Refusal(
        400,
        rule.name,
        "datatype",
        f"input {rule.name!r} has {known}datatype {_shown(tensor.datatype)}, but the model's "
        f"column {rule.name!r} is {what}: send {declared_datatype(rule)}{also}",
    )


def _read_json_values(tensor: _Tensor, count: int) -> list[Any]:
    data = tensor.data
    if len(data) == count and not any(type(v) is list for v in data):
        flat = data
    elif (
        len(tensor.shape) == 2
        and len(data) == count
        and all(type(v) is list and len(v) == 1 and type(v[0]) is not list for v in data)
    ):
        flat = [v[0] for v in data]  # nested, row-major: [[a], [b], ...]
    else:
        raise Refusal(
            400,
            tensor.name,
            "shape",
            f"input {tensor.name!r}: shape {list(tensor.shape)} needs {count} elements "
            f"(flat, or nested row-major), but data has {len(data)} "
            f"{'nested ' if any(type(v) is list for v in data) else ''}items",
        )
    if tensor.datatype == "BOOL":  # a flag: true/false are 1/0 (anything else: the contract's)
        return [int(v) if type(v) is bool else v for v in flat]
    if tensor.datatype != "BYTES":  # NaN is missing (the module docstring says why)
        return [None if type(v) is float and math.isnan(v) else v for v in flat]
    return flat


def _read_binary_values(raw: bytes, tensor: _Tensor, count: int) -> list[Any]:
    if tensor.datatype == "BYTES":
        return read_bytes(raw, tensor.name, count)
    values = read_numbers(raw, tensor.name, tensor.datatype, count)
    if tensor.datatype == "BOOL":
        return values.astype(np.int64).tolist()
    if values.dtype.kind == "f":  # NaN is missing (the module docstring says why)
        return [None if v != v else v for v in values.astype(np.float64).tolist()]
    return values.tolist()


def _check_parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise Refusal(400, "parameters", "type", f"{where} must be a JSON object")
    return value


def _refuse_shared_memory(parameters: dict[str, Any], field: str, where: str) -> None:
    if "shared_memory_region" in parameters:
        raise Refusal(
            400,
            field,
            "unsupported",
            f"{where}: the shared-memory extensions are not supported; send the data in the "
            "request (JSON, or binary tensor data)",
        )


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if type(value) is not bool:
        raise Refusal(400, "parameters", "type", f"{where}: {key} must be true or false")
    return value


def _read_requested_outputs(
    value: Any, names: Sequence[str], binary_output: bool
) -> tuple[RequestedOutput, ...]:
    if value is None:
        return ()
    if type(value) is not list:
        raise Refusal(400, "outputs", "type", "outputs must be a list of {name, parameters}")
    requested: list[RequestedOutput] = []
    for position, item in enumerate(value):
        name = item.get("name") if type(item) is dict else None
        if type(name) is not str:
            raise Refusal(400, "outputs", "type", f"outputs[{position}] has no name (a string)")
        if name not in names:
            raise Refusal(
                400,
                "outputs",
                "unknown_output",
                f"output {_shown(name)} is not an output of the model; its outputs: "
                + ", ".join(names),
            )
        if any(r.name == name for r in requested):
            raise Refusal(400, "outputs", "duplicate", f"output {name!r} is requested twice")
        parameters = _check_parameters(item.get("parameters"), f"output {name!r}: parameters")
        if parameters.get("classification"):
            raise Refusal(
                400,
                "outputs",
                "unsupported",
                f"output {name!r}: the classification extension is not supported; "
                "ask for 'label' and the class probabilities instead",
            )
        _refuse_shared_memory(parameters, "outputs", f"output {name!r}")
        binary = _flag(parameters, "binary_data", f"output {name!r}: parameters")
        requested.append(
            RequestedOutput(name, binary if "binary_data" in parameters else binary_output)
        )
    return tuple(requested)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
