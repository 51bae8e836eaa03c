"""Closing the loop: `gitml retrain` and `.github/workflows/monitor.yml`, on real git and DVC.

The end-to-end test runs the workflow's command sequence (read from the workflow file) in a
copy of the built reference project with a release in prod, a private DVC remote and a bare
origin: everything but the GitHub calls.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from tests.support import dvc, git, gitml

NAME = "churn-classifier"
ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "monitor.yml"
SOURCE = ROOT / "data" / "external" / "telco_churn.csv.gz"
RETRAINED = "data/retrain/telco_churn.parquet"
# The gitml commands monitor.yml runs, in order, with their options: what the end-to-end
# test below runs (test_the_workflow_runs_the_tested_commands keeps the two equal).
SEQUENCE = [
    ("monitor", ("--current", "--labels")),
    ("retrain", ("--batch", "--labels", "--branch", "--push")),
    ("models", ("--json",)),
    ("report", ("--base", "--recompute", "--out")),
]


def _batch(repo: Path, *, rows: int, labelled: int, seed: int) -> tuple[Path, Path, pd.DataFrame]:
    """A drifted production batch from `gitml simulate` (monthly_charges x 1.2, so no row
    repeats a training row), labels for its first `labelled` rows plus 5 that match no row.
    Returns (batch path, labels path, the labelled rows with their target)."""
    incoming = repo.parent / "incoming"
    incoming.mkdir(exist_ok=True)
    batch, labels = incoming / "batch.csv", incoming / "labels.csv"
    gitml(
        "simulate", "-o", str(batch), "--labels", str(labels), "--rows", str(rows),
        "--seed", str(seed), "--scale", "monthly_charges=1.2", cwd=repo,
    )  # fmt: skip
    truth = pd.read_csv(labels, dtype=str, keep_default_na=False).iloc[:labelled]
    stray = pd.DataFrame({"request_id": ["nobody"] * 5, "record": range(5), "churn": "No"})
    pd.concat([truth, stray]).to_csv(labels, index=False)
    frame = pd.read_csv(batch, dtype=str, keep_default_na=False).iloc[:labelled]
    return batch, labels, frame.assign(churn=truth["churn"].to_numpy())


def _state(repo: Path) -> tuple[str, str, str, list[str]]:
    """What a refusal must leave as it was: branch, commit, status and the branches."""
    return (
        git("rev-parse", "--abbrev-ref", "HEAD", cwd=repo).stdout.strip(),
        git("rev-parse", "HEAD", cwd=repo).stdout.strip(),
        git("status", "--porcelain", "--untracked-files=all", cwd=repo).stdout,
        git("branch", "--format=%(refname:short)", cwd=repo).stdout.split(),
    )


def _released(repo: Path) -> str:
    """A private DVC remote, a bare origin and v1.0.0 in prod; returns prod's commit."""
    dvc("remote", "modify", "local", "url", str(repo.parent / "dvc-remote"), cwd=repo)
    git("commit", "-qam", "private DVC remote", cwd=repo)
    git("init", "-q", "--bare", str(repo.parent / "origin.git"), cwd=repo.parent)
    git("remote", "add", "origin", str(repo.parent / "origin.git"), cwd=repo)
    gitml("release", cwd=repo)
    for stage in ("dev", "staging", "prod"):
        gitml("promote", NAME, "v1.0.0", "--stage", stage, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).stdout.strip()


