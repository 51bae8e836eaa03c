"""What a monitoring run found: the values that monitor.json, monitor.md and monitor.html show.

Plain frozen dataclasses with no behaviour beyond (de)serialisation: the computation modules
fill them, the renderers read them, and `monitor.json` is `asdict` of a `MonitorResult`.
Floats that could not be computed are None in JSON (never NaN).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["numeric", "categorical"]
Role = Literal["feature", "output"]
QualityRule = Literal[
    "missing_column",  # a signature input is absent from the batch
    "invalid_values",  # values that break the column's type (coercion failures)
    "null_rate",  # more missing values than the reference, significantly and by enough
    "out_of_range",  # numbers outside the signature's declared min/max
    "unseen_category",  # categories outside the signature's categories
]

RESULT_VERSION = 1


@dataclass(frozen=True)
class Distribution:
    """Reference against current, as shares per bin: what a drift plot draws."""

    bins: list[str]  # category names, or numeric ranges such as "[18.3, 25.1)"
    reference: list[float]  # shares, summing to 1 over non-null values
    current: list[float]


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift test: a feature, or one of the model's outputs."""

    column: str
    role: Role
    kind: Kind
    test: str  # "ks" (two-sample Kolmogorov-Smirnov) or "chi2" (chi-squared homogeneity)
    statistic: float
    p_value: float  # at the batch's actual size (analytic, or the null by resampling)
    p_adjusted: float  # after the run's correction across all tests (monitor.correction)
    effect_name: str  # "wasserstein" (normed by the reference std) or "jensen_shannon"
    effect: float
    min_effect: float  # the floor the effect had to reach (monitor.min_effect)
    psi: float  # population stability index on reference quantile bins (reported only)
    reference_rows: int  # non-null rows compared
    current_rows: int
    drifted: bool  # p_adjusted < alpha and effect >= min_effect
    unseen: dict[str, int] = field(default_factory=dict)  # categorical: unseen value -> count
    distribution: Distribution | None = None
    # from the reference model's reports/importance.json (None: an output, or no importance)
    importance_rank: int | None = None
    importance: float | None = None
    relied_on: bool = False  # the importance's interval lies above zero


@dataclass(frozen=True)
class QualityFinding:
    """A data-quality check of one column against the model's signature (or the reference)."""

    column: str
    rule: QualityRule
    rows: int  # rows breaking the rule
    rate: float  # rows / current rows
    reference_rate: float | None  # the same rate in the reference, where it has one
    limit: float  # the configured limit (monitor.quality)
    alarm: bool
    message: str  # one sentence naming column, rule and what was found
    examples: list[str] = field(default_factory=list)  # a few offending values, as text


@dataclass(frozen=True)
class DriftReport:
    """Drift and quality of the rows one model version served, against its reference."""

    model_version: str  # "v1.2.0", or "workspace" before any release
    reference: str  # what the reference is, e.g. "churn-classifier@v1.2.0 training split"
    reference_rows: int
    current_rows: int
    columns: list[ColumnDrift]  # drifted columns the model relies on first (`ranking`)
    quality: list[QualityFinding]
    ranking: str = ""  # how the columns are ordered, and why not by importance if not


@dataclass(frozen=True)
class MetricValue:
    """A metric with its interval: realised (bootstrap) or estimated (predictive)."""

    metric: str
    value: float | None
    low: float | None
    high: float | None
    floor: float | None = None  # the promotion policy's floor (minimums), if any
    below_floor: bool = False  # below the floor with the configured confidence


@dataclass(frozen=True)
class PerformanceWindow:
    """Performance of one model version over one time window."""

    model_version: str
    start: str  # ISO 8601 UTC; the whole batch when it has no timestamps
    end: str
    rows: int  # predictions in the window
    labelled: int  # of which have a label
    realised: list[MetricValue]  # from labels; empty without labels
    estimated: list[MetricValue]  # CBPE from calibrated scores (classifiers); else empty
    alarm: bool
    note: str = ""  # e.g. "too few labelled rows (37 < 100) to alarm"


@dataclass(frozen=True)
class MonitorResult:
    """One `gitml monitor` run; `monitor.json` holds `to_json()` of it."""

    created: str  # ISO 8601 UTC time of the run
    task: str  # binary, multiclass or regression
    model_name: str
    current: str  # what was monitored: file, log directory and window, DVC path
    current_rows: int
    alpha: float
    correction: str
    drift: list[DriftReport]
    performance: list[PerformanceWindow]
    alert: bool
    reasons: list[str]  # one line per alarm: column, statistic, effect, adjusted p; or metric
    assumptions: list[str]  # stated in every report (calibrated scores, no concept drift, ...)
    version: int = RESULT_VERSION

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form written to monitor.json: NaN and infinities as None."""
        return _finite(asdict(self))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
