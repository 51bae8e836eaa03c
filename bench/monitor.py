"""Benchmark drift monitoring: gitml's calibrated drift against Evidently's DataDriftPreset, and
`gitml monitor` streaming a large prediction log.

Usage (with the project venv first on PATH, as `make bench` does, after `dvc repro`):

    python bench/monitor.py                         # 100,000 and 1,000,000 rows, both tools
    python bench/monitor.py --rows 100000 --repeats 1
    python bench/monitor.py --log-rows 2000000 10000000   # also stream prediction logs
    python bench/monitor.py --skip-evidently        # gitml only

Frames (bench/out/monitor/, git-ignored): reference and current, each ROWS rows by 20 columns,
resampled with replacement (seeds 1 and 2) from the Telco data (the 19 features of
data/processed/{train,test}.parquet plus the model's score of the row); monthly_charges and
total_charges are jittered by less than 0.5 so that rows are not exact copies. The current
frame has two known shifts: `monthly_charges` scaled by 1.2 and `contract` with 30 points of
its mix moved to "Two year". Every other column is unshifted, so a correct monitor flags
exactly those two.

Peer: Evidently 0.7.23 `Report([DataDriftPreset()])` in its own environment
(bench/out/venv-evidently, created on first use; Evidently needs pandas<3), never a project
dependency. Each tool runs in its own child process under the measuring wrapper
(bench/measured.py), alternating, median of --repeats: whole-process wall time, the child's
own time without start-up, imports and reading ("work"), and the child's peak RSS. Both read
the same Parquet files.

The log: --log-rows rows of prediction-log files (the server's schema, row groups of 100,000,
one request a second, so a day's window holds 86,400 rows) made from the reference frame, then
`gitml monitor --current DIR --reference data/processed/train.parquet --no-history` under the
wrapper, twice: with `--no-estimate` (drift and quality: counts only, memory flat in the rows)
and as is (estimated performance per daily window keeps ~70 bytes a row at the peak): rows/s
and peak RSS.

Targets (PASS/FAIL printed; exit code 0 whatever they say): at 1,000,000 rows gitml's work at
least 10x faster than Evidently's; gitml's peak RSS <= 1 GiB; gitml flags the two shifted
columns and nothing else.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline import OUT_DIR, ROOT, bench_env, mib, progress, run_measured  # bench/pipeline.py

EVIDENTLY = "evidently==0.7.23"
EVIDENTLY_VENV = OUT_DIR / "venv-evidently"
WORK_MARK = "@@bench-work "
SHIFTED = {"monthly_charges", "contract"}
TARGET_SPEEDUP = 10.0
TARGET_PEAK_KIB = 1024 * 1024


def main() -> None:
    args = _parse()
    if args.child:
        _child(args.child, Path(args.reference), Path(args.current))
        return
    data_dir = OUT_DIR / "monitor"
    data_dir.mkdir(parents=True, exist_ok=True)
    python_ev = None if args.skip_evidently else ensure_evidently(EVIDENTLY_VENV)
    results: dict[str, Any] = {"sizes": {}}
    for rows in args.rows:
        ref, cur = make_frames(rows, data_dir)
        runs: dict[str, list[dict[str, Any]]] = {"gitml": [], "evidently": []}
        for i in range(args.repeats):
            for tool in ("gitml", "evidently"):
                if tool == "evidently" and python_ev is None:
                    continue
                if tool == "gitml":
                    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "gitml"]
                else:
                    cmd = [str(python_ev), str(Path(__file__).with_name("monitor_evidently.py"))]
                cmd += [str(ref), str(cur)]
                run = run_measured(cmd, ROOT, f"monitor-{tool}-{rows}-{i}")
                work = next(
                    json.loads(line[len(WORK_MARK) :])
                    for line in run.text.splitlines()
                    if line.startswith(WORK_MARK)
                )
                runs[tool].append({"wall_s": run.wall_s, "peak_kib": run.peak_kib, **work})
        results["sizes"][rows] = _summarise(rows, runs)
    results["log"] = [bench_log(rows, data_dir) for rows in args.log_rows]
    out = OUT_DIR / "monitor.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    progress(f"figures in {out}")


def _summarise(rows: int, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for tool, items in runs.items():
        if not items:
            continue
        summary[tool] = {
            "wall_s": statistics.median(r["wall_s"] for r in items),
            "work_s": statistics.median(r["work_s"] for r in items),
            "peak_kib": max(r["peak_kib"] for r in items),
            "flagged": items[0]["flagged"],
        }
    print(f"\n{rows:,} rows x 20 columns (reference = current size)")
    print(f"{'tool':<10} {'work':>9} {'process':>9} {'peak RSS':>10}  flagged")
    for tool, s in summary.items():
        print(
            f"{tool:<10} {s['work_s']:>8.2f}s {s['wall_s']:>8.2f}s {mib(s['peak_kib']):>10}  "
            f"{', '.join(s['flagged']) or '-'}"
        )
    git = summary["gitml"]
    exact = set(git["flagged"]) == SHIFTED
    print(f"gitml flags exactly the shifted columns {sorted(SHIFTED)}: {_verdict(exact)}")
    if "evidently" in summary:
        ev = summary["evidently"]
        speed = ev["work_s"] / git["work_s"]
        whole = ev["wall_s"] / git["wall_s"]
        memory = git["peak_kib"] / ev["peak_kib"]
        summary["ratios"] = {"work_speedup": speed, "process_speedup": whole, "peak": memory}
        print(
            f"gitml vs Evidently: work {speed:.1f}x faster (whole process {whole:.1f}x), "
            f"peak {memory:.2f}x Evidently's"
        )
        if rows >= 1_000_000:
            print(f"target: work >= {TARGET_SPEEDUP:.0f}x faster: {_verdict(speed >= 10)}")
        ev_exact = set(ev["flagged"]) == SHIFTED
        print(f"Evidently flags exactly the shifted columns: {'yes' if ev_exact else 'no'}")
    if rows >= 1_000_000:
        ok = git["peak_kib"] <= TARGET_PEAK_KIB
        print(f"target: gitml peak RSS <= 1 GiB ({mib(git['peak_kib'])}): {_verdict(ok)}")
    return summary


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# --- the frames --------------------------------------------------------------------------------


def make_frames(rows: int, data_dir: Path) -> tuple[Path, Path]:
    """Reference and current Parquet files of `rows` rows (made once per size, then reused)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    ref_path = data_dir / f"reference-{rows}.parquet"
    cur_path = data_dir / f"current-{rows}.parquet"
    if ref_path.is_file() and cur_path.is_file():
        return ref_path, cur_path
    import numpy as np

    population = _population()
    progress(f"making the {rows:,}-row frames in {data_dir}")
    for path, seed, shift in ((ref_path, 1, False), (cur_path, 2, True)):
        rng = np.random.default_rng(seed)
        frame = population.iloc[rng.integers(0, len(population), rows)].reset_index(drop=True)
        for column in ("monthly_charges", "total_charges"):
            frame[column] = frame[column] + rng.uniform(-0.49, 0.49, rows)
        if shift:
            frame["monthly_charges"] = frame["monthly_charges"] * 1.2
            moved = (frame["contract"] != "Two year") & (rng.random(rows) < _mix_fraction(frame))
            frame.loc[moved, "contract"] = "Two year"
        frame.to_parquet(path, index=False)
    return ref_path, cur_path


