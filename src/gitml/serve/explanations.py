"""Explanations of served predictions: `POST /v1/predict?explain=true` records, the columns
`gitml predict --explain` adds, and their JSON schema.

The explainer is the model's (`gitml.model.explain`), applied to the same preprocessed matrix
the model scores: the fast path's (`FastPathCheck.matrix`) when its start-up
check passed, else the pipeline's own preprocessing. Per record:

    binary, regression: {"output", "reference", "baseline", "value", "contributions": {input: c}}
    multiclass:         {"output", "reference", "classes": {class: {"baseline", "value",
                                                                    "contributions"}}}

with `sum(contributions) == value - baseline` (to rounding). Batch columns: binary and
regression `explanation:baseline`, `explanation:value` and `contribution:<input>` per input;
multiclass the same per class: `explanation:baseline:<class>`, `explanation:value:<class>`,
`contribution:<class>:<input>`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gitml.errors import InputError, ModelError
from gitml.model.explanation import OUTPUT_SCALES, REFERENCES, Explainer, Explanation

if TYPE_CHECKING:
    from gitml.serve.bundle import ServedModel
    from gitml.serve.inputs import Columns

FINITE_EXPLANATION_RULE = "finite_explanation"


@dataclass(frozen=True)
class ExplainerCheck:
    """A served model's explainer, or None and why it has none."""

    explainer: Explainer | None
    reason: str

    def describe(self) -> dict[str, Any]:
        """`GET /v1/model` "explanation": the form of `?explain=true` records."""
        if self.explainer is None:
            return {"method": None, "reason": self.reason}
        return self.explainer.describe()


def explainer_of(served: ServedModel) -> ExplainerCheck:
    """Build the explainer of `served` from its pipeline and metadata.json's record (the
    training means; an older model falls back to its profile and says so)."""
    from gitml.model.explain import build_explainer

    metadata = served.metadata
    try:
        explainer = build_explainer(
            served.pipeline,
            task=served.task,
            positive_class=served.positive_class if served.task == "binary" else None,
            record=metadata.get("explanation"),
            profile=(metadata.get("training") or {}).get("profile"),
        )
    except ModelError as err:
        return ExplainerCheck(None, str(err))
    return ExplainerCheck(explainer, f"{explainer.method} ({explainer.reference})")


def explain_columns(
    explainer: Explainer,
    matrix_of: Callable[[Columns], np.ndarray] | None,
    served: ServedModel,
    columns: Columns,
) -> Explanation:
    """The explanation of checked `columns` (scored or about to be); InputError for a
    record whose explanation is not finite (inputs far beyond the training range)."""
    if matrix_of is not None:
        matrix = matrix_of(columns)
    else:
        from gitml.model.explain import transform_frame

        matrix = transform_frame(served.pipeline, served.schema.to_frame(columns))
    with np.errstate(over="ignore", invalid="ignore"):
        explained = explainer.explain_matrix(matrix)
    finite = np.isfinite(explained.values).all(axis=1)
    finite &= np.isfinite(explained.contributions).all(axis=(1, 2))
    if not finite.all():
        bad = np.flatnonzero(~finite)
        reason = (
            "the explanation is not a finite number: the inputs are too far outside the range "
            "the model was trained on"
        )
        problems = [
            {
                "record": int(r),
                "field": "explain",
                "rule": FINITE_EXPLANATION_RULE,
                "reason": reason,
            }
            for r in bad
        ]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise InputError(f"record {int(bad[0])}: {reason}{more}", problems=problems)
    return explained


def explanation_records(explainer: Explainer, explained: Explanation) -> list[dict[str, Any]]:
    """One JSON object per row, in the shape of the module docstring."""
    inputs = explained.inputs
    head = {"output": explainer.output, "reference": explainer.reference}
    values = explained.values.tolist()
    contributions = explained.contributions.tolist()  # rows x inputs x outputs
    baseline = explained.baseline.tolist()
    if explained.classes is None:
        return [
            head
            | {
                "baseline": baseline[0],
                "value": value[0],
                "contributions": {name: c[0] for name, c in zip(inputs, row, strict=True)},
            }
            for value, row in zip(values, contributions, strict=True)
        ]
    out = []
    for value, row in zip(values, contributions, strict=True):
        classes = {
            cls: {
                "baseline": baseline[k],
                "value": value[k],
                "contributions": {name: c[k] for name, c in zip(inputs, row, strict=True)},
            }
            for k, cls in enumerate(explained.classes)
        }
        out.append(head | {"classes": classes})
    return out


