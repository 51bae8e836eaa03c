"""MLflow scoring-protocol bodies: every form gives the records `/v1/predict` takes, and every
malformed body is refused naming what is wrong."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitml.errors import InputError
from gitml.serve.errors import Refusal
from gitml.serve.mlflow_inputs import media_type_of, parse_invocation
from tests.unit.test_serve_inputs import GOOD, SCHEMA

NAMES = list(GOOD)
OTHER = GOOD | {"tenure": 2, "contract": "Month-to-month", "total_charges": None}
ROWS = [GOOD, OTHER]


def _json(payload: Any) -> bytes:
    return json.dumps(payload).encode()  # NaN and Infinity as pandas' json.dumps writes them


def _csv(rows: list[dict[str, Any]], *, bom: bool = False, newline: str = "\n") -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=NAMES, lineterminator=newline)
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return (("\ufeff" if bom else "") + out.getvalue()).encode()


def _parse(body: bytes, media_type: str = "application/json", max_records: int = 10) -> Any:
    return parse_invocation(body, media_type, max_records=max_records)


def _refusal(body: bytes, media_type: str = "application/json", **kw: Any) -> dict[str, Any]:
    with pytest.raises(Refusal) as caught:
        _parse(body, media_type, **kw)
    return {"status": caught.value.status, **caught.value.problem}


def _columns(records: list[Any]) -> dict[str, list[Any]]:
    return {name: [r[name] for r in records] for name in NAMES}


FORMS = {
    "dataframe_split": {
        "dataframe_split": {
            "columns": NAMES,
            "data": [[r[n] for n in NAMES] for r in ROWS],
            "index": [7, 8],
        }
    },
    "dataframe_records": {"dataframe_records": ROWS},
    "instances, records": {"instances": ROWS},
    "inputs, records": {"inputs": ROWS},
    "inputs, columns": {"inputs": _columns(ROWS)},
    "instances, columns": {"instances": _columns(ROWS)},
    "with empty params": {"inputs": ROWS, "params": {}},
    "with null params": {"dataframe_records": ROWS, "params": None},
}


@pytest.mark.parametrize("payload", FORMS.values(), ids=FORMS.keys())
def test_every_json_form_gives_the_records(payload: dict[str, Any]) -> None:
    assert _parse(_json(payload)) == ROWS


def test_csv_gives_text_records_that_the_input_rules_read_as_gitml_predict_does() -> None:
    expected = SCHEMA.check_records(ROWS)
    for body in (_csv(ROWS), _csv(ROWS, bom=True), _csv(ROWS, newline="\r\n")):
        records = _parse(body, "text/csv")
        assert records[0]["monthly_charges"] == "100.35" and records[1]["total_charges"] == ""
        columns = SCHEMA.check_records(records)  # "100.35" is 100.35; "" is null
        for name in expected.values:
            np.testing.assert_array_equal(columns.values[name], expected.values[name])
        assert columns.codes.keys() == expected.codes.keys()
        for name in expected.codes:
            np.testing.assert_array_equal(columns.codes[name], expected.codes[name])


def test_csv_quoted_fields_blank_lines_and_empty_cells() -> None:
    body = b'a,b,c\n"1,5","say ""hi""\nthere",\n\n2,,x\n'
    assert _parse(body, "text/csv") == [
        {"a": "1,5", "b": 'say "hi"\nthere', "c": ""},
        {"a": "2", "b": "", "c": "x"},
    ]
    blank = _csv([GOOD | {"tenure": ""}])  # an empty cell of a required input: null, refused
    with pytest.raises(InputError) as caught:
        SCHEMA.check_records(_parse(blank, "text/csv"))
    assert caught.value.problems[0] | {"value": None} == {
        "record": 0,
        "field": "tenure",
        "rule": "null",
        "reason": "must not be null",
        "value": None,
    }


def test_nan_is_a_missing_value_and_infinity_is_still_refused() -> None:
    split = FORMS["dataframe_split"] | {}
    split["dataframe_split"] = split["dataframe_split"] | {
        "data": [[math.nan if n == "total_charges" else GOOD[n] for n in NAMES]]
    }
    split["dataframe_split"].pop("index")
    for payload in (
        split,
        {"inputs": {n: [math.nan if n == "total_charges" else GOOD[n]] for n in NAMES}},
    ):
        records = _parse(_json(payload))
        assert records[0]["total_charges"] is None
        SCHEMA.check_records(records)  # nullable: accepted
    records = _parse(_json({"dataframe_records": [GOOD | {"tenure": math.inf}]}))
    with pytest.raises(InputError) as caught:
        SCHEMA.check_records(records)
    assert (caught.value.problems[0]["field"], caught.value.problems[0]["rule"]) == (
        "tenure",
        "finite",
    )


_SPLIT = {"columns": ["a", "b"], "data": [[1, 2]]}


@pytest.mark.parametrize(
    ("body", "field", "rule", "words"),
    [
        (b"", "body", "json", "empty body"),
        (b"{", "body", "json", "malformed JSON"),
        (b'{"inputs": ["\xff"]}', "body", "json", "not valid UTF-8"),
        (b'{"inputs": [{"a": "\\ud800"}]}', "body", "unicode", "lone surrogate"),
        (_json([GOOD]), "body", "type", "got a list"),
        (_json({}), "body", "format", "got none of them"),
        (_json({"inputs": ROWS, "instances": ROWS}), "body", "format", "'inputs' and 'instances'"),
        (_json({"records": ROWS}), "records", "unknown_field", "'records' is not a field"),
        (_json({"inputs": ROWS, "extra": 1}), "extra", "unknown_field", "exactly one of"),
        (
            _json({"inputs": ROWS, "params": {"threshold": 0.3}}),
            "params.threshold",
            "unknown_param",
            "takes no parameters",
        ),
        (_json({"inputs": ROWS, "params": [1]}), "params", "type", "got a list"),
        (_json({"dataframe_split": [[1]]}), "dataframe_split", "type", "got a list"),
        (
            _json({"dataframe_split": {"data": [[1]]}}),
            "dataframe_split.columns",
            "missing",
            "missing",
        ),
        (
            _json({"dataframe_split": _SPLIT | {"orient": "split"}}),
            "dataframe_split.orient",
            "unknown_field",
            "columns, data, index",
        ),
        (
            _json({"dataframe_split": _SPLIT | {"data": [[1, 2], [3]]}}),
            "dataframe_split.data",
            "ragged",
            "row 1 has 1 value; columns names 2 columns",
        ),
        (
            _json({"dataframe_split": _SPLIT | {"data": [{"a": 1}]}}),
            "dataframe_split.data",
            "type",
            "row 0 must be a list",
        ),
        (
            _json({"dataframe_split": _SPLIT | {"index": [1, 2]}}),
            "dataframe_split.index",
            "length",
            "one label per row",
        ),
        (
            _json({"dataframe_split": _SPLIT | {"columns": ["a", "a"]}}),
            "dataframe_split.columns",
            "duplicate",
            "'a' is named twice",
        ),
        (
            _json({"dataframe_split": _SPLIT | {"columns": [0, 1]}}),
            "dataframe_split.columns",
            "type",
            "must be strings",
        ),
        (_json({"dataframe_records": {"a": [1]}}), "dataframe_records", "type", "list of records"),
        (_json({"instances": [[1, 2]]}), "instances[0]", "type", "input name -> value"),
        (_json({"inputs": {"a": [1, 2], "b": [1]}}), "inputs.b", "ragged", "'a' has 2"),
        (_json({"inputs": {"a": 1}}), "inputs.a", "type", "list of values"),
        (_json({"inputs": {}}), "inputs", "min_items", "at least one column"),
        (_json({"inputs": "x"}), "inputs", "type", "got a string"),
    ],
)
def test_malformed_json_bodies_are_refused_naming_the_field(
    body: bytes, field: str, rule: str, words: str
) -> None:
    found = _refusal(body)
    assert (found["status"], found["field"], found["rule"]) == (400, field, rule), found
    assert words in found["reason"], found


@pytest.mark.parametrize(
    ("body", "field", "rule", "words"),
    [
        (b"", "body", "csv", "empty body"),
        (b"a,b\n\xff,1\n", "body", "unicode", "invalid UTF-8 at byte 4"),
        (b'a,b\n"1"x,2\n', "body", "csv", "malformed CSV at line 2"),
        (b"a,b\n1,2\n3\n", "body", "ragged", "CSV line 3 (record 1) has 1 cell; the header"),
        (b"a,a\n1,2\n", "header", "duplicate", "'a' is named twice"),
    ],
)
def test_malformed_csv_is_refused(body: bytes, field: str, rule: str, words: str) -> None:
    found = _refusal(body, "text/csv")
    assert (found["status"], found["field"], found["rule"]) == (400, field, rule), found
    assert words in found["reason"], found


def test_a_header_without_rows_reaches_the_input_rules() -> None:
    with pytest.raises(InputError, match="at least 1 record"):
        SCHEMA.check_records(_parse(_csv([]), "text/csv"))


@pytest.mark.parametrize(
    ("body", "media_type"),
    [
        (_json({"dataframe_split": {"columns": ["a"], "data": [[1]] * 4}}), "application/json"),
        (_json({"dataframe_records": [{"a": 1}] * 4}), "application/json"),
        (_json({"inputs": {"a": [1] * 4}}), "application/json"),
        (b"a\n1\n2\n3\n4\n", "text/csv"),
    ],
)
def test_more_records_than_the_limit_get_413(body: bytes, media_type: str) -> None:
    assert len(_parse(body, media_type, max_records=4)) == 4
    found = _refusal(body, media_type, max_records=3)
    assert (found["status"], found["field"], found["rule"]) == (413, "records", "max_items")
    assert "at most 3 records per request" in found["reason"]


@pytest.mark.parametrize(
    ("content_type", "media_type"),
    [
        ("application/json", "application/json"),
        ("Application/JSON; charset=UTF-8", "application/json"),
        ("text/csv", "text/csv"),
        ('text/csv; charset="utf-8"', "text/csv"),
    ],
)
def test_json_and_csv_are_the_media_types(content_type: str, media_type: str) -> None:
    assert media_type_of(content_type) == media_type


@pytest.mark.parametrize(
    ("content_type", "words"),
    [
        (None, "no Content-Type"),
        ("text/plain", "'text/plain'"),
        ("application/vnd.apache.parquet", "takes application/json and text/csv"),
        ("application/json; charset=latin-1", "charset 'latin-1' is not supported"),
        ("application/json; format=pandas-split", "parameter 'format' is not supported"),
    ],
)
def test_other_media_types_get_415(content_type: str | None, words: str) -> None:
    with pytest.raises(Refusal) as caught:
        media_type_of(content_type)
    assert caught.value.status == 415 and caught.value.problem["field"] == "content-type"
    assert words in str(caught.value)
    assert caught.value.headers == {"accept": "application/json, text/csv"}


_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["", " 58 ", "29.85", "Yes", "One year"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
_NAMES = st.sampled_from([*NAMES[:4], "x", ""])
_BODIES = st.one_of(
    _VALUES,
    st.fixed_dictionaries(
        {
            "dataframe_split": st.fixed_dictionaries(
                {
                    "columns": st.lists(_NAMES, max_size=4),
                    "data": st.lists(st.lists(_VALUES, max_size=4), max_size=4),
                },
                optional={"index": _VALUES},
            )
        },
        optional={"params": _VALUES},
    ),
    st.dictionaries(
        st.sampled_from(["dataframe_records", "instances", "inputs", "params", "other"]),
        st.one_of(
            st.lists(st.dictionaries(_NAMES, _VALUES, max_size=4), max_size=4),
            st.dictionaries(_NAMES, _VALUES, max_size=4),
            _VALUES,
        ),
        max_size=3,
    ),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_BODIES)
def test_any_json_body_gives_records_or_a_refusal(body: Any) -> None:
    """Whatever the JSON, the parser refuses it (`Refusal`) or gives records that the input
    rules accept or refuse (`InputError`): nothing else escapes, so nothing becomes a 5xx."""
    try:
        records = _parse(_json(body))
    except Refusal as refusal:
        assert refusal.status in (400, 413) and refusal.problem["reason"]
        return
    assert isinstance(records, list)
    try:
        SCHEMA.check_records(records)
    except InputError as err:
        assert err.problems


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list('ab,"\n\r \ufeff1.')), max_size=40))
def test_any_csv_body_gives_text_records_or_a_refusal(text: str) -> None:
    try:
        records = _parse(text.encode(), "text/csv")
    except Refusal as refusal:
        assert refusal.status in (400, 413) and refusal.problem["reason"]
        return
    assert all(isinstance(v, str) for r in records for v in r.values())
