"""Batch scoring: `gitml predict` on large resampled files (Parquet; CSV up to 1M rows) as a
separate process, against raw `predict_proba` on the frame pandas reads from the same Parquet,
in memory, measured in the same run.

Per size (`--batch-rows`): the whole command's rows/s (process start, imports and writing
included) and peak RSS, raw `predict_proba` on the frame as `pd.read_parquet` gives it (the
baseline) and with its strings as categoricals, and their ratio. Start-up is `gitml predict`
on a 1,000-row file: cold (the model's fast path derived from the pipeline, checked and
stored) and warm (scored from the store; the best of three). Every figure comes with the
load average it was measured at.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from measured import MEASURE_MARK  # bench/measured.py
from serving.env import ENTRY, OUT_DIR, RESULT_MARK, ROOT, SEED, bench_env, progress, run_checked

MODEL = "models/model.skops"
SIGNATURE = ROOT / "models" / "signature.json"
TEST_DATA = ROOT / "data" / "processed" / "test.parquet"
BATCH_SOURCES = [ROOT / "data" / "raw" / "telco_churn.parquet", TEST_DATA]


def signature_columns() -> tuple[list[str], list[str]]:
    """The model's input columns, and which of them are categorical, from signature.json."""
    inputs = json.loads(SIGNATURE.read_text())["inputs"]
    return [c["name"] for c in inputs], [c["name"] for c in inputs if c["type"] == "category"]


def positive_class() -> str:
    return json.loads(SIGNATURE.read_text())["output"]["positive_class"]


def raw_batch(path: str, dtypes: str, repeats: int = 3) -> dict[str, Any]:
    """Read `path` with pandas, then time predict_proba on the whole frame (read excluded)."""
    import pandas as pd

    from gitml.model.persist import load_model

    features, categorical = signature_columns()
    pipeline = load_model(ROOT / MODEL)
    started = time.perf_counter()
    frame = pd.read_parquet(path, columns=features)
    if dtypes == "category":
        frame = frame.astype({c: "category" for c in categorical})
    read_s = time.perf_counter() - started
    kinds = frame.dtypes.astype(str).value_counts()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        pipeline.predict_proba(frame)
        timings.append(time.perf_counter() - started)
    return {
        "rows": len(frame),
        "dtypes": dtypes,
        "frame_dtypes": ", ".join(f"{k} x{v}" for k, v in kinds.items()),
        "read_s": read_s,
        "score_s": statistics.median(timings),
        "score_runs": timings,
        "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "load": os.getloadavg()[0],
    }


def write_batch_inputs(tmp: Path, rows: int, features: list[str], csv: bool) -> dict[str, Path]:
    """`rows` rows resampled with replacement from the typed data, as Parquet (and CSV)."""
    import pandas as pd

    source = next(p for p in BATCH_SOURCES if p.is_file())
    frame = pd.read_parquet(source, columns=features)
    paths = {"parquet": tmp / f"rows-{rows}.parquet"}
    # in slices of 1M rows, one row group each: the writer never holds the whole file
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    csv_path = tmp / f"rows-{rows}.csv"
    for start in range(0, rows, 1_000_000):
        part = frame.sample(
            n=min(1_000_000, rows - start), replace=True, random_state=SEED + start
        ).reset_index(drop=True)
        table = pa.Table.from_pandas(part, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(paths["parquet"], table.schema)
        writer.write_table(table)
        if csv:
            part.to_csv(csv_path, index=False, header=start == 0, mode="w" if start == 0 else "a")
    assert writer is not None
    writer.close()
    if csv:
        paths["csv"] = csv_path
    return paths


def write_small_input(tmp: Path, features: list[str]) -> Path:
    import pandas as pd

    source = next(p for p in BATCH_SOURCES if p.is_file())
    path = tmp / "rows-1000.parquet"
    pd.read_parquet(source, columns=features).head(1000).to_parquet(path, index=False)
    return path


def run_measured(cmd: list[str], log_name: str, env: dict[str, str]) -> dict[str, Any]:
    """Run `cmd` under the measuring wrapper; its wall time, peak RSS, output and the load."""
    wrapper = [sys.executable, str(ENTRY), "--measure", "--", *cmd]
    load = os.getloadavg()[0]
    proc = subprocess.run(wrapper, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = proc.stdout.splitlines()
    marks = [ln for ln in lines if ln.startswith(MEASURE_MARK)]
    output = "\n".join(ln for ln in lines if not ln.startswith(MEASURE_MARK)) + proc.stderr
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / f"{log_name}.log").write_text(f"$ {' '.join(cmd)}\n{output}\n")
    if not marks or json.loads(marks[-1][len(MEASURE_MARK) :])["returncode"] != 0:
        raise SystemExit(f"bench: `{' '.join(cmd)}` failed:\n{output[-3000:]}")
    figures = json.loads(marks[-1][len(MEASURE_MARK) :])
    return {**figures, "load": load, "output": output.strip()[-2000:]}


def gitml_predict(
    src: Path, dst: Path, rows: int, chunk_size: int | None, log_name: str, env: dict[str, str]
) -> dict[str, Any]:
    """`gitml predict` under the measuring wrapper; stop if it wrote the wrong row count."""
    cmd = [sys.executable, "-m", "gitml", "predict", str(src), "-o", str(dst), "--model", MODEL]
    if chunk_size:
        cmd += ["--chunk-size", str(chunk_size)]
    run = run_measured(cmd, log_name, env)
    written = count_rows(dst)
    if written != rows:
        raise SystemExit(f"bench: `{' '.join(cmd)}` wrote {written:,} rows for {rows:,}")
    return run


def check_batch_scores(src: Path, out: Path, features: list[str]) -> float:
    """Largest difference between `gitml predict`'s scores and raw predict_proba on `src`."""
    import pandas as pd

    from gitml.model.persist import load_model

    pipeline = load_model(ROOT / MODEL)
    column = [str(c) for c in pipeline.classes_].index(positive_class())
    expected = pipeline.predict_proba(pd.read_parquet(src, columns=features))[:, column]
    got = pd.read_parquet(out, columns=["score"])["score"].to_numpy()
    return float(abs(got - expected).max())


def count_rows(path: Path) -> int:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 22), b"")) - 1


