"""The monitoring history: one JSON line per run, appended atomically, versioned by Git.

A row says when the run was, which model versions served the data, how many rows, whether
it alerted, each column's drift effect (and which drifted), and the headline metric realised
and estimated. `history.html` draws the effects and the metric over time.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from gitml.errors import DataError
from gitml.monitor.result import MonitorResult, PerformanceWindow
from gitml.tasks import PRIMARY_METRIC

HISTORY_HTML = "history.html"
_MAX_COLUMNS_DRAWN = 8


def history_row(result: MonitorResult) -> dict[str, Any]:
    """The summary row of one run."""
    effects: dict[str, float] = {}
    drifted: dict[str, float] = {}
    for report in result.drift:
        for c in report.columns:
            if c.effect == c.effect:  # NaN: not computed
                effects[c.column] = max(effects.get(c.column, 0.0), float(c.effect))
            if c.drifted:
                drifted[c.column] = max(drifted.get(c.column, 0.0), float(c.effect))
    metric = PRIMARY_METRIC.get(result.task, "")  # type: ignore[call-overload]
    return {
        "created": result.created,
        "model_versions": [r.model_version for r in result.drift],
        "current": result.current,
        "rows": result.current_rows,
        "alert": result.alert,
        "drifted": drifted,
        "effects": effects,
        "quality_alarms": sorted({f.column for r in result.drift for f in r.quality if f.alarm}),
        "metric": metric,
        "realised": _headline(result.performance, metric, "realised"),
        "estimated": _headline(result.performance, metric, "estimated"),
        "performance_alarm": any(w.alarm for w in result.performance),
    }


def _headline(windows: list[PerformanceWindow], metric: str, kind: str) -> float | None:
    """The metric over the run's windows: their mean, weighted by labelled rows (realised) or
    rows (estimated); None when no window has it."""
    total = weight = 0.0
    for w in windows:
        values = w.realised if kind == "realised" else w.estimated
        found = next((m.value for m in values if m.metric == metric), None)
        size = w.labelled if kind == "realised" else w.rows
        if found is not None and found == found and size:
            total += found * size
            weight += size
    return total / weight if weight else None


def append_history(path: Path, row: dict[str, Any]) -> None:
    """Add `row` to the history file at `path` (created with its directories if absent).

    The file is rewritten through a temporary file and renamed: a crash leaves the old
    history whole, never half a line.
    """
    from gitml.files import write_text

    previous = path.read_text(encoding="utf-8") if path.is_file() else ""
    if previous and not previous.endswith("\n"):
        previous += "\n"
    write_text(path, previous + json.dumps(row, sort_keys=True) + "\n")


def read_history(path: Path) -> list[dict[str, Any]]:
    """Every row of the history file, oldest first; DataError naming a bad line."""
    if not path.is_file():
        raise DataError(
            f"{path}: no monitoring history yet",
            hint="every `gitml monitor --current ...` run appends a row (unless --no-history)",
        )
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise DataError(f"{path}: line {number} is not JSON ({err})") from err
        if not isinstance(row, dict) or "created" not in row:
            raise DataError(f"{path}: line {number} is not a history row (no 'created')")
        rows.append(row)
    return rows


def history_table(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The rows as text cells (a header first), for the terminal."""
    header = ["created", "versions", "rows", "alert", "drifted", "metric", "realised", "estimated"]
    table = [header]
    for row in rows:
        drifted = row.get("drifted") or {}
        table.append(
            [
                str(row.get("created", ""))[:19],
                ",".join(row.get("model_versions") or []) or "-",
                f"{int(row.get('rows') or 0):,}",
                "ALERT" if row.get("alert") else "quiet",
                ", ".join(f"{c} {v:.2f}" for c, v in drifted.items()) or "-",
                str(row.get("metric") or "-"),
                _cell(row.get("realised")),
                _cell(row.get("estimated")),
            ]
        )
    return table


def render_history_html(rows: list[dict[str, Any]]) -> str:
    """history.html: drift effect per column over time, and the headline metric over time."""
    from gitml.monitor.html import page, svg_figure

    parts = [
        f'<h1>Monitoring history</h1><p class="meta">{len(rows)} runs, '
        f"{str(rows[0]['created'])[:19]} to {str(rows[-1]['created'])[:19]}</p>"
    ]
    parts.append(f'<div class="plot">{svg_figure(_effects_figure(rows))}</div>')
    if any(row.get("realised") is not None or row.get("estimated") is not None for row in rows):
        parts.append(f'<div class="plot">{svg_figure(_metric_figure(rows))}</div>')
    table = history_table(rows)
    head = "".join(f"<th>{cell}</th>" for cell in table[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in line) + "</tr>"
        for line in table[1:]
    )
    parts.append(f"<h2>Runs</h2><table><tr>{head}</tr>{body}</table>")
    return page("Monitoring history", "\n".join(parts))


def _effects_figure(rows: list[dict[str, Any]]) -> Any:
    from gitml.monitor.html import new_figure

    columns: dict[str, float] = {}
    for row in rows:
        for column, effect in (row.get("effects") or {}).items():
            columns[column] = max(columns.get(column, 0.0), float(effect))
    drawn = sorted(columns, key=lambda c: -columns[c])[:_MAX_COLUMNS_DRAWN]
    figure = new_figure(7.5, 3.6)
    ax = figure.add_subplot()
    x = list(range(len(rows)))
    for column in drawn:
        found = [(row.get("effects") or {}).get(column) for row in rows]
        ys = [float("nan") if y is None else float(y) for y in found]
        ax.plot(x, ys, marker="o", label=column)
        flagged = [k for k, row in enumerate(rows) if column in (row.get("drifted") or {})]
        ax.scatter(flagged, [ys[k] for k in flagged], s=90, facecolors="none", edgecolors="#c0392b")
    ax.set_xticks(x, [_label(row) for row in rows], rotation=30 if len(rows) > 3 else 0, fontsize=7)
    ax.set_xlabel("run (UTC); circled: drifted")
    ax.set_ylabel("drift effect (Wasserstein / JS)")
    ax.set_title(f"drift effect per column, top {len(drawn)} by largest effect", fontsize=9)
    if drawn:
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.spines[["top", "right"]].set_visible(False)
    return figure


def _metric_figure(rows: list[dict[str, Any]]) -> Any:
    from gitml.monitor.html import CURRENT_COLOR, ESTIMATED_COLOR, new_figure

    figure = new_figure(7.5, 3.2)
    ax = figure.add_subplot()
    x = list(range(len(rows)))
    metric = next((row.get("metric") for row in rows if row.get("metric")), "metric")
    for kind, color, marker in (
        ("realised", CURRENT_COLOR, "o"),
        ("estimated", ESTIMATED_COLOR, "s"),
    ):
        ys = [row.get(kind) for row in rows]
        ax.plot(
            x,
            [float("nan") if y is None else y for y in ys],
            marker=marker,
            color=color,
            label=kind,
        )
    ax.set_xticks(x, [_label(row) for row in rows], rotation=30 if len(rows) > 3 else 0, fontsize=7)
    ax.set_xlabel("run (UTC)")
    ax.set_ylabel(str(metric))
    ax.set_title(
        f"{metric} over time: realised (labels) and estimated (calibrated scores)", fontsize=9
    )
    ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return figure


def _label(row: dict[str, Any]) -> str:
    return str(row.get("created", ""))[5:16].replace("T", " ")


def _cell(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"
