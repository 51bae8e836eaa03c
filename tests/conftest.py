"""Shared fixtures: a real git + DVC copy of the reference project, built once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from gitml.project import copy_project
from tests.support import copy_repo, dvc, git

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # Stages run `python -m gitml.stages.*`: the interpreter running the tests comes first.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["DVC_NO_ANALYTICS"] = "1"
    os.environ.setdefault("GIT_AUTHOR_NAME", "gitml tests")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@gitml.invalid")
    os.environ.setdefault("GIT_COMMITTER_NAME", "gitml tests")
    os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@gitml.invalid")


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference project in a fresh git repo, committed, with a temp DVC remote."""
    base = tmp_path_factory.mktemp("template")
    repo = base / "project"
    copy_project(ROOT, repo)
    git("init", "-q", "-b", "main", cwd=repo)
    git("config", "user.name", "gitml tests", cwd=repo)
    git("config", "user.email", "tests@gitml.invalid", cwd=repo)
    dvc("remote", "modify", "local", "url", str(base / "remote"), cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "reference project", cwd=repo)
    return repo


@pytest.fixture(scope="session")
def built_repo(template_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template after a full `dvc repro` from scratch, committed."""
    repo = copy_repo(template_repo, tmp_path_factory.mktemp("built") / "project")
    proc = dvc("repro", cwd=repo)
    (repo.parent / "first-repro.log").write_text(proc.stdout)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "dvc repro", cwd=repo)
    return repo


@pytest.fixture
def repo(built_repo: Path, tmp_path: Path) -> Path:
    """A private copy of the built repository for one test."""
    return copy_repo(built_repo, tmp_path / "project")
