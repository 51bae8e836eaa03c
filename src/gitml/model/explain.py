"""Local explanations: why the model scored a row as it did, one contribution per input column.

An explainer turns the pipeline's preprocessed matrix into, per row and per output, a
`baseline`, a `value` and one contribution per *input* column (one-hot columns of an input are
summed back into it) such that `sum(contributions) == value - baseline`:

| estimator                  | method           | output (scale of value and baseline)      |
| -------------------------- | ---------------- | ----------------------------------------- |
| LogisticRegression         | linear, exact    | log-odds of the positive class; logits    |
| Ridge, LinearRegression    | linear, exact    | the prediction                            |
| RandomForest               | path attribution | probability (positive class, each class); |
|                            |                  | the prediction                            |
| HistGradientBoosting       | path attribution | log-odds; logits; the prediction          |

Multiclass models explain each class's output ("logits" per class, or probability).
Linear: contribution of input c = sum over its matrix columns j of `coef_j * (x_j - mean_j)`,
`mean` the training split's mean preprocessed row (recorded by `train` in metadata.json), so
the baseline (the output at `mean`) is the mean output over the training split. Trees:
`gitml.model.explain_trees`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gitml.errors import ModelError
from gitml.model.explanation import (
    REFERENCE_PROFILE,
    REFERENCE_TRAINING,
    Explainer,
    Explanation,
)
from gitml.tasks import Task

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline


class LinearExplainer(Explainer):
    """Exact contributions of a linear model: `coef * (x - mean)`, summed per input."""

    method = "linear"

    def __init__(
        self,
        coef: np.ndarray,
        intercept: np.ndarray,
        mean: np.ndarray,
        groups: np.ndarray,
        inputs: tuple[str, ...],
        *,
        output: str,
        classes: tuple[str, ...] | None,
        reference: str,
    ) -> None:
        self.coef, self.intercept, self.mean = coef, intercept, mean
        self.inputs, self.classes = inputs, classes
        self.output, self.reference = output, reference
        self._to_inputs = _group_matrix(groups, len(inputs))
        self.baseline = coef @ mean + intercept

    def explain_matrix(self, matrix: np.ndarray) -> Explanation:
        matrix = np.asarray(matrix, dtype=np.float64)
        values = matrix @ self.coef.T + self.intercept  # what decision_function computes
        centred = matrix - self.mean
        # (rows, columns) * coef per output, then the one-hot columns summed into their input
        contributions = np.stack(
            [(centred * self.coef[k]) @ self._to_inputs for k in range(len(self.coef))], axis=2
        )
        return Explanation(self.inputs, self.classes, self.baseline, values, contributions)


def _group_matrix(groups: np.ndarray, inputs: int) -> np.ndarray:
    """(matrix columns x inputs) 0/1: column j belongs to input groups[j]."""
    out = np.zeros((len(groups), inputs))
    out[np.arange(len(groups)), groups] = 1.0
    return out


def build_explainer(
    pipeline: Pipeline,
    *,
    task: Task,
    positive_class: str | None = None,
    record: dict[str, Any] | None = None,
    profile: dict[str, Any] | None = None,
) -> Explainer:
    """The explainer of a fitted gitml pipeline (preprocessing + estimator).

    `record` is metadata.json's `explanation` (the training split's mean preprocessed row,
    written by `train`); a linear model without one (trained before it was recorded) falls
    back to its scalers' means and `profile` (metadata.json `training.profile`) and says so
    in `reference`. Raises ModelError for an estimator without an explanation method.
    """
    inputs = tuple(str(c) for c in pipeline.feature_names_in_)
    groups = input_groups(pipeline, inputs)
    estimator = pipeline.steps[-1][1]
    kind = type(estimator).__name__
    classes = tuple(str(c) for c in getattr(estimator, "classes_", ())) or None
    sign = 1.0
    if task == "binary":
        if classes is None or positive_class not in classes:
            raise ModelError(f"cannot explain: positive class {positive_class!r} not in {classes}")
        # a binary model's one output is about classes_[1]: negated when positive is the other
        sign = 1.0 if classes.index(positive_class) == 1 else -1.0
    per_class = classes if task == "multiclass" else None
    if kind in ("LogisticRegression", "Ridge", "LinearRegression"):
        coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64)) * sign
        intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64)) * sign
        if len(intercept) != len(coef):
            intercept = np.broadcast_to(intercept, (len(coef),)).copy()
        if record is not None and "transformed_mean" in record:
            mean = np.asarray(record["transformed_mean"], dtype=np.float64)
            reference = REFERENCE_TRAINING
        else:
            mean = _profile_mean(pipeline, profile)
            reference = REFERENCE_PROFILE
        if mean.shape != (coef.shape[1],):
            raise ModelError(
                f"cannot explain: the recorded mean row has {mean.size} columns, the model "
                f"{coef.shape[1]}",
                hint="the model and metadata.json come from different runs: `dvc checkout`",
            )
        output = {"binary": "log_odds", "multiclass": "logit", "regression": "prediction"}[task]
        return LinearExplainer(
            coef, intercept, mean, groups, inputs,
            output=output, classes=per_class, reference=reference,
        )  # fmt: skip
    from gitml.model.explain_trees import build_tree_explainer

    found = build_tree_explainer(
        estimator, groups, inputs,
        task=task, sign=sign, classes=per_class, positive_class=positive_class,
    )  # fmt: skip
    if found is None:
        raise ModelError(
            f"cannot explain a {kind}: gitml explains linear models and tree ensembles"
        )
    return found


def input_groups(pipeline: Pipeline, inputs: tuple[str, ...]) -> np.ndarray:
    """For each column of the preprocessed matrix, the index of the input it comes from."""
    from gitml.model.scoring import feature_fields

    groups = []
    for fields in feature_fields(pipeline):
        if len(fields) != 1 or fields[0] not in inputs:
            raise ModelError(
                f"cannot explain: a preprocessed column comes from inputs {list(fields)}, "
                "not from exactly one input column"
            )
        groups.append(inputs.index(fields[0]))
    return np.asarray(groups, dtype=np.intp)


def _profile_mean(pipeline: Pipeline, profile: dict[str, Any] | None) -> np.ndarray:
    """An older model's mean preprocessed row: 0 for standardised columns (the scaler's mean
    is the training mean), category frequencies for one-hot columns and the profile's mean
    for the other numbers (both from metadata.json `training.profile`)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import StandardScaler

    from gitml.model.encoding import CategoryEncoder

    pre = pipeline.steps[0][1]
    if not isinstance(pre, ColumnTransformer):
        raise ModelError("cannot explain: the model's preprocessing is not a ColumnTransformer")
    profile = profile or {}
    out: list[float] = []
    for _, step, columns in pre.transformers_:
        if isinstance(step, str) and step == "drop":
            continue
        names = [str(c) for c in columns]
        scaled = isinstance(step, StandardScaler) or any(
            isinstance(s, StandardScaler) for _, s in getattr(step, "steps", [])
        )
        for k, name in enumerate(names):
            entry = profile.get(name)
            if scaled:
                out.append(0.0)
                continue
            if not isinstance(entry, dict):
                raise ModelError(
                    f"cannot explain: the model was trained before explanations were recorded "
                    f"and metadata.json has no training profile of {name!r}",
                    hint="retrain with `dvc repro`: train records what explanations need",
                )
            if isinstance(step, CategoryEncoder):
                counts, rows = entry.get("counts") or {}, max(int(entry.get("rows") or 0), 1)
                out += [float(counts.get(c, 0)) / rows for c in step.categories[k]]
            else:
                out.append(float(entry.get("mean") or 0.0))
    return np.asarray(out, dtype=np.float64)


def transform_frame(pipeline: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """The preprocessed matrix of `frame`'s model inputs (what the estimator sees)."""
    features = [str(c) for c in pipeline.feature_names_in_]
    return np.asarray(pipeline[:-1].transform(frame[features]), dtype=np.float64)


def explanation_record(
    pipeline: Pipeline, train: pd.DataFrame, *, task: Task, positive_class: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What `train` records about explanations: (the signature's `explanation`, the
    metadata's `explanation`). The metadata holds the training split's mean preprocessed row
    (a linear model's reference); the signature what an explanation is, and its baseline."""
    from gitml.model.explain_trees import TreeExplainer

    mean = transform_frame(pipeline, train).mean(axis=0)
    record = {"transformed_mean": [float(v) for v in mean]}
    explainer = build_explainer(pipeline, task=task, positive_class=positive_class, record=record)
    if isinstance(explainer, TreeExplainer):
        record = {}  # the trees carry their own reference
    return explainer.describe(), record
