"""monitor.md, monitor.html, monitor.json and the history, rendered from hand-built results."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from gitml.errors import DataError
from gitml.monitor.history import (
    append_history,
    history_row,
    history_table,
    read_history,
    render_history_html,
)
from gitml.monitor.html import render_html
from gitml.monitor.report import column_reason, render_markdown
from gitml.monitor.result import (
    ColumnDrift,
    Distribution,
    DriftReport,
    MetricValue,
    MonitorResult,
    PerformanceWindow,
    QualityFinding,
)
from gitml.monitor.run import write_outputs

# a resource the browser would fetch: src/href/url() or an @import pointing at the network
REMOTE = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?(https?:)?//|@import""")


def _column(name: str, *, drifted: bool, effect: float = 0.21, role: str = "feature"):
    return ColumnDrift(
        column=name,
        role=role,  # type: ignore[arg-type]
        kind="numeric",
        test="ks",
        statistic=0.083,
        p_value=1e-10,
        p_adjusted=3.1e-09 if drifted else 0.8,
        effect_name="wasserstein",
        effect=effect,
        min_effect=0.05,
        psi=float("nan"),
        reference_rows=5634,
        current_rows=2000,
        drifted=drifted,
        distribution=Distribution(
            ["[0, 10)", "[10, 40)", "[40, 72]"], [0.3, 0.4, 0.3], [0.1, 0.4, 0.5]
        ),
    )


def _result(*, alert: bool = True) -> MonitorResult:
    columns = [
        _column("tenure", drifted=alert),
        _column("monthly<charges>", drifted=False, effect=0.01),
        _column("score", drifted=alert, effect=0.08, role="output"),
    ]
    quality = [
        QualityFinding(
            column="contract",
            rule="unseen_category",
            rows=3,
            rate=0.0015,
            reference_rate=None,
            limit=0.001,
            alarm=alert,
            message="contract: 3 rows hold categories the model never saw",
            examples=["Weekly"],
        )
    ]
    window = PerformanceWindow(
        model_version="v1.0.0",
        start="2026-11-28T00:00:00+00:00",
        end="2026-11-29T00:00:00+00:00",
        rows=1000,
        labelled=800,
        realised=[MetricValue("roc_auc", 0.71, 0.66, 0.75, 0.8, alert)],
        estimated=[MetricValue("roc_auc", 0.84, 0.81, 0.87, 0.8, False)],
        alarm=alert,
    )
    return MonitorResult(
        created="2026-11-30T12:00:00+00:00",
        task="binary",
        model_name="churn-classifier",
        current="logs/predictions (2 log files)",
        current_rows=2000,
        alpha=0.01,
        correction="holm",
        drift=[
            DriftReport(
                "v1.0.0", "churn-classifier@v1.0.0 training split", 5634, 2000, columns, quality
            )
        ],
        performance=[window],
        alert=alert,
        reasons=[column_reason(c) for c in columns if c.drifted],
        assumptions=["Scores calibrated on the held-out split stay calibrated."],
    )


def test_markdown_leads_with_the_verdict_and_names_each_drifted_column() -> None:
    text = render_markdown(_result())
    lines = text.splitlines()
    assert lines[0] == "## Monitoring: ALERT"
    assert lines[2].startswith("**ALERT**: 2 drifted columns, 1 data-quality alarm, 1 performance")
    assert "- tenure: ks 0.083, wasserstein 0.21 \u2265 0.05, p_adj 3.1e-09" in lines
    drifted_table = text.split("<details>")[0]
    assert (
        "| tenure | - | feature | ks | 0.083 | wasserstein 0.21 (min 0.05) | 3.1e-09 |"
        in drifted_table
    )
    assert "monthly<charges>" not in drifted_table  # only in the folded list of every column
    assert "| v1.0.0 | contract | unseen_category | 3 |" in text
    assert "| roc_auc | 0.71 [0.66, 0.75] | 0.84 [0.81, 0.87] | 0.8 | **yes** |" in text
    assert text.rstrip().endswith("- Scores calibrated on the held-out split stay calibrated.")
    assert len(text) < 4000  # an issue comment, not a dump


def test_a_quiet_run_says_so_first() -> None:
    text = render_markdown(_result(alert=False))
    assert text.splitlines()[2].startswith("**Quiet**: no drift in 3 column tests")


def test_html_is_self_contained_with_a_plot_per_drifted_column_and_metric() -> None:
    page = render_html(_result())
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<script" not in page and not REMOTE.search(page)
    assert "http://" not in page and "https://" not in page
    # tenure and score drifted; one performance series (roc_auc)
    assert page.count("<svg") == 3
    assert "monthly&lt;charges&gt;" in page and "monthly<charges>" not in page


def test_a_metric_outside_its_own_interval_is_still_drawn() -> None:
    # a percentile interval can miss its point estimate (skewed metric, few labels): the
    # page must still render, not fail the monitoring run
    result = _result()
    window = dataclasses.replace(
        result.performance[0],
        realised=[MetricValue("roc_auc", 0.70, 0.71, 0.75, 0.8, True)],
        estimated=[MetricValue("roc_auc", 0.88, 0.81, 0.87, 0.8, False)],
    )
    page = render_html(dataclasses.replace(result, performance=[window]))
    assert page.count("<svg") == 3


def test_outputs_are_written_together_as_strict_json(tmp_path: Path) -> None:
    written = write_outputs(_result(), tmp_path / "out")
    assert sorted(p.name for p in written) == ["monitor.html", "monitor.json", "monitor.md"]
    data = json.loads((tmp_path / "out" / "monitor.json").read_text())
    assert data["alert"] is True and data["drift"][0]["columns"][0]["psi"] is None  # NaN


def test_history_appends_one_row_per_run_and_charts_them(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "monitor" / "history.jsonl"
    append_history(path, history_row(_result(alert=False)))
    append_history(path, history_row(_result()))
    rows = read_history(path)
    assert [r["alert"] for r in rows] == [False, True]
    assert rows[1]["drifted"] == {"tenure": 0.21, "score": 0.08}
    assert rows[1]["realised"] == pytest.approx(0.71) and rows[1]["estimated"] == 0.84
    table = history_table(rows)
    assert table[2][3] == "ALERT" and "tenure 0.21" in table[2][4]
    page = render_history_html(rows)
    assert page.count("<svg") == 2 and "http://" not in page and "https://" not in page


def test_a_damaged_history_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"created": "2026-11-30"}\n{not json\n')
    with pytest.raises(DataError, match=r"history.jsonl: line 2 is not JSON"):
        read_history(path)
