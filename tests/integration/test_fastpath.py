"""The small-request fast path reproduces every model family's pipeline to 1e-12."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
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
    pipeline, data, schema, reference = _fitted(built_repo, overrides)

    compiled = compile_fast_path(pipeline, schema, "Yes")
    assert compiled is not None
    fast = compiled.score
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


FAMILIES = [
    ["model=logistic_regression"],
    ["model=logistic_regression", "model.preprocessing.categorical=ordinal"],
    ["model=random_forest", "model.params.n_estimators=10", "model.params.n_jobs=1"],
    ["model=hist_gradient_boosting", "model.params.max_iter=10"],
]
EDGES = {
    "tenure": [0, 58, 58.0, 1e308, None],
    "monthly_charges": [1e308, -1e308, 0.0, 29.85, 1e-300],
    "total_charges": [None, 1e308, -1e308, 0.0, 5e-324],
    "contract": ["Weekly", None, "One year"],
    "internet_service": ["Cable", "DSL"],
}


def _fitted(built_repo: Path, overrides: list[str], *, rows: int | None = None, unbounded=False):
    """A pipeline fitted in-process on the reference training rows (the first `rows`), its
    params' data section, the input rules of its signature and the pipeline's own scores.

    `unbounded`: every input nullable and no numeric bounds, so that +-1e308 and nulls reach
    preprocessing."""
    params = parse_params(compose_params(built_repo / "conf", overrides), source="test")
    data = params.data
    if unbounded:
        loose = {
            name: spec.model_copy(
                update={"min": None, "max": None, "nullable": True}
                if spec.numeric
                else {"nullable": True}
            )
            for name, spec in data.columns.items()
            if name != data.target
        }
        data = data.model_copy(update={"columns": data.columns | loose})
    train = read_table(built_repo / "data/processed/train.parquet", categories=data.categorical)
    if rows is not None:
        train = train.iloc[:rows]
    pipeline = build_pipeline(params.model, data)
    pipeline.fit(train[data.features], train[data.target].astype(str).to_numpy())
    signature = {
        "inputs": [
            {"name": c, **data.columns[c].model_dump(exclude_none=True)} for c in data.features
        ],
        "output": {"target": "churn", "classes": ["No", "Yes"], "positive_class": "Yes"},
    }
    schema = InputSchema.from_signature(signature)

    def reference(columns):
        frame = schema.to_frame(columns)
        return score_frame(pipeline, frame, features=data.features, positive_class="Yes")

    return pipeline, data, schema, reference


@pytest.mark.filterwarnings("ignore:`sklearn.utils.parallel.delayed` should be used")
@pytest.mark.parametrize("overrides", FAMILIES, ids=lambda o: " ".join(o))
def test_fast_path_is_the_pipeline_at_the_edges(built_repo: Path, overrides: list[str]) -> None:
    """Every model family, with unbounded numbers: unseen categories (policy accept), nulls,
    +-1e308, ints as floats. The fast path scores as the pipeline does, refuses the rows it
    refuses (InputError naming the field)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from gitml.errors import InputError
    from gitml.serve.fastpath import PARITY_TOLERANCE, prepare_fast_path

    pipeline, data, schema, reference = _fitted(built_repo, overrides, rows=600, unbounded=True)

    check = prepare_fast_path(pipeline, schema, "Yes", reference)
    assert check.score is not None, check.reason  # every family keeps its fast path
    assert check.reason.startswith("on: matches the pipeline to ")
    fast = check.score
    base = pq.read_table(built_repo / "data/processed/test.parquet").select(data.features)
    base = base.slice(0, 30).to_pylist()

    def outcome(score, columns):
        try:
            return score(columns), None
        except InputError as err:
            return None, sorted((p["record"], p["field"], p["rule"]) for p in err.problems)

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        picks=st.lists(
            st.tuples(
                st.integers(0, len(base) - 1),
                st.dictionaries(st.sampled_from(sorted(EDGES)), st.integers(0, 10), max_size=3),
            ),
            min_size=1,
            max_size=8,
        )
    )
    def check_rows(picks: list) -> None:
        records = []
        for index, changes in picks:
            record = dict(base[index])
            for field, k in changes.items():
                record[field] = EDGES[field][k % len(EDGES[field])]
            records.append(record)
        columns = schema.check_records(records, unknown_category="accept")
        fast_scores, fast_refused = outcome(fast, columns)
        pipe_scores, pipe_refused = outcome(reference, columns)
        assert fast_refused == pipe_refused, records
        if pipe_scores is not None:
            assert np.isfinite(pipe_scores).all()
            assert np.max(np.abs(fast_scores - pipe_scores)) <= PARITY_TOLERANCE, records
        else:
            assert {rule for _, _, rule in pipe_refused} == {"finite_after_preprocessing"}

    check_rows()


