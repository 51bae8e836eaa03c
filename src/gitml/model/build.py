"""Build the scikit-learn Pipeline (preprocessing + estimator) from params, from an allow-list."""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from gitml.config.schema import DataParams, ModelParams
from gitml.errors import ModelError
from gitml.model.encoding import CategoryEncoder

# The only estimators a config can name: no import paths from config, ever.
ESTIMATORS: dict[str, type] = {
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "hist_gradient_boosting": HistGradientBoostingClassifier,
}


def build_pipeline(model: ModelParams, data: DataParams) -> Pipeline:
    """Return an unfitted Pipeline: ColumnTransformer(categorical, numeric) -> estimator."""
    estimator_cls = ESTIMATORS.get(model.name)
    if estimator_cls is None:  # unreachable after params validation; kept as a guard
        raise ModelError(f"unknown model {model.name!r}; allowed: {sorted(ESTIMATORS)}")
    categorical = [c for c in data.features if data.columns[c].type == "category"]
    numeric = [c for c in data.features if data.columns[c].numeric]
    pre = model.preprocessing

    # Declared categories are fixed: an unseen category encodes as all zeros (one-hot) or
    # missing (ordinal), so scoring never fails on it; `validate` reports it on training data.
    cat_step = CategoryEncoder(
        categories=[list(data.columns[c].categories or []) for c in categorical],
        output="onehot" if pre.categorical == "onehot" else "ordinal",
    )
    if pre.numeric == "standard":
        num_step: Any = Pipeline(
            [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
        )
    elif pre.numeric == "impute":
        num_step = SimpleImputer(strategy="median")
    else:
        num_step = "passthrough"

    transformers = []
    if categorical:
        transformers.append(("categorical", cat_step, categorical))
    if numeric:
        transformers.append(("numeric", num_step, numeric))
    preprocess = ColumnTransformer(
        transformers,
        remainder="drop",
        sparse_threshold=0.0,  # dense: HistGradientBoosting refuses sparse input
        verbose_feature_names_out=False,
    )

    kwargs = model.params.model_dump()
    if model.name == "hist_gradient_boosting" and pre.categorical == "ordinal" and categorical:
        # categorical columns come first in the ColumnTransformer output
        kwargs["categorical_features"] = list(range(len(categorical)))
    return Pipeline([("preprocess", preprocess), ("estimator", estimator_cls(**kwargs))])


def positive_index(pipeline: Pipeline, positive_class: str) -> int:
    """Column of `predict_proba` that holds the positive class."""
    classes = [str(c) for c in pipeline.classes_]
    if positive_class not in classes:
        raise ModelError(
            f"the model's classes {classes} do not include the positive class {positive_class!r}"
        )
    return classes.index(positive_class)
