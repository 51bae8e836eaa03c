"""Give each declared column its declared Arrow type, leaving what does not fit for `validate`."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gitml.config.schema import ColumnSpec, DataParams
from gitml.data.coercion import coerce_categories, coerce_numbers
from gitml.data.io import ROW_COLUMN


def apply_declared_types(table: pa.Table, data: DataParams) -> pa.Table:
    """Coerce declared columns as serving does (`gitml.data.coercion`) and add `_row`, the
    source row number.

    Categories become their declared spelling (an unknown value keeps its own text, for
    `validate` to report); empty and whitespace-only cells become null in every column. Ints
    become int64 (float64 when some are empty or fractional, which `validate` then judges);
    floats become float64. A numeric column with a cell that is not a finite number stays as
    it was, so that `validate` can name the offending rows; undeclared columns are kept for
    `validate` to report.
    """
    columns = {}
    for name in table.column_names:
        column = table[name]
        spec = data.columns.get(name)
        if spec is not None:
            column = _coerce(column, spec)
        columns[name] = column
    columns[ROW_COLUMN] = pa.array(np.arange(table.num_rows, dtype=np.int64))
    return pa.table(columns)


def _coerce(column: pa.ChunkedArray, spec: ColumnSpec) -> pa.Array | pa.ChunkedArray:
    if spec.type == "category":
        return coerce_categories(column, spec.categories or []).text()
    numbers = coerce_numbers(column)
    values, null = numbers.values, numbers.null
    with np.errstate(invalid="ignore"):
        if numbers.bad.any() or not np.isfinite(values[~null]).all():
            # not a number, or nan/inf: left as text for `validate` to report by row
            return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
        whole = (np.floor(values) == values) | null
    if spec.type == "int" and not null.any() and whole.all():
        if pa.types.is_integer(column.type):
            return pc.cast(column, pa.int64())  # exact beyond 2**53, unlike a float round trip
        return pa.array(values.astype(np.int64))
    return pa.array(values, pa.float64(), mask=null)
