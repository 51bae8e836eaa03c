"""One input contract from file to model: the same cells are judged and coerced alike by
ingest + validate (what `train` fits on), the HTTP API and `gitml predict`.

The project here is the reference one with `senior_citizen` declared as an integer-coded
category (`"0"`, `"1"`) and read from a Parquet source that holds it as int64, with the
public Telco file's `" "` for the 11 unbilled customers' `total_charges`.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitml.config.compose import load_params
from gitml.data.io import read_source, read_table, write_arrow
from gitml.data.typing import apply_declared_types
from gitml.data.validation import validate_frame
from gitml.model.scoring import score_frame
from gitml.serve.batch import score_file
from gitml.serve.bundle import ServedModel, load_project_model
from gitml.serve.fastpath import PARITY_TOLERANCE
from tests.integration.serving import ServerProcess
from tests.support import copy_repo, dvc, gitml

# findings about the batch as a whole, not about a row's cells
BATCH_RULES = {"class_balance", "duplicates", "min_rows", "max_null_fraction", "not_empty"}


def _original_telco_rows(repo: Path) -> list[str]:
    """The embedded CSV's lines, with the public file's `" "` for the blank totals."""
    text = gzip.decompress((repo / "data/external/telco_churn.csv.gz").read_bytes()).decode()
    return [line + " " if line.endswith(",") else line for line in text.splitlines()]


def _coded_project(built_repo: Path, destination: Path) -> Path:
    repo = copy_repo(built_repo, destination)
    conf = repo / "conf/data/telco_churn.yaml"
    text = conf.read_text()
    for old, new in (
        (
            "senior_citizen: {type: int, allowed: [0, 1]}",
            'senior_citizen: {type: category, categories: ["0", "1"]}',
        ),
        ("source: data/external/telco_churn.csv.gz", "source: data/external/coded.parquet"),
    ):
        assert old in text
        text = text.replace(old, new)
    conf.write_text(text)
    frame = pd.read_csv(
        repo / "data/external/telco_churn.csv.gz",
        keep_default_na=False,
        dtype={"total_charges": str},
    )
    frame["total_charges"] = frame["total_charges"].replace("", " ")
    assert frame["senior_citizen"].dtype == np.int64
    frame.to_parquet(repo / "data/external/coded.parquet", index=False)
    gitml("params", cwd=repo)
    dvc("repro", cwd=repo)
    return repo


@pytest.fixture(scope="module")
def coded_repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _coded_project(built_repo, tmp_path_factory.mktemp("contract") / "project")


@pytest.fixture(scope="module")
def coded_server(coded_repo: Path) -> ServerProcess:
    proc = ServerProcess(coded_repo, "--model", "models/model.skops")
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def served(coded_repo: Path) -> ServedModel:
    return load_project_model(coded_repo)


def _post(url: str, record: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/v1/predict", json={"records": [record]}, timeout=30)


# -- the two reported bugs ----------------------------------------------------------------


def test_original_telco_blank_totals_reach_the_model_as_missing(repo: Path) -> None:
    """Before: validate passed the `" "` cells and train died on `could not convert string to
    float: ' '`. Now they are missing values, imputed by the pipeline as declared."""
    (repo / "data/external/original.csv").write_text("\n".join(_original_telco_rows(repo)) + "\n")
    gitml("params", "data.source=data/external/original.csv", cwd=repo)
    proc = dvc("repro", cwd=repo, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "could not convert" not in output
    report = json.loads((repo / "reports/validation.json").read_text())
    assert report["status"] == "passed"
    assert report["null_counts"]["total_charges"] == 11
    assert (repo / "models/model.skops").is_file()


def test_integer_coded_categories_train_then_serve_and_batch_score(
    coded_repo: Path, coded_server: ServerProcess, tmp_path: Path
) -> None:
    """Before: ingest turned the codes into text, the model trained, and then the API and
    `gitml predict` refused every row (`expected a string`)."""
    signature = json.loads((coded_repo / "models/signature.json").read_text())
    inputs = {i["name"]: i for i in signature["inputs"]}
    assert inputs["senior_citizen"]["categories"] == ["0", "1"]
    source = pq.read_table(coded_repo / "data/external/coded.parquet")
    record = source.slice(0, 1).to_pylist()[0]
    record = {k: v for k, v in record.items() if k in inputs}
    record["total_charges"] = float(record["total_charges"])
    scores = []
    for code in (1, "1", 1.0, " 1 "):
        response = _post(coded_server.url, record | {"senior_citizen": code})
        assert response.status_code == 200, response.text
        scores.append(response.json()["predictions"][0]["score"])
    assert len(set(scores)) == 1
    # the int64 Parquet source itself, blanks in total_charges included
    out = tmp_path / "scores.csv"
    proc = gitml("predict", "data/external/coded.parquet", "-o", str(out), cwd=coded_repo)
    assert "scored 7,043 of 7,043 rows" in proc.stdout
    assert not Path(f"{out}.rejected.csv").exists()
    assert ": fast path on: matches the pipeline to " in coded_server.stderr


def test_predict_reads_blank_cells_and_integer_codes_like_the_api(
    coded_repo: Path, coded_server: ServerProcess, tmp_path: Path
) -> None:
    """`gitml predict` on a CSV with the public file's `" "` and integer codes: every row is
    scored, each exactly as the API scores the same record (null total, code 1)."""
    test = pq.read_table(coded_repo / "data/processed/test.parquet").slice(0, 6).to_pylist()
    features = load_params(coded_repo / "params.yaml").data.features
    path = tmp_path / "blanks.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(features)
        for i, row in enumerate(test):
            cells = {k: row[k] for k in features} | {"senior_citizen": str(i % 2)}
            if i < 3:
                cells["total_charges"] = " "
            writer.writerow(["" if cells[k] is None else cells[k] for k in features])
    out = tmp_path / "out.csv"
    proc = gitml("predict", str(path), "-o", str(out), cwd=coded_repo)
    assert "scored 6 of 6 rows" in proc.stdout
    written = pacsv.read_csv(out)["score"].to_pylist()
    for i, row in enumerate(test):
        record = {k: row[k] for k in features} | {"senior_citizen": i % 2}
        if i < 3:
            record["total_charges"] = None
        response = _post(coded_server.url, record)
        assert response.status_code == 200, response.text
        assert abs(response.json()["predictions"][0]["score"] - written[i]) <= PARITY_TOLERANCE


def test_predict_names_another_delimiter(built_repo: Path, tmp_path: Path) -> None:
    table = pq.read_table(built_repo / "data/processed/test.parquet").slice(0, 20)
    path = tmp_path / "semicolons.csv"
    pacsv.write_csv(table, path, pacsv.WriteOptions(delimiter=";"))
    out = tmp_path / "out.csv"
    proc = gitml("predict", str(path), "-o", str(out), cwd=built_repo, check=False)
    assert proc.returncode == 1
    assert f"error: {path}: looks ';'-separated" in proc.stderr
    assert "hint: convert it to comma-separated CSV" in proc.stderr
    assert "lacks the model's required input columns" not in proc.stderr
    assert not out.exists()


# -- one contract, three doors: a property test ---------------------------------------------


def _variants(column: str, value: Any) -> list[Any]:
    """What the same cell may look like when it arrives: valid, blank, text, bool, ..."""
    if column == "tenure":
        return [value, float(value), str(value), f" {value} ", f"{value}.0", value + 0.5]
    if column == "female":
        return [value, float(value), str(value), True, "", "  ", 2, "x", f"{value}.5"]
    if column == "monthly_charges":
        return [value, str(value), f" {value} ", False, "", None, "1e1", "abc"]
    if column == "total_charges":
        return [value, str(value), "", " ", None, "x", True, -5.0]
    if column == "senior_citizen":  # the integer-coded category
        return [int(value), float(value), value, f" {value} ", f"{value}.0", 2, True, "", None]
    if column == "contract":
        return [value, value.upper(), f"  {value.lower()} ", "Weekly", "", 1, None]
    return [value]


MUTABLE = ["tenure", "female", "monthly_charges", "total_charges", "senior_citizen", "contract"]


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _write_batch(rows: list[dict[str, Any]], columns: list[str], path: Path) -> None:
    if path.suffix == ".csv":
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            writer.writerows([[_cell_text(r[c]) for c in columns] for r in rows])
        return
    arrays = {}
    for c in columns:
        values = [r[c] for r in rows]
        kinds = {type(v) for v in values if v is not None}
        if kinds in ({bool}, {int}, {float}, {int, float}, {str}, set()):
            arrays[c] = pa.array(values)  # a typed Parquet column
        else:  # mixed: text, as a CSV would hold it
            arrays[c] = pa.array([None if v is None else _cell_text(v) for v in values])
    pq.write_table(pa.table(arrays), path)


def _file_path(coded: Path, source: Path, work: Path) -> tuple[set[int], pd.DataFrame]:
    """ingest's typing -> validate_frame: the rows refused, and the frame `train` fits on."""
    params = load_params(coded / "params.yaml")
    data = params.data
    table = read_source(source, expected=list(data.columns), text_columns=data.categorical)
    write_arrow(work / "raw.parquet", apply_declared_types(table, data))
    frame = read_table(work / "raw.parquet", categories=data.categorical)
    rules = params.validate_.model_copy(update={"examples": 100})
    report = validate_frame(frame, data, rules, source=str(source))
    refused = {
        int(example["row"]) - 1
        for finding in report.errors
        if finding.rule not in BATCH_RULES
        for example in finding.examples
    }
    return refused, frame[data.features]


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_file_api_and_predict_accept_refuse_and_coerce_alike(
    coded_repo: Path,
    coded_server: ServerProcess,
    served: ServedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = pq.read_table(coded_repo / "data/processed/test.parquet").slice(0, 40).to_pylist()
    columns = [*served.features, "churn"]
    pre = served.pipeline[:-1]

    @settings(
        max_examples=20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        picks=st.lists(
            st.tuples(
                st.integers(0, len(base) - 1),
                st.dictionaries(st.sampled_from(MUTABLE), st.integers(0, 50), max_size=3),
            ),
            min_size=1,
            max_size=6,
        ),
        suffix=st.sampled_from([".csv", ".parquet"]),
    )
    def check(picks: list, suffix: str) -> None:
        rows = []
        for index, changes in picks:
            row = {c: base[index][c] for c in columns}
            for column, k in changes.items():
                options = _variants(column, row[column])
                row[column] = options[k % len(options)]
            rows.append(row)
        work = tmp_path_factory.mktemp("batch")
        source = work / f"batch{suffix}"
        _write_batch(rows, columns, source)

        # (a) the file path; with refused rows, validate stops the pipeline: what `train`
        # fits on is then the file without them, once the user has removed them
        refused_a, frame_a = _file_path(coded_repo, source, work)
        accepted = [i for i in range(len(rows)) if i not in refused_a]
        if refused_a and accepted:
            fixed = work / f"fixed{suffix}"
            _write_batch([rows[i] for i in accepted], columns, fixed)
            still, frame_a = _file_path(coded_repo, fixed, work)
            assert not still, [suffix, [rows[i] for i in accepted]]
        # (b) the API, one request per row
        refused_b, scores_b = set(), {}
        for i, row in enumerate(rows):
            response = _post(coded_server.url, {k: row[k] for k in served.features})
            assert response.status_code in (200, 422), response.text
            if response.status_code == 422:
                refused_b.add(i)
            else:
                scores_b[i] = response.json()["predictions"][0]["score"]
        # (c) gitml predict, in process
        out = work / "out.parquet"
        summary = score_file(served, source, out, threshold=0.5, on_error="skip")
        rejected = (
            set(pacsv.read_csv(summary.rejected_path)["row"].to_pylist())
            if summary.rejected_path
            else set()
        )
        refused_c = {r - 1 for r in rejected}
        shown = [suffix] + [{k: row[k] for k in MUTABLE} for row in rows]
        assert refused_a == refused_b == refused_c, shown

        if not accepted:
            return
        scores_a = score_frame(
            served.pipeline,
            frame_a,
            features=served.features,
            positive_class=served.positive_class,
        )
        scores_c = pq.read_table(out)["score"].to_numpy()
        assert np.array_equal(scores_a, scores_c), shown  # bit for bit
        for k, i in enumerate(accepted):
            assert abs(scores_b[i] - scores_a[k]) <= PARITY_TOLERANCE, shown
        # the features reaching the estimator: the same matrix from the file and predict
        if suffix == ".csv":
            convert = pacsv.ConvertOptions(
                column_types={c: pa.string() for c in served.features}, null_values=[""]
            )
            table = pacsv.read_csv(source, convert_options=convert)
        else:
            table = pq.read_table(source)
        checked, _ = served.schema.check_table(table)
        keep = np.isin(np.arange(len(rows)), accepted)
        matrix_c = pre.transform(served.schema.to_frame(checked, keep=keep))
        assert np.array_equal(pre.transform(frame_a), matrix_c), shown

    check()
