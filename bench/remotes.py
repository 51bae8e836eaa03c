"""Benchmark `dvc push` and `dvc pull` of the reference artifacts to each kind of DVC remote.

Usage (project venv on PATH):

    python bench/remotes.py                      # the built project at the repository root
    python bench/remotes.py --project PATH --runs 5
    python bench/remotes.py --json bench/out/remotes.json

The remotes run on 127.0.0.1, started and stopped by this script with the test suite's
launchers (tests/integration/remotes.py): moto's S3 API server (`moto_server`, credentials in
the environment only) and Debian's sshd (a key pair made for the run, `.dvc/config.local`);
a local directory remote is the baseline. The artifacts are every output `dvc.lock` records
with a hash (raw data, splits, the model), copied with the pipeline files into a scratch git
+ DVC project; when the project has not been built they are built there first (`dvc repro`).

Each run pushes into an empty prefix of the remote (`dvc push -r NAME`), then pulls into an
empty cache with the outputs removed (`dvc pull -r NAME`) and checks the bytes; a command is
timed as a user runs it (a fresh `dvc` process, wall time). The median of --runs (default 3)
is printed per remote, with the load average, and written to bench/out/remotes.json
(git-ignored). `bench/scale.py` runs this script, or imports `measure_remotes`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.integration.remotes: the servers the tests start too

from tests.integration.remotes import s3_server, ssh_server  # noqa: E402

from gitml.project import copy_project  # noqa: E402
from gitml.vcs import read_lock  # noqa: E402

OUT_DIR = ROOT / "bench" / "out"
KINDS = ("local", "s3", "ssh")


def _run(*cmd: str, cwd: Path, env: dict[str, str] | None = None) -> float:
    """Run a command, fail loudly, return its wall time in seconds."""
    start = time.perf_counter()
    proc = subprocess.run(
        list(cmd), cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout}\n{proc.stderr}")
    return seconds


def _dvc(*args: str, cwd: Path, env: dict[str, str] | None = None) -> float:
    return _run(sys.executable, "-m", "dvc", *args, cwd=cwd, env=env)


def _artifacts(project: Path) -> list[str]:
    return [out.path for out in read_lock(project / "dvc.lock").outs()]


def prepare(project: Path, scratch: Path) -> tuple[Path, list[str]]:
    """A scratch git + DVC copy of `project` whose cache holds its artifacts."""
    work = copy_project(project, scratch / "project")
    git_env = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@gitml.invalid"}
    git_env |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@gitml.invalid"}
    _run("git", "init", "-q", "-b", "main", cwd=work)
    _run("git", "add", "-A", cwd=work)
    _run("git", "commit", "-qm", "bench", cwd=work, env=git_env)
    paths = _artifacts(work)
    if paths and all((project / p).is_file() for p in paths):
        for rel in paths:
            shutil.copy2(project / rel, work / rel)
        _dvc("commit", "--force", "--quiet", cwd=work)
    else:
        print("the project is not built: dvc repro in the scratch copy first", file=sys.stderr)
        _dvc("repro", "--quiet", cwd=work)
        paths = _artifacts(work)
    return work, paths


@contextmanager
def remotes(scratch: Path) -> Iterator[dict[str, dict[str, Any]]]:
    """Every remote kind: URL base, environment and `.dvc/config.local` settings."""
    with ExitStack() as stack:
        s3 = stack.enter_context(s3_server())
        ssh = stack.enter_context(ssh_server(scratch / "sshd"))
        yield {
            "local": {"url": str(scratch / "local-remote"), "env": {}, "local": {}},
            "s3": {
                "url": s3.url("bench"),
                "env": s3.env,
                "local": {"endpointurl": s3.endpoint},
            },
            "ssh": {
                "url": ssh.url("bench"),
                "env": {},
                "local": {"user": ssh.user, "keyfile": str(ssh.keyfile)},
            },
        }


def measure_remotes(project: Path = ROOT, *, runs: int = 3) -> dict[str, Any]:
    """Push and pull times of `project`'s artifacts per remote kind (median of `runs`)."""
    scratch = Path(tempfile.mkdtemp(prefix="gitml-bench-remotes-"))
    try:
        work, outs = prepare(project, scratch)
        cache = Path(
            subprocess.run(
                [sys.executable, "-m", "dvc", "cache", "dir"],
                cwd=work,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        # the outputs DVC caches (and so pushes); `cache: false` reports stay in Git
        md5s = read_lock(work / "dvc.lock").hashes()
        paths = [p for p in outs if (cache / "files" / "md5" / md5s[p][:2] / md5s[p][2:]).is_file()]
        size = sum((work / p).stat().st_size for p in paths)
        originals = {p: (work / p).read_bytes() for p in paths}
        results: dict[str, Any] = {
            "files": len(paths),
            "bytes": size,
            "runs": runs,
            "load_average_start": os.getloadavg(),
            "remotes": {},
        }
        with remotes(scratch) as kinds:
            for kind in KINDS:
                spec = kinds[kind]
                push, pull = [], []
                for run in range(runs):
                    name = f"{kind}{run}"
                    _dvc("remote", "add", "--local", name, f"{spec['url']}/run{run}", cwd=work)
                    for key, value in spec["local"].items():
                        _dvc("remote", "modify", "--local", name, key, value, cwd=work)
                    _dvc("cache", "dir", "--local", str(cache), cwd=work)
                    push.append(_dvc("push", "-q", "-r", name, cwd=work, env=spec["env"]))
                    empty = scratch / f"cache-{name}"
                    _dvc("cache", "dir", "--local", str(empty), cwd=work)
                    for rel in paths:
                        (work / rel).unlink()
                    pull.append(_dvc("pull", "-q", "-r", name, cwd=work, env=spec["env"]))
                    for rel in paths:
                        if (work / rel).read_bytes() != originals[rel]:
                            raise SystemExit(f"{kind}: {rel} came back different")
                    shutil.rmtree(empty)
                results["remotes"][kind] = {
                    "push_s": push,
                    "pull_s": pull,
                    "push_median_s": statistics.median(push),
                    "pull_median_s": statistics.median(pull),
                }
        results["load_average_end"] = os.getloadavg()
        return results
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def print_table(results: dict[str, Any]) -> None:
    mib = results["bytes"] / 2**20
    print(
        f"push and pull of {results['files']} artifacts ({mib:.2f} MiB), "
        f"median of {results['runs']} runs; load average "
        f"{results['load_average_start'][0]:.2f} -> {results['load_average_end'][0]:.2f}"
    )
    base = results["remotes"]["local"]
    print(f"{'remote':<8} {'push s':>8} {'pull s':>8} {'push/local':>11} {'pull/local':>11}")
    for kind, row in results["remotes"].items():
        print(
            f"{kind:<8} {row['push_median_s']:>8.2f} {row['pull_median_s']:>8.2f} "
            f"{row['push_median_s'] / base['push_median_s']:>10.2f}x "
            f"{row['pull_median_s'] / base['pull_median_s']:>10.2f}x"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT, help="a (built) gitml project")
    parser.add_argument("--runs", type=int, default=3, help="runs per remote (median)")
    parser.add_argument("--json", type=Path, default=OUT_DIR / "remotes.json")
    args = parser.parse_args()
    os.environ["DVC_NO_ANALYTICS"] = "1"
    results = measure_remotes(args.project.resolve(), runs=args.runs)
    print_table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
