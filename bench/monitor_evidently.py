"""The Evidently side of bench/monitor.py, run in Evidently's own environment (pandas<3).

    bench/out/venv-evidently/bin/python bench/monitor_evidently.py REFERENCE CURRENT

Reads both Parquet files, runs `Report([DataDriftPreset()])` and prints the columns it flags
and its own time (reading and report, without interpreter start-up and imports) on one line
that bench/monitor.py parses. No project imports: the project is not installed there.
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

WORK_MARK = "@@bench-work "


def flagged_columns(reference: str, current: str) -> list[str]:
    """Evidently's verdict per column: p-value methods drift below their threshold (small
    reference), distance methods at or above it (the default above 1,000 rows)."""
    ref = pd.read_parquet(reference)
    cur = pd.read_parquet(current)
    snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    flagged = []
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if not config["type"].endswith("ValueDrift"):
            continue
        value, threshold = float(metric["value"]), float(config["threshold"])
        is_p = "p_value" in config["method"]
        if (value < threshold) if is_p else (value >= threshold):
            flagged.append(config["column"])
    return sorted(flagged)


if __name__ == "__main__":
    started = time.perf_counter()
    columns = flagged_columns(sys.argv[1], sys.argv[2])
    figures = {"work_s": time.perf_counter() - started, "flagged": columns}
    print(WORK_MARK + json.dumps(figures), flush=True)
