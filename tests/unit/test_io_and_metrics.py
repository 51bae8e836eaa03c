"""Atomic writes, strict source reading, and metric computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gitml.data.io import atomic_path, read_source, write_json
from gitml.errors import DataError
from gitml.evaluate.metrics import HIGHER_IS_BETTER, compute_metrics, compute_slices

NAMES = list(HIGHER_IS_BETTER)


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"auc": 0.8})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == '{\n  "auc": 0.8\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_stale_temporaries_are_cleaned(tmp_path: Path) -> None:
    (tmp_path / ".gitml-tmp-model.skops.abc123").write_bytes(b"partial")
    write_json(tmp_path / "model.skops", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.skops"]


def test_ragged_csv_is_refused_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(DataError, match="Expected 3 columns, got 2"):
        read_source(path)


def test_csv_blank_strings_survive_reading(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,x\n2,\n")
    table = read_source(path)
    assert table.column("b").to_pylist() == ["x", ""]  # blank kept for validate to judge
    assert table.column("a").to_pylist() == [1, 2]


def test_metrics_on_a_known_example() -> None:
    y = np.array([0, 0, 1, 1])
    score = np.array([0.1, 0.6, 0.4, 0.9])
    got = compute_metrics(y, score, threshold=0.5, names=NAMES)
    assert got["roc_auc"] == 0.75
    assert got["accuracy"] == 0.5
    assert got["precision"] == 0.5 and got["recall"] == 0.5
    assert got["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)


def test_threshold_metrics_agree_with_scikit_learn() -> None:
    from sklearn import metrics as skm

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    score = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    got = compute_metrics(y, score, threshold=0.45, names=NAMES)
    predicted = (score >= 0.45).astype(int)
    assert got["f1"] == round(skm.f1_score(y, predicted), 6)
    assert got["precision"] == round(skm.precision_score(y, predicted), 6)
    assert got["recall"] == round(skm.recall_score(y, predicted), 6)
    assert got["accuracy"] == round(skm.accuracy_score(y, predicted), 6)
    assert got["log_loss"] == round(skm.log_loss(y, score), 6)
    assert got["brier"] == round(skm.brier_score_loss(y, score), 6)
    assert got["roc_auc"] == round(skm.roc_auc_score(y, score), 6)
    edge = compute_metrics(np.array([0, 1]), np.array([0.0, 1.0]), threshold=0.5, names=NAMES)
    assert edge["log_loss"] == round(skm.log_loss([0, 1], [0.0, 1.0]), 6)
    nothing = compute_metrics(y, score, threshold=0.99999, names=NAMES)
    assert nothing["precision"] == 0.0 and nothing["f1"] == 0.0  # zero_division=0


def test_slices_mark_small_groups_and_undefined_auc() -> None:
    frame = pd.DataFrame({"g": ["a"] * 40 + ["b"] * 5})
    y = np.array([0, 1] * 20 + [1] * 5)
    score = np.linspace(0, 1, 45)
    out = compute_slices(frame, y, score, columns=["g"], threshold=0.5, names=NAMES, min_rows=30)
    groups = out["g"]["groups"]
    assert groups["b"]["too_small"] and groups["b"]["roc_auc"] is None
    assert not groups["a"]["too_small"]
    assert out["g"]["max_gap"]["roc_auc"] is None  # only one group is large enough
