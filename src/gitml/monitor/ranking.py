"""Drift ranked by what the model relies on: the reference model's reports/importance.json.

A drifted column the model relies on (its importance interval above zero) can move the
scores; a drifted column it ignores cannot. So a report leads with the first, by importance,
then the other drifted columns, then the rest, each group in the order it was tested.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

UNRANKED = "Drift is not ranked by importance"

if TYPE_CHECKING:
    from gitml.monitor.result import ColumnDrift, DriftReport
    from gitml.review.importance import Importance


def rank_drift(report: DriftReport, importance: Importance | None, *, note: str) -> DriftReport:
    """`report` with each input column's importance rank and value, ordered as above; without
    `importance` the columns keep their order and `note` says why they are not ranked."""
    if importance is None:
        return replace(report, ranking=f"{UNRANKED}: {note}.")
    columns = [_with_importance(c, importance) for c in report.columns]
    order = sorted(range(len(columns)), key=lambda k: _place(columns[k], k))
    relied = sum(c.relied_on for c in columns)
    text = (
        f"Drifted columns the model relies on come first, by importance ({relied} of "
        f"{len(importance.columns)} inputs relied on: {note})."
    )
    return replace(report, columns=[columns[k] for k in order], ranking=text)


def _with_importance(column: ColumnDrift, importance: Importance) -> ColumnDrift:
    found = importance.column(column.column) if column.role == "feature" else None
    if found is None:
        return column
    return replace(
        column,
        importance_rank=found.rank,
        importance=found.importance,
        relied_on=found.relied_on,
    )


def _place(column: ColumnDrift, index: int) -> tuple[int, float, int]:
    if column.drifted and column.relied_on:
        return 0, -(column.importance or 0.0), index
    return (1 if column.drifted else 2), 0.0, index
