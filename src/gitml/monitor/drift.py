"""Per-column drift tests and effect sizes from counts (values in, values out).

Both samples are random: the reference is one draw, the batch another. So the tests are
two-sample tests whose null distribution counts both sizes, never a threshold calibrated on
the reference alone (which alarms on fresh data once the batch outgrows the reference).

- numeric: two-sample Kolmogorov-Smirnov on the binned CDFs, p from the exact distribution
  of D at n*m/(n+m) (scipy's `ks_2samp(method="asymp")`). Exact for columns with at most
  `monitor.quantiles` distinct reference values; else D is read at the bin edges only, which
  can only lower it (conservative). Effect: Wasserstein-1 over the reference's standard
  deviation (binned CDFs inside the reference's range, exact beyond it). PSI on
  `monitor.psi_bins` reference-quantile bins is reported, not tested.
- categorical: chi-squared homogeneity on the 2 x k table (unseen values their own cell),
  cells with an expected count below 5 pooled (Cochran). Effect: Jensen-Shannon distance
  (base 2).

The p-values are per column; `alarms.judge` corrects them across the run.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from gitml.monitor.quality import check_quality
from gitml.monitor.result import ColumnDrift, Distribution, QualityFinding
from gitml.monitor.sketch import BatchCounts, ColumnCounts, MonitoredColumn, ReferenceProfile

if TYPE_CHECKING:
    from gitml.config.schema import MonitorParams

UNSEEN = "(unseen)"
_PSI_FLOOR = 1e-4  # shares below this count as this in PSI (an empty bin would be infinite)
_MIN_EXPECTED = 5.0  # Cochran: pool cells expected to hold fewer rows
_LIMIT_SIZE, _LIMIT_P = 2000, 1e-3  # KS: where the limiting distribution stands in for kstwo


def compare(
    profile: ReferenceProfile, counts: BatchCounts, params: MonitorParams
) -> tuple[list[ColumnDrift], list[QualityFinding]]:
    """Each column's test against the reference (uncorrected), and the quality findings.

    Columns absent from the batch, or without a valid value on either side, have no test
    (the quality findings say why)."""
    drifts: list[ColumnDrift] = []
    for column in profile.columns:
        ref = profile.counts.columns[column.name]
        cur = counts.columns.get(column.name)
        if cur is None or ref.valid == 0 or cur.valid == 0:
            continue
        if column.kind == "numeric":
            drifts.append(_numeric(column, profile, ref, cur, params))
        else:
            drifts.append(_categorical(column, ref, cur, params))
    return drifts, check_quality(profile, counts, params)


def ks_test(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic and p-value from counts on the same bins."""
    from scipy.stats import kstwo, kstwobign

    n, m = int(ref.sum()), int(cur.sum())
    d = float(np.abs(np.cumsum(ref) / n - np.cumsum(cur) / m).max())
    size = round(n * m / (n + m))
    if size < 1:
        return d, 1.0
    if size >= _LIMIT_SIZE:
        # kstwo's exact tail costs up to 30 ms here; the limiting distribution is never
        # below it and, where it is this small, within 10 % of it (conservative)
        limit = float(kstwobign.sf(d * math.sqrt(size)))
        if limit < _LIMIT_P:
            return d, limit
    return d, float(kstwo.sf(d, size))