def test_a_single_nan_difference_turns_the_fast_path_off(built_repo: Path) -> None:
    """Before, max(|fast - pipeline|) was NaN, and NaN > tolerance is False: it passed."""
    from gitml.serve.fastpath import prepare_fast_path, verify_fast_path

    pipeline, _, schema, reference = _fitted(built_repo, [], rows=500)

    def one_nan(columns):
        scores = reference(columns).copy()
        scores[3] = np.nan
        return scores

    assert not verify_fast_path(one_nan, reference, schema) <= 1e-12
    assert prepare_fast_path(pipeline, schema, "Yes", reference).reason.startswith("on: ")

    def broken(columns):
        raise ValueError("boom")

    check = prepare_fast_path(pipeline, schema, "Yes", broken)
    assert check.score is None
    assert check.reason == "off: the start-up check failed (ValueError: boom)"


@pytest.mark.filterwarnings("ignore:`sklearn.utils.parallel.delayed` should be used")
def test_features_the_model_cannot_score_get_a_422_on_both_paths(
    built_repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """1e308 survives imputation but not the forest's float32: before, a 500 from
    scikit-learn's ValueError; now a 422 naming the field, fast path on or off."""
    import logging

    import httpx

    from gitml.config.schema import ServeParams
    from gitml.serve.app import create_app
    from gitml.serve.bundle import ServedModel
    from tests.integration.serving import serve_in_thread

    overrides = ["model=random_forest", "model.params.n_estimators=10", "model.params.n_jobs=1"]
    pipeline, data, schema, _ = _fitted(built_repo, overrides, rows=600, unbounded=True)
    signature = {
        "inputs": [
            {"name": r.name, "type": r.type, "nullable": r.nullable}
            | ({"categories": list(r.categories)} if r.categories else {})
            for r in schema.fields
        ],
        "output": {"target": "churn", "classes": ["No", "Yes"], "positive_class": "Yes"},
    }
    served = ServedModel("m", "unreleased", None, pipeline, signature, {})
    good = pq.read_table(built_repo / "data/processed/test.parquet").select(data.features)
    good = good.slice(0, 1).to_pylist()[0]
    for fast_rows in (64, 0):
        caplog.clear()
        caplog.set_level(logging.INFO, logger="gitml.serve")
        app = create_app(served, ServeParams(fast_path_max_rows=fast_rows), threshold=0.5)
        assert [r.getMessage() for r in caplog.records if r.name.startswith("gitml.serve")] == [
            "m@unreleased: fast path on: matches the pipeline to 0.0e+00 on 66 probe rows; "
            "used up to 64 rows"
            if fast_rows
            else "m@unreleased: fast path off: serve.fast_path_max_rows is 0"
        ]
        with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            model = http.get("/v1/model").json()
            bad = http.post(
                "/v1/predict",
                json={"records": [good, good | {"monthly_charges": 1e308}]},
            )
            ok = http.post("/v1/predict", json={"records": [good]})
        assert model["fast_path_max_rows"] == fast_rows
        assert model["fast_path"].startswith("on: " if fast_rows else "off: ")
        assert bad.status_code == 422, bad.text
        problems = bad.json()["problems"]
        assert [(p["record"], p["field"], p["rule"]) for p in problems] == [
            (1, "monthly_charges", "finite_after_preprocessing")
        ]
        assert "float32" in problems[0]["reason"]
        assert ok.status_code == 200

    # gitml predict: the row goes to the rejects file like any other broken rule
    from gitml.errors import InputError
    from gitml.serve.batch import score_file

    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([good, good | {"monthly_charges": 1e308}, good]), source)
    summary = score_file(served, source, tmp_path / "out.csv", threshold=0.5, on_error="skip")
    assert (summary.scored, summary.rejected) == (2, 1)
    rejected = pacsv.read_csv(summary.rejected_path).to_pylist()
    assert [(r["row"], r["column"], r["rule"]) for r in rejected] == [
        (2, "monthly_charges", "finite_after_preprocessing")
    ]
    with pytest.raises(InputError, match=r"row 2: column 'monthly_charges': \[finite_after_pre"):
        score_file(served, source, tmp_path / "fail.csv", threshold=0.5)
    assert not (tmp_path / "fail.csv").exists()