def test_a_labelled_batch_retrains_on_a_branch_reviewed_against_production(repo: Path) -> None:
    prod = _released(repo)
    batch, labels, labelled = _batch(repo, rows=400, labelled=300, seed=1)
    branch = "retrain/drifted"
    values = {"--current": batch, "--batch": batch, "--labels": labels, "--branch": branch}
    commands = iter(SEQUENCE)

    def command(name: str) -> list[str]:
        step, options = next(commands)
        assert step == name
        return [step, *(a for o in options for a in ([o] if o not in values else [o, values[o]]))]

    # the drifted batch alarms (exit 1) on the shifted column
    alert = gitml(*command("monitor"), cwd=repo, check=False)
    assert alert.returncode == 1, alert.stdout + alert.stderr
    assert "ALERT" in alert.stdout and "monthly_charges" in alert.stdout
    assert "monthly_charges" in (repo / "reports" / "monitor" / "monitor.md").read_text()
    before = _state(repo)  # monitor's reports are new files: retrain leaves them alone
    assert "reports/monitor/monitor.md" in before[2]

    out = gitml(*command("retrain"), cwd=repo).stdout
    assert f"added 300 labelled rows from {batch} to {RETRAINED} (7,343 rows now)" in out
    assert "5 labels matching no batch row" in out
    assert f"data.source: data/external/telco_churn.csv.gz -> {RETRAINED}" in out
    assert f"pushed: dvc push, git push origin {branch}" in out
    assert f"gitml report --base {NAME}@v1.0.0 --recompute" in out
    # the user's tree and branch are as they were; the branch is new, here and on origin
    assert _state(repo)[:3] == before[:3]
    assert git("ls-remote", "origin", branch, cwd=repo).stdout.strip()
    message = git("log", "-1", "--format=%B", branch, cwd=repo).stdout
    assert message.startswith("retrain: 300 labelled rows from batch.csv added to the training")
    assert git("rev-parse", f"{branch}~1", cwd=repo).stdout.strip() == prod

    def at_branch(path: str) -> str:
        return git("show", f"{branch}:{path}", cwd=repo).stdout

    assert f"source: {RETRAINED}  # set by gitml retrain" in at_branch("conf/data/telco_churn.yaml")
    assert f"source: {RETRAINED}\n" in at_branch("params.yaml")
    lock, old_lock = (
        yaml.safe_load(at_branch("dvc.lock")),
        yaml.safe_load((repo / "dvc.lock").read_text()),
    )
    assert RETRAINED in [d["path"] for d in lock["stages"]["ingest"]["deps"]]
    model = [o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"].endswith(".skops")]
    old = [o["md5"] for o in old_lock["stages"]["train"]["outs"] if o["path"].endswith(".skops")]
    assert model != old, "the model was not retrained"
    assert json.loads(at_branch("reports/validation.json"))["rows"] == 7_343
    # the training data is DVC-tracked and in the remote: the source's rows, then the batch's
    md5 = yaml.safe_load(at_branch(f"{RETRAINED}.dvc"))["outs"][0]["md5"]
    stored = pd.read_parquet(repo.parent / "dvc-remote" / "files" / "md5" / md5[:2] / md5[2:])
    assert len(stored) == 7_343
    assert stored.columns.tolist() == pd.read_csv(SOURCE, nrows=1).columns.tolist()
    added = stored.tail(300).reset_index(drop=True)
    assert added["monthly_charges"].tolist() == labelled["monthly_charges"].astype(float).tolist()
    assert added["churn"].tolist() == labelled["churn"].tolist()
    assert (repo / "data" / "external" / "telco_churn.csv.gz").read_bytes() == SOURCE.read_bytes()

    # the review against production, as the workflow runs it: in a checkout of the branch
    shutil.rmtree(repo / "reports" / "monitor")  # in CI, the monitor job's checkout
    git("switch", "-q", branch, cwd=repo)
    dvc("checkout", cwd=repo)
    rows = json.loads(gitml(*command("models"), cwd=repo).stdout)
    production = next(r["commit"] for r in rows if "prod" in r["stages"])
    assert production == prod
    values |= {"--base": production, "--out": repo.parent / "report.md"}
    out = gitml(*command("report"), cwd=repo).stdout
    report = (repo.parent / "report.md").read_text()
    assert f"base `{NAME}@v1.0.0`" in report or prod[:8] in report
    assert "not comparable" not in out, "production was not scored on the new test rows"


def test_retrain_refusals_leave_the_tree_and_the_branch_as_they_were(repo: Path) -> None:
    batch, labels, _ = _batch(repo, rows=300, labelled=200, seed=2)
    before = _state(repo)

    def refused(*args: str, batch: Path = batch, labels: Path = labels, env=None) -> str:
        cmd = [sys.executable, "-m", "gitml", "retrain", "--batch", str(batch)]
        cmd += ["--labels", str(labels), "--branch", "retrain/refused", *args]
        proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=env)
        assert proc.returncode != 0, proc.stdout
        if env is None:
            assert _state(repo) == before, proc.stderr
        return proc.stderr

    (repo / "notes.txt").write_text("work in progress\n")
    before = (*before[:2], "?? notes.txt\n", before[3])
    assert "the working tree is not clean: notes.txt" in refused()
    (repo / "notes.txt").unlink()
    before = _state(repo)

    elsewhere = repo.parent / "elsewhere.csv"
    elsewhere.write_text("request_id,record,churn\nother-1,0,Yes\nother-2,0,No\n")
    message = refused(labels=elsewhere)
    assert "none of the 2 labels in elsewhere.csv matches a row of batch.csv" in message
    assert "('other-1', 0)" in message

    frame = pd.read_csv(batch, dtype=str, keep_default_na=False)
    frame.drop(columns="tenure").to_csv(repo.parent / "no-tenure.csv", index=False)
    message = refused(batch=repo.parent / "no-tenure.csv")
    assert "the batch has no column 'tenure'" in message and "not nullable" in message

    frame.loc[5, "tenure"] = "-4"
    frame.to_csv(repo.parent / "negative.csv", index=False)
    message = refused(batch=repo.parent / "negative.csv")
    assert "would fail validation" in message and "tenure" in message
    assert "rows 7,044 to 7,243 are the batch's" in message

    # a failing `dvc repro` (its first stage dies): the attempt stays on its branch
    fake = repo.parent / "bin"
    fake.mkdir()
    (fake / "python").write_text(
        "#!/bin/sh\n"
        'case "$*" in *gitml.stages.ingest*) echo "[ingest] error: out of memory" >&2; exit 1;; '
        f'esac\nexec {shlex.quote(sys.executable)} "$@"\n'
    )
    (fake / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    message = refused(env=env)
    assert "dvc repro failed on branch retrain/refused" in message
    assert "out of memory" in message and "left for inspection" in message
    branch, commit, status, branches = _state(repo)
    assert (branch, commit, status) == before[:3]
    assert branches == sorted([*before[3], "retrain/refused"])
    attempt = git("log", "-1", "--format=%s", "retrain/refused", cwd=repo).stdout
    assert attempt.startswith("retrain attempt (dvc repro failed): retrain: 200 labelled rows")


def test_the_workflow_runs_the_tested_commands() -> None:
    """GitHub cannot run here: the workflow's gitml commands are the ones tested above, its
    triggers, permissions and pinned actions are what the other workflows hold to."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert set(workflow[True]) == {"schedule", "workflow_dispatch"}  # YAML 1.1 reads `on` as True
    assert workflow["permissions"] == {"contents": "read"}
    jobs = workflow["jobs"]
    assert jobs["monitor"]["permissions"] == {"contents": "read", "issues": "write"}
    assert jobs["retrain"]["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert jobs["retrain"]["if"] == (
        "needs.monitor.outputs.status == '1' && needs.monitor.outputs.labels != ''"
    )
    steps = [s for job in jobs.values() for s in job["steps"]]
    for step in steps:
        if "uses" in step:
            assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
            assert step.get("with", {}).get("persist-credentials", False) is False
        # values reach scripts through env only: no expression is pasted into a shell script
        assert "${{" not in step.get("run", ""), step["name"]
    commands = [
        (call.group(1), tuple(re.findall(r"(?<![\w-])--[a-z-]+", call.group(2))))
        for step in steps
        for line in step.get("run", "").splitlines()
        if (call := re.match(r'^\s*(?:\w+="\$\()?gitml ([a-z-]+)(.*)$', line))
    ]
    assert commands == SEQUENCE
    script = "\n".join(s.get("run", "") for s in steps)
    assert 'if [ "$status" -ge 2 ]; then' in script  # monitor errors fail the job
    for call in ("gh issue list --label monitoring", "gh issue edit", "gh issue create"):
        assert call in script
    assert "gh pr create" in script
    assert "pull_request_target" not in WORKFLOW.read_text()
