"""The reference pipeline end to end, in real git + DVC repositories."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from gitml.evaluate.calibrator import calibrate
from tests.support import dvc, git, gitml, ran_stages, run

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["ingest", "validate", "split", "train", "evaluate", "importance", "card"]


def _metrics(repo: Path) -> dict:
    return json.loads((repo / "reports/metrics.json").read_text())


def test_repro_from_scratch_builds_everything(built_repo: Path) -> None:
    log = (built_repo.parent / "first-repro.log").read_text()
    assert ran_stages(log) == STAGES
    for rel in [
        "data/raw/telco_churn.parquet",
        "data/processed/train.parquet",
        "data/processed/test.parquet",
        "models/model.skops",
        "models/signature.json",
        "models/metadata.json",
        "reports/validation.json",
        "reports/validation.md",
        "reports/metrics.json",
        "reports/slices.json",
        "reports/predictions.csv",
        "reports/plots/roc.json",
        "reports/plots/precision_recall.json",
        "reports/plots/calibration.json",
        "reports/model_card.md",
        "reports/calibrator.json",
        "reports/importance.json",
    ]:
        assert (built_repo / rel).is_file(), rel
    metrics = _metrics(built_repo)
    assert metrics["metrics"]["roc_auc"] >= 0.83  # the quality bar
    assert metrics["test_set"]["rows"] == 1409
    slices = json.loads((built_repo / "reports/slices.json").read_text())["slices"]
    assert set(slices) == {"female", "senior_citizen", "contract"}
    assert set(slices["contract"]["groups"]) == {"Month-to-month", "One year", "Two year"}
    # small outputs are committed to Git; data and the model are DVC's
    tracked = git("ls-files", cwd=built_repo).stdout.split()
    assert "reports/metrics.json" in tracked and "models/signature.json" in tracked
    assert "reports/calibrator.json" in tracked and "reports/importance.json" in tracked
    assert "models/model.skops" not in tracked and "data/raw/telco_churn.parquet" not in tracked
    assert "dvc.lock" in tracked
    _check_calibrator(built_repo)
    _check_importance(built_repo)


def _check_importance(repo: Path) -> None:
    """reports/importance.json in the contract's shape: every input column once, ranked by
    importance; the model card shows the top ones."""
    importance = json.loads((repo / "reports/importance.json").read_text())
    assert list(importance) == [
        "importance_version", "model_name", "estimator", "task", "metric", "higher_is_better",
        "score", "rows", "repeats", "bootstrap", "seed", "columns",
    ]  # fmt: skip
    assert importance["metric"] == "roc_auc" and importance["seed"] == 42
    assert importance["score"] == _metrics(repo)["metrics"]["roc_auc"]  # all test rows used
    assert importance["rows"] == {
        "test": 1409,
        "used": 1409,
        "subsampled": False,
        "max_rows": 50000,
    }
    signature = json.loads((repo / "models/signature.json").read_text())
    columns = importance["columns"]
    assert sorted(c["name"] for c in columns) == sorted(i["name"] for i in signature["inputs"])
    assert [c["rank"] for c in columns] == list(range(1, len(columns) + 1))
    values = [c["importance"] for c in columns]
    assert values == sorted(values, reverse=True)
    assert columns[0]["name"] == "tenure" and columns[0]["low"] > 0
    card = (repo / "reports/model_card.md").read_text()
    assert "## What the model relies on" in card and "| 1 | `tenure` |" in card


def _check_calibrator(repo: Path) -> None:
    """The calibrator is fitted on the held-out rows: on them, its probabilities average to
    the observed churn rate (isotonic regression keeps the mean)."""
    calibrator = json.loads((repo / "reports/calibrator.json").read_text())
    assert calibrator["method"] == "isotonic" and calibrator["rows"] == 1409
    assert calibrator["classes"] == ["No", "Yes"] and calibrator["positive_class"] == "Yes"
    predictions = pd.read_csv(repo / "reports/predictions.csv")
    assert len(predictions) == 1409
    probability = calibrate(calibrator, predictions["score"].to_numpy())
    churned = (predictions["actual"] == "Yes").mean()
    assert abs(probability.mean() - churned) < 1e-4


def test_second_repro_runs_nothing(repo: Path) -> None:
    proc = dvc("repro", cwd=repo)
    assert ran_stages(proc.stdout) == []
    assert "Data and pipelines are up to date" in proc.stdout
    assert git("status", "--porcelain", cwd=repo).stdout == ""


def test_evaluate_param_change_reruns_only_evaluate(repo: Path) -> None:
    conf = repo / "conf/evaluate/default.yaml"
    conf.write_text(conf.read_text().replace("threshold: 0.5", "threshold: 0.35"))
    gitml("params", cwd=repo)
    before = _metrics(repo)
    proc = dvc("repro", cwd=repo)
    assert ran_stages(proc.stdout) == ["evaluate", "card"]
    after = _metrics(repo)
    assert after["threshold"] == 0.35
    assert after["metrics"]["roc_auc"] == before["metrics"]["roc_auc"]  # same model
    assert after["metrics"]["recall"] > before["metrics"]["recall"]  # lower threshold


def test_model_change_reruns_train_and_evaluate_only(repo: Path) -> None:
    gitml("params", "model=random_forest", "model.params.n_estimators=60", cwd=repo)
    proc = dvc("repro", cwd=repo)
    assert ran_stages(proc.stdout) == ["train", "evaluate", "importance", "card"]
    assert _metrics(repo)["estimator"] == "random_forest"
    meta = json.loads((repo / "models/metadata.json").read_text())
    assert meta["hyperparameters"]["n_estimators"] == 60


def test_exp_run_composes_like_gitml_params(repo: Path, tmp_path: Path) -> None:
    baseline = _metrics(repo)
    dvc("exp", "run", "-S", "model=hist_gradient_boosting", cwd=repo)
    after = _metrics(repo)
    assert after["estimator"] == "hist_gradient_boosting"
    assert after["metrics"] != baseline["metrics"]
    assert after["metrics"]["roc_auc"] >= 0.80
    # DVC's own Hydra composition and `gitml params` write the very same bytes
    dvc_written = (repo / "params.yaml").read_bytes()
    assert gitml("params", "--check", "model=hist_gradient_boosting", cwd=repo).returncode == 0
    stale = gitml("params", "--check", cwd=repo, check=False)
    assert stale.returncode == 1
    assert "-  name: hist_gradient_boosting" in stale.stderr
    assert "+  name: logistic_regression" in stale.stderr
    gitml("params", "model=hist_gradient_boosting", cwd=repo)
    assert (repo / "params.yaml").read_bytes() == dvc_written


def _width(table: str) -> int:
    return max(len(line.rstrip()) for line in table.splitlines())


def test_make_exps_fits_160_columns_after_a_model_swap(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `dvc exp run -S model=...`, `dvc exp show --only-changed` is hundreds of columns
    wide (both models' hyperparameters, dependency hashes, every metric); `make exps` shows the
    models and the headline metrics side by side in 160 columns, nothing cut off."""
    monkeypatch.setenv("COLUMNS", "400")  # a wide terminal: DVC's table is as wide as it needs
    dvc("exp", "run", "-S", "model=random_forest", cwd=repo)
    full = dvc("exp", "show", "--only-changed", "--no-pager", cwd=repo).stdout
    assert _width(full) > 300 and "model.params.n_estimators" in full
    shutil.copy(ROOT / "Makefile", repo)  # not a pipeline file: the fixture leaves it out
    # --no-print-directory: under `make test`, a nested make would add "Entering directory"
    table = run("make", "--no-print-directory", "exps", f"VENV={sys.prefix}", cwd=repo).stdout
    assert _width(table) <= 160, table
    assert "…" not in table  # no column elided
    header = next(line for line in table.splitlines() if "Experiment" in line).split()
    assert header == [
        "Experiment",
        "metrics.roc_auc",
        "metrics.average_precision",
        "metrics.f1",
        "metrics.recall",
        "model.name",
    ]
    assert "logistic_regression" in table and table.count("random_forest") == 2  # exp, workspace


