"""Give each declared column its declared Arrow type, leaving what does not fit for `validate`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gitml.config.schema import ColumnSpec, DataParams
from gitml.data.coercion import Numbers, coerce_categories, coerce_numbers
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


@dataclass
class _NumberFlags:
    """What decides a numeric column's output type, gathered block by block."""

    not_finite: bool = False  # a cell that is not a number, nan or inf: left as text
    null: bool = False
    fractional: bool = False

    def update(self, numbers: Numbers) -> None:
        values, null = numbers.values, numbers.null
        with np.errstate(invalid="ignore"):
            self.not_finite |= bool(numbers.bad.any()) or not np.isfinite(values[~null]).all()
            self.null |= bool(null.any())
            self.fractional |= not ((np.floor(values) == values) | null).all()


@dataclass
class DeclaredTable:
    """A source table read block by block and held compactly, typed as `apply_declared_types`
    types the whole table: categories as codes into their texts (no string per row), other
    columns as read until every block has been seen, since one bad cell anywhere decides
    how a numeric column is written."""

    schema: pa.Schema
    num_rows: int
    _columns: dict[str, pa.ChunkedArray]
    _specs: dict[str, ColumnSpec]
    _flags: dict[str, _NumberFlags]

    def groups(self, rows: int) -> Iterator[pa.Table]:
        """The typed table in slices of `rows` rows (the last one shorter), with `_row`."""
        for start in range(0, self.num_rows, rows):
            stop = min(start + rows, self.num_rows)
            columns: dict[str, pa.Array | pa.ChunkedArray] = {}
            for name, column in self._columns.items():
                piece = column.slice(start, stop - start)
                spec = self._specs.get(name)
                if spec is None:
                    columns[name] = piece
                elif spec.type == "category":
                    columns[name] = pa.chunked_array(
                        [c.dictionary.take(c.indices) for c in piece.chunks], pa.string()
                    )
                else:
                    columns[name] = _coerce_declared(piece, spec, self._flags[name])
            columns[ROW_COLUMN] = pa.array(np.arange(start, stop, dtype=np.int64))
            yield pa.table(columns, schema=self.schema)


def collect_declared_types(tables: Iterable[pa.Table], data: DataParams) -> DeclaredTable:
    """Read `tables` (blocks of one source, in order) into a `DeclaredTable`.

    The same values and types as `apply_declared_types` on the concatenated blocks, in a
    fraction of its memory: no copy of the source's text for the category columns.
    """
    held: dict[str, list[pa.Array]] = {}
    flags: dict[str, _NumberFlags] = {}
    specs: dict[str, ColumnSpec] = {}
    types: dict[str, pa.DataType] = {}
    rows = 0
    for table in tables:
        if not held:
            held = {name: [] for name in table.column_names}
            specs = {n: data.columns[n] for n in table.column_names if n in data.columns}
            flags = {n: _NumberFlags() for n, s in specs.items() if s.type != "category"}
            types = {name: table[name].type for name in table.column_names}
        for name in held:
            column = table[name].combine_chunks()
            spec = specs.get(name)
            if spec is not None and spec.type == "category":
                cells = coerce_categories(column, spec.categories or [])
                positions = pa.array(cells.positions.astype(np.int32))
                texts = pa.array(cells.texts, pa.string())
                column = pa.DictionaryArray.from_arrays(positions, texts)
            elif spec is not None:
                flags[name].update(coerce_numbers(column))
            held[name].append(column)
        rows += table.num_rows
    columns = {
        name: pa.chunked_array(chunks, chunks[0].type if chunks else types[name])
        for name, chunks in held.items()
    }
    fields = []
    for name, column in columns.items():
        spec = specs.get(name)
        if spec is None:
            fields.append(pa.field(name, column.type))
        elif spec.type == "category":
            fields.append(pa.field(name, pa.string()))
        else:
            fields.append(pa.field(name, _declared_type(column.type, spec, flags[name])))
    schema = pa.schema([*fields, pa.field(ROW_COLUMN, pa.int64())])
    return DeclaredTable(schema, rows, columns, specs, flags)


def _declared_type(source: pa.DataType, spec: ColumnSpec, flags: _NumberFlags) -> pa.DataType:
    if flags.not_finite:
        return pa.string()
    if spec.type == "int" and not flags.null and not flags.fractional:
        return pa.int64()
    return pa.float64()


def _coerce_declared(
    column: pa.ChunkedArray, spec: ColumnSpec, flags: _NumberFlags
) -> pa.Array | pa.ChunkedArray:
    """`_coerce` of a slice, with the type decided on the whole column (`flags`)."""
    kind = _declared_type(column.type, spec, flags)
    if kind == pa.string():
        return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
    if kind == pa.int64() and pa.types.is_integer(column.type):
        return pc.cast(column, pa.int64())
    numbers = coerce_numbers(column)
    if kind == pa.int64():
        return pa.array(numbers.values.astype(np.int64))
    return pa.array(numbers.values, pa.float64(), mask=numbers.null)
