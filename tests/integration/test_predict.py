"""`gitml predict`: chunked batch scoring of CSV and Parquet files, with bad rows."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.integration.faults import file_size_limit, mode_abiding
from tests.support import gitml

BAD_ROWS = {700: ("tenure", "-4", "min"), 1200: ("contract", "Weekly", "category")}


@pytest.fixture(scope="module")
def bad_csv(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test set as CSV (1,409 rows: three chunks of 500) with two bad data rows."""
    table = pq.read_table(built_repo / "data/processed/test.parquet")
    path = tmp_path_factory.mktemp("predict") / "input.csv"
    pacsv.write_csv(table, path)
    lines = path.read_text().splitlines()
    header = next(csv.reader([lines[0]]))
    for row, (column, value, _) in BAD_ROWS.items():
        cells = next(csv.reader([lines[row]]))  # data row N is line N + 1 (header first)
        cells[header.index(column)] = value
        lines[row] = ",".join(f'"{c}"' for c in cells)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fail_policy_names_the_first_bad_row_and_writes_nothing(
    built_repo: Path, bad_csv: Path
) -> None:
    out = bad_csv.parent / "fail.parquet"
    proc = gitml(
        "predict", str(bad_csv), "-o", str(out), "--chunk-size", "500", cwd=built_repo, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        f"error: {bad_csv}: row 700: column 'tenure': [min] must be >= 0 (got '-4')"
    )
    assert "--on-error skip" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
    assert not [p for p in bad_csv.parent.iterdir() if p.name.startswith(".gitml-tmp-")]


def test_skip_policy_scores_good_rows_and_reports_bad_ones(
    built_repo: Path, bad_csv: Path, scored: np.ndarray
) -> None:
    out = bad_csv.parent / "skip.parquet"
    proc = gitml(
        "predict",
        str(bad_csv),
        "-o",
        str(out),
        "--chunk-size",
        "500",
        "--on-error",
        "skip",
        cwd=built_repo,
    )
    assert "scored 1,407 of 1,409 rows" in proc.stdout and "rejected 2" in proc.stdout
    result = pq.read_table(out).to_pandas()
    assert len(result) == 1407
    assert not set(BAD_ROWS) & set(result["row"])
    good = np.array([r - 1 for r in range(1, 1410) if r not in BAD_ROWS])
    assert result["row"].tolist() == (good + 1).tolist()
    assert np.max(np.abs(result["score"].to_numpy() - scored[good])) <= 1e-12
    assert result["label"].tolist() == np.where(scored[good] >= 0.5, "Yes", "No").tolist()
    rejected = pacsv.read_csv(Path(f"{out}.rejected.csv")).to_pylist()
    assert [(r["row"], r["column"], r["value"], r["rule"]) for r in rejected] == [
        (row, *spec) for row, spec in BAD_ROWS.items()
    ]
    assert rejected[0]["reason"] == "must be >= 0"


def test_parquet_in_csv_out_round_trips_the_scores(
    built_repo: Path, tmp_path: Path, scored: np.ndarray
) -> None:
    out = tmp_path / "scores.csv"
    for target in (out, tmp_path / "scores.parquet"):
        gitml(
            "predict", "data/processed/test.parquet", "-o", str(target), "--keep", "churn",
            "--keep", "_row",  # carried anyway: asking for it too once failed (a doubled field)
            cwd=built_repo,
        )  # fmt: skip
    result = pacsv.read_csv(out).to_pandas()
    assert list(result.columns) == ["row", "_row", "churn", "score", "label"]
    # CSV keeps every digit: the same float64 as the Parquet output, bit for bit
    exact = pq.read_table(tmp_path / "scores.parquet")["score"].to_numpy()
    assert np.array_equal(result["score"].to_numpy(), exact)
    # the fast path (verified against the pipeline) agrees with evaluate's scores to 1e-12
    assert np.max(np.abs(exact - scored)) <= 1e-12


def test_a_file_without_a_required_column_is_refused(built_repo: Path, tmp_path: Path) -> None:
    table = pq.read_table(built_repo / "data/processed/test.parquet").drop_columns(["tenure"])
    source = tmp_path / "no-tenure.parquet"
    pq.write_table(table, source)
    out = tmp_path / "out.csv"
    proc = gitml("predict", str(source), "-o", str(out), cwd=built_repo, check=False)
    assert proc.returncode == 1
    assert "lacks the model's required input columns ['tenure']" in proc.stderr
    assert not out.exists()


