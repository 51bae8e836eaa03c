"""The input rules of served models: JSON records and table chunks, one set of rules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitml.errors import InputError, ValidationError
from gitml.serve.inputs import InputSchema

ROOT = Path(__file__).resolve().parents[2]
SIGNATURE = json.loads((ROOT / "models/signature.json").read_text())
SCHEMA = InputSchema.from_signature(SIGNATURE)
GOOD = {
    "female": 0,
    "senior_citizen": 0,
    "partner": 1,
    "dependents": 0,
    "tenure": 58,
    "phone_service": 1,
    "multiple_lines": "Yes",
    "internet_service": "Fiber optic",
    "online_security": "No",
    "online_backup": "No",
    "device_protection": "Yes",
    "tech_support": "No",
    "streaming_tv": "Yes",
    "streaming_movies": "Yes",
    "contract": "One year",
    "paperless_billing": 0,
    "payment_method": "Credit card (automatic)",
    "monthly_charges": 100.35,
    "total_charges": 5681.1,
}


def _problems(records: object, **policy: str) -> list[dict]:
    with pytest.raises(InputError) as info:
        SCHEMA.check_records(records, **policy)
    assert isinstance(info.value, ValidationError)
    return info.value.problems


def test_good_records_become_the_pipelines_frame() -> None:
    columns = SCHEMA.check_records([GOOD, GOOD | {"total_charges": None}])
    frame = SCHEMA.to_frame(columns)
    assert list(frame.columns) == SCHEMA.names
    assert frame["contract"].dtype == "category"
    assert list(frame["contract"].cat.categories) == ["Month-to-month", "One year", "Two year"]
    assert frame["contract"].tolist() == ["One year", "One year"]
    assert frame["tenure"].tolist() == [58.0, 58.0]
    assert math.isnan(frame["total_charges"][1])  # nullable: imputed by the pipeline


def test_a_nullable_field_may_be_left_out() -> None:
    record = {k: v for k, v in GOOD.items() if k != "total_charges"}
    assert SCHEMA.check_records([record]).n == 1


@pytest.mark.parametrize(
    ("change", "field", "rule", "reason"),
    [
        ({"tenure": -4}, "tenure", "min", "must be >= 0"),
        ({"tenure": 121}, "tenure", "max", "must be <= 120"),
        ({"tenure": 1.5}, "tenure", "integer", "must be a whole number"),
        ({"tenure": "twelve"}, "tenure", "type", "expected an integer"),
        ({"tenure": True}, "tenure", "type", "expected an integer"),
        ({"tenure": "58.5"}, "tenure", "integer", "not an integer"),
        ({"tenure": " "}, "tenure", "null", "must not be null"),
        ({"tenure": None}, "tenure", "null", "must not be null"),
        ({"monthly_charges": float("nan")}, "monthly_charges", "finite", "finite"),
        ({"monthly_charges": float("inf")}, "monthly_charges", "finite", "finite"),
        ({"monthly_charges": 10**400}, "monthly_charges", "finite", "finite"),
        ({"female": 2}, "female", "allowed", "must be one of 0, 1"),
        ({"contract": "Weekly"}, "contract", "category", "must be one of 'Month-to-month'"),
        ({"contract": 1}, "contract", "category", "must be one of 'Month-to-month'"),
        ({"contract": 1.5}, "contract", "type", "expected a string"),
        ({"contract": ["One year"]}, "contract", "type", "expected a string"),
        ({"colour": "red"}, "colour", "unknown_field", "is not an input of the model"),
    ],
)
def test_each_rule_names_record_field_and_reason(
    change: dict, field: str, rule: str, reason: str
) -> None:
    problems = _problems([GOOD, GOOD | change])
    assert len(problems) == 1
    assert problems[0]["record"] == 1
    assert problems[0]["field"] == field
    assert problems[0]["rule"] == rule
    assert reason in problems[0]["reason"]


def test_missing_field_and_structural_problems() -> None:
    record = {k: v for k, v in GOOD.items() if k != "tenure"}
    assert _problems([record])[0] | {"value": None} == {
        "record": 0,
        "field": "tenure",
        "rule": "missing",
        "reason": "required field is missing",
        "value": None,
    }
    assert _problems([])[0]["field"] == "records"
    assert _problems({"a": 1})[0]["rule"] == "type"
    assert _problems([GOOD, [1, 2]])[0] == {
        "record": 1,
        "field": "records",
        "rule": "type",
        "reason": "must be a JSON object",
        "value": "<list>",
    }


def test_every_problem_of_every_record_is_listed_in_order() -> None:
    problems = _problems([GOOD | {"tenure": -1, "female": 3}, GOOD, GOOD | {"contract": "x"}])
    assert [(p["record"], p["field"]) for p in problems] == [
        (0, "female"),
        (0, "tenure"),
        (2, "contract"),
    ]


def test_accept_policies_score_unknown_categories_and_ignore_extra_fields() -> None:
    columns = SCHEMA.check_records(
        [GOOD | {"contract": "Weekly", "colour": "red"}],
        unknown_category="accept",
        extra_fields="accept",
    )
    assert columns.unknown == {"contract": 1}
    assert columns.extra_fields == 1
    frame = SCHEMA.to_frame(columns)
    assert frame["contract"].isna().all()  # scored like any unseen value: one-hot zeros
    assert columns.raw["contract"] == ["Weekly"]  # kept as sent, for the prediction log


def test_table_chunks_report_bad_rows_without_failing_the_chunk() -> None:
    rows = [dict(GOOD) for _ in range(5)]
    table = pa.Table.from_pylist(
        [{k: None if v is None else str(v) for k, v in r.items()} for r in rows]
    )
    table = table.set_column(
        table.schema.get_field_index("tenure"),
        "tenure",
        pa.array(["1", "abc", "-3", "nan", None]),  # CSV empty cells arrive as null,
    )
    columns, violations = SCHEMA.check_table(table)
    found = {(v.field, v.rule): v.rows.tolist() for v in violations}
    assert found == {
        ("tenure", "type"): [1],
        ("tenure", "null"): [4],
        ("tenure", "finite"): [3],
        ("tenure", "min"): [2],
    }
    assert columns.n == 5


def test_json_schema_publishes_the_same_rules() -> None:
    doc = SCHEMA.json_schema(max_records=7)
    records = doc["properties"]["records"]
    assert records["maxItems"] == 7 and records["minItems"] == 1
    item = records["items"]
    assert item["additionalProperties"] is False
    assert "total_charges" not in item["required"] and "tenure" in item["required"]
    assert item["properties"]["tenure"] == {"type": "integer", "minimum": 0, "maximum": 120}
    assert item["properties"]["female"]["enum"] == [0, 1]
    assert item["properties"]["total_charges"]["type"] == ["number", "null"]
    assert "enum" in item["properties"]["contract"]


def _as_text(value: object) -> str | None:
    """The value as a CSV cell holds it (what `gitml predict` reads)."""
    if value is None or isinstance(value, str):
        return value
    return repr(value) if isinstance(value, float) else str(value)


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-1000, max_value=1000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["No", "Yes", "yes ", " DSL", "two YEAR", "maybe", "", "  ", "58", " 7.0 "]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(["tenure", "female", "monthly_charges", "total_charges", "contract"]),
    values=st.lists(_VALUES, min_size=1, max_size=20),
)
def test_records_and_tables_break_the_same_rules(field: str, values: list) -> None:
    """JSON records and a CSV column holding the same values as text are judged alike, row
    by row, and give the same pipeline input."""
    records = [GOOD | {field: v} for v in values]
    try:
        from_json = SCHEMA.to_frame(SCHEMA.check_records(records))[field]
        from_records: set[int] = set()
    except InputError as err:
        from_json = None
        from_records = {p["record"] for p in err.problems}
    table = pa.table({field: pa.array([_as_text(v) for v in values], pa.string())})
    columns, violations = SCHEMA.check_table(table)
    violations = [v for v in violations if v.field == field]  # the other inputs are absent
    from_table = set(np.concatenate([v.rows for v in violations]).tolist()) if violations else set()
    assert from_records == from_table
    if from_json is not None:
        from_csv = SCHEMA.to_frame(columns)[field]
        assert from_json.equals(from_csv)


@pytest.mark.parametrize(
    ("field", "sent", "becomes"),
    [
        ("tenure", "58", 58.0),
        ("tenure", " 58 ", 58.0),
        ("tenure", "58.0", 58.0),
        ("tenure", 58.0, 58.0),
        ("monthly_charges", "1e2", 100.0),
        ("total_charges", "   ", None),
        ("total_charges", "", None),
        ("contract", " one YEAR ", "One year"),
        ("internet_service", "fiber optic", "Fiber optic"),
    ],
)
def test_json_values_are_coerced_like_file_cells(field: str, sent: object, becomes: object) -> None:
    frame = SCHEMA.to_frame(SCHEMA.check_records([GOOD | {field: sent}]))
    value = frame[field][0]
    assert (value is None or value != value) if becomes is None else value == becomes
