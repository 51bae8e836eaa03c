"""The model quality floor: the committed model is not worse than the first one by more than
a margin. `gitml init` wrote the floor (tests/project/floor.json) from the first run's
metrics; raise it as the model improves."""

from __future__ import annotations

import json
from pathlib import Path

from gitml.config.compose import load_params
from gitml.tasks import PRIMARY_METRIC, higher_is_better

ROOT = Path(__file__).resolve().parents[2]
FLOOR = Path(__file__).with_name("floor.json")


def test_the_model_keeps_its_quality_floor() -> None:
    floor = json.loads(FLOOR.read_text(encoding="utf-8"))
    metrics = json.loads((ROOT / "reports/metrics.json").read_text(encoding="utf-8"))
    task = load_params(ROOT / "params.yaml").data.task
    metric = floor["metric"]
    assert metric == PRIMARY_METRIC[task], f"{FLOOR.name} is for {metric}, not this task's"
    value = metrics["metrics"][metric]
    assert value is not None, f"reports/metrics.json has no {metric}"
    if higher_is_better(metric):
        assert value >= floor["floor"], f"{metric} {value} fell below the floor {floor['floor']}"
    else:
        assert value <= floor["floor"], f"{metric} {value} rose above the ceiling {floor['floor']}"
