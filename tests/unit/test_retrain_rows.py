"""`gitml retrain`'s row work: the label join, the rows in the source's columns, the policies."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from gitml.config.compose import load_params
from gitml.config.schema import LabelColumns, RetrainPolicy
from gitml.errors import ConfigError, DataError
from gitml.monitor.retrain import _policy, append_rows, join_batch_labels, training_rows

ROOT = Path(__file__).resolve().parents[2]
DATA = load_params(ROOT / "params.yaml").data
COLUMNS = LabelColumns()
SCHEMA = pa.schema([("customer", pa.string()), ("tenure", pa.int64()), ("churn", pa.string())])
SCHEMA = SCHEMA.append(pa.field("total_charges", pa.float64()))


def _batch(**columns: list) -> pa.Table:
    return pa.table({"request_id": ["a", "a", "b"], "record": [0, 1, 0], **columns})


def _labels(ids: list[str], records: list[int], truth: list) -> pd.DataFrame:
    """Labels as `gitml.monitor.labelled.read_labels` gives them."""
    return pd.DataFrame({"request_id": ids, "record": records, "truth": truth})


def test_labels_join_by_request_and_record_and_count_what_is_left_out() -> None:
    labels = _labels(["b", "a", "zz", "a"], [0, 1, 0, 0], ["Yes", "No", "No", None])
    joined = join_batch_labels(_batch(tenure=[1, 2, 3]), labels, columns=COLUMNS)
    assert joined.rows["tenure"].to_pylist() == [2, 3]  # batch order
    assert joined.truth.to_pylist() == ["No", "Yes"]
    # ("a", 0) has an empty label: not labelled yet; ("zz", 0) matches no batch row
    assert (joined.unlabelled, joined.unmatched) == (1, 1)


def test_the_batch_names_its_id_columns_as_monitor_labels_says() -> None:
    batch = pa.table({"rid": ["a", "b"], "tenure": [1, 2]})  # no record column: record 0
    columns = LabelColumns(id_column="rid", record_column="rec")
    joined = join_batch_labels(batch, _labels(["b"], [0], ["Yes"]), columns=columns)
    assert joined.rows["tenure"].to_pylist() == [2]


def test_labels_matching_no_batch_row_or_a_repeated_batch_key_are_refused() -> None:
    with pytest.raises(DataError) as err:
        join_batch_labels(_batch(tenure=[1, 2, 3]), _labels(["x"], [0], ["No"]), columns=COLUMNS)
    assert err.value.message == (
        "none of the 1 labels in the labels matches a row of the batch by (request_id, "
        "record): nothing to add (labels: ('x', 0); batch: ('a', 0), ('a', 1), ('b', 0))"
    )
    repeated = pa.table({"request_id": ["a", "a"], "record": [0, 0], "tenure": [1, 2]})
    with pytest.raises(DataError, match=r"1 rows repeat a \(request_id, record\) key"):
        join_batch_labels(repeated, _labels(["a"], [0], ["No"]), columns=COLUMNS)
    with pytest.raises(DataError, match="the batch: no 'request_id' column"):
        join_batch_labels(pa.table({"x": [1]}), _labels(["a"], [0], ["No"]), columns=COLUMNS)


def test_rows_take_the_source_columns_and_types_nulls_only_where_allowed() -> None:
    rows = pa.table({"tenure": ["7", "8"], "extra": [1, 2]})
    table = training_rows(rows, pa.array(["No", "Yes"]), SCHEMA, DATA, where="batch.csv")
    assert table.schema == SCHEMA  # the batch's extra column is not kept
    assert table.to_pylist() == [
        {"customer": None, "tenure": 7, "churn": "No", "total_charges": None},
        {"customer": None, "tenure": 8, "churn": "Yes", "total_charges": None},
    ]
    with pytest.raises(DataError, match=r"the batch has no column 'tenure'.*not nullable"):
        training_rows(pa.table({"x": [1]}), pa.array(["No"]), SCHEMA, DATA, where="batch.csv")
    with pytest.raises(DataError, match="column 'tenure' of the batch: a value does not fit"):
        training_rows(pa.table({"tenure": ["seven"]}), pa.array(["No"]), SCHEMA, DATA, where="b")


def test_append_keeps_every_row_and_window_the_newest() -> None:
    old, new = pa.table({"v": [1, 2, 3]}), pa.table({"v": [4, 5]})
    table, dropped = append_rows(old, new, policy="append", window_rows=2)
    assert (table["v"].to_pylist(), dropped) == ([1, 2, 3, 4, 5], 0)
    table, dropped = append_rows(old, new, policy="window", window_rows=3)
    assert (table["v"].to_pylist(), dropped) == ([3, 4, 5], 2)
    table, dropped = append_rows(old, new, policy="window", window_rows=10)
    assert (table["v"].to_pylist(), dropped) == ([1, 2, 3, 4, 5], 0)


def test_the_policy_comes_from_the_options_else_the_config() -> None:
    assert _policy(RetrainPolicy(), None, None) == ("append", None)
    assert _policy(RetrainPolicy(policy="window", window_rows=9), None, None) == ("window", 9)
    assert _policy(RetrainPolicy(), "window", 5) == ("window", 5)
    with pytest.raises(ConfigError, match="policy window needs a window size"):
        _policy(RetrainPolicy(), "window", None)
