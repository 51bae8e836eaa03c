"""Benchmark the first hour: `gitml init` to a finished first `dvc repro`, and schema inference
against a plain `pandas.read_csv` of the same file.

Usage (with the project venv first on PATH, as `make bench` does):

    python bench/init.py                    # Telco and a 1,000,000-row resample: init, infer
    python bench/init.py --only infer       # schema inference vs pandas.read_csv, 1M rows
    python bench/init.py --only init --skip-large   # init on the Telco data only
    python bench/init.py --rows 200000 --repeats 5 --keep

Scratch projects and data go to a temp dir (removed unless --keep); figures to
bench/out/init.json (git-ignored) and one log per measured command.

How it measures:
- init: `gitml init DIR --data FILE --target churn --name churn` under the measuring wrapper
  (bench/measured.py): wall time and the peak RSS of its largest process. init infers the
  schema, writes the project, sets up git and DVC, runs `dvc repro` once and commits. Its
  output lines are timestamped, so the steps' shares come from them: the schema (up to its
  "task:" line), the set-up (up to "running the pipeline once"), the first run, the rest
  (quality floor, commit). init captures its `dvc repro` output, so the stages' shares of the
  run come from a `dvc repro --force` right after in the created project, timed as
  bench/pipeline.py does (from the "Running stage" lines).
- infer: child processes, each under the wrapper, so the peak is the child's own ru_maxrss:
  `--infer FILE` runs `infer_schema` and `render_data_yaml` (what `gitml schema infer` and
  `gitml init` do), `--read FILE` runs `pandas.read_csv(FILE)`. Each child also reports its
  own time without interpreter start-up and imports ("work"). Alternating, median of
  --repeats; the ratio is of the work, the whole-process ratio is shown beside it.
- The large file is the Telco data resampled with replacement (seed 42), `total_charges`
  jittered by less than 0.5 so that rows are not exact copies (validate refuses more than 1 %
  duplicate rows), written as gzip CSV.

Targets (PASS/FAIL is printed; the exit code is 0 whatever they say): at the large size,
inference work <= 1.5x the plain read's, inference peak RSS <= 1 GiB.
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
from pathlib import Path
from typing import Any

from measured import measure  # bench/measured.py
from pipeline import (  # bench/pipeline.py
    OUT_DIR,
    ROOT,
    Run,
    bench_env,
    dvc,
    metadata,
    mib,
    progress,
    run_measured,
    secs,
    stage_breakdown,
    table,
)

REFERENCE_DATA = ROOT / "data" / "external" / "telco_churn.csv.gz"
TARGET, SEED = "churn", 42
TARGET_RATIO, TARGET_PEAK_GIB = 1.5, 1.0
WORK_MARK = "@@bench-work "
# init's own progress lines that end each step (see gitml.scaffold.create)
INIT_STEPS = [("schema", "task: "), ("set-up", "running the pipeline once")]


# --- child modes -------------------------------------------------------------------------------


def child_infer(path: str) -> dict[str, Any]:
    """What `gitml schema infer` does with the file, timed without start-up and imports."""
    import pyarrow.compute
    import pyarrow.csv
    import pyarrow.parquet  # noqa: F401  (imported here, not inside the timed call)

    from gitml.config.data_yaml import render_data_yaml
    from gitml.data.inference import infer_schema

    started = time.perf_counter()
    draft = infer_schema(Path(path), target=TARGET, name="bench", source=Path(path).name)
    text = render_data_yaml(draft)
    return {"work_s": time.perf_counter() - started, "task": draft.task, "bytes": len(text)}


def child_read(path: str) -> dict[str, Any]:
    """A plain `pandas.read_csv` of the file, timed without start-up and imports."""
    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_csv(path)
    return {"work_s": time.perf_counter() - started, "rows": len(frame)}


# --- data ---------------------------------------------------------------------------------------


def write_large(directory: Path, rows: int) -> tuple[Path, float]:
    """The Telco data resampled to `rows` rows, nearly without exact duplicates, as gzip CSV."""
    import numpy as np
    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_csv(REFERENCE_DATA).sample(n=rows, replace=True, random_state=SEED)
    jitter = np.random.default_rng(SEED).uniform(-0.49, 0.49, rows)
    frame["total_charges"] = (frame["total_charges"] + jitter).round(6)
    path = directory / f"telco_{rows}.csv.gz"
    compression = {"method": "gzip", "compresslevel": 1, "mtime": 0}
    frame.to_csv(path, index=False, compression=compression)
    return path, time.perf_counter() - started


# --- scenarios ----------------------------------------------------------------------------------


def init_available() -> bool:
    proc = subprocess.run(
        [sys.executable, "-m", "gitml", "init", "--help"],
        env=bench_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode == 0


def init_steps(run: Run) -> dict[str, float]:
    """Each step of `gitml init` from the timestamps of its output lines."""
    steps, start = {}, 0.0
    for name, marker in INIT_STEPS:
        found = next((t for t, line in run.lines if line.startswith(marker)), None)
        if found is None:
            continue
        steps[name] = found - start
        start = found
    done = next((t for t, line in run.lines if line.startswith("created ")), run.wall_s)
    steps["first dvc repro, floor, commit"] = done - start
    steps["exit"] = run.wall_s - done
    return steps


def init_run(scratch: Path, data: Path, label: str) -> dict[str, Any]:
    """`gitml init` on `data`, then a forced re-run of the created pipeline for stage shares."""
    project = scratch / f"{label}-project"
    progress(f"{label}: gitml init ({data.name})")
    cmd = [sys.executable, "-m", "gitml", "init", str(project), "--data", str(data)]
    run = run_measured([*cmd, "--target", TARGET, "--name", "churn"], scratch, f"init-{label}")
    progress(f"{label}: dvc repro --force in the created project (stage shares)")
    again = run_measured(dvc("repro", "--force"), project, f"init-{label}-repro")
    return {
        "data": data.name,
        "wall_s": run.wall_s,
        "peak_kib": run.peak_kib,
        "steps": init_steps(run),
        "repro": {"wall_s": again.wall_s, "stages": stage_breakdown(again)},
    }


def infer_run(data: Path, repeats: int, label: str) -> dict[str, Any]:
    """Inference and the plain read of `data` in child processes, alternating."""
    sides: dict[str, list[dict[str, Any]]] = {"infer": [], "read": []}
    for k in range(repeats):
        for side in ("read", "infer") if k % 2 else ("infer", "read"):
            progress(f"{label}: {side} {k + 1}/{repeats} ({data.name})")
            cmd = [sys.executable, str(Path(__file__).resolve()), f"--{side}", str(data)]
            run = run_measured(cmd, data.parent, f"infer-{label}-{side}")
            work = next(
                json.loads(line[len(WORK_MARK) :]) for _, line in run.lines if WORK_MARK in line
            )
            sides[side].append({"wall_s": run.wall_s, "peak_kib": run.peak_kib, **work})

    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in sides[side])

    result: dict[str, Any] = {"data": data.name, "bytes": data.stat().st_size, "runs": sides}
    for side in sides:
        result[side] = {key: median(side, key) for key in ("work_s", "wall_s", "peak_kib")}
    result["ratio"] = result["infer"]["work_s"] / result["read"]["work_s"]
    result["process_ratio"] = result["infer"]["wall_s"] / result["read"]["wall_s"]
    result["rows"] = sides["read"][0]["rows"]
    result["task"] = sides["infer"][0]["task"]
    return result


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    infer = results.get("infer", {}).get("large")
    rows = f"{infer['rows']:,}" if infer else "large"
    checks = [
        (f"{rows}-row inference <= {TARGET_RATIO}x read", infer and infer["ratio"], "x"),
        (
            f"{rows}-row inference peak <= {TARGET_PEAK_GIB:g} GiB",
            infer and infer["infer"]["peak_kib"] / 2**20,
            " GiB",
        ),
    ]
    limits = [TARGET_RATIO, TARGET_PEAK_GIB]
    return [
        {
            "target": name,
            "value": value,
            "unit": unit,
            "status": "SKIP" if value is None else ("PASS" if value <= limit else "FAIL"),
        }
        for (name, value, unit), limit in zip(checks, limits, strict=True)
    ]


# --- report -------------------------------------------------------------------------------------


def share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else ""


def init_table(result: dict[str, Any]) -> str:
    wall, rows = result["wall_s"], []
    for name, value in result["steps"].items():
        rows.append([f"init: {name}", secs(value), share(value, wall)])
    rows.append(["total (gitml init)", secs(wall), "100%"])
    repro = result["repro"]
    rows.append(["", "", ""])
    for name, stage in repro["stages"].items():
        value = stage["total"]
        rows.append([f"stage {name}", secs(value), share(value, repro["wall_s"])])
    rows.append(["total (dvc repro --force)", secs(repro["wall_s"]), "100%"])
    return table(["step", "time", "share"], rows)


def infer_table(results: dict[str, Any]) -> str:
    rows = []
    for key, res in results.items():
        for side, name in (("infer", "gitml infer_schema + YAML"), ("read", "pandas.read_csv")):
            fig = res[side]
            rows.append(
                [
                    f"{key}: {name}",
                    f"{res['rows']:,}",
                    secs(fig["work_s"]),
                    secs(fig["wall_s"]),
                    mib(int(fig["peak_kib"])),
                ]
            )
        rows.append(
            [f"{key}: ratio", "", f"{res['ratio']:.2f}x", f"{res['process_ratio']:.2f}x", ""]
        )
    return table(["", "rows", "work", "process", "peak RSS"], rows)


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out = [
        f"gitml first-hour benchmark: python {meta['python']}, dvc {meta['dvc']}, "
        f"{meta['cpus']} CPUs; 1-min load average {meta['load_average_start'][0]:.2f} at start "
        f"(other work on the machine skews times)",
    ]
    if "large_file" in results:
        large = results["large_file"]
        out.append(
            f"large: {large['rows']:,} rows resampled from the Telco data (seed {SEED}, "
            f"written in {large['write_s']:.1f} s, {large['bytes'] / 2**20:.1f} MiB gzip CSV)"
        )
    for key, res in results.get("init", {}).items():
        if res is None:
            out += ["", f"`gitml init`, {key}: skipped (this checkout has no `gitml init`)"]
            continue
        out += ["", f"`gitml init` to a finished first `dvc repro`, {key} ({res['data']}):"]
        out.append(init_table(res))
        out.append(f"  peak RSS of gitml init's largest process: {mib(res['peak_kib'])}")
    if "infer" in results:
        out += ["", f"Schema inference against a plain read, median of {results['repeats']}:"]
        out.append(infer_table(results["infer"]))
        out.append("  work = the call alone; process = with interpreter start-up and imports;")
        out.append("  peak RSS = ru_maxrss of the child process.")
    out += ["", "Targets:"]
    for check in results["targets"]:
        value = "n/a" if check["value"] is None else f"{check['value']:.2f}{check['unit']}"
        out.append(f"  {check['status']:4}  {check['target']:40} {value}")
    return "\n".join(out)


# --- main ---------------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="gitml-bench-init-"))
    results: dict[str, Any] = {"meta": metadata(), "repeats": args.repeats}
    try:
        files = {"telco": scratch / REFERENCE_DATA.name}
        shutil.copyfile(REFERENCE_DATA, files["telco"])
        if not args.skip_large:
            progress(f"writing {args.rows:,} resampled rows")
            files["large"], write_s = write_large(scratch, args.rows)
            results["large_file"] = {
                "rows": args.rows,
                "write_s": write_s,
                "bytes": files["large"].stat().st_size,
            }
        if args.only in (None, "init"):
            available = init_available()
            results["init"] = {
                key: init_run(scratch, path, key) if available else None
                for key, path in files.items()
            }
        if args.only in (None, "infer"):
            results["infer"] = {
                key: infer_run(path, args.repeats, key)
                for key, path in files.items()
                if key == "large" or args.skip_large
            }
        results["targets"] = check_targets(results)
        results["meta"]["load_average_end"] = os.getloadavg()
    finally:
        if args.keep:
            progress(f"kept the scratch files in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["init", "infer"], help="one part only")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the large data set")
    parser.add_argument("--skip-large", action="store_true", help="the Telco data only")
    parser.add_argument("--repeats", type=int, default=3, help="inference runs per side")
    parser.add_argument("--keep", action="store_true", help="keep the scratch files")
    parser.add_argument("--infer", metavar="FILE", help="(internal) infer the schema of FILE")
    parser.add_argument("--read", metavar="FILE", help="(internal) pandas.read_csv FILE")
    parser.epilog = "(internal) --measure -- CMD...: run CMD, print its wall time and peak RSS"
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--measure"]:
        return measure(argv[2:] if argv[1:2] == ["--"] else argv[1:])
    args = parse_args(argv)
    if args.infer or args.read:
        work = child_infer(args.infer) if args.infer else child_read(args.read)
        print(WORK_MARK + json.dumps(work), flush=True)
        return 0
    for key, value in (("NAME", "gitml bench"), ("EMAIL", "bench@gitml.invalid")):
        for who in ("AUTHOR", "COMMITTER"):  # gitml init commits
            os.environ.setdefault(f"GIT_{who}_{key}", value)
    results = bench(args)
    print(render(results))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "init.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nfigures: {OUT_DIR / 'init.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
