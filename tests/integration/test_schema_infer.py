"""`gitml schema infer`: the inferred schema validates its file and trains, end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from gitml.config.data_yaml import check_data_yaml
from gitml.config.schema import DataParams
from tests.integration.serving import ServerProcess
from tests.support import dvc, gitml, run


def _auc(repo: Path) -> float:
    return json.loads((repo / "reports/metrics.json").read_text())["metrics"]["roc_auc"]


@pytest.mark.slow
def test_inferred_telco_schema_trains_within_0_005_auc_of_the_hand_refined_one(
    repo: Path, built_repo: Path
) -> None:
    source = "data/external/telco_churn.csv.gz"
    refused = gitml("schema", "infer", source, "--target", "churn", cwd=repo, check=False)
    assert refused.returncode != 0
    assert "conf/data/telco_churn.yaml: already exists; nothing written" in refused.stderr
    assert "--force" in refused.stderr

    proc = gitml(
        "schema", "infer", source, "--target", "churn", "--name", "telco_inferred", cwd=repo
    )
    assert "task: binary (positive class 'Yes': the minority class, 1,869 of 7,043 rows)" in (
        proc.stdout
    )
    text = (repo / "conf/data/telco_inferred.yaml").read_text()
    assert f"from {source} (7,043 rows)" in text
    assert str(repo) not in text  # no absolute path of this machine
    data = check_data_yaml(text, source="telco_inferred.yaml")
    assert data.columns["tenure"].min == 0 and data.columns["total_charges"].nullable

    gitml("params", "data=telco_inferred", cwd=repo)
    out = dvc("repro", cwd=repo).stdout
    assert "Running stage 'validate'" in out and "Running stage 'train'" in out
    validation = json.loads((repo / "reports/validation.json").read_text())
    assert validation["status"] == "passed" and validation["errors"] == 0
    assert abs(_auc(repo) - _auc(built_repo)) <= 0.005


def _awkward_breast_cancer(path: Path) -> None:
    """scikit-learn's breast cancer data with awkward names and every kind of non-feature."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.data.iloc[:, :8].copy()
    frame.columns = [f"{c} (cell)" for c in frame.columns]  # spaces and parentheses
    rng = np.random.default_rng(0)
    rows = len(frame)
    frame.insert(0, "patient id", np.arange(100_000, 100_000 + rows))
    frame.insert(3, "cell.count", rng.integers(10, 500, rows))  # a dot
    frame["visit.date"] = pd.date_range("2020-01-01", periods=rows, freq="D").strftime("%d/%m/%Y")
    frame["clinic"] = "north"
    frame["notes"] = [f"seen on visit {k}, follow up in {k % 9} weeks" for k in range(rows)]
    frame["größe"] = rng.choice(["klein", "mittel", "groß"], rows)  # unicode name and values
    frame.loc[rng.choice(rows, 20, replace=False), "mean area (cell)"] = np.nan
    frame.loc[rng.choice(rows, 15, replace=False), "größe"] = None
    frame["diagnosis"] = np.where(bunch.target == 1, "benign", "malignant")
    frame.to_csv(path, index=False)