def test_params_check_catches_hand_edit(repo: Path) -> None:
    assert gitml("params", "--check", cwd=repo).returncode == 0
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("C: 1.0", "C: 2.5"))
    proc = gitml("params", "--check", cwd=repo, check=False)
    assert proc.returncode == 1
    assert "params.yaml is stale" in proc.stderr
    assert "-    C: 2.5" in proc.stderr and "+    C: 1.0" in proc.stderr
    assert "C: 2.5" in params.read_text()  # --check writes nothing


def test_bad_config_is_refused_and_params_yaml_is_left_as_the_readme_says(repo: Path) -> None:
    model, params = repo / "models/model.skops", repo / "params.yaml"
    before, committed = model.read_bytes(), params.read_text()
    # `gitml params` refuses before writing
    proc = gitml("params", "model.params.C=-1", cwd=repo, check=False)
    assert proc.returncode == 2 and "model.params.C: Input should be greater than 0" in proc.stderr
    assert params.read_text() == committed
    # `dvc exp run --temp` runs in a temporary copy: the workspace is untouched
    proc = dvc("exp", "run", "--temp", "-S", "model.params.C=-1", cwd=repo, check=False)
    assert proc.returncode != 0
    assert "model.params.C: Input should be greater than 0 (got -1)" in proc.stderr + proc.stdout
    assert params.read_text() == committed
    # plain `dvc exp run -S`: DVC writes params.yaml before the train stage refuses the value,
    # so params.yaml keeps it (no output is replaced); `git checkout params.yaml` undoes it
    proc = dvc("exp", "run", "-S", "model.params.C=-1", cwd=repo, check=False)
    assert proc.returncode != 0
    assert "model.params.C: Input should be greater than 0 (got -1)" in proc.stderr + proc.stdout
    assert model.read_bytes() == before
    assert "    C: -1\n" in params.read_text()
    git("checkout", "params.yaml", cwd=repo)
    assert params.read_text() == committed
    proc = dvc("exp", "run", "-S", "model=gradient_magic", cwd=repo, check=False)
    assert proc.returncode != 0
    out = proc.stderr + proc.stdout
    assert "gradient_magic" in out


