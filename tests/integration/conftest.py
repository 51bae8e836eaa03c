"""Fixtures of the serving tests: a module that defines `project` (a copy of the built
project, see `serving.project_serving`) gets one `gitml serve` on it for the whole module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
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
