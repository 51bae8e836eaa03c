"""The default evaluate and promotion configs of the new tasks, and the gate on their metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from gitml.config.schema import Params, PromotionParams
from gitml.errors import ConfigError
from gitml.review.compare import Comparison, MetricRow
from gitml.review.contract import SignatureDiff
from gitml.review.gate import BLOCKED, PROMOTE, decide
from gitml.review.revision import Revision
from gitml.tasks import METRICS, PRIMARY_METRIC

ROOT = Path(__file__).resolve().parents[2]
SCAFFOLD = ROOT / "src" / "gitml" / "scaffold" / "conf"
TARGETS = {
    "multiclass": {"type": "category", "categories": ["a", "b", "c"]},
    "regression": {"type": "float"},
}


def _params(task: str, *, evaluate: Path, promotion: Path) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"] = {
        "name": "demo",
        "source": "demo.csv",
        "task": task,
        "target": "y",
        "slices": ["region"],
        "columns": {"y": TARGETS[task], "region": {"type": "category", "categories": ["n", "s"]}},
    }
    raw["model"] = {
        "name": "logistic_regression" if task == "multiclass" else "ridge",
        "preprocessing": {"numeric": "standard", "categorical": "onehot"},
        "params": {},
    }
    composed = OmegaConf.create(
        {
            "data": raw["data"],
            "evaluate": OmegaConf.load(evaluate),
            "promotion": OmegaConf.load(promotion),
        }
    )
    resolved = OmegaConf.to_container(composed, resolve=True)
    assert isinstance(resolved, dict)
    raw["evaluate"], raw["promotion"] = resolved["evaluate"], resolved["promotion"]
    return raw


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_scaffold_defaults_compose_and_validate_with_their_task(task: str) -> None:
    raw = _params(
        task,
        evaluate=SCAFFOLD / "evaluate" / f"{task}.yaml",
        promotion=SCAFFOLD / "promotion" / f"{task}.yaml",
    )
    params = Params.model_validate(raw)
    assert list(params.evaluate.metrics) == list(METRICS[task])
    assert params.evaluate.slices == ["region"]
    promotion = params.promotion
    assert promotion.minimums  # the first model is gated too
    assert PRIMARY_METRIC[task] in promotion.max_regression
    assert promotion.slices.metrics and promotion.slices.max_regression is not None
    assert promotion.require_all_classes_predicted is (task == "multiclass")


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_the_binary_policy_is_refused_for_another_task(task: str) -> None:
    from gitml.config.compose import parse_params

    raw = _params(
        task,
        evaluate=SCAFFOLD / "evaluate" / f"{task}.yaml",
        promotion=ROOT / "conf" / "promotion" / "default.yaml",
    )
    with pytest.raises(ConfigError, match=r"promotion\.minimums names metrics of another task"):
        parse_params(yaml.safe_dump(raw), source="params.yaml")


def _regression_revision(label: str) -> Revision:
    predictions = pd.DataFrame({"row_id": [0, 1], "actual": ["1.0", "2.0"], "predicted": [1, 2]})
    signature = {"inputs": [], "output": {"task": "regression", "target": "y"}}
    return Revision(
        label, None, {"task": "regression"}, None, predictions, None, signature, {}, None, None, {}
    )


def _rmse(base: float, head: float) -> Comparison:
    row = MetricRow("rmse", False, base, head, head - base, head - base - 0.1, head - base + 0.1)
    return Comparison(
        base=_regression_revision("main"),
        head=_regression_revision("pr"),
        status="comparable",
        reason=None,
        metrics=[row],
        slices={},
        params_changed=[],
        data_changed=[],
        signature=SignatureDiff(),
        model_changed=True,
    )


POLICY = PromotionParams.model_validate(
    {
        "minimums": {"rmse": 12.0},
        "max_regression": {"rmse": {"relative": 0.05}},
        "ci_lower_bound": {"rmse": -1.0},
    }
)


def test_a_regression_head_with_higher_rmse_fails_and_lower_passes() -> None:
    worse = decide(_rmse(10.0, 10.8), POLICY)  # 8 % more error; 5 % of 10 allowed
    assert worse.status == BLOCKED
    assert {r.rule for r in worse.failed} == {"max_regression.rmse"}
    assert "rmse 10.0000 -> 10.8000: worse by 0.8000 (allowed 0.5000)" in worse.failed[0].detail
    better = decide(_rmse(10.0, 9.0), POLICY)
    assert better.status == PROMOTE, better.failed
    # lower is better: the floor is a ceiling, and the interval of the gain is base - head
    floor = next(r for r in better.rules if r.rule == "minimums.rmse")
    assert floor.detail == "rmse 9.0000 must be <= 12"
    gain = next(r for r in better.rules if r.rule == "ci_lower_bound.rmse")
    assert "lower end of the interval of the gain is +0.9000" in gain.detail
    # a regression model has no classes: the classification rule does not apply
    assert "require_all_classes_predicted" not in {r.rule for r in better.rules}


def test_a_changed_task_breaks_the_contract_and_an_explicit_binary_does_not() -> None:
    from gitml.review.contract import diff_signatures

    old = {
        "inputs": [],
        "output": {"target": "y", "classes": ["No", "Yes"], "positive_class": "Yes"},
    }
    explicit = {"inputs": [], "output": {**old["output"], "task": "binary"}}
    assert diff_signatures(old, explicit).breaking == []  # files without a task are binary
    regression = {"inputs": [], "output": {"task": "regression", "target": "y", "value": "y"}}
    breaking = diff_signatures(old, regression).breaking
    assert any("task changed binary -> regression" in reason for reason in breaking), breaking


def test_evaluate_writes_regression_outputs_and_says_why_mape_is_null() -> None:
    from gitml.evaluate.evaluation import evaluate_output

    raw = _params(
        "regression",
        evaluate=SCAFFOLD / "evaluate" / "regression.yaml",
        promotion=SCAFFOLD / "promotion" / "regression.yaml",
    )
    params = Params.model_validate(raw)
    test = pd.DataFrame(
        {"y": [0.0, 10.0, 20.0, 30.0], "region": pd.Categorical(["n", "n", "s", "s"])},
        index=pd.Index([7, 8, 9, 10], name="_row"),
    )
    result = evaluate_output(test, np.array([1.0, 10.0, 22.0, 30.0]), params)
    assert result.metrics["task"] == "regression" and "threshold" not in result.metrics
    assert result.metrics["metrics"]["mape"] is None
    assert result.metrics["undefined"]["mape"].startswith("undefined: 1 of 4 actual values are ~0")
    assert result.metrics["metrics"]["rmse"] == round(np.sqrt(5 / 4), 6)
    assert list(result.predictions.columns) == ["row_id", "actual", "predicted"]
    assert result.predictions["row_id"].tolist() == [7, 8, 9, 10]
    assert set(result.plots) == {"predicted_vs_actual", "residuals"}


def test_a_base_of_another_task_is_not_comparable() -> None:
    from gitml.review.compare import compare

    head = _regression_revision("pr")
    head = Revision(
        "pr", None, {"task": "regression", "metrics": {"rmse": 1.0}}, None,
        head.predictions, None, head.signature, {}, None, None, {},
    )  # fmt: skip
    binary = pd.DataFrame({"row_id": [0, 1], "actual": ["No", "Yes"], "score": [0.2, 0.9]})
    base = Revision(
        "main", None, {"metrics": {"roc_auc": 0.8}}, None, binary, None, None, {}, None, None, {}
    )
    comparison = compare(base, head, resamples=100, confidence=0.95, seed=0)
    assert comparison.status == "not_comparable"
    assert "is a binary model and the head a regression model" in (comparison.reason or "")
    assert [(r.name, r.higher_is_better, r.head) for r in comparison.metrics] == [
        ("rmse", False, 1.0)
    ]
