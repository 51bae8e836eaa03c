"""`gitml init` for multiclass (wine) and regression (diabetes): init, the first run, and the
project's own tests, end to end on scikit-learn's data sets.

Each project is made once per run (`build_once`); what a team does next in it (review,
release and serve; monitor) runs in private copies, as separate tests that share the init.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from gitml.tasks import METRICS, PLOTS, PRIMARY_METRIC
from tests.integration.serving import ServerProcess
from tests.support import build_once, copy_repo, dvc, git, gitml, run


def _wine(path: Path) -> None:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame["cultivar"] = frame.pop("target").map({0: "barolo", 1: "grignolino", 2: "barbera"})
    frame.to_csv(path, index=False)


def _diabetes(path: Path) -> None:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame = frame.rename(columns={"target": "progression", "s1": "total cholesterol (tc)"})
    frame.to_csv(path, index=False)


def _init_wine(base: Path) -> None:
    _wine(base / "wine.csv")
    proc = gitml("init", "wine", "--data", "wine.csv", "--target", "cultivar", cwd=base)
    (base / "init.log").write_text(proc.stdout)


def _init_diabetes(base: Path) -> None:
    _diabetes(base / "diabetes.csv")
    proc = gitml("init", "diabetes", "--data", "diabetes.csv", "--target", "progression", cwd=base)
    (base / "init.log").write_text(proc.stdout)


@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`gitml init wine` on the wine data, once per run. Read-only: copy it to use it."""
    return build_once(tmp_path_factory, "init-wine", _init_wine) / "wine"


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`gitml init diabetes` on the diabetes data, once per run. Read-only: copy it."""
    return build_once(tmp_path_factory, "init-diabetes", _init_diabetes) / "diabetes"


def _project_tests(project: Path) -> str:
    return run(
        sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests", cwd=project
    ).stdout


def _review_release_and_serve(project: Path, name: str, target: str, primary: str) -> dict:
    """What a team does next in a generated project: propose another model in a branch and
    review it against main (the report and its verdict), release main's model (pushed to the
    project's DVC remote), then serve that release and score rows of the data by their
    original names. Returns the first served record."""
    git("config", "user.name", "gitml test", cwd=project)
    git("config", "user.email", "test@gitml.invalid", cwd=project)
    git("checkout", "-q", "-b", "forest", cwd=project)
    config = project / "conf/config.yaml"  # the proposal is a reviewed change to conf/
    text = config.read_text()
    default = "  - model: ridge\n" if primary == "rmse" else "  - model: logistic_regression\n"
    assert default in text
    config.write_text(text.replace(default, "  - model: random_forest\n"))
    gitml("params", cwd=project)
    dvc("repro", cwd=project)
    git("add", "-A", cwd=project)
    git("commit", "-qm", "propose a random forest", cwd=project)
    gitml("report", "--base", "main", "--out", "report.md", cwd=project)
    report = (project / "report.md").read_text()  # ignored by the project's .gitignore
    assert primary in report and "random_forest" in report
    # a verdict under the base's policy (`gitml gate` on each task: test_task_review.py)
    assert report.splitlines()[0].endswith(("promote", "blocked")), report[:200]
    git("checkout", "-q", "main", cwd=project)
    dvc("checkout", "-q", cwd=project)
    gitml("release", cwd=project)
    assert f"{name}@v1.0.0" in git("tag", cwd=project).stdout
    models = gitml("models", cwd=project).stdout
    assert primary in models and "v1.0.0" in models

    source = next((project / "data/external").glob("*.csv"))  # the project's copy of the data
    frame = pd.read_csv(source).drop(columns=[target])
    records = json.loads(frame.head(3).to_json(orient="records"))
    server = ServerProcess(project, "--ref", f"{name}@v1.0.0")
    try:
        server.wait_ready()
        info = httpx.get(f"{server.url}/v1/model").json()
        assert info["task"] == ("regression" if primary == "rmse" else "multiclass")
        response = httpx.post(f"{server.url}/v1/predict", json={"records": records})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert len(predictions) == 3
        broken = httpx.post(f"{server.url}/v1/predict", json={"records": [{}]})
        assert broken.status_code == 422
    finally:
        server.stop()
    return predictions[0]


def _monitor(project: Path, column: str, task: str) -> None:
    """`gitml monitor` in the generated project: an unshifted simulated batch (continuous
    columns jittered, few-valued ones kept) is quiet, with realised performance from its
    labels (and an estimate for a classifier); a scaled column alerts and is named."""
    out = project.parent / "monitor"
    batch, labels = out / "batch.csv", out / "labels.csv"
    out.mkdir()
    gitml("simulate", "-o", str(batch), "--labels", str(labels), "--rows", "600", cwd=project)
    quiet = gitml(
        "monitor", "--current", str(batch), "--labels", str(labels), "--out", str(out / "q"),
        "--no-history", cwd=project, check=False,
    )  # fmt: skip
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    result = json.loads((out / "q" / "monitor.json").read_text())
    assert result["task"] == task and result["performance"]
    window = result["performance"][0]
    assert window["realised"] and bool(window["estimated"]) == (task != "regression")
    gitml(
        "simulate", "-o", str(out / "shifted.csv"), "--rows", "600", "--scale", f"{column}=1.3",
        cwd=project,
    )  # fmt: skip
    shifted = gitml(
        "monitor", "--current", str(out / "shifted.csv"), "--out", str(out / "s"),
        "--no-history", cwd=project, check=False,
    )  # fmt: skip
    assert shifted.returncode == 1, shifted.stdout + shifted.stderr
    # every task's project ranks drift by its model's reports/importance.json
    ranked = rf"^  {re.escape(column)} \(importance rank \d+(, relied on)?\): ks "
    assert re.search(ranked, shifted.stdout, re.M), shifted.stdout


@pytest.mark.slow
def test_init_a_multiclass_project_from_wine(wine: Path, tmp_path: Path) -> None:
    stdout = (wine.parent / "init.log").read_text()
    assert "task: multiclass (3 classes: barbera, barolo, grignolino)" in stdout
    assert "model wine-classifier (multiclass)" in stdout
    assert git("status", "--porcelain", cwd=wine).stdout == ""
    project = copy_repo(wine, tmp_path / "wine")  # the runs below write caches
    data = (project / "conf/data/wine.yaml").read_text()
    assert "task: multiclass\n" in data and "positive_class" not in data
    assert "model: logistic_regression" in (project / "conf/config.yaml").read_text()
    dvc_yaml = (project / "dvc.yaml").read_text()
    assert "data.positive_class" not in dvc_yaml and "evaluate.threshold" not in dvc_yaml
    assert all(f"reports/plots/{name}" in dvc_yaml for name in PLOTS["multiclass"])
    assert "x_label: actual cultivar" in dvc_yaml and "multiclass-classification" in dvc_yaml
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["task"] == "multiclass"
    assert set(metrics["metrics"]) == set(METRICS["multiclass"])
    calibrator = json.loads((project / "reports/calibrator.json").read_text())
    assert calibrator["classes"] == ["barbera", "barolo", "grignolino"]
    assert set(calibrator["curves"]) == set(calibrator["classes"])
    floor = json.loads((project / "tests/project/floor.json").read_text())
    assert floor["metric"] == PRIMARY_METRIC["multiclass"] == "f1_macro"
    # wine has no slice candidates: no slice limits that could never be judged (they would
    # block every release)
    assert "  max_gap:" not in (project / "conf/promotion/default.yaml").read_text()
    _check_importance(project, "f1_macro")
    assert "Data and pipelines are up to date." in dvc("repro", cwd=project).stdout
    assert "3 passed" in _project_tests(project)


def _check_importance(project: Path, metric: str) -> None:
    """The first run's importance stage: every input column, the task's primary metric, and
    the card's section on what the model relies on."""
    assert "\n  importance:\n" in (project / "dvc.yaml").read_text()
    importance = json.loads((project / "reports/importance.json").read_text())
    signature = json.loads((project / "models/signature.json").read_text())
    assert importance["metric"] == metric and importance["columns"][0]["rank"] == 1
    names = sorted(c["name"] for c in importance["columns"])
    assert names == sorted(i["name"] for i in signature["inputs"])
    card = (project / "reports/model_card.md").read_text()
    assert "## What the model relies on" in card
    assert f"| 1 | `{importance['columns'][0]['name']}` |" in card


