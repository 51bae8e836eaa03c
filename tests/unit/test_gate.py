"""Gate rules on hand-built comparisons: every rule blocks alone, nothing is skipped silently."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from gitml.config.compose import CommittedParams
from gitml.config.schema import PromotionParams
from gitml.review.compare import Comparison, MetricRow
from gitml.review.contract import SignatureDiff
from gitml.review.gate import BLOCKED, NOT_COMPARABLE, PROMOTE, decide
from gitml.review.revision import Revision
from gitml.review.timing import Timing
from tests.unit.test_importance_review import importance_file

POLICY = PromotionParams.model_validate(
    {
        "minimums": {"roc_auc": 0.8, "log_loss": 0.5},
        "max_regression": {"roc_auc": {"absolute": 0.01}, "log_loss": {"relative": 0.05}},
        "ci_lower_bound": {"roc_auc": -0.02},
        "no_significant_regression": {"metrics": ["roc_auc", "log_loss"], "min_effect": 0.002},
        "slices": {"metrics": ["roc_auc"], "max_regression": 0.05, "max_gap": 0.15},
        "serving": {"max_model_bytes": 1000, "max_predict_ms_per_1000_rows": 50},
    }
)


FAST = Timing(10.0, 9)


def _revision(label: str, *, size: int | None = 500, predicted=("No", "Yes")) -> Revision:
    metadata = {"model_file": {"bytes": size}} if size is not None else {}
    predictions = pd.DataFrame(
        {
            "row_id": range(len(predicted)),
            "actual": list(predicted),
            "predicted": list(predicted),
            "score": [0.1] * len(predicted),
        }
    )
    signature = {"inputs": [], "output": {"classes": ["No", "Yes"], "positive_class": "Yes"}}
    evaluate = {"threshold": 0.5, "metrics": ["roc_auc"], "slices": ["contract"]}
    params = CommittedParams({"evaluate": evaluate}, source="params.yaml")
    return Revision(label, None, {}, None, predictions, None, signature, metadata, params, None, {})


def _slices(base_auc: float, head_auc: float, gap: float = 0.05) -> dict:
    def side(auc: float) -> dict:
        groups = {
            "a": {"rows": 500, "too_small": False, "roc_auc": auc},
            "b": {"rows": 500, "too_small": False, "roc_auc": auc},
        }
        return {"groups": groups, "max_gap": {"roc_auc": gap}}

    return {"contract": {"head": side(head_auc), "base": side(base_auc)}}


def _comparison(
    rows,
    *,
    status="comparable",
    slices=None,
    signature=None,
    head: Revision | None = None,
    timing: Timing | None = FAST,
) -> Comparison:
    return Comparison(
        base=_revision("main"),
        head=head or _revision("pr"),
        status=status,
        reason="why" if status == "not_comparable" else None,
        metrics=rows,
        slices=_slices(0.80, 0.80) if slices is None else slices,
        params_changed=[],
        data_changed=[],
        signature=signature or SignatureDiff(),
        model_changed=True,
        head_timing=timing,
    )


def _auc(base, head, low, high):
    return MetricRow("roc_auc", True, base, head, head - base, low, high)


def _loss(base, head, low=-0.01, high=0.01):
    return MetricRow("log_loss", False, base, head, head - base, low, high)


def _failed(verdict) -> set[str]:
    return {r.rule for r in verdict.failed}


def test_better_model_promotes() -> None:
    verdict = decide(_comparison([_auc(0.83, 0.85, 0.005, 0.03), _loss(0.45, 0.43)]), POLICY)
    assert verdict.status == PROMOTE and not verdict.failed
    assert verdict.significant_regressions == []


@pytest.mark.parametrize(
    ("rows", "failed"),
    [
        (
            [_auc(0.85, 0.79, -0.08, -0.04), _loss(0.40, 0.40)],
            {
                "minimums.roc_auc",
                "max_regression.roc_auc",
                "ci_lower_bound.roc_auc",
                "no_significant_regression.roc_auc",
            },
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
    assert _failed(verdict) == failed


def test_slices_serving_and_breaking_signature() -> None:
    ok = [_auc(0.85, 0.85, 0, 0), _loss(0.4, 0.4)]
    slice_drop = decide(_comparison(ok, slices=_slices(0.80, 0.70)), POLICY)
    assert _failed(slice_drop) == {"slices.max_regression.roc_auc"}
    wide_gap = decide(_comparison(ok, slices=_slices(0.8, 0.8, gap=0.3)), POLICY)
    assert _failed(wide_gap) == {"slices.max_gap.roc_auc"}
    heavy = decide(_comparison(ok, head=_revision("pr", size=5000)), POLICY)
    assert _failed(heavy) == {"serving.max_model_bytes"}
    breaking = decide(_comparison(ok, signature=SignatureDiff(removed=["tenure"])), POLICY)
    assert breaking.failed[0].rule == "allow_breaking_signature"
    assert "input 'tenure' removed" in breaking.failed[0].detail
    allowed = POLICY.model_copy(update={"allow_breaking_signature": True})
    assert (
        decide(_comparison(ok, signature=SignatureDiff(removed=["x"])), allowed).status == PROMOTE
    )


def test_timing_rule_has_a_stated_tolerance_and_fails_when_unmeasured() -> None:
    ok = [_auc(0.85, 0.85, 0, 0), _loss(0.4, 0.4)]
    # limit 50 ms, tolerance 25 %: 60 ms passes, 63 ms fails
    within = decide(_comparison(ok, timing=Timing(60.0, 9)), POLICY)
    assert within.status == PROMOTE
    rule = next(r for r in within.rules if r.rule == "serving.max_predict_ms_per_1000_rows")
    assert "median of 9" in rule.detail and "25 % tolerance" in rule.detail
    slow = decide(_comparison(ok, timing=Timing(63.0, 9)), POLICY)
    assert _failed(slow) == {"serving.max_predict_ms_per_1000_rows"}
    broken = decide(_comparison(ok, timing=Timing(None, 9, "model file not found")), POLICY)
    assert _failed(broken) == {"serving.max_predict_ms_per_1000_rows"}
    assert "cannot be evaluated" in broken.failed[0].detail
    assert "model file not found" in broken.failed[0].detail
    assert _failed(decide(_comparison(ok, timing=None), POLICY)) == {
        "serving.max_predict_ms_per_1000_rows"
    }


def test_a_rule_that_cannot_be_evaluated_fails() -> None:
    blocked = [_auc(0.85, 0.85, 0, 0), _loss(0.40, 0.43)]
    assert decide(_comparison(blocked), POLICY).status == BLOCKED
    # dropping the failing metric from head's output must not turn "blocked" into "promote"
    without_loss = decide(_comparison([_auc(0.85, 0.85, 0, 0)]), POLICY)
    assert without_loss.status == BLOCKED
    assert _failed(without_loss) == {
        "minimums.log_loss",
        "max_regression.log_loss",
        "no_significant_regression.log_loss",
    }
    assert all("cannot be evaluated" in r.detail for r in without_loss.failed)
    no_interval = MetricRow("roc_auc", True, 0.85, 0.85, 0.0, None, None)
    assert _failed(decide(_comparison([no_interval, _loss(0.4, 0.4)]), POLICY)) == {
        "ci_lower_bound.roc_auc",
        "no_significant_regression.roc_auc",
    }
    ok = [_auc(0.85, 0.85, 0, 0), _loss(0.4, 0.4)]
    no_slices = decide(_comparison(ok, slices={}), POLICY)
    assert _failed(no_slices) == {"slices.max_gap"}
    assert "'contract' is configured but not in slices.json" in no_slices.failed[0].detail
    no_size = decide(_comparison(ok, head=_revision("pr", size=None)), POLICY)
    assert _failed(no_size) == {"serving.max_model_bytes"}


def test_a_model_that_never_predicts_a_class_is_blocked() -> None:
    ok = [_auc(0.85, 0.85, 0, 0), _loss(0.4, 0.4)]
    degenerate = _revision("pr", predicted=("No", "No", "No"))
    verdict = decide(_comparison(ok, head=degenerate), POLICY)
    assert _failed(verdict) == {"require_all_classes_predicted"}
    assert "never predicts 'Yes' on 3 test rows" in verdict.failed[0].detail
    first = decide(_comparison(ok, head=degenerate, status="first_model"), POLICY)
    assert first.status == BLOCKED  # the first model is gated too


def test_significantly_worse_metrics_block_and_are_named_in_the_verdict() -> None:
    # the reference project with model.params.C: 0.003 (measured): small AUC loss, but
    # recall, f1 and log loss significantly worse
    rows = [
        _auc(0.8421, 0.8389, -0.0081, 0.0018),
        MetricRow("f1", True, 0.5841, 0.5472, -0.0369, -0.0610, -0.0129),
        MetricRow("precision", True, 0.6513, 0.6813, 0.0300, 0.0028, 0.0578),
        MetricRow("recall", True, 0.5294, 0.4572, -0.0722, -0.1000, -0.0449),
        _loss(0.4202, 0.4295, 0.0016, 0.0163),
    ]
    gated = POLICY.no_significant_regression.model_copy(
        update={"metrics": ["roc_auc", "f1", "log_loss"]}
    )
    policy = POLICY.model_copy(update={"no_significant_regression": gated})
    verdict = decide(_comparison(rows), policy)
    assert verdict.status == BLOCKED
    assert _failed(verdict) == {
        "no_significant_regression.f1",
        "no_significant_regression.log_loss",
    }
    # the verdict names every significantly worse metric, gated or not (recall is not gated)
    assert "recall -0.0722 [-0.1000, -0.0449]" in verdict.significant_regressions
    assert len(verdict.significant_regressions) == 3  # precision got significantly *better*
    passed = next(r for r in verdict.rules if r.rule == "no_significant_regression.roc_auc")
    assert passed.passed and "not significantly worse" in passed.detail
    # a precision/recall trade-off passes when the gated metrics are not significantly worse
    traded = [
        _auc(0.83, 0.85, 0.005, 0.03),
        MetricRow("f1", True, 0.30, 0.58, 0.28, 0.25, 0.31),
        MetricRow("precision", True, 0.89, 0.65, -0.24, -0.32, -0.15),
        _loss(0.47, 0.42, -0.06, -0.04),
    ]
    accepted = decide(_comparison(traded), policy)
    assert accepted.status == PROMOTE
    assert accepted.significant_regressions == ["precision -0.2400 [-0.3200, -0.1500]"]
    missing = decide(_comparison([_auc(0.85, 0.85, 0, 0), _loss(0.4, 0.4)]), policy)
    assert _failed(missing) == {"no_significant_regression.f1"}
    # significant but trivially small (a release whose scores got 0.001 of noise): no block
    tiny = decide(
        _comparison([_auc(0.85, 0.85, 0, 0), _loss(0.4202, 0.4207, 0.0001, 0.0012)]), policy
    )
    rule = next(r for r in tiny.rules if r.rule == "no_significant_regression.log_loss")
    assert rule.passed and "smaller than min_effect 0.002" in rule.detail


def test_not_comparable_and_first_model_use_absolute_rules_only() -> None:
    worse = [_auc(0.90, 0.82, -0.1, -0.06), _loss(0.3, 0.45)]  # would fail relative rules
    verdict = decide(_comparison(worse, status="not_comparable"), POLICY)
    assert verdict.status == NOT_COMPARABLE and verdict.exit_code == 2
    first = decide(_comparison(worse, status="first_model"), POLICY)
    assert first.status == PROMOTE
    below = decide(_comparison([_auc(0.9, 0.7, 0, 0)], status="not_comparable"), POLICY)
    assert below.status == BLOCKED  # a failed absolute rule outranks "not comparable"


def test_comparison_reads_model_size_from_metadata_then_old_metrics() -> None:
    head = _revision("pr", size=None)
    old = dataclasses.replace(head, metrics={"serving": {"model_bytes": 700}})
    assert _comparison([], head=old).head_model_bytes == 700
    assert _comparison([], head=_revision("pr", size=900)).head_model_bytes == 900


FORBID = POLICY.model_copy(
    update={
        "importance": PromotionParams.model_validate(
            {"importance": {"forbid_top_k": {"columns": ["female", "senior_citizen"], "k": 3}}}
        ).importance
    }
)


def _relying(*columns: tuple[str, float, float, float]) -> Revision:
    return dataclasses.replace(_revision("pr"), importance=importance_file(*columns))


OK_ROWS = [_auc(0.85, 0.85, 0, 0), _loss(0.4, 0.4)]


def test_a_forbidden_column_in_the_top_k_with_an_interval_above_zero_blocks() -> None:
    head = _relying(
        ("tenure", 0.07, 0.06, 0.08),
        ("female", 0.05, 0.04, 0.06),  # rank 2, relied on: blocks
        ("contract", 0.03, 0.02, 0.04),
        ("senior_citizen", 0.02, 0.01, 0.03),  # rank 4 > k
    )
    verdict = decide(_comparison(OK_ROWS, head=head), FORBID)
    assert verdict.status == BLOCKED
    assert _failed(verdict) == {"importance.forbid_top_k.female"}
    assert verdict.failed[0].detail == (
        "'female' ranks 2 of 4 in what the model relies on (roc_auc importance 0.0500 "
        "[0.0400, 0.0600]): the policy forbids it in the top 3 with an interval above zero"
    )
    passed = {r.rule: r.detail for r in verdict.rules if r.rule.startswith("importance")}
    assert passed["importance.forbid_top_k.senior_citizen"].endswith("outside the top 3")
    # an absolute rule: the first model is judged by it too
    first = decide(_comparison(OK_ROWS, head=head, status="first_model"), FORBID)
    assert _failed(first) == {"importance.forbid_top_k.female"}


def test_a_top_k_column_whose_interval_reaches_zero_or_a_dropped_column_passes() -> None:
    head = _relying(("female", 0.001, -0.0005, 0.002), ("tenure", 0.0005, -0.001, 0.002))
    verdict = decide(_comparison(OK_ROWS, head=head), FORBID)
    assert verdict.status == PROMOTE
    details = [r.detail for r in verdict.rules if r.rule.startswith("importance")]
    assert details == [
        "'female' ranks 1 of 2 in what the model relies on (roc_auc importance 0.0010 "
        "[-0.0005, 0.0020]): within the top 3, but its interval reaches zero",
        "'senior_citizen' is not an input of the head model: it cannot rank",
    ]


def test_the_forbid_rule_fails_without_the_heads_importance_and_is_off_when_empty() -> None:
    verdict = decide(_comparison(OK_ROWS), FORBID)  # the head has no importance.json
    assert _failed(verdict) == {
        "importance.forbid_top_k.female",
        "importance.forbid_top_k.senior_citizen",
    }
    assert all(
        r.detail == "cannot be evaluated: the head (pr) has no reports/importance.json"
        for r in verdict.failed
    )
    assert decide(_comparison(OK_ROWS), POLICY).status == PROMOTE  # no columns: no rule
    assert not any(
        r.rule.startswith("importance") for r in decide(_comparison(OK_ROWS), POLICY).rules
    )


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"forbid_top_k": {"columns": ["female"], "k": 0}}, "greater than or equal to 1"),
        ({"forbid_top_k": {"columns": "female"}}, "valid list"),
        ({"forbid_top_k": {"colums": ["female"]}}, "unknown key (allowed here: columns, k)"),
    ],
)
def test_a_bad_forbid_rule_is_refused_naming_the_key(policy, message) -> None:
    from gitml.errors import ConfigError

    params = CommittedParams({"promotion": {"importance": policy}}, source="params.yaml at main")
    with pytest.raises(ConfigError) as err:
        params.promotion  # noqa: B018
    text = err.value.format()
    assert "promotion.importance.forbid_top_k" in text and message in text
