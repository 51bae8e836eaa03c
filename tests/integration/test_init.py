"""`gitml init`: the reference project is what it renders, a generated project runs and tests
itself, and bad input is refused with nothing written."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gitml.scaffold.create import plan_project
from gitml.scaffold.render import render_files
from gitml.tasks import ESTIMATORS, TASKS
from tests.support import build_once, copy_repo, dvc, git, gitml, run

ROOT = Path(__file__).resolve().parents[2]
TELCO = ROOT / "data/external/telco_churn.csv.gz"
# promotion.importance.forbid_top_k.columns of the reference project
REFERENCE_FORBIDDEN = ("female", "senior_citizen")
# The framework files of the reference project, rendered by `gitml init` (issue 11's list)
FRAMEWORK = ("dvc.yaml", "Makefile", ".github/", ".ci/", "conf/", "tests/project/test_")
NOT_FRAMEWORK = ("conf/data/", "conf/card/")


def _is_framework(rel: str) -> bool:
    return rel.startswith(FRAMEWORK) and not rel.startswith(NOT_FRAMEWORK)


def _root_files() -> set[str]:
    tracked = git("ls-files", cwd=ROOT).stdout.splitlines()
    return {p for p in tracked if _is_framework(p) and (ROOT / p).is_file()}


def test_the_reference_project_is_what_init_renders_for_telco() -> None:
    """The template cannot rot: every framework file at the root is byte for byte what
    `gitml init` renders for the Telco data (framework mode: stages depend on src/gitml)."""
    plan = plan_project(TELCO, target="churn", name="churn")
    assert (plan.spec.model_name, plan.spec.task, plan.spec.data_name) == (
        "churn-classifier",
        "binary",
        "telco_churn",
    )
    assert plan.spec.forbid_top_k == ()  # init forbids nothing: which inputs are sensitive is
    # the team's call; the reference's team forbids two of its slice columns in the top k
    spec = dataclasses.replace(plan.spec, forbid_top_k=REFERENCE_FORBIDDEN)
    rendered = {
        rel: text
        for rel, text in render_files(spec, mode="framework").items()
        if _is_framework(rel)
    }
    root = _root_files()
    differ = [r for r in rendered if r not in root or (ROOT / r).read_text() != rendered[r]]
    assert differ == [], f"root files differ from the scaffold's rendering: {differ}"
    # root-only framework files: presets of the other tasks' estimators (the scaffold's own
    # copies, unchanged), nothing else
    other_models = {f"conf/model/{m}.yaml" for t in TASKS for m in ESTIMATORS[t]}
    extra = sorted(root - set(rendered) - other_models)
    assert extra == [], f"framework files at the root that the scaffold does not render: {extra}"
    scaffold = ROOT / "src/gitml/scaffold"
    for rel in sorted((root & other_models) - set(rendered)):
        assert (ROOT / rel).read_text() == (scaffold / rel).read_text(), rel


def test_a_project_differs_from_the_reference_only_in_how_it_installs_gitml() -> None:
    plan = plan_project(TELCO, target="churn", name="churn")
    framework = render_files(plan.spec, mode="framework")
    project = render_files(plan.spec)
    assert sorted(r for r in project if project[r] != framework[r]) == [
        ".ci/run",
        "Makefile",
        "dvc.yaml",
    ]
    assert "GITML_SPEC ?= -e ." in framework["Makefile"]
    assert "GITML_SPEC ?= $(shell grep -m1 '^gitml==' requirements.lock)" in project["Makefile"]
    assert "src/gitml" not in project["dvc.yaml"]
    assert project["dvc.yaml"].count("- requirements.lock") == 7  # every stage's code


def _awkward_file(path: Path) -> None:
    """scikit-learn's breast cancer data with awkward names, blanks and every kind of
    non-feature: an ID, a date, a constant, free text."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.data.iloc[:, :6].copy()
    frame.columns = [f"{c} (cell)" for c in frame.columns]  # spaces and parentheses
    rows = len(frame)
    rng = np.random.default_rng(0)
    frame.insert(0, "patient id", np.arange(100_000, 100_000 + rows))
    frame["visit date"] = pd.date_range("2020-01-01", periods=rows, freq="D").strftime("%Y-%m-%d")
    frame["clinic"] = "north"
    frame["notes"] = [
        f"seen at visit {k} in clinic, follow up in {k % 9} weeks" for k in range(rows)
    ]
    frame.loc[rng.choice(rows, 20, replace=False), "mean area (cell)"] = np.nan
    frame["diagnosis"] = np.where(bunch.target == 1, "benign", "malignant")
    frame.to_csv(path, index=False)


