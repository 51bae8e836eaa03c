"""The small-request fast path reproduces every model family's pipeline to 1e-12."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gitml.config.compose import compose_params, parse_params
from gitml.data.io import read_table
from gitml.model.build import build_pipeline
from gitml.model.scoring import score_frame
from gitml.serve.fastpath import compile_fast_path, verify_fast_path
from gitml.serve.inputs import InputSchema


@pytest.mark.filterwarnings("ignore:`sklearn.utils.parallel.delayed` should be used")
@pytest.mark.parametrize(
    "overrides",
    [
        ["model=logistic_regression"],
        ["model=random_forest", "model.params.n_estimators=25"],
        ["model=hist_gradient_boosting", "model.params.max_iter=30"],
    ],
)
def test_fast_path_matches_the_pipeline(built_repo: Path, overrides: list[str]) -> None:
    params = parse_params(compose_params(built_repo / "conf", overrides), source="test")
    data = params.data
    train = read_table(built_repo / "data/processed/train.parquet", categories=data.categorical)
    pipeline = build_pipeline(params.model, data)
    pipeline.fit(train[data.features], train[data.target].astype(str).to_numpy())
    signature = {
        "inputs": [
            {"name": c, **data.columns[c].model_dump(exclude_none=True)} for c in data.features
        ]
    }
    schema = InputSchema.from_signature(signature)

    def reference(columns):
        frame = schema.to_frame(columns)
        return score_frame(pipeline, frame, features=data.features, positive_class="Yes")

    fast = compile_fast_path(pipeline, schema, "Yes")
    assert fast is not None
    assert verify_fast_path(fast, reference, schema) <= 1e-12
    records = pq.read_table(built_repo / "data/processed/test.parquet").select(data.features)
    columns = schema.check_records(records.to_pylist())
    assert np.max(np.abs(fast(columns) - reference(columns))) <= 1e-12
    for record in records.slice(0, 40).to_pylist():  # one row at a time, as served
        one = schema.check_records([record])
        assert abs(fast(one)[0] - reference(one)[0]) <= 1e-12


def test_an_unknown_step_gets_no_fast_path(built_repo: Path) -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    schema = InputSchema.from_signature({"inputs": [{"name": "x", "type": "float"}]})
    odd = Pipeline([("pre", FunctionTransformer(np.log1p)), ("est", None)])
    assert compile_fast_path(odd, schema, "Yes") is None