def chi2_test(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Pearson chi-squared homogeneity of a 2 x k table, sparse cells pooled (Cochran)."""
    from scipy.stats import chi2

    ref, cur = np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)
    keep = (ref + cur) > 0
    ref, cur = ref[keep], cur[keep]
    n, m = ref.sum(), cur.sum()
    total = ref + cur
    expected_min = total * min(n, m) / (n + m)
    sparse = expected_min < _MIN_EXPECTED
    if sparse.any():
        pooled_ref, pooled_cur = ref[sparse].sum(), cur[sparse].sum()
        ref, cur = ref[~sparse], cur[~sparse]
        if (pooled_ref + pooled_cur) * min(n, m) / (n + m) < _MIN_EXPECTED and len(ref):
            # still too sparse: fold the pool into the smallest remaining cell
            k = int(np.argmin(ref + cur))
            ref[k] += pooled_ref
            cur[k] += pooled_cur
        else:
            ref = np.append(ref, pooled_ref)
            cur = np.append(cur, pooled_cur)
    if len(ref) < 2:
        return 0.0, 1.0
    total = ref + cur
    table = np.vstack([ref, cur])
    expected = np.outer([n, m], total) / (n + m)
    stat = float(((table - expected) ** 2 / expected).sum())
    return stat, float(chi2.sf(stat, len(ref) - 1))


def wasserstein(edges: np.ndarray, ref: ColumnCounts, cur: ColumnCounts) -> float:
    """Wasserstein-1 distance between the two samples: the area between the CDFs.

    Exact at and beyond the edges (point cells, tail sums); between two edges the rows of an
    open cell are spread evenly over it. For a discrete reference whose values the batch
    shares, the result is exact."""
    n, m = ref.bins.sum(), cur.bins.sum()
    if len(edges) < 2:
        return abs(cur.below / m - ref.below / n) + abs(cur.above / m - ref.above / n)
    gap = np.cumsum(ref.bins) / n - np.cumsum(cur.bins) / m
    # the open cell (e[j], e[j+1]) starts after cell 2j+1 and ends with cell 2j+2
    left, right = gap[1:-2:2], gap[2:-1:2]
    same = left * right >= 0
    ends = np.abs(left) + np.abs(right)
    crossing = np.divide(left**2 + right**2, 2 * ends, out=np.zeros_like(ends), where=ends > 0)
    inside = float((np.diff(edges) * np.where(same, ends / 2, crossing)).sum())
    # beyond the edges the reference holds nothing (its own tail sums are 0)
    below = abs(cur.below / m - ref.below / n)
    above = abs(cur.above / m - ref.above / n)
    return inside + below + above


def psi(ref: np.ndarray, cur: np.ndarray) -> float:
    """Population stability index of two count vectors on the same bins."""
    p = np.maximum(ref / max(ref.sum(), 1), _PSI_FLOOR)
    q = np.maximum(cur / max(cur.sum(), 1), _PSI_FLOOR)
    return float(((q - p) * np.log(q / p)).sum())


def _numeric(
    column: MonitoredColumn,
    profile: ReferenceProfile,
    ref: ColumnCounts,
    cur: ColumnCounts,
    params: MonitorParams,
) -> ColumnDrift:
    edges = profile.edges[column.name]
    d, p = ks_test(ref.bins, cur.bins)
    std = profile.std[column.name]
    distance = wasserstein(edges, ref, cur)
    # a constant reference: any move is measured in the column's own units
    effect = distance / std if std > 0 else distance
    group = profile.groups[column.name]
    size = int(group.max()) + 1 if len(group) else 1
    ref_groups = np.bincount(group, weights=ref.bins, minlength=size)
    cur_groups = np.bincount(group, weights=cur.bins, minlength=size)
    return ColumnDrift(
        column=column.name,
        role=column.role,
        kind="numeric",
        test="ks",
        statistic=d,
        p_value=p,
        p_adjusted=p,
        effect_name="wasserstein",
        effect=float(effect),
        min_effect=params.min_effect.wasserstein,
        psi=psi(ref_groups, cur_groups),
        reference_rows=int(ref.bins.sum()),
        current_rows=int(cur.bins.sum()),
        drifted=False,
        distribution=Distribution(
            bins=list(profile.labels[column.name]),
            reference=_shares(ref_groups),
            current=_shares(cur_groups),
        ),
    )


def _categorical(
    column: MonitoredColumn, ref: ColumnCounts, cur: ColumnCounts, params: MonitorParams
) -> ColumnDrift:
    from scipy.spatial.distance import jensenshannon

    names = list(column.categories)
    ref_cells = ref.bins.astype(np.float64)
    cur_cells = cur.bins.astype(np.float64)
    if ref.unseen_total or cur.unseen_total:
        names.append(UNSEEN)
        ref_cells = np.append(ref_cells, ref.unseen_total)
        cur_cells = np.append(cur_cells, cur.unseen_total)
    stat, p = chi2_test(ref_cells, cur_cells)
    effect = float(jensenshannon(ref_cells, cur_cells, base=2))
    top = sorted(cur.unseen.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    return ColumnDrift(
        column=column.name,
        role=column.role,
        kind="categorical",
        test="chi2",
        statistic=stat,
        p_value=p,
        p_adjusted=p,
        effect_name="jensen_shannon",
        effect=effect if np.isfinite(effect) else 0.0,
        min_effect=params.min_effect.jensen_shannon,
        psi=psi(ref_cells, cur_cells),
        reference_rows=int(ref_cells.sum()),
        current_rows=int(cur_cells.sum()),
        drifted=False,
        unseen=dict(top),
        distribution=Distribution(
            bins=names, reference=_shares(ref_cells), current=_shares(cur_cells)
        ),
    )


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return [float(c / total) if total else 0.0 for c in counts]
