"""monitor.html: a monitoring run as one self-contained page.

Inline CSS and inline SVG drawn with matplotlib's SVG backend (text kept as text in a local
font family), and nothing else: no script, no font, no image or style sheet is fetched, so
the page opens offline and as a CI artifact. One plot per drifted column (reference against
current shares per bin) and one per performance series (realised and estimated, with
intervals, against the floor).
"""

from __future__ import annotations

import html
import io
import re
from typing import TYPE_CHECKING, Any

from gitml.monitor.report import (
    IMPORTANCE_LEGEND,
    format_importance,
    format_interval,
    format_number,
    format_p,
    headline_metrics,
    metric_rows,
    window_span,
)
from gitml.monitor.result import ColumnDrift, MonitorResult, PerformanceWindow

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REFERENCE_COLOR = "#7f8c9a"
CURRENT_COLOR = "#d1495b"
ESTIMATED_COLOR = "#2e86ab"
_MAX_BINS_SHOWN = 24

CSS = """
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; margin: 2rem auto;
  max-width: 1100px; padding: 0 1rem; color: #1d2730; background: #fff; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; } h2 { font-size: 1.25rem; margin-top: 2rem;
  border-bottom: 1px solid #d9dee3; padding-bottom: .2rem; } h3 { font-size: 1.05rem; }
.verdict { display: inline-block; padding: .25rem .8rem; border-radius: .3rem;
  font-weight: bold; color: #fff; }
.alert { background: #c0392b; } .quiet { background: #2e7d32; }
.meta { color: #52606d; font-size: .9rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .85rem; }
th, td { border: 1px solid #d9dee3; padding: .25rem .5rem; text-align: left; }
th { background: #f3f5f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.flag td { background: #fdecea; } td.relied { font-weight: bold; }
.ranking { background: #f3f5f7; border-left: 3px solid #2e86ab; padding: .3rem .6rem; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
.plot { border: 1px solid #e4e8eb; border-radius: .3rem; padding: .3rem; }
.plot svg { display: block; width: 470px; height: auto; }
details summary { cursor: pointer; color: #34495e; margin: .4rem 0; }
ul.reasons li { font-family: "DejaVu Sans Mono", monospace; font-size: .85rem; }
"""


def render_html(result: MonitorResult) -> str:
    """monitor.html for `result`."""
    state = "alert" if result.alert else "quiet"
    body = [
        "<h1>Monitoring: "
        f'<span class="verdict {state}">{"ALERT" if result.alert else "no alert"}</span></h1>',
        f'<p class="meta">Model <b>{_e(result.model_name)}</b> ({_e(result.task)}) · current '
        f"data <code>{_e(result.current)}</code> ({result.current_rows:,} rows) · alpha "
        f"{result.alpha:g}, {_e(result.correction)} correction · {_e(result.created)}</p>",
    ]
    if result.reasons:
        items = "".join(f"<li>{_e(r)}</li>" for r in result.reasons)
        body.append(f'<h2>Alarms</h2><ul class="reasons">{items}</ul>')
    else:
        body.append("<p>No drift, data-quality or performance alarm.</p>")
    body += _drift(result)
    body += _quality(result)
    body += _performance(result)
    if result.assumptions:
        items = "".join(f"<li>{_e(a)}</li>" for a in result.assumptions)
        body.append(f"<h2>Assumptions</h2><ul>{items}</ul>")
    return page(f"Monitoring {result.model_name}: {state}", "\n".join(body))


def page(title: str, body: str) -> str:
    """A complete HTML document around `body`: inline style, nothing fetched."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
        "</body>\n</html>\n"
    )


def svg_figure(figure: Figure) -> str:
    """`figure` as inline SVG markup: text as text (no embedded glyphs), no XML prologue,
    doctype or namespace URLs, so the page holds no http(s) reference at all."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "gitml"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text)
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)
    return text


