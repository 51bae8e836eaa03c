"""Realised performance from late labels, per model version and time window, against floors.

Each window gets the task's headline metrics (and every metric with a floor) on its labelled
rows, with percentile bootstrap intervals (`gitml.review.bootstrap`, the metric code of
`gitml.evaluate.metrics`), beside the estimate from calibrated scores (`monitor.estimate`).
A window alarms only with enough labelled rows and a metric below its promotion floor with
the configured confidence (one-sided): noise in a small window never alarms.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from gitml.config.schema import MonitorParams
from gitml.errors import ConfigError
from gitml.evaluate.evaluation import multiclass_outputs
from gitml.evaluate.metrics import (
    TaskOutputs,
    compute_metrics,
    compute_task_metrics,
    mape_undefined,
)
from gitml.monitor.estimate import ESTIMATED, estimate_metrics, output_column, subset_rows
from gitml.monitor.result import MetricValue, PerformanceWindow
from gitml.review.bootstrap import bootstrap_intervals, bootstrap_output_intervals
from gitml.tasks import HEADLINE, METRICS, Task, higher_is_better, score_column

# labelled rows of a window resampled for its intervals; beyond, a subset's spread is scaled
BOOTSTRAP_ROWS = 50_000
NO_TIMESTAMP = ""  # start/end of the window of rows without timestamps, in a batch without any


def performance_windows(
    scored: pd.DataFrame,
    *,
    task: Task,
    classes: Sequence[str],
    positive_class: str | None,
    threshold: float,
    floors: dict[str, float],
    calibrator: dict[str, Any] | None,
    params: MonitorParams,
) -> list[PerformanceWindow]:
    """One `PerformanceWindow` per model version and `params.performance.window` of
    `scored`'s timestamps (rows without one form one window spanning the batch), in version
    and time order. `floors` are the promotion policy's minimums (a maximum for a metric
    where lower is better); `calibrator` None: no estimate."""
    names = realised_metrics(task, floors)
    out = []
    for version, start, end, index in _windows(scored, params.performance.window):
        rows = scored.iloc[index]  # one window's rows at a time: memory of the largest window
        estimated = [
            _with_floor(m, floors)
            for m in estimate_metrics(
                rows,
                calibrator,
                task=task,
                classes=classes,
                positive_class=positive_class,
                threshold=threshold,
                params=params,
            )
        ]
        out.append(
            _window(
                rows,
                version=version,
                start=start,
                end=end,
                task=task,
                classes=classes,
                positive_class=positive_class,
                threshold=threshold,
                names=names,
                floors=floors,
                estimated=estimated,
                calibrated=calibrator is not None,
                params=params,
            )
        )
    return out


def realised_metrics(task: Task, floors: dict[str, float]) -> list[str]:
    """What a window reports from labels: headline, estimated and floored metrics, in the
    task's display order."""
    wanted = {*HEADLINE[task], *ESTIMATED[task], *floors}
    return [m for m in METRICS[task] if m in wanted]


def _windows(scored: pd.DataFrame, window: str) -> list[tuple[str, str, str, np.ndarray]]:
    """(model version, start, end, row positions) of each non-empty window, in order."""
    try:
        offset = pd.tseries.frequencies.to_offset(window)
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"monitor.performance.window: {window!r} is not a pandas offset alias "
            "(e.g. 1D, 6h, 7D, 1W, MS)"
        ) from err
    if "timestamp" in scored.columns:
        stamps = pd.to_datetime(scored["timestamp"], utc=True)
    else:
        stamps = pd.Series(pd.NaT, index=scored.index, dtype="datetime64[ns, UTC]")
    # a window's end is worked out from its start, once per window (not a column of rows)
    if isinstance(offset, pd.offsets.Tick):
        starts = stamps.dt.floor(offset)

        def end_of(start: pd.Timestamp) -> pd.Timestamp:
            return start + offset

    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecated aliases still work
            starts = (
                stamps.dt.tz_convert(None).dt.to_period(offset).dt.start_time.dt.tz_localize("UTC")
            )

        def end_of(start: pd.Timestamp) -> pd.Timestamp:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                period = pd.Period(start.tz_convert(None), freq=offset)
            return (period + 1).start_time.tz_localize("UTC")

    if "model_version" in scored.columns:
        # categories, not one string object per row (a log of millions of rows)
        versions = scored["model_version"].astype("category")
        versions = versions.cat.rename_categories([str(c) for c in versions.cat.categories])
        if versions.isna().any():
            versions = versions.cat.add_categories("unknown").fillna("unknown")
    else:
        versions = pd.Series("unknown", index=scored.index)
    first_seen, last_seen = stamps.min(), stamps.max()  # NaT when no row has a time
    whole = (
        (_iso(first_seen), _iso(last_seen))
        if not pd.isna(first_seen)
        else (NO_TIMESTAMP, NO_TIMESTAMP)
    )
    del stamps
    # grouped by numpy on (version code, window start as int64): a few arrays of row size,
    # where pandas' groupby over a log of millions of rows held several times that
    categories = versions.astype("category").cat
    codes, names = categories.codes.to_numpy(), categories.categories
    start_ns = starts.array.asi8  # nanoseconds since the epoch; NaT: the minimum int64
    out = []
    for code, version in enumerate(names):
        positions = np.flatnonzero(codes == code)
        if not len(positions):
            continue
        # hashed, not sorted: np.unique would sort every row (several copies of the column)
        inverse, first = pd.factorize(start_ns[positions], sort=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(first)))])
        del inverse
        for i in range(len(first)):
            rows = positions[order[bounds[i] : bounds[i + 1]]]
            start = starts.iloc[rows[0]]
            if pd.isna(start):  # rows without timestamps: after the timed windows
                out.append(((str(version), 1, ""), (str(version), *whole, rows)))
            else:
                end = end_of(start)
                out.append(
                    ((str(version), 0, _iso(start)), (str(version), _iso(start), _iso(end), rows))
                )
    return [window for _, window in sorted(out, key=lambda item: item[0])]


