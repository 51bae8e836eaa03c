"""Give each declared column its declared Arrow type, leaving what does not fit for `validate`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

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

    def output_type(self, spec: ColumnSpec) -> pa.DataType:
        """The column's type in the ingested table, as `_coerce` decides it."""
        if self.not_finite:
            return pa.string()
        if spec.type == "int" and not self.null and not self.fractional:
            return pa.int64()
        return pa.float64()


@dataclass
class DeclaredTable:
    """A source table read block by block and held compactly, typed as `apply_declared_types`
    types the whole table: categories as codes into their texts (no string per row), numeric
    columns as read plus their coerced values, until every block has been seen: one bad cell
    anywhere decides how a numeric column is written."""

    schema: pa.Schema
    num_rows: int
    _blocks: list[dict[str, Any]]
    _specs: dict[str, ColumnSpec]
    _flags: dict[str, _NumberFlags]

    def blocks(self) -> Iterator[pa.Table]:
        """The typed table, block by block (each released once yielded), with `_row`."""
        start = 0
        while self._blocks:
            held = self._blocks.pop(0)
            columns: dict[str, pa.Array] = {}
            for name, item in held.items():
                spec = self._specs.get(name)
                if spec is None:
                    columns[name] = item
                elif spec.type == "category":
                    columns[name] = item.dictionary.take(item.indices)
                else:
                    source, values, null = item
                    columns[name] = _number_column(source, values, null, spec, self._flags[name])
            stop = start + len(next(iter(columns.values())))
            columns[ROW_COLUMN] = pa.array(np.arange(start, stop, dtype=np.int64))
            start = stop
            yield pa.table(columns, schema=self.schema)


def _number_column(
    source: pa.Array, values: np.ndarray, null: np.ndarray, spec: ColumnSpec, flags: _NumberFlags
) -> pa.Array:
    """`_coerce` of one block, with the type decided on the whole column (`flags`)."""
    kind = flags.output_type(spec)
    if kind == pa.string():
        return source if pa.types.is_string(source.type) else pc.cast(source, pa.string())
    if kind == pa.int64():
        if pa.types.is_integer(source.type):
            return pc.cast(source, pa.int64())  # exact beyond 2**53
        return pa.array(values.astype(np.int64))
    return pa.array(values, pa.float64(), mask=null)


def collect_declared_types(tables: Iterable[pa.Table], data: DataParams) -> DeclaredTable:
    """Read `tables` (blocks of one source, in order) into a `DeclaredTable`.

    The same values and types as `apply_declared_types` on the concatenated blocks, in a
    fraction of its memory: no copy of the source's text for the category columns.
    """
    blocks: list[dict[str, Any]] = []
    flags: dict[str, _NumberFlags] = {}
    specs: dict[str, ColumnSpec] = {}
    types: dict[str, pa.DataType] = {}
    rows = 0
    for table in tables:
        if not types:
            specs = {n: data.columns[n] for n in table.column_names if n in data.columns}
            flags = {n: _NumberFlags() for n, s in specs.items() if s.type != "category"}
            types = {name: table[name].type for name in table.column_names}
        held: dict[str, Any] = {}
        for name in types:
            column = table[name].combine_chunks()
            spec = specs.get(name)
            if spec is None:
                held[name] = column
            elif spec.type == "category":
                cells = coerce_categories(column, spec.categories or [])
                positions = pa.array(cells.positions.astype(np.int32))
                texts = pa.array(cells.texts, pa.string())
                held[name] = pa.DictionaryArray.from_arrays(positions, texts)
            else:
                numbers = coerce_numbers(column)
                flags[name].update(numbers)
                held[name] = (column, numbers.values, numbers.null)
        blocks.append(held)
        rows += table.num_rows
    fields = []
    for name, kind in types.items():
        spec = specs.get(name)
        if spec is not None:
            kind = pa.string() if spec.type == "category" else flags[name].output_type(spec)
        fields.append(pa.field(name, kind))
    schema = pa.schema([*fields, pa.field(ROW_COLUMN, pa.int64())])
    return DeclaredTable(schema, rows, blocks, specs, flags)
