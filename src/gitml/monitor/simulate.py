"""Production-like batches with known shifts, for calibration tests, docs and demos.

`simulate_batch` draws rows with replacement from a source frame (the training split by
default), seeded, then applies shifts in order:

- `label`: resample so the target class has a given share (P(x | y) kept): label shift;
- `scale` / `shift`: a numeric column times a factor / plus a constant (int columns stay
  whole numbers: rounded);
- `mix`: move a share of a column's mass to one category, taken from the others in
  proportion (a negative share moves mass from that category to the others);
- `concept`: the target of a fraction of rows replaced (another class at random; for
  regression y + N(0, std of y)): the relation between inputs and target changes, the
  inputs do not.

`where` restricts a row-level shift (all but `label`) to rows whose column holds a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from gitml.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

ShiftKind = Literal["scale", "shift", "mix", "label", "concept"]
OPTION = {
    "scale": "--scale",
    "shift": "--shift",
    "mix": "--mix",
    "label": "--label-shift",
    "concept": "--concept",
}


@dataclass(frozen=True)
class Shift:
    """One controlled change of a simulated batch."""

    kind: ShiftKind
    column: str | None = None  # scale, shift, mix: the column changed
    value: float = 0.0  # factor, constant, share moved (mix), class share (label), fraction
    category: str | None = None  # mix: the category gaining mass; label: the class
    where: tuple[str, str] | None = None  # only rows whose column holds this value

    def describe(self) -> str:
        """The shift as the command line spells it, for messages."""
        option = OPTION[self.kind]
        if self.kind in ("scale", "shift"):
            return f"{option} {self.column}={self.value:g}"
        if self.kind == "mix":
            return f"{option} {self.column}={self.category}:{self.value:+g}"
        if self.kind == "label":
            return f"{option} {self.category}={self.value:g}"
        return f"{option} {self.value:g}"


def simulate_batch(
    source: pd.DataFrame,
    *,
    rows: int,
    seed: int,
    target: str,
    task: str,
    shifts: Sequence[Shift] = (),
    start: pd.Timestamp | str,
    days: float,
    features: Sequence[str] | None = None,
    jitter: float = 0.01,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A batch (request_id, record, timestamp, then the features; no target) and its labels
    (request_id, record, target); `features` defaults to every column but the target.

    Continuous float features (no value holding more than 1 % of the rows) get Gaussian noise
    of `jitter` times their standard deviation in the source, clipped to the source's range
    (a smoothed bootstrap): the rows are new observations of the same distribution, not
    copies of the source's rows, which the pipeline's duplicate rule would refuse once
    `gitml retrain` appends them."""
    import pandas as pd

    if rows < 1:
        raise DataError(f"--rows {rows}: a batch needs at least 1 row")
    if days <= 0:
        raise DataError(f"--days {days:g}: must be positive")
    if not 0 <= jitter <= 1:
        raise DataError(f"--jitter {jitter:g}: must be between 0 and 1 (a share of the std)")
    if target not in source.columns:
        raise DataError(
            f"the source has no target column {target!r} (columns: {_names(source)})",
            hint="simulate draws from a labelled table such as the training split",
        )
    if len(source) == 0:
        raise DataError("the source has no rows to draw from")
    features = [c for c in source.columns if c != target] if features is None else list(features)
    absent = [c for c in features if c not in source.columns]
    if absent:
        raise DataError(f"the source lacks the features {absent} (columns: {_names(source)})")
    for shift in shifts:
        _check(shift, source, target, task)
    rng = np.random.default_rng(seed)
    label_shifts = [s for s in shifts if s.kind == "label"]
    if len(label_shifts) > 1:
        raise DataError("--label-shift: give it once (one class and its share)")
    if label_shifts:
        take = _label_rows(source, target, label_shifts[0], rows, rng)
    else:
        take = rng.integers(0, len(source), rows)
    frame = source.iloc[take][[*features, target]].reset_index(drop=True)
    if jitter:
        _jitter(frame, source, [c for c in features if c != target], jitter, seed)
    for shift in shifts:
        if shift.kind == "label":
            continue
        where = _where(frame, shift)
        if shift.kind == "concept":
            frame[target] = _concept(frame[target], where, shift.value, task, source[target], rng)
        elif shift.kind == "mix":
            frame[shift.column] = _mix(frame[shift.column], where, shift, rng)
        else:
            frame[shift.column] = _move(frame[shift.column], where, shift)
    ids = pd.Series(np.array([f"sim-{seed}-{n}" for n in range(rows)], dtype=object))
    begin = pd.Timestamp(start)
    begin = begin.tz_localize("UTC") if begin.tzinfo is None else begin.tz_convert("UTC")
    span = int(days * 86_400 * 1e9)
    offsets = (np.arange(rows, dtype=np.int64) * span) // rows
    naive = (begin.tz_localize(None).as_unit("ns").value + offsets).view("datetime64[ns]")
    stamps = pd.DatetimeIndex(naive).tz_localize("UTC")
    batch = pd.DataFrame({"request_id": ids, "record": 0, "timestamp": stamps})
    batch = pd.concat([batch, frame[features]], axis=1)
    labels = pd.DataFrame({"request_id": ids, "record": 0, target: frame[target]})
    return batch, labels


