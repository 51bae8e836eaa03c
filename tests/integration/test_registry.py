"""Releases and the Git-native registry: real git, a real bare `origin`, real DVC and GTO.

Each test gets its own copy of the built reference project, its own DVC remote directory
and (where it pushes) its own bare origin, so tampering in one test cannot leak into another.
The second model the release tests publish (C=0.5) is trained once per run, on a branch of a
copy of the built project (`retrained_repo`); a test takes it with a cherry-pick and
`dvc checkout`.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
import textwrap
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from tests.integration.serving import ServerProcess
from tests.support import build_once, copy_repo, dvc, git, gitml, run

NAME = "churn-classifier"
ROOT = Path(__file__).resolve().parents[2]
RETRAINED = "retrained"  # the branch of `retrained_repo` that holds the C=0.5 model


def _gto(*args: str, cwd: Path):
    return run(Path(sys.executable).parent / "gto", *args, cwd=cwd)


def _with_remotes(repo: Path, remote_dir: str = "dvc-remote") -> Path:
    """Point the project at a private DVC remote and a bare origin; push main."""
    remote = repo.parent / remote_dir
    dvc("remote", "modify", "local", "url", str(remote), cwd=repo)
    git("commit", "-qam", "private DVC remote", cwd=repo)
    origin = repo.parent / "origin.git"
    git("init", "-q", "--bare", str(origin), cwd=repo.parent)
    git("remote", "add", "origin", str(origin), cwd=repo)
    git("push", "-q", "origin", "main", cwd=repo)
    return origin


def _models(repo: Path) -> dict[str, list[str]]:
    rows = json.loads(gitml("models", "--json", cwd=repo).stdout)
    return {row["version"]: row["stages"] for row in rows}


def _gto_stages(repo: Path) -> dict[str, str]:
    shown = json.loads(_gto("show", "--json", cwd=repo).stdout)
    return shown.get(NAME, {}).get("stage", {})


def _retrain(repo: Path, c: str) -> None:
    config = repo / "conf" / "model" / "logistic_regression.yaml"
    config.write_text(config.read_text().replace("C: 1.0", f"C: {c}"))
    gitml("params", cwd=repo)
    dvc("repro", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", f"logistic regression C={c}", cwd=repo)


@pytest.fixture(scope="session")
def retrained_repo(built_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built project with branch `retrained`: C=0.5, reproduced and committed on top of
    main, its outputs in the DVC cache; main checked out as it was. Read-only: copy it."""

    def build(base: Path) -> None:
        repo = copy_repo(built_repo, base / "project")
        git("checkout", "-q", "-b", RETRAINED, cwd=repo)
        _retrain(repo, "0.5")
        git("checkout", "-q", "main", cwd=repo)
        dvc("checkout", "-q", cwd=repo)

    return build_once(tmp_path_factory, "registry-retrained", build) / "project"


@pytest.fixture
def retrained(retrained_repo: Path, tmp_path: Path) -> Path:
    """A private copy of `retrained_repo`, on main: `_take_retrained` moves it to C=0.5."""
    return copy_repo(retrained_repo, tmp_path / "project")


def _take_retrained(repo: Path) -> None:
    """The C=0.5 commit of `retrained_repo` as a new commit on the current branch, its
    outputs restored from the DVC cache, as the pipeline made them (what `_retrain(repo,
    "0.5")` commits, without training the same model again)."""
    git("cherry-pick", RETRAINED, cwd=repo)
    dvc("checkout", "-q", cwd=repo)
    assert "up to date" in dvc("status", cwd=repo).stdout


def _remote_file(repo: Path, rev: str) -> Path:
    """Where the DVC remote stores the model of `rev`."""
    lock = yaml.safe_load(git("show", f"{rev}:dvc.lock", cwd=repo).stdout)
    md5 = next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"].endswith(".skops"))
    return repo.parent / "dvc-remote" / "files" / "md5" / md5[:2] / md5[2:]


def _tamper(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))


