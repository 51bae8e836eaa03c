"""Counts on bins the reference defines: what every drift test and quality check reads.

A reference is profiled once (`profile_reference`): numeric columns get bin edges (its
distinct values when there are at most `monitor.quantiles`, else that many quantiles),
categorical columns their signature categories. A batch, or any chunk of one, is then only
counted on those bins (`count_batch`): counts of chunks add up (`BatchCounts.merge`), so a
stream of chunks or Dask partitions gives exactly the counts of the whole frame, in memory
bounded by the bins, not the rows.

Cells are read with the one coercion (`gitml.data.coercion`), so a value that serving
accepts, refuses or treats as missing counts here as valid, invalid or null alike. An int
column with `allowed` values is counted as categories (its allowed values), like a category.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from gitml.data.coercion import (
    BAD,
    NULL,
    VALID,
    Numbers,
    category_cell,
    category_index,
    coerce_number_values,
    coerce_numbers,
)
from gitml.errors import DataError, ModelError
from gitml.monitor.result import Kind, Role

if TYPE_CHECKING:
    import pandas as pd

    from gitml.config.schema import MonitorParams

MAX_UNSEEN_KEPT = 1000  # distinct unseen values counted per column (the total stays exact)
MAX_EXAMPLES = 5  # offending values kept per column and rule


@dataclass(frozen=True)
class MonitoredColumn:
    """A column the monitor tests: a signature input, or one of the model's outputs."""

    name: str
    role: Role
    kind: Kind
    categories: tuple[str, ...] = ()  # categorical: the declared categories, as text
    allowed: tuple[float, ...] | None = None  # an int column counted as its allowed values
    min: float | None = None  # the signature's declared range (out_of_range)
    max: float | None = None


@dataclass(frozen=True)
class ColumnCounts:
    """One column's counts over some rows; they add up across chunks."""

    missing: int = 0  # rows of chunks that lacked the column
    null: int = 0
    invalid: int = 0  # values that are not what the column holds (not numbers, not text)
    out_of_range: int = 0  # numbers outside the declared min/max
    bins: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    unseen_total: int = 0  # categorical: values outside the declared categories
    unseen: Mapping[str, int] = field(default_factory=dict)
    below: float = 0.0  # numeric: sum of (reference min - x) over x below the reference min
    above: float = 0.0  # numeric: sum of (x - reference max) over x above the reference max
    examples: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # rule -> values

    @property
    def valid(self) -> int:
        """Rows with a usable value: counted in `bins` (and unseen, for categories)."""
        return int(self.bins.sum()) + self.unseen_total

    def merge(self, other: ColumnCounts) -> ColumnCounts:
        unseen = dict(self.unseen)
        for key, count in other.unseen.items():
            unseen[key] = unseen.get(key, 0) + count
        unseen = _top(unseen)
        examples = {k: tuple(v) for k, v in self.examples.items()}
        for rule, values in other.examples.items():
            have = examples.get(rule, ())
            examples[rule] = (
                have + tuple(v for v in values if v not in have)[: MAX_EXAMPLES - len(have)]
            )
        return ColumnCounts(
            missing=self.missing + other.missing,
            null=self.null + other.null,
            invalid=self.invalid + other.invalid,
            out_of_range=self.out_of_range + other.out_of_range,
            bins=self.bins + other.bins,
            unseen_total=self.unseen_total + other.unseen_total,
            unseen=unseen,
            below=self.below + other.below,
            above=self.above + other.above,
            examples=examples,
        )


@dataclass(frozen=True)
class BatchCounts:
    """Counts of a batch (or a chunk of one) on a reference's bins."""

    rows: int
    columns: Mapping[str, ColumnCounts]

    def merge(self, other: BatchCounts) -> BatchCounts:
        """The counts of both chunks together: exactly the counts of their concatenation."""
        if self.columns.keys() != other.columns.keys():
            raise DataError(
                "cannot merge counts made on different references "
                f"(columns {sorted(self.columns)} and {sorted(other.columns)})"
            )
        return BatchCounts(
            rows=self.rows + other.rows,
            columns={k: c.merge(other.columns[k]) for k, c in self.columns.items()},
        )


@dataclass(frozen=True)
class ReferenceProfile:
    """The reference's bins and its own counts on them."""

    columns: tuple[MonitoredColumn, ...]
    edges: Mapping[str, np.ndarray]  # numeric: sorted edges; 2k+1 cells (see _bin_counts)
    groups: Mapping[str, np.ndarray]  # numeric: cell -> PSI bin (reference quantiles)
    labels: Mapping[str, list[str]]  # PSI bins as text ("< 3", "[3, 9)", ">= 70")
    std: Mapping[str, float]  # numeric: the reference's standard deviation
    counts: BatchCounts

    @property
    def rows(self) -> int:
        return self.counts.rows


