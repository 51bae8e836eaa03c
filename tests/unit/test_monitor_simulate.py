"""`gitml simulate` and `simulate_batch`: seeded batches with the shifts they promise."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gitml.cli import app
from gitml.errors import DataError
from gitml.monitor.simulate import Shift, simulate_batch

ROOT = Path(__file__).resolve().parents[2]
START = pd.Timestamp("2026-11-01", tz="UTC")


def _source(rows: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "tenure": rng.integers(0, 73, rows),
            "charges": rng.lognormal(4, 0.5, rows),
            "contract": rng.choice(
                ["Month-to-month", "One year", "Two year"], rows, p=[0.6, 0.25, 0.15]
            ),
            "churn": rng.choice(["No", "Yes"], rows, p=[0.75, 0.25]),
        }
    )


def _simulate(shifts=(), rows=20000, seed=1, source=None, task="binary"):
    return simulate_batch(
        _source() if source is None else source,
        rows=rows,
        seed=seed,
        target="churn",
        task=task,
        shifts=list(shifts),
        start=START,
        days=7,
    )


def test_a_batch_is_seeded_with_fresh_ids_spread_timestamps_and_separate_labels() -> None:
    batch, labels = _simulate(rows=1000)
    again, _ = _simulate(rows=1000)
    pd.testing.assert_frame_equal(batch, again)
    assert list(batch.columns) == [
        "request_id",
        "record",
        "timestamp",
        "tenure",
        "charges",
        "contract",
    ]
    assert batch["request_id"].is_unique and batch["request_id"][0] == "sim-1-0"
    assert (batch["record"] == 0).all() and str(batch["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert batch["timestamp"].min() == START
    assert START + pd.Timedelta(days=7) - pd.Timedelta(minutes=11) < batch["timestamp"].max()
    assert batch["timestamp"].max() < START + pd.Timedelta(days=7)
    assert list(labels.columns) == ["request_id", "record", "churn"]
    assert (labels["request_id"] == batch["request_id"]).all()
    other, _ = _simulate(rows=1000, seed=2)
    assert not other[["tenure", "charges"]].equals(batch[["tenure", "charges"]])


def test_float_columns_are_new_observations_not_copies_of_the_source() -> None:
    # copies of training rows would be refused by validate's duplicate rule after a retrain
    source = _source()
    batch, _ = _simulate(rows=2000)
    assert not batch["charges"].isin(source["charges"]).any()
    assert batch["charges"].between(source["charges"].min(), source["charges"].max()).all()
    assert batch["charges"].mean() == pytest.approx(source["charges"].mean(), rel=0.05)
    assert batch["tenure"].isin(source["tenure"]).all()  # int columns are drawn as they are
    copies, _ = simulate_batch(
        source, rows=2000, seed=1, target="churn", task="binary", start=START, days=7, jitter=0
    )
    assert copies["charges"].isin(source["charges"]).all()
    # a float column of few values (a code, a flag stored as float) stays on its values
    coded = source.assign(level=np.random.default_rng(3).choice([1.0, 2.0, 3.5], len(source)))
    batch, _ = simulate_batch(
        coded, rows=2000, seed=1, target="churn", task="binary", start=START, days=7
    )
    assert set(batch["level"]) == {1.0, 2.0, 3.5}
    assert not batch["charges"].isin(coded["charges"]).any()


def test_scale_shift_and_mix_move_what_they_say() -> None:
    base, _ = _simulate()
    scaled, _ = _simulate([Shift("scale", "charges", 1.3), Shift("shift", "tenure", 5)])
    assert scaled["charges"].to_numpy() == pytest.approx(base["charges"].to_numpy() * 1.3)
    assert scaled["tenure"].dtype == base["tenure"].dtype  # an int column stays whole
    assert (scaled["tenure"] - base["tenure"] == 5).all()
    mixed, _ = _simulate([Shift("mix", "contract", 0.2, "Two year")])
    before = (base["contract"] == "Two year").mean()
    after = (mixed["contract"] == "Two year").mean()
    assert after - before == pytest.approx(0.2, abs=0.015)
    # taken from the others in proportion
    others = mixed["contract"][mixed["contract"] != "Two year"].value_counts(normalize=True)
    assert others["Month-to-month"] == pytest.approx(0.6 / 0.85, abs=0.02)
    fewer, _ = _simulate([Shift("mix", "contract", -0.1, "Month-to-month")])
    assert (fewer["contract"] == "Month-to-month").mean() == pytest.approx(0.5, abs=0.015)


def test_label_shift_sets_the_class_share_and_concept_drift_keeps_the_inputs() -> None:
    _, labels = _simulate([Shift("label", value=0.5, category="Yes")])
    assert (labels["churn"] == "Yes").mean() == 0.5
    batch, labels = _simulate()
    drifted, changed = _simulate([Shift("concept", value=0.3)])
    pd.testing.assert_frame_equal(batch, drifted)  # the inputs are untouched
    assert (labels["churn"] != changed["churn"]).mean() == pytest.approx(0.3, abs=0.015)
    # restricted to one contract: only those rows change
    _, some = _simulate([Shift("concept", value=1.0, where=("contract", "Two year"))])
    swapped = labels["churn"] != some["churn"]
    assert (batch.loc[swapped, "contract"] == "Two year").all()
    assert swapped.sum() == (batch["contract"] == "Two year").sum()


def test_concept_drift_of_a_regression_target_adds_noise() -> None:
    source = _source().assign(churn=np.random.default_rng(3).normal(100, 10, 4000))
    _, labels = _simulate(source=source, task="regression")
    _, noisy = _simulate([Shift("concept", value=1.0)], source=source, task="regression")
    spread = (noisy["churn"] - labels["churn"]).std()
    assert spread == pytest.approx(10, rel=0.1)


@pytest.mark.parametrize(
    ("shift", "message"),
    [
        (Shift("scale", "nope", 1.1), "--scale nope=1.1: no feature column 'nope'"),
        (Shift("shift", "contract", 1), "--shift contract=1: column 'contract' is categorical"),
        (Shift("mix", "contract", 0.2, "Weekly"), "'Weekly' is not a value of 'contract'"),
        (Shift("mix", "contract", 0.9, "Two year"), "at most 8"),
        (Shift("label", value=1.5, category="Yes"), "--label-shift Yes=1.5: the share must be"),
        (Shift("label", value=0.5, category="Maybe"), "'Maybe' is not a class of 'churn'"),
        (Shift("concept", value=-0.1), "--concept -0.1: the fraction of rows must be"),
        (Shift("concept", value=0.1, where=("plan", "x")), "--where plan=x: no column 'plan'"),
    ],
)
def test_bad_shifts_name_the_option_and_value(shift: Shift, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace("+", r"\+")):
        _simulate([shift], rows=500)


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "conf", project / "conf")
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    return project


def test_cli_writes_batch_and_labels_and_refuses_bad_options(tmp_path: Path) -> None:
    project = _project(tmp_path)
    source = tmp_path / "source.csv"
    frame = _source(500)
    frame.to_csv(source, index=False)
    out, labels = tmp_path / "batch.parquet", tmp_path / "labels.csv"
    args = ["simulate", "-C", str(project), "--source", str(source), "-o", str(out)]
    args += ["--labels", str(labels), "--rows", "300", "--end", "2026-12-01", "--days", "2"]
    result = CliRunner().invoke(
        app, [*args, "--scale", "tenure=1.3", "--mix", "contract=Two year:+0.3"]
    )
    assert result.exit_code == 0, result.output
    assert "--scale tenure=1.3, --mix contract=Two year:+0.3" in result.output
    batch, truth = pd.read_parquet(out), pd.read_csv(labels)
    assert len(batch) == len(truth) == 300 and "churn" not in batch.columns
    assert batch["timestamp"].max() < pd.Timestamp("2026-12-01", tz="UTC")
    assert set(truth["churn"]) <= {"No", "Yes"}
    written = out.read_bytes()
    result = CliRunner().invoke(app, [*args, "--scale", "contract=1.1"])
    assert result.exit_code != 0
    assert "--scale contract=1.1: column 'contract' is categorical" in str(result.exception)
    assert out.read_bytes() == written  # nothing overwritten
    result = CliRunner().invoke(app, [*args, "--mix", "contract=0.2"])
    assert "--mix contract=0.2: expected COL=CATEGORY:+SHARE" in str(result.exception)
