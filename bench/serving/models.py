"""The models the benchmark serves: the reference project's (binary, Telco churn), and a
multiclass (wine) and a regression (diabetes) one made with `gitml init`, as a user would.

Each comes with its one-row request records (the test split, by signature names; rows with a
missing value left out, since a V2 tensor has no null) and the raw outputs of its pipeline on
the first rows, which every server's answers are checked against before any clock starts.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.env import OUT_DIR, bench_env, progress, run_checked

CHECK_ROWS = 20


@dataclass
class Model:
    """One model under test and what a client needs to call it."""

    key: str  # churn, wine, diabetes
    project: Path
    name: str  # the model's name (V2 path, MLServer's model name)
    task: str  # binary, multiclass, regression
    columns: list[dict[str, Any]]  # signature inputs: name, type
    classes: list[str]  # signature order (classifiers)
    positive_class: str | None
    pipeline_classes: list[str]  # predict_proba's column order (classes_), what peers answer
    records: list[dict[str, Any]] = field(default_factory=list)
    expected: list[list[float]] = field(default_factory=list)  # raw, first CHECK_ROWS rows

    @property
    def path(self) -> Path:
        return self.project / "models" / "model.skops"

    @property
    def features(self) -> list[str]:
        return [c["name"] for c in self.columns]

    @property
    def label(self) -> str:
        return f"{self.key} ({self.task})"


def load_model_under_test(key: str, project: Path) -> Model:
    """The model of `project` (built), its request records and its raw outputs."""
    import pandas as pd

    from gitml.model.persist import load_model

    signature = json.loads((project / "models" / "signature.json").read_text())
    output = signature["output"]
    task = output.get("task", "binary")
    model = Model(
        key=key,
        project=project,
        name=signature["model_name"],
        task=task,
        columns=[{"name": c["name"], "type": c["type"]} for c in signature["inputs"]],
        classes=[str(c) for c in output.get("classes", [])],
        positive_class=output.get("positive_class"),
        pipeline_classes=[],
    )
    frame = pd.read_parquet(project / "data" / "processed" / "test.parquet", columns=model.features)
    frame = frame.dropna().reset_index(drop=True)
    model.records = [
        {c: _plain(v) for c, v in zip(model.features, row, strict=True)}
        for row in frame.itertuples(index=False)
    ]
    pipeline = load_model(model.path)
    model.pipeline_classes = [str(c) for c in getattr(pipeline, "classes_", [])]
    model.expected = raw_outputs(model, pipeline, frame.head(CHECK_ROWS))
    return model


def raw_outputs(model: Model, pipeline: Any, frame: Any) -> list[list[float]]:
    """What gitml serves per row, from the pipeline itself: the positive class's probability
    (binary), each class's in signature order (multiclass), the value (regression)."""
    if model.task == "regression":
        return [[float(v)] for v in pipeline.predict(frame)]
    proba = pipeline.predict_proba(frame)
    order = [str(c) for c in pipeline.classes_]
    if model.task == "binary":
        column = order.index(str(model.positive_class))
        return [[float(p)] for p in proba[:, column]]
    index = [order.index(c) for c in model.classes]
    return [[float(row[i]) for i in index] for row in proba]


def _plain(value: Any) -> Any:
    """A JSON value for one cell: numpy scalars to Python."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# --- the projects made with gitml init ----------------------------------------------------------


def _wine(path: Path) -> str:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame["cultivar"] = frame.pop("target").map({0: "barolo", 1: "grignolino", 2: "barbera"})
    frame.to_csv(path, index=False)
    return "cultivar"


def _diabetes(path: Path) -> str:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame = frame.rename(columns={"target": "progression"})
    frame.to_csv(path, index=False)
    return "progression"


INIT_DATA = {"wine": _wine, "diabetes": _diabetes}


def ensure_init_project(key: str) -> Path:
    """bench/out/projects/KEY, made once with `gitml init` (which runs the pipeline once) from
    scikit-learn's data set; reused while its model file is there."""
    base = OUT_DIR / "projects"
    project = base / key
    if (project / "models" / "model.skops").is_file():
        return project
    progress(f"gitml init {key} (once; about 15 s)")
    if project.exists():
        shutil.rmtree(project)
    base.mkdir(parents=True, exist_ok=True)
    data = base / f"{key}.csv"
    target = INIT_DATA[key](data)
    cmd = [sys.executable, "-m", "gitml", "init", key, "--data", data.name, "--target", target]
    run_checked(cmd, env=bench_env(), cwd=base)
    return project
