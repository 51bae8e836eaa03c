"""Same commit, same bytes: canonical model files, a re-run that changes nothing, a kill-safe train.

Real processes throughout: models are fitted and saved in separate interpreters, `dvc repro
--force` runs the real pipeline, and the train stage is SIGKILLed for real at every step of
its writing.
"""

from __future__ import annotations

import builtins
import hashlib
import importlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import yaml

from tests.support import dvc, git, gitml, run

ROOT = Path(__file__).resolve().parents[2]
TRIO = ("model.skops", "signature.json", "metadata.json")
# the one-step swap of the trio needs renameat2; elsewhere the files are replaced one by one
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="atomic directory exchange is Linux-only"
)
TRAIN_ARGS = [
    "--train", "data/processed/train.parquet",
    "--model", "models/model.skops",
    "--signature", "models/signature.json",
    "--metadata", "models/metadata.json",
]  # fmt: skip

# Fits every preset of conf/model/ on the same rows and saves it with gitml, in a fresh
# interpreter; then loads each file back and checks the predictions are exactly the same.
_FIT_AND_SAVE = """
import sys
from pathlib import Path
import numpy as np
from gitml.config.compose import compose_params, parse_params
from gitml.data.io import read_source
from gitml.model.build import build_pipeline
from gitml.model.persist import load_model, save_model

root, out = Path(sys.argv[1]), Path(sys.argv[2])
frame = read_source(root / "data/external/telco_churn.csv.gz").to_pandas().sample(
    1500, random_state=0
)
presets = {  # the presets of conf/model/, with fewer trees to keep the test short
    "logistic_regression": [],
    "random_forest": ["model.params.n_estimators=50"],
    "hist_gradient_boosting": ["model.params.max_iter=50"],
}
for preset, smaller in presets.items():
    overrides = [f"model={preset}", *smaller]
    params = parse_params(compose_params(root / "conf", overrides), source="t")
    data = params.data
    pipeline = build_pipeline(params.model, data).fit(frame[data.features], frame[data.target])
    save_model(pipeline, out / f"{preset}.skops")
    loaded = load_model(out / f"{preset}.skops")
    if preset == "random_forest":  # a parallel forest sums its trees in any order
        pipeline.set_params(estimator__n_jobs=1)
        loaded.set_params(estimator__n_jobs=1)
    X = frame[data.features]
    np.testing.assert_array_equal(loaded.predict_proba(X), pipeline.predict_proba(X))
"""


@pytest.fixture(autouse=True)
def _code_under_test(monkeypatch: pytest.MonkeyPatch) -> None:
    # the processes these tests start (python -c, python -m, dvc repro) run this checkout's
    # gitml, whatever an installed copy or the environment would otherwise put first
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    )


def test_every_preset_saves_to_the_same_bytes_in_separate_processes(tmp_path: Path) -> None:
    outs = [tmp_path / "first", tmp_path / "second"]
    procs = []
    for seed, out in enumerate(outs):
        out.mkdir()
        # a different string-hash seed in each, as two runs of `dvc repro` would have
        env = {**os.environ, "PYTHONHASHSEED": str(seed + 1)}
        cmd = [sys.executable, "-c", _FIT_AND_SAVE, str(ROOT), str(out)]
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    for preset in ("logistic_regression", "random_forest", "hist_gradient_boosting"):
        first = (outs[0] / f"{preset}.skops").read_bytes()
        assert first == (outs[1] / f"{preset}.skops").read_bytes(), preset


