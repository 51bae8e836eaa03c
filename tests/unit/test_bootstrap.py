"""Paired bootstrap of metric differences: exactness, pairing, determinism, chunking."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from gitml.evaluate.metrics import compute_metrics
from gitml.review.bootstrap import (
    MetricDelta,
    _drawn_weights,
    _group_metrics,
    _prepare,
    _weighted_metrics,
    paired_bootstrap,
)
from gitml.tasks import METRICS

NAMES = list(METRICS["binary"])


def _data(seed: int, n: int = 300, *, decimals: int | None = None):
    """Truth, a weak score, and an independent weak score; rounded scores have ties."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    base = np.clip(y * 0.25 + rng.random(n) * 0.75, 0, 1)
    head = np.clip(y * 0.25 + rng.random(n) * 0.75, 0, 1)
    if decimals is not None:
        base, head = np.round(base, decimals), np.round(head, decimals)
    return y, base, head


def _sklearn(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = (score >= threshold).astype(int)
    return {
        "roc_auc": skm.roc_auc_score(y, score),
        "average_precision": skm.average_precision_score(y, score),
        "f1": skm.f1_score(y, predicted, zero_division=0),
        "precision": skm.precision_score(y, predicted, zero_division=0),
        "recall": skm.recall_score(y, predicted, zero_division=0),
        "accuracy": skm.accuracy_score(y, predicted),
        "log_loss": skm.log_loss(y, score, labels=[0, 1]),
        "brier": skm.brier_score_loss(y, score),
    }


@pytest.mark.parametrize(("seed", "decimals"), [(0, None), (1, None), (2, 1), (3, 2), (4, 0)])
def test_point_estimates_are_compute_metrics(seed: int, decimals: int | None) -> None:
    y, base, head = _data(seed, decimals=decimals)
    got = paired_bootstrap(y, base, head, threshold=0.5, names=NAMES, resamples=100)
    expected_base = compute_metrics(y, base, threshold=0.5, names=NAMES)
    expected_head = compute_metrics(y, head, threshold=0.5, names=NAMES)
    for name in NAMES:
        assert got[name].base == expected_base[name]
        assert got[name].head == expected_head[name]
        assert got[name].delta == round(expected_head[name] - expected_base[name], 6)
        assert got[name].low <= got[name].high


@pytest.mark.parametrize(("seed", "decimals"), [(0, None), (5, 1), (6, 2)])
def test_unit_weights_give_compute_metrics(seed: int, decimals: int | None) -> None:
    y, score, _ = _data(seed, decimals=decimals)
    got = _weighted_metrics(y, score, np.ones((1, len(y))), 0.5, NAMES)
    expected = compute_metrics(y, score, threshold=0.5, names=NAMES)
    for name in NAMES:
        assert got[name][0] == pytest.approx(expected[name], abs=1e-6)


@pytest.mark.parametrize(("seed", "decimals"), [(0, None), (7, 1), (8, 2)])
def test_integer_weights_equal_scikit_learn_on_repeated_rows(
    seed: int, decimals: int | None
) -> None:
    y, score, _ = _data(seed, n=120, decimals=decimals)
    rng = np.random.default_rng(seed + 100)
    weights = rng.integers(0, 4, size=(6, len(y)))
    weights[0, :10] = 0  # zero weight on the top rows too
    weights[1] = 1
    got = _weighted_metrics(y, score, weights, 0.45, NAMES)
    for k, row in enumerate(weights):
        expected = _sklearn(np.repeat(y, row), np.repeat(score, row), 0.45)
        for name in NAMES:
            assert got[name][k] == pytest.approx(expected[name], abs=1e-9), (name, k)


def test_counting_draws_equals_weighting_rows_by_their_counts() -> None:
    y, score, _ = _data(15, decimals=2)
    draws = np.random.default_rng(15).integers(0, len(y), size=(5, len(y)))
    model = _prepare(y, score, 0.5)
    from_draws = _group_metrics(model, *_drawn_weights(model, draws), NAMES)
    counts = np.stack([np.bincount(row, minlength=len(y)) for row in draws])
    from_weights = _weighted_metrics(y, score, counts, 0.5, NAMES)
    for name in NAMES:
        np.testing.assert_allclose(from_draws[name], from_weights[name], rtol=0, atol=1e-12)


def test_weighted_ranking_metrics_are_undefined_with_one_class_drawn() -> None:
    y = np.array([0, 0, 1, 1])
    score = np.array([0.1, 0.6, 0.4, 0.9])
    weights = np.array([[1, 2, 0, 0], [0, 0, 3, 1], [1, 1, 1, 1]])
    got = _weighted_metrics(y, score, weights, 0.5, NAMES)
    for name in ("roc_auc", "average_precision"):
        assert np.isnan(got[name][:2]).all()
        assert np.isfinite(got[name][2])
    assert np.isfinite(got["accuracy"]).all()


def test_identical_models_have_zero_differences() -> None:
    y, base, _ = _data(9, decimals=2)
    got = paired_bootstrap(y, base, base.copy(), threshold=0.5, names=NAMES)
    for name in NAMES:
        assert got[name].delta == 0.0
        assert (got[name].low, got[name].high) == (0.0, 0.0)


def test_a_clearly_better_head_has_an_interval_above_zero() -> None:
    rng = np.random.default_rng(10)
    y = rng.integers(0, 2, 400)
    noise = rng.random(400)
    informed = np.clip(0.6 * y + 0.4 * rng.random(400), 0, 1)
    better = paired_bootstrap(y, noise, informed, threshold=0.5, names=NAMES)
    assert better["roc_auc"].delta > 0 and better["roc_auc"].low > 0
    assert better["log_loss"].high < 0  # lower is better: the informed model's loss drops
    worse = paired_bootstrap(y, informed, noise, threshold=0.5, names=NAMES)
    assert worse["roc_auc"].delta < 0 and worse["roc_auc"].high < 0


def test_same_seed_same_result_other_seed_other_interval() -> None:
    y, base, head = _data(11)
    first = paired_bootstrap(y, base, head, threshold=0.5, names=NAMES, seed=3)
    again = paired_bootstrap(y, base, head, threshold=0.5, names=NAMES, seed=3)
    other = paired_bootstrap(y, base, head, threshold=0.5, names=NAMES, seed=4)
    assert first == again
    assert (first["roc_auc"].low, first["roc_auc"].high) != (
        other["roc_auc"].low,
        other["roc_auc"].high,
    )
    assert first["roc_auc"].delta == other["roc_auc"].delta  # point estimates ignore the seed


def test_one_class_only_gives_none_for_ranking_metrics() -> None:
    y = np.zeros(50, dtype=int)
    rng = np.random.default_rng(12)
    got = paired_bootstrap(y, rng.random(50), rng.random(50), threshold=0.5, names=NAMES)
    for name in ("roc_auc", "average_precision"):
        assert got[name] == MetricDelta(None, None, None, None, None)
    assert got["accuracy"].low is not None and got["brier"].delta is not None


@pytest.mark.parametrize("chunk_size", [1, 7, 100])
def test_chunking_does_not_change_the_result(chunk_size: int) -> None:
    y, base, head = _data(13, decimals=2)
    whole = paired_bootstrap(y, base, head, threshold=0.5, names=NAMES, resamples=150)
    chunked = paired_bootstrap(
        y, base, head, threshold=0.5, names=NAMES, resamples=150, chunk_size=chunk_size
    )
    assert chunked == whole


def test_bad_arguments_are_refused() -> None:
    y, base, head = _data(14, n=20)
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap(y, base, head[:-1], threshold=0.5, names=NAMES)
    with pytest.raises(ValueError, match="at least 100"):
        paired_bootstrap(y, base, head, threshold=0.5, names=NAMES, resamples=99)
    with pytest.raises(ValueError, match="unknown metrics"):
        paired_bootstrap(y, base, head, threshold=0.5, names=["auc"])
    with pytest.raises(ValueError, match="only 0 and 1"):
        paired_bootstrap(y + 1, base, head, threshold=0.5, names=NAMES)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(y, base, head, threshold=0.5, names=NAMES, confidence=1.0)


def test_each_side_is_judged_at_its_own_threshold() -> None:
    from gitml.evaluate.metrics import compute_metrics

    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 400)
    score = np.clip(y * 0.4 + rng.random(400) * 0.6, 0, 1)
    names = ["f1", "recall", "roc_auc"]
    result = paired_bootstrap(
        y, score, score, threshold=0.4, base_threshold=0.5, names=names, resamples=200
    )
    at_base = compute_metrics(y, score, threshold=0.5, names=names)
    at_head = compute_metrics(y, score, threshold=0.4, names=names)
    for name in names:
        assert result[name].base == at_base[name]
        assert result[name].head == at_head[name]
    assert result["roc_auc"].delta == 0.0  # ranking metrics ignore the threshold
    assert result["recall"].delta > 0  # a lower threshold catches more positives
