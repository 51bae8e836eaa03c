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
) -> str:
    """The whole card as Markdown."""
    card, project = require_card(params), params.project
    name = metadata.get("model_name", project.model_name)
    title = card.title or name
    training = metadata.get("training", {})
    lines = [
        f"# Model card: {title}",
        "",
        "| | |",
        "| --- | --- |",
        f"| model | `{name}` (project `{project.name}`) |",
        f"| release | {UNRELEASED} |",
        f"| estimator | {metadata.get('estimator')} |",
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
        f"- training rows: {training.get('rows')}; class balance: "
        + ", ".join(f"{k} {v}" for k, v in (training.get("class_counts") or {}).items()),
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
        f"- output: {signature.get('output', {}).get('score')}, label at threshold "
        f"{metrics.get('threshold')}",
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
    lines += ["", _interval_note(card), "", "## Slice metrics", ""]
    lines += _slice_lines(slices)
    lines += ["", "## Known limitations", ""]
    lines += _bullets(card.limitations + _found_limitations(slices), "none")
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


def _slice_lines(slices: Mapping[str, Any]) -> list[str]:
    table = slices.get("slices") or {}
    if not table:
        return ["No slices configured (`evaluate.slices`)."]
    lines = [
        "| slice | group | rows | roc_auc | f1 | recall |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for column, entry in table.items():
        for group, values in (entry.get("groups") or {}).items():
            flag = " (too small)" if values.get("too_small") else ""
            lines.append(
                f"| {column} | {label_category(group)}{flag} | {values.get('rows')} | "
                f"{_num(values.get('roc_auc'))} | {_num(values.get('f1'))} | "
                f"{_num(values.get('recall'))} |"
            )
    return lines


def _found_limitations(slices: Mapping[str, Any]) -> list[str]:
    found = []
    for column, entry in (slices.get("slices") or {}).items():
        gap = (entry.get("max_gap") or {}).get("recall")
        if gap is not None and gap >= 0.1:
            found.append(
                f"Recall differs by {gap:.3f} between groups of `{column}` at the threshold."
            )
        small = [g for g, v in (entry.get("groups") or {}).items() if v.get("too_small")]
        if small:
            shown = ", ".join(label_category(g) for g in small)
            found.append(f"Too few test rows to judge `{column}` groups: {shown}.")
    return found
