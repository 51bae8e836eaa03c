"""The prediction log: batched, rotated Parquet files; bounded buffer; nothing lost on close."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gitml.errors import ConfigError
from gitml.serve.inputs import InputSchema
from gitml.serve.predlog import LogEntry, PredictionLog
from tests.unit.test_serve_inputs import GOOD

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = InputSchema.from_signature(json.loads((ROOT / "models/signature.json").read_text()))


def _entry(request: int, rows: int) -> LogEntry:
    columns = SCHEMA.check_records([GOOD | {"tenure": request % 100}] * rows)
    scores = np.linspace(0, 1, rows)
    labels = np.where(scores >= 0.5, "Yes", "No")
    return LogEntry(f"req-{request}", columns, scores, labels, time.time())


def _log(directory: Path, **options: int | float) -> PredictionLog:
    return PredictionLog(directory, SCHEMA, model_name="m", model_version="v1", **options)


def test_rows_are_batched_rotated_and_all_flushed_on_close(tmp_path: Path) -> None:
    log = _log(tmp_path, flush_rows=300, rotate_rows=1000, max_buffer_rows=600)
    for request in range(25):
        log.append(_entry(request, 100))
    log.close()
    files = sorted(tmp_path.iterdir())
    assert [f.suffix for f in files] == [".parquet"] * 3  # no .part left behind
    tables = [pq.read_table(f) for f in files]
    assert [t.num_rows for t in tables] == [1000, 1000, 500]
    rows = [row for t in tables for row in t.to_pylist()]
    assert [r["request_id"] for r in rows[::100]] == [f"req-{i}" for i in range(25)]
    assert rows[0]["record"] == 0 and rows[99]["record"] == 99
    assert rows[150]["tenure"] == 1 and rows[150]["contract"] == "One year"
    assert rows[0]["model_version"] == "v1" and rows[0]["label"] == "No"
    assert tables[0].schema.field("timestamp").type.tz == "UTC"


def test_a_full_buffer_makes_producers_wait_instead_of_growing(tmp_path: Path) -> None:
    log = _log(tmp_path, flush_rows=10, max_buffer_rows=10, flush_seconds=60)
    done = threading.Event()

    def produce() -> None:
        for request in range(50):
            log.append(_entry(request, 10))
        done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    assert done.wait(30)
    log.close()
    thread.join()
    assert log.rows_written == 500
    assert sum(pq.read_metadata(f).num_rows for f in tmp_path.iterdir()) == 500


def test_old_rows_are_written_after_flush_seconds(tmp_path: Path) -> None:
    log = _log(tmp_path, flush_rows=1000, flush_seconds=0.2)
    log.append(_entry(0, 3))
    deadline = time.monotonic() + 10
    while log.rows_written < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.rows_written == 3
    log.close()


def test_reserved_column_names_are_refused(tmp_path: Path) -> None:
    signature = {"inputs": [{"name": "score", "type": "float", "nullable": False}]}
    with pytest.raises(ConfigError, match="reserved"):
        PredictionLog(
            tmp_path,
            InputSchema.from_signature(signature),
            model_name="m",
            model_version="v",
        )