def _mix_fraction(frame: Any) -> float:
    """The share of non-"Two year" rows to move so that 30 points of the mix move."""
    other = float((frame["contract"] != "Two year").mean())
    return 0.30 / other


def _population() -> Any:
    import json as _json

    import pandas as pd

    from gitml.model.persist import load_verified_model
    from gitml.model.scoring import score_frame

    parts = [pd.read_parquet(ROOT / f"data/processed/{s}.parquet") for s in ("train", "test")]
    data = pd.concat(parts, ignore_index=True)
    signature = _json.loads((ROOT / "models/signature.json").read_text())
    features = [c["name"] for c in signature["inputs"]]
    metadata = _json.loads((ROOT / "models/metadata.json").read_text())
    model = load_verified_model(ROOT / "models/model.skops", metadata["model_file"]["sha256"])
    data = data[features].copy()
    positive = signature["output"]["positive_class"]
    data["score"] = score_frame(model, data, features=features, positive_class=positive)
    return data


# --- the children ------------------------------------------------------------------------------


def _child(tool: str, reference: Path, current: Path) -> None:
    started = time.perf_counter()
    flagged = _gitml(reference, current)
    figures = {"work_s": time.perf_counter() - started, "flagged": sorted(flagged)}
    print(WORK_MARK + json.dumps(figures), flush=True)


