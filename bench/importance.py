"""Benchmark the `importance` stage: at the reference test set and at a large one.

Usage (project venv first on PATH; run from the repository root after `dvc repro`):

    python bench/importance.py                      # 1,409 and 1,000,000 test rows
    python bench/importance.py --rows 200000        # another large size

The large test set is the reference test split resampled with replacement (seed 0), written
to a temp dir; the stage runs on it exactly as `dvc repro` runs it (same model, params.yaml),
as a child process measured for wall time, CPU time (user + system) and peak memory.
Above `importance.max_rows` the stage subsamples, so its time must stay bounded: the target
is under 60 s at 1,000,000 rows. Figures go to bench/out/importance.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "importance.json"
TEST = ROOT / "data/processed/test.parquet"
TARGET_SECONDS = 60.0


def _run_stage(test: Path, out: Path) -> dict[str, float]:
    """The stage on `test`, as dvc.yaml runs it; its wall and CPU seconds and peak MiB."""
    cmd = [
        sys.executable, "-m", "gitml.stages.importance", "--model", "models/model.skops",
        "--metadata", "models/metadata.json", "--test", str(test), "--out", str(out),
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"stage failed:\n{proc.stdout}{proc.stderr}")
    print(proc.stdout.strip())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_mib": after.ru_maxrss / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    figures: dict[str, object] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="gitml-bench-importance-") as tmp:
        scratch = Path(tmp)
        figures["reference"] = _run_stage(TEST, scratch / "reference.json")
        test = pd.read_parquet(TEST)
        rows = np.random.default_rng(0).integers(0, len(test), size=args.rows)
        path = scratch / "large.parquet"
        test.iloc[rows].reset_index(drop=True).to_parquet(path)
        figures["large"] = {"rows": args.rows, **_run_stage(path, scratch / "large.json")}
        result = json.loads((scratch / "large.json").read_text())
        figures["large"]["rows_used"] = result["rows"]  # type: ignore[index]
    large_wall = figures["large"]["wall_s"]  # type: ignore[index]
    verdict = "PASS" if large_wall < TARGET_SECONDS else "FAIL"
    print(json.dumps(figures, indent=2))
    print(
        f"{verdict}: {large_wall:.1f} s at {args.rows:,} test rows (target < {TARGET_SECONDS:g} s)"
    )
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
