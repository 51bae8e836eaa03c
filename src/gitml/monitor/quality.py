"""Data quality of a batch against the model's signature, from the same counts as drift.

Rules (`QualityRule`), each a rate of the batch's rows against a limit in `monitor.quality`:
a signature input missing from the batch; invalid values (not what the column holds, read
with the one coercion); numbers outside the declared min/max; categories (or allowed int
values) the model never saw; and a null rate above the reference's, alarming only when the
increase is at least `max_null_rate_increase` and a one-sided two-proportion test finds it
significant at `alpha` (a small batch does not alarm on a few chance nulls).
Only the model's inputs are checked: its outputs are the model's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gitml.monitor.result import QualityFinding

if TYPE_CHECKING:
    from gitml.config.schema import MonitorParams
    from gitml.monitor.sketch import BatchCounts, ColumnCounts, MonitoredColumn, ReferenceProfile


def check_quality(
    profile: ReferenceProfile, counts: BatchCounts, params: MonitorParams
) -> list[QualityFinding]:
    """Findings for every input that breaks a rule in at least one row."""
    limits = params.quality
    rows = counts.rows
    findings: list[QualityFinding] = []
    for column in profile.columns:
        if column.role != "feature" or column.name not in counts.columns:
            continue
        cur = counts.columns[column.name]
        ref = profile.counts.columns[column.name]
        name = column.name
        if cur.missing:
            findings.append(
                QualityFinding(
                    column=name,
                    rule="missing_column",
                    rows=cur.missing,
                    rate=_rate(cur.missing, rows),
                    reference_rate=None,
                    limit=0.0,
                    alarm=True,
                    message=f"column {name!r}, rule missing_column: absent from "
                    f"{cur.missing:,} of {rows:,} rows; the model needs it as an input",
                )
            )
        present = rows - cur.missing
        if cur.invalid:
            rate = _rate(cur.invalid, present)
            findings.append(
                _finding(
                    name,
                    "invalid_values",
                    cur.invalid,
                    rate,
                    _rate(ref.invalid, profile.rows),
                    limits.max_invalid_rate,
                    f"{cur.invalid:,} values are not {_expected(column)}",
                    cur.examples.get("invalid_values", ()),
                )
            )
        if cur.out_of_range:
            rate = _rate(cur.out_of_range, present)
            findings.append(
                _finding(
                    name,
                    "out_of_range",
                    cur.out_of_range,
                    rate,
                    _rate(ref.out_of_range, profile.rows),
                    limits.max_out_of_range_rate,
                    f"{cur.out_of_range:,} values outside the declared range "
                    f"[{_bound(column.min, '-inf')}, {_bound(column.max, 'inf')}]",
                    cur.examples.get("out_of_range", ()),
                )
            )
        if cur.unseen_total:
            rate = _rate(cur.unseen_total, present)
            top = sorted(cur.unseen.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
            what = "values outside the allowed" if column.allowed is not None else "unseen"
            findings.append(
                _finding(
                    name,
                    "unseen_category",
                    cur.unseen_total,
                    rate,
                    _rate(ref.unseen_total, profile.rows),
                    limits.max_unseen_rate,
                    f"{cur.unseen_total:,} {what} categories",
                    tuple(f"{text} ({count:,})" for text, count in top),
                )
            )
        null = _null_rate(name, cur, ref, present, profile.rows, params)
        if null is not None:
            findings.append(null)
    return findings


def null_rate_p_value(cur_null: int, cur_rows: int, ref_null: int, ref_rows: int) -> float:
    """One-sided p-value that the batch's null rate exceeds the reference's: Fisher's exact
    test of the two proportions (valid for a handful of nulls, where a z-test is not)."""
    from scipy.stats import hypergeom

    if cur_rows == 0 or ref_rows == 0:
        return 1.0
    return float(hypergeom.sf(cur_null - 1, cur_rows + ref_rows, cur_null + ref_null, cur_rows))


def _null_rate(
    name: str,
    cur: ColumnCounts,
    ref: ColumnCounts,
    present: int,
    ref_rows: int,
    params: MonitorParams,
) -> QualityFinding | None:
    if present == 0 or cur.null == 0:
        return None
    rate, ref_rate = cur.null / present, _rate(ref.null, ref_rows)
    limit = params.quality.max_null_rate_increase
    if rate - ref_rate < limit or rate - ref_rate <= 0:
        return None
    p = null_rate_p_value(cur.null, present, ref.null, ref_rows)
    alarm = p < params.alpha
    verdict = "significant" if alarm else "not significant"
    return QualityFinding(
        column=name,
        rule="null_rate",
        rows=cur.null,
        rate=rate,
        reference_rate=ref_rate,
        limit=limit,
        alarm=alarm,
        message=f"column {name!r}, rule null_rate: {rate:.2%} nulls against {ref_rate:.2%} "
        "in the reference "
        f"(+{rate - ref_rate:.2%}, limit +{limit:.2%}; {verdict} at alpha {params.alpha:g}, "
        f"one-sided p = {p:.2g})",
    )


def _finding(
    name: str,
    rule: str,
    rows: int,
    rate: float,
    reference_rate: float,
    limit: float,
    what: str,
    examples: tuple[str, ...],
) -> QualityFinding:
    alarm = rate > limit
    shown = f" (e.g. {', '.join(examples[:3])})" if examples else ""
    verdict = "above" if alarm else "within"
    return QualityFinding(
        column=name,
        rule=rule,  # type: ignore[arg-type]
        rows=rows,
        rate=rate,
        reference_rate=reference_rate,
        limit=limit,
        alarm=alarm,
        message=f"column {name!r}, rule {rule}: {what}{shown}: {rate:.2%} of rows, "
        f"{verdict} the limit {limit:.2%}",
        examples=list(examples),
    )


def _expected(column: MonitoredColumn) -> str:
    if column.kind == "numeric" or column.allowed is not None:
        return "finite numbers"
    return "text or whole numbers"


def _bound(value: float | None, unbounded: str) -> str:
    return unbounded if value is None else f"{value:g}"


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
