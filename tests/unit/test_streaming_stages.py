"""Streaming ingest and split give what the whole-table path gives, whatever the block size."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gitml.config.compose import load_params
from gitml.config.schema import Params
from gitml.data.io import iter_source, read_source, write_arrow, write_arrow_stream
from gitml.data.profile import profile_frame
from gitml.data.split import split_file, split_table
from gitml.data.typing import apply_declared_types, collect_declared_types
from gitml.data.validation import validate_frame
from gitml.errors import DataError
from gitml.model.fit import _class_labels

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "data/external/telco_churn.csv.gz"


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(ROOT / "params.yaml")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ingest(source: Path, params: Params, out: Path, *, block_size: int, group_rows: int) -> None:
    blocks = iter_source(source, expected=list(params.data.columns), block_size=block_size)
    table = collect_declared_types(blocks, params.data)
    with write_arrow_stream(out, table.schema, group_rows=group_rows) as append:
        for block in table.blocks():
            append(block)


def test_stream_writes_the_bytes_of_the_whole_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    table = pa.table(
        {
            "c": pa.array(rng.choice(["No", "Yes", None], 5000).tolist(), pa.string()),
            "x": rng.random(5000),
        }
    )
    whole = tmp_path / "whole.parquet"
    pq.write_table(table, whole, row_group_size=1000)
    for piece in (1, 7, 999, 1000, 4999, 6000):
        out = tmp_path / f"stream-{piece}.parquet"
        with write_arrow_stream(out, table.schema, group_rows=1000) as append:
            for start in range(0, table.num_rows, piece):
                append(table.slice(start, piece))
        assert _digest(out) == _digest(whole), piece
    with write_arrow_stream(tmp_path / "empty.parquet", table.schema):
        pass
    write_arrow(tmp_path / "empty-whole.parquet", table.schema.empty_table())
    assert _digest(tmp_path / "empty.parquet") == _digest(tmp_path / "empty-whole.parquet")


def test_failed_stream_leaves_the_last_good_file(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    out.write_bytes(b"last good")
    table = pa.table({"x": [1, 2, 3]})
    with pytest.raises(RuntimeError), write_arrow_stream(out, table.schema) as append:
        append(table)
        raise RuntimeError("killed")
    assert out.read_bytes() == b"last good"


def test_streaming_ingest_matches_the_whole_table(tmp_path: Path, params: Params) -> None:
    whole = tmp_path / "whole.parquet"
    write_arrow(whole, apply_declared_types(read_source(SOURCE), params.data))
    reference = pq.read_table(whole)
    for block_size in (1 << 16, 1 << 24):  # many CSV blocks, and one
        out = tmp_path / f"stream-{block_size}.parquet"
        _ingest(SOURCE, params, out, block_size=block_size, group_rows=1000)
        assert pq.read_table(out).equals(reference), block_size
    _ingest(SOURCE, params, out, block_size=1 << 16, group_rows=1024 * 1024)
    assert _digest(out) == _digest(whole)  # one row group, as dvc.lock pins it


def test_streaming_a_parquet_source_matches_the_whole_table(tmp_path: Path, params: Params) -> None:
    source = tmp_path / "telco.parquet"
    pq.write_table(read_source(SOURCE), source, row_group_size=1000)
    whole = tmp_path / "whole.parquet"
    write_arrow(whole, apply_declared_types(read_source(source), params.data))
    out = tmp_path / "stream.parquet"
    _ingest(source, params, out, block_size=1 << 16, group_rows=1024 * 1024)
    assert _digest(out) == _digest(whole)


def test_a_late_block_decides_a_column_type(tmp_path: Path, params: Params) -> None:
    """A fractional, empty or bad cell in the last block types the whole column, as
    `apply_declared_types` types it on the whole table."""
    frame = pd.read_csv(SOURCE, dtype=str, keep_default_na=False)
    frame.loc[len(frame) - 1, "tenure"] = "2.5"
    frame.loc[len(frame) - 2, "monthly_charges"] = "lots"
    frame.loc[len(frame) - 3, "senior_citizen"] = ""
    source = tmp_path / "late.csv.gz"
    with gzip.open(source, "wt", encoding="utf-8", newline="") as fh:
        frame.to_csv(fh, index=False)
    out = tmp_path / "stream.parquet"
    _ingest(source, params, out, block_size=1 << 16, group_rows=500)
    typed = pq.read_table(out)
    expected = apply_declared_types(read_source(source), params.data)
    assert typed.schema.field("tenure").type == pa.float64()
    assert typed.schema.field("monthly_charges").type == pa.string()
    assert typed.schema.field("senior_citizen").type == pa.float64()
    for name in ("tenure", "monthly_charges", "senior_citizen", "contract", "_row"):
        assert typed[name].to_pylist() == expected[name].to_pylist(), name


def test_streaming_source_refuses_a_ragged_line(tmp_path: Path) -> None:
    source = tmp_path / "ragged.csv"
    source.write_text("a,b\n1,2\n" + "3,4\n" * 20000 + "5\n")
    with pytest.raises(DataError, match=r"ragged\.csv: not a well-formed CSV file"):
        list(iter_source(source, block_size=1 << 16))


def test_streaming_split_writes_what_the_whole_table_split_writes(
    tmp_path: Path, params: Params
) -> None:
    raw = tmp_path / "raw.parquet"
    table = apply_declared_types(read_source(SOURCE), params.data)
    pq.write_table(table, raw, row_group_size=1000)  # several row groups to stream through
    train, test = split_table(table, params.split, target="churn")
    write_arrow(tmp_path / "train-whole.parquet", train)
    write_arrow(tmp_path / "test-whole.parquet", test)
    rows = split_file(
        raw, tmp_path / "train.parquet", tmp_path / "test.parquet", params.split, target="churn"
    )
    assert rows == (train.num_rows, test.num_rows)
    for name in ("train", "test"):
        assert _digest(tmp_path / f"{name}.parquet") == _digest(tmp_path / f"{name}-whole.parquet")
    with pytest.raises(DataError, match="has no target column 'label'"):
        split_file(raw, tmp_path / "a", tmp_path / "b", params.split, target="label")


def test_category_counts_and_labels_read_off_codes(params: Params) -> None:
    frame = pd.DataFrame(
        {
            "contract": pd.Categorical(
                ["Two year", "Month-to-month", "Two year", None],
                categories=["Month-to-month", "One year", "Two year"],
            ),
            "churn": pd.Categorical(["Yes", "No", "No", "No"], categories=["No", "Yes", "Later"]),
        }
    )
    profile = profile_frame(frame, params.data)
    as_text = profile_frame(frame.astype(object), params.data)
    assert profile == as_text
    assert profile["contract"]["counts"] == {"Month-to-month": 1, "Two year": 2}
    y, counts = _class_labels(frame["churn"])
    expected = frame["churn"].astype(str).to_numpy(dtype=str)
    assert y.dtype == expected.dtype and (y == expected).all()
    assert counts == {"No": 3, "Yes": 1}


def test_duplicates_match_a_group_by_over_every_column(params: Params) -> None:
    """The duplicate rows and the earlier row each example repeats, as a group-by over every
    column (missing equal to missing, -0.0 to 0.0) finds them."""
    rng = np.random.default_rng(5)
    n = 3000
    frame = pd.DataFrame(
        {
            "contract": pd.Categorical(rng.choice(["One year", "Two year", None], n)),
            "tenure": rng.choice([0.0, -0.0, 1.5, np.nan], n),
            "note": rng.choice(["a", "b", None], n).astype(object),
        },
        index=pd.Index(np.arange(n) + 10, name="_row"),
    )
    rules = params.validate_.model_copy(update={"max_duplicate_fraction": 1.0, "examples": 5})
    report = validate_frame(frame, params.data, rules, source="t.csv")
    (finding,) = [f for f in report.findings if f.rule == "duplicates"]
    groups = frame.groupby(list(frame.columns), dropna=False, observed=True, sort=False).ngroup()
    duplicated = groups.duplicated(keep="first")
    first_seen = groups.drop_duplicates(keep="first")
    first_row = pd.Series(first_seen.index, index=first_seen.to_numpy())
    shown = frame.index[duplicated.to_numpy()][:5]
    assert finding.count == int(duplicated.sum())
    assert [e["row"] for e in finding.examples] == [int(i) + 1 for i in shown]
    assert [e["value"] for e in finding.examples] == [
        f"same as row {int(first_row[groups[i]]) + 1}" for i in shown
    ]
