"""Fixtures of the serving tests: a module that defines `project` (a copy of the built
project, see `serving.project_serving`) gets one `gitml serve` on it for the whole module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.serving import ServerProcess, running


@pytest.fixture(scope="module")
def served(project: Path) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    with running(project) as both:
        yield both


@pytest.fixture(scope="module")
def server(served: tuple[ServerProcess, httpx.Client]) -> ServerProcess:
    return served[0]


@pytest.fixture(scope="module")
def client(served: tuple[ServerProcess, httpx.Client]) -> httpx.Client:
    return served[1]


@pytest.fixture(scope="module")
def scored(built_repo: Path) -> np.ndarray:
    """Evaluate's probabilities for the test split, computed as the stage computes them: what
    batch scoring (local or on Dask) must reproduce."""
    from gitml.config.compose import load_params
    from gitml.data.io import read_table
    from gitml.model.persist import load_model
    from gitml.model.scoring import score_frame

    params = load_params(built_repo / "params.yaml")
    test_path = built_repo / "data/processed/test.parquet"
    test = read_table(test_path, categories=params.data.categorical)
    return score_frame(
        load_model(built_repo / "models/model.skops"),
        test,
        features=params.data.features,
        positive_class=params.data.positive_class,
    )
