"""monitor.md: a monitoring run as Markdown, short enough for an issue or pull-request comment.

The verdict comes first, then one line per alarm, the drifted columns (statistic, effect,
adjusted p), the data-quality findings, realised against estimated performance with
intervals, and the assumptions. Every column tested is listed in a folded section.
"""

from __future__ import annotations

from gitml.monitor.result import (
    ColumnDrift,
    MetricValue,
    MonitorResult,
    PerformanceWindow,
    QualityFinding,
)
from gitml.tasks import PRIMARY_METRIC


def format_number(value: float | None, digits: int = 3) -> str:
    """A value for a table cell: 3 significant digits, "-" when it could not be computed."""
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}g}"


IMPORTANCE_LEGEND = (
    "Importance: how much the reference model's primary metric gets worse when the column's "
    "values are shuffled (#rank among its inputs); in bold where the model relies on the "
    "column (the interval lies above zero)."
)


def format_importance(column: ColumnDrift) -> str:
    """`0.0712 (#1)` for an input of known importance, `-` otherwise."""
    if column.importance_rank is None:
        return "-"
    return f"{format_number(column.importance)} (#{column.importance_rank})"


def format_p(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.2g}"


def column_reason(column: ColumnDrift, version: str | None = None) -> str:
    """One line naming a drifted column: `tenure (importance rank 1, relied on): ks 0.083,
    wasserstein 0.21 >= 0.05, p_adj 3.1e-09` (prefixed by the model version when a run has
    several; the rank when the reference model's importance is known)."""
    prefix = f"{version} " if version else ""
    if column.importance_rank is not None:
        relied = ", relied on" if column.relied_on else ""
        prefix += f"{column.column} (importance rank {column.importance_rank}{relied})"
    else:
        prefix += column.column
    return (
        f"{prefix}: {column.test} {format_number(column.statistic, 2)}, "
        f"{column.effect_name} {format_number(column.effect, 2)} \u2265 "
        f"{format_number(column.min_effect, 2)}, p_adj {format_p(column.p_adjusted)}"
    )


def quality_reason(finding: QualityFinding, version: str | None = None) -> str:
    prefix = f"{version} " if version else ""
    return f"{prefix}{finding.column}: {finding.rule}: {finding.message}"


def window_reason(window: PerformanceWindow, metric: MetricValue) -> str:
    """One line for a performance alarm: the metric, its interval and the floor it is below."""
    interval = f"[{format_number(metric.low)}, {format_number(metric.high)}]"
    return (
        f"{window.model_version} {window.start[:16]}..{window.end[:16]}: {metric.metric} "
        f"{format_number(metric.value)} {interval} below the floor "
        f"{format_number(metric.floor)} ({window.labelled} labelled rows)"
    )


def render_markdown(result: MonitorResult) -> str:
    """monitor.md for `result`."""
    lines = [f"## Monitoring: {'ALERT' if result.alert else 'no alert'}", ""]
    lines.append(_verdict(result))
    lines.append("")
    lines.append(
        f"Model `{result.model_name}` ({result.task}) · current data: `{result.current}` "
        f"({result.current_rows:,} rows) · alpha {result.alpha:g}, {result.correction} "
        f"correction · {result.created}"
    )
    if result.reasons:
        lines += ["", *(f"- {reason}" for reason in result.reasons)]
    lines += _drift(result)
    lines += _quality(result)
    lines += _performance(result)
    if result.assumptions:
        lines += ["", "### Assumptions", "", *(f"- {a}" for a in result.assumptions)]
    return "\n".join(lines).rstrip() + "\n"


def _verdict(result: MonitorResult) -> str:
    drifted = sum(c.drifted for r in result.drift for c in r.columns)
    quality = sum(f.alarm for r in result.drift for f in r.quality)
    performance = sum(w.alarm for w in result.performance)
    if not result.alert:
        tested = sum(len(r.columns) for r in result.drift)
        return (
            f"**Quiet**: no drift in {tested} column tests, no data-quality or performance alarm."
        )
    parts = [
        f"{count} {what}{'' if count == 1 else 's'}"
        for count, what in (
            (drifted, "drifted column"),
            (quality, "data-quality alarm"),
            (performance, "performance alarm"),
        )
        if count
    ]
    return f"**ALERT**: {', '.join(parts)}."


def _drift(result: MonitorResult) -> list[str]:
    lines: list[str] = []
    for report in result.drift:
        lines += [
            "",
            f"### Drift: {report.model_version}",
            "",
            f"{report.current_rows:,} current rows against {report.reference_rows:,} "
            f"reference rows ({report.reference}).",
        ]
        if report.ranking:
            lines += ["", report.ranking]
        drifted = [c for c in report.columns if c.drifted]
        if drifted:
            lines += ["", *_column_table(drifted)]
        else:
            lines += ["", "No column drifted."]
        if any(c.importance_rank is not None for c in report.columns):
            lines += ["", IMPORTANCE_LEGEND]
        if report.columns:
            lines += [
                "",
                f"<details><summary>All {len(report.columns)} columns tested</summary>",
                "",
                *_column_table(report.columns),
                "",
                "</details>",
            ]
    return lines