@pytest.mark.slow
def test_a_queued_sweep_of_four_runs_on_two_queue_workers(repo: Path) -> None:
    """`dvc queue start -j 2` on a 2 x 2 sweep (a model swap and a hyperparameter): DVC's
    tracker reports queue jobs lost or left hanging at higher -j, so every experiment must
    finish, each with its own configuration and results, and both workers must take jobs."""
    dvc(
        "exp", "run", "--queue",
        "-S", "model=logistic_regression,hist_gradient_boosting",
        "-S", "model.params.class_weight=null,balanced",
        cwd=repo,
    )  # fmt: skip
    # `dvc queue start` forks a spawner that waits for its workers, holding the caller's
    # stdout: read through a pipe, it would keep the test waiting until the last worker exits.
    # A worker told to shut down while a job still ran can stay up for good (seen here: its
    # log says "shutting down due to empty queue" before the job's "succeeded", then nothing;
    # `dvc queue stop --kill` does not end it). The test waits on the tasks, never on workers.
    celery = repo / ".dvc/tmp/exps/celery"
    with (repo.parent / "queue-start.log").open("w") as log:
        started = subprocess.run(
            [sys.executable, "-m", "dvc", "queue", "start", "--jobs", "2"],
            cwd=repo, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            timeout=120, check=False,
        )  # fmt: skip
    try:
        assert started.returncode == 0, (repo.parent / "queue-start.log").read_text()
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            status = dvc("queue", "status", cwd=repo).stdout
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(2)
        else:
            dvc("queue", "kill", "--all", cwd=repo, check=False)
            pytest.fail(f"the queued sweep did not finish in 7 minutes:\n{status}")
    finally:  # no worker outlives the test, wedged or not
        for pidfile in celery.glob("dvc-exp-worker-*.pid"):
            try:
                pid = int(pidfile.read_text().strip())
                if b"queue-worker" in Path(f"/proc/{pid}/cmdline").read_bytes():  # not reused
                    os.kill(pid, signal.SIGKILL)
            except (ValueError, OSError):
                pass
    assert status.count("Success") == 4, status
    shown = json.loads(dvc("exp", "show", "--json", cwd=repo).stdout)
    runs: dict[tuple[str, str], tuple[float, ...]] = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                data = rev.get("data") or {}
                model = data.get("params", {}).get("params.yaml", {}).get("data", {})["model"]
                metrics = data["metrics"]["reports/metrics.json"]["data"]["metrics"]
                key = (model["name"], str(model["params"]["class_weight"]))
                runs[key] = (metrics["roc_auc"], metrics["f1"], metrics["log_loss"])
    assert set(runs) == {
        (name, weight)
        for name in ("logistic_regression", "hist_gradient_boosting")
        for weight in ("None", "balanced")
    }
    assert len(set(runs.values())) == 4, runs  # four distinct results, none copied
    # both queue workers ran experiments (their celery logs, one per `-j` worker)
    logs = sorted((repo / ".dvc/tmp/exps/celery").glob("dvc-exp-worker-*.out"))
    assert len(logs) == 2, logs
    for log in logs:
        assert "run_exp" in log.read_text() and "succeeded" in log.read_text(), log