# -- the columns -----------------------------------------------------------------------------


def monitored_columns(signature: dict[str, Any]) -> list[MonitoredColumn]:
    """The signature's inputs, then the outputs its task logs (`score`, `label`, `value`)."""
    columns: list[MonitoredColumn] = []
    try:
        for item in signature["inputs"]:
            name, kind = str(item["name"]), item["type"]
            low = float(item["min"]) if item.get("min") is not None else None
            high = float(item["max"]) if item.get("max") is not None else None
            if kind == "category":
                cats = tuple(str(c) for c in item.get("categories") or ())
                if not cats:
                    raise ModelError(f"signature.json: category input {name!r} has no categories")
                columns.append(MonitoredColumn(name, "feature", "categorical", categories=cats))
            elif kind == "int" and item.get("allowed"):
                allowed = tuple(sorted(float(v) for v in item["allowed"]))
                cats = tuple(_number_text(v) for v in allowed)
                columns.append(
                    MonitoredColumn(
                        name, "feature", "categorical", cats, allowed=allowed, min=low, max=high
                    )
                )
            elif kind in ("int", "float"):
                columns.append(MonitoredColumn(name, "feature", "numeric", min=low, max=high))
            else:
                raise ModelError(f"signature.json: input {name!r} has unknown type {kind!r}")
        output = signature.get("output", {})
        task = output.get("task", "binary")
        classes = tuple(str(c) for c in output.get("classes") or ())
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"signature.json: malformed 'inputs' or 'output' ({err!r})") from err
    if task == "regression":
        columns.append(MonitoredColumn("value", "output", "numeric"))
    elif task == "binary":
        columns.append(MonitoredColumn("score", "output", "numeric"))
        columns.append(MonitoredColumn("label", "output", "categorical", categories=classes))
    elif task == "multiclass":
        columns.append(MonitoredColumn("label", "output", "categorical", categories=classes))
        columns.extend(MonitoredColumn(f"score:{c}", "output", "numeric") for c in classes)
    else:
        raise ModelError(f"signature.json: unknown output.task {task!r}")
    return columns


# -- profiling and counting --------------------------------------------------------------------


def profile_reference(
    frame: pd.DataFrame, columns: Sequence[MonitoredColumn], params: MonitorParams
) -> ReferenceProfile:
    """Bins from the reference's valid values, and the reference counted on them."""
    edges: dict[str, np.ndarray] = {}
    std: dict[str, float] = {}
    for column in columns:
        if column.kind != "numeric" or column.name not in frame.columns:
            continue
        numbers = _numbers(frame[column.name])
        values = np.sort(numbers.values[_valid_numbers(numbers)])
        new = np.concatenate([[True], values[1:] != values[:-1]]) if len(values) else values
        if int(np.count_nonzero(new)) <= params.quantiles:
            edges[column.name] = values[new.astype(bool)]
        else:  # np.quantile's default (linear) on the sorted values
            at = np.linspace(0, len(values) - 1, params.quantiles + 1)
            low = np.floor(at).astype(np.int64)
            high = np.minimum(low + 1, len(values) - 1)
            points = values[low] + (at - low) * (values[high] - values[low])
            edges[column.name] = np.unique(points)
        std[column.name] = float(values.std()) if len(values) else 0.0
    draft = ReferenceProfile(tuple(columns), edges, {}, {}, std, BatchCounts(0, {}))
    counts = count_batch(frame, draft)
    groups: dict[str, np.ndarray] = {}
    labels: dict[str, list[str]] = {}
    for name, e in edges.items():
        groups[name], labels[name] = _psi_bins(e, counts.columns[name].bins, params.psi_bins)
    return replace(draft, groups=groups, labels=labels, counts=counts)