def test_release_promote_rollback_and_fetch_in_a_fresh_clone(retrained: Path) -> None:
    repo = retrained
    origin = _with_remotes(repo)
    first_model = (repo / "models" / "model.skops").read_bytes()

    out = gitml("release", "--push", cwd=repo).stdout
    assert f"released {NAME}@v1.0.0" in out and "first release" in out
    assert f"refs/tags/{NAME}@v1.0.0" in git("ls-remote", "--tags", str(origin), cwd=repo).stdout
    message = git("tag", "-l", "--format=%(contents)", f"{NAME}@v1.0.0", cwd=repo).stdout
    metadata = json.loads((repo / "models" / "metadata.json").read_text())
    assert f"model sha256: {metadata['model_file']['sha256']}" in message
    assert "metrics: roc_auc=0.8" in message and "training data sha256:" in message
    assert _models(repo) == {"v1.0.0": []}

    _take_retrained(repo)
    out = gitml("release", "--push", cwd=repo).stdout
    assert f"released {NAME}@v1.1.0" in out and f"promote against {NAME}@v1.0.0" in out
    assert _models(repo) == {"v1.1.0": [], "v1.0.0": []}

    for stage in ("dev", "staging", "prod"):
        gitml("promote", NAME, "v1.0.0", "--stage", stage, cwd=repo)
    skipped = gitml("promote", NAME, "v1.1.0", "--stage", "prod", cwd=repo, check=False)
    assert skipped.returncode == 1 and "does not allow skipping it" in skipped.stderr
    for stage in ("dev", "staging", "prod"):
        gitml("promote", NAME, "v1.1.0", "--stage", stage, cwd=repo)
    # stages in the promotion order of .gto, as `gitml models` lists them
    assert _models(repo) == {"v1.1.0": ["dev", "staging", "prod"], "v1.0.0": []}
    assert _gto_stages(repo) == {"dev": "v1.1.0", "staging": "v1.1.0", "prod": "v1.1.0"}

    out = gitml("rollback", NAME, "--stage", "prod", "--push", cwd=repo).stdout
    assert f"prod rolled back from v1.1.0 to {NAME}@v1.0.0" in out
    assert _models(repo) == {"v1.1.0": ["dev", "staging"], "v1.0.0": ["prod"]}
    assert _gto_stages(repo)["prod"] == "v1.0.0"
    git("push", "-q", "origin", "--tags", cwd=repo)

    # a second clone with an empty DVC cache gets the model from the DVC remote
    clone = repo.parent / "clone"
    git("clone", "-q", "-b", "main", str(origin), str(clone), cwd=repo.parent)
    assert not (clone / ".dvc" / "cache").exists()
    assert _models(clone) == _models(repo)
    fetched = clone.parent / "served"
    gitml("fetch", f"{NAME}#prod", "-o", str(fetched), cwd=clone)
    assert (fetched / "model.skops").read_bytes() == first_model
    release = json.loads((fetched / "release.json").read_text())
    assert (release["version"], release["stages"]) == ("v1.0.0", ["prod"])
    assert "| release | v1.0.0 (" in (fetched / "model_card.md").read_text()
    assert f"commit `{release['commit'][:12]}`" in (fetched / "model_card.md").read_text()
    assert json.loads((fetched / "signature.json").read_text())["model_name"] == NAME

    # serve and score the prod release by reference, from the clone
    server = ServerProcess(clone, "--ref", f"{NAME}#prod")
    try:
        server.wait_ready()
        described = httpx.get(f"{server.url}/v1/model", timeout=10).json()
        assert (described["name"], described["version"]) == (NAME, "v1.0.0")
        assert described["commit"] == release["commit"]
    finally:
        assert server.stop() == 0
    rows = clone.parent / "rows.csv"
    source = pd.read_csv(ROOT / "data" / "external" / "telco_churn.csv.gz", nrows=50)
    source.drop(columns=["churn"]).to_csv(rows, index=False)
    by_ref, by_file = clone.parent / "by_ref.csv", clone.parent / "by_file.csv"
    gitml("predict", str(rows), "-o", str(by_ref), "--ref", f"{NAME}#prod", cwd=clone)
    gitml(
        "predict", str(rows), "-o", str(by_file), "--model", str(fetched / "model.skops"), cwd=clone
    )
    assert pd.read_csv(by_ref)["score"].tolist() == pd.read_csv(by_file)["score"].tolist()

    # a model file modified in the DVC remote is refused, and nothing is written
    _tamper(_remote_file(repo, f"{NAME}@v1.1.0"))
    refused = gitml(
        "fetch", f"{NAME}@v1.1.0", "-o", str(clone.parent / "bad"), cwd=clone, check=False
    )
    assert refused.returncode == 1
    assert "refusing" in refused.stderr and "SHA-256" in refused.stderr
    assert not (clone.parent / "bad").exists()


