"""The run's alarm rule: p-values corrected across every column test, then a minimum effect.

All tests of one run (every column, feature or output, of every model version's report)
form one family: Holm and Bonferroni hold the chance of any false alarm in the run at
`monitor.alpha`; Benjamini-Hochberg holds the expected share of false alarms among alarms.
A column drifts when its adjusted p-value is below `alpha` and its effect reaches the
floor for its kind, so a huge batch does not alarm on a shift too small to matter.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gitml.config.schema import MonitorParams
    from gitml.monitor.result import DriftReport


def adjust_p_values(p_values: np.ndarray, method: str) -> np.ndarray:
    """Adjusted p-values for `method` (holm, bonferroni or bh), in the input's order."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    if method == "bh":
        from scipy.stats import false_discovery_control

        return np.minimum(false_discovery_control(p, method="bh"), 1.0)
    if method == "holm":
        order = np.argsort(p, kind="stable")
        stepped = np.maximum.accumulate(p[order] * (m - np.arange(m)))
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(stepped, 1.0)
        return adjusted
    raise ValueError(f"unknown correction {method!r} (holm, bonferroni or bh)")


def judge(reports: list[DriftReport], params: MonitorParams) -> list[DriftReport]:
    """The reports with every column's adjusted p-value and drift verdict filled in."""
    p = np.array([c.p_value for r in reports for c in r.columns], dtype=np.float64)
    adjusted = iter(adjust_p_values(p, params.correction).tolist())
    judged = []
    for report in reports:
        columns = []
        for column in report.columns:
            p_adj = next(adjusted)
            floor = (
                params.min_effect.wasserstein
                if column.kind == "numeric"
                else params.min_effect.jensen_shannon
            )
            drifted = p_adj < params.alpha and column.effect >= floor
            columns.append(replace(column, p_adjusted=p_adj, min_effect=floor, drifted=drifted))
        judged.append(replace(report, columns=columns))
    return judged
