"""Atomic writes, strict source reading, and metric computation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gitml.data.io import read_source
from gitml.errors import ConfigError, DataError
from gitml.evaluate.metrics import compute_metrics, compute_slices
from gitml.files import atomic_path, atomic_paths, write_json
from gitml.tasks import METRICS

NAMES = list(METRICS["binary"])


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


def test_atomic_paths_replace_the_files_together_and_keep_their_neighbours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".dvc").mkdir()  # a DVC project: staging happens in .dvc/tmp
    models = tmp_path / "models"
    targets = [models / "model.skops", models / "metadata.json"]
    with atomic_paths(*targets) as staged:  # first run: no directory yet
        for path in staged:
            path.write_text("v1")
    (models / ".gitignore").write_text("/model.skops\n")
    models.chmod(0o750)
    with atomic_paths(*targets) as staged:
        assert all(path.parent != models for path in staged)
        assert all(t.read_text() == "v1" for t in targets)  # nothing visible before the end
        for path in staged:
            path.write_text("v2")
    assert [t.read_text() for t in targets] == ["v2", "v2"]
    assert (models / ".gitignore").read_text() == "/model.skops\n"
    assert models.stat().st_mode & 0o777 == 0o750
    assert sorted(p.name for p in (tmp_path / ".dvc/tmp").iterdir()) == []


def test_atomic_paths_replace_nothing_when_the_block_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.json").write_text("old")
    # what a killed run leaves when there is no .dvc/: a git-ignored sibling directory
    tag = hashlib.sha256(str(models.resolve()).encode()).hexdigest()[:8]
    stale = tmp_path / f".gitml-tmp-models-{tag}.x1y2"
    stale.mkdir()
    (stale / "a.json").write_text("half")
    with pytest.raises(RuntimeError), atomic_paths(models / "a.json", models / "b.json") as s:
        s[0].write_text("new")
        raise RuntimeError("crash mid-write")
    assert sorted(p.name for p in models.iterdir()) == ["a.json"]
    assert (models / "a.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]  # stale one removed too
    with (
        pytest.raises(DataError, match=r"b\.json not written"),
        atomic_paths(models / "a.json", models / "b.json") as s,
    ):
        s[0].write_text("new")
    assert (models / "a.json").read_text() == "old"


def test_atomic_paths_need_one_directory_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with (
        pytest.raises(ConfigError, match=r"one directory; got a/m\.skops, b/meta\.json"),
        atomic_paths("a/m.skops", "b/meta.json"),
    ):
        pass
    with pytest.raises(ConfigError, match="a directory of their own"), atomic_paths("m", "n"):
        pass
    assert list(tmp_path.iterdir()) == []
