"""Late labels: reading a labels file (CSV or Parquet), its errors, and the join."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gitml.config.schema import LabelColumns
from gitml.errors import DataError
from gitml.monitor.labelled import join_labels, read_labels

COLUMNS = LabelColumns()


def _write(tmp_path, text: str, name: str = "labels.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_csv_without_record_reads_ids_as_text_and_record_zero(tmp_path):
    path = _write(tmp_path, "request_id,Churn\n007,Yes\n8,No\n9,\n")
    labels = read_labels(path, target="Churn", columns=COLUMNS)
    assert labels["request_id"].tolist() == ["007", "8", "9"]  # "007" stays text
    assert labels["record"].tolist() == [0, 0, 0]
    assert labels["truth"].tolist() == ["Yes", "No", None]  # an empty cell is no label yet


def test_parquet_labels_with_records_and_a_regression_target(tmp_path):
    path = tmp_path / "labels.parquet"
    frame = pd.DataFrame({"rid": ["a", "a", "b"], "rec": [0, 1, 0], "price": [1.5, 2, None]})
    frame.to_parquet(path)
    columns = LabelColumns(id_column="rid", record_column="rec")
    labels = read_labels(path, target="price", columns=columns, task="regression")
    assert labels["record"].tolist() == [0, 1, 0]
    np.testing.assert_array_equal(labels["truth"].to_numpy(), [1.5, 2.0, np.nan])


@pytest.mark.parametrize(
    ("text", "target", "task", "expected"),
    [
        (
            "request_id,label\n1,Yes\n",
            "Churn",
            None,
            r"labels.csv: no target column 'Churn' \(data.target\); found: request_id, label",
        ),
        (
            "id,Churn\n1,Yes\n",
            "Churn",
            None,
            r"no request id column 'request_id'.*found: id, Churn",
        ),
        (
            "request_id,Churn\n1,Yes\n2,No\n1,No\n",
            "Churn",
            None,
            r"request id '1' record 0 is labelled 2 times \(line 2, line 4\)",
        ),
        (
            "request_id,record,Churn\n1,0,Yes\n1,1.5,No\n",
            "Churn",
            None,
            r"column 'record' .*whole numbers >= 0.*first: line 3, '1.5'",
        ),
        (
            "request_id,price\n1,3.5\n2,cheap\n",
            "price",
            "regression",
            r"column 'price': a regression target must be a number; 1 labels are not "
            r"\(first: line 3, 'cheap'\)",
        ),
        ("request_id,Churn\n,Yes\n", "Churn", None, r"column 'request_id': 1 rows have no request"),
    ],
)
def test_a_bad_labels_file_is_refused_naming_file_column_and_what_was_found(
    tmp_path, text, target, task, expected
):
    path = _write(tmp_path, text)
    with pytest.raises(DataError, match=expected) as err:
        read_labels(path, target=target, columns=COLUMNS, task=task)
    assert str(path) in err.value.message
    if target == "Churn" and "label" in text:
        assert "'label'" in (err.value.hint or "")


def test_an_unreadable_or_missing_labels_file_is_a_data_error(tmp_path):
    garbled = tmp_path / "labels.parquet"
    garbled.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"labels.parquet: not a readable Parquet file"):
        read_labels(garbled, target="Churn", columns=COLUMNS)
    with pytest.raises(DataError, match=r"nope.csv: labels file not found"):
        read_labels(tmp_path / "nope.csv", target="Churn", columns=COLUMNS)
    with pytest.raises(DataError, match=r"labels.json: a labels file must be .csv or .parquet"):
        read_labels(_write(tmp_path, "{}", "labels.json"), target="Churn", columns=COLUMNS)


def test_join_keeps_every_prediction_in_order_and_counts_labels_matching_none(tmp_path):
    scored = pd.DataFrame(
        {
            "request_id": ["r2", "r1", "r1", "r3"],
            "record": [0, 0, 1, 0],
            "score": [0.1, 0.9, 0.8, 0.5],
        },
        index=[10, 11, 12, 13],
    )
    path = _write(tmp_path, "request_id,record,Churn\nr1,1,Yes\nr2,0,No\nr9,0,Yes\nr1,5,No\n")
    labels = read_labels(path, target="Churn", columns=COLUMNS)
    joined, unmatched = join_labels(scored, labels)
    assert joined.index.tolist() == [10, 11, 12, 13]
    assert joined["truth"].iloc[0] == "No" and joined["truth"].iloc[2] == "Yes"
    assert joined["truth"].isna().tolist() == [False, True, False, True]
    assert unmatched == 2  # r9 and r1 record 5 label no prediction
