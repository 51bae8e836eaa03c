"""Column profiles of a table, and the shift between two profiles (values in, values out).

A profile is small enough to commit (quantiles per numeric column, counts per category), so
any two revisions can be compared for distribution shift through Git alone, without the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from gitml.config.schema import DataParams

QUANTILES = np.linspace(0, 1, 21)
SHIFT_THRESHOLD = 0.1  # normed Wasserstein / Jensen-Shannon distance, as Evidently uses at scale


def profile_frame(frame: pd.DataFrame, data: DataParams) -> dict[str, Any]:
    """Per declared column: quantiles, mean and std (numeric) or category counts, and nulls."""
    profile: dict[str, Any] = {}
    for name, spec in data.columns.items():
        if name not in frame.columns:
            continue
        column = frame[name]
        nulls = int(column.isna().sum())
        if spec.numeric:
            values = pd.to_numeric(column, errors="coerce").dropna().to_numpy(dtype=float)
            if not len(values):
                profile[name] = {"kind": "numeric", "nulls": nulls, "rows": len(column)}
                continue
            profile[name] = {
                "kind": "numeric",
                "rows": len(column),
                "nulls": nulls,
                "mean": round(float(values.mean()), 6),
                "std": round(float(values.std()), 6),
                "quantiles": [round(float(q), 6) for q in np.quantile(values, QUANTILES)],
            }
        else:
            profile[name] = {
                "kind": "category",
                "rows": len(column),
                "nulls": nulls,
                "counts": _category_counts(column),
            }
    return profile


def _category_counts(column: pd.Series) -> dict[str, int]:
    """Rows per category seen, by category text. A Categorical is counted on its codes: no
    string per row, which at millions of rows costs seconds and a copy of the column."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        counts = column.value_counts(dropna=True)
        counts = counts[counts > 0]  # declared categories no row holds are not seen
        found = {str(k): int(v) for k, v in counts.items()}
    else:
        counts = column.astype("string").value_counts(dropna=True)
        found = {str(k): int(v) for k, v in counts.items()}
    return dict(sorted(found.items()))


def compare_profiles(base: dict[str, Any], head: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per column in either profile: the distance between them and whether it shifted.

    Numeric: the Wasserstein-1 distance between the quantile functions, divided by the base
    standard deviation. Categories: the Jensen-Shannon distance (base 2) between frequencies.
    """
    rows: list[dict[str, Any]] = []
    for name in sorted(set(base) | set(head)):
        old, new = base.get(name), head.get(name)
        if old is None or new is None:
            rows.append({"column": name, "change": "added" if old is None else "removed"})
            continue
        if old.get("kind") != new.get("kind"):
            rows.append({"column": name, "change": f"kind {old.get('kind')} -> {new.get('kind')}"})
            continue
        if old["kind"] == "numeric":
            distance, statistic = _numeric_distance(old, new), "normed Wasserstein"
        else:
            distance, statistic = _category_distance(old, new), "Jensen-Shannon"
        rows.append(
            {
                "column": name,
                "statistic": statistic,
                "distance": None if distance is None else round(distance, 4),
                "shifted": distance is not None and distance > SHIFT_THRESHOLD,
            }
        )
    return rows


def _numeric_distance(old: dict[str, Any], new: dict[str, Any]) -> float | None:
    if "quantiles" not in old or "quantiles" not in new:
        return None
    gap = float(np.mean(np.abs(np.subtract(old["quantiles"], new["quantiles"]))))
    scale = old.get("std") or 0.0
    return gap / scale if scale > 0 else (0.0 if gap == 0 else float("inf"))


def _category_distance(old: dict[str, Any], new: dict[str, Any]) -> float | None:
    from scipy.spatial.distance import jensenshannon

    keys = sorted(set(old["counts"]) | set(new["counts"]))
    p = np.array([old["counts"].get(k, 0) for k in keys], dtype=float)
    q = np.array([new["counts"].get(k, 0) for k in keys], dtype=float)
    if not p.sum() or not q.sum():
        return None
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2))
