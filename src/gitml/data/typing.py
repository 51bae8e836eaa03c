"""Give each declared column its declared dtype, leaving what does not fit for `validate`."""

from __future__ import annotations

import pandas as pd

from gitml.config.schema import DataParams


def apply_declared_types(frame: pd.DataFrame, data: DataParams) -> pd.DataFrame:
    """Cast declared columns: categories to strings, ints to int64 (float64 if empty values).

    A numeric column that holds text is left as it is, so that `validate` can name the rows;
    undeclared columns are kept for `validate` to report.
    """
    out = frame.copy()
    for name, spec in data.columns.items():
        if name not in out.columns:
            continue
        column = out[name]
        if spec.type == "category":
            if column.dtype != object:
                out[name] = column.astype(object).where(column.notna(), None)
                out[name] = out[name].map(lambda v: v if v is None else str(v))
        elif pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            integral = spec.type == "int" and not column.isna().any()
            if integral and (column == column.round()).all():
                out[name] = column.astype("int64")
            else:
                out[name] = column.astype("float64")
    return out