def _iso(stamp: Any) -> str:
    return pd.Timestamp(stamp).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _window(
    rows: pd.DataFrame,
    *,
    version: str,
    start: str,
    end: str,
    task: Task,
    classes: Sequence[str],
    positive_class: str | None,
    threshold: float,
    names: list[str],
    floors: dict[str, float],
    estimated: list[MetricValue],
    calibrated: bool,
    params: MonitorParams,
) -> PerformanceWindow:
    perf = params.performance
    truth, notes = _labelled_truth(rows, task, classes)
    labelled = int(truth.notna().sum())
    realised: list[MetricValue] = []
    bounds: dict[str, tuple[float | None, float | None]] = {}
    if labelled:
        subset = rows[truth.notna().to_numpy()]
        realised, bounds = _realised(
            subset,
            truth[truth.notna()],
            task=task,
            classes=classes,
            positive_class=positive_class,
            threshold=threshold,
            names=names,
            floors=floors,
            params=params,
        )
    enough = labelled >= perf.min_labelled
    alarm = enough and any(m.below_floor for m in realised)
    if not labelled:
        notes.insert(0, "no labels yet")
    elif not enough:
        notes.insert(0, f"too few labelled rows ({labelled} < {perf.min_labelled}) to alarm")
    notes += _floor_notes(realised, bounds, enough, perf.confidence)
    if enough:
        notes += _outside_notes(realised, estimated)
    if task != "regression" and not calibrated:
        notes.append("no calibrator for this model (reports/calibrator.json): no estimate")
    return PerformanceWindow(
        model_version=version,
        start=start,
        end=end,
        rows=len(rows),
        labelled=labelled,
        realised=realised,
        estimated=estimated,
        alarm=alarm,
        note="; ".join(notes),
    )


def _labelled_truth(
    rows: pd.DataFrame, task: Task, classes: Sequence[str]
) -> tuple[pd.Series, list[str]]:
    """Each row's usable truth (missing where not labelled) and notes on labels left out."""
    if "truth" not in rows.columns:
        return pd.Series(pd.NA, index=rows.index, dtype="object"), []
    raw = rows["truth"]
    if task == "regression":
        values = pd.to_numeric(raw, errors="coerce").astype(float)
        return values.where(np.isfinite(values)), []
    text = raw.astype("string").str.strip()
    text = text.where(text != "")
    foreign = text.notna() & ~text.isin([str(c) for c in classes])
    notes = []
    if foreign.any():
        first = text[foreign].iloc[0]
        notes.append(
            f"{int(foreign.sum())} labels name no class of the model (first: {first!r}); left out"
        )
    return text.where(~foreign).astype(object), notes


def _realised(
    rows: pd.DataFrame,
    truth: pd.Series,
    *,
    task: Task,
    classes: Sequence[str],
    positive_class: str | None,
    threshold: float,
    names: list[str],
    floors: dict[str, float],
    params: MonitorParams,
) -> tuple[list[MetricValue], dict[str, tuple[float | None, float | None]]]:
    """Each metric on the labelled rows, with its bootstrap interval at the confidence, and
    whether it is below its floor with that confidence; and the one-sided bounds of the
    floored metrics (lower, upper) that decided it."""
    perf = params.performance
    floored = [m for m in names if m in floors]
    # one-sided bounds at c are the ends of the two-sided interval at 2c - 1
    levels = {
        "two_sided": (names, perf.confidence),
        "one_sided": (floored, 2 * perf.confidence - 1),
    }
    if task == "binary":
        score = output_column(rows, "score")
        y = (truth.to_numpy(dtype=object) == positive_class).astype(int)

        def measure(pick: np.ndarray) -> dict[str, float | None]:
            return compute_metrics(y[pick], score[pick], threshold=threshold, names=names)

        def interval(pick: np.ndarray, wanted: list[str], confidence: float) -> _Intervals:
            return bootstrap_intervals(
                y[pick],
                score[pick],
                threshold=threshold,
                names=wanted,
                confidence=confidence,
                resamples=perf.resamples,
                seed=perf.seed,
            )
    else:
        outputs = _outputs(rows, truth, task, classes)

        def measure(pick: np.ndarray) -> dict[str, float | None]:
            return compute_task_metrics(_rows_of(outputs, pick), names)

        def interval(pick: np.ndarray, wanted: list[str], confidence: float) -> _Intervals:
            return bootstrap_output_intervals(
                _rows_of(outputs, pick),
                names=wanted,
                confidence=confidence,
                resamples=perf.resamples,
                seed=perf.seed,
            )

    size = len(rows)
    everything = np.arange(size)
    points = measure(everything)
    pick = subset_rows(size, BOOTSTRAP_ROWS, perf.seed)
    # beyond BOOTSTRAP_ROWS rows, a seeded subset is resampled and the spread of each metric
    # around the subset's value is scaled by sqrt(subset / rows), as estimate.py does
    sub_points = points if len(pick) == size else measure(pick)
    factor = np.sqrt(len(pick) / size)
    found = {}
    for level, (wanted, confidence) in levels.items():
        raw = interval(pick, wanted, confidence) if wanted else {}
        found[level] = {
            name: _scale(raw[name], points[name], sub_points[name], factor) for name in wanted
        }
    intervals, bounds = found["two_sided"], found["one_sided"]
    out = []
    for name in names:
        low, high = intervals[name]
        floor = floors.get(name)
        below = floor is not None and _beyond(name, *bounds[name], floor)
        out.append(MetricValue(name, points[name], low, high, floor, below))
    return out, bounds


