"""A synthetic population for the monitor's calibration: tests and bench/monitor_power.py.

Continuous, skewed, integer and categorical columns (some categories rare), one nullable
column; categorical columns come as pandas Categoricals (their codes are what is drawn).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gitml.config.schema import MonitorParams, Params
from gitml.monitor.alarms import judge
from gitml.monitor.drift import compare
from gitml.monitor.result import DriftReport
from gitml.monitor.sketch import ReferenceProfile, count_batch

PLANS = ["basic", "plus", "pro", "enterprise"]
PLAN_SHARES = [0.5, 0.3, 0.15, 0.05]
REGIONS = [f"r{k:02d}" for k in range(12)]
REGION_SHARES = np.array([30, 20, 15, 10, 8, 6, 4, 3, 2, 1.5, 0.3, 0.2]) / 100

SIGNATURE = {
    "signature_version": 1,
    "model_name": "synthetic",
    "inputs": [
        {"name": "amount", "type": "float", "nullable": False, "min": 0},
        {"name": "load", "type": "float", "nullable": False, "min": 0, "max": 1},
        {"name": "visits", "type": "int", "nullable": False, "min": 0},
        {"name": "tenure", "type": "int", "nullable": False, "min": 0, "max": 120},
        {"name": "balance", "type": "float", "nullable": True},
        {"name": "plan", "type": "category", "nullable": False, "categories": PLANS},
        {"name": "region", "type": "category", "nullable": False, "categories": REGIONS},
        {"name": "flag", "type": "int", "nullable": False, "allowed": [0, 1]},
    ],
    "output": {"task": "regression", "target": "y", "value": "predicted y"},
}
NUMERIC = ["amount", "load", "visits", "tenure", "balance"]
CATEGORICAL = ["plan", "region", "flag"]


def draw(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """`rows` independent rows of the population."""
    balance = rng.normal(1000.0, 300.0, rows)
    balance[rng.random(rows) < 0.02] = np.nan
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3.0, 1.0, rows),  # skewed
            "load": rng.random(rows),  # uniform on [0, 1)
            "visits": rng.poisson(3.0, rows),  # few distinct integers
            "tenure": rng.integers(0, 73, rows),  # many distinct integers
            "balance": balance,
            "plan": pd.Categorical.from_codes(rng.choice(4, rows, p=PLAN_SHARES), PLANS),
            "region": pd.Categorical.from_codes(rng.choice(12, rows, p=REGION_SHARES), REGIONS),
            "flag": (rng.random(rows) < 0.3).astype(np.int64),
        }
    )


def mix(series: pd.Series, category: str, points: float, rng: np.random.Generator) -> pd.Series:
    """Move `points` of a Categorical column's mass to `category`, from the others in
    proportion (what `gitml simulate --mix` does)."""
    codes = series.cat.codes.to_numpy().copy()
    target = list(series.cat.categories).index(category)
    share = (codes == target).mean()
    moved = (codes != target) & (rng.random(len(codes)) < points / (1 - share))
    codes[moved] = target
    return pd.Series(pd.Categorical.from_codes(codes, series.cat.categories), name=series.name)


def telco_split(root: Path) -> tuple[pd.DataFrame, dict, Params]:
    """The reference project's training split, as its split stage makes it from
    data/external (category columns as Categoricals, as `read_table` gives them), and a
    signature of its inputs (no model outputs: the calibration tests the inputs)."""
    from gitml.config.compose import load_params
    from gitml.data.io import read_source
    from gitml.data.split import split_table
    from gitml.data.typing import apply_declared_types

    params = load_params(root / "params.yaml")
    data = params.data
    table = read_source(
        root / data.source,
        fmt=data.format,
        expected=list(data.columns),
        text_columns=data.categorical,
    )
    train, _ = split_table(
        apply_declared_types(table, data), params.split, target=data.target, task=data.task
    )
    frame = train.to_pandas()
    inputs = []
    for name in data.features:
        spec = data.columns[name]
        entry: dict = {"name": name, "type": spec.type, "nullable": spec.nullable}
        if spec.categories is not None:
            entry["categories"] = list(spec.categories)
            frame[name] = frame[name].astype(pd.CategoricalDtype(list(spec.categories)))
        for key in ("allowed", "min", "max"):
            if getattr(spec, key) is not None:
                entry[key] = getattr(spec, key)
        inputs.append(entry)
    signature = {"inputs": inputs, "output": {"task": "regression", "target": data.target}}
    return frame, signature, params


def alarms(profile: ReferenceProfile, batch: pd.DataFrame, params: MonitorParams) -> set[str]:
    """The columns a monitor run over `batch` names as drifted."""
    columns, quality = compare(profile, count_batch(batch, profile), params)
    report = DriftReport("v", "reference", profile.rows, len(batch), columns, quality)
    return {c.column for c in judge([report], params)[0].columns if c.drifted}
