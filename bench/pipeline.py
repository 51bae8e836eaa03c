"""Benchmark the DVC pipeline against a plain scikit-learn script: wall time, peak memory, no-op.

Usage (with the project venv first on PATH, as `make bench` does):

    python bench/pipeline.py                 # reference data, 1,000,000 rows, no-op
    python bench/pipeline.py --rows 200000   # a smaller resampled data set
    python bench/pipeline.py --skip-large    # reference data and no-op only
    python bench/pipeline.py --keep          # keep the scratch projects, print where they are

Each scenario runs in a scratch git + DVC copy of the project in a temp dir (like
tests/conftest.py `template_repo`); nothing of this checkout is touched except
bench/out/ (git-ignored): pipeline.json (all figures) and one log per measured command.

How it measures:
- Every command runs under `python bench/pipeline.py --measure -- CMD...`, which times the
  command and reports `getrusage(RUSAGE_CHILDREN).ru_maxrss`: the peak RSS of the largest
  single descendant. DVC runs stages one after another, so that is the pipeline's peak
  memory (the larger of DVC itself and its biggest stage), not the sum of processes.
- Per-stage peak memory: each stage ends with `[stage] peak memory N MiB` (its own
  `ru_maxrss`, printed by the stage runner); each is compared with the plain script's peak.
- The plain side is `python bench/pipeline.py --plain DATA.csv`, a separate process that
  pays its own imports: pandas read_csv, stratified 80/20 split (seed 42), ColumnTransformer
  (one-hot categoricals; median impute + scale numerics), LogisticRegression(C=1,
  max_iter=1000), predict_proba and ROC AUC on the test set. It reports its phase times.
- Per-stage times come from timestamps of `dvc repro` output lines: a stage lasts from its
  "Running stage" line to the next one; its command part ends at the stage's own last
  "[stage] ..." line, the rest is process exit plus DVC hashing, caching and the lock file.
- The large data set is the reference data resampled with replacement (fixed seed), so it
  is full of exact duplicate rows: its params are composed with
  validate.max_duplicate_fraction=1.0, otherwise `validate` refuses it.
- No-op: `dvc repro` with nothing to do against `dvc status`, median of 5 runs each.

Targets (PASS/FAIL is printed; the exit code is 0 whatever they say, non-zero only if a
measured command itself fails): large-data wall ratio <= 1.3 (<= 1.2 from 10,000,000 rows),
no-op ratio <= 1.5, every stage's peak memory on the large data <= 1.2x the plain script's
peak, and the pipeline's peak < 24 GiB (the machine).

The 10,000,000-row run holds several GiB: on a shared machine run it alone, e.g.
`flock /work/wt/bigmem.lock python bench/pipeline.py --rows 10000000`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitml.project import copy_project
from measured import MEASURE_MARK, measure  # bench/measured.py

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "bench" / "out"
REFERENCE_DATA = "data/external/telco_churn.csv.gz"
STAGES = ["ingest", "validate", "split", "train", "evaluate", "importance", "card"]
# The plain script's phase that does each stage's work (validate has no counterpart).
PLAIN_PHASE = {"ingest": "read", "split": "split", "train": "fit", "evaluate": "score"}
TARGET, POSITIVE, SEED = "churn", "Yes", 42
LARGE_OVERRIDES = ["validate.max_duplicate_fraction=1.0"]
NOOP_REPEATS = 5
TARGET_LARGE_RATIO, TARGET_NOOP_RATIO, TARGET_PEAK_GIB = 1.3, 1.5, 24.0
TARGET_HUGE_RATIO, HUGE_ROWS = 1.2, 10_000_000  # the wall ratio asked of 10M rows and more
TARGET_STAGE_PEAK_RATIO = 1.2  # each stage's peak memory against the plain script's peak


# --- child modes: measuring wrapper and the plain script -------------------------------------


def plain_sklearn(path: str) -> dict[str, Any]:
    """Do the pipeline's work in one process with plain pandas + scikit-learn; phase times."""
    phases: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = now - clock
        clock = now

    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    lap("imports")
    frame = pd.read_csv(path)
    lap("read")
    features, y = frame.drop(columns=TARGET), frame[TARGET]
    x_train, x_test, y_train, y_test = train_test_split(
        features, y, test_size=0.2, random_state=SEED, stratify=y
    )
    lap("split")
    categorical = list(features.select_dtypes(include="object").columns)
    numeric = [c for c in features.columns if c not in categorical]
    preprocess = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ]
    )
    model = Pipeline(
        [("preprocess", preprocess), ("estimator", LogisticRegression(C=1.0, max_iter=1000))]
    )
    model.fit(x_train, y_train)
    lap("fit")
    column = list(model.classes_).index(POSITIVE)
    auc = roc_auc_score(y_test == POSITIVE, model.predict_proba(x_test)[:, column])
    lap("score")
    return {"rows": len(frame), "roc_auc": auc, "phases": phases}