def test_forced_repro_of_a_commit_changes_no_byte(repo: Path) -> None:
    lock = (repo / "dvc.lock").read_text()
    model = (repo / "models/model.skops").read_bytes()
    dvc("repro", "--force", cwd=repo)
    assert git("status", "--porcelain", cwd=repo).stdout == ""
    assert (repo / "dvc.lock").read_text() == lock
    assert (repo / "models/model.skops").read_bytes() == model
    assert "up to date" in dvc("status", cwd=repo).stdout
    train = yaml.safe_load(lock)["stages"]["train"]["outs"]
    recorded = next(o["md5"] for o in train if o["path"] == "models/model.skops")
    assert hashlib.md5(model).hexdigest() == recorded
    metadata = json.loads((repo / "models/metadata.json").read_text())
    assert metadata["model_file"]["sha256"] == hashlib.sha256(model).hexdigest()
    assert "trained_at" not in metadata and "fit_seconds" not in metadata["training"]
    assert "serving" not in json.loads((repo / "reports/metrics.json").read_text())
    # nothing the re-run staged is left where git or dvc could see it
    assert not list((repo / ".dvc/tmp").glob(".gitml-tmp-*"))


def _trio(repo: Path) -> tuple[bytes, ...]:
    return tuple((repo / "models" / name).read_bytes() for name in TRIO)


def _put_trio(repo: Path, trio: tuple[bytes, ...]) -> None:
    for name, payload in zip(TRIO, trio, strict=True):
        (repo / "models" / name).write_bytes(payload)


def _check_after_kill(repo: Path, old: tuple[bytes, ...], new: tuple[bytes, ...], when: str):
    trio = _trio(repo)
    hashes = [tuple(hashlib.sha256(b).hexdigest()[:12] for b in t) for t in (trio, old, new)]
    assert hashes[0] in hashes[1:], f"killed {when}: a mix of the old and the new trio"
    recorded = json.loads(trio[2])["model_file"]["sha256"]
    assert hashlib.sha256(trio[0]).hexdigest() == recorded, f"killed {when}"
    entries = sorted(p.name for p in (repo / "models").iterdir())
    assert entries == sorted([".gitignore", *TRIO]), f"killed {when}: {entries}"
    status = git("status", "--porcelain", "--untracked-files=all", cwd=repo).stdout
    # the files Git tracks that a new trio changed (the model file is DVC's): metadata.json,
    # and signature.json too, since its `explanation` baseline is the model's output
    changed = "".join(
        sorted(
            f" M models/{name}\n"
            for name, before, after in zip(TRIO, old, trio, strict=True)
            if name != "model.skops" and before != after
        )
    )
    assert status == changed, f"killed {when}"
    assert trio == old or "metadata.json" in changed, f"killed {when}"
    return trio == new


class _FileSystemSteps:
    """Numbers the calls that change the file system. With `sweep`, the process forks at the
    first of them (after the model is fitted) into one child per step k, each of which runs
    the rest of the stage and SIGKILLs itself just before step k; `check(k, signal)` runs
    after each child died, before the next one starts."""

    def __init__(self, counter: Path, sweep: int = 0, check=None) -> None:
        self.calls, self.kill_at, self.sweep, self.check = 0, None, sweep, check
        self.fd = os.open(counter, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)  # before counting

    def install(self) -> None:
        for name in ("replace", "rename", "link", "symlink", "unlink", "remove", "rmdir"):
            setattr(os, name, self._wrap(getattr(os, name)))
        for name in ("mkdir", "chmod", "fsync"):
            setattr(os, name, self._wrap(getattr(os, name)))
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT
        os_open, io_open = os.open, io.open

        def opened_fd(path, flags, *args, **kwargs):
            if flags & writes:
                self._step()
            return os_open(path, flags, *args, **kwargs)

        def opened(file, mode="r", *args, **kwargs):
            if any(c in mode for c in "wax+"):
                self._step()
            return io_open(file, mode, *args, **kwargs)

        os.open = opened_fd  # type: ignore[assignment]
        io.open = builtins.open = opened  # type: ignore[assignment]

    def report(self) -> None:
        os.write(self.fd, str(self.calls).encode())

    def _wrap(self, func):
        def wrapped(*args, **kwargs):
            self._step()
            return func(*args, **kwargs)

        return wrapped

    def _step(self) -> None:
        self.calls += 1
        if self.sweep:
            steps, self.sweep = self.sweep, 0
            for k in range(1, steps + 1):
                pid = os.fork()
                if pid == 0:
                    self.calls, self.kill_at = 1, k  # the check below counted its own writes
                    break
                _, status = os.waitpid(pid, 0)
                self.check(k, os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0)
            else:
                os._exit(0)  # the forking process itself never writes anything
        if self.calls == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


