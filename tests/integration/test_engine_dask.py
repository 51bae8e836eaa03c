"""`--engine dask`: batch scoring and monitoring on a real Dask cluster.

One cluster for the module: a `dask scheduler` and two `dask worker` processes on 127.0.0.1
(the CLI entry points of distributed), which the CLI reaches with --scheduler. Inputs are the
reference test split repeated into Parquet partitions, with an `id` column unique across the
dataset, so that "every row exactly once" can be checked by id.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from gitml.config.compose import load_params
from tests.integration.dask_processes import DaskProcesses, dask_processes
from tests.integration.test_monitor import _monitor, _sample, _write_log
from tests.support import gitml


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskProcesses]:
    with dask_processes(workers=2) as processes:
        yield processes


def _dataset(built_repo: Path, directory: Path, parts: int, repeat: int = 1) -> Path:
    """`parts` Parquet files, each the test split `repeat` times, ids 0.. across all of them."""
    test = pq.read_table(built_repo / "data/processed/test.parquet")
    block = pa.concat_tables([test] * repeat)
    directory.mkdir(parents=True)
    for k in range(parts):
        ids = pa.array(np.arange(k * block.num_rows, (k + 1) * block.num_rows, dtype=np.int64))
        pq.write_table(block.append_column("id", ids), directory / f"day={k:02d}.parquet")
    return directory


def _read_parts(out: Path) -> pa.Table:
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"part-{k:05d}.parquet" for k in range(len(names))]  # nothing else
    return pa.concat_tables(pq.read_table(out / n) for n in names)


def test_scores_a_partitioned_dataset_as_the_local_path_does(
    built_repo: Path, tmp_path: Path, cluster: DaskProcesses, scored: np.ndarray
) -> None:
    source = _dataset(built_repo, tmp_path / "in", parts=4)
    out = tmp_path / "out"
    proc = gitml(
        "predict", str(source), "-o", str(out), "--engine", "dask",
        "--scheduler", cluster.address, "--keep", "id", "--chunk-size", "500",
        cwd=built_repo,
    )  # fmt: skip
    assert "scored 5,636 of 5,636 rows in 4 parts" in proc.stdout
    table = _read_parts(out)
    assert table.column_names == ["row", "_row", "id", "score", "label"]
    assert table["id"].to_pylist() == list(range(4 * len(scored)))
    assert table["row"].to_pylist() == list(range(1, len(scored) + 1)) * 4
    assert np.max(np.abs(table["score"].to_numpy() - np.tile(scored, 4))) <= 1e-12
    # the local engine on one of the partitions: the same bytes of scores
    from gitml.serve.batch import score_file
    from gitml.serve.bundle import load_project_model

    local = tmp_path / "local.parquet"
    threshold = load_params(built_repo / "params.yaml").threshold_for(None)
    served = load_project_model(built_repo)
    score_file(served, source / "day=02.parquet", local, threshold=threshold, chunk_size=500)
    part = pq.read_table(out / "part-00002.parquet")
    assert part["score"].equals(pq.read_table(local)["score"])


def test_a_glob_on_a_local_cluster_ships_the_model_by_path(
    built_repo: Path, tmp_path: Path, scored: np.ndarray
) -> None:
    source = _dataset(built_repo, tmp_path / "in", parts=2)
    out = tmp_path / "out"
    proc = gitml(
        "predict", str(source / "day=*.parquet"), "-o", str(out), "--engine", "dask",
        "--workers", "1",
        cwd=built_repo,
    )  # fmt: skip
    assert "in 2 parts" in proc.stdout and "1 Dask workers" in proc.stdout
    assert np.max(np.abs(_read_parts(out)["score"].to_numpy() - np.tile(scored, 2))) <= 1e-12


def test_a_bad_row_fails_the_job_naming_its_partition_and_keeps_the_old_output(
    built_repo: Path, tmp_path: Path, cluster: DaskProcesses
) -> None:
    source = _dataset(built_repo, tmp_path / "in", parts=3)
    bad = source / "day=01.parquet"
    table = pq.read_table(bad)
    tenure = table["tenure"].to_numpy().copy()
    tenure[699] = -4  # data row 700 of the second partition
    pq.write_table(table.set_column(table.column_names.index("tenure"), "tenure", [tenure]), bad)
    out = tmp_path / "out"
    out.mkdir()
    (out / "previous.txt").write_text("the last good run")
    args = ["predict", str(source), "-o", str(out), "--engine", "dask"]
    args += ["--scheduler", cluster.address]
    proc = gitml(*args, cwd=built_repo, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(
        f"error: {bad.resolve()}: row 700: column 'tenure': [min] must be >= 0 (got '-4')"
    )
    assert "hint: fix the input, or run with --on-error skip" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["previous.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gitml-tmp-")]

    proc = gitml(*args, "--on-error", "skip", cwd=built_repo)
    assert "scored 4,226 of 4,227 rows in 3 parts" in proc.stdout and "rejected 1" in proc.stdout
    assert not (out / "previous.txt").exists()
    rejected = (out / "part-00001.parquet.rejected.csv").read_text().splitlines()
    assert rejected[1].startswith('700,"tenure","min","-4"')
    assert 700 not in pq.read_table(out / "part-00001.parquet")["row"].to_pylist()


def test_a_worker_killed_mid_job_is_recovered_and_every_row_is_written_once(
    built_repo: Path, tmp_path: Path, cluster: DaskProcesses, scored: np.ndarray
) -> None:
    parts, repeat = 16, 6
    source = _dataset(built_repo, tmp_path / "in", parts=parts, repeat=repeat)
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "gitml", "predict", str(source), "-o", str(out),
        "--engine", "dask", "--scheduler", cluster.address, "--keep", "id",
        "--chunk-size", "300",
    ]  # fmt: skip
    job = subprocess.Popen(
        command, cwd=built_repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    killed = None
    while time.monotonic() < deadline and job.poll() is None:
        staged = list(tmp_path.glob(".gitml-tmp-out.*/part-*.parquet"))
        if len(staged) >= 2:
            killed = cluster.kill_worker()
            break
        time.sleep(0.02)
    stdout, stderr = job.communicate(timeout=180)
    assert killed is not None, "the job ended before a worker could be killed"
    assert len(staged) < parts, "every part existed before the kill"
    assert job.returncode == 0, stderr
    assert f"in {parts} parts" in stdout
    table = _read_parts(out)
    ids = table["id"].to_numpy()
    assert len(ids) == len(np.unique(ids)) == parts * repeat * len(scored)
    order = np.argsort(ids)
    expected = np.tile(scored, parts * repeat)
    assert np.max(np.abs(table["score"].to_numpy()[order] - expected)) <= 1e-12
    assert pc.all(pc.greater(table["row"], 0)).as_py()
    cluster.wait_for_workers(2)  # the nanny has started a new worker for the next tests


def test_a_worker_that_finds_another_hash_refuses_the_model(
    built_repo: Path, tmp_path: Path, cluster: DaskProcesses
) -> None:
    from gitml.cluster import connect
    from gitml.errors import ModelError
    from gitml.serve.bundle import check_project_model
    from gitml.serve.partitioned import PartOptions, score_dataset, ship_model

    files = check_project_model(built_repo)
    claimed = dict(files.metadata, model_file={**files.metadata["model_file"], "sha256": "0" * 64})
    forged = dataclasses.replace(files, metadata=claimed)  # the client "verified" another file
    source = _dataset(built_repo, tmp_path / "in", parts=2)
    options = PartOptions(0.5, chunk_size=1000, on_error="fail", unknown_category="reject")
    with connect(cluster.address) as engine:
        for with_bytes in (False, True):
            shipment = ship_model(forged, with_bytes=with_bytes)
            with pytest.raises(ModelError, match="refuses the model") as caught:
                score_dataset(engine, shipment, source, tmp_path / "o", options)
            assert "000000000000" in str(caught.value)
    assert not (tmp_path / "o").exists()


def test_an_unreachable_scheduler_is_named(built_repo: Path, tmp_path: Path) -> None:
    from gitml.cluster import connect
    from gitml.errors import ClusterError

    unreachable = r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9 within 1 s"
    with pytest.raises(ClusterError, match=unreachable), connect("tcp://127.0.0.1:9", timeout=1):
        pass


# -- gitml monitor --engine dask ------------------------------------------------------------


def _monitor_here(
    repo: Path, out: Path, current: Path, labels: Path | None = None, engine=None
) -> int:
    """`gitml monitor --no-history` run in this process (no interpreter start): its exit code."""
    import tempfile

    from gitml.monitor.run import run_monitor, write_outputs
    from gitml.project import find_project

    project = find_project(repo)
    params = load_params(project.params_path)
    with tempfile.TemporaryDirectory() as workdir:
        outcome = run_monitor(
            project, params, current=current, labels=labels, workdir=Path(workdir), engine=engine
        )
    write_outputs(outcome.result, out)
    return 1 if outcome.result.alert else 0


def _same_result(local: Path, distributed: Path) -> dict:
    """The two runs' monitor.json, equal but for the time of the run."""
    a, b = (json.loads((d / "monitor.json").read_text()) for d in (local, distributed))
    a.pop("created"), b.pop("created")
    assert a == b
    texts = [(d / "monitor.md").read_text().splitlines() for d in (local, distributed)]
    assert [line for line in texts[0] if "T" not in line] == [
        line for line in texts[1] if "T" not in line
    ]  # the run's time aside
    return a