# --- running measured commands -----------------------------------------------------------------


@dataclass
class Run:
    """One measured command: wall time, peak memory and its output lines with timestamps."""

    wall_s: float
    peak_kib: int
    returncode: int
    lines: list[tuple[float, str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def bench_env() -> dict[str, str]:
    """The environment for every command: this interpreter's venv first on PATH, unbuffered."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1")
    return env


def run_measured(
    cmd: list[str], cwd: Path, log_name: str, *, ok_codes: tuple[int, ...] = (0,)
) -> Run:
    """Run `cmd` under the measuring wrapper; timestamp each output line; keep a log.

    An exit code outside `ok_codes` stops the benchmark with the command's last lines."""
    wrapper = [sys.executable, str(Path(__file__).resolve()), "--measure", "--", *cmd]
    lines: list[tuple[float, str]] = []
    figures: dict[str, Any] = {}
    started = time.perf_counter()
    with subprocess.Popen(
        wrapper,
        cwd=cwd,
        env=bench_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            if line.startswith(MEASURE_MARK):
                figures = json.loads(line[len(MEASURE_MARK) :])
            else:
                lines.append((time.perf_counter() - started, line))
    run = Run(figures["wall_s"], figures["peak_kib"], figures["returncode"], lines)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / f"{log_name}.log").write_text(f"$ {' '.join(cmd)}\n{run.text}\n")
    if run.returncode not in ok_codes:
        tail = "\n".join(run.text.splitlines()[-30:])
        raise SystemExit(f"bench: `{' '.join(cmd)}` exited {run.returncode} in {cwd}\n{tail}")
    return run


def run_quiet(cmd: list[str], cwd: Path) -> None:
    """Run a set-up command; stop with its output if it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=bench_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench: `{' '.join(cmd)}` failed:\n{proc.stdout}{proc.stderr}")


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# --- scratch projects and data -----------------------------------------------------------------


def build_project(base: Path) -> Path:
    """A fresh git repo with the project files, committed, its DVC remote in `base`."""
    repo = base / "project"
    copy_project(ROOT, repo)
    run_quiet(["git", "init", "-q", "-b", "main"], repo)
    run_quiet(["git", "config", "user.name", "gitml bench"], repo)
    run_quiet(["git", "config", "user.email", "bench@gitml.invalid"], repo)
    run_quiet(dvc("remote", "modify", "local", "url", str(base / "remote")), repo)
    run_quiet(["git", "add", "-A"], repo)
    run_quiet(["git", "commit", "-q", "-m", "reference project"], repo)
    return repo


def write_resampled(repo: Path, rows: int) -> tuple[str, float]:
    """Resample the reference data with replacement to `rows` rows, as gzip CSV in `repo`."""
    import pandas as pd

    started = time.perf_counter()
    rel = f"data/external/telco_{rows}.csv.gz"
    frame = pd.read_csv(repo / REFERENCE_DATA)
    frame = frame.sample(n=rows, replace=True, random_state=SEED)
    compression = {"method": "gzip", "compresslevel": 1, "mtime": 0}
    frame.to_csv(repo / rel, index=False, compression=compression)
    return rel, time.perf_counter() - started


# --- scenarios -----------------------------------------------------------------------------------


def stage_breakdown(run: Run) -> dict[str, dict[str, float]]:
    """Per-stage wall times from output timestamps: total, command part, DVC part."""
    starts = [
        (t, line.split("'")[1]) for t, line in run.lines if line.startswith("Running stage '")
    ]
    end = run.lines[-1][0] if run.lines else run.wall_s
    bounds = [t for t, _ in starts] + [end]
    stages = {"dvc startup": {"total": bounds[0] if starts else end}}
    for (start, name), stop in zip(starts, bounds[1:], strict=True):
        own = [
            (t, line)
            for t, line in run.lines
            if start <= t <= stop and line.startswith(f"[{name}]")
        ]
        command = (own[-1][0] if own else stop) - start
        stages[name] = {"total": stop - start, "command": command, "dvc": stop - start - command}
        peaks = [line for _, line in own if line.startswith(f"[{name}] peak memory ")]
        if peaks:  # "[name] peak memory 1,234 MiB", printed by the stage runner
            stages[name]["peak_mib"] = float(peaks[-1].split()[3].replace(",", ""))
    return stages


def pipeline_auc(repo: Path) -> float:
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    return metrics["metrics"]["roc_auc"]


def plain_run(repo: Path, source: str, label: str) -> tuple[Run, dict[str, Any]]:
    """Run the plain script on `source` in its own process; its figures and phase times."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--plain", source]
    run = run_measured(cmd, repo, f"{label}-plain")
    return run, json.loads(run.lines[-1][1])


def full_run(repo: Path, source: str, label: str) -> dict[str, Any]:
    """Full `dvc repro` from scratch, then the plain script on the same file."""
    progress(f"{label}: dvc repro ({source})")
    pipe = run_measured(dvc("repro"), repo, f"{label}-repro")
    progress(f"{label}: plain scikit-learn script")
    plain, result = plain_run(repo, source, label)
    return {
        "source": source,
        "rows": result["rows"],
        "pipeline": {
            "wall_s": pipe.wall_s,
            "peak_kib": pipe.peak_kib,
            "roc_auc": pipeline_auc(repo),
            "stages": stage_breakdown(pipe),
        },
        "plain": {
            "wall_s": plain.wall_s,
            "peak_kib": plain.peak_kib,
            "roc_auc": result["roc_auc"],
            "phases": result["phases"],
        },
        "ratio": pipe.wall_s / plain.wall_s,
    }


def large_run(repo: Path, rows: int) -> dict[str, Any]:
    """Resample to `rows`, compose params for it, run the full comparison."""
    progress(f"large: writing {rows:,} resampled rows")
    source, write_s = write_resampled(repo, rows)
    overrides = [f"data.source={source}", *LARGE_OVERRIDES]
    run_quiet([sys.executable, "-m", "gitml", "params", *overrides], repo)
    result = full_run(repo, source, "large")
    return {**result, "overrides": overrides, "write_s": write_s}


def noop_run(repo: Path) -> dict[str, Any]:
    """`dvc repro` with nothing to do against `dvc status`, alternating, median of each."""
    repro, status = [], []
    for i in range(NOOP_REPEATS):
        progress(f"no-op: round {i + 1} of {NOOP_REPEATS}")
        run = run_measured(dvc("repro"), repo, "noop-repro")
        if "Running stage" in run.text:
            raise SystemExit(f"bench: the no-op `dvc repro` ran a stage:\n{run.text}")
        repro.append(run.wall_s)
        status.append(run_measured(dvc("status"), repo, "noop-status").wall_s)
    repro_s, status_s = statistics.median(repro), statistics.median(status)
    return {
        "repro_s": repro_s,
        "status_s": status_s,
        "ratio": repro_s / status_s,
        "repro_runs": repro,
        "status_runs": status,
    }


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The benchmark's targets with their measured values and PASS/FAIL/SKIP."""
    large = results.get("large")
    ratio = large["ratio"] if large else None
    peak = large["pipeline"]["peak_kib"] / 2**20 if large else None
    noop = results["noop"]["ratio"]
    rows = f"{large['rows']:,}" if large else "large"
    wall_limit = TARGET_HUGE_RATIO if large and large["rows"] >= HUGE_ROWS else TARGET_LARGE_RATIO
    checks = [
        (f"{rows}-row wall ratio <= {wall_limit}", ratio, "x", wall_limit),
        (f"no-op ratio <= {TARGET_NOOP_RATIO}", noop, "x", TARGET_NOOP_RATIO),
        (f"{rows}-row peak memory < {TARGET_PEAK_GIB:g} GiB", peak, " GiB", TARGET_PEAK_GIB),
    ]
    limit = TARGET_STAGE_PEAK_RATIO
    for name in STAGES:
        value = stage_peak_ratio(large, name) if large else None
        checks.append((f"{rows}-row {name} peak <= {limit}x plain peak", value, "x", limit))
    return [
        {
            "target": name,
            "value": value,
            "unit": unit,
            "status": "SKIP" if value is None else ("PASS" if value <= limit else "FAIL"),
        }
        for name, value, unit, limit in checks
    ]


# --- report ------------------------------------------------------------------------------------


def stage_peak_ratio(result: dict[str, Any], name: str) -> float | None:
    """A stage's peak memory over the plain script's (the whole script: one process)."""
    peak = result["pipeline"]["stages"].get(name, {}).get("peak_mib")
    return None if peak is None else peak * 1024 / result["plain"]["peak_kib"]


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "  " + "  ".join(cells).rstrip()

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def secs(value: float | None) -> str:
    return "" if value is None else f"{value:.2f} s"


def summary_table(results: dict[str, Any]) -> str:
    headers = ["data", "rows", "pipeline", "plain", "ratio", "peak pipeline", "peak plain", "AUC"]
    rows = []
    for key in ("reference", "large"):
        if key not in results:
            continue
        res, pipe, plain = results[key], results[key]["pipeline"], results[key]["plain"]
        rows.append(
            [
                f"{key} ({res['source']})",
                f"{res['rows']:,}",
                secs(pipe["wall_s"]),
                secs(plain["wall_s"]),
                f"{res['ratio']:.2f}x",
                mib(pipe["peak_kib"]),
                mib(plain["peak_kib"]),
                f"{pipe['roc_auc']:.4f} / {plain['roc_auc']:.4f}",
            ]
        )
    return table(headers, rows)


def stage_table(result: dict[str, Any]) -> str:
    """Pipeline stages next to the plain script's phase doing the same work."""
    stages, plain = result["pipeline"]["stages"], result["plain"]
    phases = plain["phases"]
    start_exit = plain["wall_s"] - sum(phases.values())
    rows = [["dvc startup", secs(stages["dvc startup"]["total"]), "", "", "", ""]]
    rows[0] += ["python + imports", secs(start_exit + phases["imports"]), ""]
    for name in STAGES:
        stage, phase = stages.get(name, {}), PLAIN_PHASE.get(name)
        plain_s = phases[phase] if phase else 0.0
        total = stage.get("total", 0.0)
        row = [name, secs(total), secs(stage.get("command")), secs(stage.get("dvc"))]
        ratio = stage_peak_ratio(result, name)
        row += [mib(int(stage["peak_mib"] * 1024)) if "peak_mib" in stage else "", ""]
        row[-1] = "" if ratio is None else f"{ratio:.2f}x"
        rows.append([*row, phase or "-", secs(plain_s) if phase else "", secs(total - plain_s)])
    rows.append(
        ["total", secs(result["pipeline"]["wall_s"]), "", "", mib(result["pipeline"]["peak_kib"])]
    )
    rows[-1] += [f"{result['pipeline']['peak_kib'] / plain['peak_kib']:.2f}x", "total"]
    rows[-1] += [secs(plain["wall_s"]), secs(result["pipeline"]["wall_s"] - plain["wall_s"])]
    headers = ["stage", "total", "command", "dvc", "peak", "/plain peak", "plain phase", "plain"]
    headers.append("extra")
    return table(headers, rows)


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out = [
        f"gitml pipeline benchmark: python {meta['python']}, dvc {meta['dvc']}, "
        f"{meta['cpus']} CPUs; 1-min load average {meta['load_average_start'][0]:.2f} at "
        f"start, {meta['load_average_end'][0]:.2f} at end (other work on the machine skews times)",
        "",
        "Full `dvc repro` from scratch vs a plain scikit-learn script (one process):",
        summary_table(results),
        "  peak = max RSS of the largest single process (DVC runs stages one at a time);",
        "  AUC = pipeline / plain ROC AUC on the same 80/20 split.",
    ]
    if "large" in results:
        large = results["large"]
        out.append(
            f"  large: {large['rows']:,} rows resampled with replacement (seed {SEED}, written "
            f"in {large['write_s']:.1f} s), composed with {' '.join(large['overrides'])}"
        )
        out.append("  (the resampled data is mostly exact duplicates; validate refuses > 1 %).")
    for key in ("reference", "large"):
        if key in results:
            out += ["", f"Per stage, {key} ({results[key]['rows']:,} rows):"]
            out.append(stage_table(results[key]))
    out.append("  command = stage start to the stage's last output line; dvc = the rest of")
    out.append("  the stage (process exit, output hashing and caching, dvc.lock); peak = the")
    out.append("  stage's peak RSS (`[stage] peak memory`), /plain peak = over the plain script's.")
    noop = results["noop"]
    out += [
        "",
        f"No-op after the last full run, median of {NOOP_REPEATS}: dvc repro "
        f"{secs(noop['repro_s'])}, dvc status {secs(noop['status_s'])}, "
        f"ratio {noop['ratio']:.2f}x",
        "",
        "Targets:",
    ]
    for check in results["targets"]:
        value = "n/a" if check["value"] is None else f"{check['value']:.2f}{check['unit']}"
        out.append(f"  {check['status']:4}  {check['target']:44} {value}")
    return "\n".join(out)


# --- main ----------------------------------------------------------------------------------------


def metadata() -> dict[str, Any]:
    from importlib import metadata as importlib_metadata

    return {
        "python": platform.python_version(),
        "dvc": importlib_metadata.version("dvc"),
        "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """All scenarios in scratch projects under one temp dir; removed unless --keep."""
    scratch = Path(tempfile.mkdtemp(prefix="gitml-bench-"))
    results: dict[str, Any] = {"meta": metadata()}
    try:
        reference = build_project(scratch / "reference")
        results["reference"] = full_run(reference, REFERENCE_DATA, "reference")
        last = reference
        if not args.skip_large:
            last = build_project(scratch / "large")
            results["large"] = large_run(last, args.rows)
        results["noop"] = noop_run(last)
        results["targets"] = check_targets(results)
        results["meta"]["load_average_end"] = os.getloadavg()
    finally:
        if args.keep:
            progress(f"kept the scratch projects in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the large data set")
    parser.add_argument("--skip-large", action="store_true", help="reference data only")
    parser.add_argument("--keep", action="store_true", help="keep the scratch projects")
    parser.add_argument("--plain", metavar="DATA.csv", help="(internal) run the plain script")
    parser.epilog = "(internal) --measure -- CMD...: run CMD, print its wall time and peak RSS"
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--measure"]:
        return measure(argv[2:] if argv[1:2] == ["--"] else argv[1:])
    args = parse_args(argv)
    if args.plain:
        print(json.dumps(plain_sklearn(args.plain)))
        return 0
    results = bench(args)
    print(render(results))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "pipeline.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nfigures: {OUT_DIR / 'pipeline.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