@pytest.mark.slow
def test_init_a_regression_project_from_diabetes(diabetes: Path, tmp_path: Path) -> None:
    stdout = (diabetes.parent / "init.log").read_text()
    assert "task: regression (numeric" in stdout
    assert "model diabetes-regressor (regression)" in stdout
    assert git("status", "--porcelain", cwd=diabetes).stdout == ""
    project = copy_repo(diabetes, tmp_path / "diabetes")  # the run below writes caches
    data = (project / "conf/data/diabetes.yaml").read_text()
    assert "task: regression\n" in data and "positive_class" not in data
    assert "model: ridge" in (project / "conf/config.yaml").read_text()
    assert sorted(p.name for p in (project / "conf/model").iterdir()) == [
        "hist_gradient_boosting.yaml",
        "random_forest.yaml",
        "ridge.yaml",
    ]
    dvc_yaml = (project / "dvc.yaml").read_text()
    assert all(f"reports/plots/{name}" in dvc_yaml for name in PLOTS["regression"])
    assert "y_label: predicted progression" in dvc_yaml
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["task"] == "regression" and "threshold" not in metrics
    calibrator = json.loads((project / "reports/calibrator.json").read_text())
    assert calibrator["method"] is None and "regression" in calibrator["note"]
    floor = json.loads((project / "tests/project/floor.json").read_text())
    assert floor["metric"] == "rmse" and floor["floor"] > floor["first_run"]  # a ceiling
    _check_importance(project, "rmse")
    assert "3 passed" in _project_tests(project)