def _column_table(columns: list[ColumnDrift]) -> list[str]:
    rows = [
        "| column | importance | role | test | statistic | effect | p adjusted | PSI | unseen "
        "| drifted |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in columns:
        unseen = sum(c.unseen.values())
        shown = format_importance(c)
        rows.append(
            f"| {c.column} | {f'**{shown}**' if c.relied_on else shown} | {c.role} | {c.test} | "
            f"{format_number(c.statistic)} | "
            f"{c.effect_name} {format_number(c.effect)} (min {format_number(c.min_effect)}) | "
            f"{format_p(c.p_adjusted)} | {format_number(c.psi)} | {unseen or ''} | "
            f"{'**yes**' if c.drifted else 'no'} |"
        )
    return rows


def _quality(result: MonitorResult) -> list[str]:
    findings = [(r.model_version, f) for r in result.drift for f in r.quality]
    if not findings:
        return ["", "### Data quality", "", "No finding against the signature."]
    lines = [
        "",
        "### Data quality",
        "",
        "| version | column | rule | rows | rate | reference | limit | alarm | finding |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for version, f in findings:
        lines.append(
            f"| {version} | {f.column} | {f.rule} | {f.rows:,} | {format_number(f.rate)} | "
            f"{format_number(f.reference_rate)} | {format_number(f.limit)} | "
            f"{'**yes**' if f.alarm else 'no'} | {_cell(f.message)} |"
        )
    return lines


def _performance(result: MonitorResult) -> list[str]:
    if not result.performance:
        return []
    lines = [
        "",
        "### Performance",
        "",
        "Realised from labels (bootstrap interval) against estimated from calibrated scores "
        "(predictive interval); every metric is in monitor.html and monitor.json.",
        "",
        "| version | window | rows | labelled | metric | realised | estimated | floor | alarm |",
        "| --- | --- | ---: | ---: | --- | --- | --- | ---: | --- |",
    ]
    for w in result.performance:
        names = headline_metrics(result.task, w)
        for name, real, est, floor, below in metric_rows(w, names):
            lines.append(
                f"| {w.model_version} | {window_span(w)} | {w.rows:,} | {w.labelled:,} | {name} | "
                f"{format_interval(real)} | {format_interval(est)} | {format_number(floor)} | "
                f"{'**yes**' if below else 'no'} |"
            )
        if not names:
            lines.append(
                f"| {w.model_version} | {window_span(w)} | {w.rows:,} | {w.labelled:,} | - | - | "
                f"- | - | no |"
            )
    notes = [
        f"- {w.model_version} {window_span(w)}: {w.note}" for w in result.performance if w.note
    ]
    if notes:
        lines += ["", *notes]
    return lines


def metric_rows(
    window: PerformanceWindow, names: list[str] | None = None
) -> list[tuple[str, MetricValue | None, MetricValue | None, float | None, bool]]:
    """(metric, realised, estimated, floor, below the floor) of each of `names` (default: every
    metric of the window), for the performance tables."""
    realised = {m.metric: m for m in window.realised}
    estimated = {m.metric: m for m in window.estimated}
    rows = []
    for name in names if names is not None else dict.fromkeys([*realised, *estimated]):
        real, est = realised.get(name), estimated.get(name)
        floor = real.floor if real is not None else est.floor if est is not None else None
        rows.append((name, real, est, floor, real is not None and real.below_floor))
    return rows


def headline_metrics(task: str, window: PerformanceWindow) -> list[str]:
    """The metrics of a window that matter in a summary: the task's primary metric, those
    with a floor, and those both realised and estimated (to set side by side). monitor.json
    and monitor.html's table keep every metric."""
    realised = {m.metric: m for m in window.realised}
    estimated = {m.metric: m for m in window.estimated}
    primary = PRIMARY_METRIC.get(task)  # type: ignore[call-overload]
    floored = {m.metric for m in (*window.realised, *window.estimated) if m.floor is not None}
    return [
        name
        for name in dict.fromkeys([*realised, *estimated])
        if name == primary or name in floored or (name in realised and name in estimated)
    ]


def format_interval(metric: MetricValue | None) -> str:
    """`value [low, high]`, the value alone without an interval, `-` without a value."""
    if metric is None or metric.value is None:
        return "-"
    if metric.low is None or metric.high is None:
        return format_number(metric.value)
    return (
        f"{format_number(metric.value)} [{format_number(metric.low)}, {format_number(metric.high)}]"
    )


def window_span(window: PerformanceWindow) -> str:
    """A window's time span for a table, or "whole batch" when the rows have no times."""
    start, end = window.start[:16].replace("T", " "), window.end[:16].replace("T", " ")
    if not start and not end:
        return "whole batch"
    return start if start == end else f"{start} to {end}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