def count_batch(frame: pd.DataFrame, profile: ReferenceProfile) -> BatchCounts:
    """Count a batch, or one chunk of it, on the reference's bins."""
    rows = len(frame)
    out: dict[str, ColumnCounts] = {}
    for column in profile.columns:
        if column.name not in frame.columns:
            numeric = column.kind == "numeric"
            # the cells `_bin_counts` gives the column's edges, so chunks with and without it merge
            size = (
                2 * len(profile.edges.get(column.name, ())) + 1
                if numeric
                else len(column.categories)
            )
            out[column.name] = ColumnCounts(missing=rows, bins=np.zeros(size, dtype=np.int64))
        elif column.kind == "numeric":
            out[column.name] = _count_numeric(
                frame[column.name], column, profile.edges.get(column.name)
            )
        elif column.allowed is not None:
            out[column.name] = _count_allowed(frame[column.name], column)
        else:
            out[column.name] = _count_categories(frame[column.name], column)
    return BatchCounts(rows, out)


def _count_numeric(
    series: pd.Series, column: MonitoredColumn, edges: np.ndarray | None
) -> ColumnCounts:
    numbers = _numbers(series)
    values = numbers.values
    invalid = numbers.bad | (~numbers.null & ~np.isfinite(values))
    valid = ~numbers.null & ~invalid
    x = values[valid]
    examples: dict[str, tuple[str, ...]] = {}
    if invalid.any():
        examples["invalid_values"] = _examples(series, invalid)
    outside = _outside(x, column)
    if outside.any():
        examples["out_of_range"] = tuple(
            _number_text(v) for v in np.unique(x[outside])[:MAX_EXAMPLES]
        )
    if edges is None:  # the reference has no valid value: nothing to bin on
        edges = np.zeros(0)
    bins, below, above = _bin_counts(np.sort(x), edges)
    return ColumnCounts(
        null=int(numbers.null.sum()),
        invalid=int(invalid.sum()),
        out_of_range=int(outside.sum()),
        bins=bins.astype(np.int64),
        below=below,
        above=above,
        examples=examples,
    )


