"""Multiclass and regression projects, end to end on the model side: ingest, validate, split
and train with real DVC, then `gitml predict` on a file and a live `gitml serve`.

Multiclass: scikit-learn's wine data (178 rows, three cultivars as category strings).
Regression: its diabetes data (442 rows, disease progression), with `sex` as a category.
Both are small enough to build in seconds; the reference project covers binary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from gitml.config.compose import load_params
from gitml.data.io import read_table
from gitml.model.persist import load_model
from gitml.model.scoring import predict_frame
from gitml.project import copy_project
from gitml.tasks import METRICS, PRIMARY_METRIC, score_column
from tests.integration.serving import ServerProcess
from tests.support import build_once, copy_repo, dvc, git, gitml

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-12
FAST_ROWS = 8  # requests up to this size take the fast path, larger ones the pipeline


def _wine() -> tuple[pd.DataFrame, dict[str, Any], str]:
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True)
    frame = wine.data.rename(columns=lambda c: c.replace("/", "_"))
    classes = ["barolo", "grignolino", "barbera"]
    frame["cultivar"] = [classes[k] for k in wine.target]
    columns = {c: {"type": "float", "min": 0} for c in frame.columns[:-1]}
    columns["cultivar"] = {"type": "category", "categories": classes}
    return frame, columns, "cultivar"


def _diabetes() -> tuple[pd.DataFrame, dict[str, Any], str]:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame["sex"] = frame["sex"].map({1.0: "f", 2.0: "m"})
    frame = frame.rename(columns={"target": "progression"})
    # numbers unbounded (no min/max): the fast path's start-up check probes +-1e308
    columns = {c: {"type": "float"} for c in frame.columns}
    columns["age"] = {"type": "int", "min": 0, "max": 120}
    columns["sex"] = {"type": "category", "categories": ["f", "m"]}
    return frame, columns, "progression"


DATASETS = {  # task: data set name, loader, conf/model preset
    "multiclass": ("wine", _wine, "logistic_regression"),
    "regression": ("diabetes", _diabetes, "ridge"),
}


def _build(base: Path, task: str) -> None:
    name, load, model = DATASETS[task]
    repo = copy_project(ROOT, base / "project")
    frame, columns, target = load()
    frame.to_csv(repo / "data/external" / f"{name}.csv", index=False)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = {
        "name": name,
        "source": f"data/external/{name}.csv",
        "format": "auto",
        "task": task,
        "target": target,
        "positive_class": None,  # dvc.yaml tracks the key; it applies to binary only
        "drop": [],
        "slices": [],
        "columns": columns,
    }
    params["model"] = yaml.safe_load((ROOT / "conf/model" / f"{model}.yaml").read_text())
    params["evaluate"].update(metrics=list(METRICS[task]), slices=[])
    params["promotion"] = {"slices": {"metrics": [PRIMARY_METRIC[task]]}}
    params["serve"]["fast_path_max_rows"] = FAST_ROWS
    params["serve"]["prediction_log"].update(enabled=True, flush_rows=20, flush_seconds=0.2)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", f"{task} project", cwd=repo)
    # evaluate and card are the evaluate helper's: train is as far as this side goes
    proc = dvc("repro", "train", cwd=repo)
    (base / "repro.log").write_text(proc.stdout)


@pytest.fixture(scope="module", params=["multiclass", "regression"])
def task(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def built(task: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The task's project after `dvc repro train`, built once per run. Read-only."""
    return build_once(tmp_path_factory, f"task-{task}", lambda base: _build(base, task))


