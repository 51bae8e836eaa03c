"""Local explanations: additivity against each model's own raw output, the linear baseline,
a planted signal, and older models without the training record."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter

from gitml.config.schema import DataParams, ModelParams
from gitml.errors import ModelError
from gitml.model.build import build_pipeline
from gitml.model.explain import build_explainer, explanation_record, transform_frame
from gitml.model.explanation import REFERENCE_PROFILE, REFERENCE_TRAINING

# linear models: exact up to float64 rounding of sums of ~30 terms
LINEAR_TOLERANCE = 1e-9
# trees: the same leaves as the model's own walk, sums in another order (hundreds of terms)
TREE_TOLERANCE = 1e-9

CATS = ["a", "b", "c"]
TARGETS = {
    "binary": {"type": "category", "categories": ["No", "Yes"]},
    "multiclass": {"type": "category", "categories": ["red", "green", "blue"]},
    "regression": {"type": "float"},
}


def _data(task: str, *, nullable: bool = False, positive: str = "Yes") -> DataParams:
    columns = {
        "signal": {"type": "float"},
        "noise": {"type": "float", "nullable": nullable},
        "kind": {"type": "category", "categories": CATS},
        "count": {"type": "int", "min": 0},
        "y": TARGETS[task],
    }
    raw = {"name": "t", "source": "t.csv", "task": task, "target": "y", "columns": columns}
    if task == "binary":
        raw["positive_class"] = positive
    return DataParams.model_validate(raw)


def _frame(task: str, rows: int = 600, seed: int = 0, *, missing: bool = False) -> pd.DataFrame:
    """The target is driven by `signal` alone (plus a little of `kind`)."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=rows)
    noise = rng.normal(size=rows)
    if missing:
        noise[rng.random(rows) < 0.2] = np.nan
    kind = rng.choice(CATS, rows)
    drive = 3.0 * signal + 0.3 * (kind == "b")
    if task == "binary":
        y = np.where(drive + rng.normal(scale=0.5, size=rows) > 0, "Yes", "No")
    elif task == "multiclass":
        y = np.array(["red", "green", "blue"])[np.digitize(drive, [-1.0, 1.0])]
    else:
        y = drive + rng.normal(scale=0.1, size=rows)
    frame = pd.DataFrame(
        {
            "signal": signal,
            "noise": noise,
            "kind": pd.Categorical(kind, categories=CATS),
            "count": rng.integers(0, 5, rows),
            "y": y,
        }
    )
    if task != "regression":
        frame["y"] = pd.Categorical(frame["y"], categories=TARGETS[task]["categories"])
    return frame


def _fit(task: str, name: str, numeric: str, categorical: str, **kw: object):
    data = _data(task, nullable=kw.pop("nullable", False), positive=kw.pop("positive", "Yes"))
    frame = kw.pop("frame", None)
    frame = _frame(task) if frame is None else frame
    raw = {
        "name": name,
        "preprocessing": {"numeric": numeric, "categorical": categorical},
        "params": kw,
    }
    model = TypeAdapter(ModelParams).validate_python(raw)
    pipeline = build_pipeline(model, data)
    y = frame["y"].astype(str).to_numpy() if task != "regression" else frame["y"].to_numpy()
    pipeline.fit(frame[data.features], y)
    return pipeline, data, frame


def _raw_output(pipeline, frame: pd.DataFrame, task: str, positive: str | None) -> np.ndarray:
    """The model's own output on the explanation's scale, (rows, outputs)."""
    estimator = pipeline.steps[-1][1]
    matrix = transform_frame(pipeline, frame)
    name = type(estimator).__name__
    if task == "regression":
        return estimator.predict(matrix)[:, None]
    if name.startswith("RandomForest"):
        proba = estimator.predict_proba(matrix)
        if task == "binary":
            return proba[:, [list(estimator.classes_).index(positive)]]
        return proba
    raw = estimator.decision_function(matrix)
    if task == "binary":
        sign = 1.0 if list(estimator.classes_).index(positive) == 1 else -1.0
        return sign * raw[:, None]
    return raw


def _record(pipeline, data: DataParams, frame: pd.DataFrame):
    return explanation_record(pipeline, frame, task=data.task, positive_class=data.positive_class)[
        1
    ]


