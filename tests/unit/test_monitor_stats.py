"""The monitor's statistics: counts, tests, effects, correction and quality findings."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gitml.config.schema import MonitorParams
from gitml.monitor.alarms import adjust_p_values, judge
from gitml.monitor.drift import chi2_test, compare
from gitml.monitor.result import ColumnDrift, DriftReport
from gitml.monitor.sketch import count_batch, monitored_columns, profile_reference

PARAMS = MonitorParams()
SIGNATURE = {
    "inputs": [
        {"name": "tenure", "type": "int", "nullable": False, "min": 0, "max": 120},
        {"name": "charges", "type": "float", "nullable": True, "min": 0},
        {"name": "contract", "type": "category", "categories": ["Monthly", "One year", "Two year"]},
        {"name": "senior", "type": "int", "allowed": [0, 1]},
    ],
    "output": {"task": "binary", "classes": ["No", "Yes"], "positive_class": "Yes"},
}


def _reference(rows: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    charges = rng.lognormal(4, 0.5, rows)
    charges[rng.random(rows) < 0.01] = np.nan
    return pd.DataFrame(
        {
            "tenure": rng.integers(0, 73, rows),
            "charges": charges,
            "contract": rng.choice(["Monthly", "One year", "Two year"], rows, p=[0.55, 0.25, 0.2]),
            "senior": (rng.random(rows) < 0.16).astype(int),
            "score": rng.beta(2, 5, rows),
            "label": rng.choice(["No", "Yes"], rows, p=[0.7, 0.3]),
        }
    )


def _drift(reference: pd.DataFrame, batch: pd.DataFrame, params: MonitorParams = PARAMS):
    profile = profile_reference(reference, monitored_columns(SIGNATURE), params)
    columns, quality = compare(profile, count_batch(batch, profile), params)
    report = DriftReport("v1", "test", profile.rows, len(batch), columns, quality)
    judged = judge([report], params)[0]
    return {c.column: c for c in judged.columns}, {(q.column, q.rule): q for q in quality}


def test_monitored_columns_follow_the_signature_and_the_task() -> None:
    columns = {c.name: c for c in monitored_columns(SIGNATURE)}
    assert columns["tenure"].kind == "numeric"
    assert columns["senior"].kind == "categorical"  # an int with allowed values
    assert columns["senior"].categories == ("0", "1")
    assert (columns["score"].role, columns["label"].categories) == ("output", ("No", "Yes"))
    multi = {**SIGNATURE, "output": {"task": "multiclass", "classes": ["a", "b", "c"]}}
    names = [c.name for c in monitored_columns(multi) if c.role == "output"]
    assert names == ["label", "score:a", "score:b", "score:c"]
    regression = {**SIGNATURE, "output": {"task": "regression", "target": "y"}}
    assert [c.name for c in monitored_columns(regression) if c.role == "output"] == ["value"]


def test_ks_from_counts_is_scipys_on_discrete_columns_and_conservative_on_continuous() -> None:
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"tenure": rng.integers(0, 73, 3000), "charges": rng.normal(50, 9, 3000)})
    cur = pd.DataFrame({"tenure": rng.integers(0, 80, 700), "charges": rng.normal(52, 9, 700)})
    params = MonitorParams(quantiles=100)
    drifts, _ = _drift(ref, cur, params)
    exact = stats.ks_2samp(ref["tenure"], cur["tenure"], method="asymp")
    assert drifts["tenure"].statistic == pytest.approx(exact.statistic, abs=1e-12)
    assert drifts["tenure"].p_value == pytest.approx(exact.pvalue, rel=1e-9)
    full = stats.ks_2samp(ref["charges"], cur["charges"], method="asymp")
    assert drifts["charges"].statistic <= full.statistic + 1e-12
    assert drifts["charges"].statistic >= full.statistic - 1 / 100  # within a bin's share


def test_wasserstein_effect_is_scipys_over_the_reference_std() -> None:
    rng = np.random.default_rng(2)
    ref = pd.DataFrame(
        {"tenure": rng.integers(0, 73, 3000), "charges": rng.lognormal(4, 0.5, 3000)}
    )
    # beyond the reference's range on both sides: the tails are exact
    cur = pd.DataFrame(
        {"tenure": rng.integers(-10, 90, 900), "charges": rng.lognormal(4.2, 0.7, 900)}
    )
    drifts, _ = _drift(ref, cur)
    for name, tolerance in (("tenure", 1e-9), ("charges", 0.02)):
        expected = stats.wasserstein_distance(ref[name], cur[name]) / ref[name].std(ddof=0)
        assert drifts[name].effect == pytest.approx(expected, rel=tolerance)
        assert drifts[name].effect_name == "wasserstein"


def test_chi2_matches_scipy_and_pools_sparse_cells() -> None:
    ref, cur = np.array([500, 300, 200]), np.array([90, 70, 40])
    stat, p = chi2_test(ref, cur)
    expected = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert (stat, p) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue))
    # two cells expected to hold fewer than 5 rows become one: 3 cells, 2 degrees of freedom
    sparse_ref, sparse_cur = np.array([500, 300, 20, 15]), np.array([90, 70, 2, 3])
    stat, p = chi2_test(sparse_ref, sparse_cur)
    pooled = np.vstack([[500, 300, 35], [90, 70, 5]])
    expected = stats.chi2_contingency(pooled, correction=False)
    assert (stat, p) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue))


def test_identical_shape_batch_is_quiet_and_a_shifted_one_names_its_columns() -> None:
    reference = _reference()
    same, _ = _drift(reference, _reference(2000, seed=7))
    assert not any(c.drifted for c in same.values())
    moved = _reference(2000, seed=8)
    moved["charges"] = moved["charges"] * 1.3
    moved["contract"] = np.where(moved["contract"] == "Monthly", "Two year", moved["contract"])
    drifts, _ = _drift(reference, moved)
    assert {c for c, d in drifts.items() if d.drifted} == {"charges", "contract"}
    assert drifts["charges"].p_adjusted < PARAMS.alpha
    assert drifts["contract"].effect_name == "jensen_shannon"
    shares = drifts["contract"].distribution
    assert shares.bins == ["Monthly", "One year", "Two year"]
    assert shares.current[0] == 0 and sum(shares.reference) == pytest.approx(1)
    plot = drifts["charges"].distribution
    assert len(plot.bins) == PARAMS.psi_bins and plot.bins[0].startswith("< ")
    assert drifts["charges"].psi > 0.1


def test_outputs_are_tested_like_features() -> None:
    reference = _reference()
    batch = _reference(2000, seed=3)
    batch["score"] = np.minimum(batch["score"] * 1.5, 1)
    batch["label"] = np.where(batch["score"] > 0.4, "Yes", "No")
    drifts, _ = _drift(reference, batch)
    assert drifts["score"].role == "output" and drifts["score"].drifted
    assert drifts["label"].test == "chi2" and drifts["label"].drifted


def test_cells_are_read_with_the_one_coercion() -> None:
    reference = _reference()
    batch = pd.DataFrame(
        {
            "tenure": [" 12 ", "5.0", "abc", "", None, "130", "7"],
            "charges": [1.0, 2.0, np.inf, 4.0, 5.0, 6.0, 7.0],
            "contract": [" monthly ", "Two year", "Weekly", "Weekly", None, 3, "One year"],
            "senior": [0, "1", 1.0, 2, True, None, 0],
        }
    )
    profile = profile_reference(reference, monitored_columns(SIGNATURE), PARAMS)
    counts = count_batch(batch, profile).columns
    assert (counts["tenure"].null, counts["tenure"].invalid, counts["tenure"].out_of_range) == (
        2,
        1,
        1,
    )
    assert counts["tenure"].examples["invalid_values"] == ("'abc'",)
    assert counts["charges"].invalid == 1  # inf is not a finite number
    # " monthly " is Monthly (case and spaces), 3 is the text "3": unseen like "Weekly"
    assert counts["contract"].bins.tolist() == [1, 1, 1]
    assert counts["contract"].unseen == {"Weekly": 2, "3": 1}
    assert counts["senior"].bins.tolist() == [2, 2]  # 0, "1", 1.0 and 0
    assert counts["senior"].unseen == {"2": 1}
    assert (counts["senior"].invalid, counts["senior"].null) == (1, 1)  # True is not a number


def test_a_chunk_without_a_column_merges_with_chunks_that_have_it() -> None:
    # log files written before a column existed: that chunk counts the column as missing
    reference = _reference()
    batch = _reference(1000, seed=5)
    profile = profile_reference(reference, monitored_columns(SIGNATURE), PARAMS)
    merged = count_batch(batch, profile).merge(count_batch(batch.drop(columns="charges"), profile))
    assert merged.rows == 2000
    charges = merged.columns["charges"]
    assert charges.bins.sum() + charges.null == 1000
    assert charges.missing == 1000


def test_counts_of_chunks_merge_into_the_counts_of_the_whole() -> None:
    reference = _reference()
    batch = _reference(3001, seed=4).astype({"tenure": object})
    batch.loc[::97, "tenure"] = "n/a"
    batch.loc[::89, "contract"] = "Weekly"
    batch.loc[::83, "charges"] = -5.0
    profile = profile_reference(reference, monitored_columns(SIGNATURE), PARAMS)
    whole = count_batch(batch, profile)
    cuts = [0, 1, 700, 701, 2500, 3001]
    chunks = [count_batch(batch.iloc[a:b], profile) for a, b in itertools.pairwise(cuts)]
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged.merge(chunk)
    assert merged.rows == whole.rows == 3001
    for name, counts in whole.columns.items():
        other = merged.columns[name]
        assert other.bins.tolist() == counts.bins.tolist(), name
        assert (other.null, other.invalid, other.out_of_range) == (
            counts.null,
            counts.invalid,
            counts.out_of_range,
        )
        assert dict(other.unseen) == dict(counts.unseen)
        assert other.below == pytest.approx(counts.below) and other.above == pytest.approx(
            counts.above
        )
    (drift_merged, quality_merged), (drift_whole, quality_whole) = (
        compare(profile, merged, PARAMS),
        compare(profile, whole, PARAMS),
    )
    assert quality_merged == quality_whole
    for one, other in zip(drift_merged, drift_whole, strict=True):
        # identical tests; the tail sums (floats) add up in another order
        assert (one.statistic, one.p_value, one.distribution) == (
            other.statistic,
            other.p_value,
            other.distribution,
        )
        assert one.effect == pytest.approx(other.effect, rel=1e-12)


def test_holm_bonferroni_and_bh_adjust_as_documented() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005])
    assert adjust_p_values(p, "bonferroni").tolist() == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert adjust_p_values(p, "holm").tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust_p_values(p, "bh").tolist() == pytest.approx(
        stats.false_discovery_control(p, method="bh").tolist()
    )


def _column(name: str, p: float, effect: float, kind: str = "numeric") -> ColumnDrift:
    return ColumnDrift(
        column=name,
        role="feature",
        kind=kind,  # type: ignore[arg-type]
        test="ks",
        statistic=0.1,
        p_value=p,
        p_adjusted=p,
        effect_name="wasserstein",
        effect=effect,
        min_effect=0.0,
        psi=0.0,
        reference_rows=100,
        current_rows=100,
        drifted=False,
    )


def test_judge_corrects_across_every_report_of_the_run_and_needs_the_minimum_effect() -> None:
    first = DriftReport("v1", "r", 100, 100, [_column("a", 0.004, 0.2), _column("b", 0.5, 0.2)], [])
    second = DriftReport("v2", "r", 100, 100, [_column("a", 0.004, 0.2, "categorical")], [])
    alone = judge([first], PARAMS)[0]
    # Holm: alone, 0.004 x 2 tests < 0.01; with v2's test in the run, 0.004 x 3 is not
    assert alone.columns[0].drifted and alone.columns[0].p_adjusted == pytest.approx(0.008)
    together = judge([first, second], PARAMS)
    assert not together[0].columns[0].drifted and not together[1].columns[0].drifted
    assert together[0].columns[0].p_adjusted == pytest.approx(0.012)
    assert together[1].columns[0].min_effect == PARAMS.min_effect.jensen_shannon
    # significant, but the shift is below monitor.min_effect.wasserstein
    tiny = DriftReport("v1", "r", 100, 100, [_column("c", 1e-9, 0.049)], [])
    column = judge([tiny], PARAMS)[0].columns[0]
    assert column.p_adjusted < 1e-8 and not column.drifted


def test_quality_findings_name_column_rule_and_values() -> None:
    reference = _reference()
    batch = _reference(1000, seed=5).drop(columns=["senior"]).astype({"tenure": object})
    batch.loc[:9, "tenure"] = "ten"
    batch.loc[10:14, "tenure"] = 500
    batch.loc[:29, "contract"] = "Weekly"
    batch.loc[:99, "charges"] = np.nan  # 10 %, against 1 % in the reference
    _, quality = _drift(reference, batch)
    missing = quality[("senior", "missing_column")]
    assert missing.alarm and missing.rate == 1.0 and "missing" in missing.message
    invalid = quality[("tenure", "invalid_values")]
    assert invalid.alarm and invalid.rows == 10 and "'ten'" in invalid.message
    assert "invalid_values" in invalid.message and "tenure" in invalid.message
    outside = quality[("tenure", "out_of_range")]
    assert outside.alarm and outside.examples == ["500"] and "[0, 120]" in outside.message
    unseen = quality[("contract", "unseen_category")]
    assert unseen.alarm and unseen.rows == 30 and "Weekly (30)" in unseen.message
    nulls = quality[("charges", "null_rate")]
    assert nulls.alarm and nulls.reference_rate == pytest.approx(0.01, abs=0.005)


def test_a_null_rate_increase_alarms_only_when_significant() -> None:
    reference = _reference()
    small = _reference(50, seed=6)
    small["charges"] = small["charges"].fillna(1.0)
    small.loc[:1, "charges"] = np.nan  # 2 of 50 rows: +3 points, above the limit, not significant
    _, quality = _drift(reference, small)
    finding = quality[("charges", "null_rate")]
    assert not finding.alarm and "not significant" in finding.message
    big = _reference(20000, seed=6)
    big.loc[:299, "charges"] = np.nan  # +1.5 points: significant, below the limit
    _, quality = _drift(reference, big)
    assert ("charges", "null_rate") not in quality
