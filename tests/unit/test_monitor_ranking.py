"""Drift ranked by importance: drifted columns the reference model relies on lead monitor.json,
monitor.md, monitor.html and the alarm lines; without importance the order stays, and says why."""

from __future__ import annotations

import dataclasses
import json

from gitml.monitor.html import render_html
from gitml.monitor.ranking import rank_drift
from gitml.monitor.reference import read_importance
from gitml.monitor.report import column_reason, render_markdown
from gitml.review.importance import parse_importance
from tests.unit.test_importance_review import importance_file
from tests.unit.test_monitor_report import _column, _result

# the reference model relies on tenure and contract, not on paperless_billing or partner
IMPORTANCE = parse_importance(
    importance_file(
        ("tenure", 0.07, 0.06, 0.08),
        ("contract", 0.03, 0.02, 0.04),
        ("paperless_billing", 0.001, -0.001, 0.003),
        ("partner", 0.0, -0.001, 0.001),
    ),
    where="v1.0.0",
)


def _report():
    columns = [
        _column("paperless_billing", drifted=True),  # drifted, not relied on
        _column("partner", drifted=False),
        _column("score", drifted=True, role="output"),
        _column("tenure", drifted=True),  # drifted and relied on (rank 1)
        _column("contract", drifted=True),  # drifted and relied on (rank 2)
    ]
    return dataclasses.replace(_result().drift[0], columns=columns)


def test_drifted_columns_the_model_relies_on_come_first_by_importance() -> None:
    ranked = rank_drift(_report(), IMPORTANCE, note="reports/importance.json at v1.0.0")
    assert [c.column for c in ranked.columns] == [
        "tenure",
        "contract",
        "paperless_billing",  # the other drifted columns, in the order tested
        "score",
        "partner",  # then the rest
    ]
    tenure, _, paperless, score, _ = ranked.columns
    assert (tenure.importance_rank, tenure.importance, tenure.relied_on) == (1, 0.07, True)
    assert (paperless.importance_rank, paperless.relied_on) == (3, False)
    assert score.importance_rank is None  # an output has no importance
    assert ranked.ranking.startswith(
        "Drifted columns the model relies on come first, by importance (2 of 4 inputs relied on"
    )
    assert column_reason(tenure).startswith("tenure (importance rank 1, relied on): ks 0.083")
    assert column_reason(paperless).startswith("paperless_billing (importance rank 3): ks")


def test_reports_and_json_lead_with_what_the_model_relies_on() -> None:
    ranked = rank_drift(_report(), IMPORTANCE, note="reports/importance.json at v1.0.0")
    reasons = [column_reason(c) for c in ranked.columns if c.drifted]
    result = dataclasses.replace(_result(), drift=[ranked], reasons=reasons)
    text = render_markdown(result)
    drifted_table = text.split("<details>")[0]
    rows = [line for line in drifted_table.splitlines() if line.startswith("| ")][2:]
    assert [r.split(" | ")[0] for r in rows[:4]] == [
        "| tenure",
        "| contract",
        "| paperless_billing",
        "| score",
    ]
    assert rows[0].startswith("| tenure | **0.07 (#1)** | feature |")
    assert rows[2].startswith("| paperless_billing | 0.001 (#3) | feature |")
    assert "Drifted columns the model relies on come first" in text
    assert text.index("- tenure (importance rank 1") < text.index("- paperless_billing")
    page = render_html(result)
    assert page.index("<td>tenure</td>") < page.index("<td>paperless_billing</td>")
    assert '<td class="num relied">0.07 (#1)</td>' in page
    columns = json.loads(json.dumps(result.to_json()))["drift"][0]["columns"]
    assert [(c["column"], c["importance_rank"], c["relied_on"]) for c in columns[:2]] == [
        ("tenure", 1, True),
        ("contract", 2, True),
    ]


def test_without_importance_the_order_stays_and_the_report_says_why() -> None:
    missing, why = read_importance(None, where="churn-classifier@v1.0.0 (1a2b3c4d5e6f)")
    assert missing is None
    assert why.startswith(
        "churn-classifier@v1.0.0 (1a2b3c4d5e6f) has no reports/importance.json (a model from "
        "before importance was computed)"
    )
    report = _report()
    kept = rank_drift(report, None, note=why)
    assert [c.column for c in kept.columns] == [c.column for c in report.columns]
    assert all(c.importance_rank is None for c in kept.columns)
    text = render_markdown(dataclasses.replace(_result(), drift=[kept]))
    assert "Drift is not ranked by importance: churn-classifier@v1.0.0 (1a2b3c4d5e6f) has no" in (
        text
    )
    assert "Drift is not ranked by importance" in render_html(
        dataclasses.replace(_result(), drift=[kept])
    )


def test_an_unreadable_importance_file_leaves_drift_unranked_and_names_the_problem() -> None:
    found, why = read_importance("{not json", where="revision main (1a2b3c4d5e6f)")
    assert found is None
    assert why.startswith("reports/importance.json at revision main (1a2b3c4d5e6f) is not valid")
    found, why = read_importance('{"importance_version": 1, "metric": "roc_auc"}', where="main")
    assert (
        found is None
        and why == "reports/importance.json at main: `columns` must be a list, got NoneType"
    )
    found, why = read_importance(json.dumps(importance_file(("a", 0.1, 0.05, 0.2))), where="main")
    assert (
        found is not None and why == "reports/importance.json at main, roc_auc on 1,409 test rows"
    )
