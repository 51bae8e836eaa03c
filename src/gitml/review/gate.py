"""The promotion gate: apply the policy in params (`promotion`) to a comparison."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitml.config.schema import PromotionParams
from gitml.evaluate.metrics import HIGHER_IS_BETTER
from gitml.review.compare import Comparison

PROMOTE, BLOCKED, NOT_COMPARABLE = "promote", "blocked", "not comparable"
EXIT_CODES = {PROMOTE: 0, BLOCKED: 1, NOT_COMPARABLE: 2}


@dataclass(frozen=True)
class RuleResult:
    rule: str  # e.g. "max_regression.roc_auc"
    passed: bool
    detail: str
    metric: str | None = None


@dataclass(frozen=True)
class Verdict:
    status: str
    rules: list[RuleResult]
    reason: str | None = None

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.rules if not r.passed]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


def decide(comparison: Comparison, policy: PromotionParams) -> Verdict:
    """Absolute rules always apply; relative ones only when base and head are comparable.

    A failing rule blocks; otherwise a comparison across different test sets is 'not
    comparable'; otherwise the model may be promoted.
    """
    rules = _absolute_rules(comparison, policy)
    if comparison.status == "comparable":
        rules += _relative_rules(comparison, policy)
    if comparison.status != "first_model":
        rules += _signature_rules(comparison, policy)
    if any(not r.passed for r in rules):
        return Verdict(BLOCKED, rules)
    if comparison.status == "not_comparable":
        return Verdict(NOT_COMPARABLE, rules, comparison.reason)
    return Verdict(PROMOTE, rules, comparison.reason)


def _worse(row_higher: bool, base: float, head: float) -> float:
    """How much worse head is than base (positive = worse), whatever the metric's direction."""
    return base - head if row_higher else head - base


def _absolute_rules(comparison: Comparison, policy: PromotionParams) -> list[RuleResult]:
    rules = []
    head = {row.name: row.head for row in comparison.metrics}
    for metric, floor in policy.minimums.items():
        value = head.get(metric)
        higher = HIGHER_IS_BETTER[metric]
        ok = value is not None and (value >= floor if higher else value <= floor)
        sign = ">=" if higher else "<="
        rules.append(
            RuleResult(
                f"minimums.{metric}", ok, f"{metric} {_fmt(value)} must be {sign} {floor:g}", metric
            )
        )
    for column, info in comparison.slices.items():
        gaps = info["head"].get("max_gap", {})
        for metric in policy.slices.metrics:
            gap = gaps.get(metric)
            if policy.slices.max_gap is None or gap is None:
                continue
            ok = gap <= policy.slices.max_gap
            rules.append(
                RuleResult(
                    f"slices.max_gap.{metric}",
                    ok,
                    f"largest {metric} gap between '{column}' groups is {gap:.4f} "
                    f"(at most {policy.slices.max_gap:g})",
                    metric,
                )
            )
    serving = (comparison.head.metrics or {}).get("serving", {})
    budgets = [
        (
            "serving.max_model_bytes",
            policy.serving.max_model_bytes,
            serving.get("model_bytes"),
            "model size",
            "bytes",
        ),
        (
            "serving.max_predict_ms_per_1000_rows",
            policy.serving.max_predict_ms_per_1000_rows,
            serving.get("predict_ms_per_1000_rows"),
            "prediction time per 1,000 rows",
            "ms",
        ),
    ]
    for rule, limit, value, what, unit in budgets:
        if limit is None or value is None:
            continue
        rules.append(
            RuleResult(rule, value <= limit, f"{what} {value:,} {unit} (at most {limit:,})")
        )
    return rules


def _relative_rules(comparison: Comparison, policy: PromotionParams) -> list[RuleResult]:
    rules = []
    rows = {row.name: row for row in comparison.metrics}
    for metric, limit in policy.max_regression.items():
        row = rows.get(metric)
        if row is None or row.base is None or row.head is None:
            continue
        worse = _worse(row.higher_is_better, row.base, row.head)
        allowed = limit.absolute if limit.absolute is not None else limit.relative * abs(row.base)
        rules.append(
            RuleResult(
                f"max_regression.{metric}",
                worse <= allowed + 1e-12,
                f"{metric} {row.base:.4f} -> {row.head:.4f}: "
                + (f"worse by {worse:.4f}" if worse > 0 else "not worse")
                + f" (allowed {allowed:.4f})",
                metric,
            )
        )
    for metric, bound in policy.ci_lower_bound.items():
        row = rows.get(metric)
        if row is None or row.low is None or row.high is None:
            continue
        lower = row.low if row.higher_is_better else -row.high  # interval of the gain
        rules.append(
            RuleResult(
                f"ci_lower_bound.{metric}",
                lower >= bound,
                f"{metric}: lower end of the interval of the gain is {lower:+.4f} "
                f"(must be >= {bound:+g})",
                metric,
            )
        )
    if policy.slices.max_regression is not None:
        rules += _slice_regressions(comparison, policy)
    return rules


def _slice_regressions(comparison: Comparison, policy: PromotionParams) -> list[RuleResult]:
    rules = []
    for column, info in comparison.slices.items():
        base = info.get("base")
        if not base:
            continue
        for group, head_values in info["head"]["groups"].items():
            base_values = base["groups"].get(group)
            if not base_values or head_values.get("too_small") or base_values.get("too_small"):
                continue
            for metric in policy.slices.metrics:
                old, new = base_values.get(metric), head_values.get(metric)
                if old is None or new is None:
                    continue
                worse = _worse(HIGHER_IS_BETTER[metric], old, new)
                rules.append(
                    RuleResult(
                        f"slices.max_regression.{metric}",
                        worse <= policy.slices.max_regression + 1e-12,
                        f"{metric} for {column}={group}: {old:.4f} -> {new:.4f} "
                        f"(may lose at most {policy.slices.max_regression:g})",
                        metric,
                    )
                )
    return rules


def _signature_rules(comparison: Comparison, policy: PromotionParams) -> list[RuleResult]:
    reasons = comparison.signature.breaking
    if not reasons:
        return []
    allowed = policy.allow_breaking_signature
    detail = "BREAKING signature change: " + "; ".join(reasons)
    detail += (
        " (acknowledged: allow_breaking_signature)"
        if allowed
        else (" (set promotion.allow_breaking_signature: true in conf/ to acknowledge)")
    )
    return [RuleResult("allow_breaking_signature", allowed, detail)]


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"
