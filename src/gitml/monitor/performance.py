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
from gitml.monitor.estimate import ESTIMATED, estimate_metrics, output_column
from gitml.monitor.result import MetricValue, PerformanceWindow
from gitml.review.bootstrap import bootstrap_intervals, bootstrap_output_intervals
from gitml.tasks import HEADLINE, METRICS, Task, higher_is_better, score_column

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
    for version, start, end, rows in _windows(scored, params.performance.window):
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


def _windows(scored: pd.DataFrame, window: str) -> list[tuple[str, str, str, pd.DataFrame]]:
    """(model version, start, end, rows) of each non-empty window, in order."""
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
    if isinstance(offset, pd.offsets.Tick):
        starts = stamps.dt.floor(offset)
        ends = starts + offset
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecated aliases still work
            periods = stamps.dt.tz_convert(None).dt.to_period(offset)
        starts = periods.dt.start_time.dt.tz_localize("UTC")
        ends = (periods + 1).dt.start_time.dt.tz_localize("UTC")
    if "model_version" in scored.columns:
        versions = scored["model_version"].astype("string").fillna("unknown")
    else:
        versions = pd.Series("unknown", index=scored.index)
    seen = stamps.dropna()
    whole = (_iso(seen.min()), _iso(seen.max())) if len(seen) else (NO_TIMESTAMP, NO_TIMESTAMP)
    keys = pd.DataFrame({"version": versions, "start": starts, "end": ends})
    out = []
    for (version, start, end), index in keys.groupby(
        ["version", "start", "end"], sort=False, dropna=False
    ).indices.items():
        rows = scored.iloc[np.sort(index)]
        if pd.isna(start):  # rows without timestamps: after the timed windows of their version
            out.append(((str(version), 1, ""), (str(version), *whole, rows)))
        else:
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
    settings = {"resamples": perf.resamples, "seed": perf.seed}
    # one-sided bounds at c are the ends of the two-sided interval at 2c - 1
    one_sided = 2 * perf.confidence - 1
    if task == "binary":
        score = output_column(rows, "score")
        y = (truth.to_numpy(dtype=object) == positive_class).astype(int)
        points = compute_metrics(y, score, threshold=threshold, names=names)
        intervals = bootstrap_intervals(
            y, score, threshold=threshold, names=names, confidence=perf.confidence, **settings
        )
        bounds = (
            bootstrap_intervals(
                y, score, threshold=threshold, names=floored, confidence=one_sided, **settings
            )
            if floored
            else {}
        )
    else:
        outputs = _outputs(rows, truth, task, classes)
        points = compute_task_metrics(outputs, names)
        intervals = bootstrap_output_intervals(
            outputs, names=names, confidence=perf.confidence, **settings
        )
        bounds = (
            bootstrap_output_intervals(outputs, names=floored, confidence=one_sided, **settings)
            if floored
            else {}
        )
    out = []
    for name in names:
        low, high = intervals[name]
        floor = floors.get(name)
        below = False
        if floor is not None:
            lower, upper = bounds[name]
            if higher_is_better(name):
                below = upper is not None and upper < floor
            else:
                below = lower is not None and lower > floor
        out.append(MetricValue(name, points[name], low, high, floor, below))
    return out, bounds


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
    if higher_is_better(metric.metric):
        below = metric.high is not None and metric.high < floor
    else:
        below = metric.low is not None and metric.low > floor
    return replace(metric, floor=floor, below_floor=below)


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