def test_push_pull_round_trip(repo: Path, tmp_path: Path) -> None:
    # a remote of its own: the template's is shared by every test (and xdist worker)
    dvc("remote", "modify", "--local", "local", "url", str(tmp_path / "remote"), cwd=repo)
    dvc("push", cwd=repo)
    model = repo / "models/model.skops"
    original = model.read_bytes()
    import shutil

    shutil.rmtree(repo / ".dvc/cache")
    for rel in ["models/model.skops", "data/processed", "data/raw/telco_churn.parquet"]:
        path = repo / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    dvc("pull", cwd=repo)
    assert model.read_bytes() == original
    assert "up to date" in dvc("status", cwd=repo).stdout


def test_sigkill_during_train_leaves_no_partial_model(repo: Path) -> None:
    # a forest slow enough to be killed mid-fit
    gitml(
        "params",
        "model=random_forest",
        "model.params.n_estimators=1500",
        "model.params.n_jobs=1",
        cwd=repo,
    )
    good_model = (repo / "models/model.skops").read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Running stage 'train'"):
            break
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    models = repo / "models"
    # the killed run replaced nothing: the last good model is still there, whole
    assert (models / "model.skops").read_bytes() == good_model
    # and left nothing beside it: the new trio is staged in .dvc/tmp, ignored by git and dvc
    assert sorted(p.name for p in models.iterdir()) == [
        ".gitignore", "metadata.json", "model.skops", "signature.json"
    ]  # fmt: skip
    # the next repro recovers with no manual clean-up (smaller forest to keep the test short)
    gitml("params", "model=random_forest", "model.params.n_estimators=40", cwd=repo)
    again = dvc("repro", cwd=repo)
    assert "train" in ran_stages(again.stdout)
    assert not [p for p in models.iterdir() if p.name.startswith(".gitml-tmp-")]
    run(
        sys.executable,
        "-c",
        "from gitml.model.persist import load_model; load_model('models/model.skops')",
        cwd=repo,
    )
    assert "up to date" in dvc("status", cwd=repo).stdout


def test_dvc_plots_render_every_declared_plot(repo: Path) -> None:
    shown = json.loads(dvc("plots", "show", "--json", cwd=repo).stdout)["data"]
    assert set(shown) == {"ROC", "Precision-Recall", "Calibration", "Confusion matrix"}
    for name, renders in shown.items():
        assert not renders[0].get("errors"), name
        assert renders[0]["content"]["data"]["values"], name
    diff = json.loads(dvc("plots", "diff", "HEAD", "--json", cwd=repo).stdout)["data"]
    assert diff["ROC"][0]["revisions"] == ["workspace", "HEAD"]


def test_dvc_tracked_source_by_config_alone(repo: Path) -> None:
    import pandas as pd

    mine = repo / "data/external/mine.parquet"
    frame = pd.read_csv(repo / "data/external/telco_churn.csv.gz").sample(3000, random_state=1)
    frame.to_parquet(mine, index=False)
    dvc("add", "data/external/mine.parquet", cwd=repo)
    git("add", "data/external/mine.parquet.dvc", "data/external/.gitignore", cwd=repo)
    gitml("params", "data.source=data/external/mine.parquet", cwd=repo)
    proc = dvc("repro", cwd=repo)
    assert ran_stages(proc.stdout)[:2] == ["ingest", "validate"]
    report = json.loads((repo / "reports/validation.json").read_text())
    assert report["source"] == "data/external/mine.parquet" and report["rows"] == 3000
    assert _metrics(repo)["test_set"]["rows"] == 600
