"""Infer a data schema: profile a CSV or Parquet file in bounded memory, then decide each column.

Reading streams (CSV blocks with `pyarrow.csv.open_csv`, Parquet batches with
`iter_batches`), and each column keeps only running statistics: null count, numeric evidence
and range, and its distinct values up to `DISTINCT_LIMIT` (beyond that only the share of
distinct values seen when the limit was passed). Cells are parsed with `gitml.data.coercion`,
so what inference declares is what ingest, validate and serving accept.

The decisions (`draft_schema`) are pure: profiles in, a `SchemaDraft` out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gitml.config.data_yaml import DraftColumn, SchemaDraft
from gitml.data.coercion import category_text, coerce_numbers
from gitml.data.io import ROW_COLUMN, detect_format, iter_csv_text, read_csv_header
from gitml.errors import DataError, first_line

if TYPE_CHECKING:
    import pyarrow as pa

CATEGORY_CAP = 50  # more distinct values than this: a text column is not a category
DISTINCT_LIMIT = 10_000  # distinct values kept exactly per column; beyond: high cardinality
ID_UNIQUE_SHARE = 0.95  # distinct / non-null at or above this (with > CATEGORY_CAP values): ID
SLICE_MAX = 5  # categorical columns with 2..SLICE_MAX values are slice candidates
MARGIN = 0.10  # observed ranges are widened by this share of the range on each side
FREE_TEXT_CHARS = 25  # mean length of text with spaces at or above which it is free text
FREE_TEXT_WORDS = 3.0  # mean words per cell at or above which it is free text
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

POLICIES = [
    f"ranges: the observed min/max widened by {MARGIN:.0%} of the range (not below 0 when "
    "every value seen was >= 0; ints stay ints)",
    f"categories: text columns with at most {CATEGORY_CAP} distinct values; above that they "
    "are excluded as high-cardinality",
    f"excluded: ID-like columns (>= {ID_UNIQUE_SHARE:.0%} distinct values), constant columns, "
    f"free text (more than {CATEGORY_CAP} distinct values, on average {FREE_TEXT_WORDS:.0f}+ "
    f"words or {FREE_TEXT_CHARS}+ characters with spaces), and dates/times (ISO 8601 or a "
    "common format, parsed on every row; not turned into features yet: derive them to use them)",
    "nullable: columns with blanks; max_null_fraction is twice the rate seen plus 1 point",
]


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


def draft_schema(
    profiles: dict[str, ColumnProfile],
    *,
    rows: int,
    target: str,
    name: str,
    source: str,
    positive_class: str | None = None,
    task: str = "auto",
) -> SchemaDraft:
    """Decide every column and the task (`task`: auto, or one to check) from the profiles."""
    if target not in profiles:
        import difflib

        close = difflib.get_close_matches(target, list(profiles), n=3, cutoff=0.5)
        near = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise DataError(
            f"{source}: no column {target!r} to use as --target{near}",
            hint=f"columns: {', '.join(list(profiles)[:20])}",
        )
    told, positive = infer_task(
        profiles[target], source=source, positive_class=positive_class, task=task
    )
    kind = told.split(" ")[0]
    columns = [
        _target_column(profiles[target], kind) if n == target else decide_column(p)
        for n, p in profiles.items()
    ]
    slices = [
        c.name
        for c in columns
        if c.name != target and c.spec is not None and not c.excluded and _sliceable(c.spec)
    ]
    return SchemaDraft(
        name=name,
        source=source,
        target=target,
        positive_class=positive,
        task=told,
        rows=rows,
        columns=columns,
        slices=slices,
        policies=POLICIES,
    )


def infer_task(
    profile: ColumnProfile,
    *,
    source: str,
    positive_class: str | None = None,
    task: str = "auto",
) -> tuple[str, str | None]:
    """The task the target implies (or `task`, checked against the target), as printed, and
    the positive class (binary only)."""
    where = f"{source}: target {profile.name!r}"
    if profile.non_null == 0:
        raise DataError(f"{where} is empty in all {profile.rows:,} rows: nothing to learn")
    counts = profile.counts
    if counts is not None and len(counts) == 1:
        only = next(iter(counts))
        raise DataError(
            f"{where} has one value ({only!r}) in all {profile.non_null:,} non-empty rows: "
            "nothing to predict",
            hint="pick the column that varies with the outcome as --target",
        )
    found = _implied_task(profile)
    chosen = found if task == "auto" else task
    if chosen != "binary" and positive_class is not None:
        raise DataError(
            f"{where}: --positive-class applies to a binary task, not {chosen}",
            hint="drop --positive-class, or pass --task binary with a two-valued target",
        )
    if chosen == "binary":
        if counts is None or len(counts) != 2:
            shown = "many" if counts is None else f"{len(counts):,}"
            raise DataError(f"{where}: --task binary needs exactly 2 values, found {shown}")
        classes = sorted(counts)
        if positive_class is not None:
            if positive_class not in classes:
                raise DataError(
                    f"{where}: --positive-class {positive_class!r} is not one of its values "
                    f"{classes}"
                )
            return f"binary (positive class {positive_class!r}: given)", positive_class
        # the minority class; on a tie, the later one in sorted order ("1", "Yes")
        positive = min(reversed(classes), key=lambda c: counts[c])
        seen = f"{counts[positive]:,} of {profile.non_null:,} rows"
        return f"binary (positive class {positive!r}: the minority class, {seen})", positive
    if chosen == "regression":
        if not profile.numeric:
            raise DataError(f"{where}: --task regression needs a numeric target; it holds text")
        shown = "many" if counts is None else f"{len(counts):,}"
        return (
            f"regression (numeric, {shown} distinct values, {_num(profile.low)} to "
            f"{_num(profile.high)})",
            None,
        )
    if counts is None or len(counts) > CATEGORY_CAP:
        raise DataError(
            f"{where} has more than {CATEGORY_CAP} distinct values: not a class label",
            hint="pick a column with a few classes as --target, or --task regression "
            "for a numeric one",
        )
    if len(counts) < 3:
        raise DataError(f"{where}: --task multiclass needs 3 or more classes, found 2 (binary)")
    return f"multiclass ({len(counts)} classes: {', '.join(sorted(counts))})", None


def _implied_task(profile: ColumnProfile) -> str:
    """2 values: binary; numeric with fractions or many values: regression; else multiclass."""
    counts = profile.counts
    if counts is not None and len(counts) == 2:
        return "binary"
    if profile.numeric and (profile.fractional or counts is None or len(counts) > CATEGORY_CAP):
        return "regression"
    return "multiclass"


def decide_column(profile: ColumnProfile) -> DraftColumn:
    """How one feature column is declared, or why it is excluded."""
    seen = _seen(profile)
    nullable: dict[str, Any] = _nullability(profile)
    counts = profile.counts
    if profile.non_null == 0:
        spec = {"type": "float", "nullable": True}
        return DraftColumn(profile.name, spec, seen, "empty in every row")
    if profile.date_like:
        return DraftColumn(profile.name, None, *_date_notes(profile))
    if profile.numeric:
        kind = "float" if profile.fractional else "int"
        if counts is not None and len(counts) == 1:
            spec = {"type": kind, **nullable}
            return DraftColumn(profile.name, spec, seen, f"constant (always {next(iter(counts))})")
        if kind == "int" and profile.id_like:
            return DraftColumn(profile.name, {"type": "int", **nullable}, seen, "ID-like")
        if kind == "int" and counts is not None and set(counts) <= {"0", "1"}:
            return DraftColumn(profile.name, {"type": "int", "allowed": [0, 1], **nullable}, seen)
        low, high = widen(profile.low, profile.high, integer=kind == "int")
        return DraftColumn(profile.name, {"type": kind, "min": low, "max": high, **nullable}, seen)
    if counts is not None and len(counts) == 1:
        spec = {"type": "category", "categories": list(counts), **nullable}
        return DraftColumn(profile.name, spec, seen, f"constant (always {next(iter(counts))!r})")
    cells = max(profile.text_cells, 1)
    mean_chars = profile.text_chars / cells
    mean_words = (profile.text_spaces + profile.text_cells) / cells
    many = counts is None or len(counts) > CATEGORY_CAP
    long = mean_chars >= FREE_TEXT_CHARS and profile.spaced_cells * 2 >= profile.text_cells
    if many and (long or mean_words >= FREE_TEXT_WORDS):
        return DraftColumn(
            profile.name,
            None,
            seen,
            f"excluded: free text (on average {mean_chars:.0f} characters, {mean_words:.1f} words)",
        )
    if profile.id_like:
        return DraftColumn(profile.name, None, seen, "excluded: ID-like (near-unique keys)")
    if counts is None or len(counts) > CATEGORY_CAP:
        return DraftColumn(
            profile.name,
            None,
            seen,
            f"excluded: high-cardinality (more than {CATEGORY_CAP} categories)",
        )
    spec = {"type": "category", "categories": sorted(counts), **nullable}
    return DraftColumn(profile.name, spec, seen)


def widen(low: float, high: float, *, integer: bool) -> tuple[float, float]:
    """[low, high] widened by MARGIN of the range on each side, never below 0 when low >= 0;
    rounded outwards (to whole numbers for ints, to 3 significant digits of the range else)."""
    span = high - low
    margin = MARGIN * span if span > 0 else max(abs(high) * MARGIN, 1.0)
    lo, hi = low - margin, high + margin
    if low >= 0:
        lo = max(lo, 0.0)
    if integer:
        return math.floor(lo), math.ceil(hi)
    digits = 2 - math.floor(math.log10(span if span > 0 else margin))
    step = 10.0**-digits
    places = max(digits, 0)
    return round(math.floor(lo / step) * step, places), round(math.ceil(hi / step) * step, places)


def _target_column(profile: ColumnProfile, kind: str) -> DraftColumn:
    """The target's declaration: categories for a classifier, a widened range for regression
    (never excluded, even when near-unique as a regression target often is)."""
    if kind == "regression":
        integer = not profile.fractional
        low, high = widen(profile.low, profile.high, integer=integer)
        spec: dict[str, Any] = {"type": "int" if integer else "float", "min": low, "max": high}
    else:
        spec = {"type": "category", "categories": sorted(profile.counts or {})}
    spec.update(_nullability(profile))
    return DraftColumn(profile.name, spec, f"target; {_seen(profile)}")


def _nullability(profile: ColumnProfile) -> dict[str, Any]:
    if not profile.nulls:
        return {}
    rate = profile.nulls / profile.rows
    return {
        "nullable": True,
        # rounded up to 0.1 %, after rounding away float noise (0.41 * 1000 is 410.00000000000006)
        "max_null_fraction": min(1.0, math.ceil(round((2 * rate + 0.01) * 1000, 6)) / 1000),
    }


def _seen(profile: ColumnProfile) -> str:
    parts = [
        f"{profile.nulls / profile.rows:.2%} null ({profile.nulls:,} of {profile.rows:,} rows)"
        if profile.nulls
        else "no nulls"
    ]
    distinct = profile.distinct
    parts.append(
        f"over {DISTINCT_LIMIT:,} distinct" if distinct is None else f"{distinct:,} distinct"
    )
    if profile.numeric:
        parts.append(f"seen {_num(profile.low)} to {_num(profile.high)}")
    return ", ".join(parts)


def _date_notes(profile: ColumnProfile) -> tuple[str, str]:
    """What a date/time column holds (its span, its format) and why it is left out."""
    policy = "not turned into features yet; derive some (year, month, weekday...) to use it"
    if profile.temporal or profile.iso_dates:
        try:
            for text in (profile.first_text, profile.last_text):
                datetime.fromisoformat(str(text).replace("Z", "+00:00"))
            parsed = "parsed as ISO 8601"
        except ValueError:
            parsed = "looks like ISO 8601"
        seen = f"dates/times {profile.first_text} to {profile.last_text}"
        return seen, f"excluded: a date/time column ({parsed}); {policy}"
    formats = profile.date_formats or {}
    first = min(span[0] for span in formats.values())
    last = max(span[1] for span in formats.values())
    shown = " or ".join(formats)
    if len(formats) > 1:
        shown += " (ambiguous: every value parses either way)"
    when = [_moment(first), _moment(last)]
    return (
        f"dates/times {when[0]} to {when[1]}",
        f"excluded: a date/time column (format {shown}, parsed in every row); {policy}",
    )


def _moment(value: datetime) -> str:
    if value.year == 1900 and value.month == value.day == 1:  # a time of day alone
        return value.time().isoformat()
    return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()


def _parses(cell: Any, fmt: str) -> bool:
    try:
        datetime.strptime(cell, fmt)
    except (TypeError, ValueError):
        return False
    return True


def _sliceable(spec: dict[str, Any]) -> bool:
    if spec.get("allowed") == [0, 1]:
        return True
    return spec["type"] == "category" and 2 <= len(spec.get("categories") or []) <= SLICE_MAX


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


_SLUG_CHARS = re.compile(r"[^a-z0-9_-]+")


def schema_name(path: Path) -> str:
    """A `DataParams.name` from the file name: `Telco Churn.csv.gz` -> `telco_churn`."""
    stem = path.name.split(".")[0].lower()
    slug = _SLUG_CHARS.sub("_", stem).strip("_-")
    return slug or "data"


def infer_schema(
    path: Path,
    *,
    target: str,
    name: str,
    source: str,
    positive_class: str | None = None,
    task: str = "auto",
    fmt: str = "auto",
) -> SchemaDraft:
    """Profile `path` (streaming) and draft its schema; `source` is the path as written."""
    rows, profiles = profile_file(path, fmt=fmt)
    return draft_schema(
        profiles,
        rows=rows,
        target=target,
        name=name,
        source=source,
        positive_class=positive_class,
        task=task,
    )