def test_score_file_streams_chunks_in_process(
    built_repo: Path, tmp_path: Path, scored: np.ndarray
) -> None:
    """The library entry point (what benchmarks call): chunks of 100 rows, progress reported."""
    from gitml.serve.batch import score_file
    from gitml.serve.bundle import load_project_model

    seen: list[int] = []
    summary = score_file(
        load_project_model(built_repo),
        built_repo / "data/processed/test.parquet",
        tmp_path / "out.parquet",
        threshold=0.5,
        chunk_size=100,
        progress=lambda done, total: seen.append(done),
    )
    assert summary.rows == summary.scored == 1409 and summary.rejected == 0
    assert seen == [*range(100, 1401, 100), 1409]
    written = pq.read_table(tmp_path / "out.parquet")
    assert written.schema.field("score").type == pa.float64()
    assert np.max(np.abs(written["score"].to_numpy() - scored)) <= 1e-12


@pytest.mark.parametrize("fault", ["unwritable directory", "/dev/full", "file size limit"])
def test_a_failed_write_is_one_error_line_and_leaves_no_partial_file(
    built_repo: Path, bad_csv: Path, tmp_path: Path, fault: str
) -> None:
    """Real faults in a real `gitml predict` process; the previous output stays as it was and
    no rejects file appears (the run skips two bad rows, so it would write one)."""
    directory = tmp_path / "out"
    directory.mkdir()
    out = directory / "scores.parquet"
    out.write_bytes(b"the previous run's output")
    source, preexec, options = str(bad_csv), None, ["--on-error", "skip"]
    if fault == "unwritable directory":
        directory.chmod(0o555)
        preexec, reason = mode_abiding(), "Permission denied"
    elif fault == "/dev/full":
        source, options = "data/processed/test.parquet", []  # no bad rows, no rejects file
        out, reason = Path("/dev/full"), "No space left on device"
    else:  # a full disk: the scores of 1,409 rows take more than 16 KiB
        preexec, reason = file_size_limit(16 * 1024), "File too large"
    proc = subprocess.run(
        [sys.executable, "-m", "gitml", "predict", source, "-o", str(out), *options],
        cwd=built_repo,
        capture_output=True,
        text=True,
        preexec_fn=preexec,
        timeout=120,
    )
    directory.chmod(0o755)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [f"error: cannot write predictions to {out}: {reason}"]
    assert proc.stdout == ""
    assert [p.name for p in directory.iterdir()] == ["scores.parquet"]
    assert (directory / "scores.parquet").read_bytes() == b"the previous run's output"


def test_explain_adds_additive_contribution_columns_in_chunks(
    built_repo: Path, bad_csv: Path, scored: np.ndarray
) -> None:
    """`--explain` with chunks and skipped rows: the scores are unchanged, and each row's
    contributions sum to its log-odds less the baseline recorded in signature.json."""
    import json

    out = bad_csv.parent / "explained.parquet"
    proc = gitml(
        "predict", str(bad_csv), "-o", str(out), "--chunk-size", "500", "--on-error", "skip",
        "--explain", cwd=built_repo,
    )  # fmt: skip
    assert "explained: output log_odds, method linear, reference training_mean" in proc.stdout
    result = pq.read_table(out).to_pandas()
    signature = json.loads((built_repo / "models/signature.json").read_text())
    inputs = [i["name"] for i in signature["inputs"]]
    contributions = [f"contribution:{name}" for name in inputs]
    assert list(result.columns) == [
        "row", "_row", "score", "label", "explanation:baseline", "explanation:value",
        *contributions,
    ]  # fmt: skip
    good = np.array([r - 1 for r in range(1, 1410) if r not in BAD_ROWS])
    assert np.max(np.abs(result["score"].to_numpy() - scored[good])) <= 1e-12
    value = result["explanation:value"].to_numpy()
    baseline = result["explanation:baseline"].to_numpy()
    assert (baseline == signature["explanation"]["baseline"]).all()
    total = result[contributions].to_numpy().sum(axis=1)
    assert np.max(np.abs(baseline + total - value)) <= 1e-9
    assert np.max(np.abs(1 / (1 + np.exp(-value)) - scored[good])) <= 1e-12


def test_explain_is_refused_on_the_dask_engine_before_anything_runs(
    built_repo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "parts"
    proc = gitml(
        "predict", "data/processed/test.parquet", "-o", str(out), "--engine", "dask",
        "--explain", cwd=built_repo, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "error: --explain works with --engine local only (got --engine dask)" in proc.stderr
    assert not out.exists()