def new_figure(width: float = 6.4, height: float = 3.2) -> Figure:
    """A matplotlib figure that needs no GUI backend (and no pyplot state)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    figure.set_layout_engine("constrained")
    return figure


def _drift(result: MonitorResult) -> list[str]:
    parts: list[str] = []
    for report in result.drift:
        parts.append(
            f"<h2>Drift: {_e(report.model_version)}</h2>"
            f'<p class="meta">{report.current_rows:,} current rows against '
            f"{report.reference_rows:,} reference rows ({_e(report.reference)})</p>"
        )
        if report.ranking:
            parts.append(f'<p class="ranking">{_e(report.ranking)}</p>')
        drifted = [c for c in report.columns if c.drifted]
        plots = [
            f'<div class="plot">{svg_figure(_distribution_figure(c))}</div>'
            for c in drifted
            if c.distribution is not None
        ]
        if drifted:  # the table first: it reads in the ranked order at a glance
            parts.append(_column_table(drifted))
        else:
            parts.append("<p>No column drifted.</p>")
        if plots:
            parts.append(f'<div class="plots">{"".join(plots)}</div>')
        parts.append(
            f"<details><summary>All {len(report.columns)} columns tested</summary>"
            f"{_column_table(report.columns)}</details>"
        )
        if any(c.importance_rank is not None for c in report.columns):
            parts.append(f'<p class="meta">{_e(IMPORTANCE_LEGEND)}</p>')
    return parts


def _distribution_figure(column: ColumnDrift) -> Figure:
    import numpy as np

    assert column.distribution is not None
    dist = column.distribution
    bins, ref, cur = dist.bins, list(dist.reference), list(dist.current)
    if len(bins) > _MAX_BINS_SHOWN:  # keep the largest bins readable
        order = np.argsort([-(r + c) for r, c in zip(ref, cur, strict=True)])[:_MAX_BINS_SHOWN]
        keep = sorted(order.tolist())
        bins, ref, cur = [bins[k] for k in keep], [ref[k] for k in keep], [cur[k] for k in keep]
    figure = new_figure()
    ax = figure.add_subplot()
    x = np.arange(len(bins))
    ax.bar(x - 0.2, ref, width=0.4, color=REFERENCE_COLOR, label="reference")
    ax.bar(x + 0.2, cur, width=0.4, color=CURRENT_COLOR, label="current")
    ax.set_xticks(
        x,
        bins,
        rotation=35 if len(bins) > 4 else 0,
        ha="right" if len(bins) > 4 else "center",
        fontsize=7,
    )
    ax.set_ylabel("share of rows")
    ax.set_xlabel(column.column + (" (bins of the reference)" if column.kind == "numeric" else ""))
    ax.set_title(
        f"{column.column} ({column.role}): {column.effect_name} {format_number(column.effect, 2)}, "
        f"p_adj {format_p(column.p_adjusted)}",
        fontsize=9,
    )
    ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return figure


def _column_table(columns: list[ColumnDrift]) -> str:
    head = (
        "<tr><th>column</th><th>importance</th><th>role</th><th>test</th><th>statistic</th>"
        "<th>p</th>"
        "<th>p adjusted</th><th>effect</th><th>min effect</th><th>PSI</th><th>unseen</th>"
        "<th>drifted</th></tr>"
    )
    rows = []
    for c in columns:
        cls = ' class="flag"' if c.drifted else ""
        rows.append(
            f"<tr{cls}><td>{_e(c.column)}</td>"
            f'<td class="num{" relied" if c.relied_on else ""}">{_e(format_importance(c))}</td>'
            f"<td>{c.role}</td><td>{_e(c.test)}</td>"
            f'{_num(c.statistic)}<td class="num">{format_p(c.p_value)}</td>'
            f'<td class="num">{format_p(c.p_adjusted)}</td>'
            f'<td class="num">{_e(c.effect_name)} {format_number(c.effect)}</td>'
            f"{_num(c.min_effect)}{_num(c.psi)}"
            f'<td class="num">{sum(c.unseen.values()) or ""}</td>'
            f"<td>{'yes' if c.drifted else 'no'}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _quality(result: MonitorResult) -> list[str]:
    findings = [(r.model_version, f) for r in result.drift for f in r.quality]
    if not findings:
        return ["<h2>Data quality</h2><p>No finding against the signature.</p>"]
    head = (
        "<tr><th>version</th><th>column</th><th>rule</th><th>rows</th><th>rate</th>"
        "<th>reference</th><th>limit</th><th>alarm</th><th>finding</th></tr>"
    )
    rows = []
    for version, f in findings:
        cls = ' class="flag"' if f.alarm else ""
        rows.append(
            f"<tr{cls}><td>{_e(version)}</td><td>{_e(f.column)}</td><td>{f.rule}</td>"
            f'<td class="num">{f.rows:,}</td>{_num(f.rate)}{_num(f.reference_rate)}'
            f"{_num(f.limit)}<td>{'yes' if f.alarm else 'no'}</td>"
            f"<td>{_e(f.message)}</td></tr>"  # the message quotes its examples already
        )
    return [f"<h2>Data quality</h2><table>{head}{''.join(rows)}</table>"]


def _performance(result: MonitorResult) -> list[str]:
    if not result.performance:
        return []
    parts = ["<h2>Performance</h2>"]
    series = _series(result.task, result.performance)
    plots = [
        f'<div class="plot">{svg_figure(_performance_figure(version, metric, windows))}</div>'
        for (version, metric), windows in series.items()
    ]
    if plots:
        parts.append(f'<div class="plots">{"".join(plots)}</div>')
    head = (
        "<tr><th>version</th><th>window</th><th>rows</th><th>labelled</th><th>metric</th>"
        "<th>realised</th><th>estimated</th><th>floor</th><th>alarm</th></tr>"
    )
    rows = []
    for w in result.performance:
        for name, real, est, floor, below in metric_rows(w):
            cls = ' class="flag"' if below else ""
            rows.append(
                f"<tr{cls}><td>{_e(w.model_version)}</td><td>{_e(_span(w))}</td>"
                f'<td class="num">{w.rows:,}</td><td class="num">{w.labelled:,}</td>'
                f"<td>{_e(name)}</td><td>{format_interval(real)}</td><td>{format_interval(est)}</td>"
                f"{_num(floor)}<td>{'yes' if below else 'no'}</td></tr>"
            )
    parts.append(f"<table>{head}{''.join(rows)}</table>")
    notes = [
        f"<li>{_e(w.model_version)} {_e(_span(w))}: {_e(w.note)}</li>"
        for w in result.performance
        if w.note
    ]
    if notes:
        parts.append(f"<ul>{''.join(notes)}</ul>")
    return parts


def _series(
    task: str, windows: list[PerformanceWindow]
) -> dict[tuple[str, str], list[PerformanceWindow]]:
    """(version, metric) -> the windows that have it: a plot per headline metric series."""
    wanted = {(w.model_version, name) for w in windows for name in headline_metrics(task, w)}
    series: dict[tuple[str, str], list[PerformanceWindow]] = {}
    for w in windows:
        for name in dict.fromkeys(m.metric for m in (*w.realised, *w.estimated)):
            if (w.model_version, name) in wanted:
                series.setdefault((w.model_version, name), []).append(w)
    return series


def _performance_figure(version: str, metric: str, windows: list[PerformanceWindow]) -> Figure:
    import numpy as np

    figure = new_figure()
    ax = figure.add_subplot()
    x = np.arange(len(windows))
    floor: float | None = None
    for offset, kind, color, marker in (
        (-0.08, "realised", CURRENT_COLOR, "o"),
        (0.08, "estimated", ESTIMATED_COLOR, "s"),
    ):
        points = [_metric(w, kind, metric) for w in windows]
        xs = [x[k] + offset for k, m in enumerate(points) if m is not None and m.value is not None]
        found = [m for m in points if m is not None and m.value is not None]
        if not found:
            continue
        values = np.array([m.value for m in found], dtype=float)
        low = np.array([m.low if m.low is not None else m.value for m in found], dtype=float)
        high = np.array([m.high if m.high is not None else m.value for m in found], dtype=float)
        ax.errorbar(
            xs,
            values,
            # a percentile interval of a skewed metric (few labels, a rare class) can leave
            # the point estimate outside it: drawn as a zero-length whisker on that side
            yerr=[np.clip(values - low, 0, None), np.clip(high - values, 0, None)],
            fmt=marker + "-",
            color=color,
            capsize=3,
            label=f"{kind} (interval)",
        )
        floor = next((m.floor for m in found if m.floor is not None), floor)
    if floor is not None:
        ax.axhline(floor, color="#333", linestyle="--", linewidth=1, label=f"floor {floor:g}")
    ax.set_xticks(
        x,
        [_span(w, short=True) for w in windows],
        rotation=30 if len(windows) > 3 else 0,
        fontsize=7,
    )
    ax.set_xlim(-0.5, len(windows) - 0.5)
    ax.set_xlabel("window (UTC)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}, {version}: realised vs estimated", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return figure


def _metric(window: PerformanceWindow, kind: str, metric: str) -> Any:
    values = window.realised if kind == "realised" else window.estimated
    return next((m for m in values if m.metric == metric), None)


def _span(window: PerformanceWindow, *, short: bool = False) -> str:
    if short and window.start:
        return window.start[5:16].replace("T", " ")
    return window_span(window)


def _num(value: float | None) -> str:
    return f'<td class="num">{format_number(value)}</td>'


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
