"""What `--engine dask` cuts its input into, and the errors that cross from workers whole."""

from __future__ import annotations

import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gitml.errors import ClusterError, DataError, InputError
from gitml.monitor.sources import CurrentData, SourcePart
from gitml.serve.partitioned import find_partitions


def _write(path: Path, rows: int = 3, row_group: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"x": list(range(rows))}), path, row_group_size=row_group)
    return path


def test_a_directory_is_its_parquet_files_sorted_without_hidden_or_underscored_ones(
    tmp_path: Path,
) -> None:
    for name in ["b/2.parquet", "a.parquet", "b/1.parquet", "_tmp/x.parquet", ".hid.parquet"]:
        _write(tmp_path / name)
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "notes.txt").write_text("")
    found = find_partitions(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.parquet",
        "b/1.parquet",
        "b/2.parquet",
    ]


def test_a_glob_and_a_single_file(tmp_path: Path) -> None:
    one, two = _write(tmp_path / "d=2.parquet"), _write(tmp_path / "d=1.parquet")
    assert find_partitions(str(tmp_path / "d=*.parquet")) == [two, one]
    assert find_partitions(one) == [one]


def test_no_parquet_or_a_csv_is_refused_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path}: no Parquet files to score"):
        find_partitions(tmp_path)
    with pytest.raises(DataError, match="input not found"):
        find_partitions(tmp_path / "absent")
    (tmp_path / "a.csv").write_text("x\n1\n")
    with pytest.raises(DataError, match=r"a\.csv: --engine dask scores Parquet datasets"):
        find_partitions(str(tmp_path / "a.*"))


def test_monitor_parts_group_row_groups_to_the_chunk_size(tmp_path: Path) -> None:
    big = _write(tmp_path / "big.parquet", rows=10, row_group=2)  # 5 row groups
    small = _write(tmp_path / "small.parquet", rows=1)
    source = CurrentData(tmp_path, "file", [big, small], ["x"], chunk_rows=4)
    parts = source.parts()
    assert parts == [
        SourcePart(big, (0, 1)),
        SourcePart(big, (2, 3)),
        SourcePart(big, (4,)),
        SourcePart(small, (0,)),
    ]
    rows = [x for part in parts for chunk in source.part_chunks(part) for x in chunk["x"]]
    assert rows == [*range(10), 0]


def test_errors_pickle_with_their_hint_and_fields() -> None:
    """What a Dask worker raises reaches the client as raised (distributed pickles it)."""
    error = InputError("f.parquet: row 7: bad", hint="fix it", problems=[{"row": 7}])
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is InputError
    assert (str(back), back.hint, back.problems) == (
        "f.parquet: row 7: bad",
        "fix it",
        [{"row": 7}],
    )
    assert back.format() == "error: f.parquet: row 7: bad\nhint: fix it"
    assert pickle.loads(pickle.dumps(ClusterError("x"))).exit_code == 1