def test_the_model_has_one_name_in_params_and_dvc_yaml(repo: Path) -> None:
    """A renamed model (conf/config.yaml) with dvc.yaml's artifact left behind is refused by
    `gitml params`, `gitml params --check` and `gitml release`, naming both values; before,
    the release gated the renamed model against the old name's history."""
    config = repo / "conf" / "config.yaml"
    params = repo / "params.yaml"
    before = params.read_bytes()
    config.write_text(
        config.read_text().replace(f"model_name: {NAME}", "model_name: credit-scorer")
    )
    both = f"named 'credit-scorer' in params.yaml (project.model_name) but '{NAME}' in dvc.yaml"

    proc = gitml("params", cwd=repo, check=False)
    assert proc.returncode == 1 and both in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert params.read_bytes() == before  # nothing written

    params.write_text(before.decode().replace(f"model_name: {NAME}", "model_name: credit-scorer"))
    proc = gitml("params", "--check", cwd=repo, check=False)
    assert proc.returncode == 1 and both in proc.stderr, proc.stderr

    git("commit", "-qam", "rename the model in conf/ only", cwd=repo)
    proc = gitml("release", cwd=repo, check=False)
    assert proc.returncode == 1 and both in proc.stderr, proc.stderr
    assert git("tag", cwd=repo).stdout == ""

    dvc_yaml = repo / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace(f"  {NAME}:\n", "  credit-scorer:\n"))
    assert "up to date" in gitml("params", "--check", cwd=repo).stdout


def test_release_refusals_leave_no_tag(repo: Path) -> None:
    _with_remotes(repo)

    def refused(*args: str) -> str:
        proc = gitml(*args, cwd=repo, check=False)
        assert proc.returncode != 0, proc.stdout
        return proc.stderr

    (repo / "notes.txt").write_text("scratch")
    assert "working tree is not clean: notes.txt" in refused("release")
    (repo / "notes.txt").unlink()

    config = repo / "conf" / "model" / "logistic_regression.yaml"
    config.write_text(config.read_text().replace("C: 1.0", "C: 0.7"))
    git("commit", "-qam", "conf only", cwd=repo)
    assert "params.yaml is stale" in refused("release")
    gitml("params", cwd=repo)
    git("commit", "-qam", "params without repro", cwd=repo)
    assert "pipeline is not up to date" in refused("release")
    assert "run `dvc repro`" in refused("release")
    git("reset", "-q", "--hard", "HEAD~2", cwd=repo)

    # only an output differs from dvc.lock (as after `git checkout` without `dvc checkout`):
    # restoring it is enough, re-running the pipeline is not needed
    (repo / "data" / "raw" / "telco_churn.parquet").unlink()
    message = refused("release")
    assert "outputs differ from dvc.lock: data/raw/telco_churn.parquet (deleted)" in message
    assert "hint: restore them with `dvc checkout`" in message
    assert "`dvc repro` is not needed" in message
    dvc("checkout", cwd=repo)

    dvc("freeze", "card", cwd=repo)
    git("commit", "-qam", "freeze card", cwd=repo)
    assert "frozen" in refused("release")
    git("reset", "-q", "--hard", "HEAD~1", cwd=repo)

    assert "invalid version '1.2'" in refused("release", "--version", "1.2")
    assert git("tag", cwd=repo).stdout == ""

    gitml("release", cwd=repo)
    assert "tag churn-classifier@v1.0.0 already exists" in refused("release", "--version", "v1.0.0")
    assert "already released as churn-classifier@v1.0.0" in refused("release")

    policy = repo / "conf" / "promotion" / "default.yaml"
    policy.write_text(policy.read_text().replace("roc_auc: 0.80", "roc_auc: 0.99"))
    gitml("params", cwd=repo)
    git("commit", "-qam", "stricter floor", cwd=repo)
    assert "promotion gate against churn-classifier@v1.0.0 says 'blocked'" in refused("release")
    assert git("tag", cwd=repo).stdout.split() == [f"{NAME}@v1.0.0"]

    assert "unknown version churn-classifier@v9.9.9" in refused(
        "promote", NAME, "v9.9.9", "--stage", "dev"
    )
    assert "unknown version" in refused("fetch", f"{NAME}@v9.9.9", "-o", "x")
    assert "unknown model 'other-model'" in refused(
        "promote", "other-model", "v1.0.0", "--stage", "dev"
    )
    assert "GTO's naming rule" in refused(
        "promote", "Churn Classifier!", "v1.0.0", "--stage", "dev"
    )
    assert "unknown stage 'qa'" in refused("promote", NAME, "v1.0.0", "--stage", "qa")
    assert "invalid stage name 'prod!'" in refused("promote", NAME, "v1.0.0", "--stage", "prod!")
    assert "nothing to roll back to" in refused("rollback", NAME, "--stage", "prod")
    assert "no version of churn-classifier is in stage 'prod'" in refused(
        "fetch", f"{NAME}#prod", "-o", "x"
    )
    assert not (repo / "x").exists()


