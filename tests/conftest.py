"""Shared fixtures: a real git + DVC copy of the reference project, built once per test run.

Under pytest-xdist (`make test` runs two workers) every worker would build its own session
fixtures; `build_once` makes the first worker build a read-only project and the others reuse
it. Tests copy it (`repo`, `copy_repo`) before they change anything.
"""

from __future__ import annotations

import compileall
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitml.project import copy_project
from tests.support import build_once, copy_repo, dvc, git

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # once per run, in the controller
        # The suite starts a few thousand Python processes (gitml, DVC stages), each importing
        # gitml. Where PYTHONDONTWRITEBYTECODE is set (CI machines here), gitml's own modules
        # would be compiled again in every one of them; compiled once here, they are read.
        compileall.compile_dir(ROOT / "src" / "gitml", quiet=2)
    # Stages run `python -m gitml.stages.*`: the interpreter running the tests comes first.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["DVC_NO_ANALYTICS"] = "1"
    os.environ.setdefault("GIT_AUTHOR_NAME", "gitml tests")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@gitml.invalid")
    os.environ.setdefault("GIT_COMMITTER_NAME", "gitml tests")
    os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@gitml.invalid")


def _build_template(base: Path) -> None:
    repo = base / "project"
    copy_project(ROOT, repo)
    git("init", "-q", "-b", "main", cwd=repo)
    git("config", "user.name", "gitml tests", cwd=repo)
    git("config", "user.email", "tests@gitml.invalid", cwd=repo)
    dvc("remote", "modify", "local", "url", str(base / "remote"), cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "reference project", cwd=repo)


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference project in a fresh git repo, committed, with a temp DVC remote."""
    return build_once(tmp_path_factory, "template", _build_template) / "project"


@pytest.fixture(scope="session")
def built_repo(template_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The template after a full `dvc repro` from scratch, committed. Read-only: copy it."""

    def build(base: Path) -> None:
        repo = copy_repo(template_repo, base / "project")
        proc = dvc("repro", cwd=repo)
        (base / "first-repro.log").write_text(proc.stdout)
        git("add", "-A", cwd=repo)
        git("commit", "-q", "-m", "dvc repro", cwd=repo)

    repo = build_once(tmp_path_factory, "built", build) / "project"
    yield repo
    # every test and worker reads this one: a test that wrote to it would leak into the others
    changed = git("status", "--porcelain", cwd=repo).stdout
    assert changed == "", f"a test changed the shared built_repo (use `repo`):\n{changed}"


@pytest.fixture
def repo(built_repo: Path, tmp_path: Path) -> Path:
    """A private copy of the built repository for one test."""
    return copy_repo(built_repo, tmp_path / "project")
