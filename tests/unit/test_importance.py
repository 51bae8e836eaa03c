"""Permutation importance (`gitml.review.permutation`) through real fitted gitml pipelines,
and the model card's section that shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter

from gitml.config.compose import load_params
from gitml.config.schema import DataParams, ModelParams
from gitml.errors import DataError
from gitml.model.build import build_pipeline
from gitml.registry.card import importance_lines
from gitml.review.permutation import permutation_importance

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ["signal", "noise", "kind"]
CLASSES = {"binary": ["no", "yes"], "multiclass": ["red", "green", "blue"]}
MODELS = {"binary": "logistic_regression", "multiclass": "logistic_regression"}


def _frame(task: str, rows: int, seed: int = 0) -> pd.DataFrame:
    """`signal` decides the target; `noise` and `kind` play no part in it."""
    rng = np.random.default_rng(seed)
    signal, noise = rng.normal(size=rows), rng.normal(size=rows)
    kind = pd.Categorical(rng.choice(["a", "b", "c"], rows), categories=["a", "b", "c"])
    blurred = signal + rng.normal(scale=0.3, size=rows)
    if task == "binary":
        target: Any = pd.Categorical(np.where(blurred > 0, "yes", "no"), categories=CLASSES[task])
    elif task == "multiclass":
        labels = np.array(CLASSES[task])[np.digitize(blurred, [-0.5, 0.5])]
        target = pd.Categorical(labels, categories=CLASSES[task])
    else:
        target = 3.0 * blurred + 10
    return pd.DataFrame({"signal": signal, "noise": noise, "kind": kind, "y": target})


def _fitted(task: str, train: pd.DataFrame):
    target = (
        {"type": "float"}
        if task == "regression"
        else {"type": "category", "categories": CLASSES[task]}
    )
    data = DataParams.model_validate(
        {
            "name": "planted",
            "source": "planted.csv",
            "task": task,
            "target": "y",
            "positive_class": "yes" if task == "binary" else None,
            "columns": {
                "signal": {"type": "float"},
                "noise": {"type": "float"},
                "kind": {"type": "category", "categories": ["a", "b", "c"]},
                "y": target,
            },
        }
    )
    name = MODELS.get(task, "ridge")
    raw = {"name": name, "preprocessing": {"numeric": "standard", "categorical": "onehot"}}
    model = TypeAdapter(ModelParams).validate_python({**raw, "params": {}})
    labels = train["y"] if task == "regression" else train["y"].astype(str)
    return build_pipeline(model, data).fit(train[FEATURES], labels)


def _importance(task: str, test: pd.DataFrame, **settings: Any) -> dict[str, Any]:
    pipeline = _fitted(task, _frame(task, 600, seed=1))
    return permutation_importance(
        pipeline,
        test,
        features=FEATURES,
        task=task,  # type: ignore[arg-type]
        target="y",
        positive_class="yes" if task == "binary" else None,
        seed=settings.pop("seed", 42),
        **settings,
    )


def _by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in result["columns"]}


def test_a_planted_signal_ranks_first_and_noise_is_not_relied_on() -> None:
    """Binary: the column that decides the target ranks first with an interval above zero;
    a pure-noise column's interval includes zero. Columns are the inputs, not one-hot ones."""
    result = _importance("binary", _frame("binary", 500, seed=2))
    assert result["metric"] == "roc_auc" and result["higher_is_better"] is True
    assert [c["rank"] for c in result["columns"]] == [1, 2, 3]
    assert sorted(c["name"] for c in result["columns"]) == sorted(FEATURES)  # kind once
    first, columns = result["columns"][0], _by_name(result)
    assert first["name"] == "signal" and first["low"] > 0.1
    assert first["low"] <= first["importance"] <= first["high"]
    noise = columns["noise"]
    assert noise["low"] <= 0 <= noise["high"] and abs(noise["importance"]) < 0.01
    assert result["score"] > 0.9  # the unshuffled roc_auc on the rows used


@pytest.mark.parametrize(("task", "metric"), [("multiclass", "f1_macro"), ("regression", "rmse")])
def test_the_planted_signal_ranks_first_for_every_task(task: str, metric: str) -> None:
    """Multiclass and regression too; rmse is lower-is-better, so its importance is the rise
    of rmse: still > 0 for the column the model relies on."""
    result = _importance(task, _frame(task, 500, seed=2))
    assert result["metric"] == metric and result["higher_is_better"] is (metric != "rmse")
    first = result["columns"][0]
    assert first["name"] == "signal" and first["low"] > 0
    assert _by_name(result)["noise"]["low"] <= 0


def test_same_seed_same_result_whatever_the_chunk_size_and_another_seed_differs() -> None:
    test = _frame("binary", 300, seed=3)
    once = _importance("binary", test)
    assert _importance("binary", test) == once
    assert _importance("binary", test, chunk_size=7) == once  # resamples 7 at a time
    other = _importance("binary", test, seed=43)
    assert other["columns"] != once["columns"] and other["seed"] == 43


def test_above_max_rows_a_stated_seeded_subsample_is_used() -> None:
    test = _frame("binary", 900, seed=4)
    result = _importance("binary", test, max_rows=300)
    assert result["rows"] == {"test": 900, "used": 300, "subsampled": True, "max_rows": 300}
    assert _importance("binary", test, max_rows=300) == result  # the same rows again
    assert _importance("binary", test)["rows"]["subsampled"] is False
    text = "\n".join(importance_lines({"importance_version": 1, **result}, top_k=2))
    assert "among the 300 test rows used (subsampled from 900, seeded;" in text
    assert "| 1 | `signal` |" in text and "| 3 |" not in text  # top_k rows only


def test_an_undefined_primary_metric_is_refused_naming_it() -> None:
    test = _frame("binary", 200, seed=5)
    test["y"] = pd.Categorical(["yes"] * len(test), categories=CLASSES["binary"])
    with pytest.raises(DataError, match="roc_auc is undefined on the 200 test rows used"):
        _importance("binary", test)
    with pytest.raises(DataError, match=r"lack the model's columns \['y'\]"):
        _importance("binary", test.drop(columns="y"))


def test_the_card_says_how_to_read_it_for_a_lower_is_better_metric() -> None:
    result = _importance("regression", _frame("regression", 300, seed=6))
    text = "\n".join(importance_lines(result, top_k=5))
    assert "how much rmse would rise if one input column's values were shuffled" in text
    assert "| rank | column | rise in rmse | 95 % interval |" in text
    assert "Relied on (interval above 0): 1 of 3 input columns." in text
    assert importance_lines(None, top_k=5) == [
        "Not computed: no `reports/importance.json` (stage `importance`)."
    ]


def test_the_reference_params_carry_the_importance_section() -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.importance.repeats == 5 and params.importance.max_rows == 50_000
    assert params.importance.top_k == 5 and params.seed == 42