@pytest.mark.slow
def test_awkward_breast_cancer_file_infers_and_runs_end_to_end(repo: Path) -> None:
    csv = repo / "data/external/cancer.csv"
    _awkward_breast_cancer(csv)
    proc = gitml("schema", "infer", "data/external/cancer.csv", "--target", "diagnosis", cwd=repo)
    assert "task: binary (positive class 'malignant': the minority class" in proc.stdout
    text = (repo / "conf/data/cancer.yaml").read_text(encoding="utf-8")
    data = check_data_yaml(text, source="cancer.yaml")
    assert data.drop == ["patient id", "clinic"]  # ID-like, constant: declared, not features
    assert "visit.date" not in data.columns and "notes" not in data.columns
    assert (
        "#   visit.date: dates/times 2020-01-01 to 2021-07-22; excluded: a date/time column "
        "(format %d/%m/%Y, parsed in every row); not turned into features yet" in text
    )
    assert "free text" in text and "ID-like" in text and "constant (always 'north')" in text
    assert data.columns["mean area (cell)"].nullable
    assert data.columns["größe"].categories == ["groß", "klein", "mittel"]
    assert '"mean radius (cell)": {type: float' in text
    assert "größe" in data.slices

    gitml("params", "data=cancer", cwd=repo)
    dvc("repro", cwd=repo)
    assert _auc(repo) > 0.9

    # `dvc exp run -S` reaches such columns through a dict value (Hydra's key grammar has no
    # spaces, parentheses or dots): spaces as they are, parentheses escaped; dots need nothing
    override = r"data.columns={mean radius \(cell\): {max: 99.0}, cell.count: {max: 2000}}"
    # non-ASCII names are outside the grammar altogether: a preset in conf/experiment/ does it
    (repo / "conf/experiment/groesse.yaml").write_text(
        "# @package _global_\ndata:\n  columns:\n"
        "    größe: {categories: [groß, klein, mittel, riesig]}\n",
        encoding="utf-8",
    )
    dvc("exp", "run", "-S", "data=cancer", "-S", override, "-S", "experiment=groesse", cwd=repo)
    signature = json.loads((repo / "models/signature.json").read_text(encoding="utf-8"))
    inputs = {c["name"]: c for c in signature["inputs"]}
    assert inputs["mean radius (cell)"]["max"] == 99 and inputs["cell.count"]["max"] == 2000
    assert inputs["größe"]["categories"] == ["groß", "klein", "mittel", "riesig"]

    # clients send the original names, and the API answers with them
    first = pd.read_csv(csv).iloc[[0]][list(inputs)].to_json(orient="records")
    record = json.loads(first)[0] | {"größe": "riesig"}
    server = ServerProcess(repo, "--model", "models/model.skops")
    try:
        server.wait_ready()
        resp = httpx.post(f"{server.url}/v1/predict", json={"records": [record]}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert 0 <= resp.json()["predictions"][0]["score"] <= 1
        bad = httpx.post(
            f"{server.url}/v1/predict",
            json={"records": [record | {"mean radius (cell)": 120.0}]},
            timeout=30,
        )
        assert bad.status_code == 422 and "mean radius (cell)" in bad.text, bad.text
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("loader", "told", "task", "target"),
    [
        (
            "load_iris",
            "multiclass (3 classes: 0, 1, 2)",
            "multiclass",
            {"type": "category", "categories": ["0", "1", "2"]},
        ),
        (
            "load_diabetes",
            "regression (numeric",
            "regression",
            {"type": "int", "min": 0, "max": 379},  # 25 to 346, widened by 10 % of the range, up
        ),
    ],
)
def test_multiclass_and_regression_targets_state_their_task(
    loader: str, told: str, task: str, target: dict, tmp_path: Path
) -> None:
    import sklearn.datasets

    frame = getattr(sklearn.datasets, loader)(as_frame=True).frame
    frame.to_csv(tmp_path / "toy.csv", index=False)
    out = tmp_path / "toy.yaml"
    args = ("schema", "infer", "toy.csv", "--target", "target", "--out", str(out))
    proc = gitml(*args, cwd=tmp_path)
    assert f"task: {told}" in proc.stdout
    data = yaml.safe_load(out.read_text())
    assert data["task"] == task and "positive_class" not in data
    assert data["columns"]["target"] == target
    DataParams.model_validate(data)  # the draft is a valid data config for its task

    # a forced task the target cannot be is refused, and nothing is written
    out.unlink()
    wrong = "binary" if task == "multiclass" else "multiclass"
    refused = gitml(*args, "--task", wrong, cwd=tmp_path, check=False)
    assert refused.returncode == 1
    assert f"--task {wrong} needs" in refused.stderr or "more than 50 distinct" in refused.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, ("--target", "y"), "missing.csv: file not found"),
        (b"PAR1 not really", ("--target", "y"), "in.parquet: not a readable Parquet file"),
        (b"a,b\n1,2,3\n", ("--target", "b"), "in.csv: not a readable CSV file"),
        ("", ("--target", "y"), "the file is empty (0 bytes)"),
        (  # a European CSV: said once, with the fix, not read as one column
            "a;label\n1,5;x\n2,5;y\n",
            ("--target", "label"),
            "in.csv: looks ';'-separated: its header has 2 columns when split on ';'",
        ),
        (
            "a,label\n1,x\n2,y\n",
            ("--target", "lable"),
            "no column 'lable' to use as --target; did you mean 'label'?",
        ),
        (
            "a,label\n1,x\n2,x\n",
            ("--target", "label"),
            "has one value ('x') in all 2 non-empty rows",
        ),
        ("a,label\n1,\n2,\n", ("--target", "label"), "is empty in all 2 rows"),
        (
            "a,label\n1,x\n2,y\n",
            ("--target", "label", "--positive-class", "z"),
            "--positive-class 'z' is not one of its values ['x', 'y']",
        ),
    ],
)
def test_bad_input_is_one_error_line_and_nothing_written(
    content: str | bytes | None, args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    name = "missing.csv" if content is None else "in.csv"
    if isinstance(content, bytes):
        name = "in.parquet" if content.startswith(b"PAR1") else name
        (tmp_path / name).write_bytes(content)
    elif content is not None:
        (tmp_path / name).write_text(content)
    out = tmp_path / "out.yaml"
    proc = gitml("schema", "infer", name, *args, "--out", str(out), cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
    assert not out.exists()


def test_same_input_gives_byte_identical_output_and_overwrites_only_with_force(
    tmp_path: Path,
) -> None:
    _awkward_breast_cancer(tmp_path / "cancer.csv")
    out = tmp_path / "cancer.yaml"
    args = ("schema", "infer", "cancer.csv", "--target", "diagnosis", "--out", str(out))
    gitml(*args, cwd=tmp_path)
    first = out.read_bytes()
    assert b"# Inferred by `gitml schema infer` from cancer.csv (569 rows)." in first
    out.write_text("# edited by hand\n")
    refused = gitml(*args, cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "already exists; nothing written" in refused.stderr
    assert out.read_text() == "# edited by hand\n"
    gitml(*args, "--force", cwd=tmp_path)
    assert out.read_bytes() == first


# Peak RSS of the child itself: VmHWM starts afresh at exec, while ru_maxrss (RUSAGE_SELF or
# RUSAGE_CHILDREN) keeps the high-water mark of the forked pytest process holding the frame.
_PEAK = """
import sys
from pathlib import Path
from gitml.data.inference import infer_schema
draft = infer_schema(Path(sys.argv[1]), target="label", name="big", source="big")
print(draft.task)
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""
BOUND = 350 * 2**20  # measured: ~240 MiB (Parquet), ~290 MiB (CSV); pandas whole: ~480 MiB


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
@pytest.mark.parametrize("suffix", ["parquet", "csv.gz"])
def test_a_million_rows_are_profiled_in_bounded_memory(suffix: str, tmp_path: Path) -> None:
    rows = 1_000_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "id": np.arange(rows),
            "amount": rng.normal(100, 20, rows).round(2),
            "code": rng.choice([f"code-{k}" for k in range(30)], rows),
            "note": [f"free text number {k} of the file" for k in range(rows)],
            "label": rng.choice(["no", "yes"], rows, p=[0.8, 0.2]),
        }
    )
    peaks = {}
    for n in (rows // 10, rows):  # ten times the rows must not take more memory
        path = tmp_path / f"{n}.{suffix}"
        if suffix == "parquet":
            frame.iloc[:n].to_parquet(path, row_group_size=100_000)
        else:
            frame.iloc[:n].to_csv(path, index=False)
        proc = run(sys.executable, "-c", _PEAK, path, cwd=tmp_path)
        task, peak_kib = proc.stdout.split("\n")[:2]
        assert task.startswith("binary (positive class 'yes': the minority class")
        peaks[n] = int(peak_kib) * 1024
    # the data alone, as pandas holds it once loaded (without the interpreter and libraries)
    whole = int(frame.memory_usage(deep=True).sum())
    shown = {n: f"{p / 2**20:.0f} MiB" for n, p in peaks.items()}
    assert peaks[rows] < BOUND, f"peak RSS {shown} (data alone {whole / 2**20:.0f} MiB)"
    assert peaks[rows] < peaks[rows // 10] + 64 * 2**20, f"peak RSS grows with rows: {shown}"
