"""Evaluate, card, `gitml report` and `gitml gate` on small multiclass and regression projects.

The models are plain scikit-learn Pipelines fitted here and stored with gitml's own
`save_model`, beside a signature per the task contract; everything after that is the real
thing: the evaluate, importance and card stages, git, and the review CLI.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from omegaconf import OmegaConf
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from gitml.files import sha256_file
from gitml.model.encoding import CategoryEncoder
from gitml.model.persist import save_model
from tests.support import git, gitml, run

ROOT = Path(__file__).resolve().parents[2]
SCAFFOLD = ROOT / "src" / "gitml" / "scaffold" / "conf"
REGIONS = ["east", "north", "south"]
COLOURS = ["blue", "green", "red"]


def _table(task: str, rows: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    region = np.array(REGIONS)[rng.integers(0, 3, rows)]
    if task == "multiclass":
        logits = np.stack([x1, x2, -x1 - x2], axis=1) * 2 + rng.normal(size=(rows, 3))
        target: Any = np.array(COLOURS)[logits.argmax(axis=1)]
    else:
        target = 50 + 3 * x1 + 2 * x2 + (region == "north") * 4 + rng.normal(size=rows)
    return pd.DataFrame({"x1": x1, "x2": x2, "region": region, "y": target})


def _params(task: str) -> dict[str, Any]:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    target = (
        {"type": "category", "categories": COLOURS} if task == "multiclass" else {"type": "float"}
    )
    params["project"] = {"name": "demo", "model_name": "demo-model"}
    params["data"] = {
        "name": "demo",
        "source": "data/external/demo.csv",
        "task": task,
        "target": "y",
        "slices": ["region"],
        "columns": {
            "y": target,
            "x1": {"type": "float"},
            "x2": {"type": "float"},
            "region": {"type": "category", "categories": REGIONS},
        },
    }
    estimator = "logistic_regression" if task == "multiclass" else "ridge"
    params["model"] = {
        "name": estimator,
        "preprocessing": {"numeric": "standard", "categorical": "onehot"},
        "params": {},
    }
    composed = OmegaConf.create(
        {
            "data": params["data"],
            "evaluate": OmegaConf.load(SCAFFOLD / "evaluate" / f"{task}.yaml"),
            "promotion": OmegaConf.load(SCAFFOLD / "promotion" / f"{task}.yaml"),
        }
    )
    resolved = OmegaConf.to_container(composed, resolve=True)
    assert isinstance(resolved, dict)
    params["evaluate"], params["promotion"] = resolved["evaluate"], resolved["promotion"]
    params["card"]["title"] = f"Demo {task} model"
    params["card"]["intended_use"] = "A demonstration of gitml on a synthetic table."
    params["card"]["limitations"] = params["card"]["out_of_scope"] = []
    return params


def _fit(task: str, train: pd.DataFrame, strength: float) -> Pipeline:
    pre = ColumnTransformer(
        [
            ("categorical", CategoryEncoder(categories=[REGIONS], output="onehot"), ["region"]),
            ("numeric", StandardScaler(), ["x1", "x2"]),
        ],
        sparse_threshold=0.0,
        verbose_feature_names_out=False,
    )
    estimator = LogisticRegression(C=strength) if task == "multiclass" else Ridge(alpha=strength)
    pipeline = Pipeline([("preprocess", pre), ("estimator", estimator)])
    return pipeline.fit(train[["x1", "x2", "region"]], train["y"])


def _signature(task: str) -> dict[str, Any]:
    inputs = [
        {"name": "x1", "type": "float", "nullable": False, "observed": {"min": -3, "max": 3}},
        {"name": "x2", "type": "float", "nullable": False, "observed": {"min": -3, "max": 3}},
        {"name": "region", "type": "category", "nullable": False, "categories": REGIONS},
    ]
    if task == "multiclass":
        output = {
            "task": "multiclass",
            "target": "y",
            "classes": COLOURS,
            "scores": "probability of each class of y",
        }
    else:
        output = {"task": "regression", "target": "y", "value": "predicted y"}
    return {"signature_version": 1, "model_name": "demo-model", "inputs": inputs, "output": output}


def _write_model(repo: Path, task: str, train: pd.DataFrame, strength: float) -> None:
    pipeline = _fit(task, train, strength)
    path = repo / "models" / "model.skops"
    payload = save_model(pipeline, path)
    training: dict[str, Any] = {"rows": len(train)}
    if task == "multiclass":
        training["class_counts"] = train["y"].value_counts().sort_index().to_dict()
    metadata = {
        "model_name": "demo-model",
        "estimator": type(pipeline[-1]).__name__,
        "model_file": {"bytes": len(payload), "sha256": sha256_file(path)},
        "hyperparameters": {"strength": strength},
        "training": training,
    }
    (repo / "models" / "metadata.json").write_text(json.dumps(metadata, indent=2))
    (repo / "models" / "signature.json").write_text(json.dumps(_signature(task), indent=2))


def _stages(repo: Path) -> None:
    """The evaluate, importance and card stages, as dvc.yaml runs them."""
    evaluate = [
        "--model", "models/model.skops", "--metadata", "models/metadata.json",
        "--test", "data/processed/test.parquet", "--metrics", "reports/metrics.json",
        "--slices", "reports/slices.json", "--predictions", "reports/predictions.csv",
        "--plots", "reports/plots", "--calibrator", "reports/calibrator.json",
    ]  # fmt: skip
    card = [
        "--metadata", "models/metadata.json", "--signature", "models/signature.json",
        "--metrics", "reports/metrics.json", "--slices", "reports/slices.json",
        "--validation", "reports/validation.json", "--predictions", "reports/predictions.csv",
        "--importance", "reports/importance.json", "--out", "reports/model_card.md",
    ]  # fmt: skip
    importance = [*evaluate[:6], "--out", "reports/importance.json"]
    run(sys.executable, "-m", "gitml.stages.evaluate", *evaluate, cwd=repo)
    run(sys.executable, "-m", "gitml.stages.importance", *importance, cwd=repo)
    run(sys.executable, "-m", "gitml.stages.card", *card, cwd=repo)


def _project(tmp_path: Path, task: str, strength: float) -> tuple[Path, pd.DataFrame]:
    repo = tmp_path / task
    for sub in ("conf", "models", "reports", "data/processed"):
        (repo / sub).mkdir(parents=True)
    (repo / "conf" / "config.yaml").write_text("# composed by hand in this test\n")
    (repo / "params.yaml").write_text(yaml.safe_dump(_params(task), sort_keys=False))
    table = _table(task)
    table.index.name = "_row"
    train, test = table.iloc[:400], table.iloc[400:]
    test.reset_index().to_parquet(repo / "data" / "processed" / "test.parquet", index=False)
    validation = {"rows": 600, "columns": 4, "status": "passed", "errors": 0, "warnings": 0}
    (repo / "reports" / "validation.json").write_text(json.dumps(validation))
    _write_model(repo, task, train, strength)
    _stages(repo)
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "first model", cwd=repo)
    return repo, train


def _new_model(repo: Path, task: str, train: pd.DataFrame, strength: float) -> None:
    git("checkout", "-q", "-b", "pr", cwd=repo)
    _write_model(repo, task, train, strength)
    _stages(repo)
    git("commit", "-qam", "new model", cwd=repo)


def _report(repo: Path, *extra: str) -> str:
    gitml("report", "--base", "main", "--head", "HEAD", "-o", "report.md", *extra, cwd=repo)
    return (repo / "report.md").read_text()


def test_multiclass_evaluate_card_report_and_gate(tmp_path: Path) -> None:
    repo, train = _project(tmp_path, "multiclass", strength=0.002)  # base: over-regularised
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert metrics["task"] == "multiclass" and "threshold" not in metrics
    assert list(metrics["metrics"]) == [
        "accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "log_loss", "roc_auc_ovr"
    ]  # fmt: skip
    assert set(metrics["per_class"]) == set(COLOURS)
    assert sum(metrics["test_set"]["class_counts"].values()) == metrics["test_set"]["rows"] == 200
    header = (repo / "reports" / "predictions.csv").read_text().splitlines()[0]
    assert header == "row_id,actual,predicted,score:blue,score:green,score:red"
    roc = json.loads((repo / "reports" / "plots" / "roc_ovr.json").read_text())
    assert {row["class"] for row in roc} == set(COLOURS)
    slices = json.loads((repo / "reports" / "slices.json").read_text())
    assert set(slices["slices"]["region"]["groups"]["north"]) >= {"rows", "too_small", "f1_macro"}
    card = (repo / "reports" / "model_card.md").read_text()
    assert "| task | multiclass classification (`data.task: multiclass`) |" in card
    assert "probability of each class of y (`blue`, `green`, `red`)" in card
    assert "| class | precision | recall | f1 | support |" in card
    assert "| f1_macro |" in card and "churn" not in card.lower()
    assert "| rank | column | drop in f1_macro | 95 % interval |" in card

    _new_model(repo, "multiclass", train, strength=1.0)  # head: a real fit, clearly better
    report = _report(repo)
    assert "**f1_macro** (multiclass classification; higher is better)" in report
    assert "### Per class" in report and "| group | rows | macro F1 base |" in report
    assert "Confusion matrices" in report
    proc = gitml("gate", "--base", "main", "--head", "HEAD", cwd=repo, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pass  require_all_classes_predicted" in proc.stdout
    assert "pass  max_regression.f1_macro" in proc.stdout


def test_regression_evaluate_card_report_and_gate(tmp_path: Path) -> None:
    repo, train = _project(tmp_path, "regression", strength=1.0)
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert metrics["task"] == "regression" and "threshold" not in metrics
    assert list(metrics["metrics"]) == ["rmse", "mae", "r2", "mape"]
    assert 0.8 < metrics["metrics"]["rmse"] < 1.3  # the noise's standard deviation is 1
    assert metrics["metrics"]["r2"] > 0.9 and "undefined" not in metrics
    predictions = pd.read_csv(repo / "reports" / "predictions.csv")
    assert list(predictions.columns) == ["row_id", "actual", "predicted"]
    rmse = float(np.sqrt(np.mean((predictions["actual"] - predictions["predicted"]) ** 2)))
    assert metrics["metrics"]["rmse"] == round(rmse, 6)
    for name in ("predicted_vs_actual", "residuals"):
        assert len(json.loads((repo / "reports" / "plots" / f"{name}.json").read_text())) == 200
    slices = json.loads((repo / "reports" / "slices.json").read_text())
    assert {"rmse", "mae"} <= set(slices["slices"]["region"]["groups"]["north"])
    card = (repo / "reports" / "model_card.md").read_text()
    assert "| task | regression (`data.task: regression`) |" in card
    assert "- output: `value`: predicted y" in card
    assert "Lower is better: rmse, mae, mape" in card
    assert "class balance" not in card and "churn" not in card.lower()
    # y = 50 + 3 x1 + 2 x2 + 4 (region north) + noise: x1 matters most
    assert "| rank | column | rise in rmse | 95 % interval |" in card and "| 1 | `x1` |" in card

    _new_model(repo, "regression", train, strength=2000.0)  # head: shrunk towards the mean
    report = _report(repo, "--images", "images")
    assert sorted(p.name for p in (repo / "images").iterdir()) == [
        "predicted_vs_actual.png",
        "residuals.png",
    ]  # no confusion matrix without classes
    assert "![residuals](images/residuals.png)" in report
    assert "**rmse** (regression; lower is better)" in report
    assert "| rmse ↓ |" in report and "Residuals:" in report
    assert "Confusion matrices" not in report
    proc = gitml("gate", "--base", "main", "--head", "HEAD", cwd=repo, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL  max_regression.rmse" in proc.stdout
    assert "require_all_classes_predicted" not in proc.stdout