# the most common value of a jittered column holds at most this share of its rows
MAX_JITTERED_SHARE = 0.01


def _jitter(
    frame: pd.DataFrame, source: pd.DataFrame, features: list[str], share: float, seed: int
) -> None:
    """Noise on the float features, from its own seeded stream (the draws and shifts stay as
    they were without it)."""
    rng = np.random.default_rng([seed, 1])
    for name in features:
        if frame[name].dtype.kind != "f":
            continue
        column = source[name].to_numpy(dtype=float)
        spread = float(np.nanstd(column))
        # a float column of few values (codes, a 0/1 flag as float) stays on its values: noise
        # would smear each value's mass across its neighbours, a shift the monitor then sees
        shares = source[name].value_counts(normalize=True)
        if not spread > 0 or (len(shares) and shares.iloc[0] > MAX_JITTERED_SHARE):
            continue
        values = frame[name].to_numpy(dtype=float)
        noisy = values + rng.normal(0.0, share * spread, len(values))
        frame[name] = np.clip(noisy, np.nanmin(column), np.nanmax(column))  # NaN stays NaN


def _label_rows(
    source: pd.DataFrame, target: str, shift: Shift, rows: int, rng: np.random.Generator
) -> np.ndarray:
    is_class = source[target].astype(str).to_numpy() == shift.category
    ours, others = np.flatnonzero(is_class), np.flatnonzero(~is_class)
    k = round(rows * shift.value)
    if (k and not len(ours)) or (rows - k and not len(others)):
        raise DataError(f"{shift.describe()}: the source has no rows to draw that share from")
    take = np.concatenate(
        [
            ours[rng.integers(0, max(len(ours), 1), k)],
            others[rng.integers(0, max(len(others), 1), rows - k)],
        ]
    )
    return take[rng.permutation(rows)]


def _where(frame: pd.DataFrame, shift: Shift) -> np.ndarray:
    if shift.where is None:
        return np.ones(len(frame), dtype=bool)
    column, value = shift.where
    return _matches(frame[column], value)


def _matches(series: pd.Series, value: str) -> np.ndarray:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series):
        try:
            number = float(value)
        except ValueError:
            return np.zeros(len(series), dtype=bool)
        return series.to_numpy(dtype=np.float64, na_value=np.nan) == number
    return (series.astype(str).str.strip() == value.strip()).to_numpy()


def _move(series: pd.Series, where: np.ndarray, shift: Shift) -> pd.Series:
    values = series.to_numpy(dtype=np.float64, na_value=np.nan).copy()
    if shift.kind == "scale":
        values[where] = values[where] * shift.value
    else:
        values[where] = values[where] + shift.value
    if series.dtype.kind in "iu":  # an int column stays whole numbers
        return series.__class__(np.round(values).astype(series.dtype), name=series.name)
    return series.__class__(values, name=series.name)


def _mix(series: pd.Series, where: np.ndarray, shift: Shift, rng: np.random.Generator) -> pd.Series:
    text = series.astype(str).str.strip().to_numpy()
    out = series.astype(object).to_numpy().copy()
    gain = _value_like(series, str(shift.category))
    is_cat = (text == shift.category) & where
    others = ~is_cat & where & series.notna().to_numpy()
    inside = int(where.sum())
    if inside == 0:
        return series
    share = is_cat.sum() / inside
    if shift.value >= 0:
        if share >= 1 and shift.value > 0:
            raise DataError(f"{shift.describe()}: {shift.category!r} already holds every row")
        q = shift.value / (1 - share) if share < 1 else 0.0
        if q > 1:
            raise DataError(
                f"{shift.describe()}: {shift.category!r} holds {share:.1%} of the rows; "
                f"at most {1 - share:.1%} more can move to it"
            )
        moved = others & (rng.random(len(out)) < q)
        out[moved] = gain
    else:
        q = -shift.value / share if share > 0 else np.inf
        if q > 1 or not others.any():
            raise DataError(
                f"{shift.describe()}: {shift.category!r} holds {share:.1%} of the rows; "
                f"at most that much can move away from it"
            )
        moved = is_cat & (rng.random(len(out)) < q)
        donors = np.flatnonzero(others)
        out[moved] = out[donors[rng.integers(0, len(donors), int(moved.sum()))]]
    return series.__class__(out, name=series.name).astype(series.dtype)


