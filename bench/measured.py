"""The child side of the benchmarks: run one command, print its wall time and peak memory.

Each bench script runs what it measures as `python bench/<script>.py --measure -- CMD...`, so
that the peak RSS (`RUSAGE_CHILDREN`) belongs to that command alone.
"""

from __future__ import annotations

import json
import resource
import subprocess
import time

MEASURE_MARK = "@@bench-measure "


def measure(cmd: list[str]) -> int:
    """Run `cmd`, then print its wall time and the peak RSS of its largest descendant."""
    started = time.perf_counter()
    code = subprocess.run(cmd, check=False).returncode
    wall = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    figures = {"wall_s": wall, "peak_kib": peak_kib, "returncode": code}
    print(MEASURE_MARK + json.dumps(figures), flush=True)
    return code
