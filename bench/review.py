"""Benchmark `gitml report` on the reference project: wall time, and the bootstrap on its own.

Usage (project venv on PATH, after `make repro` so the working tree has outputs):

    python bench/review.py [--base REV] [--runs 3]

Runs `gitml report --base REV` (default HEAD: the working tree against the last commit) as a
user would, in a fresh process each time, writing to a temporary file; then times the paired
bootstrap (1,000 resamples over the committed test-set predictions) in-process. Target: the
whole report under 3 s. Nothing in the checkout is modified.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 3.0


def _time_report(base: str, runs: int) -> list[float]:
    timings = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "gitml", "report", "--base", base, "--out", f"{tmp}/r.md"],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            timings.append(time.perf_counter() - started)
    return timings


def _time_bootstrap(runs: int) -> tuple[float, int]:
    import numpy as np
    import pandas as pd

    from gitml.review.bootstrap import paired_bootstrap
    from gitml.tasks import METRICS

    predictions = pd.read_csv(ROOT / "reports/predictions.csv")
    y = (predictions["actual"] == "Yes").to_numpy(dtype=int)
    head = predictions["score"].to_numpy()
    base = np.clip(head + np.random.default_rng(0).normal(0, 0.05, len(head)), 0, 1)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        paired_bootstrap(y, base, head, threshold=0.5, names=list(METRICS["binary"]))
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), len(y)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    report = statistics.median(_time_report(args.base, args.runs))
    bootstrap, rows = _time_bootstrap(args.runs)
    verdict = "PASS" if report <= TARGET_SECONDS else "FAIL"
    print(f"gitml report --base {args.base} (median of {args.runs}, fresh process): {report:.2f} s")
    print(
        f"  of which paired bootstrap, 1,000 resamples x 8 metrics x {rows:,} rows: "
        f"{bootstrap:.2f} s (in-process)"
    )
    print(f"{verdict}  report under {TARGET_SECONDS:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
