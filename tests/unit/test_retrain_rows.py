"""`gitml retrain`'s row work: the label join, the rows in the source's columns, the policies."""

from __future__ import annotations

from pathlib import Path

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


def test_labels_join_by_request_and_record_and_count_what_is_left_out() -> None:
    labels = pa.table(
        {
            "request_id": ["b", "a", "zz", "a"],
            "record": [0, 1, 0, 1],  # ("a", 1) twice with the same label: one label
            "churn": ["Yes", "No", "No", "No"],
        }
    )
    joined = join_batch_labels(_batch(tenure=[1, 2, 3]), labels, data=DATA, columns=COLUMNS)
    assert joined.rows["tenure"].to_pylist() == [2, 3]  # batch order
    assert joined.truth.to_pylist() == ["No", "Yes"]
    assert (joined.unlabelled, joined.unmatched) == (1, 1)


def test_a_labels_file_without_records_labels_record_0() -> None:
    labels = pa.table({"request_id": ["b", "a"], "churn": ["Yes", ""]})  # empty: no label yet
    joined = join_batch_labels(_batch(tenure=[1, 2, 3]), labels, data=DATA, columns=COLUMNS)
    assert joined.rows["tenure"].to_pylist() == [3]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            {"request_id": ["x"], "record": [0], "churn": ["Yes"]},
            "none of the 1 labels in the labels matches a row of the batch by (request_id, "
            "record): nothing to add (labels: ('x', 0); batch: ('a', 0), ('a', 1), ('b', 0))",
        ),
        (
            {"request_id": ["a", "a"], "record": [0, 0], "churn": ["Yes", "No"]},
            "the labels: 1 rows repeat a (request_id, record) key; first: ('a', 0) labelled "
            "twice, differently",
        ),
        ({"request_id": ["a"], "record": [0]}, "the labels: no 'churn' column"),
        ({"id": ["a"], "churn": ["Yes"]}, "the labels: no 'request_id' column"),
        ({"request_id": ["a"], "record": [0.5], "churn": ["No"]}, "must be a whole number"),
    ],
)
def test_labels_that_cannot_be_joined_are_refused(labels: dict, message: str) -> None:
    with pytest.raises(DataError) as err:
        join_batch_labels(_batch(tenure=[1, 2, 3]), pa.table(labels), data=DATA, columns=COLUMNS)
    assert message in err.value.message


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
