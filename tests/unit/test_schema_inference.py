"""Schema inference: column decisions, widened ranges, the task, and the YAML it renders."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest
import yaml

from gitml.config.data_yaml import check_data_yaml, render_data_yaml
from gitml.data.inference import (
    decide_column,
    draft_schema,
    infer_task,
    schema_name,
    widen,
)
from gitml.data.profiling import CATEGORY_CAP, DISTINCT_LIMIT, ColumnProfile
from gitml.errors import DataError


def _profile(name: str, values: list, *, chunks: int = 1) -> ColumnProfile:
    profile = ColumnProfile(name)
    step = max(1, -(-len(values) // chunks))
    for start in range(0, len(values), step):
        profile.update(pa.array(values[start : start + step]))
    return profile


def _decide(values: list, **kwargs):
    return decide_column(_profile("c", values, **kwargs))


def test_numeric_text_is_typed_like_ingest_with_the_range_widened() -> None:
    column = _decide([" 58 ", "60", "", "70", "100"])
    assert column.spec == {
        "type": "int",
        "min": 53,  # 58 - 10% of the range 42, rounded outwards
        "max": 105,
        "nullable": True,
        "max_null_fraction": 0.41,  # 2 x 20 % + 1 point
    }
    assert column.excluded is None
    assert "20.00% null (1 of 5 rows), 4 distinct, seen 58 to 100" in column.seen


def test_ranges_never_go_below_zero_when_no_value_was_negative() -> None:
    assert widen(0.0, 72.0, integer=True) == (0, 80)
    assert widen(-5.0, 5.0, integer=True) == (-6, 6)
    assert widen(18.25, 118.75, integer=False) == (8.0, 129.0)
    assert widen(0.0012, 0.0034, integer=False) == (0.00097, 0.00362)
    assert widen(3.0, 3.0, integer=False) == (2.0, 4.0)


def test_floats_stay_floats_and_the_same_numbers_in_chunks_give_the_same_profile() -> None:
    values = [1.5, 2.25, None, 9.0] * 50
    whole, chunked = _decide(values), _decide(values, chunks=7)
    assert whole == chunked
    assert whole.spec is not None and whole.spec["type"] == "float"
    assert whole.spec["nullable"] is True


def test_a_0_1_int_column_is_allowed_0_and_1() -> None:
    assert _decide(["0", "1", "1", "0"]).spec == {"type": "int", "allowed": [0, 1]}
    assert _decide([0, 1, 1]).spec == {"type": "int", "allowed": [0, 1]}


def test_low_cardinality_text_is_a_category_with_its_stripped_values() -> None:
    column = _decide(["b", " a", "c ", "a", None, "  "])
    assert column.spec == {
        "type": "category",
        "categories": ["a", "b", "c"],
        "nullable": True,
        "max_null_fraction": 0.677,
    }


def test_id_like_columns_are_dropped_declared_or_left_out() -> None:
    ints = _decide(list(range(1000, 1200)))
    assert ints.excluded == "ID-like" and ints.spec == {"type": "int"}
    keys = _decide([f"K{k:05d}" for k in range(200)])
    assert keys.spec is None and keys.excluded == "excluded: ID-like (near-unique keys)"


def test_an_id_past_the_distinct_limit_is_still_recognised() -> None:
    profile = _profile("id", [f"u{k}" for k in range(DISTINCT_LIMIT + 500)], chunks=3)
    assert profile.distinct is None and profile.id_like
    assert "over 10,000 distinct" in decide_column(profile).seen


def test_constant_columns_are_dropped_with_the_value_stated() -> None:
    text = _decide(["north"] * 10)
    assert text.excluded == "constant (always 'north')"
    assert text.spec == {"type": "category", "categories": ["north"]}
    number = _decide([7] * 10)
    assert number.excluded == "constant (always 7)" and number.spec == {"type": "int"}


def test_dates_are_parsed_and_left_out() -> None:
    column = _decide(["2021-03-01", "2020-01-31", "2021-12-31T10:00:00"])
    assert column.spec is None
    assert column.seen == "dates/times 2020-01-31 to 2021-12-31T10:00:00"
    assert "parsed as ISO 8601" in (column.excluded or "")
    assert _decide([None, None]).excluded == "empty in every row"
    typed = ColumnProfile("t")
    typed.update(pa.array([0, 86_400_000], pa.timestamp("ms")))
    assert decide_column(typed).spec is None and typed.date_like


def test_common_date_formats_are_found_on_a_sample_then_confirmed_on_every_row() -> None:
    days = _decide([f"{d:02d}/{m:02d}/2021" for m in (1, 6, 12) for d in (3, 17, 31)], chunks=3)
    assert days.spec is None
    assert days.seen == "dates/times 2021-01-03 to 2021-12-31"
    assert days.excluded == (
        "excluded: a date/time column (format %d/%m/%Y, parsed in every row); not turned into "
        "features yet; derive some (year, month, weekday...) to use it"
    )
    stamps = _decide(["Mar 01, 2021 13:05", "Dec 24, 2020 08:00"])
    assert stamps.seen == "dates/times 2020-12-24T08:00:00 to 2021-03-01T13:05:00"
    assert "format %b %d, %Y %H:%M," in (stamps.excluded or "")
    ambiguous = _decide(["01/02/2021", "03/04/2021"])
    assert "format %d/%m/%Y or %m/%d/%Y (ambiguous: every value parses either way)" in (
        ambiguous.excluded or ""
    )
    assert _decide(["08:30", "17:45:10"]).spec is not None  # two formats mixed: not one format
    assert _decide(["08:30", "17:45"]).seen == "dates/times 08:30:00 to 17:45:00"
    # the sample parses, a later chunk does not: a category, not a date
    late = _profile("c", ["01/02/2021"] * 300 + ["soon"] * 3, chunks=2)
    assert not late.date_like and decide_column(late).spec is not None


def test_free_text_and_high_cardinality_text_are_left_out_with_the_policy() -> None:
    notes = _decide([f"seen on visit {k}, follow up in a week" for k in range(100)] * 2)
    assert notes.spec is None
    assert notes.excluded == "excluded: free text (on average 37 characters, 9.0 words)"
    short = _decide([f"ok {k} {k % 7}" for k in range(60)] * 4)  # short, but 3 words each
    assert short.spec is None and "free text" in (short.excluded or "")
    # long labels with spaces, but only a few of them: a category
    payment = _decide(["Bank transfer (automatic)", "Credit card (automatic)", "Mailed check"] * 9)
    assert payment.spec is not None and payment.spec["type"] == "category"
    many = _decide([f"c{k}" for k in range(CATEGORY_CAP + 1)] * 3)
    assert many.spec is None
    assert many.excluded == "excluded: high-cardinality (more than 50 categories)"


def test_the_task_follows_the_target() -> None:
    binary = _profile("y", ["No"] * 7 + ["Yes"] * 3)
    assert infer_task(binary, source="f") == (
        "binary (positive class 'Yes': the minority class, 3 of 10 rows)",
        "Yes",
    )
    assert infer_task(binary, source="f", positive_class="No")[1] == "No"
    # a 0/1 (no/yes, false/true) target scores its usual positive even when it is the majority
    flags = _profile("y", [1] * 7 + [0] * 3)
    assert infer_task(flags, source="f") == (
        "binary (positive class '1': the usual positive of 0/1, 7 of 10 rows; the minority is "
        "'0': --positive-class 0 to score it)",
        "1",
    )
    assert infer_task(_profile("y", ["TRUE"] * 6 + ["false"] * 4), source="f")[1] == "TRUE"
    assert infer_task(flags, source="f", positive_class="0")[1] == "0"
    tie = _profile("y", [0, 1, 0, 1])
    assert infer_task(tie, source="f")[1] == "1"
    few = _profile("y", ["a", "b", "c", "a"])
    assert infer_task(few, source="f")[0] == "multiclass (3 classes: a, b, c)"
    many = _profile("y", [k * 1.5 for k in range(100)])
    assert (
        infer_task(many, source="f")[0] == "regression (numeric, 100 distinct values, 0 to 148.5)"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            ["x"] * 5,
            "f: target 'y' has one value ('x') in all 5 non-empty rows: nothing to predict",
        ),
        ([None, " "], "f: target 'y' is empty in all 2 rows: nothing to learn"),
        ([f"t{k}" for k in range(60)], "more than 50 distinct values: not a class label"),
    ],
)
def test_a_target_without_two_classes_is_refused(values: list, message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        infer_task(_profile("y", values), source="f")


def test_an_unknown_target_names_the_close_columns() -> None:
    profiles = {"churn": _profile("churn", ["a", "b"]), "tenure": _profile("tenure", [1, 2])}
    with pytest.raises(
        DataError, match=r"no column 'chrun' to use as --target; did you mean 'churn'"
    ):
        draft_schema(profiles, rows=2, target="chrun", name="x", source="f.csv")


AWKWARD = ["patient id", "mean radius (cm)", "a.b", "größe", "yes", "1", "null", "x: y", "#c"]


def test_awkward_names_and_values_round_trip_through_the_yaml() -> None:
    profiles = {name: _profile(name, ["Yes", "No", "null", "1.5", "Yes"]) for name in AWKWARD}
    profiles["label"] = _profile("label", ["on", "off", "on", "on", "on"])
    draft = draft_schema(
        profiles, rows=5, target="label", name="awkward", source="data/my file.csv"
    )
    text = render_data_yaml(draft)
    data = check_data_yaml(text, source="awkward.yaml")
    assert list(data.columns) == [*AWKWARD, "label"]
    assert data.columns["größe"].categories == ["1.5", "No", "Yes", "null"]
    assert data.positive_class == "off" and data.columns["label"].categories == ["off", "on"]
    assert data.source == "data/my file.csv"
    assert set(data.slices) == set(AWKWARD)
    assert yaml.safe_load(text)["columns"]["yes"]["type"] == "category"  # not the bool True


def test_the_rendered_file_states_what_was_seen_and_why_columns_are_out() -> None:
    profiles = {
        "id": _profile("id", list(range(100))),
        "day": _profile("day", [f"2020-01-{k % 28 + 1:02d}" for k in range(100)]),
        "amount": _profile("amount", [k % 20 + 0.5 for k in range(100)]),
        "y": _profile("y", ["a", "b"] * 50),
    }
    text = render_data_yaml(draft_schema(profiles, rows=100, target="y", name="t", source="t.csv"))
    assert text.startswith("# Inferred by `gitml schema infer` from t.csv (100 rows).\n")
    assert (
        "# inferred from the target: binary (positive class 'b': the minority class, "
        "50 of 100 rows)\ntask: binary\n"
    ) in text
    assert "drop: [id]\n" in text
    assert "  # no nulls, 100 distinct, seen 0 to 99; excluded (drop): ID-like\n" in text
    assert "  amount: {type: float, min: 0.0, max: 21.4}\n" in text
    assert "#   day: dates/times 2020-01-01 to 2020-01-28; excluded: a date/time column" in text
    assert "widened by 10% of the range" in text


def test_schema_names_follow_the_name_pattern() -> None:
    from pathlib import Path

    assert schema_name(Path("data/Telco Churn.csv.gz")) == "telco_churn"
    assert schema_name(Path("x/Größe-2024.parquet")) == "gr_e-2024"
    assert schema_name(Path("___.csv")) == "data"
