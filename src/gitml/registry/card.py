"""The model card: what a model is for, what it was trained on, how good it is, where it came from.

Pure: values in, Markdown out. The pipeline's `card` stage renders it from the committed
outputs; `gitml fetch` and the release workflow stamp the release version, date and tagged
commit into it. The rendered card holds no commit, date or timing of its own: it is committed,
and a re-run of the same commit must reproduce it byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gitml.config.schema import CardParams, Params
from gitml.errors import ConfigError
from gitml.labels import label_category
from gitml.project import OUTPUTS
from gitml.tasks import LOWER_IS_BETTER, PRIMARY_METRIC, Task, is_classification

CARD_FILE = OUTPUTS["card"]
_RELEASE_LINE = re.compile(r"^\| release \| .* \|$", re.MULTILINE)
UNRELEASED = "unreleased: `gitml release` tags it; fetched and released copies carry the version"


def require_card(params: Params) -> CardParams:
    """The `card` section, which the model card cannot do without (it states the purpose)."""
    if params.card is None:
        raise ConfigError(
            "params.yaml has no `card` section: the model card needs its intended use",
            hint="add `- card: default` to the defaults in conf/config.yaml (see conf/card/)",
        )
    return params.card


def render_card(
    *,
    params: Params,
    metadata: Mapping[str, Any],
    signature: Mapping[str, Any],
    metrics: Mapping[str, Any],
    intervals: Mapping[str, tuple[float | None, float | None]],
    slices: Mapping[str, Any],
    validation: Mapping[str, Any],
    lineage: Mapping[str, Any],
    importance: Mapping[str, Any] | None = None,
) -> str:
    """The whole card as Markdown (`importance`: reports/importance.json, where computed)."""
    card, project = require_card(params), params.project
    name = metadata.get("model_name", project.model_name)
    title = card.title or name
    training = metadata.get("training", {})
    task = params.data.task
    lines = [
        f"# Model card: {title}",
        "",
        "| | |",
        "| --- | --- |",
        f"| model | `{name}` (project `{project.name}`) |",
        f"| release | {UNRELEASED} |",
        f"| estimator | {metadata.get('estimator')} |",
        *([f"| task | {_TASK_NAMES[task]} (`data.task: {task}`) |"] if task != "binary" else []),
        f"| owners | {', '.join(card.owners) or 'not declared'} |",
        "",
        "## Intended use",
        "",
        card.intended_use,
        "",
        "## Out of scope",
        "",
        *_bullets(card.out_of_scope, "nothing declared"),
        "",
        "## Training data",
        "",
        f"- source: `{params.data.source}` ({validation.get('rows', '?')} rows, "
        f"{validation.get('columns', '?')} columns; validation {validation.get('status')}, "
        f"{validation.get('errors', 0)} errors, {validation.get('warnings', 0)} warnings)",
        f"- training rows: {training.get('rows')}"
        + (
            "; class balance: "
            + ", ".join(f"{k} {v}" for k, v in (training.get("class_counts") or {}).items())
            if is_classification(task)
            else ""
        ),
        f"- training data SHA-256: `{training.get('data_sha256')}`",
        f"- test rows: {metrics.get('test_set', {}).get('rows')} (fingerprint "
        f"`{metrics.get('test_set', {}).get('fingerprint')}`)",
        "",
        "## Preprocessing and hyperparameters",
        "",
        f"- preprocessing: {_pairs(metadata.get('preprocessing', {}))}",
        f"- hyperparameters: {_pairs(metadata.get('hyperparameters', {}))}",
        f"- features ({len(signature.get('inputs', []))}): "
        + ", ".join(f"`{i['name']}` ({i['type']})" for i in signature.get("inputs", [])),
        _output_line(task, signature, metrics),
        "",
        "## Metrics (test set)",
        "",
        f"| metric | value | {params.promotion.bootstrap.confidence * 100:g} % interval |",
        "| --- | ---: | --- |",
    ]
    for metric, value in (metrics.get("metrics") or {}).items():
        low, high = intervals.get(metric, (None, None))
        shown = f"{low:.4f} – {high:.4f}" if low is not None and high is not None else "n/a"
        lines.append(f"| {metric} | {_num(value)} | {shown} |")
    lines += ["", _interval_note(card)]
    if task != "binary":
        lines += _task_notes(task, metrics)
    lines += ["", "## Slice metrics", ""]
    lines += _slice_lines(slices, task)
    lines += ["", "## What the model relies on", ""]
    lines += importance_lines(importance, top_k=params.importance.top_k)
    lines += ["", "## Known limitations", ""]
    lines += _bullets(card.limitations + _found_limitations(slices, task, metrics), "none")
    lines += ["", "## Lineage", ""]
    lines += [
        f"- model file: {metadata.get('model_file', {}).get('bytes')} bytes, SHA-256 "
        f"`{metadata.get('model_file', {}).get('sha256')}` (skops)",
    ]
    for path, md5 in (lineage.get("dvc_lock") or {}).items():
        lines.append(f"- `{path}`: md5 `{md5}` (dvc.lock)")
    versions = metadata.get("versions") or {}
    lines.append("- libraries: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines += [
        "",
        "## Fetch and serve",
        "",
        "```bash",
        f"gitml models                                   # versions, stages, metrics of {name}",
        f"gitml fetch {name}#prod -o served/     # verified model, signature and this card",
        f"gitml serve --ref {name}#prod          # HTTP API on 127.0.0.1:8000",
        f"gitml reproduce {name}@vX.Y.Z          # rebuild a release and compare metrics",
        "```",
        "",
    ]
    return "\n".join(lines)


def stamp_release(card: str, version: str, date: str, commit: str) -> str:
    """The card with its release line naming `version`, `date` and the tagged commit."""
    line = f"| release | {version} ({date}, commit `{commit[:12]}`) |"
    return _RELEASE_LINE.sub(line, card, count=1)


def _bullets(items: list[str] | None, empty: str) -> list[str]:
    return [f"- {item}" for item in items] if items else [f"- {empty}"]


def _pairs(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "none"


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "n/a"


def _interval_note(card: CardParams) -> str:
    return (
        f"Intervals: percentile bootstrap over the test rows ({card.interval_resamples} "
        "resamples); predictions from `reports/predictions.csv`."
    )


_TASK_NAMES: dict[Task, str] = {
    "binary": "binary classification",
    "multiclass": "multiclass classification",
    "regression": "regression",
}
# The slice table's metrics per task (the binary ones as the card always showed them).
_SLICE_METRICS: dict[Task, tuple[str, ...]] = {
    "binary": ("roc_auc", "f1", "recall"),
    "multiclass": ("f1_macro", "accuracy", "balanced_accuracy"),
    "regression": ("rmse", "mae", "r2"),
}


def _output_line(task: Task, signature: Mapping[str, Any], metrics: Mapping[str, Any]) -> str:
    """What a request gets back, from the signature (labels are the project's own)."""
    output = signature.get("output") or {}
    if task == "binary":
        return f"- output: {output.get('score')}, label at threshold {metrics.get('threshold')}"
    if task == "multiclass":
        classes = ", ".join(f"`{c}`" for c in output.get("classes") or [])
        scores = output.get("scores") or f"probability of each class of {output.get('target')}"
        return f"- output: `label` (the most probable class) and `scores`: {scores} ({classes})"
    value = output.get("value") or f"predicted {output.get('target')}"
    return f"- output: `value`: {value}"


def _task_notes(task: Task, metrics: Mapping[str, Any]) -> list[str]:
    """Directions, undefined metrics and the per-class table of a non-binary card."""
    names = list(metrics.get("metrics") or {})
    lower = [m for m in names if m in LOWER_IS_BETTER]
    lines = ["", f"Primary metric: {PRIMARY_METRIC[task]}."]
    if lower:
        lines[-1] += f" Lower is better: {', '.join(lower)}; higher is better for the others."
    for metric, reason in (metrics.get("undefined") or {}).items():
        lines += ["", f"{metric} is n/a: {reason}."]
    per_class = metrics.get("per_class") or {}
    if per_class:
        lines += [
            "",
            "Per class (the label is the most probable class):",
            "",
            "| class | precision | recall | f1 | support |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {label_category(label)} | {_num(v.get('precision'))} | {_num(v.get('recall'))} | "
            f"{_num(v.get('f1'))} | {v.get('support')} |"
            for label, v in per_class.items()
        ]
    return lines


def _slice_lines(slices: Mapping[str, Any], task: Task = "binary") -> list[str]:
    table = slices.get("slices") or {}
    if not table:
        return ["No slices configured (`evaluate.slices`)."]
    names = _SLICE_METRICS[task]
    lines = [
        "| slice | group | rows | " + " | ".join(names) + " |",
        "| --- | --- | ---: |" + " ---: |" * len(names),
    ]
    for column, entry in table.items():
        for group, values in (entry.get("groups") or {}).items():
            flag = " (too small)" if values.get("too_small") else ""
            cells = " | ".join(_num(values.get(name)) for name in names)
            lines.append(
                f"| {column} | {label_category(group)}{flag} | {values.get('rows')} | {cells} |"
            )
    return lines


def importance_lines(importance: Mapping[str, Any] | None, *, top_k: int) -> list[str]:
    """The `top_k` columns of reports/importance.json with their intervals, how many the model
    measurably relies on, the rows used, and how to read it."""
    if not importance or not importance.get("columns"):
        return ["Not computed: no `reports/importance.json` (stage `importance`)."]
    metric, columns = importance.get("metric"), importance["columns"]
    change = "drop" if importance.get("higher_is_better", True) else "rise"
    rows = importance.get("rows") or {}
    used = f"{rows.get('used', 0):,} test rows used"
    if rows.get("subsampled"):
        used += f" (subsampled from {rows.get('test', 0):,}, seeded; intervals are the sample's)"
    confidence = (importance.get("bootstrap") or {}).get("confidence", 0.95)
    lines = [
        f"Permutation importance (`reports/importance.json`): how much {metric} would {change} "
        f"if one input column's values were shuffled among the {used}, the model otherwise "
        f"unchanged (mean of {importance.get('repeats')} shuffles). The larger it is, the more "
        "the model relies on the column; an interval that includes 0 means no measurable "
        "reliance.",
        "",
        f"| rank | column | {change} in {metric} | {confidence * 100:g} % interval |",
        "| ---: | --- | ---: | --- |",
    ]
    for column in columns[:top_k]:
        low, high = column.get("low"), column.get("high")
        shown = f"{low:.4f} – {high:.4f}" if low is not None and high is not None else "n/a"
        lines.append(
            f"| {column.get('rank')} | `{column.get('name')}` | {_num(column.get('importance'))} "
            f"| {shown} |"
        )
    relied = [c["name"] for c in columns if (c.get("low") or 0) > 0]
    lines += [
        "",
        f"Relied on (interval above 0): {len(relied)} of {len(columns)} input columns.",
    ]
    return lines


def _found_limitations(
    slices: Mapping[str, Any], task: Task = "binary", metrics: Mapping[str, Any] | None = None
) -> list[str]:
    found = []
    overall = (metrics or {}).get("metrics") or {}
    for column, entry in (slices.get("slices") or {}).items():
        gaps = entry.get("max_gap") or {}
        gap = gaps.get("recall") if task == "binary" else gaps.get(PRIMARY_METRIC[task])
        if task == "binary" and gap is not None and gap >= 0.1:
            found.append(
                f"Recall differs by {gap:.3f} between groups of `{column}` at the threshold."
            )
        elif task == "multiclass" and gap is not None and gap >= 0.1:
            found.append(f"Macro F1 differs by {gap:.3f} between groups of `{column}`.")
        elif task == "regression" and gap and gap >= 0.25 * (overall.get("rmse") or 0):
            # a quarter of the overall error or more, between the best and worst group
            found.append(
                f"RMSE differs by {gap:.4g} between groups of `{column}` (overall RMSE "
                f"{overall.get('rmse')})."
            )
        small = [g for g, v in (entry.get("groups") or {}).items() if v.get("too_small")]
        if small:
            shown = ", ".join(label_category(g) for g in small)
            found.append(f"Too few test rows to judge `{column}` groups: {shown}.")
    return found
