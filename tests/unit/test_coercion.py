"""The one cell coercion: file cells, table chunks and JSON values become the same inputs."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitml.config.compose import compose_params, parse_params
from gitml.data.coercion import (
    NOT_A_NUMBER,
    category_cell,
    category_index,
    coerce_categories,
    coerce_numbers,
    number_cell,
)
from gitml.data.io import read_source
from gitml.data.typing import apply_declared_types
from gitml.data.validation import validate_frame
from gitml.errors import DataError, InputError
from gitml.model.scoring import check_features

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ("Month-to-month", "One year", "Two year")


@pytest.fixture(scope="module")
def params():
    return parse_params(compose_params(ROOT / "conf"), source="t")


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (58, 58.0),
        (58.0, 58.0),
        ("58", 58.0),
        (" 58 ", 58.0),
        ("58.0", 58.0),
        ("5.8e1", 58.0),
        ("", None),
        ("   ", None),
        (None, None),
        (True, NOT_A_NUMBER),
        ("twelve", NOT_A_NUMBER),
        ("1_000", NOT_A_NUMBER),
        ([58], NOT_A_NUMBER),
    ],
)
def test_number_cells(value: object, number: object) -> None:
    assert (
        number_cell(value) == number if isinstance(number, float) else number_cell(value) is number
    )


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("One year", 1),
        ("  one YEAR ", 1),
        ("TWO YEAR", 2),
        ("Weekly", -1),
    ],
)
def test_category_cells_match_case_and_whitespace(value: str, code: int) -> None:
    assert category_cell(value, category_index(CONTRACTS))[0] == code


def test_integer_codes_and_booleans_match_their_text() -> None:
    codes = category_index(("0", "1", "true"))
    assert [category_cell(v, codes)[0] for v in (1, 1.0, "1", " 1 ", "1.0", True, 2)] == [
        1,
        1,
        1,
        1,
        1,
        2,
        -1,
    ]
    assert category_cell(1.5, codes)[1] == 2  # BAD: a fraction is not a category code
    # ambiguous case-insensitive matches stay unknown
    assert category_cell("yes", category_index(("Yes", "YES")))[0] == -1
    assert category_cell("YES", category_index(("Yes", "YES")))[0] == 1


_CELLS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.sampled_from(["", " ", "58", " 7.5 ", "1e3", "x", "One year", " two YEAR", "nan", "inf"]),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(_CELLS, min_size=1, max_size=12))
def test_columns_coerce_cell_by_cell(values: list) -> None:
    """A table column (text as a CSV holds it) coerces like its values one by one."""
    text = [None if v is None else repr(v) if isinstance(v, float) else str(v) for v in values]
    numbers = coerce_numbers(pa.array(text, pa.string()))
    for i, v in enumerate(text):
        one = number_cell(v)
        assert numbers.null[i] == (one is None)
        assert numbers.bad[i] == (one is NOT_A_NUMBER)
        if isinstance(one, float) and not math.isnan(one):
            assert numbers.values[i] == one
    cats = coerce_categories(pa.array(text, pa.string()), CONTRACTS)
    index = category_index(CONTRACTS)
    assert cats.codes.tolist() == [category_cell(v, index)[0] for v in text]


def _original_telco(tmp_path: Path) -> Path:
    """The public Telco file's way of writing the 11 unbilled customers: a single space."""
    lines = gzip.decompress((ROOT / "data/external/telco_churn.csv.gz").read_bytes()).decode()
    rows = [line + " " if line.endswith(",") else line for line in lines.splitlines()]
    assert sum(r.endswith(", ") for r in rows) == 11
    path = tmp_path / "original.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_original_telco_blanks_are_missing_totals(params, tmp_path: Path) -> None:
    table = read_source(
        _original_telco(tmp_path),
        expected=list(params.data.columns),
        text_columns=params.data.categorical,
    )
    typed = apply_declared_types(table, params.data)
    assert typed.schema.field("total_charges").type == pa.float64()
    assert typed["total_charges"].null_count == 11
    report = validate_frame(
        typed.to_pandas(), params.data, params.validate_, source="original.csv", line_offset=1
    )
    assert report.ok and report.null_counts["total_charges"] == 11


@pytest.mark.filterwarnings("ignore::FutureWarning")  # inside pandera
def test_a_blank_in_a_required_column_is_refused_by_name(params) -> None:
    table = pa.table(
        {
            name: pa.array(values)
            for name, values in {
                "tenure": ["1", "  ", "3"],
                "contract": ["one year", "", "x"],
            }.items()
        }
    )
    frame = apply_declared_types(table, params.data).to_pandas()
    assert frame["contract"].tolist() == ["One year", None, "x"]
    report = validate_frame(frame, params.data, params.validate_, source="t.csv", line_offset=1)
    nulls = {f.column: f for f in report.findings if f.rule == "null"}
    assert nulls["tenure"].examples[0]["row"] == 2
    assert "column 'tenure' is empty (or whitespace) but not declared nullable" in (
        nulls["tenure"].message
    )
    assert nulls["contract"].examples[0]["row"] == 2


def test_ingest_writes_integer_codes_as_declared_text(params) -> None:
    data = params.data.model_copy(
        update={
            "columns": params.data.columns
            | {
                "senior_citizen": params.data.columns["contract"].model_copy(
                    update={"categories": ["0", "1"]}
                )
            }
        }
    )
    typed = apply_declared_types(pa.table({"senior_citizen": pa.array([0, 1, None])}), data)
    assert typed["senior_citizen"].to_pylist() == ["0", "1", None]


@pytest.mark.parametrize("separator", [";", "\t", "|"])
def test_another_delimiter_gets_one_error_naming_it(params, tmp_path: Path, separator: str) -> None:
    source = _original_telco(tmp_path)
    lines = source.read_text().splitlines()[:30]
    other = tmp_path / "other.csv"
    other.write_text("\n".join(line.replace(",", separator) for line in lines) + "\n")
    with pytest.raises(DataError) as info:
        read_source(other, expected=list(params.data.columns))
    name = "tab" if separator == "\t" else repr(separator)
    assert f"other.csv: looks {name}-separated" in info.value.message
    assert info.value.hint


def test_non_finite_features_name_the_field() -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(np.array([[0.0, 1.0], [1.0, 0.0]]), ["No", "Yes"])
    fields = [("tenure",), ("contract",)]
    check_features(model, np.array([[0.5, 0.5]]), fields)  # finite: nothing to say
    with pytest.raises(InputError) as info:
        check_features(model, np.array([[0.5, 0.5], [np.inf, 0.0], [0.0, np.nan]]), fields)
    assert [(p["record"], p["field"], p["rule"]) for p in info.value.problems] == [
        (1, "tenure", "finite_after_preprocessing"),
        (2, "contract", "finite_after_preprocessing"),
    ]
    assert "record 1: field 'tenure': becomes infinite" in info.value.message
