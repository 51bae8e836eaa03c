"""What the model relies on, base against head: the contract's rules, the report's section,
and plain words when a side has no reports/importance.json."""

from __future__ import annotations

import copy

import pytest

from gitml.config.compose import CommittedParams
from gitml.errors import DataError
from gitml.review.compare import Comparison, review_importance
from gitml.review.contract import SignatureDiff
from gitml.review.gate import PROMOTE, Verdict
from gitml.review.importance import compare_importance, parse_importance
from gitml.review.markdown import render_report
from gitml.review.revision import Revision, empty_revision

BASE_SHA = "1a2b3c4d5e6f" + "0" * 28
HEAD_SHA = "9f8e7d6c5b4a" + "0" * 28


def importance_file(*columns: tuple[str, float, float, float], metric: str = "roc_auc") -> dict:
    """A reports/importance.json of the contract's shape: (name, importance, low, high) each,
    ranked by importance as the stage ranks them."""
    ordered = sorted(columns, key=lambda c: (-c[1], c[0]))
    return {
        "importance_version": 1,
        "model_name": "churn-classifier",
        "estimator": "logistic_regression",
        "task": "binary",
        "metric": metric,
        "higher_is_better": True,
        "score": 0.84,
        "rows": {"test": 1409, "used": 1409, "subsampled": False, "max_rows": 50000},
        "repeats": 5,
        "bootstrap": {"resamples": 200, "confidence": 0.95},
        "seed": 42,
        "columns": [
            {"name": n, "rank": k, "importance": i, "low": lo, "high": hi}
            for k, (n, i, lo, hi) in enumerate(ordered, 1)
        ],
    }


BASE = importance_file(
    ("tenure", 0.07, 0.06, 0.08),
    ("contract", 0.03, 0.02, 0.04),
    ("monthly_charges", 0.02, 0.012, 0.028),
    ("female", 0.0002, -0.001, 0.0015),
    ("partner", 0.001, -0.0005, 0.002),
)
# the head leans on `female` (a slice column) and no longer on monthly_charges
HEAD = importance_file(
    ("tenure", 0.065, 0.055, 0.075),
    ("female", 0.05, 0.04, 0.06),
    ("contract", 0.028, 0.018, 0.038),
    ("monthly_charges", 0.001, -0.002, 0.004),
    ("partner", 0.0015, -0.0004, 0.003),
)
PARAMS = {"data": {"slices": ["female", "senior_citizen", "contract"]}, "importance": {"top_k": 2}}


def _revision(label: str, sha: str | None, importance: dict | None, params=None) -> Revision:
    committed = CommittedParams(params or PARAMS, source="params.yaml")
    return Revision(
        label, sha, {"metrics": {}}, None, None, None, None, None, committed, None, {},
        importance=importance,
    )  # fmt: skip


def _report(base: Revision, head: Revision, verdict: Verdict | None = None) -> str:
    comparison = Comparison(
        base=base,
        head=head,
        status="comparable",
        reason=None,
        metrics=[],
        slices={},
        params_changed=[],
        data_changed=[],
        signature=SignatureDiff(),
        model_changed=True,
        importance=review_importance(base, head),
    )
    return render_report(comparison, verdict or Verdict(PROMOTE, []), model_name="churn")


def test_now_and_no_longer_follow_separate_intervals_and_a_slice_column_is_flagged() -> None:
    review = review_importance(_revision("main", BASE_SHA, BASE), _revision("pr", HEAD_SHA, HEAD))
    assert [(r.name, r.change) for r in review.rows] == [
        ("tenure", None),  # lower on head, but the intervals overlap: no change
        ("female", "now"),
        ("contract", None),
        ("partner", None),
        ("monthly_charges", "no_longer"),  # 0.012 > 0.004: separate
    ]
    assert [r.name for r in review.flagged] == ["female"]
    assert review.flagged[0].base.rank == 5 and review.flagged[0].head.rank == 2
    # top 2 of head (params importance.top_k) and every change
    assert [r.name for r in review.shown] == ["tenure", "female", "monthly_charges"]


