"""`gitml report` and `gitml gate` on real git + DVC repositories with a main and a PR branch."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support import build_once, copy_repo, dvc, git, gitml

PR_BRANCH = "pr"


def _set(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def _retrain(repo: Path, conf: str, old: str, new: str) -> None:
    """Change conf/ the way a PR does, recompose params.yaml and rerun the pipeline."""
    _set(repo / conf, old, new)
    gitml("params", cwd=repo)
    dvc("repro", cwd=repo)


def _commit(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


@pytest.fixture(scope="session")
def weak_main(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """main holds a deliberately weak model (heavy regularisation), so a PR can beat it."""

    def build(base: Path) -> None:
        repo = copy_repo(built_repo, base / "project")
        _set(repo / "conf/model/logistic_regression.yaml", "C: 1.0", "C: 0.0005")
        gitml("params", cwd=repo)
        dvc("repro", cwd=repo)
        _commit(repo, "weak baseline")
        git("checkout", "-q", "-b", PR_BRANCH, cwd=repo)

    return build_once(tmp_path_factory, "review", build) / "project"


@pytest.fixture
def pr(weak_main: Path, tmp_path: Path) -> Path:
    return copy_repo(weak_main, tmp_path / "project")


def _review(repo: Path, *args: str) -> tuple[int, str, str]:
    out = repo.parent / "report.md"
    gitml("report", "--base", "main", "--out", str(out), *args, cwd=repo)
    gate = gitml("gate", "--base", "main", *args, cwd=repo, check=False)
    return gate.returncode, out.read_text(), gate.stdout + gate.stderr


def _metric_row(report: str, metric: str) -> list[str]:
    line = next(x for x in report.splitlines() if x.startswith(f"| {metric} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_better_model_passes_with_positive_deltas_and_intervals(pr: Path) -> None:
    _retrain(pr, "conf/model/logistic_regression.yaml", "C: 0.0005", "C: 1.0")
    code, report, gate = _review(pr)
    assert code == 0, gate
    assert report.startswith("## ✅ gitml model review: promote")
    row = _metric_row(report, "roc_auc ↑")
    assert float(row[3].split()[0]) > 0  # delta
    low, high = (float(v) for v in row[4].strip("[]").split(","))
    assert low < float(row[3].split()[0]) < high
    assert "`model.params.C` | `0.0005` | `1.0`" in report
    assert "Changed in `conf/`: `conf/model/logistic_regression.yaml`" in report
    assert "Hyperparameters changed: `C` `0.0005` → `1.0`" in report
    # same data, no shift: one line instead of a table of zeros
    assert "No DVC-tracked data changed; the training data did not shift (20 columns" in report
    assert "| column | statistic |" not in report
    assert "```mermaid" in report and "| actual \\ predicted | No | Yes |" in report


def test_flipped_labels_are_blocked_with_the_failing_rules(pr: Path) -> None:
    frame = pd.read_csv(pr / "data/external/telco_churn.csv.gz", keep_default_na=False)
    flip = frame.sample(frac=0.45, random_state=0).index
    frame.loc[flip, "churn"] = frame.loc[flip, "churn"].map({"Yes": "No", "No": "Yes"})
    frame.to_csv(pr / "data/external/flipped.csv", index=False)
    _retrain(
        pr,
        "conf/data/telco_churn.yaml",
        "source: data/external/telco_churn.csv.gz",
        "source: data/external/flipped.csv",
    )
    code, report, gate = _review(pr)
    assert code == 1, gate
    assert report.startswith("## ⛔ gitml model review: blocked")
    assert "- `minimums.roc_auc`: roc_auc" in report
    assert "FAIL  minimums.roc_auc" in gate
    assert "data/external/flipped.csv" in report  # the data section names the new input
    churn = next(x for x in report.splitlines() if x.startswith("| `churn` | Jensen-Shannon"))
    assert churn.endswith("| ⚠️ yes |")  # the label distribution moved


def test_changed_split_seed_is_not_comparable_unless_recomputed(pr: Path) -> None:
    _retrain(pr, "conf/config.yaml", "seed: 42", "seed: 7")
    code, report, gate = _review(pr)
    assert code == 2, gate
    assert "not comparable" in report.splitlines()[0]
    assert "different test rows" in report
    code, report, gate = _review(pr, "--recompute")
    assert code in (0, 1), gate
    assert "Base metrics recomputed" in report
    row = _metric_row(report, "roc_auc ↑")
    assert row[4].startswith("[")  # a real paired interval


def test_dropped_feature_is_breaking_and_blocks(pr: Path) -> None:
    _retrain(pr, "conf/data/telco_churn.yaml", "drop: []", "drop: [tenure]")
    code, report, gate = _review(pr)
    assert code == 1, gate
    assert "- column removed: `tenure`" in report
    assert "**BREAKING** for serving: input 'tenure' removed" in report
    assert "`allow_breaking_signature`" in report


def test_docs_only_change_passes_and_says_nothing_changed(pr: Path) -> None:
    (pr / "NOTES.md").write_text("just docs\n")
    _commit(pr, "docs")
    code, report, gate = _review(pr)
    assert code == 0, gate
    assert "Nothing changed in the model" in report
    assert "No parameter changed." in report


def test_first_model_uses_absolute_rules_only(built_repo: Path, tmp_path: Path) -> None:
    repo = copy_repo(built_repo, tmp_path / "project")
    first = git("rev-list", "--max-parents=0", "HEAD", cwd=repo).stdout.strip()
    out = tmp_path / "r.md"
    gitml("report", "--base", first, "--out", str(out), "--images", str(tmp_path / "img"), cwd=repo)
    for name in ("roc", "precision_recall", "confusion"):
        assert (tmp_path / "img" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert f"![{name}](img/{name}.png)" in out.read_text()
    gate = gitml("gate", "--base", first, cwd=repo, check=False)
    assert gate.returncode == 0, gate.stdout
    passed = [ln for ln in gate.stdout.splitlines() if ln.startswith("  pass")]
    rules = [ln.split()[1].rstrip(":") for ln in passed]
    assert "minimums.roc_auc" in rules
    assert not [r for r in rules if r.startswith(("max_regression", "ci_lower_bound"))]
    assert "has no committed metrics" in out.read_text()


def test_bad_input_gets_clear_errors(pr: Path) -> None:
    gate = gitml("gate", "--base", "no-such-branch", cwd=pr, check=False)
    assert gate.returncode == 3
    assert "revision 'no-such-branch' does not exist" in gate.stderr
    report = gitml("report", "--base", "nope", "--out", "r.md", cwd=pr, check=False)
    assert report.returncode == 1 and "does not exist" in report.stderr
    assert not (pr / "r.md").exists()

    _set(pr / "params.yaml", "C: 0.0005", "C: 0.9")
    stale = gitml("gate", "--base", "main", cwd=pr, check=False)
    assert stale.returncode == 3 and "params.yaml is stale" in stale.stderr
    gitml("params", cwd=pr)

    (pr / "reports/metrics.json").write_text("{ not json")
    corrupt = gitml("gate", "--base", "main", cwd=pr, check=False)
    assert corrupt.returncode == 3
    assert "reports/metrics.json at workspace is not valid JSON" in corrupt.stderr
    json.loads(git("show", "main:reports/metrics.json", cwd=pr).stdout)  # base untouched


def test_the_review_flags_a_head_that_newly_relies_on_a_slice_column(pr: Path) -> None:
    """The head trains on data where `female` leaks the label (a slice column, forbidden in
    the top 3 by the reference policy): the report calls out that it now relies on it, and
    the gate, under the base's policy, fails naming the column and its rank."""
    frame = pd.read_csv(pr / "data/external/telco_churn.csv.gz", keep_default_na=False)
    leak = frame.sample(frac=0.6, random_state=0).index
    frame.loc[leak, "female"] = (frame.loc[leak, "churn"] == "Yes").astype(int)
    frame.to_csv(pr / "data/external/leaky.csv", index=False)
    _retrain(
        pr,
        "conf/data/telco_churn.yaml",
        "source: data/external/telco_churn.csv.gz",
        "source: data/external/leaky.csv",
    )
    base_policy = yaml.safe_load(git("show", "main:params.yaml", cwd=pr).stdout)["promotion"]
    assert "female" in base_policy["importance"]["forbid_top_k"]["columns"]
    code, report, gate = _review(pr)
    assert code == 1, gate
    head = json.loads((pr / "reports/importance.json").read_text())["columns"]
    female = next(c for c in head if c["name"] == "female")
    assert female["rank"] <= base_policy["importance"]["forbid_top_k"]["k"] and female["low"] > 0
    verdict = report.split("### Metrics")[0]
    assert "**⚠️ The head now relies on slice column `female`**" in verdict
    assert f"`importance.forbid_top_k.female`: 'female' ranks {female['rank']} of 19" in verdict
    section = report.split("### What the model relies on")[1].split("\n### ")[0]
    row = next(ln for ln in section.splitlines() if ln.startswith("| `female` (slice) |"))
    assert row.endswith("| **now relies on** ⚠️ |") and f"→ {female['rank']} |" in row
    assert "> **⚠️ Now relies on slice column `female`**" in section
    assert f"FAIL  importance.forbid_top_k.female: 'female' ranks {female['rank']} of 19" in gate