def _check_additive(pipeline, data: DataParams, frame: pd.DataFrame, tolerance: float):
    explainer = build_explainer(
        pipeline,
        task=data.task,
        positive_class=data.positive_class,
        record=_record(pipeline, data, frame),
    )
    explained = explainer.explain_matrix(transform_frame(pipeline, frame))
    own = _raw_output(pipeline, frame, data.task, data.positive_class)
    total = explained.baseline + explained.contributions.sum(axis=1)
    assert explained.contributions.shape == (len(frame), 4, own.shape[1])
    assert np.max(np.abs(total - own)) <= tolerance
    assert np.max(np.abs(explained.values - own)) <= tolerance
    return explainer, explained


LINEAR = [
    ("binary", "logistic_regression", {}),
    ("binary", "logistic_regression", {"positive": "No"}),
    ("multiclass", "logistic_regression", {}),
    ("regression", "ridge", {}),
]


@pytest.mark.parametrize(("task", "name", "kw"), LINEAR)
def test_linear_contributions_sum_to_the_decision_function_and_baseline_is_the_mean(task, name, kw):
    pipeline, data, frame = _fit(task, name, "standard", "onehot", nullable=True, **kw)
    explainer, _ = _check_additive(pipeline, data, frame, LINEAR_TOLERANCE)
    assert explainer.reference == REFERENCE_TRAINING
    # the baseline is the mean output over the training split (exact for a linear model)
    own = _raw_output(pipeline, frame, task, data.positive_class)
    assert np.allclose(explainer.baseline, own.mean(axis=0), atol=1e-9, rtol=0)
    assert explainer.output == {"binary": "log_odds", "multiclass": "logit"}.get(task, "prediction")


TREES = [
    ("binary", "random_forest", "impute", "onehot", {"n_estimators": 20, "min_samples_leaf": 3}),
    ("multiclass", "random_forest", "impute", "onehot", {"n_estimators": 15}),
    ("regression", "random_forest", "none", "onehot", {"n_estimators": 15}),
    ("binary", "hist_gradient_boosting", "none", "ordinal", {"max_iter": 40}),
    ("binary", "hist_gradient_boosting", "none", "ordinal", {"max_iter": 30, "positive": "No"}),
    ("multiclass", "hist_gradient_boosting", "none", "ordinal", {"max_iter": 25}),
    ("regression", "hist_gradient_boosting", "none", "ordinal", {"max_iter": 40}),
    ("regression", "hist_gradient_boosting", "impute", "onehot", {"max_iter": 20}),
]


@pytest.mark.parametrize(("task", "name", "numeric", "categorical", "kw"), TREES)
def test_tree_contributions_sum_to_the_models_raw_output(task, name, numeric, categorical, kw):
    nullable = numeric == "none"  # native missing values: NaN reaches the trees
    frame = _frame(task, missing=nullable)
    pipeline, data, frame = _fit(
        task, name, numeric, categorical, nullable=nullable, frame=frame, **kw
    )
    # rows the model never saw, with missing values and an unknown category (missing)
    probe = _frame(task, rows=300, seed=7, missing=nullable)
    probe["kind"] = pd.Categorical(
        np.where(np.arange(300) % 11 == 0, None, probe["kind"].astype(str)), categories=CATS
    )
    explainer, _ = _check_additive(pipeline, data, pd.concat([frame, probe]), TREE_TOLERANCE)
    assert explainer.method == "path_attribution"
    # the baseline is the ensemble's expected output over the rows its trees were grown on
    if name == "hist_gradient_boosting" and task == "regression":
        own = _raw_output(pipeline, frame, task, None)
        assert abs(explainer.baseline[0] - own.mean()) < 1e-6


def test_native_categorical_splits_are_walked_as_the_model_walks_them():
    """A category drives the target: HistGradientBoosting splits on it natively (bitsets)."""
    rng = np.random.default_rng(3)
    frame = _frame("regression", rows=800, missing=True)
    frame["y"] = np.where(frame["kind"] == "c", 5.0, 0.0) + rng.normal(scale=0.1, size=800)
    pipeline, data, frame = _fit(
        "regression", "hist_gradient_boosting", "none", "ordinal",
        nullable=True, frame=frame, max_iter=30,
    )  # fmt: skip
    explainer, explained = _check_additive(pipeline, data, frame, TREE_TOLERANCE)
    assert explainer.nodes["categorical"].any()
    top = np.abs(explained.contributions[:, :, 0]).mean(axis=0).argmax()
    assert explainer.inputs[top] == "kind"


