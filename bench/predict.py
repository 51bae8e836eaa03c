"""Benchmark `gitml predict` alone: the batch part of bench/serve.py, at 1M and 10M rows.

Usage, from the project root with the project venv first on PATH and a trained model in
models/model.skops (`make repro`); 10M rows hold several GiB at once in the raw baseline, so
on a shared machine run it under the big-memory lock:

    flock /work/wt/bigmem.lock python bench/predict.py              # 1M and 10M rows
    python bench/predict.py --batch-rows 1000000                    # 1M rows only

Per size: `gitml predict` as a separate process (the whole command: process start, imports,
reading, checking, scoring, writing) against raw `predict_proba` on the frame
`pd.read_parquet` gives for the same file, in memory, in the same run; start-up on a
1,000-row file, cold and warm; peak RSS; the load average of every figure. Targets (issue
14): >= 0.8x raw at 1M rows and >= 1.0x at 10M, start-up < 1.5 s, peak memory < 1.5 GiB.
Figures go to bench/out/predict.json (or --json); the report is markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from serving import batch, report  # bench/serving/
from serving.env import OUT_DIR, ROOT
from serving.targets import Checks, check_batch


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-rows", type=_sizes, default=[1_000_000, 10_000_000])
    parser.add_argument("--chunk-size", type=int, default=None, help="`--chunk-size`")
    parser.add_argument(
        "--rounds", type=int, default=None, help="raw-then-gitml rounds per size (3 to 1M, then 2)"
    )
    parser.add_argument("--json", type=Path, default=OUT_DIR / "predict.json")
    args = parser.parse_args(argv)
    if not (ROOT / batch.MODEL).is_file():
        raise SystemExit(f"bench: needs {batch.MODEL}: run `make repro` (or `dvc pull`) first")
    started = time.perf_counter()
    load = os.getloadavg()
    result = batch.batch_runs(args, batch.signature_columns()[0])
    checks = Checks()
    check_batch(checks, result)
    meta = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_start": load,
        "load_average_end": os.getloadavg(),
        "total_s": time.perf_counter() - started,
    }
    print(report.render_batch(result))
    print(report.render_targets(checks.rows))
    print(f"load average at start {load[0]:.1f}, at end {meta['load_average_end'][0]:.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    figures = {"meta": meta, "batch": result, "targets": checks.rows}
    args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"figures: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
