"""Profile a CSV or Parquet file in bounded memory: running statistics of every column.

Reading streams (CSV blocks with `pyarrow.csv.open_csv`, Parquet batches with
`iter_batches`), and each column keeps only running statistics: null count, numeric evidence
and range, the date formats that parse every cell, and its distinct values up to
`DISTINCT_LIMIT` (beyond that only the share of distinct values seen when the limit was
passed). Cells are parsed with `gitml.data.coercion`, so what inference declares is what
ingest, validate and serving accept.

`gitml.data.inference` decides the schema from these profiles. (`gitml.data.profile` is a
different thing: the committed distribution profile of the training set.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gitml.data.coercion import category_text, coerce_numbers
from gitml.data.io import (
    ROW_COLUMN,
    check_delimiter,
    detect_format,
    iter_csv_text,
    read_csv_header,
)
from gitml.errors import DataError, first_line

if TYPE_CHECKING:
    import pyarrow as pa

CATEGORY_CAP = 50  # more distinct values than this: a text column is not a category
DISTINCT_LIMIT = 10_000  # distinct values kept exactly per column; beyond: high cardinality
ID_UNIQUE_SHARE = 0.95  # distinct / non-null at or above this (with > CATEGORY_CAP values): ID
DATE_SAMPLE = 200  # cells of the first chunk that every candidate date format must parse
CHUNK_ROWS = 65_536
# ISO 8601 dates and date-times, the text form `datetime.fromisoformat` parses
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
# Other common date and time forms (strptime formats), tried when a column is not ISO 8601:
# those that parse a sample of the first chunk are then confirmed on every cell.
DATE_FORMATS = (
    *(
        f"{date}{time}"
        for date in (
            "%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d", "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y",
            "%d %b %Y", "%b %d, %Y", "%d-%b-%Y", "%d %B %Y", "%B %d, %Y",
        )
        for time in ("", " %H:%M", " %H:%M:%S")
    ),
    "%H:%M",
    "%H:%M:%S",
)  # fmt: skip


@dataclass
class ColumnProfile:
    """Running statistics of one column, updated chunk by chunk (`update`)."""

    name: str
    rows: int = 0
    nulls: int = 0
    not_numbers: int = 0  # non-null cells that are not finite numbers
    fractional: bool = False
    low: float = math.inf
    high: float = -math.inf
    counts: dict[str, int] | None = field(default_factory=dict)  # None: over DISTINCT_LIMIT
    distinct_share: float = 0.0  # distinct / non-null when the limit was passed
    text_chars: int = 0
    text_cells: int = 0
    spaced_cells: int = 0
    text_spaces: int = 0  # spaces in all text cells: words = spaces + cells, roughly
    date_cells: int = 0
    # non-ISO date formats still parsing every cell, with the earliest and latest value parsed;
    # None until the first chunk's sample has been tried
    date_formats: dict[str, tuple[datetime, datetime]] | None = None
    temporal: bool = False  # an Arrow date or timestamp column
    first_text: str | None = None  # the smallest and largest text, for dates
    last_text: str | None = None

    @property
    def non_null(self) -> int:
        return self.rows - self.nulls

    @property
    def numeric(self) -> bool:
        return self.non_null > 0 and self.not_numbers == 0 and not self.temporal

    @property
    def distinct(self) -> int | None:
        """Exact distinct count, None when over `DISTINCT_LIMIT`."""
        return None if self.counts is None else len(self.counts)

    @property
    def id_like(self) -> bool:
        if self.non_null <= CATEGORY_CAP:
            return False
        share = self.distinct_share if self.counts is None else len(self.counts) / self.non_null
        return share >= ID_UNIQUE_SHARE

    @property
    def date_like(self) -> bool:
        return self.temporal or self.iso_dates or bool(self.date_formats)

    @property
    def iso_dates(self) -> bool:
        return self.non_null > 0 and self.date_cells == self.non_null

    def update(self, column: pa.Array | pa.ChunkedArray) -> None:
        """Add one chunk of the column's cells."""
        import pyarrow as pa
        import pyarrow.compute as pc

        self.rows += len(column)
        kind = column.type
        if pa.types.is_dictionary(kind):
            column = column.cast(kind.value_type)
            kind = column.type
        if pa.types.is_temporal(kind):
            self.temporal = True
            self.nulls += column.null_count
            self._texts(pc.cast(column.drop_null(), pa.string()), formats=False)
            return
        is_text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
        if is_text and self.not_numbers:
            # not a numeric column (seen already): only its text matters from here on
            text = pc.utf8_trim_whitespace(column)
            text = text.filter(pc.not_equal(text, ""))  # blank and null cells are missing
            self.nulls += len(column) - len(text)
            self._texts(text)
            return
        numbers = coerce_numbers(column)
        null, bad = numbers.null, numbers.bad
        with np.errstate(invalid="ignore"):
            bad = bad | (~null & ~np.isfinite(numbers.values))
        self.nulls += int(null.sum())
        self.not_numbers += int(bad.sum())
        values = numbers.values[~null & ~bad]
        if len(values):
            self.low = min(self.low, float(values.min()))
            self.high = max(self.high, float(values.max()))
            self.fractional = self.fractional or bool((np.floor(values) != values).any())
        if is_text:
            text = pc.utf8_trim_whitespace(column.filter(pa.array(~null)))
            if self.not_numbers:
                self._texts(text)
            elif self.counts is not None:  # numbers so far: their text is not looked at
                self._count(text.value_counts(), as_text=False)
        elif self.counts is not None:
            self._count(column.filter(pa.array(~null)).value_counts(), as_text=True)

    def _texts(self, text: pa.Array, *, formats: bool = True) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if not len(text):
            return
        self.text_cells += len(text)
        counted = text.value_counts() if self.counts is not None else None
        # few distinct values (a category): measure each once, weighted by its count
        values, weights = text, None
        if counted is not None and len(counted) * 4 <= len(text):
            values, weights = counted.field("values"), counted.field("counts")

        def total(per_value: pa.Array) -> int:
            if weights is not None:
                per_value = pc.multiply(pc.cast(per_value, pa.int64()), weights)
            return int(pc.sum(per_value).as_py() or 0)

        self.text_chars += total(pc.utf8_length(values))
        self.spaced_cells += total(pc.match_substring(values, " "))
        self.text_spaces += total(pc.count_substring(values, " "))
        iso = total(pc.match_substring_regex(values, _ISO_DATE))
        self.date_cells += iso
        if formats:
            self._date_formats(text, values, all_iso=iso == len(text))
        bounds = pc.min_max(values).as_py()
        if self.first_text is None or bounds["min"] < self.first_text:
            self.first_text = bounds["min"]
        if self.last_text is None or bounds["max"] > self.last_text:
            self.last_text = bounds["max"]
        if counted is not None:
            self._count(counted, as_text=False)

    def _date_formats(self, text: pa.Array, values: pa.Array, *, all_iso: bool) -> None:
        """Keep the `DATE_FORMATS` that parse every cell: tried on a sample of the first chunk
        (in Python), then confirmed on every chunk's (distinct) `values`, vectorised."""
        import pyarrow.compute as pc

        if self.date_formats is None:
            sample = [] if all_iso else text.slice(0, DATE_SAMPLE).to_pylist()
            self.date_formats = {
                fmt: (datetime.max, datetime.min)
                for fmt in DATE_FORMATS
                if sample and all(_parses(cell, fmt) for cell in sample)
            }
        for fmt, (first, last) in list(self.date_formats.items()):
            parsed = pc.strptime(values, format=fmt, unit="s", error_is_null=True)
            if parsed.null_count:
                del self.date_formats[fmt]
                continue
            bounds = pc.min_max(parsed).as_py()
            self.date_formats[fmt] = (min(first, bounds["min"]), max(last, bounds["max"]))

    def _count(self, counted: pa.StructArray, *, as_text: bool) -> None:
        assert self.counts is not None
        values = counted.field("values").to_pylist()
        counts = counted.field("counts").to_pylist()
        for value, count in zip(values, counts, strict=True):
            key = category_text(value) if as_text else value
            key = key if isinstance(key, str) else str(value)
            self.counts[key] = self.counts.get(key, 0) + count
        if len(self.counts) > DISTINCT_LIMIT:
            self.distinct_share = len(self.counts) / max(self.non_null, 1)
            self.counts = None