def _train_in_child(repo: Path, counter: Path, sweep: int = 0, check=None) -> int:
    """Run the real train stage in a forked child; return the signal that ended it, 0 if
    it finished."""
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.chdir(repo)
            steps = _FileSystemSteps(counter, sweep, check)
            steps.install()
            from gitml.stages.train import main

            code = main(["--params", "params.yaml", *TRAIN_ARGS])
            steps.report()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert not os.WIFEXITED(status) or os.WEXITSTATUS(status) == 0, "train failed"
            return os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("the train stage hung")


@linux_only
@pytest.mark.slow
def test_killing_train_at_any_step_leaves_the_old_or_the_new_trio(
    repo: Path, tmp_path: Path
) -> None:
    # a committed parameter change: the new trio differs from the committed one
    gitml("params", "model.params.C=0.5", cwd=repo)
    git("commit", "-q", "-am", "C=0.5", cwd=repo)
    old = _trio(repo)
    counter, results = tmp_path / "calls", tmp_path / "results.jsonl"
    importlib.import_module("gitml.stages.train")  # imported once here, not in every child
    assert _train_in_child(repo, counter) == 0
    new, steps = _trio(repo), int(counter.read_text())
    assert new != old and steps > 10

    def check(step: int, killed_by: int) -> None:  # runs in the forking child
        try:
            assert killed_by == signal.SIGKILL, f"step {step}: ended by {killed_by}"
            outcome = _check_after_kill(repo, old, new, f"before write step {step}")
        except AssertionError as err:
            outcome = str(err)
        with open(results, "a") as fh:
            fh.write(json.dumps([step, outcome]) + "\n")
        _put_trio(repo, old)
        if step < steps:  # every run starts alike; the last leftover is for the next run
            for leftover in (repo / ".dvc/tmp").glob(".gitml-tmp-*"):
                shutil.rmtree(leftover)

    _put_trio(repo, old)
    _train_in_child(repo, counter, sweep=steps, check=check)
    outcomes = [json.loads(line) for line in results.read_text().splitlines()]
    assert [step for step, _ in outcomes] == list(range(1, steps + 1))
    failures = [outcome for _, outcome in outcomes if not isinstance(outcome, bool)]
    assert not failures, failures
    # the swap is one step: every kill before it leaves the old trio, every one after, the new
    reached_new = [outcome for _, outcome in outcomes]
    flip = reached_new.index(True)
    assert not any(reached_new[:flip]) and all(reached_new[flip:])
    # a leftover of a killed run sits in .dvc/tmp (ignored); the next run removes it
    assert list((repo / ".dvc/tmp").glob(".gitml-tmp-*"))
    assert _train_in_child(repo, counter) == 0
    assert _trio(repo) == new
    assert not list((repo / ".dvc/tmp").glob(".gitml-tmp-*"))


@linux_only
def test_killing_the_train_process_from_outside_leaves_a_whole_trio(repo: Path) -> None:
    gitml("params", "model.params.C=0.5", cwd=repo)
    git("commit", "-q", "-am", "C=0.5", cwd=repo)
    old = _trio(repo)
    cmd = [sys.executable, "-m", "gitml.stages.train", *TRAIN_ARGS]
    started = time.monotonic()
    run(*cmd, cwd=repo)
    took, new = time.monotonic() - started, _trio(repo)
    for fraction in (0.6, 0.95):
        _put_trio(repo, old)
        proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.DEVNULL)
        time.sleep(took * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        _check_after_kill(repo, old, new, f"at {fraction:.0%} of a run")
