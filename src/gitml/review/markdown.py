"""Render a comparison and its verdict as one Markdown document for the pull request.

The sections are here, except the plots (`gitml.review.charts`).
"""

from __future__ import annotations

from typing import Any

from gitml.labels import label_category
from gitml.project import OUTPUTS
from gitml.review.charts import render_plots
from gitml.review.compare import Comparison, MetricRow, recorded_model_bytes
from gitml.review.gate import BLOCKED, NOT_COMPARABLE, PROMOTE, Verdict
from gitml.review.importance import ColumnImportance, ImportanceRow
from gitml.tasks import PRIMARY_METRIC, Task
from gitml.vcs import DvcLock

WATERMARK = "gitml model review"
_ICON = {PROMOTE: "✅", BLOCKED: "⛔", NOT_COMPARABLE: "⚠️"}


def render_report(
    comparison: Comparison,
    verdict: Verdict,
    *,
    model_name: str,
    images: dict[str, str] | None = None,
    policy_source: str | None = None,
) -> str:
    """The report: verdict, metrics, slices, params, data, model, plots, lineage.

    `images` maps plot names (roc, precision_recall, confusion) to paths the Markdown links to;
    `policy_source` says whose promotion policy judged the model.
    """
    sections = [
        _verdict(comparison, verdict, model_name, policy_source),
        _metrics(comparison, verdict),
        _per_class(comparison),
        _slices(comparison),
        _importance(comparison, verdict),
        _params(comparison),
        _data(comparison),
        _model(comparison),
        render_plots(comparison, images or {}),
        _lineage(comparison),
    ]
    return "\n\n".join(s for s in sections if s).rstrip() + "\n"


def _verdict(c: Comparison, verdict: Verdict, model_name: str, policy_source: str | None) -> str:
    lines = [
        f"## {_ICON[verdict.status]} {WATERMARK}: {verdict.status}",
        "",
        f"`{model_name}` · base {_name(c.base)} → head {_name(c.head)}",
    ]
    headline = _headline(c)
    if headline:
        lines += ["", headline]
    if verdict.significant_regressions:
        level = _percent(c.confidence)
        lines += [
            "",
            f"**Significantly worse** (the whole {level} interval of Δ is on the worse side of "
            "zero): " + "; ".join(verdict.significant_regressions),
        ]
    flagged = comparison_flags(c)
    if flagged:
        lines += ["", flagged]
    if verdict.failed:
        lines += ["", "**Failed rules:**", ""]
        lines += [f"- `{r.rule}`: {r.detail}" for r in verdict.failed]
    if verdict.reason:
        lines += ["", f"_{verdict.reason}_"]
    if policy_source:
        lines += ["", f"Judged under {policy_source} promotion policy."]
    if c.policy_changes:
        lines += [
            "",
            f"**⚠️ This change proposes a new promotion policy** ({len(c.policy_changes)} "
            "key(s), see Params). It takes effect once merged; this verdict does not use it.",
        ]
    if c.status == "comparable" and not c.model_changed and not c.params_changed:
        lines += ["", "Nothing changed in the model: same metrics, predictions and signature."]
    if c.recomputed:
        lines += ["", "_Base metrics recomputed: the base model scored head's test set._"]
    return "\n".join(lines)


def _headline(c: Comparison) -> str:
    """The task's primary metric (`gitml.tasks.PRIMARY_METRIC`): base → head, Δ, interval."""
    task = c.head.task
    name = PRIMARY_METRIC[task]
    row = next((r for r in c.metrics if r.name == name), None)
    if row is None:
        return ""
    direction = "higher is better" if row.higher_is_better else "lower is better"
    text = f"**{name}** ({_TASK_LABEL[task]}; {direction}): "
    text += f"{_num(row.head)}" if row.base is None else f"{_num(row.base)} → {_num(row.head)}"
    if row.delta is not None:
        text += f", Δ {_delta(row)}"
        if row.low is not None and row.high is not None:
            text += f" ({_percent(c.confidence)} interval {_interval(row)})"
    return text