def test_touching_intervals_are_no_change_and_new_or_dropped_columns_count_when_relied_on() -> None:
    base = parse_importance(
        importance_file(("a", 0.02, 0.01, 0.03), ("gone", 0.01, 0.005, 0.02), ("b", 0.0, -1, 1)),
        where="base",
    )
    head = parse_importance(
        importance_file(("a", 0.04, 0.03, 0.05), ("new", 0.02, 0.01, 0.03), ("b", 0.0, -1, 1)),
        where="head",
    )
    changes = {r.name: r.change for r in compare_importance(base, head).rows}
    # a: head.low == base.high, the intervals touch: no change
    assert changes == {"a": None, "new": "now", "b": None, "gone": "no_longer"}


def test_a_side_without_importance_is_said_plainly_and_nothing_is_called() -> None:
    head = _revision("pr", HEAD_SHA, HEAD)
    review = review_importance(_revision("main", BASE_SHA, None), head)
    assert review.head is not None and review.now == [] and review.flagged == []
    assert "the base (1a2b3c4d) has no reports/importance.json (a first model" in review.note
    report = _report(_revision("main", BASE_SHA, None), head)
    assert "The base (1a2b3c4d) has no reports/importance.json" in report
    assert "| `female` (slice) | 2 | 0.0500 [0.0400, 0.0600] | yes |" in report
    assert "now relies on" not in report

    first = review_importance(empty_revision(), head)
    assert "the base (no earlier model) has no" in first.note

    missing = _report(_revision("main", BASE_SHA, BASE), _revision("pr", HEAD_SHA, None))
    section = missing.split("### What the model relies on")[1].split("###")[0]
    assert "The head (9f8e7d6c) has no reports/importance.json: what the model relies on is " in (
        section
    )
    assert "|" not in section


def test_importance_in_other_metrics_is_not_compared() -> None:
    base = copy.deepcopy(BASE)
    base["metric"] = "rmse"
    review = review_importance(_revision("main", BASE_SHA, base), _revision("pr", HEAD_SHA, HEAD))
    assert review.now == [] and review.no_longer == []
    assert "measured in rmse on the base (1a2b3c4d) and in roc_auc" in review.note


def test_the_report_section_shows_both_sides_and_calls_out_the_slice_column() -> None:
    report = _report(_revision("main", BASE_SHA, BASE), _revision("pr", HEAD_SHA, HEAD))
    section = report.split("### What the model relies on")[1].split("\n### ")[0]
    assert "how much roc_auc gets worse when a column's values are shuffled among 1,409" in section
    assert (
        "| `female` (slice) | 5 → 2 | 0.0002 [-0.0010, 0.0015] | 0.0500 [0.0400, 0.0600] | "
        "**now relies on** ⚠️ |"
    ) in section
    assert "| `monthly_charges` | 3 → 5 |" in section and "no longer relies on |" in section
    assert "Top 2 of 5 input columns, and every change; 2 more in" in section
    assert "> **⚠️ Now relies on slice column `female`** (rank 5 → 2, 0.0002 → 0.0500" in section
    assert "**No longer relies on:** `monthly_charges` (rank 3 → 5" in section
    # and at the top, beside the verdict
    verdict = report.split("### Metrics")[0]
    assert "**⚠️ The head now relies on slice column `female`**" in verdict


def test_a_file_that_breaks_the_contract_is_refused_naming_the_key() -> None:
    broken = copy.deepcopy(HEAD)
    del broken["columns"][1]["low"]
    with pytest.raises(DataError, match=r"reports/importance.json at 9f8e7d6c: columns\[1\] needs"):
        review_importance(_revision("main", BASE_SHA, BASE), _revision("pr", HEAD_SHA, broken))
    newer = dict(HEAD, importance_version=2)
    with pytest.raises(DataError, match="importance_version 2, this gitml reads version 1"):
        parse_importance(newer, where="9f8e7d6c")