@pytest.mark.slow
def test_a_wine_project_is_reviewed_released_and_served(wine: Path, tmp_path: Path) -> None:
    project = copy_repo(wine, tmp_path / "wine")
    record = _review_release_and_serve(project, "wine-classifier", "cultivar", "f1_macro")
    classes = ["barbera", "barolo", "grignolino"]
    assert record["label"] in classes and sorted(record["scores"]) == classes
    assert abs(sum(record["scores"].values()) - 1) < 1e-9


@pytest.mark.slow
def test_a_diabetes_project_is_reviewed_released_and_served(diabetes: Path, tmp_path: Path) -> None:
    project = copy_repo(diabetes, tmp_path / "diabetes")
    record = _review_release_and_serve(project, "diabetes-regressor", "progression", "rmse")
    assert set(record) == {"value"} and 0 < record["value"] < 400


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "column", "task"),
    [("wine", "alcohol", "multiclass"), ("diabetes", "bmi", "regression")],
    ids=["wine", "diabetes"],
)
def test_a_generated_project_monitors_a_batch(
    preset: str, column: str, task: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    built: Path = request.getfixturevalue(preset)
    _monitor(copy_repo(built, tmp_path / preset), column, task)


@pytest.mark.slow
def test_a_few_integer_values_can_be_read_as_regression(tmp_path: Path) -> None:
    """A numeric target with few values reads as classes; --task regression overrides."""
    _wine(tmp_path / "wine.csv")
    frame = pd.read_csv(tmp_path / "wine.csv")
    frame["level"] = frame.pop("proline") // 200  # 8 integer levels: multiclass by default
    frame.drop(columns="cultivar").to_csv(tmp_path / "levels.csv", index=False)
    proc = gitml(
        "init",
        "levels",
        "--data",
        "levels.csv",
        "--target",
        "level",
        "--task",
        "regression",
        cwd=tmp_path,
    )
    assert "task: regression (numeric, 8 distinct values" in proc.stdout
    data = (tmp_path / "levels/conf/data/levels.yaml").read_text()
    assert "task: regression\n" in data and "level: {type: int, min: 0, max: 9}" in data
