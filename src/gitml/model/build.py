"""Build the scikit-learn Pipeline (preprocessing + estimator) from params, from an allow-list."""

from __future__ import annotations

import importlib
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from gitml.config.schema import DataParams, ModelParams
from gitml.errors import ModelError
from gitml.model.encoding import CategoryEncoder
from gitml.tasks import ESTIMATORS, is_classification

# The class behind each model name, for classification (binary, multiclass) and regression:
# no import paths from config, ever. Which names a task may use is `gitml.tasks.ESTIMATORS`.
_CLASSIFIERS: dict[str, tuple[str, str]] = {
    "logistic_regression": ("sklearn.linear_model", "LogisticRegression"),
    "random_forest": ("sklearn.ensemble", "RandomForestClassifier"),
    "hist_gradient_boosting": ("sklearn.ensemble", "HistGradientBoostingClassifier"),
}
_REGRESSORS: dict[str, tuple[str, str]] = {
    "ridge": ("sklearn.linear_model", "Ridge"),
    "random_forest": ("sklearn.ensemble", "RandomForestRegressor"),
    "hist_gradient_boosting": ("sklearn.ensemble", "HistGradientBoostingRegressor"),
}


def build_pipeline(model: ModelParams, data: DataParams) -> Pipeline:
    """Return an unfitted Pipeline: ColumnTransformer(categorical, numeric) -> estimator.

    The estimator is the classifier or the regressor of `model.name`, by `data.task`.
    """
    task = data.task
    if model.name not in ESTIMATORS[task]:  # unreachable after params validation: a guard
        raise ModelError(
            f"model {model.name!r} does not fit data.task {task!r}; "
            f"allowed: {', '.join(ESTIMATORS[task])}"
        )
    classes = _CLASSIFIERS if is_classification(task) else _REGRESSORS
    module, cls_name = classes[model.name]
    # imported on demand: sklearn.ensemble alone adds ~0.15 s to every stage that loads this
    estimator_cls = getattr(importlib.import_module(module), cls_name)
    categorical = [c for c in data.features if data.columns[c].type == "category"]
    numeric = [c for c in data.features if data.columns[c].numeric]
    pre = model.preprocessing

    # Declared categories are fixed: an unseen category encodes as all zeros (one-hot) or
    # missing (ordinal), so scoring never fails on it; `validate` reports it on training data.
    cat_step = CategoryEncoder(
        categories=[list(data.columns[c].categories or []) for c in categorical],
        output="onehot" if pre.categorical == "onehot" else "ordinal",
    )
    # Only columns the schema declares nullable can hold missing values (validate and serving
    # refuse them elsewhere), so only those pay for median imputation.
    nullable = [c for c in numeric if data.columns[c].nullable]
    complete = [c for c in numeric if not data.columns[c].nullable]
    impute = pre.numeric in ("standard", "impute")
    scale = pre.numeric == "standard"

    transformers: list[tuple[str, Any, list[str]]] = []
    if categorical:
        transformers.append(("categorical", cat_step, categorical))
    if complete:
        transformers.append(("numeric", StandardScaler() if scale else "passthrough", complete))
    if nullable:
        steps: list[tuple[str, Any]] = (
            [("impute", SimpleImputer(strategy="median"))] if impute else []
        )
        if scale:
            steps.append(("scale", StandardScaler()))
        transformers.append(
            ("numeric_nullable", Pipeline(steps) if steps else "passthrough", nullable)
        )
    preprocess = ColumnTransformer(
        transformers,
        remainder="drop",
        sparse_threshold=0.0,  # dense: HistGradientBoosting refuses sparse input
        verbose_feature_names_out=False,
    )

    kwargs = model.params.model_dump()
    if not is_classification(task):
        kwargs.pop("class_weight", None)  # classifiers only (params refuse a value for others)
    if model.name == "hist_gradient_boosting" and pre.categorical == "ordinal" and categorical:
        # categorical columns come first in the ColumnTransformer output
        kwargs["categorical_features"] = list(range(len(categorical)))
    return Pipeline([("preprocess", preprocess), ("estimator", estimator_cls(**kwargs))])
