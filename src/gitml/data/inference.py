"""Infer a data schema: decide each column and the task from a file's column profiles.

The profiles come from `gitml.data.profiling` (streaming, bounded memory); the decisions
(`draft_schema`) are pure: profiles in, a `SchemaDraft` out. `infer_schema` does both.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from gitml.config.data_yaml import DraftColumn, SchemaDraft
from gitml.data.profiling import (
    CATEGORY_CAP,
    DISTINCT_LIMIT,
    ID_UNIQUE_SHARE,
    ColumnProfile,
    profile_file,
)
from gitml.errors import DataError

SLICE_MAX = 5  # categorical columns with 2..SLICE_MAX values are slice candidates
MARGIN = 0.10  # observed ranges are widened by this share of the range on each side
FREE_TEXT_CHARS = 25  # mean length of text with spaces at or above which it is free text
FREE_TEXT_WORDS = 3.0  # mean words per cell at or above which it is free text

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
        usual = _usual_positive(classes)
        if usual is not None and usual != positive:  # 0/1, no/yes, false/true: 1, yes, true
            seen = f"{counts[usual]:,} of {profile.non_null:,} rows"
            return (
                f"binary (positive class {usual!r}: the usual positive of "
                f"{'/'.join(classes)}, {seen}; the minority is {positive!r}: "
                f"--positive-class {positive} to score it)",
                usual,
            )
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


# two-valued targets whose positive value is conventional: (negative, positive), lower case
_USUAL_PAIRS = (("0", "1"), ("no", "yes"), ("false", "true"), ("n", "y"), ("negative", "positive"))


def _usual_positive(classes: list[str]) -> str | None:
    """The conventional positive of a 0/1, no/yes, false/true, n/y or negative/positive
    target (in its own spelling), else None."""
    lowered = {c.strip().lower(): c for c in classes}
    for negative, positive in _USUAL_PAIRS:
        if set(lowered) == {negative, positive}:
            return lowered[positive]
    return None


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
