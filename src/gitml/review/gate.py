"""The promotion gate: apply the policy in params (`promotion`) to a comparison."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gitml.config.schema import PromotionParams
from gitml.review.compare import Comparison
from gitml.review.importance import parse_importance
from gitml.tasks import higher_is_better, is_classification

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
    # "recall -0.0722 [-0.1000, -0.0449]": every metric significantly worse, rule or not
    significant_regressions: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.rules if not r.passed]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


def decide(comparison: Comparison, policy: PromotionParams) -> Verdict:
    """Absolute rules always apply; relative ones only when base and head are comparable.

    A failing rule blocks, and a configured rule that cannot be evaluated (its metric,
    interval, slice or measurement is missing) fails; otherwise a comparison across different
    test rows is 'not comparable'; otherwise the model may be promoted.
    """
    rules = _absolute_rules(comparison, policy)
    if comparison.status == "comparable":
        rules += _relative_rules(comparison, policy)
    if comparison.status != "first_model":
        rules += _signature_rules(comparison, policy)
    worse = [
        f"{row.name} {row.delta:+.4f} [{row.low:+.4f}, {row.high:+.4f}]"
        for row in comparison.significant_regressions
        if row.delta is not None and row.low is not None and row.high is not None
    ]
    if any(not r.passed for r in rules):
        return Verdict(BLOCKED, rules, significant_regressions=worse)
    if comparison.status == "not_comparable":
        return Verdict(NOT_COMPARABLE, rules, comparison.reason, worse)
    return Verdict(PROMOTE, rules, comparison.reason, worse)


def _worse(row_higher: bool, base: float, head: float) -> float:
    """How much worse head is than base (positive = worse), whatever the metric's direction."""
    return base - head if row_higher else head - base


def _absolute_rules(comparison: Comparison, policy: PromotionParams) -> list[RuleResult]:
    rules = []
    head = {row.name: row.head for row in comparison.metrics}
    for metric, floor in policy.minimums.items():
        value = head.get(metric)
        higher = higher_is_better(metric)
        sign = ">=" if higher else "<="
        if value is None:
            what = f"{metric} is not in head's metrics"
            rules.append(_missing(f"minimums.{metric}", what, metric))
            continue
        ok = value >= floor if higher else value <= floor
        rules.append(
            RuleResult(
                f"minimums.{metric}", ok, f"{metric} {_fmt(value)} must be {sign} {floor:g}", metric
            )
        )
    if policy.require_all_classes_predicted and is_classification(comparison.head.task):
        rules.append(_every_class_predicted(comparison))  # a regression model has no classes
    if policy.slices.max_gap is not None:
        rules += _slice_gaps(comparison, policy)
    rules += _serving_rules(comparison, policy)
    rules += _importance_rules(comparison, policy)
    return rules


def _missing(rule: str, what: str, metric: str | None = None) -> RuleResult:
    """A configured rule that cannot be evaluated fails, and says what it lacked."""
    return RuleResult(rule, False, f"cannot be evaluated: {what}", metric)


def _every_class_predicted(comparison: Comparison) -> RuleResult:
    rule = "require_all_classes_predicted"
    predictions = comparison.head.predictions
    classes = ((comparison.head.signature or {}).get("output") or {}).get("classes")
    if predictions is None or "predicted" not in predictions or not classes:
        return _missing(rule, "head's predictions.csv or signature.json lacks predicted classes")
    seen = set(predictions["predicted"].astype(str))
    never = [str(c) for c in classes if str(c) not in seen]
    rows = len(predictions)
    if never:
        listed = ", ".join(f"'{c}'" for c in never)
        return RuleResult(
            rule, False, f"the model never predicts {listed} on {rows:,} test rows (degenerate)"
        )
    return RuleResult(rule, True, f"every class ({len(classes)}) predicted on {rows:,} test rows")


def _slice_gaps(comparison: Comparison, policy: PromotionParams) -> list[RuleResult]:
    limit = policy.slices.max_gap
    head = comparison.head.params
    evaluate = head.evaluate if head else None
    configured = evaluate.slices if evaluate else []
    missing = [c for c in configured if c not in comparison.slices]
    rules = [
        _missing("slices.max_gap", f"slice '{column}' is configured but not in slices.json")
        for column in missing
    ]
    if not comparison.slices and not missing:
        rules.append(_missing("slices.max_gap", "head's reports/slices.json has no slices"))
    for column, info in comparison.slices.items():
        gaps = info["head"].get("max_gap", {})
        judged = [g for g in info["head"].get("groups", {}).values() if not g.get("too_small")]
        for metric in policy.slices.metrics:
            rule = f"slices.max_gap.{metric}"
            gap = gaps.get(metric)
            if gap is None:
                if len(judged) < 2:  # fewer than two groups big enough: there is no gap
                    continue
                what = f"no {metric} gap for slice '{column}'"
                rules.append(_missing(rule, what, metric))
                continue
            rules.append(
                RuleResult(
                    rule,
                    gap <= limit,
                    f"largest {metric} gap between '{column}' groups is {gap:.4f} "
                    f"(at most {limit:g})",
                    metric,
                )
            )
    return rules


