"""The pull-request workflow (.github/workflows/pr.yml) and the commands it hands over.

The `run:` scripts of its review and gate steps are read from the YAML and run, as GitHub runs
them (`bash --noprofile --norc -eo pipefail`), in a real git + DVC copy of the project with a
PR branch: if the workflow changes those commands, these tests run the new ones or fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitml.review.markdown import WATERMARK
from tests.support import dvc, git, gitml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = ROOT / ".github" / "workflows"
PR_WORKFLOW = WORKFLOWS_DIR / "pr.yml"
REVIEW_SCRIPT = ROOT / ".ci" / "review"

# What the workflow must hand over (the test then runs what the YAML says).
REVIEW_RUN = '.ci/review "origin/$BASE_REF" report.md'
GATE_RUN = """\
if [ "$RECOMPUTE" = true ]; then
  gitml gate --base "origin/$BASE_REF" --recompute
else
  gitml gate --base "origin/$BASE_REF"
fi"""
RECOMPUTE_ENV = "${{ steps.review.outputs.recompute }}"
COMMENT_RUN = f'cml comment update --watermark-title="{WATERMARK}" report.md'
SAME_REPOSITORY = "github.event.pull_request.head.repo.full_name == github.repository"
BASE_REF_ENV = "${{ github.base_ref }}"
TIMEOUT_S = 900


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name} is not a YAML mapping"
    return data


def _steps() -> list[dict[str, Any]]:
    jobs = _load(PR_WORKFLOW)["jobs"]
    assert list(jobs) == ["review"], f"pr.yml should have one job, `review`, not {list(jobs)}"
    return jobs["review"]["steps"]


def _step(text: str) -> dict[str, Any]:
    """The one step whose `run:` script contains `text`."""
    found = [step for step in _steps() if text in str(step.get("run", ""))]
    assert len(found) == 1, f"expected one pr.yml step running {text!r}, found {len(found)}"
    return found[0]


def _run_step(
    script: str, repo: Path, base_ref: str, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """Run a step's `run:` script the way GitHub's bash shell does, with the step's BASE_REF
    (and `extra_env`: GITHUB_OUTPUT, or a step output handed over as env)."""
    script_file = repo.parent / "step.sh"
    script_file.write_text(script if script.endswith("\n") else script + "\n")
    env = {**os.environ, "BASE_REF": base_ref}
    env.pop("GITHUB_OUTPUT", None)  # never the runner's own, should these tests run on GitHub
    env.update(extra_env)
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_review_and_gate_steps_hand_over_the_expected_commands() -> None:
    review, gate = _step(".ci/review"), _step("gitml gate")
    assert review["run"].strip() == REVIEW_RUN
    assert gate["run"].strip() == GATE_RUN
    # ${{ }} never goes inside `run:` (template injection): the base branch comes via env.
    assert review["env"]["BASE_REF"] == BASE_REF_ENV
    assert gate["env"]["BASE_REF"] == BASE_REF_ENV
    # the gate judges the pairing the review made (base scored on head's test rows, or not)
    assert review["id"] == "review" and gate["env"]["RECOMPUTE"] == RECOMPUTE_ENV
    for step in _steps():
        assert "${{" not in str(step.get("run", "")), f"template expression in run: {step}"
    # The gate's exit code is the check status: it is the last step and runs only on success.
    assert _steps()[-1] == gate
    assert "if" not in gate and "continue-on-error" not in gate


def _pr_branch(repo: Path) -> None:
    """A PR branch lowering the decision threshold, with the base at origin/main as on GitHub."""
    # actions/checkout with fetch-depth 0 leaves the base branch at origin/<base>: same here.
    git("remote", "add", "origin", str(repo), cwd=repo)
    git("fetch", "-q", "origin", "main", cwd=repo)
    (repo / ".ci").mkdir(exist_ok=True)
    shutil.copy2(REVIEW_SCRIPT, repo / ".ci" / "review")  # the fixture copies no .ci/
    git("checkout", "-q", "-b", "pr", cwd=repo)
    conf = repo / "conf" / "evaluate" / "default.yaml"
    text = conf.read_text()
    assert "threshold: 0.5\n" in text
    conf.write_text(text.replace("threshold: 0.5\n", "threshold: 0.4\n"))
    gitml("params", cwd=repo)


def test_review_then_gate_pass_on_a_threshold_change(repo: Path) -> None:
    """The PR commits conf/ and params.yaml but not the outputs: the review reproduces them,
    warns that they differ from the commit, and compares the working tree."""
    review_run, gate_run = _step(".ci/review")["run"], _step("gitml gate")["run"]
    _pr_branch(repo)
    git("add", "conf", "params.yaml", cwd=repo)
    git("commit", "-q", "-m", "lower the decision threshold", cwd=repo)

    # The temp DVC remote is empty or missing: the review rebuilds with `dvc repro`.
    review = _run_step(review_run, repo, base_ref="main")
    assert review.returncode == 0, review.stdout + review.stderr
    # nothing was missing, so nothing came from the remote, and the review says so
    assert (
        "review: data and models were already in the workspace; nothing restored from the "
        "DVC remote" in review.stdout
    )
    assert "warning: the PR's committed outputs differ from what the pipeline reproduced" in (
        review.stderr
    )
    listed = review.stderr.split("Changed files:")[1]
    assert "M dvc.lock" in listed and "M reports/metrics.json" in listed
    report = repo / "report.md"
    assert report.is_file(), review.stdout + review.stderr
    text = report.read_text(encoding="utf-8")
    assert text.startswith("## ")
    assert WATERMARK in text
    assert "| `evaluate.threshold` | `0.5` | `0.4` |" in text  # the change is reported
    assert "workspace (uncommitted)" in text  # what was compared: the reproduced tree

    gate = _run_step(gate_run, repo, base_ref="main")
    assert gate.returncode == 0, gate.stdout + gate.stderr  # same AUC: promote


def test_review_names_the_head_commit_when_the_pipeline_reproduces_it(repo: Path) -> None:
    """The PR commits its reproduced outputs: `dvc repro` leaves the tree clean, and the
    report compares that commit, named by its hash (`--head`)."""
    _pr_branch(repo)
    dvc("repro", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "lower the decision threshold, reproduced", cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    (repo / "report.md").write_text("an old report, not a change the pipeline made\n")
    # the data is in the DVC remote (this test's own) but neither in the workspace nor cache
    dvc("remote", "modify", "--local", "local", "url", str(repo.parent / "remote"), cwd=repo)
    dvc("push", "-q", cwd=repo)
    (repo / "data" / "raw" / "telco_churn.parquet").unlink()
    shutil.rmtree(repo / ".dvc" / "cache")

    review = _run_step(_step(".ci/review")["run"], repo, base_ref="main")
    assert review.returncode == 0, review.stdout + review.stderr
    assert "review: restored data and models from the DVC remote (" in review.stdout
    assert "fetched" in review.stdout
    assert f"review: the tree is clean after dvc repro; reviewing commit {head}" in review.stdout
    assert "warning" not in review.stderr
    text = (repo / "report.md").read_text(encoding="utf-8")
    assert text.startswith("## ") and WATERMARK in text
    assert f"| commit | {git('rev-parse', 'main', cwd=repo).stdout.strip()} | {head} |" in text
    assert "workspace" not in text
    # report.md is in .gitignore: writing the report leaves the tree clean (a release can follow)
    assert git("status", "--porcelain", cwd=repo).stdout == ""


def test_a_pr_that_moves_the_test_rows_is_judged_on_head_s_test_rows(repo: Path) -> None:
    """A retraining PR (new data, so a new split): the committed predictions cannot be paired,
    so the review scores the base model on head's test rows and the gate judges the same."""
    _pr_branch(repo)
    conf = repo / "conf" / "config.yaml"
    conf.write_text(conf.read_text().replace("seed: 42", "seed: 7"))  # the split's seed too
    gitml("params", cwd=repo)
    dvc("repro", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "another split, reproduced", cwd=repo)
    outputs = repo.parent / "github-output"
    outputs.write_text("")

    review = _run_step(
        _step(".ci/review")["run"], repo, base_ref="main", GITHUB_OUTPUT=str(outputs)
    )
    assert review.returncode == 0, review.stdout + review.stderr
    assert "scoring the base model on head's test rows (--recompute)" in review.stdout
    assert outputs.read_text() == "recompute=true\n"
    text = (repo / "report.md").read_text(encoding="utf-8")
    assert "not comparable" not in text.splitlines()[0] and "Base metrics recomputed" in text

    gate = _run_step(_step("gitml gate")["run"], repo, base_ref="main", RECOMPUTE="true")
    assert gate.returncode in (0, 1), gate.stdout + gate.stderr  # a verdict, not "not comparable"
    unpaired = _run_step(_step("gitml gate")["run"], repo, base_ref="main", RECOMPUTE="")
    assert unpaired.returncode == 2, unpaired.stdout + unpaired.stderr