def test_reproduce_matches_and_reports_a_nondeterministic_release(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a remote path longer than a terminal line (`dvc remote list` would wrap it)
    _with_remotes(repo, "a-dvc-remote-whose-path-is-longer-than-one-terminal-line-" * 2)
    gitml("release", cwd=repo)
    out = gitml("reproduce", f"{NAME}@v1.0.0", cwd=repo).stdout
    assert f"{NAME}@v1.0.0 reproduces" in out
    assert "worktree" not in git("worktree", "list", cwd=repo).stdout.split("\n", 1)[-1]

    # A deliberately non-deterministic evaluation that differs on every run, by a known amount:
    # run k (counted outside the repo, so the reproduction's worktree counts on) swaps the
    # scores of the 10 * k lowest adjacent (negative, positive) pairs in score order. Each swap
    # mis-ranks exactly one more pair, so run 2's roc_auc is >= 10 / (positives x negatives)
    # (~2.6e-5 on 1,409 test rows) below run 1's: always past the 1e-6 reproduce tolerance,
    # and far below the gate's min_effect of 0.002 (the scores stay near 0, far from the
    # threshold), so this release is not blocked. Random noise was within 1e-6 in ~0.8 % of runs.
    runs = tmp_path / "evaluate-runs"
    stage = repo / "src" / "gitml" / "stages" / "evaluate.py"
    code = stage.read_text()
    marker = "        result = evaluate_scores(test, output, params)\n"
    assert marker in code
    noisy = f"""\
    import numpy as np

    runs = Path({str(runs)!r})
    k = int(runs.read_text()) + 1 if runs.exists() else 1
    runs.write_text(str(k))
    order = np.argsort(output, kind="stable")
    y, s = (test[data.target] == data.positive).to_numpy()[order], output[order]
    pairs = np.flatnonzero(~y[:-1] & y[1:] & (s[:-1] < s[1:]))[: 10 * k]
    output = output.copy()
    output[order[pairs]], output[order[pairs + 1]] = s[pairs + 1], s[pairs]
"""
    stage.write_text(code.replace(marker, textwrap.indent(noisy, "    ") + marker))
    with monkeypatch.context() as env:  # restores PYTHONPATH as it was, set or not
        env.setenv("PYTHONPATH", f"{repo / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        dvc("repro", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "noisy evaluation", cwd=repo)
    gitml("release", "--bump", "patch", cwd=repo)

    proc = gitml("reproduce", f"{NAME}@v1.0.1", cwd=repo, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{NAME}@v1.0.1 does NOT reproduce" in proc.stdout
    assert "reports/metrics.json: metrics.roc_auc: recorded" in proc.stdout
    assert runs.read_text() == "2"  # the evaluation ran once in the repo, once to reproduce


def test_release_workflow_hands_over_scripts_that_work(repo: Path) -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    assert workflow[True]["push"]["tags"] == ["*@v*", "*#*"]
    assert workflow["permissions"] == {"contents": "read"}
    jobs = workflow["jobs"]
    assert jobs["release"]["permissions"] == {"contents": "write"}
    assert jobs["deploy"]["permissions"] == {"contents": "read"}
    assert "needs.event.outputs.stage == 'prod'" in jobs["deploy"]["if"]
    assert jobs["release"]["if"] == "needs.event.outputs.event == 'registration'"
    # one queue for every prod deploy, never cancelled half-way
    assert jobs["deploy"]["concurrency"] == {
        "group": "deploy-production",
        "cancel-in-progress": False,
    }
    deploy_steps = jobs["deploy"]["steps"]
    check = next(s for s in deploy_steps if ".ci/deploy-check" in str(s.get("run", "")))
    assert check["run"].endswith('.ci/deploy-check "$TAG" >> "$GITHUB_OUTPUT"')
    assert check["env"] == {"TAG": "${{ github.ref_name }}"} and "if" not in check
    later = deploy_steps[deploy_steps.index(check) + 1 :]
    assert any(".ci/deploy " in str(s.get("run", "")) for s in later)  # the hook comes after
    for step in later:  # nothing is fetched or deployed unless the tag is still in force
        assert step["if"] == f"steps.{check['id']}.outputs.deploy == 'true'", step["name"]
    steps = {s["name"]: s for job in jobs.values() for s in job["steps"]}
    assert ".ci/release-event" in steps["Ask gto check-ref what the tag is"]["run"]
    assert (
        "gh release create" in steps["Publish the GitHub Release (notes are the model card)"]["run"]
    )
    for step in steps.values():
        for key, value in (step.get("env") or {}).items():
            if "SECRET" in key or "KEY" in key:
                assert value.startswith("${{ secrets."), f"{key} must come from secrets"

    _with_remotes(repo)
    gitml("release", cwd=repo)
    for stage in ("dev", "staging", "prod"):
        gitml("promote", NAME, "v1.0.0", "--stage", stage, cwd=repo)
    ci = ROOT / ".ci"
    event = run(ci / "release-event", f"{NAME}@v1.0.0", cwd=repo).stdout.split()
    assert event == ["event=registration", f"name={NAME}", "version=v1.0.0", "stage="]
    event = run(ci / "release-event", f"{NAME}#prod#3", cwd=repo).stdout.split()
    assert event == ["event=assignment", f"name={NAME}", "version=v1.0.0", "stage=prod"]

    dist = repo.parent / "dist"
    run(ci / "release-bundle", f"{NAME}@v1.0.0", str(dist), cwd=repo)
    bundle = dist / "bundle"
    assert sorted(p.name for p in bundle.iterdir()) == sorted(
        ["model.skops", "signature.json", "metadata.json", "metrics.json", "model_card.md",
         "calibrator.json", "importance.json", "release.json"]
    )  # fmt: skip
    with tarfile.open(dist / f"{NAME}-v1.0.0.tar.gz") as archive:
        packed = archive.extractfile("bundle/model.skops")
        assert packed is not None and packed.read() == (bundle / "model.skops").read_bytes()
    deployed = run(ci / "deploy", str(bundle), cwd=repo).stdout
    assert f"deploy: {NAME}@v1.0.0" in deployed and "loads: Pipeline" in deployed


def test_deploy_check_passes_only_the_prod_assignment_in_force(retrained: Path) -> None:
    """The deploy job's re-check, on real GTO tags: promote v1.0.0, then v1.1.0, then roll
    back; at each point only the newest prod assignment may deploy."""
    repo = retrained
    _with_remotes(repo)
    check = ROOT / ".ci" / "deploy-check"

    def deploys(tag: str) -> bool:
        proc = run(check, tag, cwd=repo)
        assert proc.stdout.split() in (["deploy=true"], ["deploy=false"]), proc.stdout
        return proc.stdout.split() == ["deploy=true"]

    def prod_tag() -> str:
        """The newest prod assignment: the highest event counter N of NAME#prod#N."""
        tags = git("tag", "--list", f"{NAME}#prod#*", cwd=repo).stdout.split()
        return max(tags, key=lambda t: int(t.rsplit("#", 1)[1]))

    gitml("release", cwd=repo)
    for stage in ("dev", "staging", "prod"):
        gitml("promote", NAME, "v1.0.0", "--stage", stage, cwd=repo)
    first = prod_tag()
    assert deploys(first)
    _take_retrained(repo)
    gitml("release", cwd=repo)
    for stage in ("dev", "staging", "prod"):
        gitml("promote", NAME, "v1.1.0", "--stage", stage, cwd=repo)
    second = prod_tag()
    assert deploys(second) and not deploys(first)
    proc = gitml("check-assignment", first, cwd=repo, check=False)
    assert proc.returncode == 1
    assert f"{first} is superseded: it assigned v1.0.0 to prod, which now holds" in proc.stdout
    assert f"{NAME}@v1.1.0 (tag {second})" in proc.stdout

    gitml("rollback", NAME, "--stage", "prod", cwd=repo)
    rolled_back = prod_tag()
    assert rolled_back not in (first, second)
    assert deploys(rolled_back) and not deploys(second)
    # the first tag named v1.0.0 too, but the rollback's tag is the assignment in force
    assert not deploys(first)
    out = gitml("check-assignment", rolled_back, cwd=repo).stdout
    assert f"{rolled_back} is in force: prod holds {NAME}@v1.0.0" in out

    # not an assignment, or no such tag: an error, never a silent skip
    for bad in (f"{NAME}@v1.0.0", f"{NAME}#prod#99"):
        proc = run(check, bad, cwd=repo, check=False)
        assert proc.returncode == 3 and "deploy=" not in proc.stdout, proc.stdout + proc.stderr
        assert "not a stage assignment tag" in proc.stderr or "no registry tag" in proc.stderr


@pytest.mark.parametrize("bad", ["v1", "1.0.0", "v1.0", "v01.0.0"])
def test_invalid_versions_are_refused_before_anything_runs(repo: Path, bad: str) -> None:
    proc = gitml("release", "--version", bad, cwd=repo, check=False)
    assert proc.returncode == 1
    assert f"invalid version '{bad}'" in proc.stderr and "semantic version" in proc.stderr