def _build_cancer(base: Path) -> None:
    _awkward_file(base / "cancer data.csv")
    proc = gitml("init", "cancer", "--data", "cancer data.csv", "--target", "diagnosis", cwd=base)
    (base / "init.log").write_text(proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def cancer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project made by `gitml init` from the awkward file. Read-only: copy it to change it."""
    return build_once(tmp_path_factory, "init-cancer", _build_cancer) / "cancer"


@pytest.mark.slow
def test_init_makes_a_committed_project_that_reproduces_and_passes_its_own_tests(
    cancer: Path, tmp_path: Path
) -> None:
    log = (cancer.parent / "init.log").read_text()
    assert "task: binary (positive class 'malignant': the minority class" in log
    assert "first run: roc_auc" in log and "quality floor" in log
    # one commit holds everything, and the tree is clean: git and DVC agree
    assert git("log", "--format=%s", cwd=cancer).stdout.startswith("gitml init: cancer (binary")
    assert git("status", "--porcelain", cwd=cancer).stdout == ""
    cancer = copy_repo(cancer, tmp_path / "cancer")  # runs below write caches: a private copy
    assert "up to date" in dvc("status", cwd=cancer).stdout
    assert "Data and pipelines are up to date." in dvc("repro", cwd=cancer).stdout
    # the awkward columns: excluded ones named in the schema, the rest used as they are named
    data = (cancer / "conf/data/cancer_data.yaml").read_text(encoding="utf-8")
    assert "task: binary\ntarget: diagnosis\npositive_class: malignant\n" in data
    signature = json.loads((cancer / "models/signature.json").read_text())
    inputs = [c["name"] for c in signature["inputs"]]
    assert "mean area (cell)" in inputs
    assert not {"patient id", "visit date", "clinic", "notes"} & set(inputs)
    # one name: params, dvc.yaml's artifact and the signature agree
    assert "model_name: cancer-classifier" in (cancer / "params.yaml").read_text()
    importance = json.loads((cancer / "reports/importance.json").read_text())
    assert importance["metric"] == "roc_auc" and len(importance["columns"]) == len(inputs)
    assert "## What the model relies on" in (cancer / "reports/model_card.md").read_text()
    assert "\n  cancer-classifier:\n" in (cancer / "dvc.yaml").read_text()
    assert signature["model_name"] == "cancer-classifier"
    gitml("params", "--check", cwd=cancer)
    # the project's own tests pass, unedited: data contract and quality floor
    tests = run(sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests", cwd=cancer)
    assert "3 passed" in tests.stdout
    floor = json.loads((cancer / "tests/project/floor.json").read_text())
    metrics = json.loads((cancer / "reports/metrics.json").read_text())
    assert floor["metric"] == "roc_auc" and floor["first_run"] == metrics["metrics"]["roc_auc"]
    assert floor["floor"] < floor["first_run"]
    # the gate holds the first model to the same floor (promotion.minimums)
    policy = (cancer / "conf/promotion/default.yaml").read_text()
    assert f"\n  roc_auc: {floor['floor']:.2f}\n" in policy
    assert f"roc_auc: {floor['floor']}" in (cancer / "params.yaml").read_text()


@pytest.mark.slow
def test_no_absolute_path_of_this_machine_in_a_generated_file(cancer: Path) -> None:
    tracked = git("ls-files", cwd=cancer).stdout.splitlines()
    machine = {str(cancer.parent), str(ROOT), sys.prefix}
    leaks = [
        p for p in tracked if any(m in (cancer / p).read_text(errors="replace") for m in machine)
    ]
    assert leaks == []
    assert (cancer / "requirements.lock").read_text().count("\ngitml==") == 1


@pytest.mark.slow
def test_the_quality_floor_fails_a_worse_model(cancer: Path, tmp_path: Path) -> None:
    project = copy_repo(cancer, tmp_path / "cancer")
    metrics_file = project / "reports/metrics.json"
    metrics = json.loads(metrics_file.read_text())
    floor = json.loads((project / "tests/project/floor.json").read_text())
    metrics["metrics"]["roc_auc"] = floor["floor"] - 0.01
    metrics_file.write_text(json.dumps(metrics))
    proc = run(
        sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests", cwd=project, check=False
    )
    assert proc.returncode == 1
    assert "fell below the floor" in proc.stdout


@pytest.mark.slow
def test_make_repro_in_a_project_runs_in_a_given_environment_without_installing(
    cancer: Path, tmp_path: Path
) -> None:
    """`make repro` and `make test` with VENV=... use an environment as it is: no venv, no
    pip install."""
    project = copy_repo(cancer, tmp_path / "cancer")
    env_dir = Path(sys.prefix)
    before = sorted(p.name for p in env_dir.iterdir())
    proc = run("make", "repro", f"VENV={env_dir}", cwd=project)
    assert "pip install" not in proc.stdout
    assert "Data and pipelines are up to date." in proc.stdout
    assert "metrics.roc_auc" in proc.stdout
    tests = run("make", "test", f"VENV={env_dir}", "TEST_WORKERS=2", cwd=project)
    assert "3 passed" in tests.stdout
    assert sorted(p.name for p in env_dir.iterdir()) == before
    assert not (project / ".venv").exists()
    help_text = run("make", "help", cwd=project).stdout
    assert "make repro" in help_text and "make test" in help_text and "bench" not in help_text


@pytest.mark.slow
def test_init_adds_to_an_existing_git_repository_and_touches_nothing_in_it(
    tmp_path: Path,
) -> None:
    from sklearn.datasets import load_breast_cancer

    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    (repo / "notes.txt").write_text("mine\n")
    (repo / "conf").mkdir()
    (repo / "conf/other.yaml").write_text("x: 1\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "before", cwd=repo)
    frame = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, 3, -1]]
    frame.to_csv(tmp_path / "bc.csv", index=False)

    gitml("init", str(repo), "--data", str(tmp_path / "bc.csv"), "--target", "target", cwd=tmp_path)
    assert (repo / "notes.txt").read_text() == "mine\n"
    assert (repo / "conf/other.yaml").read_text() == "x: 1\n"
    log = git("log", "--format=%s", cwd=repo).stdout.splitlines()
    assert log[1] == "before" and log[0].startswith("gitml init: repo (binary")
    assert git("status", "--porcelain", cwd=repo).stdout == ""
    assert (repo / "reports/metrics.json").is_file()


def _state(directory: Path) -> list[tuple[str, bytes]]:
    return sorted(
        (p.relative_to(directory).as_posix(), p.read_bytes() if p.is_file() else b"")
        for p in directory.rglob("*")
    )


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with small data files for the refusals."""
    base = tmp_path_factory.mktemp("init-inputs")
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"x": rng.normal(size=150), "y": rng.choice(["a", "b"], 150), "only": "same"}
    )
    frame.to_csv(base / "ok.csv", index=False)
    frame.iloc[[0, 1]].assign(y=["a", "b"]).to_csv(base / "two_rows.csv", index=False)
    (base / "empty.csv").write_text("")
    (base / "binary.csv").write_bytes(bytes(range(256)) * 4)
    return base


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--data", "missing.csv", "--target", "y"), "missing.csv: data file not found"),
        (("--data", "empty.csv", "--target", "y"), "empty.csv: the file is empty (0 bytes)"),
        (("--data", "binary.csv", "--target", "y"), "binary.csv: not a readable"),
        (("--data", "ok.csv", "--target", "z"), "no column 'z' to use as --target"),
        (("--data", "ok.csv", "--target", "only"), "has one value ('same')"),
        (("--data", "two_rows.csv", "--target", "y"), "2 data rows; a project needs at least 100"),
        (
            ("--data", "ok.csv", "--target", "y", "--task", "multiclass"),
            "--task multiclass needs 3 or more classes, found 2 (binary)",
        ),
        (
            ("--data", "ok.csv", "--target", "y", "--task", "nonsense"),
            "--task 'nonsense': expected one of auto, binary, multiclass, regression",
        ),
    ],
    ids=[
        "missing",
        "empty",
        "unreadable",
        "unknown-target",
        "one-value",
        "two-rows",
        "task",
        "bad",
    ],
)
def test_bad_input_is_refused_with_nothing_created(
    small: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    target = tmp_path / "new"
    args = tuple(str(small / a) if a.endswith(".csv") else a for a in args)
    proc = gitml("init", str(target), *args, cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: ")
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary build left behind


def test_a_non_empty_directory_is_refused_without_force(small: Path, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("keep\n")
    proc = gitml(
        "init",
        str(target),
        "--data",
        str(small / "ok.csv"),
        "--target",
        "y",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    assert "busy: the directory is not empty (keep.txt); nothing written" in proc.stderr
    assert "--force" in proc.stderr
    assert _state(target) == [("keep.txt", b"keep\n")]


def test_conflicting_files_are_listed_and_nothing_is_written(small: Path, tmp_path: Path) -> None:
    target = tmp_path / "repo"
    target.mkdir()
    git("init", "-q", "-b", "main", cwd=target)
    (target / "Makefile").write_text("all:\n")
    (target / "conf").mkdir()
    (target / "conf/config.yaml").write_text("mine: 1\n")
    before = _state(target)
    proc = gitml(
        "init",
        str(target),
        "--data",
        str(small / "ok.csv"),
        "--target",
        "y",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    assert "2 file(s) that gitml init would add exist already; nothing written" in proc.stderr
    assert "\n  Makefile\n" in proc.stderr and "conf/config.yaml" in proc.stderr
    assert _state(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_a_failed_first_run_leaves_nothing_behind(small: Path, tmp_path: Path) -> None:
    """The pipeline runs in the temporary build: when it fails, DIR is never created."""
    frame = pd.read_csv(small / "ok.csv")
    frame["y"] = ["a"] * 149 + ["b"]  # a 1-in-150 class: validate refuses it (min_class_fraction)
    frame.to_csv(tmp_path / "rare.csv", index=False)
    proc = gitml(
        "init", "new/proj", "--data", "rare.csv", "--target", "y", cwd=tmp_path, check=False
    )
    assert proc.returncode != 0
    assert "the first run of the pipeline failed, so nothing was written" in proc.stderr
    assert "[class_balance] class 'b' makes up 0.67% of the target" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rare.csv"]