def test_gate_step_fails_the_check_when_the_base_branch_is_missing(repo: Path) -> None:
    gate = _run_step(_step("gitml gate")["run"], repo, base_ref="no-such-branch")
    assert gate.returncode == 3, gate.stdout + gate.stderr
    assert "origin/no-such-branch" in gate.stderr


def test_comment_step_updates_one_watermarked_comment_from_same_repo_prs_only() -> None:
    comment = _step("cml comment")
    assert comment["run"].strip() == COMMENT_RUN
    assert f'--watermark-title="{WATERMARK}"' in comment["run"]
    assert comment["run"].split()[-1] == "report.md"
    assert comment["if"] == SAME_REPOSITORY
    assert comment["env"] == {"REPO_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}
    # Whatever installs CML is skipped on fork PRs as well.
    steps = _steps()
    install = steps[steps.index(comment) - 1]
    assert "cml" in str(install.get("uses", "")) + str(install.get("run", ""))
    assert install["if"] == SAME_REPOSITORY


def test_only_the_review_and_retrain_jobs_may_write_to_pull_requests() -> None:
    workflow = _load(PR_WORKFLOW)
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["jobs"]["review"]["permissions"] == {
        "contents": "read",
        "pull-requests": "write",
    }
    writers = []
    for path in sorted([*WORKFLOWS_DIR.glob("*.yml"), *WORKFLOWS_DIR.glob("*.yaml")]):
        data = _load(path)
        scopes = [("(top level)", data.get("permissions"))]
        scopes += [(job_id, job.get("permissions")) for job_id, job in data["jobs"].items()]
        for where, permissions in scopes:
            if permissions == "write-all" or (
                isinstance(permissions, dict) and permissions.get("pull-requests") == "write"
            ):
                writers.append(f"{path.name}:{where}")
    # monitor.yml's retrain job opens the retraining pull request; it runs on a schedule or by
    # hand only, never on a pull request's code
    assert writers == ["monitor.yml:retrain", "pr.yml:review"]
    monitor = _load(WORKFLOWS_DIR / "monitor.yml")
    assert set(monitor.get(True, monitor.get("on", {}))) == {"schedule", "workflow_dispatch"}


def test_pr_workflow_triggers_on_pull_request_only() -> None:
    workflow = _load(PR_WORKFLOW)
    on = workflow.get("on", workflow.get(True))  # PyYAML reads the bare key `on` as True
    triggers = set(on) if isinstance(on, dict | list) else {on}
    assert triggers == {"pull_request"}
    assert workflow["concurrency"]["cancel-in-progress"] is True
    assert "github.event.pull_request.number" in workflow["concurrency"]["group"]


@pytest.mark.parametrize("name", ["actions/checkout", "actions/setup-python"])
def test_shared_actions_are_pinned_like_ci(name: str) -> None:
    def pins(path: Path) -> set[str]:
        steps = [s for job in _load(path)["jobs"].values() for s in job.get("steps", [])]
        return {s["uses"] for s in steps if str(s.get("uses", "")).startswith(f"{name}@")}

    assert pins(PR_WORKFLOW) == pins(WORKFLOWS_DIR / "ci.yml") != set()