def raw_batch_child(path: Path, dtypes: str, repeats: int) -> dict[str, Any]:
    cmd = [sys.executable, str(ENTRY), "--raw-batch", str(path), dtypes, str(repeats)]
    out = run_checked(cmd)
    line = next(ln for ln in out.splitlines() if ln.startswith(RESULT_MARK))
    return json.loads(line[len(RESULT_MARK) :])


CSV_MAX_ROWS = 1_000_000  # a 10M-row CSV is 1 GiB of text: Parquet only above this


def batch_runs(args: argparse.Namespace, features: list[str]) -> dict[str, Any]:
    """Start-up on 1,000 rows (cold and warm), then per size in --batch-rows: gitml predict
    on Parquet (and CSV up to CSV_MAX_ROWS) and raw predict_proba on the same rows."""
    tmp = Path(tempfile.mkdtemp(prefix="gitml-bench-predict-"))
    env = bench_env()
    env["GITML_FASTPATH_DIR"] = str(tmp / "fastpath")  # cold first: nothing stored yet
    try:
        small = write_small_input(tmp, features)
        progress("batch: gitml predict on 1,000 rows: cold (derives and stores the fast path)")
        out_small = tmp / "out-small.parquet"
        cold = gitml_predict(small, out_small, 1000, args.chunk_size, "predict-1000-cold", env)
        progress("batch: gitml predict on 1,000 rows: warm, three times (start-up)")
        warm_runs = [
            gitml_predict(small, out_small, 1000, args.chunk_size, "predict-1000", env)
            for _ in range(3)
        ]
        result: dict[str, Any] = {
            "chunk_size": args.chunk_size,
            "cold": cold,
            "warm": min(warm_runs, key=lambda run: run["wall_s"]),
            "warm_runs": [run["wall_s"] for run in warm_runs],
            "max_score_diff": check_batch_scores(small, out_small, features),
            "sizes": [],
        }
        for rows in args.batch_rows:
            result["sizes"].append(_size_runs(args, features, tmp, rows, env))
        result["raw_baseline"] = "object"
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _size_runs(
    args: argparse.Namespace, features: list[str], tmp: Path, rows: int, env: dict[str, str]
) -> dict[str, Any]:
    csv = rows <= CSV_MAX_ROWS
    progress(f"batch: writing {rows:,} resampled rows (Parquet{' and CSV' if csv else ''})")
    started = time.perf_counter()
    inputs = write_batch_inputs(tmp, rows, features, csv)
    size: dict[str, Any] = {
        "rows": rows,
        "write_s": time.perf_counter() - started,
        "gitml": {},
        "raw": {},
        "input_bytes": {k: p.stat().st_size for k, p in inputs.items()},
    }
    # rounds of raw then gitml, the best of each kept: on a shared machine the least
    # disturbed run is the closest to what each costs, and both get the same chances
    rounds = args.rounds or (3 if rows <= CSV_MAX_ROWS else 2)
    repeats = 3 if rows <= CSV_MAX_ROWS else 1
    raws, runs = [], []
    for k in range(rounds):
        progress(f"batch: round {k + 1}/{rounds}: raw predict_proba, {rows:,} rows, as read")
        raws.append(raw_batch_child(inputs["parquet"], "object", repeats))
        progress(f"batch: round {k + 1}/{rounds}: gitml predict, {rows:,} rows, parquet")
        out = tmp / "out.parquet"
        runs.append(
            gitml_predict(
                inputs["parquet"], out, rows, args.chunk_size, f"predict-{rows}-parquet", env
            )
        )
        out.unlink(missing_ok=True)
    size["gitml"]["parquet"] = min(runs, key=lambda run: run["wall_s"])
    size["gitml"]["parquet"]["runs"] = [[run["wall_s"], run["load"]] for run in runs]
    size["raw"]["object"] = min(raws, key=lambda raw: raw["score_s"])
    size["raw"]["object"]["runs"] = [[raw["score_s"], raw["load"]] for raw in raws]
    if "csv" in inputs:
        progress(f"batch: gitml predict, {rows:,} rows, csv (once: no target)")
        size["gitml"]["csv"] = gitml_predict(
            inputs["csv"], tmp / "out.csv", rows, args.chunk_size, f"predict-{rows}-csv", env
        )
        (tmp / "out.csv").unlink(missing_ok=True)
    progress(f"batch: raw predict_proba in memory, {rows:,} rows, categorical strings")
    size["raw"]["category"] = raw_batch_child(inputs["parquet"], "category", repeats)
    for path in inputs.values():
        path.unlink(missing_ok=True)
    raw = size["raw"]
    size["raw_rps"] = raw["object"]["rows"] / raw["object"]["score_s"]
    size["raw_rps_category"] = raw["category"]["rows"] / raw["category"]["score_s"]
    for run in size["gitml"].values():
        run["rps"] = rows / run["wall_s"]
        run["ratio"] = run["rps"] / size["raw_rps"]
        run["ratio_to_category"] = run["rps"] / size["raw_rps_category"]
    return size