def _serving_rules(comparison: Comparison, policy: PromotionParams) -> list[RuleResult]:
    rules = []
    serving = policy.serving
    if serving.max_model_bytes is not None:
        rule, size = "serving.max_model_bytes", comparison.head_model_bytes
        if size is None:
            rules.append(_missing(rule, "models/metadata.json records no model size"))
        else:
            max_bytes = serving.max_model_bytes
            detail = f"model size {size:,} bytes (at most {max_bytes:,})"
            rules.append(RuleResult(rule, size <= max_bytes, detail))
    if serving.max_predict_ms_per_1000_rows is not None:
        rule, timing = "serving.max_predict_ms_per_1000_rows", comparison.head_timing
        limit = serving.max_predict_ms_per_1000_rows
        if timing is None or timing.ms_per_1000_rows is None:
            why = timing.error if timing is not None and timing.error else "not measured"
            rules.append(_missing(rule, f"prediction time of the head model: {why}"))
        else:
            value, allowed = timing.ms_per_1000_rows, limit * (1 + serving.timing_tolerance)
            detail = (
                f"prediction time {value:,.1f} ms CPU per 1,000 rows (median of {timing.repeats} "
                f"after warm-up; at most {limit:,g} ms + {serving.timing_tolerance * 100:g} % "
                "tolerance)"
            )
            rules.append(RuleResult(rule, value <= allowed, detail))
    return rules


def _importance_rules(comparison: Comparison, policy: PromotionParams) -> list[RuleResult]:
    """`importance.forbid_top_k`: a listed column fails when it ranks within the head's top k
    and its interval is above zero (the model relies on it); without the head's
    reports/importance.json the rule cannot be evaluated, and fails."""
    forbid = policy.importance.forbid_top_k
    if not forbid.columns:
        return []
    rule, head = "importance.forbid_top_k", comparison.head
    found = (
        comparison.importance.head
        if comparison.importance is not None
        else parse_importance(head.importance, where=head.short)
    )
    if found is None:
        what = f"the head ({head.short}) has no reports/importance.json"
        return [_missing(f"{rule}.{c}", what) for c in forbid.columns]
    rules = []
    for name in forbid.columns:
        column = found.column(name)
        if column is None:
            detail = f"'{name}' is not an input of the head model: it cannot rank"
            rules.append(RuleResult(f"{rule}.{name}", True, detail))
            continue
        where = (
            f"'{name}' ranks {column.rank} of {len(found.columns)} in what the model relies on "
            f"({found.metric} importance {column.importance:.4f} "
            f"[{column.low:.4f}, {column.high:.4f}])"
        )
        if column.rank > forbid.k:
            detail = f"{where}: outside the top {forbid.k}"
        elif not column.relied_on:
            detail = f"{where}: within the top {forbid.k}, but its interval reaches zero"
        else:
            detail = (
                f"{where}: the policy forbids it in the top {forbid.k} with an interval above zero"
            )
        blocks = column.rank <= forbid.k and column.relied_on
        rules.append(RuleResult(f"{rule}.{name}", not blocks, detail))
    return rules


def _relative_rules(comparison: Comparison, policy: PromotionParams) -> list[RuleResult]:
    rules = []
    rows = {row.name: row for row in comparison.metrics}
    for metric, limit in policy.max_regression.items():
        row = rows.get(metric)
        if row is None or row.base is None or row.head is None:
            side = "head" if row is None or row.head is None else "base"
            what = f"{metric} is not in {side}'s metrics"
            rules.append(_missing(f"max_regression.{metric}", what, metric))
            continue
        worse = _worse(row.higher_is_better, row.base, row.head)
        allowed = limit.allowed(row.base)
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
            what = f"no interval of the change in {metric}"
            rules.append(_missing(f"ci_lower_bound.{metric}", what, metric))
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
        rules += _slice_regressions(comparison, policy, policy.slices.max_regression)
    if policy.no_significant_regression.metrics:
        rules += _significance_rules(comparison, policy)
    return rules


def _significance_rules(comparison: Comparison, policy: PromotionParams) -> list[RuleResult]:
    """Each listed metric fails when its whole interval of Δ lies on the worse side of zero
    and the change is at least `min_effect`."""
    level = f"{comparison.confidence * 100:g} %"
    floor = policy.no_significant_regression.min_effect
    rows = {row.name: row for row in comparison.metrics}
    rules = []
    for metric in policy.no_significant_regression.metrics:
        rule, row = f"no_significant_regression.{metric}", rows.get(metric)
        if row is None or row.low is None or row.high is None or row.delta is None:
            what = f"no {level} interval of the change in {metric}"
            rules.append(_missing(rule, what, metric))
            continue
        interval = f"{level} interval [{row.low:+.4f}, {row.high:+.4f}]"
        blocks = row.significantly_worse and abs(row.delta) >= floor
        if blocks:
            detail = (
                f"{metric} is significantly worse: {row.delta:+.4f}, {interval} lies wholly on "
                "the worse side of zero"
            )
        elif row.significantly_worse:
            detail = (
                f"{metric} {row.delta:+.4f}, {interval}: significantly worse but smaller than "
                f"min_effect {floor:g}"
            )
        else:
            detail = f"{metric} {row.delta:+.4f}, {interval}: not significantly worse"
        rules.append(RuleResult(rule, not blocks, detail, metric))
    return rules


def _slice_regressions(
    comparison: Comparison, policy: PromotionParams, limit: float
) -> list[RuleResult]:
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
                if old is None:  # undefined on base's rows too (e.g. one class only)
                    continue
                if new is None:
                    what = f"{metric} for {column}={group} is missing on head"
                    rules.append(_missing(f"slices.max_regression.{metric}", what, metric))
                    continue
                worse = _worse(higher_is_better(metric), old, new)
                rules.append(
                    RuleResult(
                        f"slices.max_regression.{metric}",
                        worse <= limit + 1e-12,
                        f"{metric} for {column}={group}: {old:.4f} -> {new:.4f} "
                        f"(may lose at most {limit:g})",
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