def profile_file(path: Path, *, fmt: str = "auto") -> tuple[int, dict[str, ColumnProfile]]:
    """Profile every column of a CSV (optionally compressed) or Parquet file, streaming."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes)")
    profiles: dict[str, ColumnProfile] = {}
    rows = 0
    for batch in _batches(path, detect_format(path, fmt)):
        if not profiles:
            profiles = {name: ColumnProfile(name) for name in batch.column_names}
        for name in profiles:
            profiles[name].update(batch.column(name))
        rows += batch.num_rows
    if not profiles:
        raise DataError(f"{path}: no columns found (is the header line missing?)")
    if ROW_COLUMN in profiles:
        raise DataError(f"{path}: column name {ROW_COLUMN!r} is reserved by gitml; rename it")
    if rows == 0:
        raise DataError(f"{path}: the file has a header but no data rows")
    return rows, profiles


def _batches(path: Path, fmt: str) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt != "parquet":
        check_delimiter(path, None)  # a `;`- or tab-separated file: say so, not "1 column"
        names = read_csv_header(path)  # a DataError naming the file if it is not a CSV
    try:
        if fmt == "parquet":
            reader = pq.ParquetFile(path)
            names = [n for n in reader.schema_arrow.names if not n.startswith("__index_level_")]
            if not names:
                return
            yield from reader.iter_batches(batch_size=CHUNK_ROWS, columns=names)
            return
        yield from iter_csv_text(path, names, block_size=1 << 20)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as err:
        kind = "Parquet" if fmt == "parquet" else "CSV"
        raise DataError(f"{path}: not a readable {kind} file: {first_line(err)}") from err


def _parses(cell: Any, fmt: str) -> bool:
    try:
        datetime.strptime(cell, fmt)
    except (TypeError, ValueError):
        return False
    return True
