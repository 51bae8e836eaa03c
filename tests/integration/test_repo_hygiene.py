"""Repository hygiene: CI workflows and the pre-commit configuration.

These tests run the same linters as `make lint` (check-jsonschema, zizmor) directly on the
files, and check the security rules we rely on structurally, so that a weakened workflow or
a pre-commit config that clones from GitHub fails `make test` as well. No mocks; no network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted([*WORKFLOWS_DIR.glob("*.yml"), *WORKFLOWS_DIR.glob("*.yaml")])
PRE_COMMIT_CONFIG = ROOT / ".pre-commit-config.yaml"

SHA_PINNED = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")
REQUIRED_HOOKS = {"ruff", "ruff-format", "check-yaml", "check-added-large-files", "gitml-params"}
# The only jobs that may write repository contents, and the triggers they may run on: the
# GitHub Release of a pushed registration tag (the Releases API needs contents: write), and
# the retraining branch of a monitoring alert (never the default branch; schedule and manual
# runs only run the default branch's workflow).
CONTENTS_WRITERS = {
    ("release.yml", "release"): {"push"},
    ("monitor.yml", "retrain"): {"schedule", "workflow_dispatch"},
}
WORKFLOW_LINTERS = {"check-github-workflows", "zizmor"}
TIMEOUT_S = 60


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    # GH_TOKEN & co. are dropped so that nothing can turn on zizmor's online audits.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN"}
    }
    env["NO_COLOR"] = "1"
    return subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def _tool(name: str) -> str | None:
    """The console script installed next to this interpreter, else the one on PATH."""
    bindir = Path(sys.executable).parent
    for candidate in (bindir / name, bindir / f"{name}.exe"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def _load_workflow(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: a workflow must be a YAML mapping"
    return data


def _triggers(workflow: dict[str, Any]) -> set[str]:
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True.
    on = workflow.get("on", workflow.get(True))
    if on is None:
        return set()
    if isinstance(on, str):
        return {on}
    if isinstance(on, list):
        return {str(event) for event in on}
    if isinstance(on, dict):
        return {str(event) for event in on}
    raise AssertionError(f"unexpected `on:` value {on!r}")


def _uses(workflow: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, ref) for every `uses:` of a job (reusable workflow) or of a step."""
    found: list[tuple[str, str]] = []
    for job_id, job in (workflow.get("jobs") or {}).items():
        if "uses" in job:
            found.append((f"jobs.{job_id}", str(job["uses"])))
        for i, step in enumerate(job.get("steps") or []):
            if "uses" in step:
                found.append((f"jobs.{job_id}.steps[{i}]", str(step["uses"])))
    return found


def _grants_contents_write(permissions: Any) -> bool:
    if isinstance(permissions, str):
        return permissions == "write-all"
    if isinstance(permissions, dict):
        return permissions.get("contents") == "write"
    return False


def test_workflows_exist() -> None:
    assert WORKFLOWS, f"no workflow files under {WORKFLOWS_DIR}"


def test_workflows_match_github_schema() -> None:
    try:
        import check_jsonschema  # noqa: F401
    except ImportError:
        pytest.fail("check-jsonschema is not installed: run `make venv` (it is a dev dependency)")
    result = _run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, WORKFLOWS),
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_pass_zizmor_offline() -> None:
    zizmor = _tool("zizmor")
    if zizmor is None:
        pytest.skip("zizmor is not installed (it is a dev dependency: run `make venv`)")
    result = _run([zizmor, "--offline", "--no-progress", str(WORKFLOWS_DIR)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_security_rules(path: Path) -> None:
    workflow = _load_workflow(path)

    assert "permissions" in workflow, f"{path.name}: set a top-level `permissions:` block"
    assert not _grants_contents_write(workflow["permissions"]), (
        f"{path.name}: the top-level permissions must not grant write on contents"
    )

    assert "pull_request_target" not in _triggers(workflow), (
        f"{path.name}: the pull_request_target trigger is not allowed"
    )

    for where, ref in _uses(workflow):
        if ref.startswith("./"):  # an action or workflow of this repository
            continue
        assert SHA_PINNED.match(ref), f"{path.name}: {where} `{ref}` is not pinned to a commit SHA"

    for job_id, job in (workflow.get("jobs") or {}).items():
        if (path.name, job_id) in CONTENTS_WRITERS:
            allowed = CONTENTS_WRITERS[path.name, job_id]
            assert _triggers(workflow) == allowed, f"{path.name}: {job_id} writes; {allowed} only"
            continue
        assert not _grants_contents_write(job.get("permissions")), (
            f"{path.name}: job {job_id} grants write on contents"
        )


def test_pre_commit_config_is_local_only() -> None:
    config = yaml.safe_load(PRE_COMMIT_CONFIG.read_text(encoding="utf-8"))
    assert isinstance(config, dict), ".pre-commit-config.yaml must be a YAML mapping"
    repos = config.get("repos")
    assert isinstance(repos, list) and repos, ".pre-commit-config.yaml has no repos"

    remote = [repo.get("repo") for repo in repos if repo.get("repo") != "local"]
    assert not remote, f"only `repo: local` is allowed (nothing is cloned), found {remote}"

    hook_ids = {hook["id"] for repo in repos for hook in repo.get("hooks", [])}
    missing = REQUIRED_HOOKS - hook_ids
    assert not missing, f"missing pre-commit hooks: {sorted(missing)}"
    assert hook_ids & WORKFLOW_LINTERS, (
        f"no GitHub workflow linter hook (one of {sorted(WORKFLOW_LINTERS)})"
    )