def test_monitoring_a_log_on_the_cluster_gives_the_local_statistics_and_verdicts(
    built_repo: Path, tmp_path: Path, cluster: DaskProcesses
) -> None:
    """Four days of prediction log (two i.i.d., two with tenure scaled) of the working tree's
    model, labels for the first: drift, quality and performance windows equal, counted on two
    workers."""
    logs = tmp_path / "predictions"
    logs.mkdir()
    samples = [_sample(built_repo, 400, seed=k, scale=1.5 if k > 1 else 1.0) for k in range(4)]
    whole = tmp_path / "whole.parquet"
    _write_log(built_repo, whole, pd.concat(samples, ignore_index=True), "2026-11-24")
    log = pq.read_table(whole)  # as served by the working tree's model, cut into four files
    log = log.set_column(
        log.column_names.index("model_version"), "model_version", pa.array(["unreleased"] * 1600)
    )
    for k in range(4):
        name = f"predictions-20261124T{k:02d}0000Z-1-{k}.parquet"
        pq.write_table(log.slice(400 * k, 400), logs / name, row_group_size=150)
    labels = pd.DataFrame({"request_id": [f"2026-11-24-{i}" for i in range(400)], "record": 0})
    labels["churn"] = samples[0]["churn"].astype(str)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    local = _monitor_here(built_repo, tmp_path / "local", logs, tmp_path / "labels.csv")
    args = ["--current", str(logs), "--labels", str(tmp_path / "labels.csv")]
    dask = _monitor(
        built_repo, tmp_path / "dask", *args, "--engine", "dask", "--scheduler", cluster.address
    )
    assert local == dask.returncode == 1, dask.stderr  # tenure drifted: an alert
    assert dask.stdout.startswith("ALERT")
    assert "  tenure (importance rank 1, relied on): ks" in dask.stdout  # ranked on Dask too
    result = _same_result(tmp_path / "local", tmp_path / "dask")
    assert result["current_rows"] == 1600
    assert any(c["drifted"] for r in result["drift"] for c in r["columns"])
    assert result["performance"]


def test_a_batch_without_outputs_is_scored_by_workers_that_load_the_model(
    built_repo: Path, tmp_path: Path, cluster: DaskProcesses
) -> None:
    batch = tmp_path / "batch.parquet"
    _sample(built_repo, 1000, seed=7).drop(columns=["_row", "churn"]).to_parquet(batch)
    from gitml.cluster import connect

    local = _monitor_here(built_repo, tmp_path / "local", batch)
    with connect(cluster.address) as engine:  # remote: the model's bytes are sent
        dask = _monitor_here(built_repo, tmp_path / "dask", batch, engine=engine)
    assert local == dask == 0
    result = _same_result(tmp_path / "local", tmp_path / "dask")
    assert {c["column"] for r in result["drift"] for c in r["columns"]} >= {"score", "label"}
