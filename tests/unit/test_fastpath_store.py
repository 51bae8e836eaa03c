"""Batch scoring through a model's stored fast path (`gitml.serve.fastpath_store`): the same
scores (1e-12) and labels as the pipeline, the same refusals, and a stored file used only
when it is this model's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gitml.files import sha256_file
from gitml.model.build import build_pipeline
from gitml.model.persist import save_model
from gitml.model.signature import build_signature
from gitml.serve.batch import score_file
from gitml.serve.bundle import ServedModel, check_model_files
from gitml.serve.fastpath import PARITY_TOLERANCE, FastPathCheck
from gitml.serve.fastpath_store import STORE_DIR_ENV, StoredModel, open_for_batch
from tests.unit.test_task_models import MULTICLASS, REGRESSION, _frame, _model

CASES = {
    "multiclass-logistic": ("multiclass", "logistic_regression", {}),
    "regression-ridge": ("regression", "ridge", {}),
    "multiclass-forest": ("multiclass", "random_forest", {"n_estimators": 5}),
}


def _model_dir(root: Path, case: str) -> Path:
    """A fitted model's directory, as `train` writes it: model.skops, signature, metadata."""
    task, name, params = CASES[case]
    data = MULTICLASS if task == "multiclass" else REGRESSION
    frame = _frame(rows=300)
    pipeline = build_pipeline(_model(name, **params), data)
    pipeline.fit(
        frame[["x", "kind"]],
        frame["colour"].astype(str) if task == "multiclass" else frame["value"],
    )
    folder = root / case
    folder.mkdir()
    save_model(pipeline, folder / "model.skops")
    signature = build_signature(pipeline, data, frame, model_name="m")
    (folder / "signature.json").write_text(json.dumps(signature))
    metadata = {
        "features": ["x", "kind"],
        "model_file": {"sha256": sha256_file(folder / "model.skops")},
    }
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20,000 rows (two chunks of 10,000, each scored in blocks of 8,192), two of them bad:
    an unknown kind, and an x of 1.7e308 that the model itself cannot score."""
    frame = _frame(rows=20_000, seed=1)
    x = frame["x"].to_numpy().copy()
    x[15_000] = 1.7e308
    kind = frame["kind"].astype(str).to_numpy().copy()
    kind[7] = "c"
    path = tmp_path_factory.mktemp("store") / "input.parquet"
    pq.write_table(pa.table({"x": x, "kind": kind}), path)
    return path


def _pipeline_only(folder: Path) -> ServedModel:
    """The model scored by its pipeline alone: the reference."""
    from gitml.serve.bundle import load_model_files

    served = load_model_files(check_model_files(folder))
    served.__dict__["fast_path"] = FastPathCheck(None, "off: the reference")
    return served


@pytest.mark.parametrize("case", list(CASES))
def test_stored_fast_path_scores_as_the_pipeline_and_refuses_the_same_rows(
    case: str, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORE_DIR_ENV, str(tmp_path / "store"))
    folder = _model_dir(tmp_path, case)
    files = check_model_files(folder)
    first = open_for_batch(files)
    linear = not case.endswith("forest")
    assert isinstance(first, StoredModel) == linear
    assert len(list((tmp_path / "store").glob(f"{files.sha256}-*.npz"))) == int(linear)
    again = open_for_batch(files)  # read from the store when there is one
    assert isinstance(again, StoredModel) == linear
    outputs = {}
    for label, model in (("fast", again), ("pipeline", _pipeline_only(folder))):
        out = tmp_path / f"{label}.parquet"
        summary = score_file(model, inputs, out, threshold=0.5, chunk_size=10_000, on_error="skip")
        assert (summary.rows, summary.scored, summary.rejected) == (20_000, 19_998, 2)
        rejected = summary.rejected_path.read_text()  # type: ignore[union-attr]
        outputs[label] = (pq.read_table(out), rejected)
    fast, slow = outputs["fast"][0], outputs["pipeline"][0]
    assert fast.schema == slow.schema
    assert outputs["fast"][1] == outputs["pipeline"][1]  # the same rows, rules and reasons
    for name in fast.column_names:
        a, b = fast[name].to_numpy(), slow[name].to_numpy()
        if a.dtype.kind == "f":
            assert np.max(np.abs(a - b)) <= PARITY_TOLERANCE, name
        else:
            assert (a == b).all(), name
    with pytest.raises(Exception, match=r"row 8: column 'kind': \[category\]"):
        score_file(again, inputs, tmp_path / "fail.parquet", threshold=0.5, chunk_size=10_000)
    assert not (tmp_path / "fail.parquet").exists()


def test_a_store_file_not_this_models_is_ignored_and_replaced(
    inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORE_DIR_ENV, str(tmp_path / "store"))
    folder = _model_dir(tmp_path, "multiclass-logistic")
    files = check_model_files(folder)
    assert isinstance(open_for_batch(files), StoredModel)
    [stored] = (tmp_path / "store").glob("*.npz")
    # another model's file under this model's name: its header names another SHA-256
    other = _model_dir(tmp_path, "regression-ridge")
    monkeypatch.setenv(STORE_DIR_ENV, str(tmp_path / "other"))
    open_for_batch(check_model_files(other))
    [foreign] = (tmp_path / "other").glob("*.npz")
    for content in (foreign.read_bytes(), b"not a zip", b""):
        stored.write_bytes(content)
        monkeypatch.setenv(STORE_DIR_ENV, str(tmp_path / "store"))
        model = open_for_batch(files)
        assert isinstance(model, StoredModel) and model.task == "multiclass"
        assert stored.read_bytes() != content  # derived, checked and stored again
    out = tmp_path / "out.parquet"
    score_file(model, inputs, out, threshold=0.5, on_error="skip")
    reference = tmp_path / "reference.parquet"
    score_file(_pipeline_only(folder), inputs, reference, threshold=0.5, on_error="skip")
    a, b = pq.read_table(out), pq.read_table(reference)
    assert a["label"].equals(b["label"])
    assert np.max(np.abs(a["score:red"].to_numpy() - b["score:red"].to_numpy())) <= 1e-12
