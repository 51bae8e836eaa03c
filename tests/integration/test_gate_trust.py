"""The gate cannot be bypassed, and a release ships only a verified model: real git, DVC, GTO.

Each scenario is one a careful reviewer tried by hand: loosening the policy in the PR it
judges, a degenerate first model, a clearly worse model, a busy machine, predictions that
do not pair, a model corrupted in the DVC cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gitml.tasks import ESTIMATORS
from tests.support import dvc, git, gitml

NAME = "churn-classifier"
LR = "conf/model/logistic_regression.yaml"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def _pr(repo: Path, message: str, *edits: tuple[str, str, str]) -> None:
    """A PR branch with the given conf/ edits, reproduced and committed."""
    git("checkout", "-q", "-b", "pr", cwd=repo)
    for path, old, new in edits:
        _edit(repo / path, old, new)
    gitml("params", cwd=repo)
    dvc("repro", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", message, cwd=repo)


def _gate(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return gitml("gate", "--base", "main", *args, cwd=repo, check=False)


def _report(repo: Path) -> str:
    out = repo.parent / "report.md"
    gitml("report", "--base", "main", "--out", str(out), cwd=repo)
    return out.read_text()


def test_a_pr_cannot_loosen_the_policy_that_judges_it(repo: Path) -> None:
    policy = "conf/promotion/default.yaml"
    _pr(
        repo,
        "drop two inputs and loosen the policy",
        ("conf/data/telco_churn.yaml", "drop: []", "drop: [tenure, contract]"),
        (policy, "allow_breaking_signature: false", "allow_breaking_signature: true"),
        (policy, "roc_auc: {absolute: 0.01}", "roc_auc: {absolute: 0.5}"),
        (policy, "[roc_auc, average_precision, f1, log_loss, brier]", "[]"),
    )
    gate = _gate(repo)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "FAIL  allow_breaking_signature" in gate.stdout
    assert "BREAKING signature change: input 'contract' removed" in gate.stdout
    report = _report(repo)
    assert report.startswith("## ⛔ gitml model review: blocked")
    assert "Judged under the base's" in report
    assert "This change proposes a new promotion policy" in report
    assert "`promotion.allow_breaking_signature`" in report
    # once merged, the new policy is the base's: the next PR is judged by it
    git("checkout", "-q", "main", cwd=repo)
    git("merge", "-q", "--ff-only", "pr", cwd=repo)
    git("checkout", "-q", "-b", "next", cwd=repo)
    (repo / "NOTES.md").write_text("docs\n")
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "docs", cwd=repo)
    assert _gate(repo).returncode == 0


def test_a_clearly_worse_model_is_blocked_by_the_default_policy(repo: Path) -> None:
    _pr(repo, "weaker regularisation", (LR, "C: 1.0", "C: 0.003"))
    gate = _gate(repo)
    assert gate.returncode == 1, gate.stdout
    worse = next(ln for ln in gate.stdout.splitlines() if "significantly worse:" in ln)
    assert "recall -0.0722 [-0.1000, -0.0449]" in worse
    assert "FAIL  no_significant_regression.f1" in gate.stdout
    assert "FAIL  no_significant_regression.log_loss" in gate.stdout
    report = _report(repo)
    verdict = report.split("### Metrics")[0]
    assert "**Significantly worse**" in verdict and "recall -0.0722" in verdict
    recall = next(ln for ln in report.splitlines() if ln.startswith("| recall "))
    assert "🔴" in recall
    precision = next(ln for ln in report.splitlines() if ln.startswith("| precision "))
    assert "🟢" in precision  # its interval excludes zero on the better side
    accuracy = next(ln for ln in report.splitlines() if ln.startswith("| accuracy "))
    assert "🔴" not in accuracy and "🟢" not in accuracy  # its interval includes zero


def test_a_degenerate_first_model_is_not_released(repo: Path) -> None:
    dvc("remote", "modify", "local", "url", str(repo.parent / "dvc-remote"), cwd=repo)
    _edit(repo / LR, "C: 1.0", "C: 0.0001")
    gitml("params", cwd=repo)
    dvc("repro", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "C=0.0001: predicts nobody churns", cwd=repo)
    proc = gitml("release", cwd=repo, check=False)
    assert proc.returncode != 0, proc.stdout
    assert "the promotion gate against no earlier version (absolute rules) says 'blocked'" in (
        proc.stderr
    )
    assert "never predicts 'Yes' on 1,409 test rows" in proc.stderr
    assert git("tag", cwd=repo).stdout == ""


def test_the_timing_verdict_holds_on_a_busy_machine(repo: Path) -> None:
    """The limit sits just above the idle measurement (idle x 1.6, so the limit plus the 25 %
    tolerance is twice it). A CPU-bound process at a higher priority on the gate's own core
    takes most of it: a wall-clock timing would stretch about fivefold and flip the verdict;
    CPU time does not move.

    The gate, its timing child and the burner share one logical CPU (affinity is inherited),
    so the test measures time-sharing, which is what CPU time is immune to. It does not load
    the other core: on hyper-threads or an overcommitted VM host a busy neighbour core slows
    the work itself, and CPU time grows with it (seen on CI: 2.3x); the README says so."""
    _pr(repo, "same model, new branch", (LR, "tol: 0.0001", "tol: 0.0002"))
    allowed = os.sched_getaffinity(0)
    core = {min(allowed)}

    def timing() -> tuple[int, str, float]:
        gate = _gate(repo)
        line = next(
            ln for ln in gate.stdout.splitlines() if "serving.max_predict_ms_per_1000_rows" in ln
        )
        return gate.returncode, line, float(line.split("prediction time ")[1].split()[0])

    os.sched_setaffinity(0, core)  # this worker's children (gate, timing child, burner) inherit it
    try:
        code, line, idle = timing()
        assert code == 0 and line.startswith("  pass"), line
        # the base's policy is the law: tighten it on main, where the PR is judged from
        git("checkout", "-q", "main", cwd=repo)
        _edit(
            repo / "conf/promotion/default.yaml",
            "max_predict_ms_per_1000_rows: 250",
            f"max_predict_ms_per_1000_rows: {idle * 1.6:.3f}",
        )
        gitml("params", cwd=repo)
        git("commit", "-qam", "a tight prediction-time budget", cwd=repo)
        git("checkout", "-q", "pr", cwd=repo)
        code, line, again = timing()
        assert code == 0 and line.startswith("  pass"), (idle, line)
        # a burner at a higher priority than the gate (as root; else as high as allowed) on the
        # same core: it gets about 60 % of it, the gate and its timing child share the rest
        burn = (
            "import os, time\n"
            "try:\n    os.nice(-5)\nexcept OSError:\n    pass\n"
            "end = time.time() + 300\nwhile time.time() < end: pass\n"
        )
        burner = subprocess.Popen([sys.executable, "-c", burn])
        try:
            code, line, loaded = timing()
        finally:
            burner.kill()
            burner.wait()
    finally:
        os.sched_setaffinity(0, allowed)
    assert code == 0 and line.startswith("  pass"), (idle, again, line)
    assert loaded <= 2 * idle


def test_predictions_that_do_not_pair_are_not_comparable(repo: Path) -> None:
    git("checkout", "-q", "-b", "pr", cwd=repo)
    path = repo / "reports" / "predictions.csv"
    lines = path.read_text().splitlines()
    shifted = [lines[0]] + [
        ",".join([str(int(row.split(",")[0]) + 100_000), *row.split(",")[1:]]) for row in lines[1:]
    ]
    shifted[1] = lines[1]  # one row id still matches
    path.write_text("\n".join(shifted) + "\n")
    git("commit", "-qam", "predictions of other rows, same fingerprint", cwd=repo)
    gate = _gate(repo, "--head", "pr")
    assert gate.returncode == 2, gate.stdout + gate.stderr
    assert "only 1 row ids match (1,409 base rows, 1,409 head rows)" in gate.stdout


def test_any_failure_of_the_review_itself_exits_3(repo: Path) -> None:
    git("checkout", "-q", "-b", "pr", cwd=repo)
    path = repo / "reports" / "predictions.csv"
    lines = path.read_text().splitlines()
    lines[5] = ",".join([*lines[5].split(",")[:-1], "not-a-number"])
    path.write_text("\n".join(lines) + "\n")
    git("commit", "-qam", "a corrupt score", cwd=repo)
    gate = _gate(repo, "--head", "pr")
    assert gate.returncode == 3, gate.stdout + gate.stderr
    assert "error: the review failed" in gate.stderr
    assert "Traceback" not in gate.stderr


def test_release_refuses_a_model_corrupted_in_the_dvc_cache(repo: Path) -> None:
    remote = repo.parent / "dvc-remote"
    dvc("remote", "modify", "local", "url", str(remote), cwd=repo)
    git("commit", "-qam", "private DVC remote", cwd=repo)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    md5 = next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"].endswith(".skops"))
    cached = repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    stat = cached.stat()
    os.chmod(cached, 0o644)
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))  # silent bit rot: same size, same times
    os.utime(cached, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    proc = gitml("release", cwd=repo, check=False)
    assert proc.returncode != 0
    assert "the DVC cache copy of models/model.skops is corrupt" in proc.stderr
    assert "nothing was pushed or tagged" in proc.stderr
    assert git("tag", cwd=repo).stdout == ""
    assert not (remote / "files" / "md5" / md5[:2] / md5[2:]).exists()


def test_release_refuses_a_model_that_is_not_the_recorded_one(repo: Path) -> None:
    dvc("remote", "modify", "local", "url", str(repo.parent / "dvc-remote"), cwd=repo)
    git("commit", "-qam", "private DVC remote", cwd=repo)
    metadata = repo / "models" / "metadata.json"
    recorded = json.loads(metadata.read_text())
    recorded["model_file"]["sha256"] = "0" * 64
    metadata.write_text(json.dumps(recorded, indent=2) + "\n")
    git("commit", "-qam", "metadata of another model", cwd=repo)
    proc = gitml("release", cwd=repo, check=False)
    assert proc.returncode != 0
    assert "refusing to release" in proc.stderr and "does not match the recorded" in proc.stderr
    assert git("tag", cwd=repo).stdout == ""


_CONF = Path(__file__).resolve().parents[2] / "conf"
# every shipped preset: one test each, so that the suite's workers share them
PRESETS = [
    *(
        ("model", p.stem)
        for p in sorted((_CONF / "model").glob("*.yaml"))
        if p.stem in ESTIMATORS["binary"]  # the reference data's task
    ),
    *(("experiment", p.stem) for p in sorted((_CONF / "experiment").glob("*.yaml"))),
]


def test_the_shipped_presets_are_all_tested() -> None:
    assert len(PRESETS) == 5, PRESETS


@pytest.mark.slow
@pytest.mark.parametrize(("group", "preset"), PRESETS, ids=[f"{g}={p}" for g, p in PRESETS])
def test_every_shipped_preset_passes_the_shipped_policy(
    repo: Path, group: str, preset: str
) -> None:
    """Each model and experiment preset, trained on the reference data, meets the default
    policy's absolute rules (size, minimums, every class predicted, slice gaps, timing)."""
    from gitml.project import find_project
    from gitml.review.review import build_review

    config = repo / "conf" / "config.yaml"
    chosen = "logistic_regression" if group == "model" else "null"
    default = config.read_text()
    assert f"- {group}: {chosen}" in default
    config.write_text(default.replace(f"- {group}: {chosen}", f"- {group}: {preset}"))
    gitml("params", cwd=repo)
    dvc("repro", cwd=repo)
    review = build_review(find_project(repo), base=None, policy_from="head")
    failed = [f"{r.rule}: {r.detail}" for r in review.verdict.failed]
    assert review.verdict.status == "promote", failed


def test_evaluate_refuses_a_model_that_is_not_the_one_train_recorded(repo: Path) -> None:
    model = repo / "models" / "model.skops"
    os.chmod(model, 0o644)
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    metrics = (repo / "reports" / "metrics.json").read_bytes()
    proc = dvc("repro", "evaluate", "--single-item", "--force", cwd=repo, check=False)
    assert proc.returncode != 0
    assert "does not match the recorded" in proc.stdout + proc.stderr
    assert (repo / "reports" / "metrics.json").read_bytes() == metrics  # nothing overwritten
