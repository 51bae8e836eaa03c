"""Late labels: a labels file read and checked, and joined to the predictions they label.

A labels file (CSV or Parquet) names the prediction it labels by request id and, for a
request of several records, the record's index (`monitor.labels`), and gives the true value
under the target's own name (`data.target`), as the training data does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from gitml.config.schema import LabelColumns
from gitml.data.io import detect_format, read_source
from gitml.errors import DataError
from gitml.tasks import Task

KEYS = ["request_id", "record"]


def read_labels(
    path: str | Path, *, target: str, columns: LabelColumns, task: Task | None = None
) -> pd.DataFrame:
    """The labels of `path` as a frame of request_id (str), record (int) and truth (text; a
    float for `task` regression), one row per labelled prediction; an empty cell is no label.

    DataError naming the file and column for a missing column, an unreadable file, missing or
    duplicate ids (the first duplicate shown), a bad record index or a regression target
    that is not a number.
    """
    path = Path(path)
    id_col, record_col = columns.id_column, columns.record_column
    try:
        fmt = detect_format(path)
    except DataError as err:
        raise DataError(f"{path}: a labels file must be .csv or .parquet") from err
    if not path.is_file():
        raise DataError(f"{path}: labels file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the labels file is empty (0 bytes)")
    table = read_source(path, fmt=fmt, expected=[id_col, target], text_columns=[id_col, target])
    frame = table.to_pandas()
    where = "line" if fmt == "csv" else "row"
    first_row = 2 if fmt == "csv" else 0  # CSV: the header is line 1

    def place(i: int) -> str:
        return f"{where} {i + first_row}"

    found = ", ".join(map(str, frame.columns))
    if id_col not in frame.columns:
        raise DataError(
            f"{path}: no request id column {id_col!r} (monitor.labels.id_column); found: {found}",
            hint="name the column that holds each prediction's request id (the prediction "
            "log's request_id), or set monitor.labels.id_column in conf/monitor/",
        )
    if target not in frame.columns:
        raise DataError(
            f"{path}: no target column {target!r} (data.target); found: {found}",
            hint=f"the true value goes under the target's own name, {target!r}, as in the "
            "training data (a column called 'label' or 'truth' is not read)",
        )
    ids = frame[id_col].astype("string")
    blank = ids.isna() | (ids.str.strip() == "")
    if blank.any():
        i = int(np.flatnonzero(blank.to_numpy())[0])
        raise DataError(
            f"{path}: column {id_col!r}: {int(blank.sum())} rows have no request id "
            f"(first: {place(i)})"
        )
    records = _records(frame, record_col, path, place)
    truth = _truth(frame[target], target, task, path, place)
    labels = pd.DataFrame(
        {"request_id": ids.astype(str).to_numpy(dtype=object), "record": records, "truth": truth}
    )
    duplicated = labels.duplicated(KEYS, keep=False).to_numpy()
    if duplicated.any():
        rows = np.flatnonzero(duplicated)
        first = labels.iloc[rows[0]]
        same = rows[
            (labels["request_id"].to_numpy()[rows] == first["request_id"])
            & (labels["record"].to_numpy()[rows] == first["record"])
        ]
        raise DataError(
            f"{path}: request id {first['request_id']!r} record {first['record']} is labelled "
            f"{len(same)} times ({', '.join(place(int(i)) for i in same[:5])}); "
            f"{int(labels.duplicated(KEYS).sum())} duplicate labels in all",
            hint="each prediction takes one label: keep the right one and remove the others",
        )
    return labels


def _records(
    frame: pd.DataFrame, column: str, path: Path, place: Callable[[int], str]
) -> np.ndarray:
    """The record index of each label: the column's whole non-negative numbers, else 0."""
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=np.int64)
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: column {column!r} (monitor.labels.record_column) must hold record "
            f"indexes (whole numbers >= 0); {int(bad.sum())} rows do not "
            f"(first: {place(i)}, {str(raw.iloc[i])!r})"
        )
    return values.astype(np.int64)


def _truth(
    raw: pd.Series, target: str, task: Task | None, path: Path, place: Callable[[int], str]
) -> np.ndarray:
    """Classifier truth as text (None where empty); regression truth as float (NaN: none)."""
    text = raw.astype("string").str.strip()
    empty = (text.isna() | (text == "")).to_numpy()
    if task != "regression":
        labels = text.fillna("").to_numpy(dtype=object)
        labels[empty] = None
        return labels
    values = pd.to_numeric(text.where(~empty), errors="coerce").to_numpy(dtype=float)
    bad = ~empty & ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: column {target!r}: a regression target must be a number; "
            f"{int(bad.sum())} labels are not (first: {place(i)}, {str(raw.iloc[i])!r})"
        )
    return values


def join_labels(scored: pd.DataFrame, labels: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """`scored` (rows and order kept) with `truth` from `labels` joined on (request_id,
    record), missing where a prediction has no label yet; and the number of labels that match
    no prediction of `scored`."""
    left = scored.drop(columns=["truth"], errors="ignore")
    keys = pd.MultiIndex.from_arrays(
        [left["request_id"].astype(str), left["record"].astype(np.int64)], names=KEYS
    )
    indexed = pd.Series(
        labels["truth"].to_numpy(),
        index=pd.MultiIndex.from_arrays(
            [labels["request_id"].astype(str), labels["record"].astype(np.int64)], names=KEYS
        ),
    )
    joined = left.copy()
    joined["truth"] = indexed.reindex(keys).to_numpy()
    unmatched = int((~indexed.index.isin(keys)).sum())
    return joined, unmatched
