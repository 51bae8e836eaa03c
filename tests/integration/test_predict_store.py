"""`gitml predict` from a model's stored fast path: the second run of a model imports neither
scikit-learn nor SciPy, and scores as evaluate does (1e-12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gitml.config.compose import load_params
from gitml.data.io import read_table
from gitml.model.persist import load_model
from gitml.model.scoring import score_frame
from gitml.serve.bundle import check_project_model
from gitml.serve.fastpath_store import STORE_DIR_ENV, StoredModel, open_for_batch

_SECOND_RUN = """
import json, sys
from gitml.cli import main
try:
    main()
except SystemExit as done:
    assert not done.code, done.code
print(json.dumps(sorted(m for m in ("sklearn", "scipy", "skops") if m in sys.modules)))
"""


def test_the_second_predict_of_a_model_needs_no_scikit_learn(
    built_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORE_DIR_ENV, str(tmp_path / "store"))
    # the first run's part, in-process: derive the fast path, check it, store it
    assert isinstance(open_for_batch(check_project_model(built_repo)), StoredModel)
    assert len(list((tmp_path / "store").glob("*.npz"))) == 1
    test = built_repo / "data/processed/test.parquet"
    out = tmp_path / "second.parquet"
    second = subprocess.run(
        [sys.executable, "-c", _SECOND_RUN, "predict", str(test), "-o", str(out)],
        cwd=built_repo, env=os.environ.copy(), check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert json.loads(second.stdout.splitlines()[-1]) == []
    params = load_params(built_repo / "params.yaml")
    expected = score_frame(
        load_model(built_repo / "models/model.skops"),
        read_table(test, categories=params.data.categorical),
        features=params.data.features,
        positive_class=params.data.positive_class,
    )
    written = pq.read_table(out)
    assert np.max(np.abs(written["score"].to_numpy() - expected)) <= 1e-12
    labels = np.where(expected >= params.threshold_for(None), "Yes", "No")
    assert (written["label"].to_numpy(zero_copy_only=False) == labels).all()
