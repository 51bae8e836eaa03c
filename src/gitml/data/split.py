"""Deterministic train/test split of an Arrow table or a Parquet file: stratified for
classification."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gitml.config.schema import SplitParams
from gitml.data.io import iter_arrow, read_arrow, read_arrow_schema, write_arrow_stream
from gitml.errors import DataError
from gitml.tasks import Task, is_classification


def split_indices(
    labels: pa.ChunkedArray, split: SplitParams, *, stratify: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of (train, test), each sorted; stratified on `labels` when `stratify`
    (default: `split.stratify`).

    Each class (or the whole table) is shuffled with a generator seeded by `split.seed` and
    its first round(n * test_size) rows go to test, so the same data, seed and fraction give
    the same split on any machine. Written on numpy rather than scikit-learn's
    train_test_split: importing scikit-learn would cost this stage over a second on every run.
    """
    n = len(labels)
    rng = np.random.default_rng(split.seed)
    if split.stratify if stratify is None else stratify:
        encoded = pc.dictionary_encode(labels).combine_chunks()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        order = np.argsort(encoded.dictionary.to_pylist())  # classes in sorted order
        groups = [np.flatnonzero(codes == code) for code in order]
    else:
        groups = [np.arange(n)]
    test_parts = []
    for rows in groups:
        shuffled = rng.permutation(rows)
        test_parts.append(shuffled[: round(len(rows) * split.test_size)])
    test = np.sort(np.concatenate(test_parts)) if test_parts else np.empty(0, dtype=np.int64)
    if len(test) == 0 or len(test) == n:
        raise DataError(
            f"split.test_size={split.test_size} leaves an empty train or test set with {n:,} rows",
            hint="use more data or a test_size that leaves rows on both sides",
        )
    train = np.setdiff1d(np.arange(n), test, assume_unique=True)
    return train, test


def split_table(
    table: pa.Table, split: SplitParams, *, target: str, task: Task = "binary"
) -> tuple[pa.Table, pa.Table]:
    """Split rows into (train, test) tables, keeping row order and the `_row` column.

    Classification (binary, multiclass) is stratified on the target when `split.stratify`;
    a regression target has no classes to stratify on, so its rows are shuffled as one group
    with the seed, whatever `split.stratify` says.
    """
    stratify = split.stratify and is_classification(task)
    train, test = split_indices(table[target], split, stratify=stratify)
    return table.take(pa.array(train)), table.take(pa.array(test))


def split_file(
    source: str | os.PathLike[str],
    train: str | os.PathLike[str],
    test: str | os.PathLike[str],
    split: SplitParams,
    *,
    target: str,
    task: Task = "binary",
) -> tuple[int, int]:
    """Split the Parquet file `source` into `train` and `test` files; their row counts.

    The rows and bytes `split_table` gives for the whole table, without holding it: the
    split is decided on the target column alone, then the file streams through one row
    group at a time. Both outputs are replaced only if both are written.
    """
    stratify = split.stratify and is_classification(task)
    schema = read_arrow_schema(source)
    if target not in schema.names:
        raise DataError(
            f"{source}: has no target column {target!r} (found: {', '.join(schema.names)})",
            hint="run the validate stage: it checks every declared column",
        )
    labels = read_arrow(source, columns=[target])[target]
    _, test_rows = split_indices(labels, split, stratify=stratify)
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_rows] = True
    del labels, test_rows
    with (
        write_arrow_stream(train, schema) as append_train,
        write_arrow_stream(test, schema) as append_test,
    ):
        offset = 0
        for group in iter_arrow(source):
            mask = pa.array(is_test[offset : offset + group.num_rows])
            append_test(group.filter(mask))
            append_train(group.filter(pc.invert(mask)))
            offset += group.num_rows
    tests = int(is_test.sum())
    return len(is_test) - tests, tests
