"""Gate rules on hand-built comparisons, and profile-based distribution shift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gitml.config.schema import PromotionParams
from gitml.data.profile import compare_profiles
from gitml.review.compare import Comparison, MetricRow, SignatureDiff
from gitml.review.gate import BLOCKED, NOT_COMPARABLE, PROMOTE, decide
from gitml.review.revision import Revision

POLICY = PromotionParams.model_validate(
    {
        "minimums": {"roc_auc": 0.8, "log_loss": 0.5},
        "max_regression": {"roc_auc": {"absolute": 0.01}, "log_loss": {"relative": 0.05}},
        "ci_lower_bound": {"roc_auc": -0.02},
        "slices": {"metrics": ["roc_auc"], "max_regression": 0.05, "max_gap": 0.15},
        "serving": {"max_model_bytes": 1000, "max_predict_ms_per_1000_rows": 50},
    }
)


def _revision(label: str, serving: dict | None = None) -> Revision:
    metrics = {"serving": serving or {"model_bytes": 500, "predict_ms_per_1000_rows": 10}}
    return Revision(label, None, metrics, None, None, None, None, None, None, None, {})


def _slices(base_auc: float, head_auc: float, gap: float = 0.05) -> dict:
    def side(auc: float) -> dict:
        groups = {"a": {"rows": 500, "too_small": False, "roc_auc": auc}}
        return {"groups": groups, "max_gap": {"roc_auc": gap}}

    return {"contract": {"head": side(head_auc), "base": side(base_auc)}}


def _comparison(rows, *, status="comparable", slices=None, signature=None, serving=None):
    return Comparison(
        base=_revision("main"),
        head=_revision("pr", serving),
        status=status,
        reason="why" if status == "not_comparable" else None,
        metrics=rows,
        slices=slices or _slices(0.80, 0.80),
        params_changed=[],
        data_changed=[],
        signature=signature or SignatureDiff(),
        model_changed=True,
    )


def _auc(base, head, low, high):
    return MetricRow("roc_auc", True, base, head, head - base, low, high)


def _loss(base, head):
    return MetricRow("log_loss", False, base, head, head - base, -0.01, 0.01)


def test_better_model_promotes() -> None:
    verdict = decide(_comparison([_auc(0.83, 0.85, 0.005, 0.03), _loss(0.45, 0.43)]), POLICY)
    assert verdict.status == PROMOTE and not verdict.failed


@pytest.mark.parametrize(
    ("rows", "failed"),
    [
        (
            [_auc(0.85, 0.79, -0.08, -0.04), _loss(0.40, 0.40)],
            {"minimums.roc_auc", "max_regression.roc_auc", "ci_lower_bound.roc_auc"},
        ),
        ([_auc(0.85, 0.845, -0.03, 0.02), _loss(0.40, 0.40)], {"ci_lower_bound.roc_auc"}),
        ([_auc(0.85, 0.85, 0, 0), _loss(0.40, 0.43)], {"max_regression.log_loss"}),
        (
            [_auc(0.85, 0.85, 0, 0), _loss(0.40, 0.51)],
            {"minimums.log_loss", "max_regression.log_loss"},
        ),
    ],
)
def test_each_rule_blocks_on_its_own(rows, failed) -> None:
    verdict = decide(_comparison(rows), POLICY)
    assert verdict.status == BLOCKED
    assert {r.rule for r in verdict.failed} == failed


def test_slices_serving_and_breaking_signature() -> None:
    ok = [_auc(0.85, 0.85, 0, 0), _loss(0.4, 0.4)]
    slice_drop = decide(_comparison(ok, slices=_slices(0.80, 0.70)), POLICY)
    assert {r.rule for r in slice_drop.failed} == {"slices.max_regression.roc_auc"}
    wide_gap = decide(_comparison(ok, slices=_slices(0.8, 0.8, gap=0.3)), POLICY)
    assert {r.rule for r in wide_gap.failed} == {"slices.max_gap.roc_auc"}
    heavy = decide(_comparison(ok, serving={"model_bytes": 5000}), POLICY)
    assert {r.rule for r in heavy.failed} == {"serving.max_model_bytes"}
    breaking = decide(_comparison(ok, signature=SignatureDiff(removed=["tenure"])), POLICY)
    assert breaking.failed[0].rule == "allow_breaking_signature"
    assert "input 'tenure' removed" in breaking.failed[0].detail
    allowed = POLICY.model_copy(update={"allow_breaking_signature": True})
    assert (
        decide(_comparison(ok, signature=SignatureDiff(removed=["x"])), allowed).status == PROMOTE
    )


def test_not_comparable_and_first_model_use_absolute_rules_only() -> None:
    worse = [_auc(0.90, 0.82, -0.1, -0.06), _loss(0.3, 0.45)]  # would fail relative rules
    verdict = decide(_comparison(worse, status="not_comparable"), POLICY)
    assert verdict.status == NOT_COMPARABLE and verdict.exit_code == 2
    first = decide(_comparison(worse, status="first_model"), POLICY)
    assert first.status == PROMOTE
    below = decide(_comparison([_auc(0.9, 0.7, 0, 0)], status="not_comparable"), POLICY)
    assert below.status == BLOCKED  # a failed absolute rule outranks "not comparable"


def _profile(values: np.ndarray, cats: list[str]) -> dict:
    from gitml.config.compose import compose_params, parse_params
    from gitml.data.profile import profile_frame
    from tests.unit.test_config import CONF

    data = parse_params(compose_params(CONF), source="t").data
    frame = pd.DataFrame({"tenure": values, "contract": cats})
    return profile_frame(frame, data)


def test_profiles_flag_shifted_columns_only() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    cats = list(rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.5, 0.3, 0.2]))
    base = _profile(rng.normal(30, 10, n), cats)
    same = _profile(rng.normal(30, 10, n), cats)
    moved_cats = list(rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.1, 0.3, 0.6]))
    moved = _profile(rng.normal(45, 10, n), moved_cats)
    assert not any(r["shifted"] for r in compare_profiles(base, same))
    flagged = {r["column"] for r in compare_profiles(base, moved) if r["shifted"]}
    assert flagged == {"tenure", "contract"}