_Intervals = dict[str, tuple[float | None, float | None]]


def _rows_of(outputs: TaskOutputs, pick: np.ndarray) -> TaskOutputs:
    if len(pick) == len(outputs):
        return outputs
    mask = np.zeros(len(outputs), dtype=bool)
    mask[pick] = True
    return outputs.subset(mask)


def _scale(
    bounds: tuple[float | None, float | None],
    point: float | None,
    sub_point: float | None,
    factor: float,
) -> tuple[float | None, float | None]:
    """Interval ends of a subset's bootstrap moved to the whole window's point and scaled."""
    if factor == 1.0:
        return bounds
    if point is None or sub_point is None:
        return (None, None)
    low, high = (
        None if end is None else round(float(point + (end - sub_point) * factor), 6) + 0.0
        for end in bounds
    )
    return low, high


def _outputs(
    rows: pd.DataFrame, truth: pd.Series, task: Task, classes: Sequence[str]
) -> TaskOutputs:
    if task == "multiclass":
        proba = np.column_stack([output_column(rows, score_column(c)) for c in classes])
        return multiclass_outputs(truth.astype(str).to_numpy(), proba, [str(c) for c in classes])
    actual = truth.to_numpy(dtype=float)
    value = output_column(rows, "value")
    return TaskOutputs("regression", actual, value, mape_undefined=mape_undefined(actual))


def _with_floor(metric: MetricValue, floors: dict[str, float]) -> MetricValue:
    """An estimated metric with its floor, below it when its whole interval is."""
    floor = floors.get(metric.metric)
    if floor is None:
        return metric
    below = _beyond(metric.metric, metric.low, metric.high, floor)
    return replace(metric, floor=floor, below_floor=below)


def _beyond(metric: str, low: float | None, high: float | None, floor: float) -> bool:
    """The whole interval on the wrong side of the floor: below it for a metric where higher
    is better, above it (a ceiling) where lower is."""
    if higher_is_better(metric):
        return high is not None and bool(high < floor)
    return low is not None and bool(low > floor)


def _floor_notes(
    realised: list[MetricValue],
    bounds: dict[str, tuple[float | None, float | None]],
    enough: bool,
    confidence: float,
) -> list[str]:
    notes = []
    for m in realised:
        if m.floor is None or m.value is None:
            continue
        higher = higher_is_better(m.metric)
        worse = m.value < m.floor if higher else m.value > m.floor
        side = "below its floor" if higher else "above its ceiling"
        if m.below_floor and enough:
            lower, upper = bounds[m.metric]
            bound = upper if higher else lower
            notes.append(
                f"{m.metric} {m.value:.4g} is {side} {m.floor:g} with {confidence:.0%} "
                f"confidence ({'upper' if higher else 'lower'} bound {bound:.4g})"
            )
        elif worse and not enough:
            notes.append(
                f"{m.metric} {m.value:.4g} is {side} {m.floor:g}, but the window is too small "
                "to tell it from noise"
            )
        elif worse:
            notes.append(
                f"{m.metric} {m.value:.4g} is {side} {m.floor:g}, but not with "
                f"{confidence:.0%} confidence"
            )
    return notes


def _outside_notes(realised: list[MetricValue], estimated: list[MetricValue]) -> list[str]:
    """Realised metrics outside the estimated interval: the sign of concept drift."""
    expected = {m.metric: m for m in estimated}
    notes = []
    for m in realised:
        e = expected.get(m.metric)
        if e is None or m.value is None or e.low is None or e.high is None:
            continue
        if not e.low <= m.value <= e.high:
            notes.append(
                f"realised {m.metric} {m.value:.4g} lies outside the estimated "
                f"[{e.low:.4g}, {e.high:.4g}]: concept drift or label shift"
            )
    return notes
