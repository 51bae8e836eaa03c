"""What a model relies on, base against head: the columns of reports/importance.json compared.

Pure: parsed files in, an `ImportanceReview` out. A column is relied on when the lower end
of its bootstrap interval is above zero. The head now relies on a column when the two
intervals separate with the head's higher (or the column is new and relied on); it no
longer relies on one when they separate with the base's higher (or the column was dropped
while relied on). Overlapping intervals are no change: the shift could be noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gitml.errors import DataError
from gitml.project import OUTPUTS

IMPORTANCE_VERSION = 1
DEFAULT_TOP_K = 5  # when the head's params.yaml has no `importance.top_k`
Change = Literal["now", "no_longer"]


@dataclass(frozen=True)
class ColumnImportance:
    """One input column's permutation importance and its interval (> 0: relied on)."""

    name: str
    rank: int
    importance: float
    low: float
    high: float

    @property
    def relied_on(self) -> bool:
        return self.low > 0


@dataclass(frozen=True)
class Importance:
    """One revision's reports/importance.json, checked."""

    metric: str
    confidence: float
    rows_used: int
    rows_test: int
    subsampled: bool
    columns: tuple[ColumnImportance, ...]  # by rank

    def column(self, name: str) -> ColumnImportance | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class ImportanceRow:
    """One column, base against head; `change` only when the intervals separate."""

    name: str
    base: ColumnImportance | None
    head: ColumnImportance | None
    change: Change | None
    slice_column: bool

    @property
    def flagged(self) -> bool:
        """The head newly relies on a column that defines the slices fairness is judged on."""
        return self.change == "now" and self.slice_column


@dataclass(frozen=True)
class ImportanceReview:
    """What the report's section and the gate read: both sides, each column's change."""

    base: Importance | None
    head: Importance | None
    rows: list[ImportanceRow]  # head's rank order, then the columns only the base had
    top_k: int
    note: str | None = None  # why there is no before/after comparison, when there is none

    @property
    def now(self) -> list[ImportanceRow]:
        return [r for r in self.rows if r.change == "now"]

    @property
    def no_longer(self) -> list[ImportanceRow]:
        return [r for r in self.rows if r.change == "no_longer"]

    @property
    def flagged(self) -> list[ImportanceRow]:
        return [r for r in self.rows if r.flagged]

    @property
    def shown(self) -> list[ImportanceRow]:
        """The head's top k and every column whose status changed, in the rows' order."""
        return [
            r
            for r in self.rows
            if r.change is not None or (r.head is not None and r.head.rank <= self.top_k)
        ]


def parse_importance(data: Mapping[str, Any] | None, *, where: str) -> Importance | None:
    """reports/importance.json as committed at `where` (None: the revision has none).

    A file that breaks the contract is refused, naming the key, rather than read as "the
    model relies on nothing"."""
    if data is None:
        return None
    path = f"{OUTPUTS['importance']} at {where}"
    version = data.get("importance_version")
    if version != IMPORTANCE_VERSION:
        raise DataError(
            f"{path}: importance_version {version!r}, this gitml reads version "
            f"{IMPORTANCE_VERSION}",
            hint="rerun the importance stage with this gitml: dvc repro",
        )
    rows = data.get("rows") or {}
    columns = data.get("columns")
    if not isinstance(columns, list):
        raise DataError(f"{path}: `columns` must be a list, got {type(columns).__name__}")
    parsed = []
    for k, item in enumerate(columns):
        try:
            parsed.append(
                ColumnImportance(
                    name=str(item["name"]),
                    rank=int(item["rank"]),
                    importance=float(item["importance"]),
                    low=float(item["low"]),
                    high=float(item["high"]),
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(
                f"{path}: columns[{k}] needs name, rank, importance, low and high "
                f"(numbers); found {item!r}"
            ) from err
    try:
        return Importance(
            metric=str(data["metric"]),
            confidence=float((data.get("bootstrap") or {}).get("confidence", 0.95)),
            rows_used=int(rows.get("used", 0)),
            rows_test=int(rows.get("test", 0)),
            subsampled=bool(rows.get("subsampled", False)),
            columns=tuple(sorted(parsed, key=lambda c: c.rank)),
        )
    except KeyError as err:
        raise DataError(f"{path}: no `metric`") from err


def compare_importance(
    base: Importance | None,
    head: Importance | None,
    *,
    slices: Sequence[str] = (),
    top_k: int = DEFAULT_TOP_K,
    base_name: str = "the base",
    head_name: str = "the head",
) -> ImportanceReview:
    """Each column of either side, and whether the head now (or no longer) relies on it.

    `slices` are the head's slice columns: newly relying on one is flagged. Without the
    head's file there is nothing to show; without the base's, or with another metric on
    each side, the head is shown alone and nothing is called a change."""
    sliced = set(slices)
    note: str | None = None
    if head is None:
        note = (
            f"{head_name} has no {OUTPUTS['importance']}: what the model relies on is unknown "
            "(run the pipeline with the importance stage: dvc repro)"
        )
        return ImportanceReview(base, None, [], top_k, note)
    if base is None:
        note = (
            f"{base_name} has no {OUTPUTS['importance']} (a first model, or a base from "
            "before importance was computed): the head is shown alone, no change is called"
        )
    elif base.metric != head.metric:
        note = (
            f"importance is measured in {base.metric} on {base_name} and in {head.metric} on "
            f"{head_name}: the two cannot be compared, so no change is called"
        )
    compared = base if note is None else None
    rows = [
        ImportanceRow(
            c.name,
            compared.column(c.name) if compared else None,
            c,
            _change(compared.column(c.name), c) if compared else None,
            c.name in sliced,
        )
        for c in head.columns
    ]
    if compared is not None:
        rows += [
            ImportanceRow(c.name, c, None, _change(c, None), c.name in sliced)
            for c in compared.columns
            if head.column(c.name) is None
        ]
    return ImportanceReview(base, head, rows, top_k, note)


def _change(base: ColumnImportance | None, head: ColumnImportance | None) -> Change | None:
    """The contract's rule: separate intervals, or a relied-on column that came or went."""
    if head is not None and (base.high < head.low if base else head.relied_on):
        return "now"
    if base is not None and (head.high < base.low if head else base.relied_on):
        return "no_longer"
    return None


def top_k_of(params: Mapping[str, Any] | None) -> int:
    """`importance.top_k` of a revision's params.yaml (as committed), else the default."""
    section = (params or {}).get("importance") or {}
    value = section.get("top_k") if isinstance(section, Mapping) else None
    return value if isinstance(value, int) and value > 0 else DEFAULT_TOP_K


def slice_columns(params: Mapping[str, Any] | None) -> list[str]:
    """The slice columns of a revision's params.yaml: `data.slices` and `evaluate.slices`."""
    found: list[str] = []
    for section in ("data", "evaluate"):
        listed = ((params or {}).get(section) or {}).get("slices") or []
        found += [str(c) for c in listed if isinstance(c, str)]
    return list(dict.fromkeys(found))
