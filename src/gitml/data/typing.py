"""Give each declared column its declared Arrow type, leaving what does not fit for `validate`."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gitml.config.schema import DataParams
from gitml.data.io import ROW_COLUMN


def apply_declared_types(table: pa.Table, data: DataParams) -> pa.Table:
    """Cast declared columns and add `_row`, the source row number.

    Categories become strings; ints become int64 (float64 when some are empty or fractional,
    which `validate` then reports); floats become float64. A numeric column that holds text
    stays text, so that `validate` can name the offending rows; undeclared columns are kept
    for `validate` to report.
    """
    columns = {}
    for name in table.column_names:
        column = table[name]
        spec = data.columns.get(name)
        if spec is not None:
            column = _cast(column, spec.type)
        columns[name] = column
    columns[ROW_COLUMN] = pa.array(np.arange(table.num_rows, dtype=np.int64))
    return pa.table(columns)


def _cast(column: pa.ChunkedArray, kind: str) -> pa.ChunkedArray:
    kind_of = column.type
    numeric = pa.types.is_integer(kind_of) or pa.types.is_floating(kind_of)
    if kind == "category":
        return column if pa.types.is_string(kind_of) else pc.cast(column, pa.string())
    if not numeric:
        return column  # text in a numeric column: left for `validate` to report
    if kind == "int" and column.null_count == 0:
        if pa.types.is_integer(kind_of):
            return pc.cast(column, pa.int64())
        if pc.all(pc.equal(column, pc.floor(column))).as_py():
            return pc.cast(column, pa.int64())
    return pc.cast(column, pa.float64())