def _concept(
    truth: pd.Series,
    where: np.ndarray,
    fraction: float,
    task: str,
    population: pd.Series,
    rng: np.random.Generator,
) -> pd.Series:
    changed = where & (rng.random(len(truth)) < fraction)
    if task == "regression":
        values = truth.to_numpy(dtype=np.float64, na_value=np.nan).copy()
        std = float(population.astype(float).std())
        values[changed] += rng.normal(0.0, std, int(changed.sum()))
        return truth.__class__(values, name=truth.name)
    classes = sorted(population.dropna().astype(str).unique())
    if len(classes) < 2:
        raise DataError("--concept: the target has fewer than 2 classes to swap between")
    position = {c: k for k, c in enumerate(classes)}
    rows = np.flatnonzero(changed)
    own = np.array([position.get(t, len(classes)) for t in truth.astype(str).to_numpy()[rows]])
    # another class, uniformly: draw among the others, skipping over the row's own
    pick = rng.integers(0, len(classes) - 1, len(rows))
    pick = pick + (pick >= own)
    pick = np.minimum(pick, len(classes) - 1)
    out = truth.astype(object).to_numpy().copy()
    lookup = np.array([_value_like(population, c) for c in classes], dtype=object)
    out[rows] = lookup[pick]
    return truth.__class__(out, name=truth.name).astype(truth.dtype)


def _check(shift: Shift, source: pd.DataFrame, target: str, task: str) -> None:
    import pandas as pd

    said = shift.describe()
    if shift.where is not None:
        column, value = shift.where
        if column not in source.columns:
            raise DataError(
                f"--where {column}={value}: no column {column!r} in the source ({_names(source)})"
            )
        if not _matches(source[column], value).any():
            raise DataError(f"--where {column}={value}: no source row has {column} = {value!r}")
    if shift.kind in ("scale", "shift", "mix"):
        if shift.column not in source.columns or shift.column == target:
            raise DataError(
                f"{said}: no feature column {shift.column!r} in the source ({_names(source)})"
            )
        series = source[shift.column]
        numeric = pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
            series
        )
        if shift.kind != "mix" and not numeric:
            raise DataError(
                f"{said}: column {shift.column!r} is categorical ({series.dtype}); "
                "scale and shift need a numeric column",
                hint=f"change a category mix with --mix {shift.column}=CATEGORY:+0.2",
            )
        if shift.kind == "mix":
            known = sorted(series.dropna().astype(str).str.strip().unique())
            if str(shift.category) not in known:
                raise DataError(
                    f"{said}: {shift.category!r} is not a value of {shift.column!r} ({known[:20]})"
                )
            if not -1 <= shift.value <= 1:
                raise DataError(f"{said}: the share moved must be within [-1, 1]")
        if shift.kind == "scale" and not np.isfinite(shift.value):
            raise DataError(f"{said}: the factor must be a finite number")
    elif shift.kind == "label":
        if task == "regression":
            raise DataError(f"{said}: a regression target has no classes to shift")
        classes = sorted(source[target].dropna().astype(str).unique())
        if shift.category not in classes:
            raise DataError(f"{said}: {shift.category!r} is not a class of {target!r} ({classes})")
        if not 0 <= shift.value <= 1:
            raise DataError(f"{said}: the share must be within [0, 1]")
    elif shift.kind == "concept" and not 0 <= shift.value <= 1:
        raise DataError(f"{said}: the fraction of rows must be within [0, 1]")


def _value_like(series: pd.Series, text: str) -> object:
    """`text` as the column holds it (an int for an int column)."""
    if series.dtype.kind in "iu":
        return int(float(text))
    if series.dtype.kind == "f":
        return float(text)
    return text


def _names(frame: pd.DataFrame) -> str:
    names = [str(c) for c in frame.columns]
    return ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
