"""Profile-based distribution shift between the training data of two models."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gitml.data.profile import compare_profiles


def _profile(values: np.ndarray, cats: list[str]) -> dict:
    from gitml.config.compose import compose_params, parse_params
    from gitml.data.profile import profile_frame
    from tests.unit.test_config import CONF

    data = parse_params(compose_params(CONF), source="t").data
    frame = pd.DataFrame({"tenure": values, "contract": cats})
    return profile_frame(frame, data)


def test_profiles_flag_shifted_columns_only() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    cats = list(rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.5, 0.3, 0.2]))
    base = _profile(rng.normal(30, 10, n), cats)
    same = _profile(rng.normal(30, 10, n), cats)
    moved_cats = list(rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.1, 0.3, 0.6]))
    moved = _profile(rng.normal(45, 10, n), moved_cats)
    assert not any(r["shifted"] for r in compare_profiles(base, same))
    flagged = {r["column"] for r in compare_profiles(base, moved) if r["shifted"]}
    assert flagged == {"tenure", "contract"}