@pytest.mark.parametrize(
    ("name", "numeric", "categorical", "kw"),
    [
        ("logistic_regression", "standard", "onehot", {}),
        ("random_forest", "impute", "onehot", {"n_estimators": 20}),
        ("hist_gradient_boosting", "none", "ordinal", {"max_iter": 30}),
    ],
)
def test_a_planted_signal_gets_the_largest_contribution(name, numeric, categorical, kw):
    pipeline, data, frame = _fit("binary", name, numeric, categorical, **kw)
    explainer = build_explainer(
        pipeline, task="binary", positive_class="Yes", record=_record(pipeline, data, frame)
    )
    # a row far out on the planted column, average elsewhere
    row = pd.DataFrame(
        {"signal": [2.5], "noise": [0.0], "kind": pd.Categorical(["a"], CATS), "count": [2]}
    )
    explained = explainer.explain_matrix(transform_frame(pipeline, row))
    contributions = explained.contributions[0, :, 0]
    assert explainer.inputs[int(np.abs(contributions).argmax())] == "signal"
    assert contributions[explainer.inputs.index("signal")] > 0  # pushes towards "Yes"


def test_an_older_linear_model_explains_from_its_profile_and_says_so():
    pipeline, data, frame = _fit("binary", "logistic_regression", "standard", "onehot")
    from gitml.data.profile import profile_frame

    profile = profile_frame(frame, data)
    older = build_explainer(pipeline, task="binary", positive_class="Yes", profile=profile)
    exact = build_explainer(
        pipeline, task="binary", positive_class="Yes", record=_record(pipeline, data, frame)
    )
    assert older.reference == REFERENCE_PROFILE
    assert older.describe()["reference"] == REFERENCE_PROFILE
    assert abs(older.baseline[0] - exact.baseline[0]) < 1e-3  # profile means are rounded
    explained = older.explain_matrix(transform_frame(pipeline, frame[:5]))
    total = explained.baseline + explained.contributions.sum(axis=1)
    assert np.max(np.abs(total - explained.values)) <= LINEAR_TOLERANCE


def test_an_older_unscaled_model_without_a_profile_is_refused_by_name():
    pipeline, _, _ = _fit("regression", "ridge", "impute", "onehot")
    with pytest.raises(ModelError, match="no training profile of 'kind'"):
        build_explainer(pipeline, task="regression", profile={})


def test_the_signature_record_describes_the_explanation():
    pipeline, _, frame = _fit("multiclass", "logistic_regression", "standard", "onehot")
    described, record = explanation_record(pipeline, frame, task="multiclass", positive_class=None)
    assert described["method"] == "linear" and described["output"] == "logit"
    assert set(described["baseline"]) == {"red", "green", "blue"}
    assert len(record["transformed_mean"]) == transform_frame(pipeline, frame).shape[1]
    pipeline, _, frame = _fit("binary", "hist_gradient_boosting", "none", "ordinal", max_iter=10)
    described, record = explanation_record(pipeline, frame, task="binary", positive_class="Yes")
    assert described["method"] == "path_attribution" and record == {}
    assert isinstance(described["baseline"], float)


def test_an_explanation_that_is_not_finite_refuses_its_record_by_name():
    from gitml.errors import InputError
    from gitml.serve.explanations import FINITE_EXPLANATION_RULE, explain_columns

    pipeline, data, frame = _fit("regression", "ridge", "standard", "onehot")
    explainer = build_explainer(pipeline, task="regression", record=_record(pipeline, data, frame))
    matrix = transform_frame(pipeline, frame[:3])
    matrix[1, :] = 1.7e308  # finite, but their weighted sum overflows
    with pytest.raises(InputError) as info:
        explain_columns(explainer, lambda _: matrix, None, None)  # type: ignore[arg-type]
    assert [(p["record"], p["field"], p["rule"]) for p in info.value.problems] == [
        (1, "explain", FINITE_EXPLANATION_RULE)
    ]
    assert str(info.value).startswith("record 1: the explanation is not a finite number")