def _bin_counts(ordered: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Counts of sorted values in the cells of `edges`, and the two tail sums.

    The 2k+1 cells of k edges: x < e[0], x == e[0], e[0] < x < e[1], x == e[1], ...,
    x == e[k-1], x > e[k-1]. For a discrete reference (its distinct values as edges) the CDFs
    read at the cells' ends give the exact KS statistic, values off its support included.
    (Sorting a chunk and locating the edges in it is several times faster than locating
    every value.)"""
    n = len(ordered)
    if not len(edges):
        return np.array([n], dtype=np.int64), 0.0, 0.0
    below_edge = np.searchsorted(ordered, edges, side="left")
    through_edge = np.searchsorted(ordered, edges, side="right")
    ends = np.empty(2 * len(edges) + 1, dtype=np.int64)
    ends[0:-1:2] = below_edge
    ends[1:-1:2] = through_edge
    ends[-1] = n
    bins = np.diff(ends, prepend=0)
    below = float((edges[0] - ordered[: below_edge[0]]).sum())
    above = float((ordered[through_edge[-1] :] - edges[-1]).sum())
    return bins, below, above


def _count_allowed(series: pd.Series, column: MonitoredColumn) -> ColumnCounts:
    numbers = _numbers(series)
    values = numbers.values
    invalid = numbers.bad | (~numbers.null & ~np.isfinite(values))
    x = values[~numbers.null & ~invalid]
    allowed = np.asarray(column.allowed, dtype=np.float64)
    at = np.minimum(np.searchsorted(allowed, x), len(allowed) - 1)
    known = allowed[at] == x
    unseen_values, unseen_counts = np.unique(x[~known], return_counts=True)
    unseen: dict[str, int] = {}
    for value, count in zip(unseen_values, unseen_counts, strict=True):
        text = _number_text(value)
        unseen[text] = unseen.get(text, 0) + int(count)
    outside = _outside(x, column)
    examples: dict[str, tuple[str, ...]] = {}
    if invalid.any():
        examples["invalid_values"] = _examples(series, invalid)
    if outside.any():
        examples["out_of_range"] = tuple(
            _number_text(v) for v in np.unique(x[outside])[:MAX_EXAMPLES]
        )
    return ColumnCounts(
        null=int(numbers.null.sum()),
        invalid=int(invalid.sum()),
        out_of_range=int(outside.sum()),
        bins=np.bincount(at[known], minlength=len(allowed)).astype(np.int64),
        unseen_total=int((~known).sum()),
        unseen=_top(unseen),
        examples=examples,
    )


def _count_categories(series: pd.Series, column: MonitoredColumn) -> ColumnCounts:
    import pandas as pd

    index = category_index(column.categories)
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        uniques: Sequence[Any] = list(series.cat.categories)
    else:
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
    cells = [category_cell(_plain(v), index) for v in uniques]
    # one extra entry for pandas' missing values (code -1 is the last entry)
    code_of = np.array([c for c, _, _ in cells] + [-1], dtype=np.int64)
    state_of = np.array([s for _, s, _ in cells] + [NULL], dtype=np.int8)
    per_unique = np.bincount(np.where(codes < 0, len(uniques), codes), minlength=len(uniques) + 1)
    counted = (state_of == VALID) & (code_of >= 0)
    bins = np.bincount(
        code_of[counted], weights=per_unique[counted], minlength=len(column.categories)
    ).astype(np.int64)
    unseen: dict[str, int] = {}
    bad: list[str] = []
    for k, (code, st, text) in enumerate(cells):
        if st == BAD and per_unique[k]:
            bad.append(str(text))
        elif st != NULL and code < 0 and per_unique[k]:
            unseen[str(text)] = unseen.get(str(text), 0) + int(per_unique[k])
    examples = {"invalid_values": tuple(bad[:MAX_EXAMPLES])} if bad else {}
    return ColumnCounts(
        null=int(per_unique[state_of == NULL].sum()),
        invalid=int(per_unique[state_of == BAD].sum()),
        bins=bins,
        unseen_total=sum(unseen.values()),
        unseen=_top(unseen),
        examples=examples,
    )


# -- cells -------------------------------------------------------------------------------------


def _numbers(series: pd.Series) -> Numbers:
    """A column of any dtype as numbers, as serving and validation coerce it."""
    import pandas as pd
    import pyarrow as pa

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):  # a boolean is not a number
        null = series.isna().to_numpy()
        return Numbers(np.full(len(series), np.nan), null, ~null)
    if pd.api.types.is_numeric_dtype(dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        null = np.isnan(values)  # pandas missing values
        return Numbers(values, null, np.zeros(len(series), dtype=bool))
    try:
        return coerce_numbers(pa.array(series, from_pandas=True))
    except (pa.ArrowException, TypeError, ValueError):  # mixed Python values
        return coerce_number_values(series.tolist())


def _valid_numbers(numbers: Numbers) -> np.ndarray:
    return ~numbers.null & ~numbers.bad & np.isfinite(numbers.values)


def _outside(x: np.ndarray, column: MonitoredColumn) -> np.ndarray:
    outside = np.zeros(len(x), dtype=bool)
    if column.min is not None:
        outside |= x < column.min
    if column.max is not None:
        outside |= x > column.max
    return outside


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _examples(series: pd.Series, mask: np.ndarray) -> tuple[str, ...]:
    shown: list[str] = []
    for position in np.flatnonzero(mask)[: MAX_EXAMPLES * 4]:
        text = repr(_plain(series.iloc[int(position)]))[:40]
        if text not in shown:
            shown.append(text)
        if len(shown) == MAX_EXAMPLES:
            break
    return tuple(shown)


def _top(unseen: dict[str, int]) -> dict[str, int]:
    if len(unseen) <= MAX_UNSEEN_KEPT:
        return unseen
    return dict(sorted(unseen.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_UNSEEN_KEPT])


def _number_text(value: float) -> str:
    value = float(value)
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return f"{value:.6g}"


def _psi_bins(edges: np.ndarray, counts: np.ndarray, bins: int) -> tuple[np.ndarray, list[str]]:
    """Group the cells into about `bins` ranges [e[i], e[j]) of equal reference share."""
    total = counts.sum()
    cells = len(counts)
    if total == 0 or cells <= 1:
        return np.zeros(cells, dtype=np.int64), ["all values"]
    share = np.cumsum(counts) / total
    # a range ends at the first cell whose cumulative share reaches k / bins, moved to the
    # open cell after an edge (even index), so that ranges read [e[i], e[j]); the last range
    # holds the maximum and beyond
    ends = np.searchsorted(share, np.arange(1, bins) / bins - 1e-12, side="left")
    ends = np.unique(ends + ends % 2)
    ends = ends[ends <= cells - 3]
    group = np.searchsorted(ends, np.arange(cells), side="left")
    labels = []
    for start, stop in zip(np.concatenate([[0], ends + 1]), [*ends, cells - 1], strict=True):
        low = "" if start == 0 else _number_text(edges[(start - 1) // 2])
        high = "" if stop == cells - 1 else _number_text(edges[stop // 2])
        if not low and not high:
            labels.append("all values")
        elif not low:
            labels.append(f"< {high}")
        elif not high:
            labels.append(f">= {low}")
        else:
            labels.append(f"[{low}, {high})")
    return group.astype(np.int64), labels
