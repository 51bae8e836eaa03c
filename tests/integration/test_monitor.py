"""`gitml monitor` end to end: a released reference project, real batches, logs and labels.

One private copy of the built reference project per module, released once as
churn-classifier@v1.0.0 (its own DVC remote), so prediction-log rows of v1.0.0 resolve
through the registry: the model fetched and verified, the training split read at the tag.
Batches are rows sampled from the held-out test split; a shifted batch scales `tenure`.
Every run writes into its own --out; only the history test appends to the history.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support import copy_repo, dvc, git, gitml

NAME = "churn-classifier"
CHROMIUM = Path("/usr/bin/chromium")
# a resource the browser would fetch: src/href/url() or an @import pointing at the network
REMOTE = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?(https?:)?//|@import""")


@pytest.fixture(scope="module")
def released(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the built project whose HEAD is registered as v1.0.0: the annotated GTO tag
    `gitml release` writes (its gate and push are test_registry's; the model and the split
    are in this copy's DVC cache)."""
    base = tmp_path_factory.mktemp("monitor")
    repo = copy_repo(built_repo, base / "project")
    git("tag", "-a", f"{NAME}@v1.0.0", "-m", "Registered v1.0.0", cwd=repo)
    return repo


def _sample(repo: Path, rows: int, seed: int, *, scale: float = 1.0) -> pd.DataFrame:
    test = pd.read_parquet(repo / "data/processed/test.parquet")
    # without replacement: a subsample of the held-out split is itself an i.i.d. sample of the
    # population (with replacement it would repeat the split's own sampling error)
    batch = test.sample(rows, replace=False, random_state=seed).reset_index(drop=True)
    if scale != 1.0:
        batch["tenure"] = (batch["tenure"] * scale).clip(0, 120).round().astype(int)
    return batch


def _batch_csv(repo: Path, path: Path, rows: int, seed: int, *, scale: float = 1.0) -> Path:
    _sample(repo, rows, seed, scale=scale).drop(columns=["_row", "churn"]).to_csv(path, index=False)
    return path


def _write_log(repo: Path, path: Path, frame: pd.DataFrame, day: str, *, model: str = NAME):
    """Prediction-log rows (the server's schema) for `frame`, spread over `day`, as served by
    v1.0.0: outputs computed with the released model (the working tree's, unchanged)."""
    from gitml.config.compose import load_params
    from gitml.monitor.reference import workspace_reference
    from gitml.project import find_project

    project = find_project(repo)
    scorer = workspace_reference(project, load_params(project.params_path)).scorer
    scored = scorer.score(frame)
    n = len(frame)
    data: dict[str, object] = {
        "request_id": [f"{day}-{k}" for k in range(n)],
        "record": pa.array(np.zeros(n, dtype=np.int32)),
        "timestamp": pd.Timestamp(day, tz="UTC") + pd.to_timedelta(np.arange(n) * 86_000 / n, "s"),
        "model_name": [model] * n,
        "model_version": ["v1.0.0"] * n,
    }
    for item in scorer.signature["inputs"]:
        column = frame[item["name"]]
        data[item["name"]] = column.astype(str) if item["type"] == "category" else column * 1.0
    data["score"], data["label"] = scored["score"], scored["label"].astype(str)
    pq.write_table(pa.Table.from_pandas(pd.DataFrame(data), preserve_index=False), path)


@pytest.fixture(scope="module")
def logs(released: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two days of log: 2026-11-28 i.i.d., 2026-11-29 with tenure scaled by 1.5; plus a file
    still being written (a dot-file), which the monitor must skip."""
    directory = tmp_path_factory.mktemp("logs") / "predictions"
    directory.mkdir()
    first = _sample(released, 600, seed=1)
    _write_log(
        released, directory / "predictions-20261128T000000Z-1-0.parquet", first, "2026-11-28"
    )
    second = _sample(released, 600, seed=2, scale=1.5)
    _write_log(
        released, directory / "predictions-20261129T000000Z-1-1.parquet", second, "2026-11-29"
    )
    (directory / ".predictions-1-2.parquet.part").write_bytes(b"PAR1 half-written")
    # labels of the first day: the truth, and a degraded copy (a segment's labels flipped)
    labels = pd.DataFrame(
        {"request_id": [f"2026-11-28-{k}" for k in range(len(first))], "record": 0}
    )
    labels["churn"] = first["churn"].astype(str)
    labels.to_csv(directory.parent / "labels.csv", index=False)
    segment = first["contract"].astype(str) == "Month-to-month"
    flipped = labels["churn"].where(~segment, labels["churn"].map({"Yes": "No", "No": "Yes"}))
    labels.assign(churn=flipped).to_csv(directory.parent / "labels-degraded.csv", index=False)
    return directory


def _monitor(repo: Path, out: Path, *args: str, history: bool = False):
    extra = [] if history else ["--no-history"]
    return gitml("monitor", *args, "--out", str(out), *extra, cwd=repo, check=False)


@pytest.fixture(scope="module")
def batch_runs(released: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two runs with the history on: an i.i.d. batch, then one with tenure scaled by 1.5."""
    base = tmp_path_factory.mktemp("batches")
    runs: dict[str, Any] = {}
    for name, seed, scale in (("iid", 11, 1.0), ("shifted", 12, 1.5)):
        batch = _batch_csv(released, base / f"{name}.csv", 1000, seed=seed, scale=scale)
        proc = _monitor(released, base / name, "--current", str(batch), history=True)
        runs[name] = (proc, base / name)
    return runs


def test_an_iid_batch_is_quiet(batch_runs: dict[str, Any]) -> None:
    quiet, out = batch_runs["iid"]
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith("quiet: no alarm on 1,000 rows")
    assert (out / "monitor.md").read_text().startswith("## Monitoring: no alert\n\n**Quiet**")


def test_a_shifted_batch_alerts_naming_the_column(batch_runs: dict[str, Any]) -> None:
    alert, out = batch_runs["shifted"]
    assert alert.returncode == 1, alert.stderr
    assert alert.stdout.startswith("ALERT")
    # tenure is what the model relies on most (reports/importance.json): it leads
    assert re.search(
        r"^  tenure \(importance rank 1, relied on\): ks [0-9.]+, wasserstein [0-9.]+ \u2265 "
        r"0\.05, p_adj ",
        alert.stdout,
        re.M,
    )
    report = (out / "monitor.md").read_text()
    assert report.startswith("## Monitoring: ALERT\n\n**ALERT**")
    assert re.search(r"^\| tenure \| \*\*0\.\d+ \(#1\)\*\* \| feature \| ks \|", report, re.M)
    assert "Drifted columns the model relies on come first, by importance" in report
    result = json.loads((out / "monitor.json").read_text())
    drifted = [c["column"] for r in result["drift"] for c in r["columns"] if c["drifted"]]
    assert "tenure" in drifted and not {"contract", "monthly_charges"} & set(drifted)
    (report_json,) = result["drift"]
    assert report_json["model_version"] == "workspace"  # a batch file has no versions
    first = report_json["columns"][0]
    assert (first["column"], first["importance_rank"], first["relied_on"]) == ("tenure", 1, True)
    assert (
        "reports/importance.json at the working tree, roc_auc on 1,409 test rows"
        in (report_json["ranking"])
    )


def test_the_html_report_renders_offline_in_chromium(
    batch_runs: dict[str, Any], tmp_path: Path
) -> None:
    if not CHROMIUM.is_file():
        pytest.skip("chromium is not installed")
    page = batch_runs["shifted"][1] / "monitor.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert not REMOTE.search(text)
    assert "tenure (feature)" in text  # the drifted column's plot title
    shot = tmp_path / "shot.png"
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", f"--screenshot={shot}", "--window-size=1200,1400",
         page.as_uri()],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    drawn = (pixels < 0.9).any(axis=2).mean()  # share of pixels that are not white-ish
    assert 0.02 < drawn < 0.9, f"blank or garbled screenshot ({drawn:.1%} drawn)"
    red = ((pixels[..., 0] > 0.7) & (pixels[..., 1] < 0.4) & (pixels[..., 2] < 0.45)).mean()
    assert red > 0.001  # the current data's bars (and the ALERT badge) are drawn


def test_the_history_has_a_row_per_run_and_charts_them(
    released: Path, batch_runs: dict[str, Any], tmp_path: Path
) -> None:
    shown = gitml("monitor", "--history", "--out", str(tmp_path), cwd=released)
    lines = [line for line in shown.stdout.splitlines() if line.startswith("20")]
    assert [line.split()[3] for line in lines] == ["quiet", "ALERT"]
    assert "tenure 0." in lines[1]  # the drifted column with its effect
    rows = (released / "reports" / "monitor" / "history.jsonl").read_text().splitlines()
    assert len(rows) == 2 and json.loads(rows[1])["drifted"].keys() >= {"tenure"}
    history = (tmp_path / "history.html").read_text()
    assert history.count("<svg") >= 1 and "tenure" in history and not REMOTE.search(history)


def test_a_prediction_log_window_is_compared_with_the_release_that_served_it(
    released: Path, logs: Path, tmp_path: Path
) -> None:
    day2 = _monitor(released, tmp_path / "d2", "--current", str(logs), "--since", "2026-11-29")
    assert day2.returncode == 1 and "  tenure (importance rank 1, relied on): ks" in day2.stdout
    assert "### Drift: v1.0.0" in (tmp_path / "d2" / "monitor.md").read_text()
    result = json.loads((tmp_path / "d2" / "monitor.json").read_text())
    assert result["current_rows"] == 600  # the second day only; the dot-file skipped
    (report,) = result["drift"]
    assert report["reference"].startswith(f"{NAME}@v1.0.0 training split")
    # ranked by the release commit's own importance, read through Git
    assert f"reports/importance.json at {NAME}@v1.0.0 (" in report["ranking"]
    assert report["columns"][0]["column"] == "tenure"

    empty = _monitor(released, tmp_path / "d3", "--current", str(logs), "--since", "2026-12-05")
    assert empty.returncode == 2
    assert f"error: {logs}: no rows between 2026-12-05T00:00:00+00:00" in empty.stderr
    assert not (tmp_path / "d3").exists()


def test_a_git_revision_is_a_reference_and_a_bad_one_is_refused(
    released: Path, logs: Path, tmp_path: Path
) -> None:
    window = ("--current", str(logs), "--until", "2026-11-29")
    run = _monitor(released, tmp_path / "rev", *window, "--reference", "HEAD", "--no-estimate")
    assert run.returncode == 0, run.stdout + run.stderr
    commit = git("rev-parse", "HEAD", cwd=released).stdout.strip()
    result = json.loads((tmp_path / "rev" / "monitor.json").read_text())
    assert result["performance"] == []  # --no-estimate: drift and quality only
    (report,) = result["drift"]
    assert report["reference"].startswith(f"revision HEAD ({commit[:12]}) model")
    assert report["model_version"] == commit[:12]
    assert f"reports/importance.json at revision HEAD ({commit[:12]})" in report["ranking"]

    bad = _monitor(released, tmp_path / "bad", *window, "--reference", "no-such-branch")
    assert bad.returncode == 2
    assert "--reference 'no-such-branch': not a file, a release" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_late_labels_of_a_degraded_segment_raise_a_performance_alarm(
    released: Path, logs: Path, tmp_path: Path
) -> None:
    window = ("--current", str(logs), "--until", "2026-11-29")
    degraded = _monitor(
        released, tmp_path / "bad", *window, "--labels", str(logs.parent / "labels-degraded.csv")
    )
    assert degraded.returncode == 1, degraded.stderr
    assert re.search(
        r"roc_auc 0\.[0-7]\d* \[.*\] below the floor 0\.8 \(600 labelled rows\)", degraded.stdout
    )
    result = json.loads((tmp_path / "bad" / "monitor.json").read_text())
    # the first day's window: its inputs are as in training, only the labels went bad
    assert result["current_rows"] == 600 and result["drift"][0]["model_version"] == "v1.0.0"
    assert not any(c["drifted"] for r in result["drift"] for c in r["columns"])
    (window_result,) = result["performance"]
    assert window_result["alarm"] and window_result["labelled"] == 600
    # concept drift, shown by estimated-versus-realised: calibrated scores expected far better
    assert "lies outside the estimated" in window_result["note"]
    assert "| roc_auc |" in (tmp_path / "bad" / "monitor.md").read_text()


def test_bad_input_exits_2_naming_the_file_and_writes_nothing(
    released: Path, logs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    missing = _monitor(released, out, "--current", str(tmp_path / "nope.csv"))
    assert (
        missing.returncode == 2 and f"error: {tmp_path / 'nope.csv'}: not found" in missing.stderr
    )

    small = _batch_csv(released, tmp_path / "small.csv", 50, seed=3)
    few = _monitor(released, out, "--current", str(small))
    assert few.returncode == 2
    assert f"error: {small}: 50 rows, fewer than monitor.min_rows (200)" in few.stderr

    other = tmp_path / "other"
    other.mkdir()
    frame = _sample(released, 300, seed=4)
    _write_log(
        released,
        other / "predictions-20261130T000000Z-1-0.parquet",
        frame,
        "2026-11-30",
        model="fraud-classifier",
    )
    foreign = _monitor(released, out, "--current", str(other))
    assert foreign.returncode == 2
    assert "written by model 'fraud-classifier', but this project's model is" in foreign.stderr
    assert "Traceback" not in missing.stderr + few.stderr + foreign.stderr
    assert not out.exists()


def test_a_dvc_tracked_batch_missing_from_the_workspace_is_pulled(
    released: Path, tmp_path: Path
) -> None:
    batch = _batch_csv(released, released / "data" / "production-batch.csv", 500, seed=5)
    dvc("add", "data/production-batch.csv", cwd=released)
    batch.unlink()  # tracked, in the cache, not in the workspace
    proc = _monitor(released, tmp_path / "out", "--current", "data/production-batch.csv")
    assert proc.returncode == 0, proc.stderr
    assert batch.is_file() and proc.stdout.startswith("quiet: no alarm on 500 rows")