def _gitml(reference: Path, current: Path) -> list[str]:
    """What `gitml monitor` does with a batch: profile, count in record batches, test, judge."""
    import pandas as pd
    import pyarrow.parquet as pq
    import scipy.stats  # noqa: F401  imported before the clock starts, as Evidently's imports are

    from gitml.config.compose import load_params
    from gitml.monitor.alarms import judge
    from gitml.monitor.drift import compare
    from gitml.monitor.result import DriftReport
    from gitml.monitor.sketch import count_batch, monitored_columns, profile_reference

    params = load_params(ROOT / "params.yaml").monitor
    signature = json.loads((ROOT / "models/signature.json").read_text())
    started = time.perf_counter()
    ref = pd.read_parquet(reference)
    columns = [c for c in monitored_columns(signature) if c.name in ref.columns]
    profile = profile_reference(ref, columns, params)
    del ref
    counts = None
    for batch in pq.ParquetFile(current).iter_batches(batch_size=250_000):
        chunk = count_batch(batch.to_pandas(), profile)
        counts = chunk if counts is None else counts.merge(chunk)
    assert counts is not None
    drift, quality = compare(profile, counts, params)
    report = DriftReport("bench", str(reference), 0, counts.rows, drift, quality)
    (judged,) = judge([report], params)
    progress(f"gitml: {time.perf_counter() - started:.2f}s for profile, count, test")
    return [c.column for c in judged.columns if c.drifted]


def ensure_evidently(venv: Path) -> Path:
    """Create Evidently's own environment on first use; return its python."""
    python = venv / "bin" / "python"
    stamp = venv / ".bench-installed"
    wanted = f"{EVIDENTLY} pandas<3 pyarrow"
    if stamp.is_file() and stamp.read_text().strip() == wanted:
        return python
    progress(f"creating Evidently's environment in {venv} ({wanted}); once, 1-3 minutes")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *wanted.split()], check=True, env=bench_env())
    stamp.write_text(wanted + "\n")
    return python


# --- the prediction log ------------------------------------------------------------------------


def bench_log(rows: int, data_dir: Path) -> dict[str, Any]:
    """Stream `rows` prediction-log rows through `gitml monitor`; rows/s and peak RSS."""
    log_dir = data_dir / f"log-{rows}"
    if not log_dir.is_dir():
        _write_log(rows, log_dir, data_dir)
    out = data_dir / "monitor-out"
    cmd = [
        str(Path(sys.executable).parent / "gitml"),
        "monitor",
        "--current",
        str(log_dir),
        "--reference",
        "data/processed/train.parquet",
        "--out",
        str(out),
        "--no-history",
    ]
    figures: dict[str, Any] = {"rows": rows}
    for mode, extra in (("drift and quality", ["--no-estimate"]), ("with estimates", [])):
        run = run_measured([*cmd, *extra], ROOT, f"monitor-log-{rows}-{extra}", ok_codes=(0, 1))
        figures[mode] = {
            "wall_s": run.wall_s,
            "peak_kib": run.peak_kib,
            "rows_per_s": rows / run.wall_s,
        }
        print(
            f"gitml monitor on {rows:,} prediction-log rows, {mode}: {run.wall_s:.1f}s, "
            f"{rows / run.wall_s:,.0f} rows/s, peak RSS {mib(run.peak_kib)}"
        )
    return figures


def _write_log(rows: int, log_dir: Path, data_dir: Path) -> None:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    ref, _ = make_frames(100_000, data_dir)
    frame = pd.read_parquet(ref)
    signature = json.loads((ROOT / "models/signature.json").read_text())
    positive = signature["output"]["positive_class"]
    negative = next(c for c in signature["output"]["classes"] if c != positive)
    progress(f"writing {rows:,} prediction-log rows to {log_dir}")
    log_dir.mkdir(parents=True)
    start = pd.Timestamp("2026-11-01", tz="UTC")
    per_file = 1_000_000
    done = 0
    while done < rows:
        n = min(per_file, rows - done)
        idx = np.arange(done, done + n) % len(frame)
        part = frame.iloc[idx].reset_index(drop=True)
        label = np.where(part["score"].to_numpy() >= 0.5, positive, negative)
        table = pd.DataFrame(
            {
                "request_id": [f"r{i}" for i in range(done, done + n)],
                "record": np.zeros(n, dtype=np.int64),
                "timestamp": start + pd.to_timedelta(np.arange(done, done + n), unit="s"),
                "model_name": signature["model_name"],
                "model_version": "workspace",
            }
        )
        table = pd.concat([table, part.drop(columns=["score"])], axis=1)
        table["score"] = part["score"].to_numpy()
        table["label"] = label
        pq.write_table(
            pa.Table.from_pandas(table, preserve_index=False),
            log_dir / f"predictions-{done:012d}.parquet",
            row_group_size=100_000,
        )
        done += n


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--log-rows", type=int, nargs="*", default=[])
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--child", choices=["gitml"], help=argparse.SUPPRESS)
    parser.add_argument("reference", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("current", nargs="?", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    main()