@pytest.fixture(scope="module")
def project(task: str, built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_repo(built / "project", tmp_path_factory.mktemp(task) / "project")


@pytest.fixture(scope="module")
def expected(project: Path) -> tuple[pd.DataFrame, np.ndarray, Any]:
    """The test split, and what `predict_frame` (evaluate's code path) says about it."""
    params = load_params(project / "params.yaml")
    data = params.data
    frame = read_table(project / "data/processed/test.parquet", categories=data.categorical)
    pipeline = load_model(project / "models/model.skops")
    outputs = predict_frame(pipeline, frame, features=data.features, task=data.task)
    return frame, outputs, pipeline


def test_train_writes_the_tasks_model_signature_and_metadata(
    task: str, built: Path, project: Path
) -> None:
    repro = (built / "repro.log").read_text()
    shuffled = "(regression: shuffled, not stratified)" in repro
    assert shuffled == (task == "regression"), repro
    signature = json.loads((project / "models/signature.json").read_text())
    metadata = json.loads((project / "models/metadata.json").read_text())
    pipeline = load_model(project / "models/model.skops")
    if task == "multiclass":
        assert signature["output"] == {
            "task": "multiclass",
            "target": "cultivar",
            "classes": ["barbera", "barolo", "grignolino"],
            "scores": "probability of each class of cultivar",
        }
        assert list(pipeline.classes_) == signature["output"]["classes"]
        assert type(pipeline[-1]).__name__ == "LogisticRegression"
        assert sum(metadata["training"]["class_counts"].values()) == metadata["training"]["rows"]
    else:
        assert signature["output"] == {
            "task": "regression",
            "target": "progression",
            "value": "predicted progression",
        }
        assert type(pipeline[-1]).__name__ == "Ridge" and metadata["estimator"] == "ridge"
        assert "class_counts" not in metadata["training"]
        assert metadata["training"]["profile"]["progression"]["kind"] == "numeric"


def test_predict_writes_the_tasks_columns_equal_to_predict_frame(
    task: str, project: Path, expected: tuple[pd.DataFrame, np.ndarray, Any]
) -> None:
    frame, outputs, pipeline = expected
    out = project.parent / "scored.parquet"
    args = ["data/processed/test.parquet", "-o", str(out), "--chunk-size", "10"]
    proc = gitml("predict", *args, cwd=project)
    assert f"scored {len(frame)} of {len(frame)} rows" in proc.stdout
    table = pq.read_table(out)
    if task == "multiclass":
        classes = [str(c) for c in pipeline.classes_]
        assert table.column_names == ["row", "_row", "label", *map(score_column, classes)]
        for k, name in enumerate(classes):
            got = np.asarray(table[score_column(name)].to_pylist())
            np.testing.assert_allclose(got, outputs[:, k], rtol=0, atol=TOLERANCE)
        assert table["label"].to_pylist() == [classes[i] for i in outputs.argmax(axis=1)]
    else:
        assert table.column_names == ["row", "_row", "value"]
        got = np.asarray(table["value"].to_pylist())
        np.testing.assert_allclose(got, outputs, rtol=0, atol=TOLERANCE)
    source_rows = pq.read_table(project / "data/processed/test.parquet")["_row"]
    assert table["_row"].to_pylist() == source_rows.to_pylist()


def _records(frame: pd.DataFrame, features: list[str]) -> list[dict[str, Any]]:
    return [
        {k: (v if isinstance(v, str) else float(v)) for k, v in row.items()}
        for row in frame[features].astype(object).to_dict(orient="records")
    ]


def _answered(task: str, predictions: list[dict[str, Any]], classes: list[str]) -> np.ndarray:
    if task == "regression":
        assert all(set(p) == {"value"} for p in predictions)
        return np.array([p["value"] for p in predictions])
    assert all(set(p) == {"label", "scores"} for p in predictions)
    assert all(list(p["scores"]) == classes for p in predictions)  # signature order
    return np.array([[p["scores"][c] for c in classes] for p in predictions])


def test_serve_answers_the_tasks_form_and_logs_it(
    task: str, project: Path, expected: tuple[pd.DataFrame, np.ndarray, Any]
) -> None:
    """A live server: per-record answers equal to predict_frame through the fast path (small
    requests) and the pipeline (large ones); /v1/model and the OpenAPI document describe the
    task; bad input is a 422 naming the field; the prediction log holds what was answered."""
    import jsonschema

    frame, outputs, pipeline = expected
    params = load_params(project / "params.yaml")
    features = params.data.features
    classes = [str(c) for c in getattr(pipeline, "classes_", [])]
    records = _records(frame, features)
    server = ServerProcess(project)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            model = client.get("/v1/model").json()
            assert model["task"] == task and model["threshold"] is None
            assert model["fast_path"].startswith("on: "), model["fast_path"]
            if task == "multiclass":
                assert model["output"]["scores"].startswith("probability of each class")
            else:
                assert model["output"] == {"value": "predicted progression"}

            small = [
                client.post("/v1/predict", json={"records": records[i : i + 5]}).json()
                for i in range(0, len(records), 5)
            ]
            large = client.post("/v1/predict", json={"records": records})
            assert large.status_code == 200, large.text
            answered_small = np.concatenate(
                [_answered(task, body["predictions"], classes) for body in small]
            )
            answered_large = _answered(task, large.json()["predictions"], classes)
            for answered in (answered_small, answered_large):
                np.testing.assert_allclose(answered, outputs, rtol=0, atol=TOLERANCE)
            if task == "multiclass":
                labels = [p["label"] for p in large.json()["predictions"]]
                assert labels == [classes[i] for i in outputs.argmax(axis=1)]

            doc = client.get("/openapi.json").json()
            response_schema = doc["components"]["schemas"]["PredictResponse"]
            jsonschema.validate(large.json(), response_schema)
            item = response_schema["properties"]["predictions"]["items"]
            assert item["required"] == (["label", "scores"] if task == "multiclass" else ["value"])

            numeric = "proline" if task == "multiclass" else "bmi"
            broken = [records[0], records[1] | {numeric: "lots"}, {"age": 50}]
            bad = client.post("/v1/predict", json={"records": broken})
            assert bad.status_code == 422
            found = {(p["record"], p["field"], p["rule"]) for p in bad.json()["problems"]}
            assert (1, numeric, "type") in found
            assert {(2, f) for f in features if f != "age"} <= {(r, f) for r, f, _ in found}
            if task == "multiclass":
                low = client.post("/v1/predict", json={"records": [records[0] | {numeric: -1}]})
                assert low.status_code == 422 and low.json()["problems"][0]["rule"] == "min"
            else:  # beyond what the model's arithmetic holds: the client's input, never a 500
                huge = client.post("/v1/predict", json={"records": [records[0] | {numeric: 1e308}]})
                assert huge.status_code == 422, huge.text
                assert huge.json()["problems"][0]["field"] in (numeric, "progression")
            metrics = client.get("/metrics").text
            assert "gitml_rows_scored_total" in metrics
            assert "gitml_prediction_score" not in metrics  # a binary probability's histogram
    finally:
        assert server.stop() == 0, server.stderr
    logged = pq.read_table(sorted((project / "logs/predictions").glob("*.parquet"))).to_pandas()
    assert len(logged) == 2 * len(records)  # the 5-row requests, then the large one
    if task == "multiclass":
        assert [c for c in logged.columns if c not in features][-4:] == [
            "label",
            *map(score_column, classes),
        ]
        got = logged[[score_column(c) for c in classes]].to_numpy()[len(records) :]
    else:
        assert logged.columns[-1] == "value" and "score" not in logged.columns
        got = logged["value"].to_numpy()[len(records) :]
    np.testing.assert_allclose(got, outputs, rtol=0, atol=TOLERANCE)
