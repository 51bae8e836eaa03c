"""Train, signature, split and validation for each task (binary, multiclass, regression)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pydantic import TypeAdapter
from sklearn.linear_model import LogisticRegression

from gitml.config.schema import (
    DataParams,
    ModelParams,
    RidgeModel,
    SplitParams,
    ValidateParams,
    validate_model,
)
from gitml.data.split import split_table
from gitml.data.validation import validate_frame
from gitml.errors import InputError, ModelError
from gitml.model.build import build_pipeline
from gitml.model.signature import build_signature
from gitml.tasks import ESTIMATORS

RULES = ValidateParams(
    min_rows=10, max_duplicate_fraction=0.5, unknown_columns="warn", min_class_fraction=0.05
)


def _data(task: str, **target: object) -> DataParams:
    columns = {
        "x": {"type": "float"},
        "kind": {"type": "category", "categories": ["a", "b"]},
        "y": target,
    }
    return DataParams.model_validate(
        {"name": "t", "source": "t.csv", "task": task, "target": "y", "columns": columns}
    )


MULTICLASS = _data("multiclass", type="category", categories=["red", "green", "blue"])
REGRESSION = _data("regression", type="float")


def _frame(rows: int = 90, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    kind = pd.Categorical(rng.choice(["a", "b"], rows), categories=["a", "b"])
    colour = np.array(["red", "green", "blue"])[np.digitize(x, [-0.4, 0.4])]
    return pd.DataFrame(
        {
            "x": x,
            "kind": kind,
            "colour": pd.Categorical(colour, categories=["red", "green", "blue"]),
            "value": 3.0 * x + (kind == "b") + rng.normal(scale=0.1, size=rows),
        }
    )


def _model(name: str, **params: object):

    preprocessing = {"numeric": "standard", "categorical": "onehot"}
    raw = {"name": name, "preprocessing": preprocessing, "params": params}
    return TypeAdapter(ModelParams).validate_python(raw)


@pytest.mark.parametrize(
    ("name", "classifier", "regressor"),
    [
        ("random_forest", "RandomForestClassifier", "RandomForestRegressor"),
        (
            "hist_gradient_boosting",
            "HistGradientBoostingClassifier",
            "HistGradientBoostingRegressor",
        ),
    ],
)
def test_one_model_name_gives_the_classifier_or_the_regressor_by_task(
    name: str, classifier: str, regressor: str
) -> None:
    model = _model(name)
    assert type(build_pipeline(model, MULTICLASS)[-1]).__name__ == classifier
    estimator = build_pipeline(model, REGRESSION)[-1]
    assert type(estimator).__name__ == regressor
    assert "class_weight" not in estimator.get_params()  # classifiers only


def test_ridge_is_regressions_baseline_and_is_refused_for_classification() -> None:
    ridge = validate_model(
        RidgeModel,
        {"name": "ridge", "preprocessing": {"numeric": "standard", "categorical": "onehot"},
         "params": {"alpha": 2.0}},
        source="t",
        what="model",
    )  # fmt: skip
    assert ESTIMATORS["regression"][0] == "ridge"
    estimator = build_pipeline(ridge, REGRESSION)[-1]
    assert type(estimator).__name__ == "Ridge" and estimator.alpha == 2.0
    with pytest.raises(ModelError, match=r"does not fit data\.task 'multiclass'"):
        build_pipeline(ridge, MULTICLASS)


def test_multiclass_signature_lists_the_classes_in_probability_column_order() -> None:
    frame = _frame()
    pipeline = build_pipeline(_model("logistic_regression"), MULTICLASS)
    pipeline.fit(frame[["x", "kind"]], frame["colour"].astype(str))
    signature = build_signature(pipeline, MULTICLASS, frame, model_name="m")
    assert signature["output"] == {
        "task": "multiclass",
        "target": "y",
        "classes": [str(c) for c in pipeline.classes_],  # predict_proba's columns
        "scores": "probability of each class of y",
    }
    assert sorted(signature["output"]["classes"]) == ["blue", "green", "red"]
    assert isinstance(pipeline[-1], LogisticRegression)


def test_regression_signature_names_the_predicted_value() -> None:
    frame = _frame()
    pipeline = build_pipeline(_model("ridge"), REGRESSION)
    pipeline.fit(frame[["x", "kind"]], frame["value"])
    signature = build_signature(pipeline, REGRESSION, frame, model_name="m")
    assert signature["output"] == {"task": "regression", "target": "y", "value": "predicted y"}
    assert [i["name"] for i in signature["inputs"]] == ["x", "kind"]


def test_regression_split_is_shuffled_whatever_stratify_says() -> None:
    """A continuous target has a class per value: stratifying on it would put no row in the
    test set (round(1 x 0.2) = 0 per value) and refuse the split."""
    values = np.linspace(0, 1, 200)
    table = pa.table({"y": values, "_row": np.arange(200)})
    split = SplitParams(test_size=0.2, seed=3, stratify=True)
    train, test = split_table(table, split, target="y", task="regression")
    assert (train.num_rows, test.num_rows) == (160, 40)
    again = split_table(table, split, target="y", task="regression")[1]
    assert again["_row"].to_pylist() == test["_row"].to_pylist()  # same seed, same rows
    other = split_table(table, split.model_copy(update={"seed": 4}), target="y", task="regression")
    assert other[1]["_row"].to_pylist() != test["_row"].to_pylist()


def test_multiclass_split_stays_stratified() -> None:
    labels = ["red"] * 100 + ["green"] * 50 + ["blue"] * 50
    table = pa.table({"y": labels, "_row": np.arange(200)})
    split = SplitParams(test_size=0.2, seed=3)
    _, test = split_table(table, split, target="y", task="multiclass")
    counts = pd.Series(test["y"].to_pylist()).value_counts().to_dict()
    assert counts == {"red": 20, "green": 10, "blue": 10}


def test_class_balance_names_the_rarest_of_several_classes() -> None:
    frame = pd.DataFrame(
        {
            "x": np.arange(100.0),
            "kind": ["a"] * 100,
            "y": ["red"] * 60 + ["green"] * 38 + ["blue"] * 2,
        }
    )
    report = validate_frame(frame, MULTICLASS, RULES, source="t.csv")
    [finding] = [f for f in report.findings if f.rule == "class_balance"]
    assert finding.level == "error" and "class 'blue' makes up 2.00%" in finding.message
    assert report.target_balance == {"red": 60, "green": 38, "blue": 2}


def test_regression_target_has_no_class_balance_but_its_range() -> None:
    frame = pd.DataFrame({"x": np.arange(100.0), "kind": ["a"] * 100, "y": np.arange(100.0)})
    report = validate_frame(frame, REGRESSION, RULES, source="t.csv")
    assert report.ok, report.findings
    assert not [f for f in report.findings if f.rule == "class_balance"]
    assert report.to_dict()["target_summary"] == {"min": 0, "mean": 49.5, "max": 99}
    assert "target_balance" not in report.to_dict()
    assert "Target: min 0, mean 49.5, max 99." in report.to_markdown()


def test_regression_target_must_be_a_finite_number_in_every_row() -> None:
    frame = pd.DataFrame(
        {"x": np.arange(100.0), "kind": ["a"] * 100, "y": ["1.5"] * 97 + ["many", "inf", ""]}
    )
    report = validate_frame(frame, REGRESSION, RULES, source="t.csv", line_offset=1)
    found = {f.rule: f for f in report.errors}
    assert "must be float but holds text" in found["type"].message
    assert found["type"].examples[0] == {"row": 98, "value": "many", "line": 99}
    assert found["finite"].examples[0]["row"] == 99
    assert found["target_present"].examples[0]["row"] == 100
    # declared nullable, an empty target is still refused: a regressor cannot learn from it
    nullable = _data("regression", type="float", nullable=True)
    frame = pd.DataFrame({"x": np.arange(100.0), "kind": ["a"] * 100, "y": [1.0] * 99 + [None]})
    report = validate_frame(frame, nullable, RULES, source="t.csv")
    [finding] = report.errors
    assert finding.rule == "target_present" and finding.column == "y"
    assert "a regression target needs a number in every row" in finding.message


@pytest.mark.filterwarnings("ignore:`sklearn.utils.parallel.delayed` should be used")
@pytest.mark.parametrize(
    ("task", "name", "preprocessing", "params"),
    [
        ("multiclass", "logistic_regression", ("standard", "onehot"), {}),
        ("multiclass", "random_forest", ("impute", "onehot"), {"n_estimators": 10}),
        ("multiclass", "hist_gradient_boosting", ("none", "ordinal"), {"max_iter": 10}),
        ("regression", "ridge", ("standard", "onehot"), {}),
        ("regression", "random_forest", ("impute", "onehot"), {"n_estimators": 10}),
        ("regression", "hist_gradient_boosting", ("none", "ordinal"), {"max_iter": 10}),
    ],
)
def test_fast_path_serves_every_family_of_the_new_tasks_as_the_pipeline(
    task: str, name: str, preprocessing: tuple[str, str], params: dict[str, object]
) -> None:
    """The start-up check passes (probe rows at +-1e308 included: refused alike, round by
    round) and small requests get exactly what `ServedModel.predict` gives."""
    from gitml.serve.bundle import ServedModel
    from gitml.serve.fastpath import PARITY_TOLERANCE, prepare_fast_path

    data = MULTICLASS if task == "multiclass" else REGRESSION
    frame = _frame(rows=300)
    numeric, categorical = preprocessing
    model = TypeAdapter(ModelParams).validate_python(
        {
            "name": name,
            "preprocessing": {"numeric": numeric, "categorical": categorical},
            "params": params,
        }
    )
    pipeline = build_pipeline(model, data)
    target = frame["colour"].astype(str) if task == "multiclass" else frame["value"]
    pipeline.fit(frame[["x", "kind"]], target)
    signature = build_signature(pipeline, data, frame, model_name="m")
    served = ServedModel("m", "v", None, pipeline, signature, {})
    schema = served.schema

    def reference(columns):
        return served.predict(schema.to_frame(columns))

    check = prepare_fast_path(pipeline, schema, None, reference, task=task, target="y")
    assert check.score is not None and check.reason.startswith("on: "), check.reason
    records = frame[["x", "kind"]][:20].astype(object).to_dict(orient="records")
    rows = schema.check_records(records)
    fast, slow = check.score(rows), reference(rows)
    assert fast.shape == ((20, 3) if task == "multiclass" else (20,))
    assert np.max(np.abs(fast - slow)) <= PARITY_TOLERANCE
    if name in ("logistic_regression", "ridge"):  # linear: overflows at the float limit
        extreme = schema.check_records([records[0], records[1] | {"x": 1.7e308}])
        for score in (check.score, reference):
            with pytest.raises(InputError) as refused:
                score(extreme)
            [found] = refused.value.problems
            assert (found["record"], found["field"], found["rule"]) == (1, "y", "finite_prediction")
            assert "too far outside the range" in str(refused.value)


def test_a_signature_without_task_is_binary_and_an_unknown_task_is_refused() -> None:
    from gitml.serve.bundle import signature_task

    committed = json.loads((Path(__file__).parents[2] / "models/signature.json").read_text())
    assert signature_task(committed) == "binary"
    older = committed | {"output": {k: v for k, v in committed["output"].items() if k != "task"}}
    assert signature_task(older) == "binary"  # written before tasks: served as before
    with pytest.raises(ModelError, match=r"unknown output\.task 'ranking'"):
        signature_task(committed | {"output": committed["output"] | {"task": "ranking"}})
