"""Helpers for tests: run real git, dvc and gitml commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock


def run(
    *cmd: str | os.PathLike[str], cwd: Path, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a real command; on an unexpected failure show its output."""
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def gitml(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "gitml", *args, cwd=cwd, check=check)


def dvc(*args: str, cwd: Path, check: bool = True, timeout: float = 600):
    return run(sys.executable, "-m", "dvc", *args, cwd=cwd, check=check, timeout=timeout)


def git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("git", *args, cwd=cwd, check=check)


def ran_stages(output: str) -> list[str]:
    """Stage names that `dvc repro` actually ran, from its output."""
    return [
        line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")
    ]


def copy_repo(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def build_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]
) -> Path:
    """A directory filled by `build(directory)` once per test run, shared by xdist workers.

    Without xdist it is this session's own. Under xdist each worker's basetemp sits inside
    the run's, so the run's one `shared/` is beside them: the first worker to take the lock
    builds, the others wait for it and reuse the result. A build that failed half-way is
    removed and tried again by the next worker, which then reports its own error.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        directory = tmp_path_factory.mktemp(name)
        build(directory)
        return directory
    shared = tmp_path_factory.getbasetemp().parent / "shared"
    shared.mkdir(exist_ok=True)
    directory, done = shared / name, shared / f"{name}.done"
    with FileLock(shared / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir()
            build(directory)
            done.touch()
    return directory
