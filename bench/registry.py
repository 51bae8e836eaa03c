"""Benchmark `gitml models` against `gto show` on registries of 10, 100 and 1,000 Git tags.

Usage (project venv on PATH, gto installed):

    python bench/registry.py                       # 10, 100 and 1,000 tags
    python bench/registry.py --sizes 10 100 --runs 3
    python bench/registry.py --json bench/out/registry.json --keep

For each size a synthetic repository is built in a temp dir by one `git fast-import` (fixed
identity and dates in the stream, no reliance on the global git config): a linear history in
which every commit changes `reports/metrics.json` (roc_auc, average_precision, f1, recall, varied
by a seeded RNG), and N annotated tags in GTO's format, about half of them version registrations
(`NAME@vX.Y.Z`, one per commit, two models) and the rest stage assignments (`NAME#STAGE#N`,
stages dev/staging/prod, N the model's counter) on commits that hold a version, each tag dated
after the version it points at. The repository carries a `.gto` (types: [model], stages: [dev,
staging, prod]) and a minimal `conf/config.yaml`, so it is a gitml project.

Before any timing, `gitml models --json` must list every registered version with the metrics
written at its commit and its stages as the tags say, and agree with `gto show --json` (latest
version and the holder of each stage per model) and `gto show NAME --json` (the versions of
each model); any disagreement is printed and the exit code is 1.

Then each command runs as a user would run it, a fresh process from PATH in the repository:
`gitml models`, `gitml models --json` and `gto show`, `--runs` times each (default 5; gto show
capped at 3 when one run takes more than a few seconds), median wall time reported. Target:
`gitml models` under 1 s at 1,000 tags; the ratio gto show / gitml models is printed per size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

TARGET_SECONDS = 1.0
TARGET_TAGS = 1000
MODELS = ("churn-classifier", "churn-baseline")
STAGES = ("dev", "staging", "prod")
SLOW_GTO_SECONDS = 3.0  # above this per run, gto show is timed at most GTO_RUNS_CAP times
GTO_RUNS_CAP = 3
IDENTITY = "Bench Registry <bench@example.com>"
EPOCH = 1_700_000_000
GTO_FILE = "types: [model]\nstages: [dev, staging, prod]\n"
CONFIG_FILE = "defaults:\n  - _self_\n"
ENV = {
    **os.environ,
    "DVC_NO_ANALYTICS": "1",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "NO_COLOR": "1",
}


@dataclass
class Expected:
    """What the tags say, computed while writing them: the oracle both tools must match."""

    versions: dict[str, list[str]] = field(default_factory=dict)  # model -> versions
    stages: dict[str, dict[str, str]] = field(default_factory=dict)  # model -> stage -> version
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # tag -> metrics.json
    tags: int = 0


def _data(text: str) -> bytes:
    raw = text.encode()
    return b"data %d\n" % len(raw) + raw + b"\n"


def _metrics(rng: random.Random) -> dict[str, float]:
    return {
        "roc_auc": round(rng.uniform(0.75, 0.90), 6),
        "average_precision": round(rng.uniform(0.55, 0.70), 6),
        "f1": round(rng.uniform(0.50, 0.65), 6),
        "recall": round(rng.uniform(0.45, 0.80), 6),
    }


def build_repo(root: Path, tags: int, seed: int = 0) -> Expected:
    """Write a repository with `tags` GTO tags (half registrations) into `root`, by fast-import."""
    rng = random.Random(seed)
    n_versions = max(1, (tags + 1) // 2)
    n_stages = tags - n_versions
    # The order of events: registrations spread through the stage assignments, each stage
    # assignment pointing at an already registered version.
    kinds = ["register"] * n_versions + ["assign"] * n_stages
    rng.shuffle(kinds)
    kinds.remove("register")
    kinds.insert(0, "register")  # the first event has something to point at

    stream = bytearray()
    expected = Expected(tags=tags)
    registered: list[tuple[str, str, int]] = []  # (model, version, commit mark)
    counters = dict.fromkeys(MODELS, 0)
    minor = dict.fromkeys(MODELS, 0)
    clock = EPOCH
    mark = 0
    for kind in kinds:
        clock += 60
        if kind == "register":
            mark += 1
            model = MODELS[(mark - 1) % len(MODELS)]
            minor[model] += 1
            version = f"v{minor[model] // 10}.{minor[model] % 10}.0"
            stream += b"commit refs/heads/main\nmark :%d\n" % mark
            stream += f"committer {IDENTITY} {clock} +0000\n".encode()
            stream += _data(f"train {model} {version}")
            if mark == 1:
                stream += b"M 100644 inline .gto\n" + _data(GTO_FILE)
                stream += b"M 100644 inline conf/config.yaml\n" + _data(CONFIG_FILE)
            metrics = _metrics(rng)
            text = json.dumps({"metrics": metrics}, indent=2) + "\n"
            stream += b"M 100644 inline reports/metrics.json\n" + _data(text)
            tag, message = f"{model}@{version}", f"Registering artifact {model} version {version}"
            expected.metrics[tag] = metrics
            registered.append((model, version, mark))
            expected.versions.setdefault(model, []).append(version)
            target = mark
        else:
            model, version, target = rng.choice(registered)
            stage = rng.choice(STAGES)
            counters[model] += 1
            tag = f"{model}#{stage}#{counters[model]}"
            message = f"Assigning stage {stage} to artifact {model} version {version}"
            expected.stages.setdefault(model, {})[stage] = version
        stream += f"tag {tag}\nfrom :{target}\n".encode()
        stream += f"tagger {IDENTITY} {clock + 1} +0000\n".encode()
        stream += _data(message)

    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True, env=ENV)
    subprocess.run(
        ["git", "fast-import", "--quiet"], cwd=root, input=bytes(stream), check=True, env=ENV
    )
    subprocess.run(["git", "reset", "-q", "--hard", "main"], cwd=root, check=True, env=ENV)
    return expected


def _run(root: Path, *cmd: str) -> str:
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=ENV, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr.strip()}")
    return proc.stdout


def _semver_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.lstrip("v").split("."))


def verify(root: Path, expected: Expected) -> list[str]:
    """Disagreements between gitml, gto and the tags as written ([] when all three agree)."""
    problems: list[str] = []
    rows = json.loads(_run(root, "gitml", "models", "--json", "-C", str(root)))
    n_expected = sum(len(v) for v in expected.versions.values())
    if len(rows) != n_expected:
        problems.append(f"gitml models lists {len(rows)} versions, the tags register {n_expected}")
    gitml_versions: dict[str, set[str]] = {}
    gitml_stages: dict[str, dict[str, str]] = {}
    for row in rows:
        gitml_versions.setdefault(row["name"], set()).add(row["version"])
        for stage in row["stages"]:
            if stage in gitml_stages.setdefault(row["name"], {}):
                problems.append(f"gitml: {row['name']} has two versions in stage {stage}")
            gitml_stages[row["name"]][stage] = row["version"]
        if row["metrics"] != expected.metrics.get(row["tag"]):
            problems.append(f"gitml: {row['tag']} has metrics {row['metrics']!r}")

    registry = json.loads(_run(root, "gto", "show", "--json"))
    for model, versions in expected.versions.items():
        want_stages = expected.stages.get(model, {})
        latest = max(versions, key=_semver_key)
        if set(versions) != gitml_versions.get(model, set()):
            problems.append(
                f"{model}: gitml lists {sorted(gitml_versions.get(model, set()))}, "
                f"the tags register {sorted(versions)}"
            )
        if gitml_stages.get(model, {}) != want_stages:
            problems.append(
                f"{model}: gitml stages {gitml_stages.get(model)}, tags say {want_stages}"
            )
        gto_model = registry.get(model)
        if gto_model is None:
            problems.append(f"gto show: no model {model}")
            continue
        if gto_model.get("version") != latest:
            problems.append(f"{model}: gto latest {gto_model.get('version')}, expected {latest}")
        gto_stages = {s: v for s, v in (gto_model.get("stage") or {}).items() if v}
        if gto_stages != gitml_stages.get(model, {}):
            problems.append(
                f"{model}: stage holders differ: gitml {gitml_stages.get(model)}, gto {gto_stages}"
            )
        listed = json.loads(_run(root, "gto", "show", model, "--json"))
        gto_versions = {entry["version"] for entry in listed}
        if gto_versions != gitml_versions.get(model, set()):
            only_gitml = gitml_versions.get(model, set()) - gto_versions
            only_gto = gto_versions - gitml_versions.get(model, set())
            problems.append(
                f"{model}: versions differ: only in gitml {sorted(only_gitml)}, "
                f"only in gto {sorted(only_gto)}"
            )
    extra = set(registry) - set(expected.versions)
    if extra:
        problems.append(f"gto show lists unexpected models {sorted(extra)}")
    return problems


def time_command(root: Path, cmd: list[str], runs: int, cap_slow: bool = False) -> list[float]:
    """Wall time of `runs` fresh processes of `cmd` in `root` (stdout discarded)."""
    timings: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(
            cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, check=False
        )
        timings.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise SystemExit(f"`{' '.join(cmd)}` failed: {proc.stderr.decode().strip()}")
        if cap_slow and timings[0] > SLOW_GTO_SECONDS and len(timings) >= GTO_RUNS_CAP:
            break
    return timings


def measure(size: int, runs: int, keep: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"gitml-registry-{size}-"))
    try:
        root = tmp / "repo"
        started = time.perf_counter()
        expected = build_repo(root, size)
        built = time.perf_counter() - started
        problems = verify(root, expected)
        models = time_command(root, ["gitml", "models"], runs)
        models_json = time_command(root, ["gitml", "models", "--json"], runs)
        gto = time_command(root, ["gto", "show"], runs, cap_slow=True)
        tags = len(_run(root, "git", "tag", "--list").split())
        return {
            "tags": tags,
            "versions": sum(len(v) for v in expected.versions.values()),
            "build_s": built,
            "gitml_models_s": statistics.median(models),
            "gitml_models_json_s": statistics.median(models_json),
            "gto_show_s": statistics.median(gto),
            "runs": {"gitml_models": models, "gitml_models_json": models_json, "gto_show": gto},
            "problems": problems,
            "repo": str(root) if keep else None,
        }
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="Write the results to this file.")
    parser.add_argument("--keep", action="store_true", help="Keep the synthetic repositories.")
    args = parser.parse_args()
    for tool in ("git", "gitml", "gto"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on PATH")

    results = []
    for size in args.sizes:
        result = measure(size, args.runs, args.keep)
        results.append(result)
        print(
            f"{result['tags']:>5} tags: repository built in {result['build_s']:.2f} s, "
            f"gitml and gto {'DISAGREE' if result['problems'] else 'agree'}"
            + (f" ({result['repo']})" if result["repo"] else "")
        )
        for problem in result["problems"]:
            print(f"    {problem}")

    table = Table(title=f"gitml models vs gto show (median of {args.runs}, fresh process)")
    for column in ("tags", "versions", "gitml models s", "gitml models --json s", "gto show s"):
        table.add_column(column, justify="right")
    table.add_column("gto / gitml", justify="right")
    for r in results:
        table.add_row(
            f"{r['tags']:,}",
            f"{r['versions']:,}",
            f"{r['gitml_models_s']:.3f}",
            f"{r['gitml_models_json_s']:.3f}",
            f"{r['gto_show_s']:.3f}" + (f" (n={len(r['runs']['gto_show'])})"),
            f"{r['gto_show_s'] / r['gitml_models_s']:.1f}x",
        )
    Console(width=120).print(table)

    at_target = [r for r in results if r["tags"] >= TARGET_TAGS]
    if at_target:
        worst = max(r["gitml_models_s"] for r in at_target)
        met = worst < TARGET_SECONDS
        print(
            f"target < {TARGET_SECONDS:.0f} s at {TARGET_TAGS:,} tags: "
            f"{'met' if met else 'NOT met'} ({worst:.3f} s)"
        )
    else:
        print(f"target < {TARGET_SECONDS:.0f} s at {TARGET_TAGS:,} tags: not measured")
    disagreements = sum(len(r["problems"]) for r in results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"target_seconds": TARGET_SECONDS, "target_tags": TARGET_TAGS, "results": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")
    if disagreements:
        print(f"FAIL  gitml and gto disagree ({disagreements} problem(s), listed above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
