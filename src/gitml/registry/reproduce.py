"""`gitml reproduce`: rebuild a release in a temporary worktree and compare its metrics."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitml.config.compose import load_params
from gitml.errors import RegistryError, RemoteError, VcsError
from gitml.project import OUTPUTS, Project
from gitml.registry.catalog import load_registry
from gitml.registry.tags import parse_ref
from gitml.vcs import (
    dvc,
    explain_remote_failure,
    git,
    pull_data,
    share_dvc_remotes,
    show_file,
)

# compared exactly as numbers, within the tolerance
COMPARED = (OUTPUTS["metrics"], OUTPUTS["slices"])
# timings and sizes measure the machine: metrics.json no longer records them, but releases
# made before that still carry a `serving` block, which is not compared
_IGNORED_KEYS = {"serving"}


@dataclass(frozen=True)
class Difference:
    file: str
    key: str
    recorded: Any
    reproduced: Any


@dataclass
class Reproduction:
    tag: str
    commit: str
    tolerance: float
    compared: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return not self.differences


def reproduce(project: Project, ref: str, *, tolerance: float | None = None) -> Reproduction:
    """Check out the tagged commit in a worktree, `dvc repro --force`, compare with the tag."""
    root = project.root
    wanted = parse_ref(ref)
    if wanted.version in (None, "latest") and wanted.stage is None:
        raise RegistryError(f"name a version to reproduce, e.g. {wanted.name}@v1.0.0")
    history = load_registry(root).get(wanted.name)
    if history is None:
        raise RegistryError(f"unknown model {wanted.name!r}: no release tags for it")
    version = history.resolve(wanted)
    if tolerance is None:
        tolerance = load_params(project.params_path).promotion.release.reproduce_tolerance
    result = Reproduction(version.tag, version.commit, tolerance)
    work = Path(tempfile.mkdtemp(prefix="gitml-reproduce-")) / "worktree"
    git(root, "worktree", "add", "--detach", str(work), version.commit)
    try:
        share_dvc_remotes(root, work)
        _run_pipeline(work)
        for path in COMPARED:
            recorded = show_file(root, version.commit, path)
            reproduced = work / path
            if recorded is None or not reproduced.is_file():
                continue
            _compare(path, json.loads(recorded), json.loads(reproduced.read_text()), result, "")
    finally:
        git(root, "worktree", "remove", "--force", str(work))
        shutil.rmtree(work.parent, ignore_errors=True)
    return result


def _run_pipeline(work: Path) -> None:
    # the tagged commit's own gitml code runs the stages when the project carries it
    env = {}
    if (work / "src" / "gitml").is_dir():
        env["PYTHONPATH"] = os.pathsep.join([str(work / "src"), os.environ.get("PYTHONPATH", "")])
    # data added with `dvc add` (a `gitml init` project's source) is no stage's output:
    # `dvc repro --force --pull` would not pull it, so it comes from the remote first
    sources = git(work, "ls-files", "--", "*.dvc").split()
    try:
        if sources:
            pull_data(work, *sources)
        dvc(work, "repro", "--force", "--pull", env=env)
    except VcsError as err:
        remote = err if isinstance(err, RemoteError) else None
        remote = remote or explain_remote_failure(work, err, "pull the inputs of the reproduction")
        if remote is not None:
            raise RegistryError(
                f"cannot reproduce in the worktree: {remote.message}", hint=remote.hint
            ) from err
        raise RegistryError(
            f"dvc repro --force failed in the reproduction worktree: {err.message}"
        ) from err


def _compare(file: str, recorded: Any, reproduced: Any, result: Reproduction, key: str) -> None:
    if isinstance(recorded, dict) and isinstance(reproduced, dict):
        for name in sorted(set(recorded) | set(reproduced)):
            if name in _IGNORED_KEYS and not key:
                continue
            sub = f"{key}.{name}" if key else name
            if name not in recorded or name not in reproduced:
                result.differences.append(
                    Difference(file, sub, recorded.get(name), reproduced.get(name))
                )
                continue
            _compare(file, recorded[name], reproduced[name], result, sub)
        return
    result.compared += 1
    if _numbers(recorded, reproduced):
        if abs(float(recorded) - float(reproduced)) > result.tolerance:
            result.differences.append(Difference(file, key, recorded, reproduced))
    elif recorded != reproduced:
        result.differences.append(Difference(file, key, recorded, reproduced))


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