_TASK_LABEL: dict[Task, str] = {
    "binary": "binary classification",
    "multiclass": "multiclass classification",
    "regression": "regression",
}
# The slice table's two metrics per task: (metric, column heading)
_SLICE_COLUMNS: dict[Task, tuple[tuple[str, str], ...]] = {
    "binary": (("roc_auc", "AUC"), ("recall", "recall")),
    "multiclass": (("f1_macro", "macro F1"), ("accuracy", "accuracy")),
    "regression": (("rmse", "RMSE"), ("mae", "MAE")),
}


def _per_class(c: Comparison) -> str:
    """Multiclass: precision, recall and F1 of each class, base and head (metrics.json)."""
    head = (c.head.metrics or {}).get("per_class") or {}
    if c.head.task != "multiclass" or not head:
        return ""
    base = (c.base.metrics or {}).get("per_class") or {}
    lines = [
        "### Per class",
        "",
        "| class | support | precision base | precision head | recall base | recall head | "
        "F1 base | F1 head |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, values in head.items():
        old = base.get(label) or {}
        cells = " | ".join(
            f"{_num(old.get(m))} | {_num(values.get(m))}" for m in ("precision", "recall", "f1")
        )
        lines.append(f"| {label_category(label)} | {values.get('support', 0):,} | {cells} |")
    lines += ["", "Macro metrics (f1_macro, balanced_accuracy) weigh every class alike."]
    return "\n".join(lines)


def _name(rev: Any) -> str:
    """`main` (1a2b3c4d), or the commit alone when the label is the commit."""
    if rev.sha and rev.sha.startswith(rev.label):
        return f"`{rev.label}`"
    if rev.sha:
        return f"`{rev.label}` ({rev.short})"
    return f"`{rev.label}`" if rev.label == "workspace" else f"_{rev.label}_"


def _metrics(c: Comparison, verdict: Verdict) -> str:
    marks: dict[str, list[str]] = {}
    for rule in verdict.rules:
        if rule.metric and not rule.rule.startswith("slices"):
            mark = "✅" if rule.passed else "❌"
            marks.setdefault(rule.metric, []).append(f"{mark} `{rule.rule}`")
    lines = [
        "### Metrics",
        "",
        f"| metric | base | head | Δ | {_percent(c.confidence)} interval of Δ | rules |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row in c.metrics:
        arrow = "↑" if row.higher_is_better else "↓"
        lines.append(
            f"| {row.name} {arrow} | {_num(row.base)} | {_num(row.head)} | {_delta(row)} | "
            f"{_interval(row)} | {' '.join(marks.get(row.name, []))} |"
        )
    lines += [
        "",
        "↑ higher is better, ↓ lower is better; intervals from a paired bootstrap. 🟢/🔴: the "
        "whole interval of Δ lies on the better/worse side of zero (a significant change).",
    ]
    return "\n".join(lines)


def _slices(c: Comparison) -> str:
    if not c.slices:
        return ""
    lines = ["### Slices"]
    shown = _SLICE_COLUMNS[c.head.task]
    heading = " | ".join(f"{title} base | {title} head" for _, title in shown)
    for column, info in c.slices.items():
        head, base = info["head"], info.get("base") or {"groups": {}, "max_gap": {}}
        lines += [
            "",
            f"**{column}**",
            "",
            f"| group | rows | {heading} |",
            "| --- | ---: |" + " ---: | ---: |" * len(shown),
        ]
        for group, values in head["groups"].items():
            old = base["groups"].get(group, {})
            small = " (small)" if values.get("too_small") else ""
            cells = " | ".join(f"{_num(old.get(m))} | {_num(values.get(m))}" for m, _ in shown)
            lines.append(f"| {label_category(group)}{small} | {values['rows']:,} | {cells} |")
        gaps = ", ".join(
            f"{m} {_change(_num(base['max_gap'].get(m)), _num(head['max_gap'].get(m)), bold=False)}"
            for m, _ in shown
            if head["max_gap"].get(m) is not None
        )
        if gaps:
            lines += ["", f"Largest gap between groups: {gaps}"]
    return "\n".join(lines)


def comparison_flags(c: Comparison) -> str:
    """The verdict's line on slice columns the head newly relies on ('' when none)."""
    flagged = c.importance.flagged if c.importance else []
    if not flagged:
        return ""
    names = ", ".join(f"`{r.name}`" for r in flagged)
    return (
        f"**⚠️ The head now relies on slice column{'s' if len(flagged) > 1 else ''} {names}** "
        "(see What the model relies on)."
    )


def _importance(c: Comparison, verdict: Verdict) -> str:
    """What the model relies on: the head's top k and every column whose status changed,
    base and head importance with intervals and ranks, then the callouts."""
    review = c.importance
    if review is None:
        return ""
    lines = ["### What the model relies on", ""]
    head = review.head
    if head is None:
        return "\n".join([*lines, f"_{_sentence(review.note)}_"])
    level = _percent(head.confidence)
    used = f"{head.rows_used:,} test rows"
    if head.subsampled:
        used += f", a seeded subsample of {head.rows_test:,}"
    lines.append(
        f"Permutation importance (`{OUTPUTS['importance']}`): how much {head.metric} gets worse "
        f"when a column's values are shuffled among {used}, with its {level} bootstrap "
        "interval. The model relies on a column when the whole interval is above zero; a "
        "change is called only when base and head intervals do not overlap."
    )
    if review.note:
        lines += ["", f"_{_sentence(review.note)}_"]
    compared = review.base is not None and review.note is None
    lines += [
        "",
        "| column | rank base → head | importance base | importance head | change |"
        if compared
        else "| column | rank | importance | relied on |",
        "| --- | ---: | --- | --- | --- |" if compared else "| --- | ---: | --- | --- |",
    ]
    total = len(head.columns)
    for row in review.shown:
        name = f"`{row.name}`" + (" (slice)" if row.slice_column else "")
        if compared:
            lines.append(
                f"| {name} | {_rank(row.base)} → {_rank(row.head)} | {_importance_cell(row.base)} "
                f"| {_importance_cell(row.head)} | {_change_cell(row)} |"
            )
        else:
            relied = "yes" if row.head and row.head.relied_on else "no"
            lines.append(
                f"| {name} | {_rank(row.head)} | {_importance_cell(row.head)} | {relied} |"
            )
    hidden = total - sum(1 for r in review.shown if r.head is not None)
    if hidden:
        lines += [
            "",
            f"Top {review.top_k} of {total} input columns, and every change; "
            f"{hidden} more in `{OUTPUTS['importance']}`.",
        ]
    lines += _importance_callouts(review.flagged, review.now, review.no_longer)
    marks = [
        f"{'✅' if r.passed else '❌'} `{r.rule}`: {r.detail}"
        for r in verdict.rules
        if r.rule.startswith("importance.")
    ]
    if marks:
        lines += ["", "Promotion policy:", "", *(f"- {m}" for m in marks)]
    return "\n".join(lines)


def _importance_callouts(
    flagged: list[ImportanceRow], now: list[ImportanceRow], no_longer: list[ImportanceRow]
) -> list[str]:
    lines = []
    for row in flagged:
        lines += [
            "",
            f"> **⚠️ Now relies on slice column `{row.name}`** ({_moved(row)}). `{row.name}` "
            "is a slice column: it defines groups this review compares for fairness. A model "
            "that leans on it scores otherwise alike rows differently by group, on purpose. "
            "Check that this is intended (and the slice gaps above), or drop it from the "
            "inputs (`data.drop`).",
        ]
    plain = [r for r in now if not r.flagged]
    if plain:
        lines += ["", "**Now relies on:** " + "; ".join(f"`{r.name}` ({_moved(r)})" for r in plain)]
    if no_longer:
        lines += [
            "",
            "**No longer relies on:** " + "; ".join(f"`{r.name}` ({_moved(r)})" for r in no_longer),
        ]
    return lines


def _moved(row: ImportanceRow) -> str:
    """`rank 14 → 2, 0.0001 → 0.0512 [0.0400, 0.0600]`; a column that came or went says so."""
    if row.base is None:
        return f"new input, rank {_rank(row.head)}, {_importance_cell(row.head)}"
    if row.head is None:
        return f"input removed; was rank {row.base.rank}, {_importance_cell(row.base)}"
    return (
        f"rank {row.base.rank} → {row.head.rank}, {row.base.importance:.4f} → "
        f"{_importance_cell(row.head)}"
    )


def _rank(column: ColumnImportance | None) -> str:
    return "—" if column is None else str(column.rank)


def _importance_cell(column: ColumnImportance | None) -> str:
    if column is None:
        return "—"
    return f"{column.importance:.4f} [{column.low:.4f}, {column.high:.4f}]"


def _change_cell(row: ImportanceRow) -> str:
    if row.change == "now":
        return "**now relies on** ⚠️" if row.flagged else "**now relies on**"
    if row.change == "no_longer":
        return "no longer relies on"
    return ""


def _sentence(text: str | None) -> str:
    return "" if not text else text[0].upper() + text[1:] + "."


def _params(c: Comparison) -> str:
    lines = ["### Params"]
    if c.conf_changed:
        lines += ["", "Changed in `conf/`: " + ", ".join(f"`{p}`" for p in c.conf_changed)]
    if not c.params_changed:
        return "\n".join([*lines, "", "No parameter changed."])
    if c.policy_changes:
        keys = ", ".join(f"`{k}`" for k, _, _ in c.policy_changes)
        lines += [
            "",
            f"**⚠️ Proposed promotion policy change** (applies once merged, not to this "
            f"review): {keys}",
        ]
    lines += ["", "| key | base | head |", "| --- | --- | --- |"]
    lines += [f"| `{k}` | {_val(a)} | {_val(b)} |" for k, a, b in c.params_changed[:60]]
    if len(c.params_changed) > 60:
        lines.append(f"| … {len(c.params_changed) - 60} more | | |")
    return "\n".join(lines)


def _data(c: Comparison) -> str:
    lines = ["### Data"]
    shifted = [r for r in c.data_shift if r.get("shifted") or r.get("change")]
    if c.data_changed:
        lines += ["", "| DVC-tracked file | base md5 | head md5 |", "| --- | --- | --- |"]
        lines += [f"| `{p}` | {_md5(a)} | {_md5(b)} |" for p, a, b in c.data_changed]
    elif not shifted:
        compared = f" ({len(c.data_shift)} columns compared)" if c.data_shift else ""
        lines += ["", f"No DVC-tracked data changed; the training data did not shift{compared}."]
    else:
        lines += ["", "No DVC-tracked data changed."]
    base_v, head_v = c.base.validation or {}, c.head.validation or {}
    if base_v or head_v:
        lines += [
            "",
            f"Rows: {_change(_int(base_v.get('rows')), _int(head_v.get('rows')))}; columns: "
            f"{_change(_int(base_v.get('columns')), _int(head_v.get('columns')))}; "
            "validation warnings: "
            f"{_change(_int(base_v.get('warnings')), _int(head_v.get('warnings')))}.",
        ]
    if c.data_shift and (c.data_changed or shifted):
        lines += [
            "",
            f"Distribution shift of the training data: {len(shifted)} of "
            f"{len(c.data_shift)} columns shifted (distance > 0.1).",
            "",
            "| column | statistic | distance | shifted |",
            "| --- | --- | ---: | --- |",
        ]
        ordered = sorted(c.data_shift, key=lambda r: -(r.get("distance") or 0))
        for row in ordered[:25]:
            if row.get("change"):
                lines.append(f"| `{row['column']}` | {row['change']} | | ⚠️ |")
            else:
                mark = "⚠️ yes" if row["shifted"] else "no"
                lines.append(
                    f"| `{row['column']}` | {row['statistic']} | {_num(row['distance'])} | {mark} |"
                )
    sig = c.signature
    if sig.added or sig.optional_added or sig.removed or sig.changed:
        lines += ["", "Schema changes:"]
        lines += [f"- column added: `{n}`" for n in sig.added]
        lines += [f"- new optional input: `{n}` (nullable)" for n in sig.optional_added]
        lines += [f"- column removed: `{n}`" for n in sig.removed]
        lines += [f"- {change}" for change in sig.changed]
    return "\n".join(lines)


def _model(c: Comparison) -> str:
    base_m, head_m = c.base.metadata or {}, c.head.metadata or {}
    base_size = recorded_model_bytes(c.base)
    timing = c.head_timing
    lines = [
        "### Model",
        "",
        f"Estimator: {_change(base_m.get('estimator', 'n/a'), head_m.get('estimator', 'n/a'))}",
    ]
    hyper_b, hyper_h = base_m.get("hyperparameters", {}), head_m.get("hyperparameters", {})
    changed = [k for k in sorted(set(hyper_b) | set(hyper_h)) if hyper_b.get(k) != hyper_h.get(k)]
    if changed and base_m.get("estimator") == head_m.get("estimator"):
        lines.append(
            "Hyperparameters changed: "
            + ", ".join(f"`{k}` {_val(hyper_b.get(k))} → {_val(hyper_h.get(k))}" for k in changed)
        )
    sig = c.signature
    if sig.added or sig.optional_added or sig.removed:
        lines.append(
            "Features: "
            + ", ".join(
                [f"+`{n}`" for n in sig.added]
                + [f"+`{n}` (optional)" for n in sig.optional_added]
                + [f"−`{n}`" for n in sig.removed]
            )
        )
    if c.signature.breaking:
        lines.append("**BREAKING** for serving: " + "; ".join(c.signature.breaking))
    lines += [
        "",
        "| | base | head |",
        "| --- | ---: | ---: |",
        f"| artifact size | {_bytes(base_size)} | {_bytes(c.head_model_bytes)} |",
        f"| prediction time per 1,000 rows (CPU, measured now) | not measured | "
        f"{_ms(timing.ms_per_1000_rows if timing else None)} |",
    ]
    return "\n".join(lines)


def _lineage(c: Comparison) -> str:
    lines = ["### Lineage", "", "| | base | head |", "| --- | --- | --- |"]
    lines.append(
        f"| commit | {c.base.sha or 'workspace'} | {c.head.sha or 'workspace (uncommitted)'} |"
    )
    for label, path in (("model md5", OUTPUTS["model"]), ("raw data md5", None)):
        lines.append(
            f"| {label} | {_lock_md5(c.base.lock, path)} | {_lock_md5(c.head.lock, path)} |"
        )
    base_v = (c.base.metadata or {}).get("versions", {})
    head_v = (c.head.metadata or {}).get("versions", {})
    for lib in sorted(set(base_v) | set(head_v)):
        lines.append(f"| {lib} | {base_v.get(lib, 'n/a')} | {head_v.get(lib, 'n/a')} |")
    return "\n".join(lines)


def _lock_md5(lock: DvcLock | None, path: str | None) -> str:
    """The md5 dvc.lock records for output `path` (None: the ingest stage's raw data)."""
    for stage_name, stage in (lock.stages if lock else {}).items():
        for out in stage.outs:
            if (path and out.path == path) or (path is None and stage_name == "ingest"):
                return _md5(out.md5)
    return "n/a"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _delta(row: MetricRow) -> str:
    """Δ, marked only when significant: its whole interval excludes zero."""
    if row.delta is None:
        return "n/a"
    mark = " 🟢" if row.significantly_better else (" 🔴" if row.significantly_worse else "")
    return f"{row.delta:+.4f}{mark}"


def _interval(row: MetricRow) -> str:
    return "n/a" if row.low is None or row.high is None else f"[{row.low:+.4f}, {row.high:+.4f}]"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g} %"


def _change(base: Any, head: Any, *, bold: bool = True) -> str:
    """`head` alone when both sides agree, else `base → **head**`."""
    if base == head:
        return f"{head}"
    return f"{base} → **{head}**" if bold else f"{base} → {head}"


def _val(value: Any) -> str:
    return "—" if value is None else f"`{value}`"


def _md5(value: str | None) -> str:
    return f"`{value[:10]}`" if value else "—"


def _int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "n/a"


def _bytes(value: Any) -> str:
    return f"{value / 1024:,.0f} KiB" if isinstance(value, int | float) else "n/a"


def _ms(value: Any) -> str:
    return f"{value:,.1f} ms" if isinstance(value, int | float) else "n/a"
