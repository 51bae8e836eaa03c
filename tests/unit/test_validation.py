"""Each data rule, on small frames: what it flags, at which level, with which example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gitml.config.compose import compose_params, parse_params
from gitml.data.io import read_source, read_table, write_arrow
from gitml.data.typing import apply_declared_types
from gitml.data.validation import validate_frame

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def params():
    return parse_params(compose_params(ROOT / "conf"), source="t")


@pytest.fixture(scope="module")
def telco(params, tmp_path_factory) -> pd.DataFrame:
    """The reference data as the validate stage sees it (ingest output, read back)."""
    raw = tmp_path_factory.mktemp("raw") / "telco.parquet"
    table = read_source(ROOT / "data/external/telco_churn.csv.gz")
    write_arrow(raw, apply_declared_types(table, params.data))
    return read_table(raw, categories=params.data.categorical)


def _run(frame, params, **rules):
    rules_ = params.validate_.model_copy(update=rules)
    return validate_frame(frame, params.data, rules_, source="t.csv", line_offset=1)


def _rules(report) -> dict[str, str]:
    return {f"{f.column}:{f.rule}": f.level for f in report.findings}


def test_reference_data_passes_with_declared_nulls_and_known_duplicates(telco, params) -> None:
    report = _run(telco, params)
    assert report.ok
    assert _rules(report) == {
        "total_charges:max_null_fraction": "info",
        "None:duplicates": "warning",
    }
    assert report.null_counts["total_charges"] == 11
    assert report.target_balance == {"No": 5174, "Yes": 1869}


def test_fractional_int_and_allowed_values(telco, params) -> None:
    frame = telco.astype({"tenure": float})
    frame.loc[3, "tenure"] = 2.5
    frame.loc[[4, 5], "female"] = 2
    report = _run(frame, params)
    assert _rules(report)["tenure:integer"] == "error"
    finding = next(f for f in report.findings if f.rule == "allowed_values")
    assert finding.count == 2 and finding.examples[0] == {"row": 5, "value": 2, "line": 6}


def test_null_fraction_above_limit_is_an_error(telco, params) -> None:
    frame = telco.copy()
    frame.loc[frame.index[:200], "total_charges"] = np.nan
    report = _run(frame, params)
    assert _rules(report)["total_charges:max_null_fraction"] == "error"


def test_not_nullable_column_with_nulls(telco, params) -> None:
    frame = telco.copy()
    frame.loc[7, "monthly_charges"] = np.nan
    assert _rules(_run(frame, params))["monthly_charges:null"] == "error"


def test_object_columns_validate_like_categoricals(telco, params) -> None:
    plain = telco.astype({c: object for c in params.data.categorical})
    assert _rules(_run(plain, params)) == _rules(_run(telco, params))
    plain.loc[[3, 4], "contract"] = ["", "Weekly"]
    rules = _rules(_run(plain, params))
    assert rules["contract:categories"] == "error" and rules["contract:null"] == "error"


def test_duplicates_above_limit_and_class_balance(telco, params) -> None:
    frame = pd.concat([telco, telco.head(300)], ignore_index=True)
    assert _rules(_run(frame, params))["None:duplicates"] == "error"
    rare = telco[telco["churn"] == "No"].head(1000)
    rare = pd.concat([rare, telco[telco["churn"] == "Yes"].head(20)])
    assert _rules(_run(rare, params))["churn:class_balance"] == "error"


def test_unknown_column_policy(telco, params) -> None:
    frame = telco.assign(extra=1)
    assert _rules(_run(frame, params))["extra:unknown_column"] == "warning"
    assert _rules(_run(frame, params, unknown_columns="error"))["extra:unknown_column"] == "error"


def test_too_few_rows(telco, params) -> None:
    report = _run(telco.head(50), params)
    assert _rules(report)["None:min_rows"] == "error"


def test_report_renders_markdown_and_json(telco, params) -> None:
    report = _run(telco, params)
    assert report.to_dict()["status"] == "passed"
    assert "| warning |  | duplicates | 22 |" in report.to_markdown()