def explanation_fields(explainer: Explainer) -> list[str]:
    """The batch output's explanation columns, in order (module docstring)."""
    if explainer.classes is None:
        return [
            "explanation:baseline",
            "explanation:value",
            *(f"contribution:{name}" for name in explainer.inputs),
        ]
    names = []
    for cls in explainer.classes:
        names += [f"explanation:baseline:{cls}", f"explanation:value:{cls}"]
        names += [f"contribution:{cls}:{name}" for name in explainer.inputs]
    return names


def explanation_columns(explained: Explanation) -> dict[str, np.ndarray]:
    """The batch output's explanation columns (`explanation_fields`) of `explained`."""
    rows = len(explained.values)
    out: dict[str, np.ndarray] = {}
    for k, cls in enumerate(explained.classes or (None,)):
        suffix = "" if cls is None else f":{cls}"
        out[f"explanation:baseline{suffix}"] = np.full(rows, explained.baseline[k])
        out[f"explanation:value{suffix}"] = explained.values[:, k]
        prefix = "contribution:" if cls is None else f"contribution:{cls}:"
        for c, name in enumerate(explained.inputs):
            out[f"{prefix}{name}"] = explained.contributions[:, c, k]
    return out


@dataclass(frozen=True)
class BatchExplainer:
    """What `gitml predict --explain` adds: `fields` (in order), and `columns` computing
    them for checked, scored columns (InputError as `explain_columns`)."""

    explainer: Explainer
    fields: list[str]
    columns: Callable[[Columns], dict[str, np.ndarray]]


def batch_explainer(served: ServedModel) -> BatchExplainer:
    """The batch explainer of a loaded model; ModelError when it cannot explain."""
    check = explainer_of(served)
    explainer = check.explainer
    if explainer is None:
        raise ModelError(f"--explain: this model cannot explain its predictions: {check.reason}")
    matrix_of = served.fast_path.matrix  # vouched for by the fast path's start-up check

    def columns(checked: Columns) -> dict[str, np.ndarray]:
        return explanation_columns(explain_columns(explainer, matrix_of, served, checked))

    return BatchExplainer(explainer, explanation_fields(explainer), columns)


def explanation_schema(check: ExplainerCheck) -> dict[str, Any]:
    """The JSON schema of a record's `explanation` (OpenAPI), for this model's inputs."""
    explainer = check.explainer
    if explainer is None:
        return {"type": "object", "description": f"not available: {check.reason}"}
    number: dict[str, Any] = {"type": "number"}
    one: dict[str, Any] = {
        "type": "object",
        "required": ["baseline", "value", "contributions"],
        "properties": {
            "baseline": number
            | {"description": f"the output at the reference: {REFERENCES[explainer.reference]}"},
            "value": number | {"description": "this record's output"},
            "contributions": {
                "type": "object",
                "description": "one per input column, summing to value - baseline",
                "required": list(explainer.inputs),
                "properties": {name: number for name in explainer.inputs},
            },
        },
    }
    head: dict[str, Any] = {
        "output": {
            "type": "string",
            "enum": [explainer.output],
            "description": f"the scale of baseline and value: {OUTPUT_SCALES[explainer.output]}",
        },
        "reference": {
            "type": "string",
            "enum": [explainer.reference],
            "description": f"what the baseline is: {REFERENCES[explainer.reference]}",
        },
    }
    description = (
        f"Why the model scored this record as it did ({explainer.method}): "
        f"present with `explain=true`"
    )
    if explainer.classes is None:
        return {
            "type": "object",
            "description": description,
            "required": ["output", "reference", *one["required"]],
            "properties": head | one["properties"],
        }
    return {
        "type": "object",
        "description": description,
        "required": ["output", "reference", "classes"],
        "properties": head
        | {
            "classes": {
                "type": "object",
                "required": list(explainer.classes),
                "properties": dict.fromkeys(explainer.classes, one),
            }
        },
    }
